//! Task tokens whose signature was already checked, so that the Ed25519
//! verification of a token runs once per token rather than once per call.
//!
//! The cache only ever holds what [`SigningKeys::verify`] accepted. It finds a
//! token by its signature segment (hashing a whole token on every call costs
//! more than the rest of a hit) and then compares every byte of the whole
//! token string, so a different string (a longer one, a prefix, another
//! signature) is a miss and is verified in full.
//! A hit skips the signature and the parsing only: issuer, audience, `exp` and
//! `nbf` are checked again on every call, and the key that signed must still
//! verify at `now` (a retired key past its overlap window, or a key no longer in
//! the set, makes the hit a miss).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::claims::TaskClaims;
use crate::error::TokenError;
use crate::keys::{SigningKeys, check_audience, check_time};

/// A bounded, thread-safe map from task token strings to the claims they
/// verified to. Entries expire at the token's `exp`; when full, expired entries
/// are dropped first, then arbitrary ones. Call [`VerifiedTokenCache::clear`]
/// when the signing keys change.
pub struct VerifiedTokenCache {
    capacity: usize,
    /// By [`lookup_key`].
    inner: Mutex<HashMap<Box<str>, Verified>>,
}

/// One verified token: the token, its claims, the `kid` of the key that
/// signed it, and the `ath` a DPoP proof for it carries.
struct Verified {
    token: Box<str>,
    claims: Arc<TaskClaims>,
    kid: Box<str>,
    ath: Arc<str>,
}

/// Where a token is looked up: its signature segment (all of it if it has no
/// `.`). The whole token is compared on every hit.
fn lookup_key(token: &str) -> &str {
    token
        .rsplit_once('.')
        .map_or(token, |(_, signature)| signature)
}

impl VerifiedTokenCache {
    /// A cache holding at most `capacity` tokens (0 caches nothing).
    pub fn new(capacity: usize) -> VerifiedTokenCache {
        VerifiedTokenCache {
            capacity,
            inner: Mutex::new(HashMap::new()),
        }
    }

    /// The most tokens held at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many tokens are held (expired ones included until evicted).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True if no token is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every token; the next call with each is verified in full.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// [`SigningKeys::verify`] through the cache: a token seen before is
    /// checked for issuer, audience, `exp` and `nbf` at `now` and for its key
    /// still being in `keys`, but its signature is not checked again. A token
    /// that fails verification is never remembered.
    pub fn verify(
        &self,
        keys: &SigningKeys,
        token: &str,
        now: i64,
        expected_aud: &str,
        expected_iss: &str,
    ) -> Result<Arc<TaskClaims>, TokenError> {
        self.verify_with_ath(keys, token, now, expected_aud, expected_iss)
            .map(|(claims, _)| claims)
    }

    /// [`VerifiedTokenCache::verify`], also giving the token's DPoP `ath`
    /// (computed once per token, with its signature check).
    pub(crate) fn verify_with_ath(
        &self,
        keys: &SigningKeys,
        token: &str,
        now: i64,
        expected_aud: &str,
        expected_iss: &str,
    ) -> Result<(Arc<TaskClaims>, Arc<str>), TokenError> {
        if let Some((claims, ath)) = self.get(keys, token, now) {
            check_audience(&claims, expected_aud, expected_iss)?;
            check_time(&claims, now)?;
            return Ok((claims, ath));
        }
        let (claims, kid) = keys.verify_with_kid(token, now, expected_aud, expected_iss)?;
        let claims = Arc::new(claims);
        let ath: Arc<str> = crate::dpop::access_token_hash(token).into();
        self.insert(token, Arc::clone(&claims), kid, Arc::clone(&ath), now);
        Ok((claims, ath))
    }

    /// The claims `token` verified to and its `ath`, if held and its key
    /// still verifies.
    fn get(
        &self,
        keys: &SigningKeys,
        token: &str,
        now: i64,
    ) -> Option<(Arc<TaskClaims>, Arc<str>)> {
        let mut map = self.lock();
        let key = lookup_key(token);
        let entry = map.get(key)?;
        if *entry.token != *token {
            return None;
        }
        if keys.verifies_with(&entry.kid, now) {
            return Some((Arc::clone(&entry.claims), Arc::clone(&entry.ath)));
        }
        // Its key is gone: verify again in full, which names the reason.
        map.remove(key);
        None
    }

