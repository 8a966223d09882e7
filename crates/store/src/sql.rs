//! What both SQL backends share: the statements (SQLite accepts PostgreSQL's
//! `$n` placeholders) and the mapping between an `AuditRecord` and a row.
//!
//! Hashes are stored as hex and `policies` / `detail` as JSON text, so that a
//! record read back is byte for byte the record that was hashed. A row that
//! does not decode becomes `StoreError::CorruptRow`; it is never skipped.

use mandate_core::{AuditEvent, AuditKind, AuditRecord, ChainHead, Hash32};
use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::error::StoreError;

/// The record columns, in the order `decode_record` reads them.
macro_rules! record_columns {
    () => {
        "id, node_id, seq, time_us, kind, request_id, subject, action, resource, outcome, \
         policies, request_digest, detail, prev_hash, hash"
    };
}

const COLUMN_NAMES: [&str; 15] = [
    "id",
    "node_id",
    "seq",
    "time_us",
    "kind",
    "request_id",
    "subject",
    "action",
    "resource",
    "outcome",
    "policies",
    "request_digest",
    "detail",
    "prev_hash",
    "hash",
];

/// The start of a multi-row insert; the `VALUES` are pushed by the caller.
pub(crate) const INSERT_RECORDS: &str = "INSERT INTO audit_records (node_id, seq, time_us, kind, \
     request_id, subject, action, resource, outcome, policies, request_digest, detail, prev_hash, hash) ";

/// Rows per `INSERT` statement: 14 parameters each stays under both
/// databases' parameter limits (SQLite 32766, PostgreSQL 65535).
pub(crate) const INSERT_CHUNK: usize = 1000;

pub(crate) const UPSERT_HEAD: &str = "INSERT INTO audit_heads (node_id, seq, hash, seal) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (node_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, seal = excluded.seal";

/// Registers an empty chain; a chain already there is left alone.
pub(crate) const REGISTER_CHAIN: &str = "INSERT INTO audit_heads (node_id, seq, hash, seal) VALUES ($1, 0, $2, $3) \
     ON CONFLICT (node_id) DO NOTHING";

pub(crate) const SELECT_HEAD_SEAL: &str = "SELECT seal FROM audit_heads WHERE node_id = $1";

pub(crate) const SELECT_HEAD: &str = "SELECT seq, hash FROM audit_heads WHERE node_id = $1";

pub(crate) const SELECT_NODES: &str =
    "SELECT node_id FROM audit_heads UNION SELECT DISTINCT node_id FROM audit_records";

pub(crate) const SELECT_PAGE: &str = concat!(
    "SELECT ",
    record_columns!(),
    " FROM audit_records WHERE node_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
);

pub(crate) const SELECT_LATEST: &str = concat!(
    "SELECT * FROM (SELECT ",
    record_columns!(),
    " FROM audit_records ORDER BY id DESC LIMIT $1) AS newest ORDER BY id"
);

pub(crate) const SELECT_AFTER: &str = concat!(
    "SELECT ",
    record_columns!(),
    " FROM audit_records WHERE id > $1 ORDER BY id LIMIT $2"
);

/// Newest first, below a row ID: paging backwards through the log.
pub(crate) const SELECT_BEFORE: &str = concat!(
    "SELECT ",
    record_columns!(),
    " FROM audit_records WHERE id < $1 ORDER BY id DESC LIMIT $2"
);

/// Records whose detail contains a text (`$2`, a `LIKE` pattern with `\`
/// as its escape character). Both backends store `detail` as JSON text.
/// SQLite's `LIKE` ignores ASCII case: this is a filter for callers who then
/// look at the detail themselves.
pub(crate) const SELECT_MENTIONING: &str = concat!(
    "SELECT ",
    record_columns!(),
    " FROM audit_records WHERE id > $1 AND detail LIKE $2 ESCAPE '\\' ORDER BY id LIMIT $3"
);

/// A `LIKE` pattern matching any text that contains `needle`, with `%`, `_`
/// and the escape character itself escaped.
pub(crate) fn contains_pattern(needle: &str) -> String {
    let mut pattern = String::with_capacity(needle.len() + 2);
    pattern.push('%');
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// A record as the text and integers that are bound into an `INSERT`.
pub(crate) struct RecordRow<'a> {
    pub(crate) node_id: &'a str,
    pub(crate) seq: i64,
    pub(crate) time_us: i64,
    pub(crate) kind: &'static str,
    pub(crate) request_id: &'a str,
    pub(crate) subject: &'a str,
    pub(crate) action: &'a str,
    pub(crate) resource: &'a str,
    pub(crate) outcome: &'a str,
    pub(crate) policies: String,
    pub(crate) request_digest: &'a str,
    pub(crate) detail: String,
    pub(crate) prev_hash: String,
    pub(crate) hash: String,
}

/// Checks that `records` are one contiguous run of one node and encodes them.
pub(crate) fn encode_batch(records: &[AuditRecord]) -> Result<Vec<RecordRow<'_>>, StoreError> {
    for pair in records.windows(2) {
        let (before, record) = (&pair[0], &pair[1]);
        if record.node_id != before.node_id || Some(record.seq) != before.seq.checked_add(1) {
            return Err(StoreError::InvalidBatch {
                node: record.node_id.clone(),
                after: before.seq,
                found: record.seq,
            });
        }
    }
    records.iter().map(encode_record).collect()
}

