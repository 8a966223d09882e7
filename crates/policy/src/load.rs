//! Reading a policy directory into memory, and noticing when it changes.
//!
//! Reading is separate from building a [`crate::PolicyBundle`] so that tests and
//! tools can build bundles from strings, and so that the reload watcher can
//! compare a cheap [`Fingerprint`] instead of re-parsing every second.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::PolicyError;

/// One file of a policy directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Path relative to the directory, with `/` separators (this prefixes policy IDs).
    pub name: String,
    /// The file's text.
    pub text: String,
}

/// The contents of a policy directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySources {
    /// `*.cedar` files, sorted by name.
    pub policies: Vec<SourceFile>,
    /// `*.cedarschema` and `*.cedarschema.json` files, sorted by name.
    pub schemas: Vec<SourceFile>,
    /// `entities.json` at the top of the directory, if present.
    pub entities: Option<SourceFile>,
}

/// Name, size and modification time of every relevant file: equal fingerprints
/// mean nothing needs reloading.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprint(Vec<(String, u64, Option<SystemTime>)>);

enum FileRole {
    Policy,
    Schema,
    Entities,
}

fn role(name: &str) -> Option<FileRole> {
    if name == "entities.json" {
        Some(FileRole::Entities)
    } else if name.ends_with(".cedarschema") || name.ends_with(".cedarschema.json") {
        Some(FileRole::Schema)
    } else if name.ends_with(".cedar") {
        Some(FileRole::Policy)
    } else {
        None
    }
}

/// Every relevant file below `dir`, sorted, as (relative name, path).
fn walk(dir: &Path) -> Result<Vec<(String, PathBuf)>, PolicyError> {
    let mut out = Vec::new();
    let mut pending = vec![(String::new(), dir.to_path_buf())];
    while let Some((prefix, path)) = pending.pop() {
        let entries = std::fs::read_dir(&path).map_err(|source| PolicyError::Io {
            path: path.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| PolicyError::Io {
                path: path.clone(),
                source,
            })?;
            let file_name = entry.file_name().to_string_lossy().into_owned();
            // Editors leave dot-files and backups next to the real ones.
            if file_name.starts_with('.') {
                continue;
            }
            let rel = format!("{prefix}{file_name}");
            let file_type = entry.file_type().map_err(|source| PolicyError::Io {
                path: entry.path(),
                source,
            })?;
            if file_type.is_dir() {
                pending.push((format!("{rel}/"), entry.path()));
            } else if role(&file_name).is_some() {
                // entities.json counts only at the top of the directory.
                if file_name == "entities.json" && !prefix.is_empty() {
                    continue;
                }
                out.push((rel, entry.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

impl PolicySources {
    /// Reads every `*.cedar`, `*.cedarschema[.json]` file below `dir` and
    /// `dir/entities.json`.
    pub fn read_dir(dir: &Path) -> Result<PolicySources, PolicyError> {
        let mut sources = PolicySources::default();
        for (name, path) in walk(dir)? {
            let text = std::fs::read_to_string(&path)
                .map_err(|source| PolicyError::Io { path, source })?;
            let file = SourceFile {
                name: name.clone(),
                text,
            };
            match role(name.rsplit('/').next().unwrap_or(&name)) {
                Some(FileRole::Policy) => sources.policies.push(file),
                Some(FileRole::Schema) => sources.schemas.push(file),
                Some(FileRole::Entities) => sources.entities = Some(file),
                None => {}
            }
        }
        Ok(sources)
    }
}

impl Fingerprint {
    /// The fingerprint of `dir` now.
    pub fn of_dir(dir: &Path) -> Result<Fingerprint, PolicyError> {
        let mut parts = Vec::new();
        for (name, path) in walk(dir)? {
            let meta = std::fs::metadata(&path).map_err(|source| PolicyError::Io {
                path: path.clone(),
                source,
            })?;
            parts.push((name, meta.len(), meta.modified().ok()));
        }
        Ok(Fingerprint(parts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_policies_schemas_and_top_level_entities_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(p.join("b.cedar"), "permit(principal, action, resource);").unwrap();
        std::fs::create_dir(p.join("pack")).unwrap();
        std::fs::write(
            p.join("pack/a.cedar"),
            "forbid(principal, action, resource);",
        )
        .unwrap();
        std::fs::write(p.join("pack/entities.json"), "[]").unwrap();
        std::fs::write(p.join("s.cedarschema"), "entity User;").unwrap();
        std::fs::write(p.join("entities.json"), "[]").unwrap();
        std::fs::write(p.join("notes.md"), "ignored").unwrap();
        std::fs::write(p.join(".x.cedar.swp"), "ignored").unwrap();
        let s = PolicySources::read_dir(p).unwrap();
        let names: Vec<_> = s.policies.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["b.cedar", "pack/a.cedar"]);
        assert_eq!(s.schemas.len(), 1);
        assert_eq!(s.entities.unwrap().name, "entities.json");
    }

    #[test]
    fn fingerprint_changes_when_a_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.cedar"), "x").unwrap();
        let before = Fingerprint::of_dir(dir.path()).unwrap();
        assert_eq!(before, Fingerprint::of_dir(dir.path()).unwrap());
        std::fs::write(dir.path().join("a.cedar"), "xy").unwrap();
        assert_ne!(before, Fingerprint::of_dir(dir.path()).unwrap());
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_it() {
        let err = PolicySources::read_dir(Path::new("/no/such/policy/dir")).unwrap_err();
        assert!(err.to_string().contains("/no/such/policy/dir"), "{err}");
    }
}