    fn insert(&self, token: &str, claims: Arc<TaskClaims>, kid: String, ath: Arc<str>, now: i64) {
        if self.capacity == 0 {
            return;
        }
        let key = lookup_key(token);
        let mut map = self.lock();
        if map.len() >= self.capacity && !map.contains_key(key) {
            map.retain(|_, v| v.claims.exp > now);
            if map.len() >= self.capacity {
                // Full of live tokens: drop a sixteenth at random (the map's
                // iteration order), so that the next inserts find room
                // without scanning the map each time.
                let excess = map.len() + 1 - self.capacity + self.capacity / 16;
                let victims: Vec<Box<str>> = map.keys().take(excess).cloned().collect();
                for victim in victims {
                    map.remove(&victim);
                }
            }
        }
        // Another token with the same signature segment cannot have verified
        // too; if one were held, the one just verified replaces it.
        map.insert(
            key.into(),
            Verified {
                token: token.into(),
                claims,
                kid: kid.into(),
                ath,
            },
        );
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Box<str>, Verified>> {
        // Every update leaves the map consistent, so a poisoned lock is safe.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl fmt::Debug for VerifiedTokenCache {
    // Never the tokens themselves.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedTokenCache")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;
    use crate::testing::{AUD, ISS, claims};

    const NOW: i64 = 1_000;

    fn keys() -> SigningKeys {
        SigningKeys::new(SigningKey::generate().unwrap(), 3_600)
    }

    #[test]
    fn verifies_once_and_serves_the_same_claims_again() {
        let keys = keys();
        let token = keys.issue(&claims(NOW)).unwrap();
        let cache = VerifiedTokenCache::new(8);
        let first = cache.verify(&keys, &token, NOW, AUD, ISS).unwrap();
        assert_eq!(cache.len(), 1);
        let second = cache.verify(&keys, &token, NOW + 1, AUD, ISS).unwrap();
        assert!(Arc::ptr_eq(&first, &second), "served from the cache");
    }

    #[test]
    fn never_serves_another_string_sharing_a_prefix() {
        let keys = keys();
        let token = keys.issue(&claims(NOW)).unwrap();
        let cache = VerifiedTokenCache::new(8);
        cache.verify(&keys, &token, NOW, AUD, ISS).unwrap();
        let longer = format!("{token}A");
        let shorter = &token[..token.len() - 1];
        let (input, signature) = token.rsplit_once('.').unwrap();
        let resigned = format!("{input}.{}", crate::jws::b64(&[0; 64]));
        // Found under the same signature segment, but not the token it signs.
        let (header, _) = input.split_once('.').unwrap();
        let mut other_claims = claims(NOW);
        other_claims.jti = "another".into();
        let other_payload = crate::jws::b64(&serde_json::to_vec(&other_claims).unwrap());
        let same_signature = format!("{header}.{other_payload}.{signature}");
        for other in [longer.as_str(), shorter, &resigned, input, &same_signature] {
            assert!(
                cache.verify(&keys, other, NOW, AUD, ISS).is_err(),
                "{other} must be verified on its own"
            );
        }
        assert_eq!(cache.len(), 1, "failures are not remembered");
    }

    #[test]
    fn refuses_an_expired_or_not_yet_valid_token_served_from_the_cache() {
        let keys = keys();
        let mut c = claims(NOW);
        c.nbf = NOW + 10;
        let token = keys.issue(&c).unwrap();
        let cache = VerifiedTokenCache::new(8);
        cache.verify(&keys, &token, NOW + 20, AUD, ISS).unwrap();
        assert_eq!(
            cache.verify(&keys, &token, NOW + 5, AUD, ISS),
            Err(TokenError::NotYetValid {
                nbf: NOW + 10,
                now: NOW + 5
            })
        );
        assert_eq!(
            cache.verify(&keys, &token, c.exp, AUD, ISS),
            Err(TokenError::Expired {
                exp: c.exp,
                now: c.exp
            })
        );
    }

    #[test]
    fn checks_issuer_and_audience_on_a_hit() {
        let keys = keys();
        let token = keys.issue(&claims(NOW)).unwrap();
        let cache = VerifiedTokenCache::new(8);
        cache.verify(&keys, &token, NOW, AUD, ISS).unwrap();
        assert!(matches!(
            cache.verify(&keys, &token, NOW, "https://other.example", ISS),
            Err(TokenError::WrongAudience { .. })
        ));
        assert!(matches!(
            cache.verify(&keys, &token, NOW, AUD, "https://other.example"),
            Err(TokenError::WrongIssuer { .. })
        ));
    }

    #[test]
    fn a_hit_needs_the_signing_key_still_in_the_set() {
        let keys = keys();
        let token = keys.issue(&claims(NOW)).unwrap();
        let cache = VerifiedTokenCache::new(8);
        cache.verify(&keys, &token, NOW, AUD, ISS).unwrap();
        let other = SigningKeys::new(SigningKey::generate().unwrap(), 3_600);
        assert!(matches!(
            cache.verify(&other, &token, NOW, AUD, ISS),
            Err(TokenError::UnknownKid { .. })
        ));
        assert!(cache.is_empty(), "the stale entry is dropped");
    }

    #[test]
    fn stays_within_its_capacity_dropping_expired_tokens_first() {
        let keys = keys();
        let cache = VerifiedTokenCache::new(4);
        let short = {
            let mut c = claims(NOW);
            c.jti = "short".into();
            c.exp = NOW + 5;
            keys.issue(&c).unwrap()
        };
        cache.verify(&keys, &short, NOW, AUD, ISS).unwrap();
        let live: Vec<String> = (0..3)
            .map(|i| {
                let mut c = claims(NOW);
                c.jti = format!("live-{i}");
                keys.issue(&c).unwrap()
            })
            .collect();
        for token in &live {
            cache.verify(&keys, token, NOW, AUD, ISS).unwrap();
        }
        assert_eq!(cache.len(), 4);
        // Full: the expired token makes room, the live ones stay.
        let mut c = claims(NOW);
        c.jti = "next".into();
        let next = keys.issue(&c).unwrap();
        cache.verify(&keys, &next, NOW + 10, AUD, ISS).unwrap();
        assert_eq!(cache.len(), 4);
        assert!(!cache.lock().contains_key(lookup_key(&short)));
        for i in 0..50 {
            let mut c = claims(NOW);
            c.jti = format!("more-{i}");
            let token = keys.issue(&c).unwrap();
            cache.verify(&keys, &token, NOW + 10, AUD, ISS).unwrap();
            assert!(cache.len() <= 4);
            assert!(cache.lock().contains_key(lookup_key(&token)));
        }
        cache.clear();
        assert!(cache.is_empty());
        let none = VerifiedTokenCache::new(0);
        none.verify(&keys, &next, NOW, AUD, ISS).unwrap();
        assert!(none.is_empty());
    }
}
