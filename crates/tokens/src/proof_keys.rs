//! The keys of DPoP proofs already verified, by the exact header they came in.
//!
//! An agent signs every proof with the same key, so its proofs all carry the
//! same header bytes (`typ`, `alg`, `jwk`). Reading such a header (its JSON,
//! the JWK's members, the curve point, the RFC 7638 thumbprint) is, after the
//! signature, the dearest part of a proof's checks, and its outcome depends on
//! those bytes alone. So once a proof with a header has passed the header
//! checks and its signature verified, the header's outcome is kept, keyed on
//! the whole base64url header segment: a header differing by one byte is read
//! afresh, and a refused header is never kept, so it is refused the same way
//! every time. The signature of every proof is still verified.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, ED25519, ParsedPublicKey,
};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::jwk::PublicJwk;
use crate::jws;

/// Most headers kept. Each is one agent key; when full the cache is emptied
/// (a flood of fresh keys only costs their senders the full reading).
pub(crate) const PROOF_KEY_CACHE: usize = 16_384;

/// What a proof header says, once read and checked: the algorithm, the key's
/// thumbprint and the key, ready to verify signatures.
pub(crate) struct ProofKey {
    pub(crate) alg: Algorithm,
    pub(crate) jkt: String,
    key: VerifyingKey,
}

enum VerifyingKey {
    /// EC and Ed25519 keys, parsed once (the curve point checked once).
    Parsed(ParsedPublicKey),
    /// RSA keys, through jsonwebtoken as before.
    Jwt(DecodingKey),
}

impl ProofKey {
    /// The key of `jwk` for `alg` (which [`crate::dpop`] has checked fits it);
    /// `None` if the key cannot be used, which the caller reports as a bad
    /// signature (as a key that fails inside the signature check was before).
    pub(crate) fn new(alg: Algorithm, jwk: &PublicJwk) -> Option<ProofKey> {
        let parsed = |algorithm, bytes: Vec<u8>| {
            ParsedPublicKey::new(algorithm, bytes)
                .ok()
                .map(VerifyingKey::Parsed)
        };
        let key = match (alg, jwk) {
            (Algorithm::ES256 | Algorithm::ES384, PublicJwk::Ec { x, y, .. }) => {
                let mut point = vec![0x04];
                point.extend(jws::unb64(x)?);
                point.extend(jws::unb64(y)?);
                let algorithm = if alg == Algorithm::ES256 {
                    &ECDSA_P256_SHA256_FIXED
                } else {
                    &ECDSA_P384_SHA384_FIXED
                };
                parsed(algorithm, point)?
            }
            (Algorithm::EdDSA, PublicJwk::Okp { x, .. }) => parsed(&ED25519, jws::unb64(x)?)?,
            (_, jwk) => VerifyingKey::Jwt(jwk.decoding_key()?),
        };
        Some(ProofKey {
            alg,
            jkt: jwk.thumbprint(),
            key,
        })
    }

    /// Whether `signature` (base64url, as in the proof) signs `signing_input`.
    pub(crate) fn verifies(&self, signing_input: &[u8], signature: &str) -> bool {
        match &self.key {
            VerifyingKey::Parsed(key) => {
                jws::unb64(signature).is_some_and(|sig| key.verify_sig(signing_input, &sig).is_ok())
            }
            VerifyingKey::Jwt(key) => matches!(
                jsonwebtoken::crypto::verify(signature, signing_input, key, self.alg),
                Ok(true)
            ),
        }
    }
}

/// Bounded, thread-safe map from proof header segments to their [`ProofKey`].
/// Clones share one map.
#[derive(Clone)]
pub(crate) struct ProofKeyCache {
    capacity: usize,
    inner: Arc<Mutex<HashMap<Box<str>, Arc<ProofKey>>>>,
}

impl ProofKeyCache {
    pub(crate) fn new(capacity: usize) -> ProofKeyCache {
        ProofKeyCache {
            capacity,
            inner: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The key of a header seen (and verified) before.
    pub(crate) fn get(&self, header: &str) -> Option<Arc<ProofKey>> {
        self.lock().get(header).cloned()
    }

    /// Remembers `key` for `header`; call only once a proof with it verified.
    pub(crate) fn insert(&self, header: &str, key: Arc<ProofKey>) {
        if self.capacity == 0 {
            return;
        }
        let mut map = self.lock();
        if map.len() >= self.capacity {
            map.clear();
        }
        map.insert(header.into(), key);
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Box<str>, Arc<ProofKey>>> {
        // Every update leaves the map consistent, so a poisoned lock is safe.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl fmt::Debug for ProofKeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProofKeyCache")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish()
    }
}
