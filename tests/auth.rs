//! Token authentication through the real server: tokens signed here with the keys in
//! `http/src/auth/fixtures` (the bundle the registry is given), presented as a client
//! that got them from a token server would. Each endpoint family is refused without a
//! token, with a bad one, and with one that grants too little, and served with the
//! right one; the challenge names what to ask for.

mod common;

use common::{Launch, Registry};

use common::tokens::{ISSUER, SERVICE, token};

const REALM: &str = "https://console.lain.local/api/v1/authorize/registry/";

fn registry(dir: &std::path::Path) -> Registry {
    let bundle = common::tokens::bundle(dir);
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  delete:\n    enabled: true\nauth:\n  token:\n    realm: {REALM}\n    \
             service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
            bundle.display()
        ),
    )
    .expect("config");
    Registry::launch(Launch {
        args: vec![config.display().to_string()],
        ..Launch::default()
    })
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[test]
fn each_endpoint_is_held_to_the_token_scopes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = registry(dir.path());
    let blob = b"a layer only alice may push";
    let digest = common::sha256(blob);

    // No token: the challenge names realm and service; no scope for /v2/.
    let r = server.request("GET", "/v2/").send();
    r.expect(401, Some("UNAUTHORIZED"));
    assert_eq!(
        r.header("www-authenticate"),
        Some(format!("Bearer realm=\"{REALM}\",service=\"{SERVICE}\"").as_str())
    );
    // Any valid token opens /v2/.
    let nothing = token("alice", &[], 300);
    server
        .request("GET", "/v2/")
        .header("authorization", &bearer(&nothing))
        .send()
        .expect(200, None);

    // A push needs pull and push on the repository.
    let pull_only = token("alice", &[("repository", "lain/app", &["pull"])], 300);
    let upload = format!("/v2/lain/app/blobs/uploads/?digest={digest}");
    let r = server
        .request("POST", &upload)
        .header("authorization", &bearer(&pull_only))
        .body(blob.to_vec())
        .send();
    r.expect(401, Some("UNAUTHORIZED"));
    assert_eq!(
        r.header("www-authenticate"),
        Some(format!(
            "Bearer realm=\"{REALM}\",service=\"{SERVICE}\",scope=\"repository:lain/app:pull,push\",error=\"insufficient_scope\""
        ).as_str())
    );
    let push = token(
        "alice",
        &[("repository", "lain/app", &["pull", "push"])],
        300,
    );
    server
        .request("POST", &upload)
        .header("authorization", &bearer(&push))
        .body(blob.to_vec())
        .send()
        .expect(201, None);

    // Reads need pull on that repository, not another.
    let path = format!("/v2/lain/app/blobs/{digest}");
    let got = server
        .request("GET", &path)
        .header("authorization", &bearer(&pull_only))
        .send();
    got.expect(200, None);
    assert_eq!(got.body, blob);
    let other = token(
        "bob",
        &[("repository", "lain/other", &["pull", "push", "delete"])],
        300,
    );
    server
        .request("GET", &path)
        .header("authorization", &bearer(&other))
        .send()
        .expect(401, Some("UNAUTHORIZED"));
    server
        .request("GET", "/v2/lain/app/tags/list")
        .header("authorization", &bearer(&other))
        .send()
        .expect(401, Some("UNAUTHORIZED"));
    // Deletes need delete.
    server
        .request("DELETE", &path)
        .header("authorization", &bearer(&push))
        .send()
        .expect(401, Some("UNAUTHORIZED"));

    // Bad tokens: expired, garbage, another scheme.
    let expired = token("alice", &[("repository", "lain/app", &["pull"])], -3600);
    let r = server
        .request("GET", &path)
        .header("authorization", &bearer(&expired))
        .send();
    r.expect(401, Some("UNAUTHORIZED"));
    assert!(
        r.header("www-authenticate")
            .is_some_and(|c| c.ends_with("error=\"invalid_token\"")),
        "{:?}",
        r.headers
    );
    server
        .request("GET", &path)
        .header("authorization", "Bearer not.a.token")
        .send()
        .expect(401, Some("UNAUTHORIZED"));
    server
        .request("GET", &path)
        .header("authorization", "Basic YWxpY2U6cw==")
        .send()
        .expect(401, Some("UNAUTHORIZED"));

    // The catalog needs registry:catalog:*.
    server
        .request("GET", "/v2/_catalog")
        .header("authorization", &bearer(&push))
        .send()
        .expect(401, Some("UNAUTHORIZED"));
    let catalog = token("admin", &[("registry", "catalog", &["*"])], 300);
    server
        .request("GET", "/v2/_catalog")
        .header("authorization", &bearer(&catalog))
        .send()
        .expect(200, None);

    // A mount needs pull on its source; without it, it becomes an upload session. The
    // challenge asks for both scopes.
    let mount = format!("/v2/lain/copy/blobs/uploads/?mount={digest}&from=lain/app");
    let r = server.request("POST", &mount).send();
    r.expect(401, Some("UNAUTHORIZED"));
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            format!(
                "Bearer realm=\"{REALM}\",service=\"{SERVICE}\",scope=\"repository:lain/copy:pull,push repository:lain/app:pull\""
            )
            .as_str()
        )
    );
    let copy_only = token(
        "bob",
        &[("repository", "lain/copy", &["pull", "push"])],
        300,
    );
    server
        .request("POST", &mount)
        .header("authorization", &bearer(&copy_only))
        .send()
        .expect(202, None);
    let both = token(
        "bob",
        &[
            ("repository", "lain/copy", &["pull", "push"]),
            ("repository", "lain/app", &["pull"]),
        ],
        300,
    );
    server
        .request("POST", &mount)
        .header("authorization", &bearer(&both))
        .send()
        .expect(201, None);
    // A mount without `from` never searches repositories the token cannot pull.
    let other_mount = format!("/v2/lain/other/blobs/uploads/?mount={digest}");
    server
        .request("POST", &other_mount)
        .header("authorization", &bearer(&other))
        .send()
        .expect(202, None);
    // It finds the blob in a repository the token may pull, and only there.
    let third_mount = format!("/v2/lain/third/blobs/uploads/?mount={digest}");
    let third_and_copy = token(
        "bob",
        &[
            ("repository", "lain/third", &["pull", "push"]),
            ("repository", "lain/copy", &["pull"]),
        ],
        300,
    );
    let third_and_empty = token(
        "bob",
        &[
            ("repository", "lain/third", &["pull", "push"]),
            ("repository", "lain/empty", &["pull"]),
        ],
        300,
    );
    server
        .request("POST", &third_mount)
        .header("authorization", &bearer(&third_and_empty))
        .send()
        .expect(202, None);
    let third_blob = format!("/v2/lain/third/blobs/{digest}");
    server
        .request("HEAD", &third_blob)
        .header("authorization", &bearer(&third_and_copy))
        .send()
        .expect(404, None);
    let r = server
        .request("POST", &third_mount)
        .header("authorization", &bearer(&third_and_copy))
        .send();
    r.expect(201, None);
    assert_eq!(r.header("location"), Some(third_blob.as_str()));
    server
        .request("HEAD", &third_blob)
        .header("authorization", &bearer(&third_and_copy))
        .send()
        .expect(200, None);

    // The access log names who did what.
    let log = server.log();
    assert!(log.contains("subject=alice"), "{log}");
    assert!(log.contains("subject=bob"), "{log}");
    assert!(server.terminate());
}

