//! The client half of DPoP (RFC 9449 §4.2): an agent's proof-of-possession key
//! and the proofs it signs for each request.
//!
//! Agents hold a P-256 key (ES256) or an Ed25519 key (EdDSA), stored as an
//! unencrypted PKCS#8 PEM `PRIVATE KEY` block (what `mandate agent create`
//! writes). Signing needs no clock: the caller passes `now`.

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::dpop::DPOP_TYP;
use crate::error::TokenError;
use crate::jwk::PublicJwk;
use crate::jws;

/// The PEM label of an unencrypted PKCS#8 private key (RFC 7468 §10).
const PKCS8_LABEL: &str = "PRIVATE KEY";

/// An agent's DPoP key: signs proofs with ES256 (P-256) or EdDSA (Ed25519).
pub struct DpopKey {
    pair: Pair,
    jwk: PublicJwk,
    /// The proof header, base64url: the same for every proof of this key.
    header: String,
}

enum Pair {
    Es256(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl DpopKey {
    /// A fresh P-256 key, signing ES256 proofs.
    pub fn generate_es256() -> Result<DpopKey, TokenError> {
        EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map(|pair| DpopKey::from_pair(Pair::Es256(pair)))
            .map_err(|_| TokenError::KeyGeneration)
    }

    /// A fresh Ed25519 key, signing EdDSA proofs.
    pub fn generate_ed25519() -> Result<DpopKey, TokenError> {
        Ed25519KeyPair::generate()
            .map(|pair| DpopKey::from_pair(Pair::Ed25519(pair)))
            .map_err(|_| TokenError::KeyGeneration)
    }

    /// A key from an unencrypted PKCS#8 DER document holding a P-256 or an
    /// Ed25519 private key.
    pub fn from_pkcs8(der: &[u8]) -> Result<DpopKey, TokenError> {
        if let Ok(pair) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der) {
            return Ok(DpopKey::from_pair(Pair::Es256(pair)));
        }
        Ed25519KeyPair::from_pkcs8(der)
            .map(|pair| DpopKey::from_pair(Pair::Ed25519(pair)))
            .map_err(|e| TokenError::BadDpopKey {
                reason: e.description_(),
            })
    }

    /// A key from a PEM `PRIVATE KEY` block (unencrypted PKCS#8) holding a
    /// P-256 or an Ed25519 private key. Text around the block is ignored.
    pub fn from_pkcs8_pem(pem: &str) -> Result<DpopKey, TokenError> {
        DpopKey::from_pkcs8(&pem_decode(pem)?)
    }

    /// The private key as a PEM `PRIVATE KEY` block (PKCS#8: v1 for P-256, v2
    /// for Ed25519), for the agent to store.
    pub fn to_pkcs8_pem(&self) -> Result<String, TokenError> {
        let doc = match &self.pair {
            Pair::Es256(pair) => pair.to_pkcs8v1(),
            Pair::Ed25519(pair) => pair.to_pkcs8(),
        }
        .map_err(|_| TokenError::KeyGeneration)?;
        Ok(pem_encode(doc.as_ref()))
    }

    /// The JWS algorithm of this key's proofs: `ES256` or `EdDSA`.
    pub fn alg(&self) -> &'static str {
        match self.pair {
            Pair::Es256(_) => "ES256",
            Pair::Ed25519(_) => "EdDSA",
        }
    }

    /// The public key as a JWK (what each proof's header carries).
    pub fn public_jwk(&self) -> PublicJwk {
        self.jwk.clone()
    }

    /// The RFC 7638 thumbprint of the public key: the `cnf.jkt` of tokens
    /// bound to this key.
    pub fn thumbprint(&self) -> String {
        self.jwk.thumbprint()
    }

    /// A DPoP proof for one request: header `typ` `dpop+jwt`, this key's `alg`
    /// and public `jwk`; claims a random `jti`, `htm` = `method`, `htu` = `uri`,
    /// `iat` = `now` and, when the request carries `access_token`, `ath` (its
    /// base64url SHA-256).
    ///
    /// # Panics
    /// If aws-lc cannot draw random bytes or sign, which it only fails to do
    /// when the process is out of memory or the OS has no entropy source.
    pub fn proof(&self, method: &str, uri: &str, access_token: Option<&str>, now: i64) -> String {
        let mut claims = json!({"jti": random_jti(), "htm": method, "htu": uri, "iat": now});
        if let Some(token) = access_token {
            claims["ath"] = jws::b64(&Sha256::digest(token.as_bytes())).into();
        }
        let mut proof = format!(
            "{}.{}",
            self.header,
            jws::b64(claims.to_string().as_bytes())
        );
        let signature = self.sign(proof.as_bytes());
        proof.push('.');
        proof.push_str(&jws::b64(&signature));
        proof
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        match &self.pair {
            Pair::Es256(pair) => pair
                .sign(&SystemRandom::new(), message)
                .expect("aws-lc signs with a valid P-256 key")
                .as_ref()
                .to_vec(),
            Pair::Ed25519(pair) => pair.sign(message).as_ref().to_vec(),
        }
    }

