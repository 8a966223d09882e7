//! The deferred client certificate verifier in a real rustls handshake, run in
//! memory: any parseable client certificate gets through TLS (and is judged
//! afterwards by `verify_x509_svid`), but only with its private key.

mod common;

use std::sync::Arc;

use common::{NOW, example_org, fixture};
use mandate_identity::{
    BuiltinCa, DeferredClientCertVerifier, IdentityError, certificates_from_pem,
    generate_agent_key, verify_x509_svid,
};
use rustls::client::ResolvesClientCert;
use rustls::crypto::aws_lc_rs;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Presents a fixed chain and key, matching or not.
#[derive(Debug)]
struct Presents(Option<Arc<CertifiedKey>>);

impl ResolvesClientCert for Presents {
    fn resolve(&self, _: &[&[u8]], _: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.0.clone()
    }
    fn has_certs(&self) -> bool {
        self.0.is_some()
    }
}

fn presents(chain_pem: &str, key_pem: &str) -> Presents {
    let chain = certificates_from_pem(chain_pem).unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let signer = aws_lc_rs::sign::any_supported_type(&key).unwrap();
    Presents(Some(Arc::new(CertifiedKey::new(chain, signer))))
}

/// Runs a handshake with Mandate's server configuration; returns the chain
/// the server saw, or the error it stopped on.
fn handshake(
    client_cert: Presents,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<Option<Vec<CertificateDer<'static>>>, rustls::Error> {
    let ca = BuiltinCa::generate("mandate.test", NOW, 1).unwrap();
    let (cert_pem, key_pem) = ca
        .issue_server_certificate(&["localhost".to_owned()], &[], NOW, 3_600)
        .unwrap();
    let provider = Arc::new(aws_lc_rs::default_provider());
    let server_config = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .unwrap()
        .with_client_cert_verifier(Arc::new(DeferredClientCertVerifier::new()))
        .with_single_cert(
            certificates_from_pem(&cert_pem).unwrap(),
            PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap(),
        )
        .unwrap();
    // The client trusts any server: the subject here is the server's
    // judgement of the client.
    let client_config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptServer))
        .with_client_cert_resolver(Arc::new(client_cert));
    let mut client =
        ClientConnection::new(Arc::new(client_config), "localhost".try_into().unwrap()).unwrap();
    let mut server = ServerConnection::new(Arc::new(server_config)).unwrap();
    for _ in 0..20 {
        while client.wants_write() {
            let mut buf = Vec::new();
            client.write_tls(&mut buf).unwrap();
            server.read_tls(&mut buf.as_slice()).unwrap();
            server.process_new_packets()?;
        }
        while server.wants_write() {
            let mut buf = Vec::new();
            server.write_tls(&mut buf).unwrap();
            client.read_tls(&mut buf.as_slice()).unwrap();
            client.process_new_packets()?;
        }
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(server.peer_certificates().map(<[_]>::to_vec));
        }
    }
    panic!("the handshake did not finish");
}

/// A server certificate verifier that accepts anything.
#[derive(Debug)]
struct AcceptServer;

impl rustls::client::danger::ServerCertVerifier for AcceptServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        DeferredClientCertVerifier::new().supported_verify_schemes()
    }
}

const TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
const TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];

#[test]
fn offers_client_auth_without_requiring_it_or_hinting_roots() {
    let verifier = DeferredClientCertVerifier::new();
    assert!(verifier.offer_client_auth());
    assert!(!verifier.client_auth_mandatory());
    assert!(verifier.root_hint_subjects().is_empty());
}

#[test]
fn lets_a_spire_svid_with_its_key_through_for_later_verification() {
    for versions in [TLS13, TLS12] {
        let seen = handshake(
            presents(&fixture("workload.pem"), &fixture("workload.key")),
            versions,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            seen,
            certificates_from_pem(&fixture("workload.pem")).unwrap()
        );
        let verified = verify_x509_svid(&example_org(), &seen, NOW).unwrap();
        assert_eq!(verified.spiffe_id.as_str(), "spiffe://example.org/workload");
    }
}

#[test]
fn refuses_a_certificate_presented_without_its_private_key() {
    let (stranger_key, _) = generate_agent_key().unwrap();
    for versions in [TLS13, TLS12] {
        let err =
            handshake(presents(&fixture("workload.pem"), &stranger_key), versions).unwrap_err();
        assert_eq!(
            err,
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature)
        );
    }
}

#[test]
fn defers_an_untrusted_chain_to_the_application_layer() {
    let rogue = BuiltinCa::generate("example.org", NOW, 1).unwrap();
    let (key, public) = generate_agent_key().unwrap();
    let id = "spiffe://example.org/workload".parse().unwrap();
    let cert = rogue.issue_x509_svid(&id, &public, NOW, 3_600).unwrap();
    let seen = handshake(presents(&cert, &key), TLS13).unwrap().unwrap();
    let err = verify_x509_svid(&example_org(), &seen, NOW).unwrap_err();
    assert!(
        matches!(err, IdentityError::UntrustedChain { .. }),
        "{err:?}"
    );
}

#[test]
fn lets_a_client_without_certificate_through() {
    assert_eq!(handshake(Presents(None), TLS13).unwrap(), None);
}

#[test]
fn refuses_a_client_certificate_that_does_not_parse() {
    let junk = CertificateDer::from(b"not a certificate".to_vec());
    let err = DeferredClientCertVerifier::new()
        .verify_client_cert(&junk, &[], rustls_pki_types::UnixTime::now())
        .unwrap_err();
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
    );
}
