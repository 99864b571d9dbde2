//! Just enough DER to find a certificate's public key: the SubjectPublicKeyInfo
//! (whole, for libtrust key ids) and the key inside it (for signature checks). The
//! chain itself is verified by rustls-webpki; this only reads certificates that a
//! token's `x5c` or the operator's bundle hold.

/// One element: its tag, its contents, and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const OID: u8 = 0x06;
const BIT_STRING: u8 = 0x03;

/// A certificate's SubjectPublicKeyInfo, tag and length included.
pub fn certificate_spki(certificate: &[u8]) -> Option<&[u8]> {
    let (SEQUENCE, certificate, _) = element(certificate)? else {
        return None;
    };
    let (SEQUENCE, mut tbs, _) = element(certificate)? else {
        return None;
    };
    // [0] version (explicit, optional), then serial, signature, issuer, validity,
    // subject.
    if tbs.first() == Some(&0xa0) {
        tbs = element(tbs)?.2;
    }
    for _ in 0..5 {
        tbs = element(tbs)?.2;
    }
    let (SEQUENCE, _, after) = element(tbs)? else {
        return None;
    };
    Some(&tbs[..tbs.len() - after.len()])
}

/// A public key, in the forms the signature checks take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// PKCS#1 RSAPublicKey.
    Rsa(Vec<u8>),
    /// SEC1 point on P-256.
    P256(Vec<u8>),
    /// SEC1 point on P-384.
    P384(Vec<u8>),
    /// SEC1 point on P-521.
    P521(Vec<u8>),
    Ed25519(Vec<u8>),
}

const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];
const ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// The key a SubjectPublicKeyInfo holds, if it is of a kind tokens are signed with.
pub fn spki_key(spki: &[u8]) -> Option<PublicKey> {
    let (SEQUENCE, spki, _) = element(spki)? else {
        return None;
    };
    let (SEQUENCE, algorithm, rest) = element(spki)? else {
        return None;
    };
    let (BIT_STRING, bits, _) = element(rest)? else {
        return None;
    };
    // The first byte counts unused bits: keys are whole bytes.
    let (0, key) = bits.split_first()? else {
        return None;
    };
    let (OID, oid, params) = element(algorithm)? else {
        return None;
    };
    let key = key.to_vec();
    match oid {
        RSA => Some(PublicKey::Rsa(key)),
        ED25519 => Some(PublicKey::Ed25519(key)),
        EC => match element(params)? {
            (OID, P256, _) => Some(PublicKey::P256(key)),
            (OID, P384, _) => Some(PublicKey::P384(key)),
            (OID, P521, _) => Some(PublicKey::P521(key)),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_and_odd_input_is_none() {
        assert_eq!(element(&[]), None);
        assert_eq!(element(&[0x30]), None);
        assert_eq!(element(&[0x30, 0x05, 0x01]), None);
        assert_eq!(element(&[0x30, 0x85, 1, 1, 1, 1, 1]), None);
        assert_eq!(certificate_spki(&[0x30, 0x03, 0x30, 0x01, 0x00]), None);
        assert_eq!(spki_key(&[0x30, 0x00]), None);
    }
}
