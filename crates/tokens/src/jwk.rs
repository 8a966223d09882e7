//! Public JSON Web Keys (RFC 7517): the keys in a DPoP proof's header, the keys
//! Mandate publishes at `/.well-known/jwks.json`, and their RFC 7638 thumbprints,
//! which `cnf.jkt` carries.
//!
//! A [`PublicJwk`] is public by construction: parsing refuses any private member
//! (`d`, `p`, `q`, `dp`, `dq`, `qi`, `oth`) and symmetric (`oct`) keys.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Members that only a private (or symmetric) key has.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// A JWK that cannot be used as a public signature key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwkError {
    /// The JWK is not a JSON object.
    #[error("a JWK must be a JSON object")]
    NotAnObject,
    /// The JWK carries private key material.
    #[error("the JWK carries the private member {member:?}; only public keys are accepted")]
    PrivateMember {
        /// The private member found.
        member: &'static str,
    },
    /// `kty` is missing or names a type without public keys, or an unknown one.
    #[error("unsupported JWK key type {kty:?} (EC, OKP and RSA are supported)")]
    UnsupportedKeyType {
        /// The `kty`, if any.
        kty: Option<String>,
    },
    /// `crv` names a curve not supported for this key type.
    #[error("unsupported curve {crv:?} for key type {kty}")]
    UnsupportedCurve {
        /// The key type.
        kty: &'static str,
        /// The `crv`, if any.
        crv: Option<String>,
    },
    /// A required member is missing or is not base64url of the right length.
    #[error("JWK member {member:?} is missing or is not valid base64url of the right size")]
    BadMember {
        /// The member at fault.
        member: &'static str,
    },
}

/// A public key as a JWK, holding exactly the members RFC 7638 hashes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kty")]
pub enum PublicJwk {
    /// An elliptic-curve key (P-256 or P-384), RFC 7518 §6.2.
    #[serde(rename = "EC")]
    Ec {
        /// `P-256` or `P-384`.
        crv: String,
        /// The x coordinate, base64url.
        x: String,
        /// The y coordinate, base64url.
        y: String,
    },
    /// An octet key pair (Ed25519), RFC 8037.
    #[serde(rename = "OKP")]
    Okp {
        /// `Ed25519`.
        crv: String,
        /// The public key, base64url.
        x: String,
    },
    /// An RSA key of at least 2048 bits, RFC 7518 §6.3.
    #[serde(rename = "RSA")]
    Rsa {
        /// The modulus, base64url.
        n: String,
        /// The exponent, base64url.
        e: String,
    },
}

impl PublicJwk {
    /// Reads a JWK from JSON, refusing private members, symmetric keys,
    /// unsupported curves and coordinates of the wrong size. Other members
    /// (`alg`, `kid`, `use`, ...) are ignored.
    pub fn from_json(value: &Value) -> Result<PublicJwk, JwkError> {
        let obj = value.as_object().ok_or(JwkError::NotAnObject)?;
        if let Some(member) = PRIVATE_MEMBERS.into_iter().find(|m| obj.contains_key(*m)) {
            return Err(JwkError::PrivateMember { member });
        }
        let text = |member: &'static str| -> Result<String, JwkError> {
            obj.get(member)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or(JwkError::BadMember { member })
        };
        let sized = |member: &'static str, len: Option<usize>| -> Result<String, JwkError> {
            let value = text(member)?;
            let bytes = URL_SAFE_NO_PAD
                .decode(&value)
                .map_err(|_| JwkError::BadMember { member })?;
            match len {
                Some(len) if bytes.len() != len => Err(JwkError::BadMember { member }),
                _ if bytes.is_empty() => Err(JwkError::BadMember { member }),
                _ => Ok(value),
            }
        };
        let crv = obj.get("crv").and_then(Value::as_str);
        match obj.get("kty").and_then(Value::as_str) {
            Some("EC") => {
                let size = match crv {
                    Some("P-256") => 32,
                    Some("P-384") => 48,
                    other => {
                        return Err(JwkError::UnsupportedCurve {
                            kty: "EC",
                            crv: other.map(str::to_owned),
                        });
                    }
                };
                Ok(PublicJwk::Ec {
                    crv: text("crv")?,
                    x: sized("x", Some(size))?,
                    y: sized("y", Some(size))?,
                })
            }
            Some("OKP") => match crv {
                Some("Ed25519") => Ok(PublicJwk::Okp {
                    crv: text("crv")?,
                    x: sized("x", Some(32))?,
                }),
                other => Err(JwkError::UnsupportedCurve {
                    kty: "OKP",
                    crv: other.map(str::to_owned),
                }),
            },
            Some("RSA") => {
                let n = sized("n", None)?;
                // 2048 bits at least; aws-lc refuses smaller moduli anyway.
                if URL_SAFE_NO_PAD.decode(&n).map_or(0, |b| b.len()) < 256 {
                    return Err(JwkError::BadMember { member: "n" });
                }
                Ok(PublicJwk::Rsa {
                    n,
                    e: sized("e", None)?,
                })
            }
            other => Err(JwkError::UnsupportedKeyType {
                kty: other.map(str::to_owned),
            }),
        }
    }

    /// The key's RFC 7638 SHA-256 thumbprint; see [`jwk_thumbprint`].
    pub fn thumbprint(&self) -> String {
        jwk_thumbprint(self)
    }

    /// `EC P-256`, `OKP Ed25519` or `RSA`, for messages.
    pub fn describe(&self) -> String {
        match self {
            PublicJwk::Ec { crv, .. } => format!("EC {crv}"),
            PublicJwk::Okp { crv, .. } => format!("OKP {crv}"),
            PublicJwk::Rsa { .. } => "RSA".to_owned(),
        }
    }

    /// The key in jsonwebtoken's form, for signature checks.
    pub(crate) fn decoding_key(&self) -> Option<DecodingKey> {
        match self {
            PublicJwk::Ec { x, y, .. } => DecodingKey::from_ec_components(x, y).ok(),
            PublicJwk::Okp { x, .. } => DecodingKey::from_ed_components(x).ok(),
            PublicJwk::Rsa { n, e } => DecodingKey::from_rsa_components(n, e).ok(),
        }
    }
}

