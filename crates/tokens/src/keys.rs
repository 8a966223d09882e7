//! The issuer's Ed25519 signing keys: one active key that signs, retired keys
//! that still verify during an overlap window after a rotation, and the JWK Set
//! that publishes them.
//!
//! Tokens are compact JWS with header `{"alg":"EdDSA","typ":"at+jwt","kid":…}`
//! (RFC 9068). Verification reads the header first and refuses any other
//! algorithm by name, so `none`, `HS256` with a public key as secret and
//! algorithm confusion never reach a signature check.

use std::fmt;

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

use crate::claims::TaskClaims;
use crate::error::TokenError;
use crate::jwk::{JwkSet, PublicJwk, PublishedJwk, jwk_thumbprint};
use crate::jws;

/// The only algorithm task tokens are signed with.
pub const TOKEN_ALG: &str = "EdDSA";
/// The `typ` of task tokens (RFC 9068 §2.1).
pub const TOKEN_TYP: &str = "at+jwt";

/// An Ed25519 private key with its `kid`, the RFC 7638 thumbprint of its public key.
pub struct SigningKey {
    kid: String,
    pair: Ed25519KeyPair,
}

impl SigningKey {
    /// A fresh key from aws-lc's random generator.
    pub fn generate() -> Result<SigningKey, TokenError> {
        let pair = Ed25519KeyPair::generate().map_err(|_| TokenError::KeyGeneration)?;
        Ok(SigningKey::from_pair(pair))
    }

    /// A key from an unencrypted PKCS#8 (v1 or v2) Ed25519 document, as stored.
    pub fn from_pkcs8(der: &[u8]) -> Result<SigningKey, TokenError> {
        let pair = Ed25519KeyPair::from_pkcs8(der).map_err(|e| TokenError::BadPrivateKey {
            reason: e.description_(),
        })?;
        Ok(SigningKey::from_pair(pair))
    }

    fn from_pair(pair: Ed25519KeyPair) -> SigningKey {
        let kid = jwk_thumbprint(&okp_jwk(public_bytes(&pair)));
        SigningKey { kid, pair }
    }

    /// The private key as a PKCS#8 v2 document, for the store (which encrypts it).
    pub fn to_pkcs8(&self) -> Result<Vec<u8>, TokenError> {
        let doc = self
            .pair
            .to_pkcs8()
            .map_err(|_| TokenError::KeyGeneration)?;
        Ok(doc.as_ref().to_vec())
    }

    /// The key ID.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK.
    pub fn public_jwk(&self) -> PublicJwk {
        okp_jwk(public_bytes(&self.pair))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn public_bytes(pair: &Ed25519KeyPair) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(pair.public_key().as_ref());
    out
}

fn okp_jwk(public: [u8; 32]) -> PublicJwk {
    PublicJwk::Okp {
        crv: "Ed25519".to_owned(),
        x: jws::b64(&public),
    }
}

/// A key that verifies but no longer signs.
#[derive(Debug, Clone)]
struct RetiredKey {
    kid: String,
    public: [u8; 32],
    retired_at: i64,
}

/// The issuer's key set: the active key signs, retired keys verify until
/// `retired_at + overlap`, after which [`SigningKeys::prune`] drops them.
/// Make the overlap at least the longest token lifetime so that no live token
/// loses its key.
#[derive(Debug)]
pub struct SigningKeys {
    active: SigningKey,
    active_public: [u8; 32],
    retired: Vec<RetiredKey>,
    /// Keys of the other nodes of the same issuer: they verify, never sign.
    peers: Vec<PeerKey>,
    overlap_seconds: i64,
}

/// Another node's key, known by its public half.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PeerKey {
    kid: String,
    public: [u8; 32],
    retired_at: Option<i64>,
}

impl SigningKeys {
    /// A set with one active key and a rotation overlap of `overlap_seconds`.
    pub fn new(active: SigningKey, overlap_seconds: u32) -> SigningKeys {
        SigningKeys {
            active_public: public_bytes(&active.pair),
            active,
            retired: Vec::new(),
            peers: Vec::new(),
            overlap_seconds: i64::from(overlap_seconds),
        }
    }

    /// The active key's ID.
    pub fn active_kid(&self) -> &str {
        self.active.kid()
    }

    /// The IDs of retired keys still held, oldest first.
    pub fn retired_kids(&self) -> Vec<&str> {
        self.retired.iter().map(|k| k.kid.as_str()).collect()
    }

