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

/// SHA-256 (hex) of a public key given as SubjectPublicKeyInfo PEM: the same
/// value [`crate::VerifiedX509Svid::public_key_sha256`] gives for a
/// certificate of that key.
pub fn public_key_sha256(public_key_pem: &str) -> Result<String, IdentityError> {
    let bad = |reason: String| IdentityError::BadKey {
        what: "public key",
        reason,
    };
    use rustls_pki_types::SubjectPublicKeyInfoDer;
    use rustls_pki_types::pem::PemObject;
    let spki = SubjectPublicKeyInfoDer::from_pem_slice(public_key_pem.as_bytes())
        .map_err(|e| bad(format!("not a PUBLIC KEY PEM block ({e})")))?;
    Ok(crate::x509_svid::hex_sha256(spki.as_ref()))
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
    fn a_key_hashes_the_same_as_the_certificate_issued_for_it() {
        let ca = crate::BuiltinCa::generate("example.org", 1_800_000_000, 1).unwrap();
        let (_, public) = generate_agent_key().unwrap();
        let id = "spiffe://example.org/agent/a".parse().unwrap();
        let cert = ca
            .issue_x509_svid(&id, &public, 1_800_000_000, 600)
            .unwrap();
        let mut bundles = crate::TrustBundles::default();
        bundles.insert(ca.bundle());
        let chain = crate::certificates_from_pem(&cert).unwrap();
        let verified = crate::verify_x509_svid(&bundles, &chain, 1_800_000_000).unwrap();
        assert_eq!(
            public_key_sha256(&public).unwrap(),
            verified.public_key_sha256
        );
        let (_, other) = generate_agent_key().unwrap();
        assert_ne!(
            public_key_sha256(&other).unwrap(),
            verified.public_key_sha256
        );
        assert!(public_key_sha256("not pem").is_err());
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
