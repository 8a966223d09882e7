//! SPIFFE trust bundles: the keys that are authoritative for one trust domain
//! (SPIFFE Trust Domain and Bundle specification §4), read from and written
//! to the bundle's JWK Set form, and the set of bundles Mandate trusts.
//!
//! A bundle is always held with the name of its trust domain: an SVID is
//! checked only against the bundle of the trust domain it claims.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mandate_tokens::{MAX_TRUST_DOMAIN_LEN, PublicJwk};
use rustls_pki_types::CertificateDer;
use serde_json::{Map, Value, json};

use crate::authority::{
    certificate_key_members, check_entry_matches_certificate, parse_jwt_authority,
};
use crate::certs::{certificates_from_pem, parse, pem_encode};
use crate::error::IdentityError;

/// `use` of the entries that hold an X.509 authority.
const X509_SVID_USE: &str = "x509-svid";
/// `use` of the entries that hold a JWT authority.
const JWT_SVID_USE: &str = "jwt-svid";
/// Key types a bundle entry may have; any other makes the entry ignored (§4.2.1).
const KNOWN_KEY_TYPES: [&str; 4] = ["EC", "RSA", "OKP", "oct"];

/// A SPIFFE trust bundle: the X.509 authorities (root certificates) and JWT
/// authorities (public keys by `kid`) of one trust domain, with the optional
/// `spiffe_sequence` and `spiffe_refresh_hint`.
///
/// Its JSON form is the SPIFFE bundle format, a JWK Set whose `x509-svid`
/// keys carry exactly one certificate in `x5c` and whose `jwt-svid` keys carry
/// a `kid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpiffeBundle {
    trust_domain: String,
    x509_authorities: Vec<CertificateDer<'static>>,
    jwt_authorities: BTreeMap<String, PublicJwk>,
    sequence: Option<u64>,
    refresh_hint: Option<u64>,
}

impl SpiffeBundle {
    /// An empty bundle for `trust_domain` (`example.org`).
    pub fn new(trust_domain: &str) -> Result<SpiffeBundle, IdentityError> {
        check_trust_domain(trust_domain)?;
        Ok(SpiffeBundle {
            trust_domain: trust_domain.to_owned(),
            x509_authorities: Vec::new(),
            jwt_authorities: BTreeMap::new(),
            sequence: None,
            refresh_hint: None,
        })
    }

    /// The trust domain this bundle is authoritative for.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// Reads a bundle in the SPIFFE bundle format for `trust_domain`.
    ///
    /// Entries whose `use` is neither `x509-svid` nor `jwt-svid` (or absent),
    /// or whose `kty` is unknown, are ignored as the specification requires.
    /// A malformed entry of a known kind is an error: an `x509-svid` entry
    /// without exactly one parseable certificate in `x5c`, or with key members
    /// that contradict it; a `jwt-svid` entry without `kid`, with a repeated
    /// `kid`, or whose key is not a usable public EC or RSA key.
    pub fn from_json(trust_domain: &str, json: &str) -> Result<SpiffeBundle, IdentityError> {
        let mut bundle = SpiffeBundle::new(trust_domain)?;
        let bad = |reason: String| IdentityError::BadBundle {
            trust_domain: trust_domain.to_owned(),
            reason,
        };
        let doc: Value = serde_json::from_str(json).map_err(|e| bad(format!("not JSON: {e}")))?;
        let doc = doc
            .as_object()
            .ok_or_else(|| bad("not a JSON object".to_owned()))?;
        bundle.sequence = unsigned_member(doc, "spiffe_sequence").map_err(bad)?;
        bundle.refresh_hint = unsigned_member(doc, "spiffe_refresh_hint").map_err(bad)?;
        let keys = doc
            .get("keys")
            .ok_or_else(|| bad("it has no \"keys\" member".to_owned()))?
            .as_array()
            .ok_or_else(|| bad("\"keys\" is not an array".to_owned()))?;
        for (index, entry) in keys.iter().enumerate() {
            bundle
                .read_entry(entry)
                .map_err(|reason| IdentityError::BadBundleEntry {
                    trust_domain: trust_domain.to_owned(),
                    index,
                    reason,
                })?;
        }
        Ok(bundle)
    }

    /// Reads a plain CA bundle: every `CERTIFICATE` block of `pem` becomes an
    /// X.509 authority of `trust_domain`.
    pub fn from_pem(trust_domain: &str, pem: &str) -> Result<SpiffeBundle, IdentityError> {
        let mut bundle = SpiffeBundle::new(trust_domain)?;
        for cert in certificates_from_pem(pem)? {
            bundle.add_x509_authority(cert);
        }
        Ok(bundle)
    }

