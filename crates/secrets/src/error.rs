//! What can go wrong with a key, a name or a sealed value.
//!
//! Unlike Mandate's other errors, these never quote the input at fault when
//! that input could be a key or a value: a message says what is wrong and
//! names the secret, never its contents.

/// A key, a name or a sealed value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The key-encryption key text is neither 64 hex characters nor the
    /// base64 of 32 bytes. The text itself is never quoted.
    #[error("the secrets KEK must be 64 hex characters or the base64 of 32 bytes: {reason}")]
    InvalidKek {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A secret name breaks the naming rule.
    #[error(
        "{name:?} is not a secret name: use 1 to 128 characters of letters, digits, '.', '_' and '-'"
    )]
    InvalidName {
        /// The offending name.
        name: String,
    },
    /// A secret's value is empty.
    #[error("the value of secret {name:?} must not be empty")]
    EmptyValue {
        /// The secret's name.
        name: String,
    },
    /// A secret's value is longer than [`crate::MAX_VALUE_LEN`].
    #[error("the value of secret {name:?} is longer than {max} bytes")]
    ValueTooLong {
        /// The secret's name.
        name: String,
        /// The limit.
        max: usize,
    },
    /// The value was sealed under another key-encryption key than the one
    /// loaded.
    #[error(
        "secret {name:?} is sealed under KEK {sealed_under}, but the loaded KEK is {loaded}; \
         start the node with the KEK it was sealed under, or rotate the secret to re-seal it"
    )]
    WrongKek {
        /// The secret's name.
        name: String,
        /// The ID of the key it was sealed under.
        sealed_under: String,
        /// The ID of the key loaded.
        loaded: String,
    },
    /// The stored nonce or ciphertext is not valid base64, or has the wrong
    /// length.
    #[error("the sealed value of secret {name:?} is malformed: {reason}")]
    Malformed {
        /// The secret's name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The ciphertext does not decrypt under the right key: it was altered,
    /// or it was sealed for another name or version.
    #[error(
        "secret {name:?} version {version} does not decrypt: its ciphertext was altered or sealed for another name or version"
    )]
    Unsealable {
        /// The secret's name.
        name: String,
        /// The version asked for.
        version: u64,
    },
    /// The system's random number generator or cipher failed.
    #[error("the cipher failed: {what}")]
    Crypto {
        /// What was being done.
        what: &'static str,
    },
}
