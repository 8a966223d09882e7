//! The per-call check of a task token as an agent presents it: the token's
//! signature and claims (through a [`VerifiedTokenCache`]), its validity at
//! `now`, its key binding (a DPoP proof for `cnf.jkt`, the mTLS client
//! certificate for `cnf.x5t#S256`) and the revocation of its task or any
//! ancestor task.
//!
//! One place makes these checks in this order, so that no caller can forget
//! one; each refusal is a [`PresentationError`] with an OAuth error code.

use std::fmt;
use std::sync::Arc;

use crate::cache::VerifiedTokenCache;
use crate::claims::{Confirmation, TaskClaims};
use crate::dpop::{BoundToken, DpopError, DpopRequest, DpopVerifier};
use crate::error::TokenError;
use crate::keys::SigningKeys;
use crate::replay::ReplayGuard;

/// A task token presented with one request, and what binds it to the caller.
#[derive(Clone, Copy)]
pub struct Presentation<'a> {
    /// The access token exactly as presented.
    pub token: &'a str,
    /// The value of the single `DPoP` header, if any.
    pub dpop_proof: Option<&'a str>,
    /// The request's method, which the proof's `htm` must match.
    pub method: &'a str,
    /// The request's absolute URI, which the proof's `htu` must match.
    pub uri: &'a str,
    /// The base64url SHA-256 of the mTLS client certificate (DER), if the
    /// connection presented one (RFC 8705 §3.1).
    pub client_cert_x5t: Option<&'a str>,
    /// The time of the check, seconds since the epoch.
    pub now: i64,
}

impl fmt::Debug for Presentation<'_> {
    // The token and the proof are credentials: their lengths only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Presentation")
            .field("token_len", &self.token.len())
            .field("dpop_proof_len", &self.dpop_proof.map(str::len))
            .field("method", &self.method)
            .field("uri", &self.uri)
            .field("client_cert_x5t", &self.client_cert_x5t)
            .field("now", &self.now)
            .finish()
    }
}

/// A presented task token that is refused. The messages are meant for the
/// client; [`PresentationError::error_code`] gives the OAuth error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PresentationError {
    /// The token itself: malformed, badly signed, for another audience,
    /// expired, not yet valid.
    #[error(transparent)]
    Token(TokenError),
    /// The DPoP proof of a `cnf.jkt`-bound token: missing or invalid.
    #[error(transparent)]
    Dpop(DpopError),
    /// The token is bound to a client certificate, and the request came without one.
    #[error(
        "the token is bound to a client certificate (cnf x5t#S256); the request presented none"
    )]
    MissingClientCertificate,
    /// The request's client certificate is not the one the token is bound to.
    #[error("the client certificate presented is not the one the token is bound to (cnf x5t#S256)")]
    CertificateMismatch,
    /// The token is bound to no key, and this verifier does not accept such tokens.
    #[error("the token is not bound to a key (no cnf), and unbound bearer tokens are not accepted")]
    Unbound,
    /// The token's task, or one of its ancestors, was revoked.
    #[error("task {task_id:?} has ended (completed or revoked)")]
    Revoked {
        /// The first revoked task of the token's lineage, root first.
        task_id: String,
    },
}

impl PresentationError {
    /// The error code for the `WWW-Authenticate` response: `invalid_dpop_proof`
    /// (RFC 9449 §7.1) for a missing or invalid proof, `invalid_token`
    /// (RFC 6750 §3.1) for everything else.
    pub fn error_code(&self) -> &'static str {
        match self {
            PresentationError::Dpop(_) => "invalid_dpop_proof",
            PresentationError::Token(_)
            | PresentationError::MissingClientCertificate
            | PresentationError::CertificateMismatch
            | PresentationError::Unbound
            | PresentationError::Revoked { .. } => "invalid_token",
        }
    }
}

impl From<TokenError> for PresentationError {
    fn from(e: TokenError) -> Self {
        PresentationError::Token(e)
    }
}

