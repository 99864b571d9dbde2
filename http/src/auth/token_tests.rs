use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::json;

use super::*;
use crate::auth::jose::SigningKey;
use crate::auth::keys::{self, TokenKeys};

const ROOT: &[u8] = include_bytes!("fixtures/root.crt");
const LEAF: &[u8] = include_bytes!("fixtures/leaf-ec.crt");
const LEAF_KEY: &[u8] = include_bytes!("fixtures/leaf-ec.key");
const RSA: &[u8] = include_bytes!("fixtures/rsa.crt");
const RSA_KEY: &[u8] = include_bytes!("fixtures/rsa.key");
const EC384: &[u8] = include_bytes!("fixtures/ec384.crt");
const EC384_KEY: &[u8] = include_bytes!("fixtures/ec384.key");
const ED: &[u8] = include_bytes!("fixtures/ed25519.crt");
const ED_KEY: &[u8] = include_bytes!("fixtures/ed25519.key");
const EC521: &[u8] = include_bytes!("fixtures/ec521.crt");
const EC521_KEY: &[u8] = include_bytes!("fixtures/ec521.key");
const LEAF521: &[u8] = include_bytes!("fixtures/leaf-ec521.crt");
const LEAF521_KEY: &[u8] = include_bytes!("fixtures/leaf-ec521.key");
const STRANGER: &[u8] = include_bytes!("fixtures/stranger.crt");
const STRANGER_KEY: &[u8] = include_bytes!("fixtures/stranger.key");

const ISSUER: &str = "lain auth server";
const SERVICE: &str = "lain.local";

fn der(pem: &[u8]) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem).expect("pem").to_vec()
}