impl<'de> Deserialize<'de> for PublicJwk {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        PublicJwk::from_json(&value).map_err(serde::de::Error::custom)
    }
}

/// The RFC 7638 JWK thumbprint with SHA-256: the hash of the canonical JSON of
/// the required members only (EC `crv,kty,x,y`; OKP `crv,kty,x`; RSA `e,kty,n`),
/// in lexicographic order without whitespace, as base64url without padding.
pub fn jwk_thumbprint(jwk: &PublicJwk) -> String {
    let s = |v: &str| Value::from(v).to_string();
    let canonical = match jwk {
        PublicJwk::Ec { crv, x, y } => {
            format!(
                r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#,
                s(crv),
                s(x),
                s(y)
            )
        }
        PublicJwk::Okp { crv, x } => format!(r#"{{"crv":{},"kty":"OKP","x":{}}}"#, s(crv), s(x)),
        PublicJwk::Rsa { n, e } => format!(r#"{{"e":{},"kty":"RSA","n":{}}}"#, s(e), s(n)),
    };
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// One published verification key: a public JWK with its `kid`, `use` and `alg`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishedJwk {
    /// The key.
    #[serde(flatten)]
    pub key: PublicJwk,
    /// Its key ID, as in the `kid` header of tokens it signs.
    pub kid: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: &'static str,
    /// Always `EdDSA`.
    pub alg: &'static str,
}

/// A JWK Set (RFC 7517 §5), as served at `/.well-known/jwks.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JwkSet {
    /// The keys, the active one first.
    pub keys: Vec<PublishedJwk>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches_the_rsa_example_of_rfc7638() {
        // RFC 7638 §3.1; `alg` and `kid` are not hashed.
        let jwk = PublicJwk::from_json(&json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        }))
        .unwrap();
        assert_eq!(
            jwk_thumbprint(&jwk),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn matches_the_ec_example_of_rfc9449() {
        // RFC 9449 §4.1 (the proof's jwk) and §6.1 (its jkt).
        let jwk = PublicJwk::from_json(&json!({
            "kty": "EC",
            "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
            "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA",
            "crv": "P-256"
        }))
        .unwrap();
        assert_eq!(
            jwk_thumbprint(&jwk),
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
        );
    }

    #[test]
    fn matches_the_ed25519_example_of_rfc8037() {
        // RFC 8037 Appendix A.3.
        let jwk = PublicJwk::from_json(&json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        }))
        .unwrap();
        assert_eq!(
            jwk_thumbprint(&jwk),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn agrees_with_jsonwebtoken_on_member_order_and_optional_members() {
        let value = json!({
            "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA",
            "use": "sig",
            "crv": "P-256",
            "kid": "k1",
            "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
            "kty": "EC"
        });
        let theirs: jsonwebtoken::jwk::Jwk = serde_json::from_value(value.clone()).unwrap();
        let theirs = theirs
            .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
            .unwrap();
        assert_eq!(
            jwk_thumbprint(&PublicJwk::from_json(&value).unwrap()),
            theirs
        );
    }

    #[test]
    fn refuses_a_jwk_carrying_a_private_key() {
        let jwk = json!({
            "kty": "OKP", "crv": "Ed25519",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
            "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
        });
        assert_eq!(
            PublicJwk::from_json(&jwk),
            Err(JwkError::PrivateMember { member: "d" })
        );
        assert!(serde_json::from_value::<PublicJwk>(jwk).is_err());
    }

    #[test]
    fn refuses_symmetric_unknown_and_malformed_keys() {
        assert_eq!(
            PublicJwk::from_json(&json!({"kty": "oct", "k": "c2VjcmV0"})),
            Err(JwkError::PrivateMember { member: "k" })
        );
        assert!(matches!(
            PublicJwk::from_json(&json!({"kty": "DSA"})),
            Err(JwkError::UnsupportedKeyType { .. })
        ));
        assert!(matches!(
            PublicJwk::from_json(&json!({"kty": "EC", "crv": "secp256k1", "x": "", "y": ""})),
            Err(JwkError::UnsupportedCurve { kty: "EC", .. })
        ));
        assert_eq!(
            PublicJwk::from_json(&json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"})),
            Err(JwkError::BadMember { member: "x" })
        );
        assert_eq!(
            PublicJwk::from_json(&json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"})),
            Err(JwkError::BadMember { member: "n" })
        );
    }
}
