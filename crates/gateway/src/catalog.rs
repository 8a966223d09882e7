//! What the operator says about each upstream tool: the capability it needs,
//! labels for policy, and whether it can send data out.
//!
//! Keep one catalog per upstream, keyed by the tool's name on that upstream,
//! or one for all upstreams keyed by `<upstream>.<tool>` ([`crate::tool_id`]);
//! never one catalog of bare names shared by several upstreams, or one
//! upstream's classification would apply to another's tool of the same name.
//! A tool missing from the catalog is treated as the most dangerous kind:
//! class `delegate`, egress, label `unclassified`, and `known = false` for
//! policy to see.

use std::collections::HashMap;

use mandate_tokens::Capability;
use serde::{Deserialize, Serialize};

/// The label an unclassified tool carries.
pub const UNCLASSIFIED: &str = "unclassified";

/// Which capability a tool needs: reading, acting, or handing authority on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolClass {
    /// Reads data; needs the `read` capability.
    Read,
    /// Changes something; needs `act`.
    Act,
    /// Starts or instructs other agents; needs `delegate`. Also the class of
    /// every tool the catalog does not know.
    Delegate,
}

impl ToolClass {
    /// The lowercase name, as policies see it in `context.tool.class`.
    pub fn as_str(self) -> &'static str {
        self.capability().as_str()
    }

    /// The task capability this class needs.
    pub fn capability(self) -> Capability {
        match self {
            ToolClass::Read => Capability::Read,
            ToolClass::Act => Capability::Act,
            ToolClass::Delegate => Capability::Delegate,
        }
    }
}

/// One tool's classification, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    /// The capability the tool needs.
    pub class: ToolClass,
    /// Free labels for policy (`pii`, `finance`, ...). Empty by default.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Whether the tool can send data outside (mail, web requests, uploads).
    /// Required: no default is safe to guess.
    pub egress: bool,
    /// Whether the tool destroys or overwrites something (delete, write,
    /// move, deploy). Default `false`.
    #[serde(default)]
    pub destructive: bool,
}

impl CatalogEntry {
    /// The entry every unknown tool gets: `delegate`, egress, destructive,
    /// `unclassified`.
    pub fn unclassified() -> CatalogEntry {
        CatalogEntry {
            class: ToolClass::Delegate,
            labels: vec![UNCLASSIFIED.to_owned()],
            egress: true,
            destructive: true,
        }
    }
}

/// Why a catalog cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// An entry with an empty name.
    #[error("a catalog entry has an empty tool name")]
    EmptyName,
    /// The same tool listed twice.
    #[error("catalog entry {key:?} is listed twice")]
    Duplicate {
        /// The key.
        key: String,
    },
    /// A label that is empty, too long or has other characters than ASCII
    /// letters, digits, `-`, `_`, `.`, `:` and `/`.
    #[error("catalog entry {key:?} has an invalid label {label:?}")]
    BadLabel {
        /// The key.
        key: String,
        /// The label as written.
        label: String,
    },
}

/// Every classified tool, by qualified name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    entries: HashMap<String, CatalogEntry>,
}

impl Catalog {
    /// Builds a catalog from `(name, entry)` pairs (see the module docs for
    /// which names). Each name must be non-empty and appear once.
    pub fn new(
        entries: impl IntoIterator<Item = (String, CatalogEntry)>,
    ) -> Result<Catalog, CatalogError> {
        let mut map = HashMap::new();
        for (key, entry) in entries {
            if key.is_empty() {
                return Err(CatalogError::EmptyName);
            }
            if map.contains_key(&key) {
                return Err(CatalogError::Duplicate { key });
            }
            let mut entry = entry;
            // Labels are compared as written after normalizing, so that
            // `Confidential` in the catalog meets `confidential` in a policy.
            let mut labels = Vec::with_capacity(entry.labels.len());
            for label in &entry.labels {
                match mandate_core::normalize_label(label) {
                    Some(l) if !labels.contains(&l) => labels.push(l),
                    Some(_) => {}
                    None => {
                        return Err(CatalogError::BadLabel {
                            key,
                            label: label.clone(),
                        });
                    }
                }
            }
            entry.labels = labels;
            map.insert(key, entry);
        }
        Ok(Catalog { entries: map })
    }

    /// The entry for `name` and whether the catalog knows it; an unknown tool gets
    /// [`CatalogEntry::unclassified`] and `false`.
    pub fn lookup(&self, name: &str) -> (CatalogEntry, bool) {
        match self.entries.get(name) {
            Some(entry) => (entry.clone(), true),
            None => (CatalogEntry::unclassified(), false),
        }
    }

    /// How many tools are classified.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no tool is classified.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(class: ToolClass) -> CatalogEntry {
        CatalogEntry {
            class,
            labels: vec!["reports".into()],
            egress: false,
            destructive: false,
        }
    }

    #[test]
    fn known_tools_get_their_entry_and_unknown_ones_the_most_dangerous() {
        let c = Catalog::new([("files.read".to_owned(), entry(ToolClass::Read))]).unwrap();
        assert_eq!(c.lookup("files.read"), (entry(ToolClass::Read), true));
        let (unknown, known) = c.lookup("files.delete");
        assert!(!known);
        assert_eq!(unknown.class, ToolClass::Delegate);
        assert!(unknown.egress);
        assert_eq!(unknown.labels, ["unclassified"]);
    }

    #[test]
    fn another_upstreams_tool_of_the_same_name_is_not_classified() {
        // One catalog for all upstreams, keyed by qualified names.
        let key = crate::tool_id("files", "read").unwrap();
        let c = Catalog::new([(key, entry(ToolClass::Read))]).unwrap();
        // Upstream "evil" serving a tool named "read", or one named "files.read".
        assert!(!c.lookup(&crate::tool_id("evil", "read").unwrap()).1);
        assert!(!c.lookup(&crate::tool_id("evil", "files.read").unwrap()).1);
    }

    #[test]
    fn refuses_empty_names_and_duplicates() {
        let err = Catalog::new([(String::new(), entry(ToolClass::Act))]).unwrap_err();
        assert_eq!(err, CatalogError::EmptyName);
        let err = Catalog::new([
            ("a.x".to_owned(), entry(ToolClass::Act)),
            ("a.x".to_owned(), entry(ToolClass::Read)),
        ])
        .unwrap_err();
        assert_eq!(err, CatalogError::Duplicate { key: "a.x".into() });
    }

    #[test]
    fn entries_read_from_config_with_lowercase_classes() {
        let e: CatalogEntry = serde_json::from_str(r#"{"class": "act", "egress": true}"#).unwrap();
        assert_eq!(e.class, ToolClass::Act);
        assert!(e.labels.is_empty());
        assert!(serde_json::from_str::<CatalogEntry>(r#"{"class": "act"}"#).is_err());
        assert!(
            serde_json::from_str::<CatalogEntry>(r#"{"class": "Act", "egress": true}"#).is_err()
        );
        assert_eq!(ToolClass::Delegate.as_str(), "delegate");
        assert_eq!(ToolClass::Read.capability(), Capability::Read);
    }
}
