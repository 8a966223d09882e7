//! Certificates as bytes and text: PEM in and out, DER parsing, thumbprints,
//! and the few fields of a certificate the SPIFFE rules look at.
//!
//! Shared by bundles, SVID verification and the built-in CA, so that every
//! parse failure reads the same way.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::error::IdentityError;

/// Parses a PEM chain: every `CERTIFICATE` block, in order, as DER. Other
/// blocks (keys, parameters) are skipped; no certificate at all is an error,
/// and so is a block that is not a parseable X.509 certificate.
pub fn certificates_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    let bad = |reason: String| IdentityError::BadPem {
        what: "certificate chain",
        reason,
    };
    let mut certs = Vec::new();
    for item in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let der = item.map_err(|e| bad(e.to_string()))?;
        parse(&der)?;
        certs.push(der);
    }
    if certs.is_empty() {
        return Err(bad("it holds no CERTIFICATE block".to_owned()));
    }
    Ok(certs)
}

/// The RFC 8705 `x5t#S256` confirmation of a certificate: the SHA-256 of its
/// DER, base64url without padding.
pub fn x5t_s256(cert_der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(cert_der))
}

/// Parses one DER certificate, refusing trailing bytes.
pub(crate) fn parse(der: &[u8]) -> Result<X509Certificate<'_>, IdentityError> {
    let (rest, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| IdentityError::BadCertificate {
            reason: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(IdentityError::BadCertificate {
            reason: format!("{} bytes follow the certificate", rest.len()),
        });
    }
    Ok(cert)
}

/// The URI SANs of a certificate, in order.
pub(crate) fn uri_sans(cert: &X509Certificate<'_>) -> Result<Vec<String>, IdentityError> {
    let san = cert
        .subject_alternative_name()
        .map_err(|e| IdentityError::BadCertificate {
            reason: format!("subjectAltName: {e}"),
        })?;
    Ok(san
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::URI(uri) => Some((*uri).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default())
}

/// Whether the certificate says `CA:TRUE`.
pub(crate) fn is_ca(cert: &X509Certificate<'_>) -> Result<bool, IdentityError> {
    let bc = cert
        .basic_constraints()
        .map_err(|e| IdentityError::BadCertificate {
            reason: format!("basicConstraints: {e}"),
        })?;
    Ok(bc.is_some_and(|ext| ext.value.ca))
}

/// PEM text of one DER object, 64 base64 characters a line.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        // Base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A unix time as RFC 3339 (`2021-01-01T00:00:00Z`), for messages; the bare
/// number if it is outside what RFC 3339 can write.
pub(crate) fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("unix time {unix}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x5t_s256_is_base64url_of_the_sha256_of_the_der() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            x5t_s256(b"abc"),
            "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
        );
    }

    #[test]
    fn rfc3339_writes_utc_seconds() {
        assert_eq!(rfc3339(1_609_459_200), "2021-01-01T00:00:00Z");
        assert_eq!(rfc3339(i64::MAX), format!("unix time {}", i64::MAX));
    }

    #[test]
    fn a_pem_without_certificates_is_refused() {
        let err = certificates_from_pem("no pem here").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the PEM for certificate chain cannot be read: it holds no CERTIFICATE block"
        );
    }

    #[test]
    fn a_certificate_block_that_is_not_a_certificate_is_refused() {
        let pem = pem_encode("CERTIFICATE", b"not der");
        assert!(matches!(
            certificates_from_pem(&pem),
            Err(IdentityError::BadCertificate { .. })
        ));
    }

    #[test]
    fn pem_lines_are_64_characters() {
        let pem = pem_encode("CERTIFICATE", &[7u8; 100]);
        let lines: Vec<&str> = pem.lines().collect();
        assert_eq!(lines[0], "-----BEGIN CERTIFICATE-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines.last(), Some(&"-----END CERTIFICATE-----"));
    }
}
