//! The node's own files in the data directory: its ID, its audit digest and
//! head keys, its CA and signing key, and (by default) its secrets KEK.
//!
//! Each is made once, on first start, and kept: the node ID names this node's
//! audit chain, and the key makes request digests comparable across restarts.

use std::io::Write;
use std::path::Path;

use anyhow::Context as _;
use mandate_identity::BuiltinCa;
use mandate_secrets::Kek;
use mandate_tokens::SigningKey;
use zeroize::Zeroizing;

use crate::config::Config;

/// Creates the data directory, private to the user, if it is missing. An
/// existing directory keeps its permissions (it may be shared, like `/tmp`);
/// a warning says so if others can read it.
pub(crate) fn ensure_data_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.is_dir() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir)?.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(dir = %dir.display(), mode = format!("{:o}", mode & 0o777), "the data directory is open to other users; its key files are not, but consider chmod 700");
            }
        }
        return Ok(());
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict permissions of {}", dir.display()))?;
    }
    Ok(())
}

/// Writes `bytes` to a new file readable only by the user; fails if it exists.
pub(crate) fn create_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

/// The node ID kept in `<data_dir>/node-id`, made on first use.
pub(crate) fn node_id(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("node-id");
    if !path.exists() {
        let id = format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        create_private(&path, id.as_bytes())?;
    }
    let id = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let id = id.trim();
    anyhow::ensure!(!id.is_empty(), "{} is empty", path.display());
    Ok(id.to_owned())
}

/// The 32-byte key for request digests, kept hex-encoded in
/// `<data_dir>/audit-digest.key`, made on first use.
pub(crate) fn digest_key(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    secret_key(&data_dir.join("audit-digest.key"))
}

/// The 32-byte key that seals this node's audit chain head, kept hex-encoded
/// in `<data_dir>/audit-head.key`, made on first use. It never goes into the
/// database: whoever can write there cannot forge the seal.
pub(crate) fn head_key(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    secret_key(&data_dir.join("audit-head.key"))
}

/// This node's ID and head key if `data_dir` holds them, without creating
/// anything: what `audit verify` needs to check the node's seal.
pub fn existing_head_key(data_dir: &Path) -> anyhow::Result<Option<(String, Vec<u8>)>> {
    let (id_path, key_path) = (data_dir.join("node-id"), data_dir.join("audit-head.key"));
    if !id_path.is_file() || !key_path.is_file() {
        return Ok(None);
    }
    Ok(Some((node_id(data_dir)?, read_key(&key_path)?)))
}

/// The built-in CA in `<data_dir>/ca/` (`ca.pem`, and `ca.key` readable only
/// by the user), made on first start for `trust_domain`. An existing CA for
/// another trust domain is refused rather than silently replaced.
pub(crate) fn builtin_ca(
    data_dir: &Path,
    trust_domain: &str,
    now: i64,
) -> anyhow::Result<BuiltinCa> {
    let dir = data_dir.join("ca");
    let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
    if !cert_path.exists() {
        ensure_data_dir(&dir)?;
        let ca = BuiltinCa::generate(trust_domain, now, CA_VALIDITY_DAYS)
            .map_err(|e| anyhow::anyhow!("cannot make the built-in CA: {e}"))?;
        create_private(&key_path, ca.key_pem().as_bytes())?;
        create_private(&cert_path, ca.cert_pem().as_bytes())?;
        tracing::info!(trust_domain, "created the built-in CA");
    }
    let cert = std::fs::read_to_string(&cert_path)
        .with_context(|| format!("cannot read {}", cert_path.display()))?;
    let key = std::fs::read_to_string(&key_path)
        .with_context(|| format!("cannot read {}", key_path.display()))?;
    let ca = BuiltinCa::from_pem(&cert, &key)
        .map_err(|e| anyhow::anyhow!("{} is not a usable CA: {e}", cert_path.display()))?;
    anyhow::ensure!(
        ca.trust_domain() == trust_domain,
        "the built-in CA in {} is for trust domain {:?}, but trust_domain is {:?}; use a new data directory to change it",
        dir.display(),
        ca.trust_domain(),
        trust_domain
    );
    anyhow::ensure!(
        ca.not_after() > now,
        "the built-in CA in {} has expired",
        dir.display()
    );
    Ok(ca)
}

/// How long the built-in CA is valid.
const CA_VALIDITY_DAYS: u32 = 3650;

/// This node's active token signing key, `<data_dir>/token-signing.key`
/// (PKCS#8, hex), made on first start.
pub(crate) fn signing_key(path: &Path) -> anyhow::Result<SigningKey> {
    if !path.exists() {
        let key = SigningKey::generate().map_err(|e| anyhow::anyhow!("{e}"))?;
        let der = key.to_pkcs8().map_err(|e| anyhow::anyhow!("{e}"))?;
        create_private(path, hex::encode(der).as_bytes())?;
    }
    let der = read_key(path)?;
    SigningKey::from_pkcs8(&der)
        .map_err(|e| anyhow::anyhow!("{} is not a signing key: {e}", path.display()))
}