    fn from_pair(pair: Pair) -> DpopKey {
        let jwk = match &pair {
            // An uncompressed SEC1 point: 0x04, x, y.
            Pair::Es256(p) => {
                let point = p.public_key().as_ref();
                PublicJwk::Ec {
                    crv: "P-256".to_owned(),
                    x: jws::b64(&point[1..33]),
                    y: jws::b64(&point[33..65]),
                }
            }
            Pair::Ed25519(p) => PublicJwk::Okp {
                crv: "Ed25519".to_owned(),
                x: jws::b64(p.public_key().as_ref()),
            },
        };
        let alg = match pair {
            Pair::Es256(_) => "ES256",
            Pair::Ed25519(_) => "EdDSA",
        };
        let header = json!({"typ": DPOP_TYP, "alg": alg, "jwk": jwk});
        DpopKey {
            header: jws::b64(header.to_string().as_bytes()),
            pair,
            jwk,
        }
    }
}

impl fmt::Debug for DpopKey {
    // Never the private key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopKey")
            .field("alg", &self.alg())
            .field("jkt", &self.thumbprint())
            .finish_non_exhaustive()
    }
}

/// A random UUID (version 4) in its hyphenated form, from aws-lc's generator.
fn random_jti() -> String {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).expect("aws-lc draws random bytes");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|byte| format!("{byte:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The DER inside the `PRIVATE KEY` PEM block of `pem` (RFC 7468); other
/// blocks (a certificate, comments) around it are ignored.
fn pem_decode(pem: &str) -> Result<Vec<u8>, TokenError> {
    let begin = format!("-----BEGIN {PKCS8_LABEL}-----");
    let Some(start) = pem.find(&begin) else {
        // Name the block found instead (an `EC PRIVATE KEY`, an encrypted key).
        let label = pem
            .split_once("-----BEGIN ")
            .and_then(|(_, rest)| rest.split_once("-----"))
            .map(|(label, _)| label.to_owned());
        return Err(match label {
            Some(label) => TokenError::PemLabel { label },
            None => TokenError::BadPem {
                reason: "no -----BEGIN PRIVATE KEY----- line",
            },
        });
    };
    let rest = &pem[start + begin.len()..];
    let end = rest
        .find(&format!("-----END {PKCS8_LABEL}-----"))
        .ok_or(TokenError::BadPem {
            reason: "no -----END PRIVATE KEY----- line",
        })?;
    let text: String = rest[..end].split_ascii_whitespace().collect();
    STANDARD.decode(text).map_err(|_| TokenError::BadPem {
        reason: "the body is not base64",
    })
}

/// `der` as a PEM `PRIVATE KEY` block, 64 characters a line.
fn pem_encode(der: &[u8]) -> String {
    let text = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {PKCS8_LABEL}-----\n");
    for line in text.as_bytes().chunks(64) {
        // Base64 is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {PKCS8_LABEL}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dpop::{BoundToken, DpopRequest, DpopVerifier};
    use crate::replay::MemoryReplayGuard;

    const NOW: i64 = 1_800_000_000;
    const URI: &str = "https://gateway.example/mcp";

    fn verify(key: &DpopKey, proof: &str, token: Option<&str>) -> Result<String, String> {
        let jkt = key.thumbprint();
        let request = DpopRequest {
            proof: Some(proof),
            method: "POST",
            uri: URI,
            token: token.map(|access_token| BoundToken {
                access_token,
                jkt: &jkt,
            }),
            now: NOW,
        };
        DpopVerifier::default()
            .verify(&request, &MemoryReplayGuard::new(10))
            .map(|p| p.jkt)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn proofs_of_both_algorithms_verify() {
        for key in [
            DpopKey::generate_es256().unwrap(),
            DpopKey::generate_ed25519().unwrap(),
        ] {
            let proof = key.proof("POST", URI, Some("the.token.here"), NOW);
            assert_eq!(
                verify(&key, &proof, Some("the.token.here")),
                Ok(key.thumbprint())
            );
            let proof = key.proof("POST", URI, None, NOW);
            assert_eq!(verify(&key, &proof, None), Ok(key.thumbprint()));
            // Without ath the proof cannot accompany a token.
            assert!(verify(&key, &proof, Some("the.token.here")).is_err());
        }
    }

    #[test]
    fn proofs_carry_the_rfc9449_header_and_a_fresh_uuid_jti() {
        let key = DpopKey::generate_es256().unwrap();
        let proof = key.proof("GET", URI, None, NOW);
        let parts: Vec<&str> = proof.split('.').collect();
        let header: serde_json::Value =
            serde_json::from_slice(&jws::unb64(parts[0]).unwrap()).unwrap();
        assert_eq!(header["typ"], "dpop+jwt");
        assert_eq!(header["alg"], "ES256");
        assert_eq!(
            PublicJwk::from_json(&header["jwk"]).unwrap(),
            key.public_jwk()
        );
        let claims: serde_json::Value =
            serde_json::from_slice(&jws::unb64(parts[1]).unwrap()).unwrap();
        let jti = claims["jti"].as_str().unwrap();
        assert_eq!(jti.len(), 36);
        assert_eq!(&jti[14..15], "4");
        assert!(claims.get("ath").is_none());
        let again: serde_json::Value = serde_json::from_slice(
            &jws::unb64(key.proof("GET", URI, None, NOW).split('.').nth(1).unwrap()).unwrap(),
        )
        .unwrap();
        assert_ne!(again["jti"], claims["jti"]);
    }

    #[test]
    fn reads_an_es256_pkcs8_pem_generated_by_aws_lc() {
        let der =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let pem = format!("# agent key\n{}", pem_encode(der.as_ref()));
        let key = DpopKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(key.alg(), "ES256");
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der.as_ref()).unwrap();
        assert_eq!(&pair.public_key().as_ref()[1..33], {
            let PublicJwk::Ec { x, .. } = key.public_jwk() else {
                panic!("an EC key")
            };
            jws::unb64(&x).unwrap()
        });
        let proof = key.proof("POST", URI, Some("t"), NOW);
        assert!(verify(&key, &proof, Some("t")).is_ok());
    }

    #[test]
    fn pem_round_trip_keeps_the_key() {
        for key in [
            DpopKey::generate_es256().unwrap(),
            DpopKey::generate_ed25519().unwrap(),
        ] {
            let pem = key.to_pkcs8_pem().unwrap();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
            let back = DpopKey::from_pkcs8_pem(&pem).unwrap();
            assert_eq!(back.thumbprint(), key.thumbprint());
            assert_eq!(back.alg(), key.alg());
            // CRLF line ends are whitespace like any other.
            let crlf = DpopKey::from_pkcs8_pem(&pem.replace('\n', "\r\n")).unwrap();
            assert_eq!(crlf.thumbprint(), key.thumbprint());
        }
    }

    #[test]
    fn refuses_what_is_not_an_unencrypted_p256_or_ed25519_pkcs8_key() {
        assert!(matches!(
            DpopKey::from_pkcs8_pem("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"),
            Err(TokenError::PemLabel { label }) if label == "EC PRIVATE KEY"
        ));
        assert!(matches!(
            DpopKey::from_pkcs8_pem("no pem here"),
            Err(TokenError::BadPem { .. })
        ));
        assert!(matches!(
            DpopKey::from_pkcs8_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n"),
            Err(TokenError::BadPem { .. })
        ));
        assert!(matches!(
            DpopKey::from_pkcs8_pem("-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----"),
            Err(TokenError::BadPem { .. })
        ));
        assert!(matches!(
            DpopKey::from_pkcs8_pem(&pem_encode(b"not a key")),
            Err(TokenError::BadDpopKey { .. })
        ));
        // A P-384 key is PKCS#8, but not one a proof may use here.
        let p384 = EcdsaKeyPair::generate_pkcs8(
            &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            &SystemRandom::new(),
        )
        .unwrap();
        assert!(matches!(
            DpopKey::from_pkcs8(p384.as_ref()),
            Err(TokenError::BadDpopKey { .. })
        ));
    }

    #[test]
    fn debug_shows_no_private_key() {
        let key = DpopKey::generate_ed25519().unwrap();
        let shown = format!("{key:?}");
        assert!(shown.contains(&key.thumbprint()), "{shown}");
        assert!(shown.contains("EdDSA"));
    }
}
