//! The built-in CA: what it generates, the SVIDs it issues over agents' keys
//! (verified as any SVID is), saving and loading it, and the server
//! certificate checked by rustls-webpki as a TLS client would.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::{NOW, fixture};
use mandate_identity::{
    BuiltinCa, IdentityError, NOT_BEFORE_BACKDATE_SECONDS, SpiffeId, TrustBundles,
    certificates_from_pem, generate_agent_key, verify_x509_svid,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use webpki::{EndEntityCert, KeyUsage};
use x509_parser::extensions::GeneralName;

const DAY: i64 = 86_400;

fn ca() -> BuiltinCa {
    BuiltinCa::generate("example.org", NOW, 365).unwrap()
}

fn bundles_of(ca: &BuiltinCa) -> TrustBundles {
    let mut bundles = TrustBundles::default();
    bundles.insert(ca.bundle());
    bundles
}

fn agent() -> SpiffeId {
    "spiffe://example.org/agent/triage-bot".parse().unwrap()
}

/// Issues an SVID for a fresh agent key; returns its chain.
fn svid(ca: &BuiltinCa, ttl: u64) -> Vec<CertificateDer<'static>> {
    let (_, public) = generate_agent_key().unwrap();
    certificates_from_pem(&ca.issue_x509_svid(&agent(), &public, NOW, ttl).unwrap()).unwrap()
}

#[test]
fn generates_a_spire_shaped_p256_root() {
    let ca = ca();
    assert_eq!(ca.trust_domain(), "example.org");
    assert_eq!(ca.not_after(), NOW + 365 * DAY);
    let der = certificates_from_pem(&ca.cert_pem()).unwrap().remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(cert.subject(), cert.issuer());
    let bc = cert.basic_constraints().unwrap().unwrap();
    assert!(bc.critical);
    assert!(bc.value.ca);
    assert_eq!(bc.value.path_len_constraint, Some(0));
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign() && !ku.digital_signature());
    let san = cert.subject_alternative_name().unwrap().unwrap();
    assert_eq!(
        san.value.general_names,
        vec![GeneralName::URI("spiffe://example.org")]
    );
    assert_eq!(
        cert.public_key()
            .algorithm
            .parameters
            .as_ref()
            .unwrap()
            .as_oid()
            .unwrap(),
        x509_parser::oid_registry::OID_EC_P256
    );
    assert_eq!(
        cert.validity().not_before.timestamp(),
        NOW - NOT_BEFORE_BACKDATE_SECONDS
    );
    assert!(ca.key_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
}

#[test]
fn an_issued_svid_verifies_against_the_cas_bundle() {
    let ca = ca();
    let (_, public) = generate_agent_key().unwrap();
    let pem = ca.issue_x509_svid(&agent(), &public, NOW, 3_600).unwrap();
    let chain = certificates_from_pem(&pem).unwrap();
    let verified = verify_x509_svid(&bundles_of(&ca), &chain, NOW).unwrap();
    assert_eq!(verified.spiffe_id, agent());
    assert_eq!(verified.not_after, NOW + 3_600);

    let (_, cert) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
    let agent_key = rustls_pki_types::SubjectPublicKeyInfoDer::from(pem_der(&public, "PUBLIC KEY"));
    assert_eq!(cert.public_key().raw, agent_key.as_ref());
    assert_eq!(
        cert.validity().not_before.timestamp(),
        NOW - NOT_BEFORE_BACKDATE_SECONDS
    );
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && eku.server_auth);
    assert!(!cert.is_ca());
}

#[test]
fn two_svids_for_the_same_key_have_different_serials() {
    let ca = ca();
    let (_, public) = generate_agent_key().unwrap();
    let serial = |pem: String| {
        let der = certificates_from_pem(&pem).unwrap().remove(0);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        cert.raw_serial().to_vec()
    };
    let a = serial(ca.issue_x509_svid(&agent(), &public, NOW, 60).unwrap());
    let b = serial(ca.issue_x509_svid(&agent(), &public, NOW, 60).unwrap());
    assert_ne!(a, b);
    assert_eq!(a.len(), 16);
}

