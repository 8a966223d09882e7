//! X.509-SVIDs made by an independent toolchain in SPIRE's layout (root,
//! intermediate, leaf): the good one verifies, and every refusal of the
//! X509-SVID rules names its reason.

mod common;

use common::{FIXTURE_EXPIRY, NOW, chain, example_org, fixture, spire_bundle};
use mandate_identity::{
    IdentityError, SpiffeBundle, TrustBundles, VerifiedX509Svid, verify_x509_svid, x5t_s256,
};
use rustls_pki_types::CertificateDer;

fn refusal(name: &str, bundles: &TrustBundles) -> IdentityError {
    verify_x509_svid(bundles, &chain(name), NOW).unwrap_err()
}

#[test]
fn verifies_a_spire_workload_svid_with_its_intermediate() {
    let presented = chain("workload.pem");
    let verified = verify_x509_svid(&example_org(), &presented, NOW).unwrap();
    assert_eq!(
        verified,
        VerifiedX509Svid {
            spiffe_id: "spiffe://example.org/workload".parse().unwrap(),
            not_after: FIXTURE_EXPIRY,
            x5t_s256: fixture("workload.x5t").trim().to_owned(),
            public_key_sha256: verified.public_key_sha256.clone(),
        }
    );
    assert_eq!(verified.x5t_s256, x5t_s256(&presented[0]));
}

#[test]
fn verifies_against_the_root_given_as_a_plain_pem_bundle() {
    let mut bundles = TrustBundles::default();
    bundles.insert(SpiffeBundle::from_pem("example.org", &fixture("root.pem")).unwrap());
    let verified = verify_x509_svid(&bundles, &chain("workload.pem"), NOW).unwrap();
    assert_eq!(verified.spiffe_id.as_str(), "spiffe://example.org/workload");
}

#[test]
fn refuses_an_expired_svid() {
    let err = refusal("expired.pem", &example_org());
    assert_eq!(
        err,
        IdentityError::SvidExpired {
            not_after: "2021-01-01T00:00:00Z".to_owned()
        }
    );
    assert_eq!(
        err.to_string(),
        "X.509-SVID expired at 2021-01-01T00:00:00Z"
    );
}

#[test]
fn refuses_an_svid_before_its_not_before() {
    let err = verify_x509_svid(&example_org(), &chain("workload.pem"), 1_700_000_000).unwrap_err();
    assert_eq!(
        err.to_string(),
        "X.509-SVID is not valid before 2025-01-01T00:00:00Z"
    );
}

