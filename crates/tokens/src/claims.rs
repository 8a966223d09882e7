//! The claims of a task token: who (`sub`, a SPIFFE ID), for what (one
//! `agent_task` grant), for how long, bound to which key (`cnf`) and, for a
//! delegated token, on whose behalf (`act`, RFC 8693 §4.1).

use serde::{Deserialize, Serialize};

use crate::error::TokenError;
use crate::grant::{DelegationRefusal, TaskGrant};
use crate::spiffe::SpiffeId;

/// Longest `iss`, `aud`, `jti` or `task_id`, in bytes.
pub const MAX_CLAIM_LEN: usize = 256;
/// Deepest `act` chain a token may carry. Deployments bound delegation lower
/// (the default is 3); this bound only keeps parsing cheap.
pub const MAX_ACTOR_DEPTH: usize = 16;

/// The key a token is bound to (RFC 7800 `cnf`). Exactly one member.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Confirmation {
    /// RFC 9449 (DPoP): the RFC 7638 SHA-256 thumbprint of the agent's public JWK.
    #[serde(rename = "jkt")]
    Jkt(String),
    /// RFC 8705 (mTLS): the SHA-256 of the agent's client certificate (DER), base64url.
    #[serde(rename = "x5t#S256")]
    X5tS256(String),
}

impl Confirmation {
    fn validate(&self) -> Result<(), TokenError> {
        let (member, value) = match self {
            Confirmation::Jkt(v) => ("jkt", v),
            Confirmation::X5tS256(v) => ("x5t#S256", v),
        };
        let ok = value.len() == 43
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(())
        } else {
            Err(TokenError::BadConfirmation {
                member,
                value: value.clone(),
            })
        }
    }
}

/// One link of an RFC 8693 actor chain: the current actor, and the one before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The acting workload.
    pub sub: SpiffeId,
    /// The actor before this one, if the token was delegated more than once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

/// The JWT claims of a task token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskClaims {
    /// The issuer (Mandate's base URL).
    pub iss: String,
    /// The agent, by SPIFFE ID.
    pub sub: SpiffeId,
    /// The one audience the token is for.
    pub aud: String,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Not valid before, seconds since the epoch.
    pub nbf: i64,
    /// Expires at, seconds since the epoch.
    pub exp: i64,
    /// The token's unique ID: what revocation lists.
    pub jti: String,
    /// The task this token serves.
    pub task_id: String,
    /// Exactly one `agent_task` entry.
    pub authorization_details: Vec<TaskGrant>,
    /// The key the token is bound to; `None` only for an unbound bearer token,
    /// which an issuer makes only when told to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
    /// The actor chain of a delegated token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
    /// The task IDs of a delegated task's ancestors, root first: one per link
    /// of the `act` chain, empty for a root task. Revoking any of them revokes
    /// this token ([`TaskClaims::task_lineage`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub task_chain: Vec<String>,
}

impl TaskClaims {
    /// Checks everything the types do not: lengths, one valid grant, an ordered
    /// validity window, a well-formed `cnf`, a bounded actor chain and a
    /// `task_chain` as long as it, naming other tasks than this one.
    /// [`crate::SigningKeys`] never signs nor accepts claims that fail this.
    pub fn validate(&self) -> Result<(), TokenError> {
        for (claim, value) in [
            ("iss", &self.iss),
            ("aud", &self.aud),
            ("jti", &self.jti),
            ("task_id", &self.task_id),
        ] {
            if value.is_empty() || value.len() > MAX_CLAIM_LEN {
                return Err(TokenError::BadClaimLength {
                    claim,
                    len: value.len(),
                    max: MAX_CLAIM_LEN,
                });
            }
        }
        if self.nbf < self.iat || self.exp <= self.nbf {
            return Err(TokenError::BadValidityWindow {
                iat: self.iat,
                nbf: self.nbf,
                exp: self.exp,
            });
        }
        match self.authorization_details.as_slice() {
            [grant] => grant.validate()?,
            other => return Err(TokenError::GrantCount { count: other.len() }),
        }
        if let Some(cnf) = &self.cnf {
            cnf.validate()?;
        }
        let depth = self.delegation_depth();
        if depth > MAX_ACTOR_DEPTH {
            return Err(TokenError::ActorChainTooDeep {
                depth,
                max: MAX_ACTOR_DEPTH,
            });
        }
        self.validate_task_chain(depth)
    }

