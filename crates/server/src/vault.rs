//! The node's secrets: sealed with its KEK on the way into the store, opened
//! only when one is revealed for injection.
//!
//! [`SecretVault`] is the only place that holds the KEK and the only place a
//! value is ever decrypted. What it hands back to the admin API is the
//! record's name, version and times; a value leaves it only as a
//! [`SecretValue`], which wipes itself when dropped.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue};
use mandate_secrets::{Kek, SealedSecret, SecretError, SecretValue, validate_name};
use mandate_store::{SecretRecord, Store, StoreError};

use crate::config::UpstreamCredential;
use crate::state::AppState;

/// Why a secret could not be stored, rotated or revealed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum VaultError {
    /// There is no secret of that name.
    #[error("no secret named {name:?}")]
    NotFound {
        /// The name asked for.
        name: String,
    },
    /// Another rotation of the same secret won the race.
    #[error("secret {name:?} was rotated meanwhile; try again")]
    RotatedMeanwhile {
        /// The secret's name.
        name: String,
    },
    /// A bad name or value, a wrong KEK, or a value that does not decrypt.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The store failed (or the name is taken: [`StoreError::Conflict`]).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The KEK and the store it seals secrets into.
pub(crate) struct SecretVault {
    kek: Kek,
    store: Arc<dyn Store>,
}

impl SecretVault {
    pub(crate) fn new(kek: Kek, store: Arc<dyn Store>) -> SecretVault {
        SecretVault { kek, store }
    }

    /// The ID of the loaded KEK.
    pub(crate) fn kek_id(&self) -> &str {
        self.kek.id()
    }

    /// Seals `value` as version 1 of a new secret `name`. A taken name is a
    /// [`StoreError::Conflict`].
    pub(crate) async fn create(
        &self,
        name: &str,
        value: &[u8],
        now_us: i64,
    ) -> Result<SecretRecord, VaultError> {
        validate_name(name)?;
        let sealed = self.kek.seal(name, 1, value)?;
        let record = record(name, 1, &sealed, now_us, None);
        self.store.put_secret(&record).await?;
        Ok(record)
    }

    /// Seals `value` as the next version of the secret `name`, under the
    /// loaded KEK (so rotating a secret also moves it to a new KEK).
    pub(crate) async fn rotate(
        &self,
        name: &str,
        value: &[u8],
        now_us: i64,
    ) -> Result<SecretRecord, VaultError> {
        validate_name(name)?;
        let current = self.find(name).await?;
        let version = current.version.saturating_add(1);
        let sealed = self.kek.seal(name, stored_version(name, version)?, value)?;
        let record = record(name, version, &sealed, current.created_us, Some(now_us));
        if self.store.replace_secret(&record).await? {
            return Ok(record);
        }
        match self.store.secret(name).await? {
            None => Err(VaultError::NotFound { name: name.into() }),
            Some(_) => Err(VaultError::RotatedMeanwhile { name: name.into() }),
        }
    }

    /// The secret `name` as stored (sealed), or [`VaultError::NotFound`].
    pub(crate) async fn find(&self, name: &str) -> Result<SecretRecord, VaultError> {
        self.store
            .secret(name)
            .await?
            .ok_or_else(|| VaultError::NotFound { name: name.into() })
    }

    /// Decrypts the secret `name`. Only for injecting it into a call; the
    /// value must be dropped (and so wiped) right after.
    pub(crate) async fn reveal(&self, name: &str) -> Result<SecretValue, VaultError> {
        let record = self.find(name).await?;
        let sealed =
            SealedSecret::from_base64(name, &record.kek_id, &record.nonce, &record.ciphertext)?;
        Ok(self
            .kek
            .open(name, stored_version(name, record.version)?, &sealed)?)
    }

    /// How many stored secrets are sealed under each KEK other than the
    /// loaded one: those cannot be revealed until rotated or until the node
    /// runs with their KEK.
    pub(crate) async fn other_keks(&self) -> Result<BTreeMap<String, usize>, StoreError> {
        let mut others = BTreeMap::new();
        for secret in self.store.secrets().await? {
            if secret.kek_id != self.kek.id() {
                *others.entry(secret.kek_id).or_insert(0) += 1;
            }
        }
        Ok(others)
    }
}

/// Decrypts the secret `name` for injection into a call. The caller drops the
/// value as soon as it is sent; it is never logged, audited or returned.
/// (Its work, [`SecretVault::reveal`], is what the tests below exercise.)
pub(crate) async fn reveal_secret(state: &AppState, name: &str) -> Result<SecretValue, VaultError> {
    state.secrets.reveal(name).await
}

/// The header an upstream's `credential` puts on a forwarded request: the
/// secret revealed and put into its format, marked sensitive. The message of
/// an error names the upstream, never the value.
pub(crate) async fn credential_header(
    state: &AppState,
    upstream: &str,
    credential: &UpstreamCredential,
) -> Result<(HeaderName, HeaderValue), String> {
    let name = credential
        .header
        .as_deref()
        .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok())
        .ok_or_else(|| {
            format!("the credential header of upstream {upstream} is not a valid header name")
        })?;
    let value = credential_text(state, upstream, credential).await?;
    let mut value = HeaderValue::from_str(&value).map_err(|_| {
        format!("the credential for upstream {upstream} is not a valid header value")
    })?;
    value.set_sensitive(true);
    Ok((name, value))
}