    /// Adds a key retired at `retired_at` (reloading the set after a restart).
    /// Only its public half is kept.
    pub fn add_retired(&mut self, key: &SigningKey, retired_at: i64) -> Result<(), TokenError> {
        self.refuse_known(key.kid())?;
        self.retired.push(RetiredKey {
            kid: key.kid.clone(),
            public: public_bytes(&key.pair),
            retired_at,
        });
        self.retired.sort_by_key(|k| k.retired_at);
        Ok(())
    }

    /// Makes `new_key` the active key; the old one verifies until
    /// `now + overlap`. Retired keys past their window are pruned.
    pub fn rotate(&mut self, new_key: SigningKey, now: i64) -> Result<(), TokenError> {
        self.refuse_known(new_key.kid())?;
        let old = std::mem::replace(&mut self.active, new_key);
        self.retired.push(RetiredKey {
            kid: old.kid.clone(),
            public: self.active_public,
            retired_at: now,
        });
        self.active_public = public_bytes(&self.active.pair);
        self.prune(now);
        Ok(())
    }

    /// Drops retired keys whose overlap window has ended at `now`; returns their kids.
    pub fn prune(&mut self, now: i64) -> Vec<String> {
        let overlap = self.overlap_seconds;
        let (gone, kept) = std::mem::take(&mut self.retired)
            .into_iter()
            .partition(|k| now >= k.retired_at.saturating_add(overlap));
        self.retired = kept;
        gone.into_iter().map(|k: RetiredKey| k.kid).collect()
    }

    /// Replaces the keys of the issuer's other nodes (sharing one store):
    /// `(kid, public JWK, retired at)`. They verify under the same overlap
    /// rule as this node's retired keys and appear in the JWKS; this node's own
    /// kids are skipped. Only Ed25519 keys are accepted.
    pub fn set_peer_keys(
        &mut self,
        keys: &[(String, PublicJwk, Option<i64>)],
    ) -> Result<(), TokenError> {
        let mut peers = Vec::with_capacity(keys.len());
        for (kid, jwk, retired_at) in keys {
            if kid == self.active.kid() || self.retired.iter().any(|k| &k.kid == kid) {
                continue;
            }
            let PublicJwk::Okp { crv, x } = jwk else {
                return Err(TokenError::UnsupportedAlgorithm {
                    alg: format!("peer key {kid}: {}", jwk.describe()),
                });
            };
            let bytes = jws::unb64(x)
                .filter(|b| crv == "Ed25519" && b.len() == 32)
                .ok_or_else(|| TokenError::UnsupportedAlgorithm {
                    alg: format!("peer key {kid}: not an Ed25519 public key"),
                })?;
            let mut public = [0u8; 32];
            public.copy_from_slice(&bytes);
            peers.push(PeerKey {
                kid: kid.clone(),
                public,
                retired_at: *retired_at,
            });
        }
        self.peers = peers;
        Ok(())
    }

    fn refuse_known(&self, kid: &str) -> Result<(), TokenError> {
        if kid == self.active.kid() || self.retired.iter().any(|k| k.kid == kid) {
            return Err(TokenError::DuplicateKid {
                kid: kid.to_owned(),
            });
        }
        Ok(())
    }

    /// The public keys as a JWK Set, the active key first.
    pub fn jwks(&self) -> JwkSet {
        let publish = |kid: &str, public: [u8; 32]| PublishedJwk {
            key: okp_jwk(public),
            kid: kid.to_owned(),
            use_: "sig",
            alg: TOKEN_ALG,
        };
        let mut keys = vec![publish(self.active.kid(), self.active_public)];
        keys.extend(self.retired.iter().rev().map(|k| publish(&k.kid, k.public)));
        keys.extend(self.peers.iter().map(|k| publish(&k.kid, k.public)));
        JwkSet { keys }
    }

    /// Signs `claims` with the active key, after [`TaskClaims::validate`].
    pub fn issue(&self, claims: &TaskClaims) -> Result<String, TokenError> {
        claims.validate()?;
        let header =
            serde_json::json!({"alg": TOKEN_ALG, "typ": TOKEN_TYP, "kid": self.active.kid()});
        let payload = serde_json::to_vec(claims).map_err(|e| TokenError::MalformedClaims {
            reason: e.to_string(),
        })?;
        let mut token = jws::b64(header.to_string().as_bytes());
        token.push('.');
        token.push_str(&jws::b64(&payload));
        let signature = self.active.pair.sign(token.as_bytes());
        token.push('.');
        token.push_str(&jws::b64(signature.as_ref()));
        Ok(token)
    }