    fn validate_task_chain(&self, depth: usize) -> Result<(), TokenError> {
        let len = self.task_chain.len();
        if len > MAX_ACTOR_DEPTH {
            return Err(TokenError::TaskChainTooLong {
                len,
                max: MAX_ACTOR_DEPTH,
            });
        }
        for ancestor in &self.task_chain {
            if ancestor.is_empty() || ancestor.len() > MAX_CLAIM_LEN {
                return Err(TokenError::BadClaimLength {
                    claim: "task_chain",
                    len: ancestor.len(),
                    max: MAX_CLAIM_LEN,
                });
            }
            if *ancestor == self.task_id {
                return Err(TokenError::TaskChainHoldsOwnTask {
                    task_id: self.task_id.clone(),
                });
            }
        }
        if len != depth {
            return Err(TokenError::TaskChainDepthMismatch { len, depth });
        }
        Ok(())
    }

    /// The task IDs this token depends on, root first: every ancestor of
    /// `task_chain`, then `task_id`. Revoking any of them revokes the token.
    pub fn task_lineage(&self) -> impl Iterator<Item = &str> {
        self.task_chain
            .iter()
            .map(String::as_str)
            .chain(std::iter::once(self.task_id.as_str()))
    }

    /// The task's grant (the one `agent_task` entry).
    ///
    /// # Panics
    /// If `authorization_details` is empty, which [`TaskClaims::validate`] refuses
    /// and verified claims never are.
    pub fn grant(&self) -> &TaskGrant {
        &self.authorization_details[0]
    }

    /// How many delegations lie behind this token: 0 for a token issued to the
    /// agent itself, one more for each nested `act`.
    pub fn delegation_depth(&self) -> usize {
        let mut depth = 0;
        let mut next = self.act.as_ref();
        while let Some(actor) = next {
            depth += 1;
            next = actor.act.as_deref();
        }
        depth
    }

    /// Seconds this token has left at `now` (0 once expired).
    pub fn remaining_seconds(&self, now: i64) -> u64 {
        u64::try_from(self.exp.saturating_sub(now)).unwrap_or(0)
    }