#[test]
fn an_svid_from_another_builtin_ca_is_refused() {
    let trusted = ca();
    let other = ca();
    let err = verify_x509_svid(&bundles_of(&trusted), &svid(&other, 3_600), NOW).unwrap_err();
    assert!(
        matches!(&err, IdentityError::UntrustedChain { trust_domain, .. } if trust_domain == "example.org"),
        "{err:?}"
    );
}

#[test]
fn an_expired_builtin_svid_is_refused() {
    let ca = ca();
    let chain = svid(&ca, 600);
    assert!(verify_x509_svid(&bundles_of(&ca), &chain, NOW + 600).is_ok());
    let err = verify_x509_svid(&bundles_of(&ca), &chain, NOW + 601).unwrap_err();
    assert_eq!(
        err.to_string(),
        "X.509-SVID expired at 2033-05-18T03:43:20Z"
    );
}

#[test]
fn an_svid_never_outlives_its_ca() {
    let ca = BuiltinCa::generate("example.org", NOW, 1).unwrap();
    let chain = svid(&ca, 30 * DAY as u64);
    let verified = verify_x509_svid(&bundles_of(&ca), &chain, NOW).unwrap();
    assert_eq!(verified.not_after, ca.not_after());
}

#[test]
fn refuses_to_issue_outside_its_trust_domain() {
    let (_, public) = generate_agent_key().unwrap();
    let foreign: SpiffeId = "spiffe://other.org/agent/x".parse().unwrap();
    let err = ca()
        .issue_x509_svid(&foreign, &public, NOW, 60)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "spiffe://other.org/agent/x is not in trust domain example.org of this CA"
    );
}

#[test]
fn refuses_to_issue_when_expired_or_for_no_time() {
    let ca = ca();
    let (_, public) = generate_agent_key().unwrap();
    assert_eq!(
        ca.issue_x509_svid(&agent(), &public, NOW, 0),
        Err(IdentityError::ZeroValidity {
            what: "ttl_seconds"
        })
    );
    let err = ca
        .issue_x509_svid(&agent(), &public, ca.not_after(), 60)
        .unwrap_err();
    assert!(matches!(err, IdentityError::CaExpired { .. }), "{err:?}");
    assert_eq!(
        BuiltinCa::generate("example.org", NOW, 0).unwrap_err(),
        IdentityError::ZeroValidity {
            what: "validity_days"
        }
    );
    assert!(matches!(
        BuiltinCa::generate("Example.org", NOW, 1),
        Err(IdentityError::BadTrustDomain { .. })
    ));
}

