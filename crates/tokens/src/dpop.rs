//! DPoP proof verification (RFC 9449 §4.3): the agent proves, on every request,
//! that it holds the private key its task token is bound to (`cnf.jkt`).
//!
//! Pure: the request's method, URI, token and the time come in as values, the
//! memory of used `jti`s behind a [`ReplayGuard`]. Each failed check is its own
//! [`DpopError`] variant. A proof only reaches the replay memory once every
//! other check passed, so invalid proofs cannot fill it.

use std::sync::Arc;

use jsonwebtoken::Algorithm;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::htu;
use crate::jwk::{JwkError, PublicJwk};
use crate::jws;
use crate::proof_keys::{PROOF_KEY_CACHE, ProofKey, ProofKeyCache};
use crate::replay::{JtiCheck, ReplayGuard};

/// The `typ` every DPoP proof carries.
pub const DPOP_TYP: &str = "dpop+jwt";
/// Longest `jti` accepted, in bytes.
pub const MAX_JTI_LEN: usize = 256;
/// The default `iat` window: a proof may be 60 s old or 60 s early.
pub const DEFAULT_IAT_WINDOW_SECONDS: u32 = 60;

/// A DPoP proof that is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DpopError {
    /// The request carries no `DPoP` header.
    #[error("the request has no DPoP proof; this token is bound to a key (cnf.jkt)")]
    MissingProof,
    /// The proof is not a compact JWS with a JSON header and payload.
    #[error("malformed DPoP proof: {reason}")]
    Malformed {
        /// What is wrong.
        reason: &'static str,
    },
    /// The header's `typ` is not `dpop+jwt`.
    #[error("DPoP proof typ must be \"dpop+jwt\", found {typ:?}")]
    WrongType {
        /// The `typ` of the header, if any.
        typ: Option<String>,
    },
    /// `alg` is `none` or symmetric (HS*): never acceptable for a proof of possession.
    #[error("DPoP proof alg {alg:?} is forbidden (proofs must use an asymmetric signature)")]
    ForbiddenAlgorithm {
        /// The `alg` of the header.
        alg: String,
    },
    /// `alg` is asymmetric but not one this verifier supports.
    #[error("DPoP proof alg {alg:?} is not supported (ES256, ES384, EdDSA, RS256-512, PS256-512)")]
    UnsupportedAlgorithm {
        /// The `alg` of the header.
        alg: String,
    },
    /// The header carries a `crit` parameter; no extension is understood here.
    #[error("DPoP proof header marks {names:?} critical; no JOSE extension is supported")]
    UnsupportedCritical {
        /// The names listed in `crit`.
        names: Vec<String>,
    },
    /// The header has no `jwk`.
    #[error("DPoP proof header has no jwk")]
    MissingJwk,
    /// The header's `jwk` holds private key material.
    #[error("DPoP proof jwk carries the private member {member:?}; it must be a public key")]
    PrivateKeyInJwk {
        /// The private member found.
        member: &'static str,
    },
    /// The header's `jwk` is not a usable public key.
    #[error("DPoP proof jwk: {0}")]
    BadJwk(JwkError),
    /// The `jwk` is of another kind than `alg` needs (an RSA key with ES256, ...).
    #[error("DPoP proof alg {alg:?} cannot be used with a {key} key")]
    KeyAlgorithmMismatch {
        /// The `alg` of the header.
        alg: String,
        /// The key's type and curve.
        key: String,
    },
    /// The signature does not verify with the header's `jwk`.
    #[error("DPoP proof signature does not verify with its jwk")]
    BadSignature,
    /// The proof's key is not the one the token is bound to.
    #[error("DPoP proof key {found:?} is not the key the token is bound to ({expected:?})")]
    JktMismatch {
        /// The token's `cnf.jkt`.
        expected: String,
        /// The thumbprint of the proof's `jwk`.
        found: String,
    },
    /// The payload is not a JSON object of DPoP claims.
    #[error("malformed DPoP proof claims: {reason}")]
    MalformedClaims {
        /// The JSON error.
        reason: String,
    },
    /// A required claim is missing or empty.
    #[error("DPoP proof has no {claim} claim")]
    MissingClaim {
        /// `jti`, `htm`, `htu` or `iat`.
        claim: &'static str,
    },
    /// `htm` is not the request's method.
    #[error("DPoP proof is for method {proof:?}, the request is {request:?}")]
    MethodMismatch {
        /// The proof's `htm`.
        proof: String,
        /// The request's method.
        request: String,
    },
    /// `htu` is not the request's URI (query and fragment ignored).
    #[error("DPoP proof is for {proof:?}, the request is for {request:?}")]
    UrlMismatch {
        /// The proof's `htu`.
        proof: String,
        /// The request's URI.
        request: String,
    },
    /// The request URI handed in by the caller is not an absolute http(s) URI.
    #[error("request URI {uri:?} is not an absolute http(s) URI")]
    BadRequestUri {
        /// The URI given.
        uri: String,
    },
    /// `iat` is older than the window allows.
    #[error("DPoP proof issued at {iat} is more than {window} s before now ({now})")]
    IatTooOld {
        /// The proof's `iat`.
        iat: i64,
        /// The time of the check.
        now: i64,
        /// The window, in seconds.
        window: i64,
    },
    /// `iat` is further in the future than the window allows.
    #[error("DPoP proof issued at {iat} is more than {window} s after now ({now})")]
    IatInFuture {
        /// The proof's `iat`.
        iat: i64,
        /// The time of the check.
        now: i64,
        /// The window, in seconds.
        window: i64,
    },
    /// `jti` is longer than [`MAX_JTI_LEN`].
    #[error("DPoP proof jti is {len} bytes long, more than the {max} allowed")]
    JtiTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The proof accompanies an access token but has no `ath`.
    #[error("DPoP proof has no ath claim, but it accompanies an access token")]
    MissingAth,
    /// `ath` is not the hash of the access token presented.
    #[error("DPoP proof ath {found:?} is not the hash of the presented token ({expected:?})")]
    AthMismatch {
        /// base64url(SHA-256(token)).
        expected: String,
        /// The proof's `ath`.
        found: String,
    },
    /// This proof (its `jti`) was already used.
    #[error("DPoP proof jti {jti:?} was already used (replay)")]
    Replayed {
        /// The `jti`.
        jti: String,
    },
    /// The replay memory is full; the proof cannot be checked for replay.
    #[error("DPoP replay memory is full; proof with jti {jti:?} refused")]
    ReplayMemoryFull {
        /// The `jti`.
        jti: String,
    },
}