    /// May a token with these (verified) claims mint a child with `child`'s grant
    /// at `now`, given a delegation depth limit of `max_depth`? The parent must
    /// hold `delegate`, the child must not be deeper than `max_depth`, and its
    /// grant must be a subset ([`TaskGrant::is_subset_of`]). `Err` lists every reason.
    pub fn may_delegate(
        &self,
        child: &TaskGrant,
        now: i64,
        max_depth: usize,
    ) -> Result<(), Vec<DelegationRefusal>> {
        let mut refusals = Vec::new();
        if !self
            .grant()
            .capabilities
            .contains(crate::grant::Capability::Delegate)
        {
            refusals.push(DelegationRefusal::NoDelegateRight);
        }
        let depth = self.delegation_depth() + 1;
        if depth > max_depth {
            refusals.push(DelegationRefusal::TooDeep {
                depth,
                max: max_depth,
            });
        }
        if let Err(more) = child.is_subset_of(self.grant(), self.remaining_seconds(now)) {
            refusals.extend(more);
        }
        if refusals.is_empty() {
            Ok(())
        } else {
            Err(refusals)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grant::Capability;
    use crate::testing::{claims, grant};
    use serde_json::json;

    #[test]
    fn serializes_with_registered_claim_names() {
        let mut c = claims(1_000);
        c.act = Some(Actor {
            sub: SpiffeId::parse("spiffe://example.org/agent/helper").unwrap(),
            act: None,
        });
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["sub"], json!("spiffe://example.org/agent/triage"));
        assert_eq!(v["cnf"], json!({"jkt": crate::testing::JKT}));
        assert_eq!(v["authorization_details"][0]["type"], json!("agent_task"));
        assert_eq!(
            v["act"],
            json!({"sub": "spiffe://example.org/agent/helper"})
        );
        assert_eq!(serde_json::from_value::<TaskClaims>(v).unwrap(), c);
    }

    #[test]
    fn cnf_holds_exactly_one_of_jkt_and_x5t() {
        let jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
        let both = json!({"jkt": jkt, "x5t#S256": jkt});
        assert!(serde_json::from_value::<Confirmation>(both).is_err());
        let mtls: Confirmation = serde_json::from_value(json!({"x5t#S256": jkt})).unwrap();
        assert_eq!(mtls, Confirmation::X5tS256(jkt.into()));
        assert!(serde_json::from_value::<Confirmation>(json!({})).is_err());
    }

    #[test]
    fn refuses_a_malformed_cnf_value() {
        let mut c = claims(1_000);
        c.cnf = Some(Confirmation::Jkt("not a thumbprint".into()));
        assert!(matches!(
            c.validate(),
            Err(TokenError::BadConfirmation { member: "jkt", .. })
        ));
    }

    #[test]
    fn refuses_anything_but_exactly_one_grant() {
        let mut c = claims(1_000);
        c.authorization_details.push(grant());
        assert_eq!(c.validate(), Err(TokenError::GrantCount { count: 2 }));
        c.authorization_details.clear();
        assert_eq!(c.validate(), Err(TokenError::GrantCount { count: 0 }));
    }

    #[test]
    fn refuses_a_sub_that_is_not_a_spiffe_id() {
        let mut v = serde_json::to_value(claims(1_000)).unwrap();
        v["sub"] = json!("agent-7");
        let err = serde_json::from_value::<TaskClaims>(v).unwrap_err();
        assert!(
            err.to_string().contains("\"agent-7\" is not a SPIFFE ID"),
            "{err}"
        );
    }

    #[test]
    fn refuses_an_inverted_validity_window_and_empty_claims() {
        let mut c = claims(1_000);
        c.exp = c.nbf;
        assert!(matches!(
            c.validate(),
            Err(TokenError::BadValidityWindow { .. })
        ));
        let mut c = claims(1_000);
        c.jti.clear();
        assert!(matches!(
            c.validate(),
            Err(TokenError::BadClaimLength {
                claim: "jti",
                len: 0,
                ..
            })
        ));
    }

    #[test]
    fn counts_delegation_depth_along_the_act_chain() {
        let mut c = claims(1_000);
        assert_eq!(c.delegation_depth(), 0);
        let id = |n: &str| SpiffeId::parse(&format!("spiffe://example.org/agent/{n}")).unwrap();
        c.act = Some(Actor {
            sub: id("c"),
            act: Some(Box::new(Actor {
                sub: id("b"),
                act: None,
            })),
        });
        assert_eq!(c.delegation_depth(), 2);
    }

    #[test]
    fn refuses_an_actor_chain_deeper_than_the_bound() {
        let mut c = claims(1_000);
        let mut chain = None;
        for i in 0..=MAX_ACTOR_DEPTH {
            chain = Some(Box::new(Actor {
                sub: SpiffeId::parse(&format!("spiffe://example.org/agent/a{i}")).unwrap(),
                act: chain,
            }));
        }
        c.act = chain.map(|b| *b);
        assert!(matches!(
            c.validate(),
            Err(TokenError::ActorChainTooDeep { depth: 17, .. })
        ));
    }

    fn delegated(chain: &[&str]) -> TaskClaims {
        let mut c = claims(1_000);
        let mut act = None;
        for i in 0..chain.len() {
            act = Some(Box::new(Actor {
                sub: SpiffeId::parse(&format!("spiffe://example.org/agent/a{i}")).unwrap(),
                act,
            }));
        }
        c.act = act.map(|b| *b);
        c.task_chain = chain.iter().map(|s| (*s).to_owned()).collect();
        c
    }

    #[test]
    fn task_chain_is_omitted_for_a_root_task_and_kept_for_a_delegated_one() {
        let root = claims(1_000);
        let v = serde_json::to_value(&root).unwrap();
        assert!(v.get("task_chain").is_none());
        assert_eq!(root.task_lineage().collect::<Vec<_>>(), ["task-1"]);

        let child = delegated(&["task-root", "task-parent"]);
        assert_eq!(child.validate(), Ok(()));
        let v = serde_json::to_value(&child).unwrap();
        assert_eq!(v["task_chain"], json!(["task-root", "task-parent"]));
        assert_eq!(serde_json::from_value::<TaskClaims>(v).unwrap(), child);
        assert_eq!(
            child.task_lineage().collect::<Vec<_>>(),
            ["task-root", "task-parent", "task-1"]
        );
    }

    #[test]
    fn task_chain_must_match_the_act_chain() {
        let mut c = delegated(&["task-root"]);
        c.task_chain.clear();
        assert_eq!(
            c.validate(),
            Err(TokenError::TaskChainDepthMismatch { len: 0, depth: 1 })
        );
        let mut c = claims(1_000);
        c.task_chain = vec!["task-root".into()];
        assert_eq!(
            c.validate(),
            Err(TokenError::TaskChainDepthMismatch { len: 1, depth: 0 })
        );
    }

    #[test]
    fn task_chain_entries_are_bounded_and_other_than_the_task() {
        let long = "t".repeat(MAX_CLAIM_LEN + 1);
        for (chain, claim_len) in [(["task-root", ""], 0), (["task-root", long.as_str()], 257)] {
            assert_eq!(
                delegated(&chain).validate(),
                Err(TokenError::BadClaimLength {
                    claim: "task_chain",
                    len: claim_len,
                    max: MAX_CLAIM_LEN
                })
            );
        }
        assert_eq!(
            delegated(&["task-root", "task-1"]).validate(),
            Err(TokenError::TaskChainHoldsOwnTask {
                task_id: "task-1".into()
            })
        );
        let mut c = delegated(&["t"; MAX_ACTOR_DEPTH]);
        assert_eq!(c.validate(), Ok(()));
        c.task_chain.push("t".into());
        assert_eq!(
            c.validate(),
            Err(TokenError::TaskChainTooLong {
                len: MAX_ACTOR_DEPTH + 1,
                max: MAX_ACTOR_DEPTH
            })
        );
    }

    #[test]
    fn delegation_needs_the_delegate_right() {
        let mut parent = claims(1_000);
        parent.authorization_details[0].capabilities =
            [Capability::Read, Capability::Act].into_iter().collect();
        let mut child = grant();
        child.ttl_seconds = 60;
        child.capabilities = [Capability::Read].into_iter().collect();
        assert_eq!(
            parent.may_delegate(&child, 1_000, 3),
            Err(vec![DelegationRefusal::NoDelegateRight])
        );
    }

    #[test]
    fn delegation_beyond_the_depth_limit_is_refused() {
        let mut parent = claims(1_000);
        let mut chain = None;
        for i in 0..3 {
            chain = Some(Box::new(Actor {
                sub: SpiffeId::parse(&format!("spiffe://example.org/agent/a{i}")).unwrap(),
                act: chain,
            }));
        }
        parent.act = chain.map(|b| *b);
        let mut child = grant();
        child.ttl_seconds = 60;
        assert_eq!(
            parent.may_delegate(&child, 1_000, 3),
            Err(vec![DelegationRefusal::TooDeep { depth: 4, max: 3 }])
        );
        assert_eq!(parent.may_delegate(&child, 1_000, 4), Ok(()));
    }

    #[test]
    fn a_child_may_not_outlive_what_remains_of_its_parent() {
        let parent = claims(1_000); // exp = 1_600
        let mut child = grant();
        child.ttl_seconds = 300;
        assert_eq!(parent.may_delegate(&child, 1_200, 3), Ok(()));
        assert_eq!(
            parent.may_delegate(&child, 1_400, 3),
            Err(vec![DelegationRefusal::LongerTtl {
                child: 300,
                remaining: 200
            }])
        );
        // An expired parent has nothing left to give.
        child.ttl_seconds = 1;
        assert!(parent.may_delegate(&child, 1_600, 3).is_err());
    }
}
