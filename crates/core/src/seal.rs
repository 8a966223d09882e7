//! Sealing a chain's head with a key the database never sees.
//!
//! The hash chain alone proves that records were not changed one by one. It
//! cannot stop someone who may write to the database from recomputing every
//! hash after an edit, or from deleting a chain whole. So each node keeps a
//! secret key in its data directory and stores, beside its chain head, an
//! HMAC of that head. Without the key nobody can make a rewritten chain end in
//! a correctly sealed head, and a node whose chain was registered at its first
//! start cannot have that chain vanish unnoticed.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::audit::ChainHead;

/// Computes and checks head seals for one node's key.
#[derive(Clone)]
pub struct HeadSealer {
    mac: Hmac<Sha256>,
}

impl HeadSealer {
    /// A sealer keyed with `key` (32 random bytes are recommended).
    pub fn new(key: &[u8]) -> HeadSealer {
        let mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
        HeadSealer { mac }
    }

    fn mac_of(&self, node_id: &str, head: &ChainHead) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        for part in [
            b"mandate-audit-head-v1".as_slice(),
            node_id.as_bytes(),
            &head.seq.to_be_bytes(),
            &head.hash,
        ] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    /// The seal of `head` for `node_id`, as lowercase hex.
    pub fn seal(&self, node_id: &str, head: &ChainHead) -> String {
        hex::encode(self.mac_of(node_id, head).finalize().into_bytes())
    }

    /// Whether `seal_hex` is the seal of `head` for `node_id` (constant time).
    pub fn verify(&self, node_id: &str, head: &ChainHead, seal_hex: &str) -> bool {
        match hex::decode(seal_hex) {
            Ok(bytes) => self.mac_of(node_id, head).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }
}

impl std::fmt::Debug for HeadSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeadSealer { .. }")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_verifies_only_for_its_node_head_and_key() {
        let sealer = HeadSealer::new(&[9; 32]);
        let head = ChainHead {
            seq: 7,
            hash: [1; 32],
        };
        let seal = sealer.seal("n1", &head);
        assert!(sealer.verify("n1", &head, &seal));
        assert!(!sealer.verify("n2", &head, &seal));
        assert!(!sealer.verify("n1", &ChainHead { seq: 6, ..head }, &seal));
        assert!(!sealer.verify(
            "n1",
            &ChainHead {
                hash: [2; 32],
                ..head
            },
            &seal
        ));
        assert!(!HeadSealer::new(&[8; 32]).verify("n1", &head, &seal));
        assert!(!sealer.verify("n1", &head, "not hex"));
        assert!(!sealer.verify("n1", &head, ""));
    }
}