    /// Verifies a task token at `now` for `expected_aud` from `expected_iss`:
    /// header (`alg` EdDSA, `typ` at+jwt, no `crit`, a known `kid`), signature
    /// with that key, claims shape, issuer, audience, `exp` and `nbf`.
    /// Proof of possession (`cnf`) and revocation are the caller's next checks;
    /// [`crate::PresentationVerifier`] makes them all.
    pub fn verify(
        &self,
        token: &str,
        now: i64,
        expected_aud: &str,
        expected_iss: &str,
    ) -> Result<TaskClaims, TokenError> {
        self.verify_with_kid(token, now, expected_aud, expected_iss)
            .map(|(claims, _)| claims)
    }

    /// [`SigningKeys::verify`], also returning the `kid` of the key that signed.
    pub(crate) fn verify_with_kid(
        &self,
        token: &str,
        now: i64,
        expected_aud: &str,
        expected_iss: &str,
    ) -> Result<(TaskClaims, String), TokenError> {
        let compact = jws::split(token).map_err(|reason| TokenError::Malformed { reason })?;
        let header: jws::Header =
            serde_json::from_slice(&compact.header).map_err(|_| TokenError::Malformed {
                reason: "header is not a JSON object with a string alg",
            })?;
        if header.alg != TOKEN_ALG {
            return Err(TokenError::UnsupportedAlgorithm { alg: header.alg });
        }
        let typ_ok = header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case(TOKEN_TYP) || t.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(TokenError::WrongTokenType { typ: header.typ });
        }
        if let Some(names) = header.crit {
            return Err(TokenError::UnsupportedCritical { names });
        }
        let kid = header.kid.ok_or(TokenError::MissingKid)?;
        let public = self.verifying_key(&kid, now)?;
        let Some(signature) = jws::unb64(compact.signature) else {
            return Err(TokenError::BadSignature { kid });
        };
        if UnparsedPublicKey::new(&ED25519, public)
            .verify(compact.signing_input.as_bytes(), &signature)
            .is_err()
        {
            return Err(TokenError::BadSignature { kid });
        }

        let claims: TaskClaims =
            serde_json::from_slice(&compact.payload).map_err(|e| TokenError::MalformedClaims {
                reason: e.to_string(),
            })?;
        claims.validate()?;
        check_audience(&claims, expected_aud, expected_iss)?;
        check_time(&claims, now)?;
        Ok((claims, kid))
    }

    /// Whether the key `kid` still verifies at `now` (active, or retired within
    /// its overlap window).
    pub(crate) fn verifies_with(&self, kid: &str, now: i64) -> bool {
        self.verifying_key(kid, now).is_ok()
    }

    fn verifying_key(&self, kid: &str, now: i64) -> Result<&[u8; 32], TokenError> {
        if kid == self.active.kid() {
            return Ok(&self.active_public);
        }
        let (public, retired_at) = match self.retired.iter().find(|k| k.kid == kid) {
            Some(key) => (&key.public, Some(key.retired_at)),
            None => self
                .peers
                .iter()
                .find(|k| k.kid == kid)
                .map(|k| (&k.public, k.retired_at))
                .ok_or_else(|| TokenError::UnknownKid {
                    kid: kid.to_owned(),
                })?,
        };
        let Some(retired_at) = retired_at else {
            return Ok(public);
        };
        let until = retired_at.saturating_add(self.overlap_seconds);
        if now >= until {
            return Err(TokenError::KeyRetired {
                kid: kid.to_owned(),
                retired_at,
                until,
            });
        }
        Ok(public)
    }
}

/// `iss` and `aud` are the expected ones.
pub(crate) fn check_audience(
    claims: &TaskClaims,
    expected_aud: &str,
    expected_iss: &str,
) -> Result<(), TokenError> {
    if claims.iss != expected_iss {
        return Err(TokenError::WrongIssuer {
            expected: expected_iss.to_owned(),
            found: claims.iss.clone(),
        });
    }
    if claims.aud != expected_aud {
        return Err(TokenError::WrongAudience {
            expected: expected_aud.to_owned(),
            found: claims.aud.clone(),
        });
    }
    Ok(())
}

/// `now` is within `nbf..exp`.
pub(crate) fn check_time(claims: &TaskClaims, now: i64) -> Result<(), TokenError> {
    if now >= claims.exp {
        return Err(TokenError::Expired {
            exp: claims.exp,
            now,
        });
    }
    if now < claims.nbf {
        return Err(TokenError::NotYetValid {
            nbf: claims.nbf,
            now,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