/// Replaces the signing key file with `key`, atomically (write, then rename).
pub(crate) fn replace_signing_key(path: &Path, key: &SigningKey) -> anyhow::Result<()> {
    let der = key.to_pkcs8().map_err(|e| anyhow::anyhow!("{e}"))?;
    let tmp = path.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    create_private(&tmp, hex::encode(der).as_bytes())?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

/// The key-encryption key for secrets: `secrets_kek` if set, else the file
/// `secrets_kek_file`, else `<data_dir>/secrets.kek` (hex, mode 0600), made on
/// first start. That default sits next to the database, so a copy of the data
/// directory holds both the sealed secrets and their key: every start says so.
pub(crate) fn secrets_kek(config: &Config) -> anyhow::Result<Kek> {
    if let Some(text) = &config.secrets_kek {
        let kek = Kek::parse(text).context("configuration: secrets_kek")?;
        tracing::info!(kek_id = kek.id(), "secrets KEK from secrets_kek");
        return Ok(kek);
    }
    if let Some(path) = &config.secrets_kek_file {
        let kek = read_kek(path)?;
        warn_if_open_to_others(path);
        tracing::info!(kek_id = kek.id(), file = %path.display(), "secrets KEK from secrets_kek_file");
        return Ok(kek);
    }
    let path = config.data_dir.join("secrets.kek");
    if !path.exists() {
        let kek = Kek::generate().map_err(|e| anyhow::anyhow!("{e}"))?;
        create_private(&path, kek.to_hex().as_bytes())?;
        tracing::info!(kek_id = kek.id(), file = %path.display(), "created a secrets KEK");
    }
    let kek = read_kek(&path)?;
    tracing::warn!(
        kek_id = kek.id(),
        file = %path.display(),
        "the secrets KEK is kept in the data directory, next to the database it protects; for production, move it to a file outside it (secrets_kek_file) or to MANDATE_SECRETS_KEK"
    );
    Ok(kek)
}

fn read_kek(path: &Path) -> anyhow::Result<Kek> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the secrets KEK file {}", path.display()))?,
    );
    Kek::parse(&text).with_context(|| format!("{} is not a usable secrets KEK", path.display()))
}

fn warn_if_open_to_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(file = %path.display(), mode = format!("{:o}", meta.permissions().mode() & 0o777), "the secrets KEK file is readable by other users; chmod 600 it");
        }
    }
}

fn secret_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    if !path.exists() {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("no randomness available: {e}"))?;
        create_private(path, hex::encode(key).as_bytes())?;
    }
    read_key(path)
}

fn read_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let key = hex::decode(text.trim()).with_context(|| format!("{} is not hex", path.display()))?;
    anyhow::ensure!(
        key.len() >= 16,
        "{} holds fewer than 16 bytes",
        path.display()
    );
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(unix)]
    fn a_new_data_dir_is_private_and_an_existing_one_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let parent = tempfile::tempdir().unwrap();
        let fresh = parent.path().join("fresh");
        ensure_data_dir(&fresh).unwrap();
        assert_eq!(
            std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let shared = parent.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_data_dir(&shared).unwrap();
        assert_eq!(
            std::fs::metadata(&shared).unwrap().permissions().mode() & 0o777,
            0o755
        );
    }

    #[test]
    fn the_secrets_kek_comes_from_the_variable_the_file_or_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        // Default: made once in the data directory, then kept.
        let made = secrets_kek(&config).unwrap();
        let path = dir.path().join("secrets.kek");
        assert_eq!(secrets_kek(&config).unwrap().id(), made.id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A file elsewhere.
        let other = Kek::generate().unwrap();
        let file = dir.path().join("elsewhere.kek");
        std::fs::write(&file, format!("{}\n", *other.to_hex())).unwrap();
        config.secrets_kek_file = Some(file.clone());
        assert_eq!(secrets_kek(&config).unwrap().id(), other.id());
        // The variable wins.
        let third = Kek::generate().unwrap();
        config.secrets_kek = Some(third.to_hex().to_string());
        assert_eq!(secrets_kek(&config).unwrap().id(), third.id());
        // A file that holds no key is named, its content is not quoted.
        std::fs::write(&file, "hunter2-not-a-key").unwrap();
        config.secrets_kek = None;
        let err = format!("{:#}", secrets_kek(&config).unwrap_err());
        assert!(err.contains("elsewhere.kek"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn node_id_and_key_are_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let id = node_id(dir.path()).unwrap();
        assert_eq!(node_id(dir.path()).unwrap(), id);
        let key = digest_key(dir.path()).unwrap();
        assert_eq!(key.len(), 32);
        assert_eq!(digest_key(dir.path()).unwrap(), key);
        assert_eq!(existing_head_key(dir.path()).unwrap(), None);
        let head = head_key(dir.path()).unwrap();
        assert_ne!(head, key);
        assert_eq!(
            existing_head_key(dir.path()).unwrap(),
            Some((id.clone(), head))
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("audit-digest.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
