//! SPIFFE bundles in the bundle format: SPIRE's own bundle reads, the shapes
//! go-spiffe accepts and ignores read the same way here, malformed entries
//! are refused by index, and what this crate writes reads back unchanged.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{EC_KID, RSA_KID, chain, fixture, spire_bundle};
use mandate_identity::{IdentityError, SpiffeBundle, TrustBundles, certificates_from_pem};
use serde_json::{Value, json};

/// bundle.json as a JSON value, to build variants of it.
fn spire_doc() -> Value {
    serde_json::from_str(&fixture("bundle.json")).unwrap()
}

fn entry_error(doc: &Value) -> String {
    SpiffeBundle::from_json("example.org", &doc.to_string())
        .unwrap_err()
        .to_string()
}

#[test]
fn reads_spires_bundle() {
    let bundle = spire_bundle();
    assert_eq!(bundle.trust_domain(), "example.org");
    assert_eq!(bundle.x509_authorities(), chain("root.pem").as_slice());
    assert_eq!(bundle.jwt_key_ids(), vec![EC_KID, RSA_KID]);
    assert_eq!(bundle.sequence(), Some(1));
    assert_eq!(bundle.refresh_hint(), Some(300));
}

#[test]
fn writes_the_same_entries_spire_wrote() {
    let ours: Value = serde_json::from_str(&spire_bundle().to_json()).unwrap();
    let theirs = spire_doc();
    // Compared as JSON values, not text: whether serde_json keeps member
    // order depends on features other crates of the build turn on.
    let (ours_keys, theirs_keys) = (
        ours["keys"].as_array().unwrap(),
        theirs["keys"].as_array().unwrap(),
    );
    assert_eq!(ours_keys.len(), theirs_keys.len());
    for key in theirs_keys {
        assert!(ours_keys.contains(key), "missing {key}");
    }
    assert_eq!(ours["spiffe_sequence"], json!(1));
    assert_eq!(ours["spiffe_refresh_hint"], json!(300));
}

#[test]
fn round_trips_through_json() {
    let bundle = spire_bundle();
    let back = SpiffeBundle::from_json("example.org", &bundle.to_json()).unwrap();
    assert_eq!(back, bundle);
}

#[test]
fn round_trips_x509_authorities_through_pem() {
    let mut bundle = spire_bundle();
    bundle.add_x509_authority(chain("other-org-root.pem").remove(0));
    let pem = bundle.x509_authorities_pem();
    assert_eq!(
        certificates_from_pem(&pem).unwrap(),
        bundle.x509_authorities()
    );
    let back = SpiffeBundle::from_pem("example.org", &pem).unwrap();
    assert_eq!(back.x509_authorities(), bundle.x509_authorities());
    assert!(back.jwt_key_ids().is_empty());
}

#[test]
fn reads_the_shapes_go_spiffe_reads() {
    // As in go-spiffe's spiffebundle testdata: an x509-svid entry with its key
    // members, a jwt-svid entry with kid, an entry with an unrecognized use
    // and one with no use at all (both ignored), and the two optional members.
    let doc = spire_doc();
    let x509 = doc["keys"][0].clone();
    let mut ignored_use = doc["keys"][1].clone();
    ignored_use["use"] = json!("invalid");
    let mut no_use = doc["keys"][2].clone();
    no_use.as_object_mut().unwrap().remove("use");
    let shaped = json!({
        "spiffe_sequence": 42,
        "spiffe_refresh_hint": 2419200,
        "keys": [x509, ignored_use, no_use, doc["keys"][1]],
    });
    let bundle = SpiffeBundle::from_json("example.org", &shaped.to_string()).unwrap();
    assert_eq!(bundle.x509_authorities().len(), 1);
    assert_eq!(bundle.jwt_key_ids(), vec![EC_KID]);
    assert_eq!(bundle.sequence(), Some(42));
    assert_eq!(bundle.refresh_hint(), Some(2_419_200));
}