impl From<DpopError> for PresentationError {
    fn from(e: DpopError) -> Self {
        PresentationError::Dpop(e)
    }
}

/// Checks presented task tokens for one issuer and audience. Holds the cache
/// of verified tokens; the signing keys, the replay memory and the revocation
/// view are the caller's and are passed on each call.
pub struct PresentationVerifier {
    issuer: String,
    audience: String,
    dpop: DpopVerifier,
    cache: VerifiedTokenCache,
    accept_unbound: bool,
}

impl PresentationVerifier {
    /// A verifier of tokens from `issuer` for `audience`, checking proofs with
    /// `dpop` and remembering up to `cache_capacity` verified tokens.
    pub fn new(
        issuer: &str,
        audience: &str,
        dpop: DpopVerifier,
        cache_capacity: usize,
    ) -> PresentationVerifier {
        PresentationVerifier {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            dpop,
            cache: VerifiedTokenCache::new(cache_capacity),
            accept_unbound: false,
        }
    }

    /// Accept tokens bound to no key (`cnf` absent) as plain bearer tokens.
    /// Off by default: such a token is refused with [`PresentationError::Unbound`].
    pub fn accept_unbound(mut self, accept: bool) -> PresentationVerifier {
        self.accept_unbound = accept;
        self
    }

    /// The cache of verified tokens (to [`VerifiedTokenCache::clear`] it when
    /// the signing keys change).
    pub fn cache(&self) -> &VerifiedTokenCache {
        &self.cache
    }

    /// Checks one presentation, in this order:
    /// 1. the token: signature and claims (once per token, then from the
    ///    cache), issuer, audience, `exp` and `nbf` at `now` (on every call);
    /// 2. its binding: for `cnf.jkt`, a DPoP proof is required and verified
    ///    (signature, key = `cnf.jkt`, `htm`, `htu`, `iat` window, `ath` of
    ///    this token, `jti` not replayed in `replay`); for `cnf.x5t#S256`, the
    ///    client certificate's thumbprint must be present and equal. A DPoP
    ///    header sent with an `x5t#S256`-bound token is ignored, neither
    ///    checked nor remembered: the token is not bound to its key, so it
    ///    proves nothing;
    /// 3. revocation: `is_revoked` is asked for every task of
    ///    [`TaskClaims::task_lineage`], root first; the first revoked one refuses.
    pub fn verify(
        &self,
        keys: &SigningKeys,
        replay: &dyn ReplayGuard,
        is_revoked: &dyn Fn(&str) -> bool,
        p: &Presentation<'_>,
    ) -> Result<Arc<TaskClaims>, PresentationError> {
        let (claims, ath) =
            self.cache
                .verify_with_ath(keys, p.token, p.now, &self.audience, &self.issuer)?;
        match &claims.cnf {
            None if self.accept_unbound => {}
            None => return Err(PresentationError::Unbound),
            Some(Confirmation::Jkt(jkt)) => {
                let request = DpopRequest {
                    proof: p.dpop_proof,
                    method: p.method,
                    uri: p.uri,
                    token: Some(BoundToken {
                        access_token: p.token,
                        jkt,
                    }),
                    now: p.now,
                };
                self.dpop.verify_with_ath(&request, replay, Some(&ath))?;
            }
            Some(Confirmation::X5tS256(x5t)) => {
                let presented = p
                    .client_cert_x5t
                    .ok_or(PresentationError::MissingClientCertificate)?;
                aws_lc_rs::constant_time::verify_slices_are_equal(
                    presented.as_bytes(),
                    x5t.as_bytes(),
                )
                .map_err(|_| PresentationError::CertificateMismatch)?;
            }
        }
        if let Some(task_id) = claims.task_lineage().find(|id| is_revoked(id)) {
            return Err(PresentationError::Revoked {
                task_id: task_id.to_owned(),
            });
        }
        Ok(claims)
    }
}

impl fmt::Debug for PresentationVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresentationVerifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("dpop", &self.dpop)
            .field("cache", &self.cache)
            .finish()
    }
}

#[cfg(test)]
mod tests;