/// `auth.htpasswd`: Basic credentials against bcrypt entries; any valid user may do
/// anything; failed logins from one address are cut off after ten.
#[test]
fn htpasswd_users_log_in_and_guessers_are_slowed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let users = dir.path().join("htpasswd");
    let hash = bcrypt::hash("s3cret", 4).expect("bcrypt");
    std::fs::write(&users, format!("alice:{hash}\n")).expect("write");
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nauth:\n  htpasswd:\n    realm: lain registry\n    path: {}\n",
            users.display()
        ),
    )
    .expect("config");
    let server = Registry::launch(Launch {
        args: vec![config.display().to_string()],
        ..Launch::default()
    });
    let basic = |user: &str, password: &str| {
        let pair = format!("{user}:{password}");
        format!("Basic {}", common::tokens::base64_std(pair.as_bytes()))
    };
    let r = server.request("GET", "/v2/").send();
    r.expect(401, Some("UNAUTHORIZED"));
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"lain registry\"")
    );
    let blob = b"pushed by alice";
    let digest = common::sha256(blob);
    server
        .request(
            "POST",
            &format!("/v2/lain/app/blobs/uploads/?digest={digest}"),
        )
        .header("authorization", &basic("alice", "s3cret"))
        .body(blob.to_vec())
        .send()
        .expect(201, None);
    let got = server
        .request("GET", &format!("/v2/lain/app/blobs/{digest}"))
        .header("authorization", &basic("alice", "s3cret"))
        .send();
    got.expect(200, None);
    assert_eq!(got.body, blob);
    for _ in 0..10 {
        server
            .request("GET", "/v2/")
            .header("authorization", &basic("alice", "guess"))
            .send()
            .expect(401, Some("UNAUTHORIZED"));
    }
    // Cut off, even with the right password, for a while.
    server
        .request("GET", "/v2/")
        .header("authorization", &basic("alice", "s3cret"))
        .send()
        .expect(429, Some("TOOMANYREQUESTS"));
    assert!(server.log().contains("subject=alice"), "{}", server.log());
    // A user added to the file can log in without a restart.
    let bob = bcrypt::hash("hunter2", 4).expect("bcrypt");
    std::fs::write(&users, format!("alice:{hash}\nbob:{bob}\n")).expect("write");
    let start = std::time::Instant::now();
    while server
        .request("GET", "/v2/")
        .header("authorization", &basic("bob", "hunter2"))
        .send()
        .status
        != 200
    {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "bob cannot log in 10 s after the file changed\n{}",
            server.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(server.terminate());
}

