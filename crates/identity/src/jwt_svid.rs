//! JWT-SVID verification (SPIFFE JWT-SVID specification §3 and §4): the
//! compact JWS is split and its header read by hand, so that `none`, HMAC and
//! unknown algorithms are refused by name before any key is chosen; the key is
//! the JWT authority named by `kid` in the bundle of the trust domain of `sub`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use mandate_tokens::{PublicJwk, SpiffeId, TokenError};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::authority::{decoding_key, describe};
use crate::bundle::TrustBundles;
use crate::certs::rfc3339;
use crate::error::IdentityError;

/// Largest token accepted, in bytes: far above any real JWT-SVID, small
/// enough that parsing an attacker's input stays cheap.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Clock skew allowed on `nbf` (when a token carries one). `exp` gets none: a
/// token is refused from the second its `exp` is reached.
pub const JWT_NBF_LEEWAY_SECONDS: i64 = 60;

/// A verified JWT-SVID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedJwtSvid {
    /// Its `sub`.
    pub spiffe_id: SpiffeId,
    /// Its `exp`, unix seconds.
    pub exp: i64,
    /// Its `aud`, as a list.
    pub audience: Vec<String>,
}

/// The header members read here. `alg` stays a string so that any name can be
/// refused by name.
#[derive(Deserialize)]
struct Header {
    alg: String,
    typ: Option<String>,
    kid: Option<String>,
    crit: Option<Vec<String>>,
}

/// Verifies a JWT-SVID for `audience` at `now`.
///
/// `alg` must be RS256/384/512, ES256/384 or PS256/384/512 (`none`, HMAC,
/// EdDSA and anything else are refused; ES512 too, which this crate cannot
/// verify); `typ`, if present, `JWT` or `JOSE`; no `crit`; `kid` present and
/// a JWT authority of the bundle of the trust domain of `sub`, of a key type
/// that fits `alg`. The signature must verify; `aud` (a string or an array)
/// must include `audience`; `exp` must be after `now`; `nbf`, if present, no
/// later than `now` plus [`JWT_NBF_LEEWAY_SECONDS`].
pub fn verify_jwt_svid(
    bundles: &TrustBundles,
    token: &str,
    audience: &str,
    now: i64,
) -> Result<VerifiedJwtSvid, IdentityError> {
    let malformed = |reason: &str| IdentityError::MalformedJwt {
        reason: reason.to_owned(),
    };
    if token.len() > MAX_TOKEN_LEN {
        return Err(malformed("longer than 16 KiB"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("not three dot-separated parts"));
    };
    let header_bytes = URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|_| malformed("the header is not base64url"))?;
    let header: Header = serde_json::from_slice(&header_bytes).map_err(|e| {
        malformed(&format!(
            "the header is not a JSON object with a string alg: {e}"
        ))
    })?;
    let alg = algorithm(&header.alg)?;
    if let Some(typ) = header.typ
        && typ != "JWT"
        && typ != "JOSE"
    {
        return Err(IdentityError::JwtBadType { typ });
    }
    if let Some(names) = header.crit {
        return Err(IdentityError::JwtCritical { names });
    }
    let kid = header
        .kid
        .filter(|kid| !kid.is_empty())
        .ok_or(IdentityError::JwtMissingKid)?;

    let payload = URL_SAFE_NO_PAD
        .decode(p)
        .map_err(|_| malformed("the payload is not base64url"))?;
    let claims: Map<String, Value> = serde_json::from_slice(&payload)
        .map_err(|e| malformed(&format!("the payload is not a JSON object: {e}")))?;
    let sub = match claims.get("sub") {
        Some(Value::String(sub)) => sub,
        Some(_) => return Err(bad_claim("sub", "not a string")),
        None => return Err(bad_claim("sub", "missing")),
    };
    let spiffe_id = SpiffeId::parse(sub).map_err(|e| IdentityError::JwtBadSubject {
        sub: sub.clone(),
        reason: match e {
            TokenError::BadSpiffeId { reason, .. } => reason.to_owned(),
            other => other.to_string(),
        },
    })?;

    let trust_domain = spiffe_id.trust_domain();
    let bundle = bundles
        .get(trust_domain)
        .ok_or_else(|| IdentityError::UnknownTrustDomain {
            trust_domain: trust_domain.to_owned(),
        })?;
    let key = bundle
        .jwt_authority(&kid)
        .ok_or_else(|| IdentityError::JwtUnknownKid {
            kid: kid.clone(),
            trust_domain: trust_domain.to_owned(),
        })?;
    if !fits(alg, key) {
        return Err(IdentityError::JwtKeyMismatch {
            alg: header.alg,
            kid,
            key: describe(key),
        });
    }
    let signing_input = &token[..h.len() + 1 + p.len()];
    let verified = decoding_key(key).is_some_and(|decoding| {
        matches!(
            jsonwebtoken::crypto::verify(signature, signing_input.as_bytes(), &decoding, alg),
            Ok(true)
        )
    });
    if !verified {
        return Err(IdentityError::JwtBadSignature {
            kid,
            trust_domain: trust_domain.to_owned(),
        });
    }

    let audiences = match claims.get("aud") {
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(many)) => many
            .iter()
            .map(|a| a.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad_claim("aud", "an array with a non-string entry"))?,
        Some(_) => return Err(bad_claim("aud", "neither a string nor an array")),
        None => return Err(bad_claim("aud", "missing")),
    };
    if !audiences.iter().any(|a| a == audience) {
        return Err(IdentityError::JwtAudienceMismatch {
            audience: audiences,
            expected: audience.to_owned(),
        });
    }
    let exp = integer_claim(&claims, "exp")?.ok_or_else(|| bad_claim("exp", "missing"))?;
    if exp <= now {
        return Err(IdentityError::JwtExpired { exp: rfc3339(exp) });
    }
    if let Some(nbf) = integer_claim(&claims, "nbf")?
        && nbf > now.saturating_add(JWT_NBF_LEEWAY_SECONDS)
    {
        return Err(IdentityError::JwtNotYetValid { nbf: rfc3339(nbf) });
    }

    Ok(VerifiedJwtSvid {
        spiffe_id,
        exp,
        audience: audiences,
    })
}

/// The algorithms of JWT-SVID §3 that this crate verifies.
fn algorithm(alg: &str) -> Result<Algorithm, IdentityError> {
    Ok(match alg {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        _ => {
            return Err(IdentityError::JwtAlgorithmRefused {
                alg: alg.to_owned(),
            });
        }
    })
}

/// Whether a key of this type and curve can verify `alg`.
fn fits(alg: Algorithm, key: &PublicJwk) -> bool {
    match key {
        PublicJwk::Ec { crv, .. } => {
            (alg == Algorithm::ES256 && crv == "P-256")
                || (alg == Algorithm::ES384 && crv == "P-384")
        }
        PublicJwk::Rsa { .. } => matches!(
            alg,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
        ),
        PublicJwk::Okp { .. } => false,
    }
}

/// An optional NumericDate claim, as whole seconds.
fn integer_claim(
    claims: &Map<String, Value>,
    claim: &'static str,
) -> Result<Option<i64>, IdentityError> {
    match claims.get(claim) {
        None => Ok(None),
        Some(value) => value
            .as_i64()
            .map(Some)
            .ok_or_else(|| bad_claim(claim, "not an integer")),
    }
}

fn bad_claim(claim: &'static str, problem: &'static str) -> IdentityError {
    IdentityError::JwtBadClaim { claim, problem }
}