/// The access token a proof accompanies, and the key it is bound to.
#[derive(Debug, Clone, Copy)]
pub struct BoundToken<'a> {
    /// The access token exactly as presented (for `ath`).
    pub access_token: &'a str,
    /// The token's `cnf.jkt`.
    pub jkt: &'a str,
}

/// One HTTP request carrying a DPoP proof.
#[derive(Debug, Clone, Copy)]
pub struct DpopRequest<'a> {
    /// The value of the single `DPoP` header, if any (more than one header is
    /// the caller's to refuse).
    pub proof: Option<&'a str>,
    /// The request's method (`GET`, `POST`, ...).
    pub method: &'a str,
    /// The request's absolute URI as the client addressed it.
    pub uri: &'a str,
    /// The token presented with the proof. `None` only at the token endpoint,
    /// where the proof introduces the key the new token will be bound to.
    pub token: Option<BoundToken<'a>>,
    /// The time of the check, seconds since the epoch.
    pub now: i64,
}

/// A proof that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopProof {
    /// The RFC 7638 thumbprint of the proof's key (what a new token's `cnf.jkt` gets).
    pub jkt: String,
    /// The proof's `jti`, now remembered.
    pub jti: String,
    /// The proof's `iat`.
    pub iat: i64,
}

/// Checks DPoP proofs with a fixed `iat` window. Clones share the memory of
/// proof keys already read (see `proof_keys`).
#[derive(Debug, Clone)]
pub struct DpopVerifier {
    iat_window: i64,
    keys: ProofKeyCache,
}

