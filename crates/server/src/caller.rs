//! What the server knows about the caller of a request beyond its headers:
//! which listener it came in on, the client certificate it presented over
//! TLS, and whether it holds the admin credential.

use std::sync::Arc;

use axum::http::{HeaderMap, header};
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The listener a request arrived on: its base URL as clients address it
/// (DPoP proofs name it in `htu`).
#[derive(Debug, Clone)]
pub(crate) struct Listener {
    pub(crate) base: Arc<str>,
}

/// The certificate chain a TLS client presented (leaf first), if any. The
/// TLS layer proved the client holds the leaf's key; whether the chain is a
/// valid SVID is checked where it is used.
#[derive(Debug, Clone, Default)]
pub(crate) struct PeerCertificates(pub(crate) Option<Arc<Vec<CertificateDer<'static>>>>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PeerCertificates {
    type Rejection = std::convert::Infallible;

    /// The TLS client's chain; none on the plain listener.
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<PeerCertificates>()
            .cloned()
            .unwrap_or_default())
    }
}

/// The prefix of admin credentials, so a leaked one is recognisable.
pub(crate) const ADMIN_PREFIX: &str = "mandate_admin_";

/// SHA-256 (hex) of an admin credential, as stored. The credential is 256
/// random bits, so a fast hash is enough: there is nothing to brute-force.
pub(crate) fn credential_hash(credential: &str) -> String {
    hex::encode(Sha256::digest(credential.as_bytes()))
}

/// A new admin credential: the prefix and 32 random bytes, base64url.
pub(crate) fn new_admin_credential() -> anyhow::Result<String> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(format!(
        "{ADMIN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// The credential of an `Authorization: <scheme> <value>` header, if the
/// scheme is `scheme` (compared without case, RFC 9110 §11.1).
pub(crate) fn authorization<'a>(headers: &'a HeaderMap, scheme: &str) -> Option<&'a str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(s, _)| s.eq_ignore_ascii_case(scheme))
        .map(|(_, value)| value.trim())
}

/// Whether `presented` hashes to one of `hashes`, compared in constant time.
pub(crate) fn matches_admin(presented: &str, hashes: &[String]) -> bool {
    let hash = credential_hash(presented);
    hashes.iter().fold(false, |found, h| {
        found | bool::from(h.as_bytes().ct_eq(hash.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_credentials_are_random_and_match_only_their_hash() {
        let a = new_admin_credential().unwrap();
        let b = new_admin_credential().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(ADMIN_PREFIX) && a.len() == ADMIN_PREFIX.len() + 43);
        let hashes = vec![credential_hash(&a)];
        assert!(matches_admin(&a, &hashes));
        assert!(!matches_admin(&b, &hashes));
        assert!(
            !matches_admin(&hashes[0], &hashes),
            "the hash is not the credential"
        );
    }

    #[test]
    fn authorization_scheme_is_case_insensitive() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "dpop abc".parse().unwrap());
        assert_eq!(authorization(&h, "DPoP"), Some("abc"));
        assert_eq!(authorization(&h, "Bearer"), None);
    }
}