#[test]
fn refuses_a_leaf_from_a_rogue_root_that_copies_the_real_roots_name() {
    let err = refusal("untrusted.pem", &example_org());
    let IdentityError::UntrustedChain { trust_domain, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(trust_domain, "example.org");
    assert!(
        err.to_string().starts_with(
            "certificate chain does not lead to a trust anchor of trust domain example.org: "
        ),
        "{err}"
    );
}

#[test]
fn refuses_a_leaf_presented_without_its_intermediate() {
    let leaf_only = chain("workload.pem")[..1].to_vec();
    let err = verify_x509_svid(&example_org(), &leaf_only, NOW).unwrap_err();
    assert_eq!(
        err.to_string(),
        "certificate chain does not lead to a trust anchor of trust domain example.org: \
         no X.509 authority of the bundle issued it (unknown issuer)"
    );
}

#[test]
fn refuses_a_leaf_without_uri_san() {
    let err = refusal("no-uri-san.pem", &example_org());
    assert_eq!(err, IdentityError::NoSpiffeId);
    assert_eq!(err.to_string(), "certificate has no SPIFFE ID (no URI SAN)");
}

#[test]
fn refuses_a_leaf_with_two_uri_sans() {
    let err = refusal("two-uri-sans.pem", &example_org());
    assert_eq!(
        err.to_string(),
        "certificate has 2 URI SANs [\"spiffe://example.org/a\", \"spiffe://example.org/b\"]; \
         an X.509-SVID has exactly one"
    );
}

#[test]
fn refuses_a_leaf_of_a_trust_domain_without_bundle() {
    // other.org's leaf is signed by example.org's intermediate: example.org's
    // root must not vouch for another trust domain.
    let err = refusal("other-td.pem", &example_org());
    assert_eq!(
        err,
        IdentityError::UnknownTrustDomain {
            trust_domain: "other.org".to_owned()
        }
    );
}

#[test]
fn refuses_a_leaf_of_trust_domain_a_chained_to_the_root_of_b() {
    let mut bundles = example_org();
    bundles.insert(SpiffeBundle::from_pem("other.org", &fixture("other-org-root.pem")).unwrap());
    let err = refusal("other-td.pem", &bundles);
    assert!(
        matches!(&err, IdentityError::UntrustedChain { trust_domain, .. } if trust_domain == "other.org"),
        "{err:?}"
    );
    // And the reverse: example.org's leaf is not accepted through other.org's
    // bundle even when that bundle holds the rogue root that signed it.
    let mut bundles = example_org();
    bundles.insert(SpiffeBundle::from_pem("other.org", &fixture("rogue-root.pem")).unwrap());
    assert!(matches!(
        refusal("untrusted.pem", &bundles),
        IdentityError::UntrustedChain { trust_domain, .. } if trust_domain == "example.org"
    ));
}

#[test]
fn refuses_a_ca_certificate_as_leaf() {
    let err = refusal("ca-as-leaf.pem", &example_org());
    assert!(matches!(err, IdentityError::LeafIsCa { .. }), "{err:?}");
    assert!(
        err.to_string()
            .ends_with("is a CA (basicConstraints CA:TRUE); an X.509-SVID leaf must not be"),
        "{err}"
    );
}

#[test]
fn refuses_the_spire_root_itself_as_leaf() {
    let root = chain("root.pem");
    let err = verify_x509_svid(&example_org(), &root, NOW).unwrap_err();
    assert!(matches!(err, IdentityError::LeafIsCa { .. }), "{err:?}");
}

#[test]
fn refuses_a_leaf_with_key_cert_sign() {
    let err = refusal("keycertsign.pem", &example_org());
    assert_eq!(
        err.to_string(),
        "the leaf certificate for spiffe://example.org/workload has keyCertSign in its keyUsage"
    );
}

#[test]
fn refuses_a_leaf_without_digital_signature() {
    let err = refusal("no-digital-signature.pem", &example_org());
    assert_eq!(
        err.to_string(),
        "the leaf certificate for spiffe://example.org/workload lacks digitalSignature in its keyUsage"
    );
}

#[test]
fn refuses_an_empty_chain() {
    let err = verify_x509_svid(&example_org(), &[], NOW).unwrap_err();
    assert_eq!(err, IdentityError::EmptyChain);
}

#[test]
fn refuses_bytes_that_are_not_a_certificate() {
    let junk = [CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01])];
    let err = verify_x509_svid(&example_org(), &junk, NOW).unwrap_err();
    assert!(
        matches!(err, IdentityError::BadCertificate { .. }),
        "{err:?}"
    );
}

#[test]
fn refuses_when_the_bundle_has_no_x509_authority() {
    let mut jwt_only = SpiffeBundle::new("example.org").unwrap();
    let spire = spire_bundle();
    let kid = spire.jwt_key_ids()[0];
    let jwk = serde_json::to_value(spire.jwt_authority(kid).unwrap()).unwrap();
    jwt_only.add_jwt_authority(kid, &jwk).unwrap();
    let mut bundles = TrustBundles::default();
    bundles.insert(jwt_only);
    let err = refusal("workload.pem", &bundles);
    assert_eq!(
        err.to_string(),
        "certificate chain does not lead to a trust anchor of trust domain example.org: \
         its bundle holds no X.509 authority"
    );
}
