//! The client certificate verifier of Mandate's TLS listener. It proves that
//! the client holds the private key of the certificate it presents and
//! nothing more, so that a bad SVID reaches the application layer and gets a
//! precise JSON refusal instead of an opaque TLS alert.

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

/// A rustls client certificate verifier that offers client authentication
/// without requiring it, accepts any certificate that parses as X.509, and
/// verifies the TLS 1.2 / 1.3 handshake signature with aws-lc-rs, which proves
/// the client holds the certificate's private key.
///
/// # Danger
///
/// It does **not** check the chain, the trust domain, the validity period or
/// any SPIFFE rule. A connection it lets through is authenticated only once
/// the application calls [`crate::verify_x509_svid`] on the peer's chain and
/// that succeeds; until then the peer certificate is an unverified claim.
/// Never use it where nothing calls [`crate::verify_x509_svid`] afterwards.
#[derive(Debug)]
pub struct DeferredClientCertVerifier {
    algorithms: WebPkiSupportedAlgorithms,
}

impl DeferredClientCertVerifier {
    /// A verifier using the signature algorithms of rustls' aws-lc-rs provider.
    pub fn new() -> DeferredClientCertVerifier {
        DeferredClientCertVerifier {
            algorithms: rustls::crypto::aws_lc_rs::default_provider()
                .signature_verification_algorithms,
        }
    }
}

impl Default for DeferredClientCertVerifier {
    fn default() -> Self {
        DeferredClientCertVerifier::new()
    }
}

impl ClientCertVerifier for DeferredClientCertVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        for der in std::iter::once(end_entity).chain(intermediates) {
            crate::certs::parse(der)
                .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
