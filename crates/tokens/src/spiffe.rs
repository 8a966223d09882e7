//! SPIFFE IDs, the `sub` of every task token.
//!
//! Parsed by the rules of the SPIFFE ID specification (§2): scheme `spiffe`, a
//! lowercase trust domain, a path of non-empty segments without `.` or `..`,
//! no query, fragment, port or user info. Agents always have a path, so a bare
//! trust domain ID is refused here.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::TokenError;

/// Longest SPIFFE ID, in bytes (spec §2.3).
pub const MAX_SPIFFE_ID_LEN: usize = 2048;
/// Longest trust domain, in bytes (spec §2.1).
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// A workload's SPIFFE ID, `spiffe://trust-domain/path`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    id: String,
    domain_end: usize,
}

impl SpiffeId {
    /// Parses and validates a SPIFFE ID that has a path.
    pub fn parse(id: &str) -> Result<SpiffeId, TokenError> {
        let bad = |reason| TokenError::BadSpiffeId {
            id: id.to_owned(),
            reason,
        };
        if id.len() > MAX_SPIFFE_ID_LEN {
            return Err(bad("longer than 2048 bytes"));
        }
        let rest = id
            .strip_prefix("spiffe://")
            .ok_or_else(|| bad("the scheme must be \"spiffe://\""))?;
        let (domain, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if domain.is_empty() {
            return Err(bad("the trust domain is empty"));
        }
        if domain.len() > MAX_TRUST_DOMAIN_LEN {
            return Err(bad("the trust domain is longer than 255 bytes"));
        }
        if !domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-_".contains(&b))
        {
            return Err(bad(
                "the trust domain may only hold a-z 0-9 . - _ (no port, user info or uppercase)",
            ));
        }
        if path.is_empty() || path == "/" {
            return Err(bad("an agent's SPIFFE ID needs a path"));
        }
        for segment in path[1..].split('/') {
            if segment.is_empty() {
                return Err(bad("a path segment is empty (double or trailing slash)"));
            }
            if segment == "." || segment == ".." {
                return Err(bad("a path segment is \".\" or \"..\""));
            }
            if !segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b))
            {
                return Err(bad("a path segment may only hold A-Z a-z 0-9 . - _"));
            }
        }
        Ok(SpiffeId {
            id: id.to_owned(),
            domain_end: "spiffe://".len() + domain.len(),
        })
    }

    /// The whole ID.
    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// The trust domain (`example.org`).
    pub fn trust_domain(&self) -> &str {
        &self.id["spiffe://".len()..self.domain_end]
    }

    /// The path, starting with `/`.
    pub fn path(&self) -> &str {
        &self.id[self.domain_end..]
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

impl std::str::FromStr for SpiffeId {
    type Err = TokenError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SpiffeId::parse(s)
    }
}

impl Serialize for SpiffeId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.id)
    }
}

impl<'de> Deserialize<'de> for SpiffeId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        SpiffeId::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_agent_id_into_trust_domain_and_path() {
        let id = SpiffeId::parse("spiffe://example.org/agent/triage-bot").unwrap();
        assert_eq!(id.trust_domain(), "example.org");
        assert_eq!(id.path(), "/agent/triage-bot");
        assert_eq!(id.to_string(), "spiffe://example.org/agent/triage-bot");
    }

    #[test]
    fn refuses_ids_that_break_the_spiffe_rules() {
        for (id, why) in [
            ("https://example.org/agent/a", "scheme"),
            ("SPIFFE://example.org/agent/a", "scheme"),
            ("spiffe:///agent/a", "trust domain is empty"),
            ("spiffe://Example.org/agent/a", "trust domain may only"),
            ("spiffe://example.org:8443/agent/a", "trust domain may only"),
            ("spiffe://user@example.org/agent/a", "trust domain may only"),
            ("spiffe://example.org", "needs a path"),
            ("spiffe://example.org/", "needs a path"),
            ("spiffe://example.org/agent/", "empty"),
            ("spiffe://example.org//a", "empty"),
            ("spiffe://example.org/agent/../admin", "\"..\""),
            ("spiffe://example.org/agent/a?x=1", "path segment may only"),
            ("spiffe://example.org/agent/a#f", "path segment may only"),
            ("spiffe://example.org/agent/%41", "path segment may only"),
        ] {
            let err = SpiffeId::parse(id).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(why), "{id}: {text}");
            assert!(
                text.contains(&format!("{id:?}")),
                "message quotes the id: {text}"
            );
        }
        let long = format!("spiffe://example.org/{}", "a".repeat(MAX_SPIFFE_ID_LEN));
        assert!(SpiffeId::parse(&long).is_err());
    }

    #[test]
    fn deserializing_validates() {
        assert!(serde_json::from_str::<SpiffeId>("\"spiffe://td/agent/x\"").is_ok());
        assert!(serde_json::from_str::<SpiffeId>("\"spiffe://td/agent/../x\"").is_err());
    }
}
