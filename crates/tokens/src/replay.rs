//! Memory of DPoP proof `jti`s already seen, so that a captured proof cannot be
//! played again (RFC 9449 §11.1).
//!
//! The verifier only asks; where the memory lives is the caller's choice. One
//! node uses [`MemoryReplayGuard`]; several nodes behind a load balancer need a
//! shared implementation (the store), or a replay can land on another node.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

/// The answer of a [`ReplayGuard`] about one `jti`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JtiCheck {
    /// Not seen before; now remembered.
    Fresh,
    /// Seen before and not yet forgotten: a replay.
    Replayed,
    /// The guard is full of unexpired entries and cannot remember another;
    /// the proof is refused (fail closed).
    Full,
}

/// Remembers proof `jti`s until they expire.
pub trait ReplayGuard: Send + Sync {
    /// Checks `jti` at `now` and, if it is fresh, remembers it until `until`
    /// (inclusive; after that the proof's `iat` is out of the window anyway).
    fn check_and_remember(&self, jti: &str, until: i64, now: i64) -> JtiCheck;
}

/// A bounded in-memory [`ReplayGuard`] for tests and single nodes. Expired
/// entries are dropped as new ones arrive; when `capacity` unexpired entries
/// are held, further proofs are refused rather than old entries forgotten.
#[derive(Debug)]
pub struct MemoryReplayGuard {
    capacity: usize,
    inner: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    until: HashMap<String, i64>,
    by_expiry: BTreeSet<(i64, String)>,
}

impl MemoryReplayGuard {
    /// A guard holding at most `capacity` unexpired `jti`s.
    pub fn new(capacity: usize) -> MemoryReplayGuard {
        MemoryReplayGuard {
            capacity,
            inner: Mutex::new(Seen::default()),
        }
    }

    /// How many `jti`s are held (expired ones included until the next check).
    pub fn len(&self) -> usize {
        self.lock().until.len()
    }

    /// True if no `jti` is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        // A panic elsewhere cannot leave the maps half-updated in a way that
        // admits a replay, so a poisoned lock is still safe to use.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ReplayGuard for MemoryReplayGuard {
    fn check_and_remember(&self, jti: &str, until: i64, now: i64) -> JtiCheck {
        let mut seen = self.lock();
        while let Some(first) = seen.by_expiry.first() {
            if first.0 >= now {
                break;
            }
            let (_, old) = seen.by_expiry.pop_first().expect("first exists");
            seen.until.remove(&old);
        }
        if seen.until.contains_key(jti) {
            return JtiCheck::Replayed;
        }
        if seen.until.len() >= self.capacity {
            return JtiCheck::Full;
        }
        seen.until.insert(jti.to_owned(), until);
        seen.by_expiry.insert((until, jti.to_owned()));
        JtiCheck::Fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jti_is_fresh_once_then_replayed_until_it_expires() {
        let guard = MemoryReplayGuard::new(10);
        assert_eq!(guard.check_and_remember("a", 160, 100), JtiCheck::Fresh);
        assert_eq!(guard.check_and_remember("a", 170, 110), JtiCheck::Replayed);
        assert_eq!(guard.check_and_remember("a", 220, 160), JtiCheck::Replayed);
        assert_eq!(guard.check_and_remember("a", 221, 161), JtiCheck::Fresh);
    }

    #[test]
    fn a_full_guard_refuses_instead_of_forgetting() {
        let guard = MemoryReplayGuard::new(2);
        assert_eq!(guard.check_and_remember("a", 160, 100), JtiCheck::Fresh);
        assert_eq!(guard.check_and_remember("b", 160, 100), JtiCheck::Fresh);
        assert_eq!(guard.check_and_remember("c", 160, 100), JtiCheck::Full);
        assert_eq!(guard.check_and_remember("a", 160, 100), JtiCheck::Replayed);
        // Once the first entries expire there is room again.
        assert_eq!(guard.check_and_remember("c", 230, 170), JtiCheck::Fresh);
        assert_eq!(guard.len(), 1);
    }
}
