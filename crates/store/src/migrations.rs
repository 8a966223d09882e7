//! The schema, as numbered migrations compiled into the binary.
//!
//! SQLite and PostgreSQL each get their own SQL (types and auto-increment
//! differ), under the same version numbers. A feature (identity: agents,
//! tasks, keys; later approvals, secrets) adds its tables by appending one
//! entry to both lists; `connect` runs whatever has not run yet, so running
//! twice is a no-op.

use std::borrow::Cow;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// One migration: version, description, SQL.
type Step = (i64, &'static str, &'static str);

const SQLITE: &[Step] = &[
    (1, "audit", include_str!("migrations/sqlite/0001_audit.sql")),
    (
        2,
        "head seal",
        include_str!("migrations/sqlite/0002_head_seal.sql"),
    ),
    (
        3,
        "identity",
        include_str!("migrations/sqlite/0003_identity.sql"),
    ),
    (
        4,
        "secrets",
        include_str!("migrations/sqlite/0004_secrets.sql"),
    ),
    (
        5,
        "approvals",
        include_str!("migrations/sqlite/0005_approvals.sql"),
    ),
    (
        6,
        "sessions",
        include_str!("migrations/sqlite/0006_sessions.sql"),
    ),
];

const POSTGRES: &[Step] = &[
    (
        1,
        "audit",
        include_str!("migrations/postgres/0001_audit.sql"),
    ),
    (
        2,
        "head seal",
        include_str!("migrations/postgres/0002_head_seal.sql"),
    ),
    (
        3,
        "identity",
        include_str!("migrations/postgres/0003_identity.sql"),
    ),
    (
        4,
        "secrets",
        include_str!("migrations/postgres/0004_secrets.sql"),
    ),
    (
        5,
        "approvals",
        include_str!("migrations/postgres/0005_approvals.sql"),
    ),
    (
        6,
        "sessions",
        include_str!("migrations/postgres/0006_sessions.sql"),
    ),
];

/// The SQLite schema.
pub(crate) fn sqlite() -> Migrator {
    migrator(SQLITE)
}

/// The PostgreSQL schema.
pub(crate) fn postgres() -> Migrator {
    migrator(POSTGRES)
}

fn migrator(steps: &[Step]) -> Migrator {
    Migrator::with_migrations(
        steps
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_backends_have_the_same_versions() {
        let versions = |steps: &[Step]| steps.iter().map(|s| (s.0, s.1)).collect::<Vec<_>>();
        assert_eq!(versions(SQLITE), versions(POSTGRES));
    }
}
