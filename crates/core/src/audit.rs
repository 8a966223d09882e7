//! Audit events and the records that seal them into a hash chain.
//!
//! Each node keeps its own chain: record `n` of node `N` carries the hash of
//! record `n-1` of the same node, and its own hash covers every field. Changing,
//! removing, inserting or reordering a record therefore breaks the chain at that
//! point, which [`crate::ChainVerifier`] reports.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash32 = [u8; 32];

/// What kind of thing an audit event records. New kinds are added as Mandate
/// grows (token issued, task completed, approval given, ...); the string form is
/// what is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditKind {
    /// An authorization decision (AuthZEN evaluation, gateway call).
    Decision,
    /// A task token was issued for a root task.
    TokenIssued,
    /// A token request was refused (bad identity, policy, attenuation).
    TokenRefused,
    /// A child task token was issued by delegation.
    TokenDelegated,
    /// A presented or introspected token failed verification.
    TokenRejected,
    /// A task (and its delegated descendants) was revoked.
    TaskRevoked,
    /// A task was completed by its agent (its descendants revoked).
    TaskCompleted,
    /// The node's token signing key was rotated.
    KeyRotated,
    /// An agent was registered, suspended, resumed, deleted or got a new SVID.
    AgentChanged,
    /// An administrator credential was created or refused.
    AdminAccess,
    /// A secret was created, rotated or deleted (never its value).
    SecretChanged,
    /// A call outside its task's declared scope was denied (intent drift).
    /// Recorded instead of a [`AuditKind::Decision`] for that call.
    Drift,
    /// A call was held for a human's approval.
    ApprovalRequested,
    /// A held call was approved, denied, timed out or cancelled (outcome
    /// `approved`, `denied`, `expired`, `cancelled`), with the approver.
    ApprovalDecided,
    /// An agent was killed: suspended, its tasks and its delegates' revoked,
    /// its pending approvals denied and its in-flight calls rejected.
    AgentKilled,
}

impl AuditKind {
    /// Every kind with its stored name.
    const NAMES: [(AuditKind, &'static str); 15] = [
        (AuditKind::Decision, "decision"),
        (AuditKind::TokenIssued, "token_issued"),
        (AuditKind::TokenRefused, "token_refused"),
        (AuditKind::TokenDelegated, "token_delegated"),
        (AuditKind::TokenRejected, "token_rejected"),
        (AuditKind::TaskRevoked, "task_revoked"),
        (AuditKind::TaskCompleted, "task_completed"),
        (AuditKind::KeyRotated, "key_rotated"),
        (AuditKind::AgentChanged, "agent_changed"),
        (AuditKind::AdminAccess, "admin_access"),
        (AuditKind::SecretChanged, "secret_changed"),
        (AuditKind::Drift, "drift"),
        (AuditKind::ApprovalRequested, "approval_requested"),
        (AuditKind::ApprovalDecided, "approval_decided"),
        (AuditKind::AgentKilled, "agent_killed"),
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(kind, _)| *kind == self)
            .map(|(_, name)| *name)
            .unwrap_or("decision")
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<AuditKind> {
        Self::NAMES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(kind, _)| *kind)
    }
}

/// Something that happened, before it is placed in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When it happened, in microseconds since the Unix epoch (UTC).
    pub time_us: i64,
    /// What kind of event this is.
    pub kind: AuditKind,
    /// The request ID (the caller's `X-Request-ID`, or one Mandate generated).
    pub request_id: String,
    /// Who acted, as a Cedar entity reference (`user::"alice"`).
    pub subject: String,
    /// What they did (`Action::"read"`).
    pub action: String,
    /// On what (`document::"q3-report"`).
    pub resource: String,
    /// The outcome (`allow`, `deny`, or an event-specific word).
    pub outcome: String,
    /// The policies that determined the outcome.
    pub policies: Vec<String>,
    /// Keyed digest of the request (hex), never the request itself.
    pub request_digest: String,
    /// Event-specific detail as JSON (reason, errored policies, ...). Must not
    /// hold secrets or raw request data.
    pub detail: serde_json::Value,
}

