//! Workload identity for Mandate: who an agent is, proven the SPIFFE way.
//!
//! Owns the SPIFFE trust bundles ([`SpiffeBundle`], keyed by trust domain in
//! [`TrustBundles`]), the verification of X.509-SVIDs ([`verify_x509_svid`]) and
//! JWT-SVIDs ([`verify_jwt_svid`]) against the bundle of the SVID's own trust
//! domain, Mandate's built-in CA ([`BuiltinCa`]) that issues X.509-SVIDs and the
//! server's TLS certificate, agent key generation, and the TLS client certificate
//! verifier that defers chain checks to [`verify_x509_svid`]
//! ([`DeferredClientCertVerifier`]).
//!
//! Never reads the clock, the network or files: callers pass `now` (unix
//! seconds) and PEM or JSON text as values. Every refusal is an
//! [`IdentityError`] naming what was wrong. Crypto is aws-lc-rs, through
//! rustls-webpki (chains), jsonwebtoken (JWT signatures) and rcgen (issuing).

mod authority;
mod bundle;
mod ca;
mod certs;
mod error;
mod jwt_svid;
mod keys;
mod tls;
mod x509_svid;

pub use bundle::{SpiffeBundle, TrustBundles};
pub use ca::{BuiltinCa, MANDATE_SPIFFE_PATH, NOT_BEFORE_BACKDATE_SECONDS};
pub use certs::{certificates_from_pem, x5t_s256};
pub use error::IdentityError;
pub use jwt_svid::{JWT_NBF_LEEWAY_SECONDS, VerifiedJwtSvid, verify_jwt_svid};
pub use keys::{generate_agent_key, public_key_pem_of, public_key_sha256};
pub use mandate_tokens::SpiffeId;
pub use tls::DeferredClientCertVerifier;
pub use x509_svid::{VerifiedX509Svid, verify_x509_svid};
