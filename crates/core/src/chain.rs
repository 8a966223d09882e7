//! Walking a node's chain back and saying where it breaks.
//!
//! The verifier is fed records in ascending sequence order, one at a time, so a
//! log of any size is checked in constant memory. It catches a modified record
//! (its hash no longer matches its fields), a deleted or inserted record (a gap,
//! a repeated sequence number, or a `prev_hash` that points elsewhere) and
//! reordered records (the same). A deleted tail is caught by comparing the last
//! record with the head the store keeps beside the chain.

use std::fmt;

use crate::audit::{AuditRecord, ChainHead};

/// Where and how a chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainBreak {
    /// The record's fields do not hash to its stored hash: it was modified.
    #[error("record {seq} of node {node}: contents do not match its hash (modified)")]
    Modified {
        /// Node ID.
        node: String,
        /// Sequence number of the bad record.
        seq: u64,
    },
    /// The record does not point at the record before it.
    #[error(
        "record {seq} of node {node}: previous-hash link does not match record {prev_seq} (record deleted, inserted or reordered)"
    )]
    BrokenLink {
        /// Node ID.
        node: String,
        /// Sequence number of the bad record.
        seq: u64,
        /// Sequence number of the record it should follow.
        prev_seq: u64,
    },
    /// Sequence numbers skip or repeat.
    #[error(
        "record {found} of node {node} found where record {expected} was expected (record deleted, inserted or reordered)"
    )]
    Sequence {
        /// Node ID.
        node: String,
        /// The sequence number that should have come next.
        expected: u64,
        /// The one that came.
        found: u64,
    },
    /// The chain ends before (or after) the head recorded beside it.
    #[error(
        "node {node}: chain ends at record {last} but its recorded head is record {head} (records deleted or appended outside Mandate)"
    )]
    Truncated {
        /// Node ID.
        node: String,
        /// Last record found.
        last: u64,
        /// Last record according to the stored head.
        head: u64,
    },
    /// The last record is not the one the stored head names.
    #[error("node {node}: last record {seq} does not match the recorded head hash")]
    HeadMismatch {
        /// Node ID.
        node: String,
        /// Sequence number of the last record.
        seq: u64,
    },
    /// The head is not sealed with the node's key: the chain was rewritten (or
    /// rolled back) by someone without the key.
    #[error(
        "node {node}: the head at record {seq} is not sealed with this node's key (chain rewritten outside Mandate)"
    )]
    Unsealed {
        /// Node ID.
        node: String,
        /// Sequence number of the head.
        seq: u64,
    },
    /// A node whose key is known has no chain at all: it was deleted.
    #[error("node {node}: its audit chain is missing from the store (deleted)")]
    Missing {
        /// Node ID.
        node: String,
    },
}

impl ChainBreak {
    /// The sequence number of the first record that is wrong.
    pub fn seq(&self) -> u64 {
        match self {
            ChainBreak::Modified { seq, .. }
            | ChainBreak::BrokenLink { seq, .. }
            | ChainBreak::HeadMismatch { seq, .. } => *seq,
            ChainBreak::Sequence { expected, .. } => *expected,
            ChainBreak::Truncated { last, .. } => last + 1,
            ChainBreak::Unsealed { seq, .. } => *seq,
            ChainBreak::Missing { .. } => 1,
        }
    }
}

/// Checks one node's records, fed in ascending `seq` order.
pub struct ChainVerifier {
    node: String,
    head: ChainHead,
}

impl ChainVerifier {
    /// A verifier for the chain of `node`, starting from genesis.
    pub fn new(node: impl Into<String>) -> ChainVerifier {
        ChainVerifier {
            node: node.into(),
            head: ChainHead::GENESIS,
        }
    }

    /// Checks the next record.
    pub fn push(&mut self, record: &AuditRecord) -> Result<(), ChainBreak> {
        let expected = self.head.seq + 1;
        if record.node_id != self.node {
            return Err(ChainBreak::Modified {
                node: self.node.clone(),
                seq: record.seq,
            });
        }
        if record.seq != expected {
            return Err(ChainBreak::Sequence {
                node: self.node.clone(),
                expected,
                found: record.seq,
            });
        }
        if record.expected_hash() != record.hash {
            return Err(ChainBreak::Modified {
                node: self.node.clone(),
                seq: record.seq,
            });
        }
        if record.prev_hash != self.head.hash {
            return Err(ChainBreak::BrokenLink {
                node: self.node.clone(),
                seq: record.seq,
                prev_seq: self.head.seq,
            });
        }
        self.head = record.head();
        Ok(())
    }

