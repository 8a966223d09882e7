//! Task tokens for Mandate, with no I/O: what a task may do, the signed JWT that
//! carries it, the keys that sign it, and the DPoP proofs that bind it to an agent.
//!
//! A [`TaskGrant`] is the RFC 9396 `agent_task` entry (purpose, tools, data
//! domains, ttl, call budget, read / act / delegate); [`TaskGrant::is_subset_of`]
//! and [`TaskClaims::may_delegate`] decide attenuated delegation. [`TaskClaims`]
//! are the token's claims (`sub` a [`SpiffeId`], `cnf` a [`Confirmation`], the
//! RFC 8693 `act` chain and the `task_chain` of ancestor tasks). [`SigningKeys`]
//! issues and verifies EdDSA `at+jwt` tokens across key rotations and publishes
//! the [`JwkSet`]. [`DpopVerifier`] checks RFC 9449 proofs against a
//! [`ReplayGuard`]; [`DpopKey`] signs them on the agent's side; [`jwk_thumbprint`]
//! is RFC 7638. [`PresentationVerifier`] makes every per-call check of a
//! presented token (signature once per token via a [`VerifiedTokenCache`],
//! validity, DPoP or mTLS binding, revocation of its task lineage).
//!
//! Never reads the clock, the network, the store or files: callers pass `now`
//! and the request as values. Revocation is the caller's lookup by task ID.
//! Crypto is aws-lc-rs, directly and through jsonwebtoken.

mod cache;
mod claims;
mod dpop;
mod dpop_key;
mod error;
mod grant;
mod htu;
mod jwk;
mod jws;
mod keys;
mod presentation;
mod proof_keys;
mod replay;
mod spiffe;
#[cfg(test)]
mod testing;

pub use cache::VerifiedTokenCache;
pub use claims::{Actor, Confirmation, MAX_ACTOR_DEPTH, MAX_CLAIM_LEN, TaskClaims};
pub use dpop::{
    BoundToken, DEFAULT_IAT_WINDOW_SECONDS, DPOP_TYP, DpopError, DpopProof, DpopRequest,
    DpopVerifier, MAX_JTI_LEN,
};
pub use dpop_key::DpopKey;
pub use error::TokenError;
pub use grant::{
    AGENT_TASK_TYPE, Capabilities, Capability, DelegationRefusal, MAX_ENTRIES, MAX_NAME_LEN,
    MAX_PURPOSE_CHARS, MAX_TTL_SECONDS, TaskGrant,
};
pub use jwk::{JwkError, JwkSet, PublicJwk, PublishedJwk, jwk_thumbprint};
pub use keys::{SigningKey, SigningKeys, TOKEN_ALG, TOKEN_TYP};
pub use presentation::{Presentation, PresentationError, PresentationVerifier};
pub use replay::{JtiCheck, MemoryReplayGuard, ReplayGuard};
pub use spiffe::{MAX_SPIFFE_ID_LEN, MAX_TRUST_DOMAIN_LEN, SpiffeId};