/// A grant: type, name, actions.
type Grant<'a> = (&'a str, &'a str, &'a [&'a str]);

/// An endpoint family: method, path, the scope it needs, the status the right token gets.
type Family<'a> = (&'a str, String, Grant<'a>, u16);

/// Every endpoint family against every kind of bad token: the status, the error code
/// and the challenge's `error` are exactly right, and only the right scope is served.
#[test]
fn the_token_matrix() {
    use common::tokens::{RSA_KID, base64_url, claims, sign};
    let dir = tempfile::tempdir().expect("tempdir");
    let server = registry(dir.path());
    let d = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    let push = token(
        "alice",
        &[("repository", "m/app", &["pull", "push", "delete"])],
        300,
    );
    // A session to PATCH, PUT, GET and DELETE.
    let started = server
        .request("POST", "/v2/m/app/blobs/uploads/")
        .header("authorization", &bearer(&push))
        .send();
    started.expect(202, None);
    let session = started.header("location").expect("Location").to_owned();
    let families: Vec<Family> = vec![
        (
            "GET",
            "/v2/_catalog".into(),
            ("registry", "catalog", &["*"]),
            200,
        ),
        (
            "GET",
            "/v2/m/app/tags/list".into(),
            ("repository", "m/app", &["pull"]),
            404,
        ),
        (
            "GET",
            "/v2/m/app/manifests/v1".into(),
            ("repository", "m/app", &["pull"]),
            404,
        ),
        (
            "PUT",
            "/v2/m/app/manifests/v1".into(),
            ("repository", "m/app", &["pull", "push"]),
            400,
        ),
        (
            "DELETE",
            format!("/v2/m/app/manifests/{d}"),
            ("repository", "m/app", &["delete"]),
            404,
        ),
        (
            "GET",
            format!("/v2/m/app/blobs/{d}"),
            ("repository", "m/app", &["pull"]),
            404,
        ),
        (
            "DELETE",
            format!("/v2/m/app/blobs/{d}"),
            ("repository", "m/app", &["delete"]),
            404,
        ),
        (
            "GET",
            format!("/v2/m/app/referrers/{d}"),
            ("repository", "m/app", &["pull"]),
            200,
        ),
        (
            "POST",
            "/v2/m/app/blobs/uploads/".into(),
            ("repository", "m/app", &["pull", "push"]),
            202,
        ),
        (
            "GET",
            session.clone(),
            ("repository", "m/app", &["pull", "push"]),
            204,
        ),
        (
            "PATCH",
            session.clone(),
            ("repository", "m/app", &["pull", "push"]),
            202,
        ),
    ];
    for (method, path, scope, served) in &families {
        let good = claims("alice", &[*scope], 300);
        let mut expired = good.clone();
        expired["exp"] = serde_json::json!(now() - 3600);
        let mut early = good.clone();
        early["nbf"] = serde_json::json!(now() + 3600);
        let mut issuer = good.clone();
        issuer["iss"] = serde_json::json!("another issuer");
        let mut audience = good.clone();
        audience["aud"] = serde_json::json!("another.service");
        let right = sign(&good, "rsa.key", RSA_KID);
        let parts: Vec<&str> = right.split('.').collect();
        let mut wider = good.clone();
        wider["access"] =
            serde_json::json!([{"type": "repository", "name": "*", "actions": ["*"]}]);
        let bad: Vec<(&str, String)> = vec![
            ("expired", sign(&expired, "rsa.key", RSA_KID)),
            ("not yet valid", sign(&early, "rsa.key", RSA_KID)),
            ("wrong issuer", sign(&issuer, "rsa.key", RSA_KID)),
            ("wrong audience", sign(&audience, "rsa.key", RSA_KID)),
            ("wrong signer", sign(&good, "stranger.key", RSA_KID)),
            ("unknown kid", sign(&good, "rsa.key", "AAAA:BBBB")),
            (
                "alg none",
                format!(
                    "{}.{}.",
                    base64_url(json_header("none").as_bytes()),
                    parts[1]
                ),
            ),
            ("hmac with the public key", hmac(&good)),
            (
                "tampered payload",
                format!(
                    "{}.{}.{}",
                    parts[0],
                    base64_url(wider.to_string().as_bytes()),
                    parts[2]
                ),
            ),
        ];
        let send = |auth: Option<&str>| {
            let mut request = server.request(method, path);
            if let Some(token) = auth {
                request = request.header("authorization", &bearer(token));
            }
            if *method == "PUT" || *method == "PATCH" {
                request = request
                    .header("content-type", "application/vnd.oci.image.manifest.v1+json")
                    .body("{}");
            }
            request.send()
        };
        let scope_text = format!("{}:{}:{}", scope.0, scope.1, scope.2.join(","));
        let r = send(None);
        r.expect(401, Some("UNAUTHORIZED"));
        assert_eq!(
            r.header("www-authenticate"),
            Some(
                format!("Bearer realm=\"{REALM}\",service=\"{SERVICE}\",scope=\"{scope_text}\"")
                    .as_str()
            ),
            "{method} {path} without a token"
        );
        for (what, token) in &bad {
            let r = send(Some(token));
            assert_eq!(r.status, 401, "{method} {path} with {what}: {}", r.text());
            assert!(
                r.text().contains("UNAUTHORIZED"),
                "{method} {path} with {what}: {}",
                r.text()
            );
            assert!(
                r.header("www-authenticate")
                    .is_some_and(|c| c.ends_with(",error=\"invalid_token\"")),
                "{method} {path} with {what}: {:?}",
                r.headers
            );
        }
        // Valid but for another repository.
        let elsewhere = token(
            "alice",
            &[("repository", "m/other", &["pull", "push", "delete"])],
            300,
        );
        let r = send(Some(&elsewhere));
        r.expect(401, Some("UNAUTHORIZED"));
        assert!(
            r.header("www-authenticate")
                .is_some_and(|c| c.ends_with(",error=\"insufficient_scope\"")),
            "{method} {path}: {:?}",
            r.headers
        );
        let r = send(Some(&right));
        assert_eq!(
            r.status,
            *served,
            "{method} {path} with the right token: {}",
            r.text()
        );
    }
    assert!(server.terminate());
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

fn json_header(alg: &str) -> String {
    format!(
        "{{\"alg\":\"{alg}\",\"typ\":\"JWT\",\"kid\":\"{}\"}}",
        common::tokens::RSA_KID
    )
}

/// An HS256 token whose secret is the bundle's certificate (the public key): the
/// classic confusion attack.
fn hmac(claims: &serde_json::Value) -> String {
    let secret = std::fs::read(common::tokens::fixture("rsa.crt")).expect("cert");
    let header = jsonwebtoken::Header {
        alg: jsonwebtoken::Algorithm::HS256,
        kid: Some(common::tokens::RSA_KID.into()),
        ..jsonwebtoken::Header::default()
    };
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_secret(&secret).expect("secret"),
    )
    .expect("sign")
}

/// distribution 3's `jwks`: keys from a JWKS file, found by the file's own `kid`, with
/// no certificate bundle at all.
#[test]
fn keys_from_a_jwks_file() {
    use common::tokens::{claims, fixture, sign};
    let dir = tempfile::tempdir().expect("tempdir");
    let key = std::fs::read(fixture("rsa.key")).expect("key");
    let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(
        &jsonwebtoken::EncodingKey::from_rsa_pem(&key).expect("pem"),
        jsonwebtoken::Algorithm::RS256,
    )
    .expect("jwk");
    jwk.common.key_id = Some("console-2026".into());
    let jwks = dir.path().join("jwks.json");
    std::fs::write(
        &jwks,
        serde_json::to_string(&jsonwebtoken::jwk::JwkSet { keys: vec![jwk] }).expect("json"),
    )
    .expect("write");
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nauth:\n  token:\n    realm: {REALM}\n    service: {SERVICE}\n    \
             issuer: {ISSUER}\n    jwks: {}\n    signingalgorithms: [RS256]\n",
            jwks.display()
        ),
    )
    .expect("config");
    let server = Registry::launch(Launch {
        args: vec![config.display().to_string()],
        ..Launch::default()
    });
    let good = sign(&claims("carol", &[], 300), "rsa.key", "console-2026");
    server
        .request("GET", "/v2/")
        .header("authorization", &bearer(&good))
        .send()
        .expect(200, None);
    let unknown = sign(&claims("carol", &[], 300), "rsa.key", "console-2025");
    server
        .request("GET", "/v2/")
        .header("authorization", &bearer(&unknown))
        .send()
        .expect(401, Some("UNAUTHORIZED"));
    assert!(server.terminate());
}

/// distribution 3's `autoredirect`: the challenge's realm is `autoredirectpath` on the
/// host the client addressed (https unless `X-Forwarded-Proto` says otherwise).
#[test]
fn autoredirect_builds_the_realm_from_the_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = common::tokens::bundle(dir.path());
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nauth:\n  token:\n    realm: {REALM}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    \
             rootcertbundle: {}\n    autoredirect: true\n    autoredirectpath: /token/issue\n",
            bundle.display()
        ),
    )
    .expect("config");
    let server = Registry::launch(Launch {
        args: vec![config.display().to_string()],
        ..Launch::default()
    });
    let r = server.request("GET", "/v2/").send();
    r.expect(401, Some("UNAUTHORIZED"));
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            format!(
                "Bearer realm=\"https://{}/token/issue\",service=\"{SERVICE}\"",
                server.addr
            )
            .as_str()
        )
    );
    let r = server
        .request("GET", "/v2/")
        .header("x-forwarded-proto", "http")
        .header("x-forwarded-host", "registry.lain.local")
        .send();
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            format!(
                "Bearer realm=\"http://registry.lain.local/token/issue\",service=\"{SERVICE}\""
            )
            .as_str()
        )
    );
    assert!(server.terminate());
}
