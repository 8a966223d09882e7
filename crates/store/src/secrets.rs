//! Secrets as stored: sealed by the server before they arrive here, so the
//! store keeps ciphertext, the nonce and the ID of the key, never a value.

/// One secret, sealed. The text columns are what `mandate-secrets` writes:
/// base64 nonce and ciphertext, and the ID of the key-encryption key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRecord {
    /// The secret's unique name.
    pub name: String,
    /// Its version: 1 when created, one more at each rotation. The ciphertext
    /// is bound to it.
    pub version: i64,
    /// The ID of the key-encryption key that sealed it.
    pub kek_id: String,
    /// The nonce, base64.
    pub nonce: String,
    /// The ciphertext with its tag, base64.
    pub ciphertext: String,
    /// When it was created (microseconds since the epoch).
    pub created_us: i64,
    /// When it was last rotated, if it has been.
    pub rotated_us: Option<i64>,
}
