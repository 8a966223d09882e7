//! The keys a bundle holds, as JWKs: the public-key members an `x509-svid`
//! entry carries beside its certificate, and the public keys of `jwt-svid`
//! entries, checked once when they enter a bundle so that verification never
//! meets a malformed key.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, ParsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use mandate_tokens::PublicJwk;
use serde_json::{Map, Value};
use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::{OID_EC_P256, OID_NIST_EC_P384, OID_NIST_EC_P521, OID_SIG_ED25519};
use x509_parser::public_key::PublicKey;

/// JWK members that describe a key, compared between an `x509-svid` entry and
/// its certificate.
const KEY_MEMBERS: [&str; 6] = ["kty", "crv", "x", "y", "n", "e"];

/// The JWK members (`kty` and its parameters) of a certificate's public key,
/// or `None` for a key type JWK cannot express here.
pub(crate) fn certificate_key_members(cert: &X509Certificate<'_>) -> Option<Map<String, Value>> {
    let spki = cert.public_key();
    let mut members = Map::new();
    let mut put = |k: &str, v: String| members.insert(k.to_owned(), Value::String(v));
    match spki.parsed().ok()? {
        PublicKey::EC(point) => {
            let curve = spki.algorithm.parameters.as_ref()?.as_oid().ok()?;
            let (crv, size) = if curve == OID_EC_P256 {
                ("P-256", 32)
            } else if curve == OID_NIST_EC_P384 {
                ("P-384", 48)
            } else if curve == OID_NIST_EC_P521 {
                ("P-521", 66)
            } else {
                return None;
            };
            let data = point.data();
            if data.len() != 1 + 2 * size || data[0] != 4 {
                return None;
            }
            put("kty", "EC".to_owned());
            put("crv", crv.to_owned());
            put("x", URL_SAFE_NO_PAD.encode(&data[1..=size]));
            put("y", URL_SAFE_NO_PAD.encode(&data[1 + size..]));
        }
        PublicKey::RSA(rsa) => {
            put("kty", "RSA".to_owned());
            put("n", URL_SAFE_NO_PAD.encode(unsigned(rsa.modulus)));
            put("e", URL_SAFE_NO_PAD.encode(unsigned(rsa.exponent)));
        }
        PublicKey::Unknown(raw) if spki.algorithm.algorithm == OID_SIG_ED25519 => {
            put("kty", "OKP".to_owned());
            put("crv", "Ed25519".to_owned());
            put("x", URL_SAFE_NO_PAD.encode(raw));
        }
        _ => return None,
    }
    Some(members)
}

/// Checks that the key members an `x509-svid` entry carries describe its
/// certificate's key; `Err` names the first member that does not. Members
/// the entry leaves out are not required: the certificate is authoritative.
pub(crate) fn check_entry_matches_certificate(
    entry: &Map<String, Value>,
    cert_members: &Map<String, Value>,
) -> Result<(), String> {
    for name in KEY_MEMBERS {
        let Some(given) = entry.get(name) else {
            continue;
        };
        let same = match (
            given.as_str(),
            cert_members.get(name).and_then(Value::as_str),
        ) {
            (Some(a), Some(b)) if name == "kty" || name == "crv" => a == b,
            (Some(a), Some(b)) => match (URL_SAFE_NO_PAD.decode(a), URL_SAFE_NO_PAD.decode(b)) {
                (Ok(a), Ok(b)) => unsigned(&a) == unsigned(&b),
                _ => false,
            },
            _ => false,
        };
        if !same {
            return Err(format!(
                "member {name:?} does not match the public key of the certificate in x5c"
            ));
        }
    }
    Ok(())
}

/// Reads a JWT authority: a public EC (P-256, P-384) or RSA (2048 bits or
/// more) JWK. `Err` says what is wrong with it.
pub(crate) fn parse_jwt_authority(jwk: &Value) -> Result<PublicJwk, String> {
    if jwk.get("kty").and_then(Value::as_str) == Some("oct") {
        return Err("a symmetric (oct) key cannot be a JWT authority".to_owned());
    }
    let key = PublicJwk::from_json(jwk).map_err(|e| e.to_string())?;
    if let PublicJwk::Okp { crv, .. } = &key {
        return Err(format!(
            "an OKP {crv} key cannot verify JWT-SVIDs (RS, ES and PS algorithms only)"
        ));
    }
    if let PublicJwk::Ec { crv, x, y } = &key {
        let alg = match crv.as_str() {
            "P-256" => &ECDSA_P256_SHA256_FIXED,
            _ => &ECDSA_P384_SHA384_FIXED,
        };
        let mut point = vec![4u8];
        for coordinate in [x, y] {
            // PublicJwk checked both are base64url of the curve's size.
            point.extend(URL_SAFE_NO_PAD.decode(coordinate).unwrap_or_default());
        }
        ParsedPublicKey::new(alg, &point)
            .map_err(|_| format!("the point (x, y) is not on curve {crv}"))?;
    }
    Ok(key)
}

/// The key in jsonwebtoken's form.
pub(crate) fn decoding_key(key: &PublicJwk) -> Option<DecodingKey> {
    match key {
        PublicJwk::Ec { x, y, .. } => DecodingKey::from_ec_components(x, y).ok(),
        PublicJwk::Okp { x, .. } => DecodingKey::from_ed_components(x).ok(),
        PublicJwk::Rsa { n, e } => DecodingKey::from_rsa_components(n, e).ok(),
    }
}

/// `EC P-256`, `RSA 2048-bit`, `OKP Ed25519`: the key, for messages.
pub(crate) fn describe(key: &PublicJwk) -> String {
    match key {
        PublicJwk::Rsa { n, .. } => {
            let bytes = URL_SAFE_NO_PAD.decode(n).unwrap_or_default();
            format!("RSA {}-bit", unsigned(&bytes).len() * 8)
        }
        other => other.describe(),
    }
}

/// A big-endian unsigned integer without its leading zero bytes.
fn unsigned(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn refuses_symmetric_and_private_keys() {
        let oct = json!({"kty": "oct", "k": "c2VjcmV0"});
        assert_eq!(
            parse_jwt_authority(&oct).unwrap_err(),
            "a symmetric (oct) key cannot be a JWT authority"
        );
        let private = json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "d": "AA"});
        assert!(parse_jwt_authority(&private).unwrap_err().contains("\"d\""));
    }

    #[test]
    fn refuses_a_point_off_the_curve() {
        let zero = URL_SAFE_NO_PAD.encode([0u8; 32]);
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": zero, "y": zero});
        assert_eq!(
            parse_jwt_authority(&jwk).unwrap_err(),
            "the point (x, y) is not on curve P-256"
        );
    }

    #[test]
    fn compares_integers_without_leading_zeros() {
        let cert = Map::from_iter([
            ("kty".to_owned(), json!("RSA")),
            ("e".to_owned(), json!("AQAB")),
        ]);
        let padded = Map::from_iter([("e".to_owned(), json!("AAEAAQ"))]);
        assert_eq!(check_entry_matches_certificate(&padded, &cert), Ok(()));
        let other = Map::from_iter([("kty".to_owned(), json!("EC"))]);
        assert!(check_entry_matches_certificate(&other, &cert).is_err());
    }
}
