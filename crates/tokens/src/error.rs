//! What can go wrong building, signing or verifying a task token.
//!
//! Every refusal is its own variant so that the server maps each to a status
//! and an audit reason without parsing text, and every message quotes the
//! value at fault. DPoP proofs have their own enum ([`crate::DpopError`]):
//! they fail for reasons of their own, and a caller handles them apart.

/// A task token, a grant or a signing key that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    // --- grant validation ---
    /// The purpose is empty or only whitespace.
    #[error("the task purpose must not be empty")]
    EmptyPurpose,
    /// The purpose is longer than allowed.
    #[error("the task purpose is {len} characters long, more than the {max} allowed")]
    PurposeTooLong {
        /// Its length in characters.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A list (tools, data domains) has too many entries.
    #[error("{field} has {count} entries, more than the {max} allowed")]
    TooManyEntries {
        /// `tools` or `data_domains`.
        field: &'static str,
        /// How many were given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The grant names no tool.
    #[error("a task must name at least one tool")]
    NoTools,
    /// A tool or data domain name is empty, too long or has characters outside
    /// `A-Z a-z 0-9 . _ - : /`.
    #[error(
        "{field} entry {name:?} is not a valid name (1 to {max} characters of A-Z a-z 0-9 . _ - : /)"
    )]
    BadName {
        /// `tools` or `data_domains`.
        field: &'static str,
        /// The offending entry.
        name: String,
        /// The length limit.
        max: usize,
    },
    /// A tool or data domain is listed twice.
    #[error("{field} lists {name:?} twice")]
    DuplicateEntry {
        /// `tools` or `data_domains`.
        field: &'static str,
        /// The repeated entry.
        name: String,
    },
    /// The ttl is zero or over the limit.
    #[error("ttl_seconds {ttl} is outside 1..={max}")]
    BadTtl {
        /// The requested ttl.
        ttl: u64,
        /// The limit.
        max: u64,
    },
    /// `max_calls` is zero: a task that may make no call.
    #[error("max_calls must be at least 1 (or absent for no budget), not 0")]
    ZeroCallBudget,
    /// The grant holds none of read, act and delegate.
    #[error("a task must hold at least one capability (read, act, delegate)")]
    NoCapability,

    // --- claims validation ---
    /// A string is not a SPIFFE ID.
    #[error("{id:?} is not a SPIFFE ID: {reason}")]
    BadSpiffeId {
        /// The offending string.
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `authorization_details` does not hold exactly one `agent_task` entry.
    #[error("authorization_details must hold exactly one agent_task entry, not {count}")]
    GrantCount {
        /// How many entries it holds.
        count: usize,
    },
    /// A required string claim is empty or too long.
    #[error("claim {claim} must be 1 to {max} characters, got {len}")]
    BadClaimLength {
        /// The claim's name.
        claim: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// `exp` is not after `nbf`, or `nbf` is before `iat`.
    #[error("the validity window is empty or inverted: iat {iat}, nbf {nbf}, exp {exp}")]
    BadValidityWindow {
        /// Issued at.
        iat: i64,
        /// Not before.
        nbf: i64,
        /// Expires.
        exp: i64,
    },
    /// The `cnf` value is not a base64url SHA-256 digest.
    #[error("cnf {member} {value:?} is not a base64url SHA-256 thumbprint (43 characters)")]
    BadConfirmation {
        /// `jkt` or `x5t#S256`.
        member: &'static str,
        /// The offending value.
        value: String,
    },
    /// The `act` chain is deeper than any delegation could make it.
    #[error("the act chain is {depth} deep, more than the {max} allowed")]
    ActorChainTooDeep {
        /// Its depth.
        depth: usize,
        /// The limit.
        max: usize,
    },
    /// `task_chain` lists more ancestors than any delegation could make.
    #[error("task_chain lists {len} ancestor tasks, more than the {max} allowed")]
    TaskChainTooLong {
        /// How many it lists.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// `task_chain` does not list one ancestor task per link of the `act` chain.
    #[error("task_chain lists {len} ancestor tasks, but the act chain is {depth} deep")]
    TaskChainDepthMismatch {
        /// How many ancestors it lists.
        len: usize,
        /// The depth of the `act` chain.
        depth: usize,
    },
    /// `task_chain` lists the token's own task as its ancestor.
    #[error("task_chain lists the token's own task {task_id:?} as an ancestor")]
    TaskChainHoldsOwnTask {
        /// The token's `task_id`.
        task_id: String,
    },

    // --- keys ---
    /// A PKCS#8 document is not an Ed25519 private key.
    #[error("not an Ed25519 PKCS#8 private key: {reason}")]
    BadPrivateKey {
        /// aws-lc's reason.
        reason: &'static str,
    },
    /// A PKCS#8 document is not a P-256 or Ed25519 private key (DPoP keys).
    #[error("not a P-256 or Ed25519 PKCS#8 private key: {reason}")]
    BadDpopKey {
        /// aws-lc's reason.
        reason: &'static str,
    },
    /// Text that should hold a PEM private key does not.
    #[error("not a PEM private key: {reason}")]
    BadPem {
        /// What is wrong.
        reason: &'static str,
    },
    /// The PEM block is another kind than an unencrypted PKCS#8 private key.
    #[error("PEM block {label:?} is not supported; expected \"PRIVATE KEY\" (unencrypted PKCS#8)")]
    PemLabel {
        /// The block's label.
        label: String,
    },
    /// The crypto library could not generate or export a key.
    #[error("key generation or export failed in aws-lc")]
    KeyGeneration,
    /// A key with this `kid` is already in the set.
    #[error("a signing key with kid {kid:?} is already in the set")]
    DuplicateKid {
        /// The repeated kid.
        kid: String,
    },

    // --- verification ---
    /// The token is not three base64url parts joined by dots, or is too large.
    #[error("malformed token: {reason}")]
    Malformed {
        /// What is wrong.
        reason: &'static str,
    },
    /// The header names an algorithm other than EdDSA (`none` and `HS256` included).
    #[error("task tokens are signed with EdDSA only, not {alg:?}")]
    UnsupportedAlgorithm {
        /// The `alg` of the header.
        alg: String,
    },
    /// The header's `typ` is not `at+jwt` (RFC 9068): some other JWT presented as a task token.
    #[error("token typ must be \"at+jwt\", found {typ:?}")]
    WrongTokenType {
        /// The `typ` of the header, if any.
        typ: Option<String>,
    },
    /// The header carries a `crit` parameter; no extension is understood here.
    #[error("token header marks {names:?} critical; no JOSE extension is supported")]
    UnsupportedCritical {
        /// The names listed in `crit`.
        names: Vec<String>,
    },
    /// The header has no `kid`.
    #[error("token header has no kid")]
    MissingKid,
    /// No key in the set has this `kid` (never known, or pruned after rotation).
    #[error("no signing key with kid {kid:?}")]
    UnknownKid {
        /// The `kid` of the header.
        kid: String,
    },
    /// The key was retired and its overlap window is over.
    #[error("signing key {kid:?} was retired at {retired_at} and stopped verifying at {until}")]
    KeyRetired {
        /// The retired key's kid.
        kid: String,
        /// When it was retired.
        retired_at: i64,
        /// When its overlap window ended.
        until: i64,
    },
    /// The signature does not verify with the key named by `kid`.
    #[error("signature does not verify with key {kid:?}")]
    BadSignature {
        /// The key tried.
        kid: String,
    },
    /// The payload is not valid task token claims.
    #[error("malformed claims: {reason}")]
    MalformedClaims {
        /// The JSON error.
        reason: String,
    },
    /// `iss` is not the expected issuer.
    #[error("token issuer {found:?} is not the expected {expected:?}")]
    WrongIssuer {
        /// The expected issuer.
        expected: String,
        /// The token's `iss`.
        found: String,
    },
    /// `aud` is not the expected audience.
    #[error("token audience {found:?} is not the expected {expected:?}")]
    WrongAudience {
        /// The expected audience.
        expected: String,
        /// The token's `aud`.
        found: String,
    },
    /// `now` is at or after `exp`.
    #[error("token expired at {exp} (now {now})")]
    Expired {
        /// The token's `exp`.
        exp: i64,
        /// The time of the check.
        now: i64,
    },
    /// `now` is before `nbf`.
    #[error("token is not valid before {nbf} (now {now})")]
    NotYetValid {
        /// The token's `nbf`.
        nbf: i64,
        /// The time of the check.
        now: i64,
    },
}
