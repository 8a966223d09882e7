//! Secrets at rest for Mandate, with no I/O: a value goes in as plaintext and
//! comes out as a [`SealedSecret`] that only the right [`Kek`] opens, and only
//! under the name and version it was sealed for.
//!
//! [`Kek`] is the 32-byte key-encryption key (parsed from hex or base64, or
//! generated), with a short [`Kek::id`] fingerprint stored beside each sealed
//! value so that a wrong key is named rather than reported as corruption.
//! [`Kek::seal`] encrypts with AES-256-GCM (aws-lc-rs) under a fresh random
//! 96-bit nonce, binding the secret's name and version as associated data;
//! [`Kek::open`] gives back a [`SecretValue`], which wipes its memory when
//! dropped and never prints its contents.
//!
//! Never reads files, the environment or the clock, and never stores
//! anything: where the key comes from and where sealed values are kept is the
//! server's business. No error message quotes a value or a key.
//!
//! ```
//! use mandate_secrets::Kek;
//!
//! let kek = Kek::generate()?;
//! let sealed = kek.seal("db-password", 1, b"hunter2")?;
//! assert_eq!(sealed.kek_id, kek.id());
//! assert_eq!(kek.open("db-password", 1, &sealed)?.expose(), b"hunter2");
//! // Moved to another name or version, it no longer opens.
//! assert!(kek.open("other", 1, &sealed).is_err());
//! assert!(kek.open("db-password", 2, &sealed).is_err());
//! # Ok::<(), mandate_secrets::SecretError>(())
//! ```

mod error;
mod kek;
mod name;
mod sealed;
mod value;

pub use error::SecretError;
pub use kek::{KEK_LEN, Kek};
pub use name::{MAX_NAME_LEN, validate_name};
pub use sealed::{NONCE_LEN, SealedSecret};
pub use value::{MAX_VALUE_LEN, SecretValue};
