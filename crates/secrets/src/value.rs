//! A secret's plaintext while it is in use: wiped when dropped, never printed.

use std::fmt;

use zeroize::Zeroizing;

/// Longest value a secret may have, in bytes.
pub const MAX_VALUE_LEN: usize = 64 * 1024;

/// A decrypted secret value. Its memory is overwritten with zeros when it is
/// dropped; it has no `Display`, and its `Debug` shows only its length.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Zeroizing<Vec<u8>>);

impl SecretValue {
    /// Takes ownership of `bytes` (no copy is left behind).
    pub fn new(bytes: Zeroizing<Vec<u8>>) -> SecretValue {
        SecretValue(bytes)
    }

    /// The plaintext, for the moment it is injected. Do not copy it into
    /// anything that is not wiped after use.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty (a sealed secret never is).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretValue(<redacted, {} bytes>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_length_and_never_the_value() {
        let value = SecretValue::new(Zeroizing::new(b"hunter2".to_vec()));
        assert_eq!(format!("{value:?}"), "SecretValue(<redacted, 7 bytes>)");
        assert_eq!(format!("{value:#?}"), "SecretValue(<redacted, 7 bytes>)");
        assert_eq!(value.expose(), b"hunter2");
        assert_eq!(value.len(), 7);
        assert!(!value.is_empty());
    }
}
