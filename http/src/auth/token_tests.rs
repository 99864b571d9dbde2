use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::json;

use super::*;
use crate::auth::keys::TokenKeys;

const ROOT: &[u8] = include_bytes!("fixtures/root.crt");
const LEAF: &[u8] = include_bytes!("fixtures/leaf-ec.crt");
const LEAF_KEY: &[u8] = include_bytes!("fixtures/leaf-ec.key");
const RSA: &[u8] = include_bytes!("fixtures/rsa.crt");
const RSA_KEY: &[u8] = include_bytes!("fixtures/rsa.key");
const EC384: &[u8] = include_bytes!("fixtures/ec384.crt");
const EC384_KEY: &[u8] = include_bytes!("fixtures/ec384.key");
const ED: &[u8] = include_bytes!("fixtures/ed25519.crt");
const ED_KEY: &[u8] = include_bytes!("fixtures/ed25519.key");
const STRANGER: &[u8] = include_bytes!("fixtures/stranger.crt");
const STRANGER_KEY: &[u8] = include_bytes!("fixtures/stranger.key");

const ISSUER: &str = "lain auth server";
const SERVICE: &str = "lain.local";

fn der(pem: &[u8]) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem).expect("pem").to_vec()
}

fn settings() -> TokenSettings {
    let bundle: Vec<Vec<u8>> = [ROOT, RSA, EC384, ED].iter().map(|p| der(p)).collect();
    TokenSettings {
        issuer: ISSUER.into(),
        service: SERVICE.into(),
        keys: TokenKeys::new(&bundle, None).expect("keys"),
        algorithms: ALGORITHMS.to_vec(),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn claims() -> serde_json::Value {
    json!({
        "iss": ISSUER,
        "sub": "alice",
        "aud": SERVICE,
        "exp": now() + 300,
        "nbf": now() - 10,
        "iat": now() - 10,
        "jti": "1",
        "access": [{"type": "repository", "name": "lain/app", "actions": ["pull", "push"]}],
    })
}

fn libtrust_kid(cert_pem: &[u8]) -> String {
    let cert = der(cert_pem);
    keys::libtrust_key_id(der::certificate_spki(&cert).expect("spki"))
}

fn sign(alg: Algorithm, key_pem: &[u8], header: Header, claims: &serde_json::Value) -> String {
    let key = match alg {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => EncodingKey::from_rsa_pem(key_pem),
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(key_pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(key_pem),
        _ => EncodingKey::from_secret(key_pem),
    }
    .expect("signing key");
    jsonwebtoken::encode(&Header { alg, ..header }, claims, &key).expect("sign")
}

fn with_kid(kid: String) -> Header {
    Header {
        kid: Some(kid),
        ..Header::default()
    }
}

#[test]
fn every_generation_of_token_server_is_verified() {
    let settings = settings();
    // A chain in x5c (distribution's own token servers).
    let x5c = Header {
        x5c: Some(vec![base64_std(&der(LEAF))]),
        ..Header::default()
    };
    let grant = settings
        .verify(&sign(Algorithm::ES256, LEAF_KEY, x5c, &claims()))
        .expect("x5c");
    assert_eq!(grant.subject, "alice");
    assert_eq!(grant.access[0].name, "lain/app");
    assert_eq!(grant.access[0].actions, ["pull", "push"]);
    // libtrust key ids (distribution 2.x-era servers such as LAIN Console).
    for (alg, cert, key) in [
        (Algorithm::RS256, RSA, RSA_KEY),
        (Algorithm::RS512, RSA, RSA_KEY),
        (Algorithm::PS256, RSA, RSA_KEY),
        (Algorithm::ES384, EC384, EC384_KEY),
        (Algorithm::EdDSA, ED, ED_KEY),
    ] {
        let token = sign(alg, key, with_kid(libtrust_kid(cert)), &claims());
        settings
            .verify(&token)
            .unwrap_or_else(|e| panic!("{alg:?} by libtrust kid: {e}"));
    }
    // RFC 7638 thumbprints.
    let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(
        &EncodingKey::from_ec_pem(EC384_KEY).expect("key"),
        Algorithm::ES384,
    )
    .expect("jwk");
    let thumbprint = jwk
        .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
        .expect("thumbprint");
    settings
        .verify(&sign(
            Algorithm::ES384,
            EC384_KEY,
            with_kid(thumbprint),
            &claims(),
        ))
        .expect("thumbprint kid");
}

#[test]
fn libtrust_key_ids_have_their_shape() {
    let kid = libtrust_kid(RSA);
    assert_eq!(kid.len(), 59, "{kid}");
    assert_eq!(kid.split(':').count(), 12, "{kid}");
    assert!(
        kid.bytes()
            .all(|b| b == b':' || b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)),
        "{kid}"
    );
}

#[test]
fn bad_tokens_are_refused() {
    let settings = settings();
    let rsa_kid = || with_kid(libtrust_kid(RSA));
    let refuse = |token: String, what: &str| {
        let e = settings.verify(&token).expect_err(what);
        e.to_string()
    };
    let mut expired = claims();
    expired["exp"] = json!(now() - 3600);
    refuse(
        sign(Algorithm::RS256, RSA_KEY, rsa_kid(), &expired),
        "expired",
    );
    let mut early = claims();
    early["nbf"] = json!(now() + 3600);
    refuse(
        sign(Algorithm::RS256, RSA_KEY, rsa_kid(), &early),
        "not yet valid",
    );
    let mut issuer = claims();
    issuer["iss"] = json!("someone else");
    refuse(
        sign(Algorithm::RS256, RSA_KEY, rsa_kid(), &issuer),
        "wrong issuer",
    );
    let mut audience = claims();
    audience["aud"] = json!("other.service");
    refuse(
        sign(Algorithm::RS256, RSA_KEY, rsa_kid(), &audience),
        "wrong audience",
    );
    // Signed by a key that is not the one the kid names.
    refuse(
        sign(Algorithm::RS256, STRANGER_KEY, rsa_kid(), &claims()),
        "wrong signer",
    );
    assert!(
        refuse(
            sign(
                Algorithm::RS256,
                RSA_KEY,
                with_kid("NOPE".into()),
                &claims()
            ),
            "unknown kid"
        )
        .contains("NOPE")
    );
    // HMAC with the public key (the certificate's PEM) as the secret.
    let hs = sign(Algorithm::HS256, RSA, rsa_kid(), &claims());
    assert!(matches!(
        settings.verify(&hs),
        Err(TokenError::Algorithm(Algorithm::HS256))
    ));
    // alg: none, crafted by hand.
    let none = format!(
        "{}.{}.",
        base64_url(br#"{"alg":"none","typ":"JWT"}"#),
        base64_url(claims().to_string().as_bytes())
    );
    assert!(matches!(
        settings.verify(&none),
        Err(TokenError::Malformed(_))
    ));
    // A payload changed after signing.
    let token = sign(Algorithm::RS256, RSA_KEY, rsa_kid(), &claims());
    let parts: Vec<&str> = token.split('.').collect();
    let mut more = claims();
    more["access"][0]["name"] = json!("other/app");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        base64_url(more.to_string().as_bytes()),
        parts[2]
    );
    refuse(tampered, "tampered");
    // An x5c chain that does not lead to the bundle.
    let stranger_chain = Header {
        x5c: Some(vec![base64_std(&der(STRANGER))]),
        ..Header::default()
    };
    assert!(matches!(
        settings.verify(&sign(
            Algorithm::RS256,
            STRANGER_KEY,
            stranger_chain,
            &claims()
        )),
        Err(TokenError::Chain(_))
    ));
    // A long x5c list is refused before any chain search.
    let long_chain = Header {
        x5c: Some(vec![base64_std(&der(LEAF)); 5]),
        ..Header::default()
    };
    assert!(matches!(
        settings.verify(&sign(Algorithm::ES256, LEAF_KEY, long_chain, &claims())),
        Err(TokenError::Chain(_))
    ));
    // An algorithm outside the configured allow-list.
    let narrow = TokenSettings {
        algorithms: vec![Algorithm::RS256],
        ..settings
    };
    let es384 = sign(
        Algorithm::ES384,
        EC384_KEY,
        with_kid(libtrust_kid(EC384)),
        &claims(),
    );
    assert!(matches!(
        narrow.verify(&es384),
        Err(TokenError::Algorithm(Algorithm::ES384))
    ));
    // Garbage.
    for junk in ["", "a.b", "a.b.c", "....", "eyJhbGciOiJSUzI1NiJ9.e30.AAAA"] {
        assert!(narrow.verify(junk).is_err(), "{junk:?}");
    }
}

#[test]
fn an_audience_list_must_contain_the_service() {
    let settings = settings();
    let mut listed = claims();
    listed["aud"] = json!(["other", SERVICE]);
    settings
        .verify(&sign(
            Algorithm::RS256,
            RSA_KEY,
            with_kid(libtrust_kid(RSA)),
            &listed,
        ))
        .expect("service in the list");
    listed["aud"] = json!(["other", "more"]);
    assert!(
        settings
            .verify(&sign(
                Algorithm::RS256,
                RSA_KEY,
                with_kid(libtrust_kid(RSA)),
                &listed
            ))
            .is_err()
    );
}

fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The libtrust id of `fixtures/rsa.crt`, computed apart from this code (openssl for the
/// DER public key, Python's hashlib and base64 for the rest).
#[test]
fn libtrust_key_id_matches_an_independent_computation() {
    assert_eq!(
        libtrust_kid(RSA),
        "EH4R:B7VT:O2TS:YACU:YQDY:7FQX:B5V4:Y2TO:NT3E:VMP4:SU7I:EFYA"
    );
}