fn encode_record(record: &AuditRecord) -> Result<RecordRow<'_>, StoreError> {
    let seq = i64::try_from(record.seq).map_err(|_| StoreError::InvalidBatch {
        node: record.node_id.clone(),
        after: record.seq.saturating_sub(1),
        found: record.seq,
    })?;
    let event = &record.event;
    Ok(RecordRow {
        node_id: &record.node_id,
        seq,
        time_us: event.time_us,
        kind: event.kind.as_str(),
        request_id: &event.request_id,
        subject: &event.subject,
        action: &event.action,
        resource: &event.resource,
        outcome: &event.outcome,
        // A list of strings always serializes.
        policies: serde_json::Value::from(event.policies.clone()).to_string(),
        request_digest: &event.request_digest,
        detail: event.detail.to_string(),
        prev_hash: hex::encode(record.prev_hash),
        hash: hex::encode(record.hash),
    })
}

/// The sequence number of a record, as stored.
pub(crate) fn stored_seq(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// Reads a `(seq, hash)` head row.
pub(crate) fn decode_head<R>(
    backend: &'static str,
    node_id: &str,
    row: &R,
) -> Result<ChainHead, StoreError>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    let query = |source| StoreError::Query {
        backend,
        operation: "read audit head",
        source,
    };
    let seq: i64 = row.try_get(0).map_err(query)?;
    let hash: String = row.try_get(1).map_err(query)?;
    let corrupt = |column, problem| StoreError::CorruptRow {
        id: 0,
        node: format!("{node_id} (head)"),
        seq,
        column,
        problem,
    };
    Ok(ChainHead {
        seq: u64::try_from(seq).map_err(|_| corrupt("seq", "is negative"))?,
        hash: parse_hash(&hash).ok_or_else(|| corrupt("hash", "is not 64 hex digits"))?,
    })
}

/// Reads a row selected with `record_columns!()` into its ID and record.
pub(crate) fn decode_record<R>(
    backend: &'static str,
    row: &R,
) -> Result<(i64, AuditRecord), StoreError>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    let id: i64 = row.try_get(0).map_err(|source| StoreError::Query {
        backend,
        operation: "read audit records",
        source,
    })?;
    let mut cells = Cells {
        backend,
        row,
        id,
        node: String::new(),
        seq: 0,
    };
    cells.node = cells.get(1)?;
    cells.seq = cells.get(2)?;
    let seq = u64::try_from(cells.seq).map_err(|_| cells.corrupt(2, "is negative"))?;
    let kind: String = cells.get(4)?;
    let policies: String = cells.get(10)?;
    let detail: String = cells.get(12)?;
    let prev_hash: String = cells.get(13)?;
    let hash: String = cells.get(14)?;
    let event = AuditEvent {
        time_us: cells.get(3)?,
        kind: AuditKind::parse(&kind).ok_or_else(|| cells.corrupt(4, "is not a known kind"))?,
        request_id: cells.get(5)?,
        subject: cells.get(6)?,
        action: cells.get(7)?,
        resource: cells.get(8)?,
        outcome: cells.get(9)?,
        policies: serde_json::from_str(&policies)
            .map_err(|_| cells.corrupt(10, "is not a JSON array of strings"))?,
        request_digest: cells.get(11)?,
        detail: serde_json::from_str(&detail).map_err(|_| cells.corrupt(12, "is not JSON"))?,
    };
    let record = AuditRecord {
        node_id: cells.node.clone(),
        seq,
        event,
        prev_hash: parse_hash(&prev_hash)
            .ok_or_else(|| cells.corrupt(13, "is not 64 hex digits"))?,
        hash: parse_hash(&hash).ok_or_else(|| cells.corrupt(14, "is not 64 hex digits"))?,
    };
    Ok((id, record))
}

/// One row being decoded, so that every failure can name the row.
struct Cells<'r, R> {
    backend: &'static str,
    row: &'r R,
    id: i64,
    node: String,
    seq: i64,
}

impl<R> Cells<'_, R>
where
    R: Row,
    usize: ColumnIndex<R>,
{
    fn get<T>(&self, index: usize) -> Result<T, StoreError>
    where
        for<'v> T: Decode<'v, R::Database> + Type<R::Database>,
    {
        self.row.try_get(index).map_err(|source| match source {
            // SQLite stores any value in any column, so a wrong type is a
            // tampered row, not a bug.
            sqlx::Error::ColumnDecode { .. } => self.corrupt(index, "has the wrong type"),
            source => StoreError::Query {
                backend: self.backend,
                operation: "read audit records",
                source,
            },
        })
    }

    fn corrupt(&self, index: usize, problem: &'static str) -> StoreError {
        StoreError::CorruptRow {
            id: self.id,
            node: self.node.clone(),
            seq: self.seq,
            column: COLUMN_NAMES[index],
            problem,
        }
    }
}

fn parse_hash(text: &str) -> Option<Hash32> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(text, &mut hash).ok()?;
    Some(hash)
}