    /// Ends the walk: the last record seen must be the stored head.
    pub fn finish(self, stored_head: Option<ChainHead>) -> Result<u64, ChainBreak> {
        let stored = stored_head.unwrap_or(ChainHead::GENESIS);
        if stored.seq != self.head.seq {
            return Err(ChainBreak::Truncated {
                node: self.node,
                last: self.head.seq,
                head: stored.seq,
            });
        }
        if stored.hash != self.head.hash {
            return Err(ChainBreak::HeadMismatch {
                node: self.node,
                seq: self.head.seq,
            });
        }
        Ok(self.head.seq)
    }
}

impl fmt::Debug for ChainVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainVerifier")
            .field("node", &self.node)
            .field("seq", &self.head.seq)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::tests::event;

    fn chain(n: u32) -> Vec<AuditRecord> {
        let mut head = ChainHead::GENESIS;
        (1..=n)
            .map(|i| {
                let r = AuditRecord::seal("n1", head, event(i));
                head = r.head();
                r
            })
            .collect()
    }

    fn verify(records: &[AuditRecord], head: Option<ChainHead>) -> Result<u64, ChainBreak> {
        let mut v = ChainVerifier::new("n1");
        for r in records {
            v.push(r)?;
        }
        v.finish(head)
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let c = chain(5);
        assert_eq!(verify(&c, Some(c[4].head())), Ok(5));
        assert_eq!(verify(&[], None), Ok(0));
    }

    #[test]
    fn a_modified_record_is_named() {
        let mut c = chain(5);
        let head = c[4].head();
        c[2].event.outcome = "allow-everything".into();
        let err = verify(&c, Some(head)).unwrap_err();
        assert_eq!(err.seq(), 3);
        assert!(matches!(err, ChainBreak::Modified { .. }));
    }

    #[test]
    fn a_modified_record_with_a_recomputed_hash_breaks_the_next_link() {
        let mut c = chain(5);
        let head = c[4].head();
        c[2].event.outcome = "deny".into();
        c[2].hash = c[2].expected_hash();
        let err = verify(&c, Some(head)).unwrap_err();
        assert_eq!(err.seq(), 4);
    }

    #[test]
    fn a_deleted_record_is_named() {
        let mut c = chain(5);
        let head = c[4].head();
        c.remove(1);
        assert_eq!(verify(&c, Some(head)).unwrap_err().seq(), 2);
    }

    #[test]
    fn a_deleted_tail_is_caught_by_the_head() {
        let mut c = chain(5);
        let head = c[4].head();
        c.pop();
        let err = verify(&c, Some(head)).unwrap_err();
        assert!(matches!(
            err,
            ChainBreak::Truncated {
                last: 4,
                head: 5,
                ..
            }
        ));
    }

    #[test]
    fn an_inserted_record_is_named() {
        let mut c = chain(5);
        let head = c[4].head();
        let forged = AuditRecord::seal("n1", c[1].head(), event(99));
        c.insert(2, forged);
        // The forged record claims seq 3, the real record 3 then repeats it.
        let err = verify(&c, Some(head)).unwrap_err();
        assert_eq!(err.seq(), 4);
    }

    #[test]
    fn reordered_records_are_named() {
        let mut c = chain(5);
        let head = c[4].head();
        // Swap the contents but keep the sequence numbers in place.
        let (a, b) = (c[1].clone(), c[2].clone());
        c[1] = AuditRecord { seq: 2, ..b };
        c[2] = AuditRecord { seq: 3, ..a };
        assert_eq!(verify(&c, Some(head)).unwrap_err().seq(), 2);
    }

    #[test]
    fn a_record_from_another_node_does_not_pass() {
        let c = chain(1);
        let mut v = ChainVerifier::new("other");
        assert!(v.push(&c[0]).is_err());
    }
}
