//! The arithmetic of blast-radius limits and data labels: a token bucket for
//! per-agent call rates, and the one way labels are written so that
//! `Confidential` and `confidential ` cannot slip past a policy that tests for
//! `confidential`.
//!
//! The clock is passed in: callers give a monotonic time in microseconds.

/// A token bucket: `rate` calls per second on average, bursts of up to
/// `burst` calls.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last_us: u64,
}

impl TokenBucket {
    /// A full bucket at `now_us`. A zero rate or burst is raised to one: a
    /// limit of nothing would be a kill switch, and that has its own command.
    pub fn new(rate_per_second: u32, burst: u32, now_us: u64) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate: f64::from(rate_per_second.max(1)),
            burst,
            tokens: burst,
            last_us: now_us,
        }
    }

    /// Takes one call's token at `now_us`, or says how long until one is there.
    pub fn try_take(&mut self, now_us: u64) -> Result<(), std::time::Duration> {
        let elapsed = now_us.saturating_sub(self.last_us) as f64 / 1e6;
        self.last_us = self.last_us.max(now_us);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / self.rate;
            Err(std::time::Duration::from_secs_f64(wait))
        }
    }
}

/// Longest data label, in bytes.
pub const MAX_LABEL_LEN: usize = 64;

/// A data label as Mandate stores and compares it: trimmed, lower case.
/// `None` for an empty label, one longer than [`MAX_LABEL_LEN`], or one with
/// characters other than ASCII letters, digits, `-`, `_`, `.`, `:` and `/`.
pub fn normalize_label(label: &str) -> Option<String> {
    let label = label.trim().to_ascii_lowercase();
    let ok = !label.is_empty()
        && label.len() <= MAX_LABEL_LEN
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/'));
    ok.then_some(label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let mut b = TokenBucket::new(10, 3, 0);
        for _ in 0..3 {
            assert_eq!(b.try_take(0), Ok(()));
        }
        let wait = b.try_take(0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        // 100 ms later exactly one more call fits.
        assert_eq!(b.try_take(100_000), Ok(()));
        assert!(b.try_take(100_000).is_err());
        // A long pause refills only up to the burst.
        for _ in 0..3 {
            assert_eq!(b.try_take(60_000_000), Ok(()));
        }
        assert!(b.try_take(60_000_000).is_err());
    }

    #[test]
    fn a_clock_going_back_gives_no_tokens() {
        let mut b = TokenBucket::new(1, 1, 5_000_000);
        assert_eq!(b.try_take(5_000_000), Ok(()));
        assert!(b.try_take(1_000_000).is_err());
        assert!(b.try_take(5_500_000).is_err());
        assert_eq!(b.try_take(6_000_000), Ok(()));
    }

    #[test]
    fn zero_limits_are_raised_to_one() {
        let mut b = TokenBucket::new(0, 0, 0);
        assert_eq!(b.try_take(0), Ok(()));
        assert!(b.try_take(0).is_err());
    }

    #[test]
    fn labels_are_written_one_way() {
        assert_eq!(
            normalize_label(" Confidential "),
            Some("confidential".into())
        );
        assert_eq!(normalize_label("PII:email"), Some("pii:email".into()));
        assert_eq!(normalize_label(""), None);
        assert_eq!(normalize_label("  "), None);
        assert_eq!(normalize_label("con fidential"), None);
        assert_eq!(normalize_label("confidential\u{200b}"), None);
        assert_eq!(normalize_label(&"a".repeat(65)), None);
        assert!(normalize_label(&"a".repeat(64)).is_some());
    }
}
