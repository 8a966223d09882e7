//! The SQL behind sealed secrets, shared by both backends, and the mapping
//! from their rows back to records.

use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::error::StoreError;
use crate::identity_sql::Cells;
use crate::secrets::SecretRecord;

/// The secret columns, in the order `decode_secret` reads them.
macro_rules! secret_columns {
    () => {
        "name, version, kek_id, nonce, ciphertext, created_us, rotated_us"
    };
}

const SECRET_COLUMNS: [&str; 7] = [
    "name",
    "version",
    "kek_id",
    "nonce",
    "ciphertext",
    "created_us",
    "rotated_us",
];

pub(crate) const INSERT_SECRET: &str = concat!(
    "INSERT INTO secrets (",
    secret_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
);

/// Replaces the sealed value only if the stored version is the one before:
/// of two concurrent rotations, one wins and the other changes nothing.
pub(crate) const REPLACE_SECRET: &str = "UPDATE secrets SET version = $2, kek_id = $3, \
     nonce = $4, ciphertext = $5, rotated_us = $6 WHERE name = $1 AND version = $2 - 1";

pub(crate) const SELECT_SECRET: &str = concat!(
    "SELECT ",
    secret_columns!(),
    " FROM secrets WHERE name = $1"
);

pub(crate) const SELECT_SECRETS: &str = concat!("SELECT ", secret_columns!(), " FROM secrets");

pub(crate) const DELETE_SECRET: &str = "DELETE FROM secrets WHERE name = $1";

/// Reads a row selected with `secret_columns!()`.
pub(crate) fn decode_secret<R>(backend: &'static str, row: &R) -> Result<SecretRecord, StoreError>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    let cells = Cells::new(backend, "secrets", &SECRET_COLUMNS, row)?;
    Ok(SecretRecord {
        name: cells.get(0)?,
        version: cells.get(1)?,
        kek_id: cells.get(2)?,
        nonce: cells.get(3)?,
        ciphertext: cells.get(4)?,
        created_us: cells.get(5)?,
        rotated_us: cells.get(6)?,
    })
}
