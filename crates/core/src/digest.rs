//! Keyed digests of request bodies for the audit log.
//!
//! The log must let an auditor match a record to a request they hold without
//! storing the request itself (it may carry personal or secret data). An
//! HMAC-SHA-256 under a node key does that: equal requests give equal digests,
//! and without the key nobody can test guesses against the log.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Computes HMAC-SHA-256 digests of request bytes under one key.
#[derive(Clone)]
pub struct RequestDigester {
    mac: Hmac<Sha256>,
}

impl RequestDigester {
    /// A digester keyed with `key` (32 random bytes are recommended).
    pub fn new(key: &[u8]) -> RequestDigester {
        // HMAC accepts keys of any length, so this cannot fail.
        let mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
        RequestDigester { mac }
    }

    /// The digest of `bytes`, as lowercase hex.
    pub fn digest_hex(&self, bytes: &[u8]) -> String {
        let mut mac = self.mac.clone();
        mac.update(bytes);
        hex::encode(mac.finalize().into_bytes())
    }

    /// The digest of `value` serialized as JSON, streamed into the MAC without
    /// building the serialized bytes.
    pub fn digest_json_hex(&self, value: &impl serde::Serialize) -> String {
        struct MacWriter(Hmac<Sha256>);
        impl std::io::Write for MacWriter {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.update(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut writer = MacWriter(self.mac.clone());
        // Writing into a MAC cannot fail; a value that cannot serialize
        // (never the case for JSON values) digests what was written so far.
        let _ = serde_json::to_writer(&mut writer, value);
        hex::encode(writer.0.finalize().into_bytes())
    }
}

impl std::fmt::Debug for RequestDigester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.write_str("RequestDigester { .. }")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_rfc4231_test_case_2() {
        // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
        let d = RequestDigester::new(b"Jefe");
        assert_eq!(
            d.digest_hex(b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn streamed_json_digest_equals_the_digest_of_its_bytes() {
        let d = RequestDigester::new(&[3; 32]);
        let v = serde_json::json!({"subject": {"type": "user", "id": "a"}, "n": [1, 2]});
        assert_eq!(
            d.digest_json_hex(&v),
            d.digest_hex(&serde_json::to_vec(&v).unwrap())
        );
    }

    #[test]
    fn different_keys_give_different_digests() {
        let a = RequestDigester::new(&[1; 32]).digest_hex(b"same request");
        let b = RequestDigester::new(&[2; 32]).digest_hex(b"same request");
        assert_ne!(a, b);
        assert!(!format!("{:?}", RequestDigester::new(&[1; 32])).contains('1'));
    }
}