/// The value an upstream's `credential` stands for: the secret revealed and
/// put into its format, wiped when dropped. The message of an error names the
/// upstream, never the value.
pub(crate) async fn credential_text(
    state: &AppState,
    upstream: &str,
    credential: &UpstreamCredential,
) -> Result<zeroize::Zeroizing<String>, String> {
    let secret = reveal_secret(state, &credential.secret)
        .await
        .map_err(|e| {
            tracing::error!(upstream, error = %e, "upstream credential unavailable");
            format!("the credential for upstream {upstream} cannot be used")
        })?;
    let text = std::str::from_utf8(secret.expose())
        .map_err(|_| format!("the credential for upstream {upstream} is not text"))?;
    Ok(zeroize::Zeroizing::new(match &credential.format {
        Some(format) => format.replace("{secret}", text),
        None => text.to_owned(),
    }))
}

fn record(
    name: &str,
    version: i64,
    sealed: &SealedSecret,
    created_us: i64,
    rotated_us: Option<i64>,
) -> SecretRecord {
    SecretRecord {
        name: name.to_owned(),
        version,
        kek_id: sealed.kek_id.clone(),
        nonce: sealed.nonce_base64(),
        ciphertext: sealed.ciphertext_base64(),
        created_us,
        rotated_us,
    }
}

/// A stored version as the cipher binds it (the schema keeps it positive).
fn stored_version(name: &str, version: i64) -> Result<u64, SecretError> {
    u64::try_from(version).map_err(|_| SecretError::Malformed {
        name: name.to_owned(),
        reason: "its version is negative",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn vault(dir: &tempfile::TempDir, kek: Kek) -> SecretVault {
        let url = format!("sqlite://{}", dir.path().join("mandate.db").display());
        SecretVault::new(kek, mandate_store::connect(&url).await.unwrap())
    }

    #[tokio::test]
    async fn a_stored_secret_is_revealed_as_its_latest_value() {
        let dir = tempfile::tempdir().unwrap();
        let vault = vault(&dir, Kek::generate().unwrap()).await;
        let created = vault.create("db-password", b"first", 10).await.unwrap();
        assert_eq!((created.version, created.rotated_us), (1, None));
        assert_eq!(
            vault.reveal("db-password").await.unwrap().expose(),
            b"first"
        );
        let rotated = vault.rotate("db-password", b"second", 20).await.unwrap();
        assert_eq!(
            (rotated.version, rotated.created_us, rotated.rotated_us),
            (2, 10, Some(20))
        );
        let value = vault.reveal("db-password").await.unwrap();
        assert_eq!(value.expose(), b"second");
        assert_eq!(format!("{value:?}"), "SecretValue(<redacted, 6 bytes>)");
    }

    #[tokio::test]
    async fn the_store_never_holds_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let vault = vault(&dir, Kek::generate().unwrap()).await;
        let record = vault
            .create("api-key", b"sk-live-0123456789", 10)
            .await
            .unwrap();
        let stored = vault.find("api-key").await.unwrap();
        assert_eq!(stored, record);
        assert!(!format!("{stored:?}").contains("sk-live"));
    }

    #[tokio::test]
    async fn a_secret_sealed_under_another_kek_is_refused_naming_both_ids() {
        let dir = tempfile::tempdir().unwrap();
        let first = Kek::generate().unwrap();
        let first_id = first.id().to_owned();
        vault(&dir, first)
            .await
            .create("api-key", b"sk-live-0123456789", 10)
            .await
            .unwrap();
        let other = vault(&dir, Kek::generate().unwrap()).await;
        let err = other.reveal("api-key").await.unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(&err, VaultError::Secret(SecretError::WrongKek { .. })),
            "{err:?}"
        );
        assert!(
            text.contains(&first_id) && text.contains(other.kek_id()),
            "{text}"
        );
        assert!(!text.contains("sk-live"), "{text}");
        assert_eq!(
            other.other_keks().await.unwrap(),
            BTreeMap::from([(first_id, 1)])
        );
        // Rotating re-seals it under the loaded KEK.
        other.rotate("api-key", b"sk-live-new", 20).await.unwrap();
        assert_eq!(
            other.reveal("api-key").await.unwrap().expose(),
            b"sk-live-new"
        );
        assert!(other.other_keks().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn unknown_taken_and_badly_named_secrets_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let vault = vault(&dir, Kek::generate().unwrap()).await;
        assert!(matches!(
            vault.reveal("ghost").await,
            Err(VaultError::NotFound { .. })
        ));
        assert!(matches!(
            vault.rotate("ghost", b"v", 1).await,
            Err(VaultError::NotFound { .. })
        ));
        vault.create("taken", b"v", 1).await.unwrap();
        assert!(matches!(
            vault.create("taken", b"w", 2).await,
            Err(VaultError::Store(StoreError::Conflict { .. }))
        ));
        assert!(matches!(
            vault.create("a/b", b"v", 1).await,
            Err(VaultError::Secret(SecretError::InvalidName { .. }))
        ));
        assert!(matches!(
            vault.create("empty", b"", 1).await,
            Err(VaultError::Secret(SecretError::EmptyValue { .. }))
        ));
    }
}