/// Where a chain ends: the sequence number and hash of its last record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    /// Sequence number of the last record (0 for an empty chain).
    pub seq: u64,
    /// Hash of the last record (all zeros for an empty chain).
    pub hash: Hash32,
}

impl ChainHead {
    /// The head of a chain that has no records yet.
    pub const GENESIS: ChainHead = ChainHead {
        seq: 0,
        hash: [0; 32],
    };
}

/// An event sealed into a node's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The node whose chain this record belongs to.
    pub node_id: String,
    /// Position in that node's chain, starting at 1.
    pub seq: u64,
    /// The event.
    #[serde(flatten)]
    pub event: AuditEvent,
    /// Hash of the previous record in the chain (zeros for the first).
    #[serde(with = "hex_hash")]
    pub prev_hash: Hash32,
    /// Hash of this record.
    #[serde(with = "hex_hash")]
    pub hash: Hash32,
}

impl AuditRecord {
    /// Seals `event` as the record after `head` in `node_id`'s chain.
    pub fn seal(node_id: &str, head: ChainHead, event: AuditEvent) -> AuditRecord {
        let seq = head.seq + 1;
        let hash = record_hash(node_id, seq, &event, &head.hash);
        AuditRecord {
            node_id: node_id.to_owned(),
            seq,
            event,
            prev_hash: head.hash,
            hash,
        }
    }

    /// The hash this record should have, recomputed from its fields.
    pub fn expected_hash(&self) -> Hash32 {
        record_hash(&self.node_id, self.seq, &self.event, &self.prev_hash)
    }

    /// The chain head this record leaves behind.
    pub fn head(&self) -> ChainHead {
        ChainHead {
            seq: self.seq,
            hash: self.hash,
        }
    }
}

/// Hashes every field with a length prefix, so that no two different records can
/// encode to the same bytes (JSON would leave key order and escaping open).
fn record_hash(node_id: &str, seq: u64, event: &AuditEvent, prev: &Hash32) -> Hash32 {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    field(b"mandate-audit-v1");
    field(node_id.as_bytes());
    field(&seq.to_be_bytes());
    field(&event.time_us.to_be_bytes());
    field(event.kind.as_str().as_bytes());
    field(event.request_id.as_bytes());
    field(event.subject.as_bytes());
    field(event.action.as_bytes());
    field(event.resource.as_bytes());
    field(event.outcome.as_bytes());
    field(&(event.policies.len() as u64).to_be_bytes());
    for p in &event.policies {
        field(p.as_bytes());
    }
    field(event.request_digest.as_bytes());
    let mut detail = String::new();
    canonical_json(&event.detail, &mut detail);
    field(detail.as_bytes());
    field(prev);
    h.finalize().into()
}

/// Writes `value` as JSON with object keys sorted at every level. Whether
/// serde_json keeps insertion order depends on a feature any crate in the build
/// may turn on (Cedar does); the hash must not, so that any verifier, built
/// with any features, gets the same bytes.
fn canonical_json(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::from(key.as_str()).to_string());
                out.push(':');
                canonical_json(&map[key], out);
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