impl Default for DpopVerifier {
    fn default() -> Self {
        DpopVerifier::new(DEFAULT_IAT_WINDOW_SECONDS)
    }
}

#[derive(Deserialize)]
struct ProofClaims {
    jti: Option<String>,
    htm: Option<String>,
    htu: Option<String>,
    iat: Option<i64>,
    ath: Option<String>,
}

impl DpopVerifier {
    /// A verifier accepting proofs whose `iat` is within `iat_window_seconds`
    /// of `now`, either way.
    pub fn new(iat_window_seconds: u32) -> DpopVerifier {
        DpopVerifier {
            iat_window: i64::from(iat_window_seconds),
            keys: ProofKeyCache::new(PROOF_KEY_CACHE),
        }
    }

    /// Runs the checks of RFC 9449 §4.3 on `request`; on success the proof's
    /// `jti` is remembered in `replay` until its `iat` leaves the window.
    pub fn verify(
        &self,
        request: &DpopRequest<'_>,
        replay: &dyn ReplayGuard,
    ) -> Result<DpopProof, DpopError> {
        self.verify_with_ath(request, replay, None)
    }

    /// [`DpopVerifier::verify`], with the `ath` of `request.token` already
    /// computed (the caller keeps it with the verified token) or `None` to
    /// compute it here.
    pub(crate) fn verify_with_ath(
        &self,
        request: &DpopRequest<'_>,
        replay: &dyn ReplayGuard,
        token_ath: Option<&str>,
    ) -> Result<DpopProof, DpopError> {
        let proof = request.proof.ok_or(DpopError::MissingProof)?;
        let malformed = |reason| DpopError::Malformed { reason };
        let segments = jws::segments(proof).map_err(malformed)?;
        let cached = self.keys.get(segments.header);
        // A header seen before is valid base64url; a new one is decoded before
        // the payload, so that a proof's first error is the one it always was.
        let header = match cached {
            Some(_) => Vec::new(),
            None => jws::decode_header(&segments).map_err(malformed)?,
        };
        let payload = jws::decode_payload(&segments).map_err(malformed)?;
        let (key, seen) = match cached {
            Some(key) => (key, true),
            None => (Arc::new(read_header(&header)?), false),
        };
        if !key.verifies(segments.signing_input.as_bytes(), segments.signature) {
            return Err(DpopError::BadSignature);
        }
        if !seen {
            self.keys.insert(segments.header, Arc::clone(&key));
        }
        if let Some(token) = request.token
            && token.jkt != key.jkt
        {
            return Err(DpopError::JktMismatch {
                expected: token.jkt.to_owned(),
                found: key.jkt.clone(),
            });
        }

        let claims: ProofClaims =
            serde_json::from_slice(&payload).map_err(|e| DpopError::MalformedClaims {
                reason: e.to_string(),
            })?;
        let jti = claims
            .jti
            .filter(|j| !j.is_empty())
            .ok_or(DpopError::MissingClaim { claim: "jti" })?;
        if jti.len() > MAX_JTI_LEN {
            return Err(DpopError::JtiTooLong {
                len: jti.len(),
                max: MAX_JTI_LEN,
            });
        }
        let htm = claims.htm.ok_or(DpopError::MissingClaim { claim: "htm" })?;
        if htm != request.method {
            return Err(DpopError::MethodMismatch {
                proof: htm,
                request: request.method.to_owned(),
            });
        }
        let htu = claims.htu.ok_or(DpopError::MissingClaim { claim: "htu" })?;
        let expected_uri = htu::normalize(request.uri).ok_or_else(|| DpopError::BadRequestUri {
            uri: request.uri.to_owned(),
        })?;
        if htu::normalize(&htu).as_deref() != Some(expected_uri.as_str()) {
            return Err(DpopError::UrlMismatch {
                proof: htu,
                request: request.uri.to_owned(),
            });
        }
        let iat = claims.iat.ok_or(DpopError::MissingClaim { claim: "iat" })?;
        let (now, window) = (request.now, self.iat_window);
        if iat < now.saturating_sub(window) {
            return Err(DpopError::IatTooOld { iat, now, window });
        }
        if iat > now.saturating_add(window) {
            return Err(DpopError::IatInFuture { iat, now, window });
        }
        if let Some(token) = request.token {
            let ath = claims.ath.ok_or(DpopError::MissingAth)?;
            let expected = match token_ath {
                Some(known) => std::borrow::Cow::Borrowed(known),
                None => std::borrow::Cow::Owned(access_token_hash(token.access_token)),
            };
            if ath != *expected {
                return Err(DpopError::AthMismatch {
                    expected: expected.into_owned(),
                    found: ath,
                });
            }
        }
        match replay.check_and_remember(&jti, iat.saturating_add(window), now) {
            JtiCheck::Fresh => Ok(DpopProof {
                jkt: key.jkt.clone(),
                jti,
                iat,
            }),
            JtiCheck::Replayed => Err(DpopError::Replayed { jti }),
            JtiCheck::Full => Err(DpopError::ReplayMemoryFull { jti }),
        }
    }
}