fn settings() -> TokenSettings {
    let bundle: Vec<Vec<u8>> = [ROOT, RSA, EC384, ED, EC521]
        .iter()
        .map(|p| der(p))
        .collect();
    TokenSettings {
        issuer: ISSUER.into(),
        service: SERVICE.into(),
        keys: TokenKeys::new(&bundle, None).expect("keys"),
        algorithms: jose::Algorithm::ALL.to_vec(),
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
    assert_eq!(
        settings.verify(&hs),
        Err(TokenError::Algorithm("HS256".into()))
    );
    // alg: none, crafted by hand.
    let none = format!(
        "{}.{}.",
        base64_url(br#"{"alg":"none","typ":"JWT"}"#),
        base64_url(claims().to_string().as_bytes())
    );
    assert_eq!(
        settings.verify(&none),
        Err(TokenError::Algorithm("none".into()))
    );
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
        algorithms: vec![jose::Algorithm::RS256],
        ..settings
    };
    let es384 = sign(
        Algorithm::ES384,
        EC384_KEY,
        with_kid(libtrust_kid(EC384)),
        &claims(),
    );
    assert_eq!(
        narrow.verify(&es384),
        Err(TokenError::Algorithm("ES384".into()))
    );
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

/// ES512 (P-521), which jsonwebtoken lacks, signed here by RustCrypto's `p521` as a token
/// server would: `alg` ES512, a 132-byte `r || s` signature over SHA-512.
fn sign_es512(key_pem: &[u8], header: serde_json::Value, claims: &serde_json::Value) -> String {
    use p521::ecdsa::signature::Signer;
    use p521::pkcs8::DecodePrivateKey;
    let key = p521::ecdsa::SigningKey::from_pkcs8_pem(std::str::from_utf8(key_pem).expect("utf-8"))
        .expect("P-521 key");
    let mut header = header;
    header["alg"] = json!("ES512");
    let input = format!(
        "{}.{}",
        base64_url(header.to_string().as_bytes()),
        base64_url(claims.to_string().as_bytes())
    );
    let signature: p521::ecdsa::Signature = key.sign(input.as_bytes());
    format!("{input}.{}", base64_url(&signature.to_bytes()))
}

#[test]
fn es512_is_verified_by_every_kind_of_key_id() {
    let settings = settings();
    let kid = |kid: String| json!({ "typ": "JWT", "kid": kid });
    for header in [
        kid(libtrust_kid(EC521)),
        // RFC 7638 thumbprint, computed apart from this code (Python's cryptography,
        // hashlib and base64 on fixtures/ec521.crt).
        kid("JwAmwZgIyQlrOi-sCFy8Fl19B5dvDe0OAHLHAR4RRvM".into()),
    ] {
        let grant = settings
            .verify(&sign_es512(EC521_KEY, header.clone(), &claims()))
            .unwrap_or_else(|e| panic!("{header}: {e}"));
        assert_eq!(grant.subject, "alice");
    }
    // A P-521 leaf in x5c, issued by the bundle's root.
    let chain = json!({ "x5c": [base64_std(&der(LEAF521))] });
    settings
        .verify(&sign_es512(LEAF521_KEY, chain, &claims()))
        .expect("x5c");
}

#[test]
fn es512_forgeries_are_refused() {
    let settings = settings();
    let ec521 = json!({ "kid": libtrust_kid(EC521) });
    // Signed by another P-521 key than the kid names.
    assert_eq!(
        settings.verify(&sign_es512(LEAF521_KEY, ec521.clone(), &claims())),
        Err(TokenError::Signature)
    );
    // ES512 claimed for an RSA key, and ES384 claimed for the P-521 key.
    let rsa = json!({ "kid": libtrust_kid(RSA) });
    assert_eq!(
        settings.verify(&sign_es512(EC521_KEY, rsa, &claims())),
        Err(TokenError::Signature)
    );
    let token = sign_es512(EC521_KEY, ec521.clone(), &claims());
    let (_, rest) = token.split_once('.').expect("dots");
    let relabelled = format!(
        "{}.{rest}",
        base64_url(
            json!({ "alg": "ES384", "kid": libtrust_kid(EC521) })
                .to_string()
                .as_bytes()
        )
    );
    assert_eq!(settings.verify(&relabelled), Err(TokenError::Signature));
    // A payload changed after signing.
    let parts: Vec<&str> = token.split('.').collect();
    let mut more = claims();
    more["access"][0]["actions"] = json!(["pull", "push", "delete"]);
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        base64_url(more.to_string().as_bytes()),
        parts[2]
    );
    assert_eq!(settings.verify(&tampered), Err(TokenError::Signature));
    // A signature of the wrong length.
    let short = format!("{}.{}.{}", parts[0], parts[1], &parts[2][..40]);
    assert_eq!(settings.verify(&short), Err(TokenError::Signature));
    // Not in the allow-list.
    let narrow = TokenSettings {
        algorithms: vec![jose::Algorithm::ES384],
        ..settings
    };
    assert_eq!(
        narrow.verify(&token),
        Err(TokenError::Algorithm("ES512".into()))
    );
}

#[test]
fn a_jwks_p521_key_is_found_by_its_kid() {
    let point = {
        let cert = der(EC521);
        let spki = der::certificate_spki(&cert).expect("spki");
        match der::spki_key(spki) {
            Some(der::PublicKey::P521(point)) => point,
            other => panic!("{other:?}"),
        }
    };
    let jwks = json!({ "keys": [{
        "kty": "EC", "crv": "P-521", "kid": "console-2026",
        "x": base64_url(&point[1..67]), "y": base64_url(&point[67..]),
    }]});
    let settings = TokenSettings {
        keys: TokenKeys::new(&[], Some(&jwks.to_string())).expect("jwks"),
        ..settings()
    };
    settings
        .verify(&sign_es512(
            EC521_KEY,
            json!({ "kid": "console-2026" }),
            &claims(),
        ))
        .expect("by the JWKS kid");
    assert_eq!(
        settings.verify(&sign_es512(
            LEAF521_KEY,
            json!({ "kid": "console-2026" }),
            &claims()
        )),
        Err(TokenError::Signature)
    );
}

/// `registry token-server` signs with the algorithm the key's kind implies, and what it
/// signs verifies.
#[test]
fn a_signing_key_takes_its_algorithm_from_its_curve() {
    let settings = settings();
    for (key, cert, algorithm) in [
        (RSA_KEY, RSA, jose::Algorithm::RS256),
        (EC384_KEY, EC384, jose::Algorithm::ES384),
        (EC521_KEY, EC521, jose::Algorithm::ES512),
        (ED_KEY, ED, jose::Algorithm::EdDSA),
        (LEAF_KEY, LEAF, jose::Algorithm::ES256),
    ] {
        let signer = SigningKey::from_pem(key).expect("key");
        assert_eq!(signer.algorithm(), algorithm);
        let mut header = serde_json::Map::new();
        if cert == LEAF {
            header.insert("x5c".into(), json!([base64_std(&der(LEAF))]));
        } else {
            header.insert("kid".into(), json!(libtrust_kid(cert)));
        }
        let token = signer.sign(header, &claims()).expect("sign");
        settings
            .verify(&token)
            .unwrap_or_else(|e| panic!("{algorithm}: {e}"));
    }
    assert!(
        SigningKey::from_pem(ROOT).is_none(),
        "a certificate is no key"
    );
}

#[test]
fn claims_are_read_as_rfc_7519_writes_them() {
    let settings = settings();
    let token = |claims: &serde_json::Value| {
        sign(
            Algorithm::RS256,
            RSA_KEY,
            with_kid(libtrust_kid(RSA)),
            claims,
        )
    };
    // NumericDate may be fractional; nbf inside the leeway is accepted.
    let mut fractional = claims();
    fractional["exp"] = json!(now() as f64 + 30.5);
    fractional["nbf"] = json!(now() + LEEWAY / 2);
    settings
        .verify(&token(&fractional))
        .expect("fractional exp");
    // exp inside the leeway is still accepted; past it, not.
    let mut late = claims();
    late["exp"] = json!(now() - LEEWAY / 2);
    settings
        .verify(&token(&late))
        .expect("exp inside the leeway");
    late["exp"] = json!(now() - 2 * LEEWAY);
    assert_eq!(settings.verify(&token(&late)), Err(TokenError::Expired));
    // exp, iss and aud are required; a null access grants nothing.
    for claim in ["exp", "iss", "aud"] {
        let mut missing = claims();
        missing.as_object_mut().expect("object").remove(claim);
        assert!(
            settings.verify(&token(&missing)).is_err(),
            "without {claim}"
        );
    }
    let mut null = claims();
    null["access"] = serde_json::Value::Null;
    assert_eq!(
        settings.verify(&token(&null)).expect("null access").access,
        []
    );
    // Claims of the wrong type are refused, not defaulted.
    let mut typed = claims();
    typed["exp"] = json!("tomorrow");
    assert!(matches!(
        settings.verify(&token(&typed)),
        Err(TokenError::Claims(_))
    ));
}

proptest::proptest! {
    /// The property of the `auth_token` fuzz target, on every run: what a client sends
    /// never panics the checks and, unsigned by the bundle's keys, is never accepted.
    #[test]
    fn arbitrary_tokens_are_refused(text in "\\PC{0,200}") {
        proptest::prop_assert!(settings().verify(&text).is_err());
    }

    /// The same for three dot-separated base64url parts, the shape that gets furthest.
    #[test]
    fn arbitrary_compact_tokens_are_refused(
        header in proptest::collection::vec(proptest::num::u8::ANY, 0..120),
        payload in proptest::collection::vec(proptest::num::u8::ANY, 0..120),
        signature in proptest::collection::vec(proptest::num::u8::ANY, 0..140),
        alg in proptest::sample::select(vec!["RS256", "PS384", "ES256", "ES384", "ES512", "EdDSA", "none", "HS256"]),
    ) {
        let kid = libtrust_kid(RSA);
        let mut header_json = json!({ "alg": alg, "kid": kid });
        if header.len() % 2 == 0 {
            header_json["x5c"] = json!([base64_std(&header)]);
        }
        for first in [base64_url(header_json.to_string().as_bytes()), base64_url(&header)] {
            let token = format!("{first}.{}.{}", base64_url(&payload), base64_url(&signature));
            proptest::prop_assert!(settings().verify(&token).is_err());
        }
    }
}