    /// The bundle in the SPIFFE bundle format.
    pub fn to_json(&self) -> String {
        let mut keys = Vec::new();
        for der in &self.x509_authorities {
            let mut entry = parse(der)
                .ok()
                .and_then(|cert| certificate_key_members(&cert))
                .unwrap_or_default();
            entry.insert("use".to_owned(), json!(X509_SVID_USE));
            entry.insert("x5c".to_owned(), json!([STANDARD.encode(der)]));
            keys.push(Value::Object(entry));
        }
        for (kid, key) in &self.jwt_authorities {
            let mut entry = match serde_json::to_value(key) {
                Ok(Value::Object(members)) => members,
                _ => Map::new(),
            };
            entry.insert("use".to_owned(), json!(JWT_SVID_USE));
            entry.insert("kid".to_owned(), json!(kid));
            keys.push(Value::Object(entry));
        }
        let mut doc = Map::new();
        doc.insert("keys".to_owned(), Value::Array(keys));
        if let Some(sequence) = self.sequence {
            doc.insert("spiffe_sequence".to_owned(), json!(sequence));
        }
        if let Some(hint) = self.refresh_hint {
            doc.insert("spiffe_refresh_hint".to_owned(), json!(hint));
        }
        let mut text = serde_json::to_string_pretty(&Value::Object(doc)).unwrap_or_default();
        text.push('\n');
        text
    }

    /// The X.509 authorities as a PEM CA bundle.
    pub fn x509_authorities_pem(&self) -> String {
        self.x509_authorities
            .iter()
            .map(|der| pem_encode("CERTIFICATE", der))
            .collect()
    }

    /// The X.509 authorities (trust anchors), DER.
    pub fn x509_authorities(&self) -> &[CertificateDer<'static>] {
        &self.x509_authorities
    }

    /// Adds an X.509 authority; adding one already present changes nothing.
    pub fn add_x509_authority(&mut self, der: CertificateDer<'static>) {
        if !self.x509_authorities.contains(&der) {
            self.x509_authorities.push(der);
        }
    }

    /// Adds (or replaces) the JWT authority `kid`, a public EC (P-256, P-384)
    /// or RSA (2048 bits or more) JWK. A `kid` member in the JWK, if any, must
    /// be `kid`; `use`, `alg` and other members are ignored.
    pub fn add_jwt_authority(
        &mut self,
        kid: &str,
        jwk_json: &serde_json::Value,
    ) -> Result<(), IdentityError> {
        let bad = |reason: String| IdentityError::BadJwtAuthority {
            kid: kid.to_owned(),
            reason,
        };
        if kid.is_empty() {
            return Err(bad("the kid is empty".to_owned()));
        }
        if let Some(inner) = jwk_json.get("kid")
            && inner.as_str() != Some(kid)
        {
            return Err(bad(format!("the JWK's own kid is {inner}")));
        }
        let key = parse_jwt_authority(jwk_json).map_err(bad)?;
        self.jwt_authorities.insert(kid.to_owned(), key);
        Ok(())
    }

    /// The JWT authority with key ID `kid`.
    pub fn jwt_authority(&self, kid: &str) -> Option<&PublicJwk> {
        self.jwt_authorities.get(kid)
    }

    /// The key IDs of the JWT authorities, sorted.
    pub fn jwt_key_ids(&self) -> Vec<&str> {
        self.jwt_authorities.keys().map(String::as_str).collect()
    }

    /// `spiffe_sequence`, if set.
    pub fn sequence(&self) -> Option<u64> {
        self.sequence
    }

    /// Sets or clears `spiffe_sequence`.
    pub fn set_sequence(&mut self, sequence: Option<u64>) {
        self.sequence = sequence;
    }

    /// `spiffe_refresh_hint` in seconds, if set.
    pub fn refresh_hint(&self) -> Option<u64> {
        self.refresh_hint
    }

    /// Sets or clears `spiffe_refresh_hint` (seconds).
    pub fn set_refresh_hint(&mut self, seconds: Option<u64>) {
        self.refresh_hint = seconds;
    }

    /// Adds one `keys` entry; `Err` says what is malformed in it.
    fn read_entry(&mut self, entry: &Value) -> Result<(), String> {
        let entry = entry.as_object().ok_or("not a JSON object")?;
        let use_ = entry.get("use").and_then(Value::as_str);
        if use_ != Some(X509_SVID_USE) && use_ != Some(JWT_SVID_USE) {
            return Ok(());
        }
        match entry.get("kty") {
            Some(Value::String(kty)) if !KNOWN_KEY_TYPES.contains(&kty.as_str()) => return Ok(()),
            Some(Value::String(_)) | None => {}
            Some(other) => return Err(format!("kty {other} is not a string")),
        }
        if use_ == Some(JWT_SVID_USE) {
            if entry.get("kty").and_then(Value::as_str) == Some("OKP") {
                // A key type no JWT-SVID algorithm uses: ignored, as unknown ones are.
                return Ok(());
            }
            let kid = match entry.get("kid") {
                Some(Value::String(kid)) if !kid.is_empty() => kid,
                _ => return Err("a jwt-svid key must have a non-empty kid".to_owned()),
            };
            if self.jwt_authorities.contains_key(kid) {
                return Err(format!("kid {kid:?} appears twice"));
            }
            let key = parse_jwt_authority(&Value::Object(entry.clone()))
                .map_err(|e| format!("jwt-svid key {kid:?}: {e}"))?;
            self.jwt_authorities.insert(kid.clone(), key);
            return Ok(());
        }
        let x5c = match entry.get("x5c") {
            Some(Value::Array(x5c)) => x5c,
            Some(_) => return Err("x5c is not an array".to_owned()),
            None => return Err("an x509-svid key must have x5c".to_owned()),
        };
        let [Value::String(b64)] = x5c.as_slice() else {
            return Err(format!(
                "x5c must hold exactly one certificate string, not {} entries",
                x5c.len()
            ));
        };
        let der = STANDARD
            .decode(b64)
            .map_err(|e| format!("x5c[0] is not base64: {e}"))?;
        let cert = parse(&der).map_err(|e| format!("x5c[0]: {e}"))?;
        if let Some(members) = certificate_key_members(&cert) {
            check_entry_matches_certificate(entry, &members)?;
        }
        self.add_x509_authority(CertificateDer::from(der));
        Ok(())
    }
}

