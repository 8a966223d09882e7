//! What can go wrong loading a policy directory.

use std::path::PathBuf;

/// A policy directory that cannot be loaded. Every variant names the file or
/// policy at fault; a directory with any error is never put into service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A file or the directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A policy file does not parse.
    #[error("{file}: {message}")]
    Parse {
        /// The file, relative to the policy directory.
        file: String,
        /// Cedar's parse errors.
        message: String,
    },
    /// Two policies have the same ID.
    #[error("duplicate policy id {id:?} (in {file})")]
    DuplicateId {
        /// The repeated ID.
        id: String,
        /// The file holding the second one.
        file: String,
    },
    /// A policy file contains a template; templates need links, which a policy
    /// directory cannot express.
    #[error("{file}: policy templates are not supported in policy files (found {id:?})")]
    Template {
        /// The file.
        file: String,
        /// The template's ID.
        id: String,
    },
    /// An `@id` annotation that cannot name a policy.
    #[error(
        "{file}: @id({id:?}) must be non-empty and use only letters, digits, '-', '_', '.' and ':'"
    )]
    BadId {
        /// The file.
        file: String,
        /// The annotation's value.
        id: String,
    },
    /// A `@reason` annotation that is not a short snake_case word.
    #[error(
        "{policy}: @reason({value:?}) must be a snake_case word of at most 64 characters (a-z, 0-9, '_', starting with a letter)"
    )]
    BadReason {
        /// The policy (`file#id`).
        policy: String,
        /// The annotation's value.
        value: String,
    },
    /// An `@approval` annotation on a permit policy. Approval holds a call that
    /// a forbid would otherwise stop; on a permit it would read as "allowed
    /// once approved" while actually granting without anyone's sign-off.
    #[error("{policy}: @approval belongs on a forbid policy, not on a permit")]
    ApprovalOnPermit {
        /// The policy (`file#id`).
        policy: String,
    },
    /// An `@approval` annotation without a text saying why a person must sign off.
    #[error("{policy}: @approval needs a text saying why a person must sign off")]
    EmptyApproval {
        /// The policy (`file#id`).
        policy: String,
    },
    /// The schema files do not form a valid schema.
    #[error("schema: {0}")]
    Schema(String),
    /// The policies do not validate against the schema.
    #[error("policies do not validate against the schema:\n  {}", .0.join("\n  "))]
    Validation(Vec<String>),
    /// `entities.json` does not parse or does not fit the schema.
    #[error("entities.json: {0}")]
    Entities(String),
}
