//! X.509-SVID verification (SPIFFE X509-SVID specification §4 and §5): the
//! leaf's shape is checked by hand so that each refusal is precise, then the
//! chain is built by rustls-webpki to an X.509 authority of the SVID's own
//! trust domain and no other.

use std::time::Duration;

use mandate_tokens::{SpiffeId, TokenError};
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use webpki::{EndEntityCert, KeyUsage};
use x509_parser::certificate::X509Certificate;

use crate::bundle::TrustBundles;
use crate::certs::{is_ca, parse, rfc3339, uri_sans, x5t_s256};
use crate::error::IdentityError;

/// A verified X.509-SVID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedX509Svid {
    /// The SPIFFE ID of its URI SAN.
    pub spiffe_id: SpiffeId,
    /// The leaf's notAfter, unix seconds.
    pub not_after: i64,
    /// The leaf's RFC 8705 `x5t#S256` (see [`x5t_s256`]), for binding tokens.
    pub x5t_s256: String,
    /// SHA-256 (hex) of the leaf's SubjectPublicKeyInfo: which key it
    /// certifies (see [`crate::public_key_sha256`]).
    pub public_key_sha256: String,
}

/// Verifies an X.509-SVID chain (leaf first, then intermediates) at `now`.
///
/// The leaf must have exactly one URI SAN, a SPIFFE ID with a path; must not
/// be a CA; must have a keyUsage with digitalSignature and without
/// keyCertSign or cRLSign; and must be within its validity. The chain must
/// then verify, by rustls-webpki with client-auth semantics (an
/// extendedKeyUsage, if present, includes clientAuth), to an X.509 authority
/// of the bundle of the SPIFFE ID's trust domain: a certificate of trust
/// domain A that chains to B's root is refused.
pub fn verify_x509_svid(
    bundles: &TrustBundles,
    chain: &[CertificateDer<'_>],
    now: i64,
) -> Result<VerifiedX509Svid, IdentityError> {
    let leaf_der = chain.first().ok_or(IdentityError::EmptyChain)?;
    let leaf = parse(leaf_der)?;
    if is_ca(&leaf)? {
        return Err(IdentityError::LeafIsCa {
            subject: leaf.subject().to_string(),
        });
    }
    let spiffe_id = spiffe_id_of(&leaf)?;
    check_leaf_key_usage(&leaf, &spiffe_id)?;
    let validity = leaf.validity();
    let (not_before, not_after) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    if now < not_before {
        return Err(IdentityError::SvidNotYetValid {
            not_before: rfc3339(not_before),
        });
    }
    if now > not_after {
        return Err(IdentityError::SvidExpired {
            not_after: rfc3339(not_after),
        });
    }

    let trust_domain = spiffe_id.trust_domain();
    let bundle = bundles
        .get(trust_domain)
        .ok_or_else(|| IdentityError::UnknownTrustDomain {
            trust_domain: trust_domain.to_owned(),
        })?;
    let untrusted = |reason: String| IdentityError::UntrustedChain {
        trust_domain: trust_domain.to_owned(),
        reason,
    };
    let anchors: Vec<TrustAnchor<'_>> = bundle
        .x509_authorities()
        .iter()
        .filter_map(|der| webpki::anchor_from_trusted_cert(der).ok())
        .collect();
    if anchors.is_empty() {
        return Err(untrusted("its bundle holds no X.509 authority".to_owned()));
    }
    let end_entity = EndEntityCert::try_from(leaf_der).map_err(|e| untrusted(webpki_reason(&e)))?;
    let time = UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(now).unwrap_or(0)));
    end_entity
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &chain[1..],
            time,
            KeyUsage::client_auth(),
            None,
            None,
        )
        .map_err(|e| untrusted(webpki_reason(&e)))?;

    Ok(VerifiedX509Svid {
        x5t_s256: x5t_s256(leaf_der),
        public_key_sha256: hex_sha256(leaf.public_key().raw),
        spiffe_id,
        not_after,
    })
}

/// The one SPIFFE ID of a leaf.
pub(crate) fn spiffe_id_of(leaf: &X509Certificate<'_>) -> Result<SpiffeId, IdentityError> {
    let mut uris = uri_sans(leaf)?;
    if uris.len() > 1 {
        return Err(IdentityError::MultipleUriSans { uris });
    }
    let uri = uris.pop().ok_or(IdentityError::NoSpiffeId)?;
    SpiffeId::parse(&uri).map_err(|e| IdentityError::BadSpiffeIdInCertificate {
        reason: match e {
            TokenError::BadSpiffeId { reason, .. } => reason.to_owned(),
            other => other.to_string(),
        },
        uri,
    })
}

/// X509-SVID §4.3: digitalSignature set, keyCertSign and cRLSign clear.
fn check_leaf_key_usage(
    leaf: &X509Certificate<'_>,
    spiffe_id: &SpiffeId,
) -> Result<(), IdentityError> {
    let problem = |problem| IdentityError::BadLeafKeyUsage {
        spiffe_id: spiffe_id.to_string(),
        problem,
    };
    let usage = leaf
        .key_usage()
        .map_err(|e| IdentityError::BadCertificate {
            reason: format!("keyUsage: {e}"),
        })?
        .ok_or_else(|| problem("has no keyUsage extension"))?
        .value;
    if !usage.digital_signature() {
        return Err(problem("lacks digitalSignature in its keyUsage"));
    }
    if usage.key_cert_sign() {
        return Err(problem("has keyCertSign in its keyUsage"));
    }
    if usage.crl_sign() {
        return Err(problem("has cRLSign in its keyUsage"));
    }
    Ok(())
}

/// Why rustls-webpki refused a chain, in words.
fn webpki_reason(error: &webpki::Error) -> String {
    match error {
        webpki::Error::UnknownIssuer => {
            "no X.509 authority of the bundle issued it (unknown issuer)".to_owned()
        }
        webpki::Error::InvalidSignatureForPublicKey => {
            "a signature in the chain does not verify".to_owned()
        }
        webpki::Error::CertExpired { not_after, .. } => format!(
            "a certificate in the chain expired at {}",
            rfc3339(i64::try_from(not_after.as_secs()).unwrap_or(i64::MAX))
        ),
        webpki::Error::CertNotValidYet { not_before, .. } => format!(
            "a certificate in the chain is not valid before {}",
            rfc3339(i64::try_from(not_before.as_secs()).unwrap_or(i64::MAX))
        ),
        webpki::Error::RequiredEkuNotFoundContext(_) => {
            "the leaf's extendedKeyUsage does not allow client authentication".to_owned()
        }
        webpki::Error::CaUsedAsEndEntity => "the leaf is a CA certificate".to_owned(),
        other => format!("rustls-webpki refused it ({other})"),
    }
}

/// Lower-case hex SHA-256 of `bytes`.
pub(crate) fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
