//! Checking the whole audit log: every node's chain, record by record, then
//! against the head stored beside it.

use mandate_core::{ChainBreak, ChainHead, ChainVerifier, HeadSealer};

use crate::error::{StoreError, VerifyError};
use crate::store::Store;

/// Records read per query while verifying.
const PAGE: u32 = 1000;

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Each node's chain, sorted by node.
    pub chains: Vec<VerifiedChain>,
    /// Records verified, over all nodes.
    pub total: u64,
}

/// One node's verified chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedChain {
    /// The node.
    pub node_id: String,
    /// Its record count (the sequence number of its last record).
    pub records: u64,
    /// Whether its head seal was checked with the node's key.
    pub sealed: bool,
}

/// Walks every node's chain in `store` and reports the first break, if any.
/// A row that cannot be decoded is a break at that row, not an I/O error.
///
/// For each node in `keys`, the chain must exist and its head must carry that
/// node's seal: this is what catches a chain rewritten with recomputed hashes,
/// or deleted whole, by someone who can write to the database but does not hold
/// the node's key. Chains of nodes not in `keys` are checked for internal
/// consistency only, and reported as unsealed-checked.
pub async fn verify_audit(
    store: &dyn Store,
    keys: &[(String, HeadSealer)],
) -> Result<VerifyReport, VerifyError> {
    let mut report = VerifyReport {
        chains: Vec::new(),
        total: 0,
    };
    let nodes = store.audit_nodes().await?;
    for (node, _) in keys {
        if !nodes.contains(node) {
            return Err(ChainBreak::Missing { node: node.clone() }.into());
        }
    }
    for node_id in nodes {
        let records = verify_chain(store, &node_id).await?;
        let sealer = keys.iter().find(|(n, _)| *n == node_id).map(|(_, s)| s);
        if let Some(sealer) = sealer {
            let head = store
                .audit_head(&node_id)
                .await?
                .unwrap_or(ChainHead::GENESIS);
            let seal = store.audit_head_seal(&node_id).await?.unwrap_or_default();
            if !sealer.verify(&node_id, &head, &seal) {
                return Err(ChainBreak::Unsealed {
                    node: node_id,
                    seq: head.seq,
                }
                .into());
            }
        }
        report.total += records;
        report.chains.push(VerifiedChain {
            node_id,
            records,
            sealed: sealer.is_some(),
        });
    }
    Ok(report)
}

async fn verify_chain(store: &dyn Store, node_id: &str) -> Result<u64, VerifyError> {
    let mut verifier = ChainVerifier::new(node_id);
    let mut after = 0;
    loop {
        let page = match store.audit_page(node_id, after, PAGE).await {
            Ok(page) => page,
            Err(StoreError::CorruptRow { seq, .. }) => {
                return Err(corrupt_break(store, node_id, verifier, after, seq).await);
            }
            Err(err) => return Err(err.into()),
        };
        for record in &page {
            verifier.push(record)?;
            after = record.seq;
        }
        if page.len() < PAGE as usize {
            break;
        }
    }
    let head = match store.audit_head(node_id).await {
        Ok(head) => head,
        // An undecodable head cannot match the last record.
        Err(StoreError::CorruptRow { .. }) => {
            return Err(ChainBreak::HeadMismatch {
                node: node_id.to_owned(),
                seq: after,
            }
            .into());
        }
        Err(err) => return Err(err.into()),
    };
    Ok(verifier.finish(head)?)
}

/// A page held a corrupt row at `seq`. Records before it may hide an earlier
/// break, so check those first; otherwise the corrupt row is the break.
async fn corrupt_break(
    store: &dyn Store,
    node_id: &str,
    mut verifier: ChainVerifier,
    after: u64,
    seq: i64,
) -> VerifyError {
    let seq = u64::try_from(seq).unwrap_or(after + 1).max(after + 1);
    let before = u32::try_from(seq - after - 1).unwrap_or(u32::MAX);
    if before > 0
        && let Ok(records) = store.audit_page(node_id, after, before).await
    {
        for record in records.iter().filter(|record| record.seq < seq) {
            if let Err(broken) = verifier.push(record) {
                return broken.into();
            }
        }
    }
    ChainBreak::Modified {
        node: node_id.to_owned(),
        seq,
    }
    .into()
}