/// The `ath` a proof for `access_token` must carry: base64url(SHA-256(token)).
pub(crate) fn access_token_hash(access_token: &str) -> String {
    jws::b64(&Sha256::digest(access_token.as_bytes()))
}

/// Reads and checks a proof's decoded header: `typ`, `alg`, no `crit`, a
/// public `jwk` that fits `alg`. The key it names, ready to verify.
fn read_header(header: &[u8]) -> Result<ProofKey, DpopError> {
    let header: jws::Header = serde_json::from_slice(header).map_err(|_| DpopError::Malformed {
        reason: "header is not a JSON object with a string alg",
    })?;
    if header.typ.as_deref() != Some(DPOP_TYP) {
        return Err(DpopError::WrongType { typ: header.typ });
    }
    let alg = algorithm(&header.alg)?;
    if let Some(names) = header.crit {
        return Err(DpopError::UnsupportedCritical { names });
    }
    let jwk = PublicJwk::from_json(header.jwk.as_ref().ok_or(DpopError::MissingJwk)?).map_err(
        |e| match e {
            JwkError::PrivateMember { member } => DpopError::PrivateKeyInJwk { member },
            other => DpopError::BadJwk(other),
        },
    )?;
    if !fits(alg, &jwk) {
        return Err(DpopError::KeyAlgorithmMismatch {
            alg: header.alg,
            key: jwk.describe(),
        });
    }
    ProofKey::new(alg, &jwk).ok_or(DpopError::BadSignature)
}

/// The algorithm a proof may use, by its `alg` name.
fn algorithm(alg: &str) -> Result<Algorithm, DpopError> {
    Ok(match alg {
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        _ if alg.eq_ignore_ascii_case("none") || alg.starts_with("HS") => {
            return Err(DpopError::ForbiddenAlgorithm {
                alg: alg.to_owned(),
            });
        }
        _ => {
            return Err(DpopError::UnsupportedAlgorithm {
                alg: alg.to_owned(),
            });
        }
    })
}

/// Whether `jwk` is the kind of key `alg` signs with.
fn fits(alg: Algorithm, jwk: &PublicJwk) -> bool {
    match (alg, jwk) {
        (Algorithm::ES256, PublicJwk::Ec { crv, .. }) => crv == "P-256",
        (Algorithm::ES384, PublicJwk::Ec { crv, .. }) => crv == "P-384",
        (Algorithm::EdDSA, PublicJwk::Okp { crv, .. }) => crv == "Ed25519",
        (
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512,
            PublicJwk::Rsa { .. },
        ) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests;
