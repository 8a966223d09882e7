//! Mandate's built-in CA, for deployments without SPIRE: a self-signed
//! ECDSA P-256 root whose URI SAN is the trust domain (`spiffe://example.org`,
//! as SPIRE's server CA has), which issues X.509-SVIDs over agents' own public
//! keys and the TLS certificate Mandate serves with.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
    SubjectPublicKeyInfo,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, DnsName, SubjectPublicKeyInfoDer};
use time::OffsetDateTime;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use crate::bundle::{SpiffeBundle, check_trust_domain};
use crate::certs::{certificates_from_pem, is_ca, parse, pem_encode, rfc3339, uri_sans};
use crate::error::IdentityError;
use crate::keys::private_key;

/// The path of Mandate's own SPIFFE ID, in its server certificate.
pub const MANDATE_SPIFFE_PATH: &str = "/mandate";

/// How far before `now` issued certificates start, to absorb clock skew.
pub const NOT_BEFORE_BACKDATE_SECONDS: i64 = 60;

/// Smallest RSA modulus an SVID is issued for, in bits.
const MIN_RSA_BITS: usize = 2048;

/// Mandate's CA: its certificate, its key and its trust domain.
pub struct BuiltinCa {
    trust_domain: String,
    cert_der: CertificateDer<'static>,
    key: KeyPair,
    not_after: i64,
}

impl std::fmt::Debug for BuiltinCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltinCa")
            .field("trust_domain", &self.trust_domain)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl BuiltinCa {
    /// A new CA for `trust_domain`: a fresh P-256 key and a self-signed
    /// certificate (`O=Mandate, CN=Mandate CA`, URI SAN `spiffe://<td>`,
    /// CA:TRUE with pathlen 0, keyCertSign and cRLSign), valid from
    /// `now` - [`NOT_BEFORE_BACKDATE_SECONDS`] for `validity_days`.
    pub fn generate(
        trust_domain: &str,
        now: i64,
        validity_days: u32,
    ) -> Result<BuiltinCa, IdentityError> {
        check_trust_domain(trust_domain)?;
        if validity_days == 0 {
            return Err(IdentityError::ZeroValidity {
                what: "validity_days",
            });
        }
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(generation)?;
        let not_after = now.saturating_add(i64::from(validity_days) * 86_400);
        let mut params = CertificateParams::default();
        params.distinguished_name = name("Mandate CA");
        params.not_before = datetime(now.saturating_sub(NOT_BEFORE_BACKDATE_SECONDS))?;
        params.not_after = datetime(not_after)?;
        params.serial_number = Some(random_serial()?);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.subject_alt_names = vec![uri(&format!("spiffe://{trust_domain}"))?];
        let cert = params.self_signed(&key).map_err(generation)?;
        Ok(BuiltinCa {
            trust_domain: trust_domain.to_owned(),
            cert_der: cert.der().clone(),
            key,
            not_after,
        })
    }

    /// Loads a CA saved with [`BuiltinCa::cert_pem`] and [`BuiltinCa::key_pem`]
    /// (or any CA certificate with a `spiffe://<td>` URI SAN and keyCertSign,
    /// and its PKCS#8 key).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<BuiltinCa, IdentityError> {
        let bad = |reason: &str| IdentityError::BadCaCertificate {
            reason: reason.to_owned(),
        };
        let certs = certificates_from_pem(cert_pem)?;
        let [cert_der] = certs.as_slice() else {
            return Err(bad(&format!(
                "the PEM holds {} certificates, not one",
                certs.len()
            )));
        };
        let cert = parse(cert_der)?;
        if !is_ca(&cert)? {
            return Err(bad("it is not a CA (no basicConstraints CA:TRUE)"));
        }
        let can_sign = cert
            .key_usage()
            .ok()
            .flatten()
            .is_some_and(|ku| ku.value.key_cert_sign());
        if !can_sign {
            return Err(bad("its keyUsage lacks keyCertSign"));
        }
        let uris = uri_sans(&cert)?;
        let trust_domain = match uris.as_slice() {
            [one] => one
                .strip_prefix("spiffe://")
                .map(|td| td.strip_suffix('/').unwrap_or(td))
                .filter(|td| !td.contains('/'))
                .ok_or_else(|| {
                    bad(&format!(
                        "its URI SAN {one:?} is not a trust domain ID (spiffe://<td>)"
                    ))
                })?,
            _ => return Err(bad("it must have exactly one URI SAN, spiffe://<td>")),
        };
        check_trust_domain(trust_domain)?;
        let key = private_key(key_pem, "CA private key")?;
        if key.public_key_raw() != cert.public_key().subject_public_key.data.as_ref() {
            return Err(bad("the private key does not match its public key"));
        }
        Ok(BuiltinCa {
            trust_domain: trust_domain.to_owned(),
            not_after: cert.validity().not_after.timestamp(),
            cert_der: cert_der.clone(),
            key,
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.cert_der)
    }

    /// The CA private key, PKCS#8 PEM. Secret: store it as such.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// The trust domain the CA issues in.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The CA certificate's notAfter, unix seconds.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// The trust bundle of the CA's trust domain: its certificate as the one
    /// X.509 authority.
    pub fn bundle(&self) -> SpiffeBundle {
        let mut bundle = SpiffeBundle::new(&self.trust_domain)
            .expect("the trust domain was checked when the CA was made");
        bundle.add_x509_authority(self.cert_der.clone());
        bundle
    }

    /// Issues an X.509-SVID for `id` over `public_key_pem` (a `PUBLIC KEY`
    /// SubjectPublicKeyInfo: ECDSA P-256 or P-384, Ed25519, or RSA of 2048 bits
    /// or more). Valid from `now` - [`NOT_BEFORE_BACKDATE_SECONDS`] to
    /// `now + ttl_seconds`, capped at the CA's own notAfter; one URI SAN;
    /// CA:FALSE; keyUsage digitalSignature and keyEncipherment;
    /// extendedKeyUsage clientAuth and serverAuth; a random serial. Returns the
    /// leaf certificate, PEM.
    pub fn issue_x509_svid(
        &self,
        id: &mandate_tokens::SpiffeId,
        public_key_pem: &str,
        now: i64,
        ttl_seconds: u64,
    ) -> Result<String, IdentityError> {
        if id.trust_domain() != self.trust_domain {
            return Err(IdentityError::ForeignTrustDomain {
                id: id.to_string(),
                trust_domain: self.trust_domain.clone(),
            });
        }
        let public_key = subject_public_key(public_key_pem)?;
        let mut params = self.leaf_params(now, ttl_seconds)?;
        params.subject_alt_names = vec![uri(id.as_str())?];
        let cert = params
            .signed_by(&public_key, &self.issuer()?)
            .map_err(generation)?;
        Ok(cert.pem())
    }

    /// Issues Mandate's TLS server certificate over a fresh P-256 key: DNS
    /// SANs `dns_names`, IP SANs `ips`, and URI SAN `spiffe://<td>/mandate`;
    /// extendedKeyUsage serverAuth and clientAuth; validity as for
    /// [`BuiltinCa::issue_x509_svid`]. Returns (leaf certificate PEM, PKCS#8
    /// key PEM); clients trust it through [`BuiltinCa::cert_pem`].
    pub fn issue_server_certificate(
        &self,
        dns_names: &[String],
        ips: &[IpAddr],
        now: i64,
        ttl_seconds: u64,
    ) -> Result<(String, String), IdentityError> {
        let mut params = self.leaf_params(now, ttl_seconds)?;
        for name in dns_names {
            let bad = |reason: String| IdentityError::BadDnsName {
                name: name.clone(),
                reason,
            };
            DnsName::try_from(name.as_str()).map_err(|e| bad(e.to_string()))?;
            let ia5 = name
                .as_str()
                .try_into()
                .map_err(|e: rcgen::Error| bad(e.to_string()))?;
            params.subject_alt_names.push(SanType::DnsName(ia5));
        }
        params
            .subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.subject_alt_names.push(uri(&format!(
            "spiffe://{}{MANDATE_SPIFFE_PATH}",
            self.trust_domain
        ))?);
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(generation)?;
        let cert = params
            .signed_by(&key, &self.issuer()?)
            .map_err(generation)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// The parameters every leaf shares: subject, validity, serial, usages.
    fn leaf_params(&self, now: i64, ttl_seconds: u64) -> Result<CertificateParams, IdentityError> {
        if ttl_seconds == 0 {
            return Err(IdentityError::ZeroValidity {
                what: "ttl_seconds",
            });
        }
        if now >= self.not_after {
            return Err(IdentityError::CaExpired {
                not_after: rfc3339(self.not_after),
            });
        }
        let ttl = i64::try_from(ttl_seconds).unwrap_or(i64::MAX);
        let mut params = CertificateParams::default();
        params.distinguished_name = name("Mandate workload");
        params.not_before = datetime(now.saturating_sub(NOT_BEFORE_BACKDATE_SECONDS))?;
        params.not_after = datetime(now.saturating_add(ttl).min(self.not_after))?;
        params.serial_number = Some(random_serial()?);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        Ok(params)
    }

    fn issuer(&self) -> Result<Issuer<'static, &KeyPair>, IdentityError> {
        Issuer::from_ca_cert_der(&self.cert_der, &self.key).map_err(generation)
    }
}