#[test]
fn refuses_public_keys_it_should_not_certify() {
    let ca = ca();
    let (private, _) = generate_agent_key().unwrap();
    for (pem, reason) in [
        ("garbage".to_owned(), "not a PUBLIC KEY PEM"),
        (private, "not a PUBLIC KEY PEM"),
        (
            fixture("rsa-1024.pub.pem"),
            "an RSA key of 1024 bits is too small",
        ),
    ] {
        let err = ca.issue_x509_svid(&agent(), &pem, NOW, 60).unwrap_err();
        assert!(
            matches!(
                &err,
                IdentityError::BadKey {
                    what: "public key",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains(reason), "{err}");
    }
}

#[test]
fn certifies_a_spire_workload_key() {
    // The key openssl made for SPIRE's fixture, as an agent might bring it.
    let public = mandate_identity::public_key_pem_of(&fixture("workload.key")).unwrap();
    let ca = ca();
    let pem = ca.issue_x509_svid(&agent(), &public, NOW, 60).unwrap();
    let chain = certificates_from_pem(&pem).unwrap();
    assert!(verify_x509_svid(&bundles_of(&ca), &chain, NOW).is_ok());
}

#[test]
fn round_trips_through_pem_and_keeps_issuing() {
    let ca = ca();
    let loaded = BuiltinCa::from_pem(&ca.cert_pem(), &ca.key_pem()).unwrap();
    assert_eq!(loaded.trust_domain(), ca.trust_domain());
    assert_eq!(loaded.not_after(), ca.not_after());
    assert_eq!(loaded.cert_pem(), ca.cert_pem());
    assert_eq!(loaded.key_pem(), ca.key_pem());
    assert_eq!(loaded.bundle(), ca.bundle());
    // What the loaded CA issues verifies under the original's bundle.
    let chain = svid(&loaded, 60);
    assert!(verify_x509_svid(&bundles_of(&ca), &chain, NOW).is_ok());
}

#[test]
fn refuses_to_load_a_mismatched_or_unusable_ca() {
    let ca = ca();
    let other = BuiltinCa::generate("example.org", NOW, 1).unwrap();
    let err = BuiltinCa::from_pem(&ca.cert_pem(), &other.key_pem()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the CA certificate is not usable: the private key does not match its public key"
    );
    let leaf = ca
        .issue_x509_svid(&agent(), &generate_agent_key().unwrap().1, NOW, 60)
        .unwrap();
    assert!(
        BuiltinCa::from_pem(&leaf, &ca.key_pem())
            .unwrap_err()
            .to_string()
            .contains("it is not a CA")
    );
    let two = format!("{}{}", ca.cert_pem(), other.cert_pem());
    assert!(
        BuiltinCa::from_pem(&two, &ca.key_pem())
            .unwrap_err()
            .to_string()
            .contains("holds 2 certificates")
    );
    assert!(matches!(
        BuiltinCa::from_pem(&ca.cert_pem(), &ca.cert_pem()),
        Err(IdentityError::BadKey {
            what: "CA private key",
            ..
        })
    ));
    // SPIRE's intermediate is a CA of example.org, but its key is not this one.
    let err = BuiltinCa::from_pem(&fixture("intermediate.pem"), &fixture("workload.key"));
    assert!(
        matches!(err, Err(IdentityError::BadCaCertificate { .. })),
        "{err:?}"
    );
}

#[test]
fn the_server_certificate_validates_for_localhost_and_127_0_0_1() {
    let ca = ca();
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (cert_pem, key_pem) = ca
        .issue_server_certificate(&["localhost".to_owned()], &[loopback], NOW, 90 * DAY as u64)
        .unwrap();
    assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert_eq!(mandate_identity::public_key_pem_of(&key_pem).unwrap(), {
        let der = certificates_from_pem(&cert_pem).unwrap().remove(0);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let spki = cert.public_key().raw.to_vec();
        pem_text(&spki, "PUBLIC KEY")
    });

    let leaf = certificates_from_pem(&cert_pem).unwrap().remove(0);
    let root = certificates_from_pem(&ca.cert_pem()).unwrap().remove(0);
    let anchors = [webpki::anchor_from_trusted_cert(&root).unwrap()];
    let end_entity = EndEntityCert::try_from(&leaf).unwrap();
    end_entity
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &[],
            UnixTime::since_unix_epoch(Duration::from_secs(NOW as u64)),
            KeyUsage::server_auth(),
            None,
            None,
        )
        .unwrap();
    for name in ["localhost", "127.0.0.1"] {
        let server_name = ServerName::try_from(name).unwrap();
        end_entity
            .verify_is_valid_for_subject_name(&server_name)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
    for name in ["example.com", "127.0.0.2"] {
        let server_name = ServerName::try_from(name).unwrap();
        assert!(
            end_entity
                .verify_is_valid_for_subject_name(&server_name)
                .is_err()
        );
    }
    // It is also Mandate's own X.509-SVID.
    let verified = verify_x509_svid(&bundles_of(&ca), &[leaf], NOW).unwrap();
    assert_eq!(verified.spiffe_id.as_str(), "spiffe://example.org/mandate");
}

#[test]
fn refuses_a_server_name_that_is_not_a_dns_name() {
    let err = ca()
        .issue_server_certificate(&["not a name!".to_owned()], &[], NOW, 60)
        .unwrap_err();
    assert!(matches!(err, IdentityError::BadDnsName { .. }), "{err:?}");
}

/// The DER in the first PEM block labelled `label`.
fn pem_der(pem: &str, label: &str) -> Vec<u8> {
    use base64::Engine;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let body: String = pem
        .split(&begin)
        .nth(1)
        .and_then(|rest| rest.split(&end).next())
        .unwrap()
        .split_whitespace()
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

/// PEM text as rcgen writes it (64-character lines).
fn pem_text(der: &[u8], label: &str) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}