mod hex_hash {
    use super::Hash32;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn serialize<S: Serializer>(h: &Hash32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(h))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hash32, D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&text, &mut out).map_err(D::Error::custom)?;
        Ok(out)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn event(n: u32) -> AuditEvent {
        AuditEvent {
            time_us: 1_700_000_000_000_000 + i64::from(n),
            kind: AuditKind::Decision,
            request_id: format!("req-{n}"),
            subject: r#"user::"alice""#.into(),
            action: r#"Action::"read""#.into(),
            resource: format!(r#"doc::"{n}""#),
            outcome: "allow".into(),
            policies: vec!["a.cedar#p".into()],
            request_digest: "00".repeat(32),
            detail: serde_json::json!({"reason": "permitted"}),
        }
    }

    #[test]
    fn every_kind_has_its_own_stored_name() {
        let names: std::collections::HashSet<&str> =
            AuditKind::NAMES.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names.len(), AuditKind::NAMES.len());
        for (kind, name) in AuditKind::NAMES {
            assert_eq!(AuditKind::parse(name), Some(kind));
        }
        assert_eq!(AuditKind::parse("token"), None);
    }

    #[test]
    fn seal_links_each_record_to_the_one_before() {
        let first = AuditRecord::seal("n1", ChainHead::GENESIS, event(1));
        let second = AuditRecord::seal("n1", first.head(), event(2));
        assert_eq!(first.seq, 1);
        assert_eq!(second.seq, 2);
        assert_eq!(second.prev_hash, first.hash);
        assert_eq!(first.expected_hash(), first.hash);
        assert_ne!(first.hash, second.hash);
    }

    #[test]
    fn every_field_changes_the_hash() {
        let base = AuditRecord::seal("n1", ChainHead::GENESIS, event(1));
        let mut variants: Vec<AuditRecord> = Vec::new();
        let mut push = |f: &dyn Fn(&mut AuditRecord)| {
            let mut r = base.clone();
            f(&mut r);
            variants.push(r);
        };
        push(&|r| r.node_id = "n2".into());
        push(&|r| r.seq = 2);
        push(&|r| r.event.time_us += 1);
        push(&|r| r.event.request_id.push('x'));
        push(&|r| r.event.subject.push('x'));
        push(&|r| r.event.action.push('x'));
        push(&|r| r.event.resource.push('x'));
        push(&|r| r.event.outcome = "deny".into());
        push(&|r| r.event.policies.push("b".into()));
        push(&|r| r.event.request_digest = "11".repeat(32));
        push(&|r| r.event.detail = serde_json::json!({"reason": "forbidden"}));
        push(&|r| r.prev_hash = [1; 32]);
        for v in variants {
            assert_ne!(v.expected_hash(), base.hash, "{v:?}");
        }
    }

    #[test]
    fn field_boundaries_cannot_be_shifted() {
        // "ab" + "c" and "a" + "bc" must not hash alike.
        let mut a = event(1);
        a.subject = "ab".into();
        a.action = "c".into();
        let mut b = event(1);
        b.subject = "a".into();
        b.action = "bc".into();
        let ra = AuditRecord::seal("n", ChainHead::GENESIS, a);
        let rb = AuditRecord::seal("n", ChainHead::GENESIS, b);
        assert_ne!(ra.hash, rb.hash);
    }

    #[test]
    fn detail_key_order_does_not_change_the_hash() {
        let mut a = event(1);
        let mut b = event(1);
        let mut first = serde_json::Map::new();
        first.insert("z".into(), serde_json::json!(1));
        first.insert(
            "a".into(),
            serde_json::json!({"y": [1, {"c": 2, "b": 3}], "x": "s"}),
        );
        let mut second = serde_json::Map::new();
        second.insert(
            "a".into(),
            serde_json::json!({"x": "s", "y": [1, {"b": 3, "c": 2}]}),
        );
        second.insert("z".into(), serde_json::json!(1));
        a.detail = serde_json::Value::Object(first);
        b.detail = serde_json::Value::Object(second);
        let ra = AuditRecord::seal("n", ChainHead::GENESIS, a);
        let rb = AuditRecord::seal("n", ChainHead::GENESIS, b);
        assert_eq!(ra.hash, rb.hash);
        let mut text = String::new();
        canonical_json(&ra.event.detail, &mut text);
        assert_eq!(text, r#"{"a":{"x":"s","y":[1,{"b":3,"c":2}]},"z":1}"#);
    }

    #[test]
    fn json_round_trip_keeps_the_hash_valid() {
        let r = AuditRecord::seal("n1", ChainHead::GENESIS, event(7));
        let text = serde_json::to_string(&r).unwrap();
        let back: AuditRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.expected_hash(), back.hash);
    }
}
