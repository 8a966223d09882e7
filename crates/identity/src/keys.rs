//! Agent keys: the P-256 key pair `mandate agent create` makes on the agent's
//! side, so the private key never leaves it, and the public half of an
//! existing key for `mandate agent renew`.

use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};

use crate::error::IdentityError;

/// A fresh ECDSA P-256 key: (private key as PKCS#8 PEM, public key as
/// SubjectPublicKeyInfo PEM).
pub fn generate_agent_key() -> Result<(String, String), IdentityError> {
    let key =
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| IdentityError::BadKey {
            what: "a new P-256 key",
            reason: e.to_string(),
        })?;
    Ok((key.serialize_pem(), key.public_key_pem()))
}

/// The public key (SubjectPublicKeyInfo PEM) of a PKCS#8 private key PEM
/// (ECDSA P-256 or P-384, Ed25519 or RSA).
pub fn public_key_pem_of(private_key_pem: &str) -> Result<String, IdentityError> {
    Ok(private_key(private_key_pem, "private key")?.public_key_pem())
}

/// Reads a PKCS#8 private key PEM.
pub(crate) fn private_key(pem: &str, what: &'static str) -> Result<KeyPair, IdentityError> {
    KeyPair::from_pem(pem).map_err(|e| IdentityError::BadKey {
        what,
        reason: format!("not a PKCS#8 PEM private key of a supported type ({e})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_key_of_a_generated_key_is_the_one_returned_with_it() {
        let (private, public) = generate_agent_key().unwrap();
        assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));
        assert_eq!(public_key_pem_of(&private).unwrap(), public);
    }

    #[test]
    fn two_generated_keys_differ() {
        assert_ne!(generate_agent_key().unwrap(), generate_agent_key().unwrap());
    }

    #[test]
    fn a_public_key_is_not_a_private_key() {
        let (_, public) = generate_agent_key().unwrap();
        let err = public_key_pem_of(&public).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("private key is not usable: not a PKCS#8 PEM"),
            "{err}"
        );
    }
}