#[test]
fn accepts_an_x509_entry_with_only_x5c() {
    let der = &chain("root.pem")[0];
    let doc = json!({"keys": [{"use": "x509-svid", "x5c": [STANDARD.encode(der)]}]});
    let bundle = SpiffeBundle::from_json("example.org", &doc.to_string()).unwrap();
    assert_eq!(bundle.x509_authorities(), std::slice::from_ref(der));
}

#[test]
fn ignores_entries_of_an_unknown_key_type() {
    let mut doc = spire_doc();
    doc["keys"][1]["kty"] = json!("AKP");
    let bundle = SpiffeBundle::from_json("example.org", &doc.to_string()).unwrap();
    assert_eq!(bundle.jwt_key_ids(), vec![RSA_KID]);
}

#[test]
fn ignores_ed25519_jwt_keys_no_jwt_svid_algorithm_uses() {
    let okp = json!({"use": "jwt-svid", "kid": "ed", "kty": "OKP", "crv": "Ed25519",
                     "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
    let mut doc = spire_doc();
    doc["keys"].as_array_mut().unwrap().push(okp.clone());
    let bundle = SpiffeBundle::from_json("example.org", &doc.to_string()).unwrap();
    assert_eq!(bundle.jwt_key_ids(), vec![EC_KID, RSA_KID]);
    let err = SpiffeBundle::new("example.org")
        .unwrap()
        .add_jwt_authority("ed", &okp)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "JWT authority \"ed\" is not a usable public JWK: \
         an OKP Ed25519 key cannot verify JWT-SVIDs (RS, ES and PS algorithms only)"
    );
}

#[test]
fn refuses_an_x509_entry_without_exactly_one_certificate() {
    let mut doc = spire_doc();
    let cert = doc["keys"][0]["x5c"][0].clone();
    doc["keys"][0]["x5c"] = json!([cert.clone(), cert]);
    assert_eq!(
        entry_error(&doc),
        "the SPIFFE bundle for example.org has a malformed keys[0]: \
         x5c must hold exactly one certificate string, not 2 entries"
    );
    doc["keys"][0]["x5c"] = json!([]);
    assert!(entry_error(&doc).ends_with("not 0 entries"));
    doc["keys"][0].as_object_mut().unwrap().remove("x5c");
    assert!(entry_error(&doc).ends_with("an x509-svid key must have x5c"));
}

#[test]
fn refuses_an_x509_entry_that_is_not_a_certificate() {
    let mut doc = spire_doc();
    doc["keys"][0]["x5c"] = json!(["not base64!"]);
    assert!(entry_error(&doc).contains("keys[0]: x5c[0] is not base64"));
    doc["keys"][0]["x5c"] = json!([STANDARD.encode(b"not a certificate")]);
    assert!(entry_error(&doc).contains("keys[0]: x5c[0]: certificate cannot be parsed"));
}

#[test]
fn refuses_an_x509_entry_whose_key_members_contradict_its_certificate() {
    let mut doc = spire_doc();
    doc["keys"][0]["x"] = doc["keys"][1]["x"].clone();
    assert_eq!(
        entry_error(&doc),
        "the SPIFFE bundle for example.org has a malformed keys[0]: \
         member \"x\" does not match the public key of the certificate in x5c"
    );
    let mut doc = spire_doc();
    doc["keys"][0]["kty"] = json!("RSA");
    assert!(entry_error(&doc).contains("member \"kty\" does not match"));
}

#[test]
fn refuses_a_jwt_entry_without_kid_or_with_a_repeated_kid() {
    let mut doc = spire_doc();
    doc["keys"][1].as_object_mut().unwrap().remove("kid");
    assert_eq!(
        entry_error(&doc),
        "the SPIFFE bundle for example.org has a malformed keys[1]: \
         a jwt-svid key must have a non-empty kid"
    );
    let mut doc = spire_doc();
    doc["keys"][2]["kid"] = json!(EC_KID);
    assert_eq!(
        entry_error(&doc),
        format!(
            "the SPIFFE bundle for example.org has a malformed keys[2]: kid \"{EC_KID}\" appears twice"
        )
    );
}

#[test]
fn refuses_a_jwt_entry_that_is_not_a_public_key() {
    let mut doc = spire_doc();
    doc["keys"][1]["d"] = json!("c2VjcmV0");
    assert!(
        entry_error(&doc).contains("private member \"d\""),
        "{}",
        entry_error(&doc)
    );
    let mut doc = spire_doc();
    doc["keys"][1]["crv"] = json!("P-521");
    assert!(
        entry_error(&doc).contains("unsupported curve"),
        "{}",
        entry_error(&doc)
    );
    let mut doc = spire_doc();
    doc["keys"][2]["n"] = json!("AQAB");
    assert!(
        entry_error(&doc).contains("keys[2]: jwt-svid key"),
        "{}",
        entry_error(&doc)
    );
    let mut doc = spire_doc();
    doc["keys"][1]["kty"] = json!("oct");
    assert!(
        entry_error(&doc).contains("symmetric"),
        "{}",
        entry_error(&doc)
    );
}

#[test]
fn refuses_documents_that_are_not_bundles() {
    for (json, reason) in [
        ("not json", "not JSON"),
        ("[]", "not a JSON object"),
        ("{}", "it has no \"keys\" member"),
        (r#"{"keys": {}}"#, "\"keys\" is not an array"),
        (
            r#"{"keys": [], "spiffe_refresh_hint": "5m"}"#,
            "spiffe_refresh_hint is \"5m\"",
        ),
        (r#"{"keys": [7]}"#, "keys[0]: not a JSON object"),
    ] {
        let err = SpiffeBundle::from_json("example.org", json).unwrap_err();
        assert!(err.to_string().contains(reason), "{json}: {err}");
    }
}

#[test]
fn adds_and_replaces_jwt_authorities() {
    let doc = spire_doc();
    let mut bundle = SpiffeBundle::new("example.org").unwrap();
    bundle.add_jwt_authority("k1", &doc["keys"][1]).unwrap_err();
    let mut jwk = doc["keys"][1].clone();
    jwk.as_object_mut().unwrap().remove("kid");
    bundle.add_jwt_authority("k1", &jwk).unwrap();
    bundle.add_jwt_authority("k1", &doc["keys"][2]).unwrap_err();
    bundle.add_jwt_authority(RSA_KID, &doc["keys"][2]).unwrap();
    assert_eq!(bundle.jwt_key_ids(), vec!["k1", RSA_KID]);
    assert_eq!(
        bundle.add_jwt_authority("", &jwk),
        Err(IdentityError::BadJwtAuthority {
            kid: String::new(),
            reason: "the kid is empty".to_owned()
        })
    );
}

#[test]
fn keeps_one_copy_of_an_x509_authority() {
    let mut bundle = spire_bundle();
    bundle.add_x509_authority(chain("root.pem").remove(0));
    assert_eq!(bundle.x509_authorities().len(), 1);
}

#[test]
fn keeps_one_bundle_per_trust_domain() {
    let mut bundles = TrustBundles::default();
    bundles.insert(SpiffeBundle::from_pem("other.org", &fixture("other-org-root.pem")).unwrap());
    bundles.insert(SpiffeBundle::new("example.org").unwrap());
    bundles.insert(spire_bundle());
    assert_eq!(bundles.trust_domains(), vec!["example.org", "other.org"]);
    assert_eq!(bundles.get("example.org"), Some(&spire_bundle()));
    assert_eq!(bundles.get("example.com"), None);
    let mut all = chain("root.pem");
    all.extend(chain("other-org-root.pem"));
    assert_eq!(bundles.all_x509_authorities(), all);
}
