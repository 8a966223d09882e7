//! Checking the whole audit log: every node's chain, record by record, then
//! against the head stored beside it.

use mandate_core::{ChainBreak, ChainVerifier};

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
}

/// Walks every node's chain in `store` and reports the first break, if any.
/// A row that cannot be decoded is a break at that row, not an I/O error.
pub async fn verify_audit(store: &dyn Store) -> Result<VerifyReport, VerifyError> {
    let mut report = VerifyReport {
        chains: Vec::new(),
        total: 0,
    };
    for node_id in store.audit_nodes().await? {
        let records = verify_chain(store, &node_id).await?;
        report.total += records;
        report.chains.push(VerifiedChain { node_id, records });
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