/// The bundles Mandate trusts, one per trust domain.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TrustBundles {
    by_domain: BTreeMap<String, SpiffeBundle>,
}

impl TrustBundles {
    /// Adds a bundle, replacing the one of the same trust domain.
    pub fn insert(&mut self, b: SpiffeBundle) {
        self.by_domain.insert(b.trust_domain.clone(), b);
    }

    /// The bundle of trust domain `td`.
    pub fn get(&self, td: &str) -> Option<&SpiffeBundle> {
        self.by_domain.get(td)
    }

    /// Every X.509 authority of every trust domain (for TLS root hints or a
    /// combined CA file; SVID checks use only the SVID's own trust domain).
    pub fn all_x509_authorities(&self) -> Vec<CertificateDer<'static>> {
        self.by_domain
            .values()
            .flat_map(|b| b.x509_authorities.iter().cloned())
            .collect()
    }

    /// The trust domains, sorted.
    pub fn trust_domains(&self) -> Vec<&str> {
        self.by_domain.keys().map(String::as_str).collect()
    }
}

/// Checks a trust domain name by the SPIFFE ID rules (§2.1): 1 to 255 bytes
/// of `a-z 0-9 . - _`.
pub(crate) fn check_trust_domain(name: &str) -> Result<(), IdentityError> {
    let bad = |reason| IdentityError::BadTrustDomain {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if name.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(bad("it is longer than 255 bytes"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-_".contains(&b))
    {
        return Err(bad(
            "it may only hold a-z 0-9 . - _ (no scheme, port, path or uppercase)",
        ));
    }
    Ok(())
}

/// An optional non-negative integer member of the bundle document.
fn unsigned_member(doc: &Map<String, Value>, name: &str) -> Result<Option<u64>, String> {
    match doc.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("{name} is {value}, not a non-negative integer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_trust_domain_names_that_break_the_spiffe_rules() {
        for (name, why) in [
            ("", "empty"),
            ("Example.org", "a-z"),
            ("spiffe://example.org", "a-z"),
            ("example.org:443", "a-z"),
        ] {
            let err = SpiffeBundle::new(name).unwrap_err();
            assert!(err.to_string().contains(why), "{name}: {err}");
        }
        assert!(SpiffeBundle::new(&"a".repeat(256)).is_err());
        assert!(SpiffeBundle::new("example.org").is_ok());
    }

    #[test]
    fn a_document_without_keys_is_refused() {
        let err = SpiffeBundle::from_json("example.org", r#"{"spiffe_sequence": 1}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the SPIFFE bundle for example.org is malformed: it has no \"keys\" member"
        );
    }

    #[test]
    fn a_negative_sequence_is_refused() {
        let err = SpiffeBundle::from_json("example.org", r#"{"keys": [], "spiffe_sequence": -1}"#)
            .unwrap_err();
        assert!(err.to_string().contains("spiffe_sequence is -1"), "{err}");
    }

    #[test]
    fn entries_of_unknown_use_or_key_type_are_ignored() {
        let json = r#"{"keys": [
            {"use": "wit-svid", "kty": "EC", "x5c": "whatever"},
            {"kty": "EC", "crv": "P-256"},
            {"use": "jwt-svid", "kty": "ML-DSA", "kid": "pq"}
        ]}"#;
        let bundle = SpiffeBundle::from_json("example.org", json).unwrap();
        assert!(bundle.x509_authorities().is_empty());
        assert!(bundle.jwt_key_ids().is_empty());
    }

    #[test]
    fn an_empty_bundle_round_trips() {
        let mut bundle = SpiffeBundle::new("example.org").unwrap();
        bundle.set_sequence(Some(7));
        let back = SpiffeBundle::from_json("example.org", &bundle.to_json()).unwrap();
        assert_eq!(back, bundle);
        assert_eq!(back.sequence(), Some(7));
        assert_eq!(back.refresh_hint(), None);
    }
}