/// `O=Mandate, CN=<common_name>`.
fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Mandate");
    dn.push(DnType::CommonName, common_name);
    dn
}

/// A URI SAN.
fn uri(text: &str) -> Result<SanType, IdentityError> {
    Ok(SanType::URI(text.try_into().map_err(generation)?))
}

/// A unix time as rcgen wants it.
fn datetime(unix: i64) -> Result<OffsetDateTime, IdentityError> {
    OffsetDateTime::from_unix_timestamp(unix).map_err(|e| IdentityError::Generation {
        reason: format!("unix time {unix} cannot be a certificate date: {e}"),
    })
}

/// 16 random bytes, positive and without a leading zero byte (RFC 5280 §4.1.2.2).
fn random_serial() -> Result<SerialNumber, IdentityError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| IdentityError::Generation {
        reason: "the random generator failed".to_owned(),
    })?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// Reads an agent's `PUBLIC KEY` PEM, refusing RSA keys under 2048 bits.
fn subject_public_key(pem: &str) -> Result<SubjectPublicKeyInfo, IdentityError> {
    let bad = |reason: String| IdentityError::BadKey {
        what: "public key",
        reason,
    };
    let der = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| bad(format!("not a PUBLIC KEY PEM ({e})")))?;
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&der)
        .map_err(|e| bad(format!("not a SubjectPublicKeyInfo ({e})")))?;
    if let Ok(PublicKey::RSA(rsa)) = spki.parsed()
        && rsa.key_size() < MIN_RSA_BITS
    {
        return Err(bad(format!(
            "an RSA key of {} bits is too small (2048 at least)",
            rsa.key_size()
        )));
    }
    SubjectPublicKeyInfo::from_der(&der)
        .map_err(|e| bad(format!("its algorithm is not supported ({e})")))
}

fn generation(error: rcgen::Error) -> IdentityError {
    IdentityError::Generation {
        reason: error.to_string(),
    }
}
