//! One validated load of a policy directory, and the decision it makes.
//!
//! Two policy annotations change what a decision says:
//!
//! - `@reason("word")` (a snake_case word): when the policy is among those
//!   that determined a decision, the word is in [`Decision::tags`], so callers
//!   can count and audit denials such as `drift` apart from the rest.
//! - `@approval("why a person must sign off")`, on forbid policies only: when
//!   a request is denied and every forbid that matched is an approval policy,
//!   the request is evaluated again without the approval policies. If that
//!   allows it, the decision is a *hold*: still [`Effect::Deny`], with
//!   [`DecisionReason::ApprovalRequired`] carrying the texts and the matching
//!   approval policies as its policies. If nothing permits it either, the
//!   decision is a plain [`DecisionReason::NoPermit`] with no policies: a
//!   person's sign-off could not make it pass, so it must not look as if it
//!   could. Any other forbid that matches makes it a plain forbid.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{
    Authorizer, Context, Entities, EntityUid, PolicyId, PolicySet, Request, RestrictedExpression,
    Schema, SchemaFragment, ValidationMode, Validator,
};
use mandate_core::{Decision, DecisionReason, Effect, PolicyEvalError};

use crate::entities::{EntityStore, merge_request_entity};
use crate::error::PolicyError;
use crate::index::PolicyIndex;
use crate::load::PolicySources;

/// One authorization question in Cedar's terms.
#[derive(Debug, Clone)]
pub struct DecisionRequest {
    /// Who acts.
    pub principal: EntityUid,
    /// What they do (`Action::"..."`).
    pub action: EntityUid,
    /// On what.
    pub resource: EntityUid,
    /// The context record.
    pub context: Context,
    /// Attributes the caller supplies for the principal. Merged under the stored
    /// entity's attributes: what `entities.json` says wins.
    pub principal_attrs: Vec<(String, RestrictedExpression)>,
    /// Attributes the caller supplies for the resource, merged the same way.
    pub resource_attrs: Vec<(String, RestrictedExpression)>,
}

/// The `@approval` policies of a bundle, and what to evaluate when only they
/// deny: the set without them, whole and indexed. Built once at load so that a
/// hold costs one more evaluation of an already-cut policy set.
#[derive(Debug)]
struct Approvals {
    /// Annotation text by policy ID.
    texts: HashMap<String, String>,
    without: PolicySet,
    index: PolicyIndex,
}

/// A policy directory, parsed, validated and indexed. Immutable: a reload builds
/// a new bundle.
#[derive(Debug)]
pub struct PolicyBundle {
    policies: PolicySet,
    schema: Option<Schema>,
    entities: EntityStore,
    index: PolicyIndex,
    /// `@reason` words by policy ID.
    reasons: HashMap<String, String>,
    /// `None` when no policy has `@approval`.
    approvals: Option<Approvals>,
    warnings: Vec<String>,
}

/// Which policies and entities an evaluation sees: the index's candidates and
/// the request's slice, or everything (the reference).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Indexed,
    Full,
}

/// A policy set borrowed from the bundle or cut for one request by an index.
enum SetRef<'a> {
    Whole(&'a PolicySet),
    Cut(Arc<PolicySet>),
}

impl std::ops::Deref for SetRef<'_> {
    type Target = PolicySet;
    fn deref(&self) -> &PolicySet {
        match self {
            SetRef::Whole(set) => set,
            SetRef::Cut(set) => set,
        }
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

/// Longest `@reason` word: it lands in metrics labels and audit records.
const MAX_REASON: usize = 64;

fn valid_reason(word: &str) -> bool {
    word.len() <= MAX_REASON
        && word.starts_with(|c: char| c.is_ascii_lowercase())
        && word
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl PolicyBundle {
    /// Parses, names, validates and indexes `sources`.
    ///
    /// Each policy is named `FILE#ID`, where ID is its `@id` annotation or, without
    /// one, Cedar's position-based name in that file (`policy0`, `policy1`, ...).
    pub fn from_sources(sources: &PolicySources) -> Result<PolicyBundle, PolicyError> {
        let mut warnings = Vec::new();
        let schema = if sources.schemas.is_empty() {
            None
        } else {
            let mut fragments = Vec::new();
            for file in &sources.schemas {
                let fragment = if file.name.ends_with(".json") {
                    SchemaFragment::from_json_str(&file.text)
                        .map_err(|e| PolicyError::Schema(format!("{}: {e}", file.name)))?
                } else {
                    let (fragment, w) = SchemaFragment::from_cedarschema_str(&file.text)
                        .map_err(|e| PolicyError::Schema(format!("{}: {e}", file.name)))?;
                    warnings.extend(w.map(|w| format!("{}: {w}", file.name)));
                    fragment
                };
                fragments.push(fragment);
            }
            Some(
                Schema::from_schema_fragments(fragments)
                    .map_err(|e| PolicyError::Schema(e.to_string()))?,
            )
        };

        let mut policies = PolicySet::new();
        let mut reasons = HashMap::new();
        let mut approval_texts = HashMap::new();
        for file in &sources.policies {
            let parsed = PolicySet::from_str(&file.text).map_err(|e| PolicyError::Parse {
                file: file.name.clone(),
                message: e.to_string(),
            })?;
            if let Some(t) = parsed.templates().next() {
                return Err(PolicyError::Template {
                    file: file.name.clone(),
                    id: t.id().to_string(),
                });
            }
            for policy in parsed.policies() {
                let local = match policy.annotation("id") {
                    Some(id) if valid_id(id) => id.to_owned(),
                    Some(id) => {
                        return Err(PolicyError::BadId {
                            file: file.name.clone(),
                            id: id.to_owned(),
                        });
                    }
                    None => policy.id().to_string(),
                };
                let id = format!("{}#{local}", file.name);
                if policies.policy(&PolicyId::new(&id)).is_some() {
                    return Err(PolicyError::DuplicateId {
                        id,
                        file: file.name.clone(),
                    });
                }
                if let Some(word) = policy.annotation("reason") {
                    if !valid_reason(word) {
                        return Err(PolicyError::BadReason {
                            policy: id,
                            value: word.to_owned(),
                        });
                    }
                    reasons.insert(id.clone(), word.to_owned());
                }
                if let Some(text) = policy.annotation("approval") {
                    if policy.effect() != cedar_policy::Effect::Forbid {
                        return Err(PolicyError::ApprovalOnPermit { policy: id });
                    }
                    if text.trim().is_empty() {
                        return Err(PolicyError::EmptyApproval { policy: id });
                    }
                    approval_texts.insert(id.clone(), text.trim().to_owned());
                }
                policies
                    .add(policy.new_id(PolicyId::new(&id)))
                    .map_err(|e| PolicyError::Parse {
                        file: file.name.clone(),
                        message: e.to_string(),
                    })?;
            }
        }

        if let Some(schema) = &schema {
            let result = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
            if !result.validation_passed() {
                return Err(PolicyError::Validation(
                    result.validation_errors().map(|e| e.to_string()).collect(),
                ));
            }
            warnings.extend(result.validation_warnings().map(|w| w.to_string()));
        }

        let entities = match &sources.entities {
            Some(file) => Entities::from_json_str(&file.text, schema.as_ref())
                .map_err(|e| PolicyError::Entities(e.to_string()))?,
            None => match &schema {
                // The schema's action hierarchy still matters for `action in`.
                Some(s) => s
                    .action_entities()
                    .map_err(|e| PolicyError::Entities(e.to_string()))?,
                None => Entities::empty(),
            },
        };
        let index = PolicyIndex::new(&policies, &entities);
        let approvals = if approval_texts.is_empty() {
            None
        } else {
            let without = PolicySet::from_policies(
                policies
                    .policies()
                    .filter(|p| !approval_texts.contains_key(AsRef::<str>::as_ref(p.id())))
                    .cloned(),
            )
            .map_err(|e| PolicyError::Parse {
                file: "(policies without @approval)".to_owned(),
                message: e.to_string(),
            })?;
            let index = PolicyIndex::new(&without, &entities);
            Some(Approvals {
                texts: approval_texts,
                without,
                index,
            })
        };
        let entities = EntityStore::new(entities, &policies);
        Ok(PolicyBundle {
            policies,
            schema,
            entities,
            index,
            reasons,
            approvals,
            warnings,
        })
    }

    /// Number of policies.
    pub fn policy_count(&self) -> usize {
        self.policies.policies().count()
    }

    /// The IDs of all policies, in load order.
    pub fn policy_ids(&self) -> Vec<String> {
        self.policies
            .policies()
            .map(|p| p.id().to_string())
            .collect()
    }

    /// Whether a schema was loaded (requests are then validated against it).
    pub fn has_schema(&self) -> bool {
        self.schema.is_some()
    }

    /// Schema and validation warnings found at load.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Decides `request`, evaluating only the policies whose scope can match and
    /// only the entities the request can reach.
    pub fn decide(&self, request: DecisionRequest) -> Decision {
        self.evaluate(request, Path::Indexed)
    }

    /// Decides `request` over the whole policy set and the whole entity store,
    /// as plain Cedar would. The reference that [`PolicyBundle::decide`] must
    /// always agree with; slower.
    pub fn decide_unindexed(&self, request: DecisionRequest) -> Decision {
        self.evaluate(request, Path::Full)
    }

    fn evaluate(&self, request: DecisionRequest, path: Path) -> Decision {
        let set = match path {
            Path::Indexed => SetRef::Cut(self.index.candidates(
                &request.principal,
                &request.action,
                &request.resource,
                self.entities.stored(),
            )),
            Path::Full => SetRef::Whole(&self.policies),
        };
        let schema = self.schema.as_ref();
        let roots = [&request.principal, &request.action, &request.resource];
        // The indexed path keeps the slices it builds (see `KeptSlices`).
        let kept = match path {
            Path::Indexed => {
                self.entities
                    .kept_slice(roots, &request.principal_attrs, &request.resource_attrs)
            }
            Path::Full => None,
        };
        let built: Arc<Entities>;
        let entities = if let Some(slice) = kept {
            built = slice;
            &*built
        } else {
            let keep = (path == Path::Indexed).then(|| {
                (
                    request.principal_attrs.clone(),
                    request.resource_attrs.clone(),
                )
            });
            let mut overrides = Vec::new();
            for (uid, attrs) in [
                (&request.principal, request.principal_attrs),
                (&request.resource, request.resource_attrs),
            ] {
                if attrs.is_empty() {
                    continue;
                }
                if overrides
                    .iter()
                    .any(|e: &cedar_policy::Entity| &e.uid() == uid)
                {
                    return Decision::invalid(format!(
                        "{uid} is both principal and resource and cannot take properties twice"
                    ));
                }
                match merge_request_entity(&self.entities, uid, attrs, schema) {
                    Ok(e) => overrides.push(e),
                    Err(why) => return Decision::invalid(why),
                }
            }
            // Without request-supplied entities the stored set is used as it
            // is: no copy, no closure to recompute. Otherwise only the
            // reachable slice is rebuilt (or, for the reference path, the
            // whole store).
            if overrides.is_empty() {
                self.entities.stored()
            } else {
                let result = match path {
                    Path::Indexed => self.entities.slice(roots, overrides),
                    Path::Full => self.entities.full_with(overrides),
                };
                match result {
                    Ok(e) => {
                        built = Arc::new(e);
                        if let Some((principal_attrs, resource_attrs)) = keep {
                            self.entities.keep_slice(
                                roots,
                                principal_attrs,
                                resource_attrs,
                                Arc::clone(&built),
                            );
                        }
                        &*built
                    }
                    Err(why) => return Decision::invalid(why),
                }
            }
        };
        let cedar_request = match Request::new(
            request.principal,
            request.action,
            request.resource,
            request.context,
            schema,
        ) {
            Ok(r) => r,
            Err(e) => return Decision::invalid(e.to_string()),
        };
        let authorizer = Authorizer::new();
        let response = authorizer.is_authorized(&cedar_request, &set, entities);
        let mut policies: Vec<String> = response
            .diagnostics()
            .reason()
            .map(ToString::to_string)
            .collect();
        policies.sort();
        let mut errors: Vec<PolicyEvalError> = response
            .diagnostics()
            .errors()
            .map(|e| {
                let cedar_policy::AuthorizationError::PolicyEvaluationError(inner) = e;
                PolicyEvalError {
                    policy: inner.policy_id().to_string(),
                    message: inner.inner().to_string(),
                }
            })
            .collect();
        errors.sort();
        let (effect, reason) = match response.decision() {
            cedar_policy::Decision::Allow => (Effect::Allow, DecisionReason::Permitted),
            cedar_policy::Decision::Deny if policies.is_empty() => {
                (Effect::Deny, DecisionReason::NoPermit)
            }
            cedar_policy::Decision::Deny => match &self.approvals {
                Some(approvals) if policies.iter().all(|p| approvals.texts.contains_key(p)) => {
                    // Errors are those of the first evaluation: the second one
                    // runs a subset of the same policies on the same request.
                    let Some(without) = self.without_approvals(approvals, path, &cedar_request)
                    else {
                        return Decision::invalid("request with unknown entities");
                    };
                    let second = authorizer.is_authorized(&cedar_request, &without, entities);
                    if second.decision() == cedar_policy::Decision::Allow {
                        let mut texts: Vec<String> = policies
                            .iter()
                            .map(|p| approvals.texts[p].clone())
                            .collect();
                        texts.sort();
                        texts.dedup();
                        (Effect::Deny, DecisionReason::ApprovalRequired(texts))
                    } else {
                        policies.clear();
                        (Effect::Deny, DecisionReason::NoPermit)
                    }
                }
                _ => (Effect::Deny, DecisionReason::Forbidden),
            },
        };
        let mut tags: Vec<String> = policies
            .iter()
            .filter_map(|p| self.reasons.get(p).cloned())
            .collect();
        tags.sort();
        tags.dedup();
        Decision {
            effect,
            policies,
            errors,
            reason,
            tags,
        }
    }

    /// The policies to evaluate again when only `@approval` policies denied.
    /// `None` only for a request with unknown entities, which Mandate never
    /// makes (only partial evaluation does).
    fn without_approvals<'a>(
        &'a self,
        approvals: &'a Approvals,
        path: Path,
        request: &Request,
    ) -> Option<SetRef<'a>> {
        Some(match path {
            Path::Indexed => SetRef::Cut(approvals.index.candidates(
                request.principal()?,
                request.action()?,
                request.resource()?,
                self.entities.stored(),
            )),
            Path::Full => SetRef::Whole(&approvals.without),
        })
    }

    /// The policy IDs that a request's scope selects (for tests and diagnostics).
    pub fn candidate_ids(&self, request: &DecisionRequest) -> HashSet<String> {
        self.index
            .candidates(
                &request.principal,
                &request.action,
                &request.resource,
                self.entities.stored(),
            )
            .policies()
            .map(|p| p.id().to_string())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::SourceFile;

    fn sources(
        policies: &[(&str, &str)],
        schema: Option<&str>,
        entities: Option<&str>,
    ) -> PolicySources {
        PolicySources {
            policies: policies
                .iter()
                .map(|(n, t)| SourceFile {
                    name: (*n).into(),
                    text: (*t).into(),
                })
                .collect(),
            schemas: schema
                .map(|t| SourceFile {
                    name: "s.cedarschema".into(),
                    text: t.into(),
                })
                .into_iter()
                .collect(),
            entities: entities.map(|t| SourceFile {
                name: "entities.json".into(),
                text: t.into(),
            }),
        }
    }

    fn uid(s: &str) -> EntityUid {
        s.parse().unwrap()
    }

    fn req(p: &str, a: &str, r: &str) -> DecisionRequest {
        DecisionRequest {
            principal: uid(p),
            action: uid(a),
            resource: uid(r),
            context: Context::empty(),
            principal_attrs: vec![],
            resource_attrs: vec![],
        }
    }

    const DOCS: &str = r#"
        @id("owner-reads")
        permit(principal, action == Action::"read", resource is Doc)
            when { resource has owner && resource.owner == principal };
        permit(principal in Group::"admins", action, resource);
        @id("no-secret")
        forbid(principal, action, resource is Doc) when { resource.secret };
    "#;

    const ENTITIES: &str = r#"[
        {"uid": {"type": "User", "id": "alice"}, "attrs": {}, "parents": []},
        {"uid": {"type": "User", "id": "root"}, "attrs": {}, "parents": [{"type": "Group", "id": "admins"}]},
        {"uid": {"type": "Doc", "id": "plan"}, "attrs": {"owner": {"__entity": {"type": "User", "id": "alice"}}, "secret": false}, "parents": []},
        {"uid": {"type": "Doc", "id": "keys"}, "attrs": {"owner": {"__entity": {"type": "User", "id": "alice"}}, "secret": true}, "parents": []}
    ]"#;

    fn docs() -> PolicyBundle {
        PolicyBundle::from_sources(&sources(&[("docs.cedar", DOCS)], None, Some(ENTITIES))).unwrap()
    }

    #[test]
    fn policies_are_named_by_file_and_id_annotation() {
        assert_eq!(
            docs().policy_ids(),
            [
                "docs.cedar#owner-reads",
                "docs.cedar#policy1",
                "docs.cedar#no-secret"
            ]
        );
    }

    #[test]
    fn a_permit_names_the_policy_that_allowed() {
        let d = docs().decide(req(
            r#"User::"alice""#,
            r#"Action::"read""#,
            r#"Doc::"plan""#,
        ));
        assert_eq!(d.effect, Effect::Allow);
        assert_eq!(d.policies, ["docs.cedar#owner-reads"]);
        assert_eq!(d.reason, DecisionReason::Permitted);
    }

    #[test]
    fn forbid_overrides_permit_and_is_named() {
        let d = docs().decide(req(
            r#"User::"alice""#,
            r#"Action::"read""#,
            r#"Doc::"keys""#,
        ));
        assert_eq!(d.effect, Effect::Deny);
        assert_eq!(d.policies, ["docs.cedar#no-secret"]);
        assert_eq!(d.reason, DecisionReason::Forbidden);
        let d = docs().decide(req(
            r#"User::"root""#,
            r#"Action::"delete""#,
            r#"Doc::"keys""#,
        ));
        assert_eq!(d.reason, DecisionReason::Forbidden);
    }

    #[test]
    fn nothing_matching_is_a_default_deny() {
        let d = docs().decide(req(
            r#"User::"mallory""#,
            r#"Action::"read""#,
            r#"Doc::"plan""#,
        ));
        assert_eq!(d.effect, Effect::Deny);
        assert_eq!(d.reason, DecisionReason::NoPermit);
        assert!(d.policies.is_empty());
        let empty = PolicyBundle::from_sources(&PolicySources::default()).unwrap();
        let d = empty.decide(req(
            r#"User::"root""#,
            r#"Action::"read""#,
            r#"Doc::"plan""#,
        ));
        assert_eq!(d.reason, DecisionReason::NoPermit);
    }

    #[test]
    fn an_erroring_policy_is_reported() {
        // Doc::"ghost" is not stored: reading `.secret` errors in the forbid policy.
        let d = docs().decide(req(
            r#"User::"root""#,
            r#"Action::"read""#,
            r#"Doc::"ghost""#,
        ));
        assert_eq!(d.errors.len(), 1);
        assert_eq!(d.errors[0].policy, "docs.cedar#no-secret");
    }

    #[test]
    fn request_attributes_fill_in_but_never_override_stored_ones() {
        let b = docs();
        let mut r = req(r#"User::"alice""#, r#"Action::"read""#, r#"Doc::"keys""#);
        // Trying to declare the secret document not secret must not work.
        r.resource_attrs = vec![("secret".into(), RestrictedExpression::new_bool(false))];
        assert_eq!(b.decide(r).effect, Effect::Deny);
        // An unknown document can be described by the request.
        let mut r = req(r#"User::"alice""#, r#"Action::"read""#, r#"Doc::"new""#);
        r.resource_attrs = vec![
            (
                "owner".into(),
                RestrictedExpression::new_entity_uid(uid(r#"User::"alice""#)),
            ),
            ("secret".into(), RestrictedExpression::new_bool(false)),
        ];
        assert_eq!(b.decide(r).effect, Effect::Allow);
    }

    #[test]
    fn a_kept_slice_serves_only_requests_with_the_same_attributes() {
        let b = docs();
        let read = |secret: bool, owner: &str| {
            let mut r = req(r#"User::"alice""#, r#"Action::"read""#, r#"Doc::"new""#);
            r.resource_attrs = vec![
                (
                    "owner".into(),
                    RestrictedExpression::new_entity_uid(uid(owner)),
                ),
                ("secret".into(), RestrictedExpression::new_bool(secret)),
            ];
            r
        };
        // Each answer is the one the unindexed reference gives, whatever was
        // decided (and kept) for the same roots just before.
        for (secret, owner) in [
            (false, r#"User::"alice""#),
            (false, r#"User::"alice""#),
            (true, r#"User::"alice""#),
            (false, r#"User::"root""#),
            (false, r#"User::"alice""#),
        ] {
            let indexed = b.decide(read(secret, owner));
            let reference = b.decide_unindexed(read(secret, owner));
            assert_eq!(indexed.effect, reference.effect, "{secret} {owner}");
            assert_eq!(indexed.policies, reference.policies, "{secret} {owner}");
        }
        assert_eq!(
            b.decide(read(false, r#"User::"alice""#)).effect,
            Effect::Allow
        );
        assert_eq!(
            b.decide(read(true, r#"User::"alice""#)).effect,
            Effect::Deny
        );
        assert_eq!(
            b.decide(read(false, r#"User::"root""#)).effect,
            Effect::Deny
        );
    }

    #[test]
    fn duplicate_and_malformed_ids_are_refused() {
        let dup = r#"@id("x") permit(principal, action, resource); @id("x") forbid(principal, action, resource);"#;
        let err =
            PolicyBundle::from_sources(&sources(&[("a.cedar", dup)], None, None)).unwrap_err();
        assert!(err.to_string().contains("a.cedar#x"), "{err}");
        let bad = r#"@id("has space") permit(principal, action, resource);"#;
        let err =
            PolicyBundle::from_sources(&sources(&[("a.cedar", bad)], None, None)).unwrap_err();
        assert!(matches!(err, PolicyError::BadId { .. }), "{err}");
    }

    #[test]
    fn a_syntax_error_names_the_file() {
        let err = PolicyBundle::from_sources(&sources(
            &[("broken.cedar", "permit(principal")],
            None,
            None,
        ))
        .unwrap_err();
        assert!(err.to_string().starts_with("broken.cedar:"), "{err}");
    }

    #[test]
    fn templates_are_refused() {
        let t = "permit(principal == ?principal, action, resource);";
        let err = PolicyBundle::from_sources(&sources(&[("t.cedar", t)], None, None)).unwrap_err();
        assert!(matches!(err, PolicyError::Template { .. }), "{err}");
    }

    const SCHEMA: &str = r#"
        entity User { level: Long };
        entity Doc;
        action read appliesTo { principal: User, resource: Doc, context: { ip: String } };
    "#;

    #[test]
    fn policies_that_do_not_fit_the_schema_are_refused() {
        let bad = r#"permit(principal, action == Action::"read", resource) when { principal.nickname == "x" };"#;
        let err = PolicyBundle::from_sources(&sources(&[("p.cedar", bad)], Some(SCHEMA), None))
            .unwrap_err();
        assert!(matches!(err, PolicyError::Validation(_)), "{err}");
        let good = r#"permit(principal, action == Action::"read", resource) when { principal.level > 2 };"#;
        PolicyBundle::from_sources(&sources(&[("p.cedar", good)], Some(SCHEMA), None)).unwrap();
    }

    #[test]
    fn with_a_schema_requests_that_do_not_fit_are_denied_as_invalid() {
        let p = r#"permit(principal, action == Action::"read", resource) when { principal.level > 2 };"#;
        let b =
            PolicyBundle::from_sources(&sources(&[("p.cedar", p)], Some(SCHEMA), None)).unwrap();
        let ctx = || {
            Context::from_pairs([(
                "ip".to_owned(),
                RestrictedExpression::new_string("1.2.3.4".into()),
            )])
            .unwrap()
        };
        // A wrong attribute type cannot slip past a policy that would error.
        let mut r = req(r#"User::"u""#, r#"Action::"read""#, r#"Doc::"d""#);
        r.context = ctx();
        r.principal_attrs = vec![("level".into(), RestrictedExpression::new_string("9".into()))];
        let d = b.decide(r.clone());
        assert!(
            matches!(d.reason, DecisionReason::InvalidRequest(_)),
            "{d:?}"
        );
        r.principal_attrs = vec![("level".into(), RestrictedExpression::new_long(9))];
        assert_eq!(b.decide(r.clone()).effect, Effect::Allow);
        // Context missing its declared field.
        r.context = Context::empty();
        assert!(matches!(
            b.decide(r).reason,
            DecisionReason::InvalidRequest(_)
        ));
        // Unknown action.
        let mut r = req(r#"User::"u""#, r#"Action::"fly""#, r#"Doc::"d""#);
        r.context = ctx();
        assert!(matches!(
            b.decide(r).reason,
            DecisionReason::InvalidRequest(_)
        ));
    }

    #[test]
    fn action_groups_from_the_schema_reach_their_members() {
        let schema = r#"
            entity User; entity Doc;
            action readish;
            action read in [readish] appliesTo { principal: User, resource: Doc };
            action write appliesTo { principal: User, resource: Doc };
        "#;
        let p = r#"permit(principal, action in Action::"readish", resource);"#;
        let b =
            PolicyBundle::from_sources(&sources(&[("p.cedar", p)], Some(schema), None)).unwrap();
        let allow = b.decide(req(r#"User::"u""#, r#"Action::"read""#, r#"Doc::"d""#));
        assert_eq!(allow.effect, Effect::Allow, "{allow:?}");
        let deny = b.decide(req(r#"User::"u""#, r#"Action::"write""#, r#"Doc::"d""#));
        assert_eq!(deny.effect, Effect::Deny);
    }

    const HOLDS: &str = r#"
        @id("anyone-reads") @reason("granted")
        permit(principal, action == Action::"read", resource);
        @id("anyone-deletes")
        permit(principal, action == Action::"delete", resource);
        @id("delete-needs-sign-off") @approval("deletes data") @reason("destructive")
        forbid(principal, action == Action::"delete", resource);
        @id("prod-needs-sign-off") @approval("production change")
        forbid(principal, action, resource) when { resource in Env::"prod" };
        @id("never-keys") @reason("secret")
        forbid(principal, action, resource == Doc::"keys");
        @id("unused-tag") @reason("drift")
        forbid(principal, action == Action::"fly", resource);
    "#;

    const HOLD_ENTITIES: &str = r#"[
        {"uid": {"type": "Env", "id": "prod"}, "attrs": {}, "parents": []},
        {"uid": {"type": "Doc", "id": "live"}, "attrs": {}, "parents": [{"type": "Env", "id": "prod"}]},
        {"uid": {"type": "Doc", "id": "keys"}, "attrs": {}, "parents": [{"type": "Env", "id": "prod"}]}
    ]"#;

    fn holds() -> PolicyBundle {
        PolicyBundle::from_sources(&sources(&[("h.cedar", HOLDS)], None, Some(HOLD_ENTITIES)))
            .unwrap()
    }

    /// Both paths, which must agree.
    fn both(b: &PolicyBundle, r: DecisionRequest) -> Decision {
        let fast = b.decide(r.clone());
        assert_eq!(fast, b.decide_unindexed(r), "indexed and full differ");
        fast
    }

    #[test]
    fn only_approval_policies_in_the_way_of_a_permit_make_a_hold() {
        let d = both(
            &holds(),
            req(r#"User::"u""#, r#"Action::"delete""#, r#"Doc::"draft""#),
        );
        assert_eq!(d.effect, Effect::Deny, "a hold must fail closed");
        assert!(d.needs_approval(), "{d:?}");
        assert_eq!(
            d.reason,
            DecisionReason::ApprovalRequired(vec!["deletes data".into()])
        );
        assert_eq!(d.policies, ["h.cedar#delete-needs-sign-off"]);
        assert_eq!(d.tags, ["destructive"]);
        assert_eq!(
            d.explain(),
            "held for approval: deletes data (h.cedar#delete-needs-sign-off)"
        );
        // Two approval policies: both texts, sorted, and both policies.
        let d = both(
            &holds(),
            req(r#"User::"u""#, r#"Action::"delete""#, r#"Doc::"live""#),
        );
        assert_eq!(
            d.reason,
            DecisionReason::ApprovalRequired(vec![
                "deletes data".into(),
                "production change".into()
            ])
        );
        assert_eq!(
            d.policies,
            [
                "h.cedar#delete-needs-sign-off",
                "h.cedar#prod-needs-sign-off"
            ]
        );
    }

    #[test]
    fn an_approval_policy_next_to_another_forbid_is_a_plain_forbid() {
        // Doc::"keys" is in prod (approval) and forbidden outright: no hold,
        // since no sign-off could lift the other forbid.
        let d = both(
            &holds(),
            req(r#"User::"u""#, r#"Action::"read""#, r#"Doc::"keys""#),
        );
        assert_eq!(d.reason, DecisionReason::Forbidden, "{d:?}");
        assert!(!d.needs_approval());
        assert_eq!(
            d.policies,
            ["h.cedar#never-keys", "h.cedar#prod-needs-sign-off"]
        );
        assert_eq!(d.tags, ["secret"]);
    }

    #[test]
    fn an_approval_policy_without_any_permit_is_a_default_deny() {
        // Nothing permits `write`; the prod approval policy matches, but a
        // sign-off would not make the call pass, so it is not a hold.
        let d = both(
            &holds(),
            req(r#"User::"u""#, r#"Action::"write""#, r#"Doc::"live""#),
        );
        assert_eq!(d.effect, Effect::Deny);
        assert_eq!(d.reason, DecisionReason::NoPermit, "{d:?}");
        assert!(d.policies.is_empty());
        assert!(d.tags.is_empty());
    }

    #[test]
    fn tags_come_only_from_the_determining_policies() {
        let b = holds();
        let allowed = both(&b, req(r#"User::"u""#, r#"Action::"read""#, r#"Doc::"d""#));
        assert_eq!(allowed.effect, Effect::Allow);
        // The permit's word, not those of forbids that did not match.
        assert_eq!(allowed.tags, ["granted"]);
        assert!(allowed.has_tag("granted") && !allowed.has_tag("drift"));
        // A forbid overrides the tagged permit: only the forbid's word remains.
        let forbidden = both(
            &b,
            req(r#"User::"u""#, r#"Action::"read""#, r#"Doc::"keys""#),
        );
        assert!(!forbidden.has_tag("granted"));
        let untagged = both(
            &b,
            req(r#"User::"u""#, r#"Action::"delete""#, r#"Doc::"d""#),
        );
        assert!(untagged.needs_approval());
        let none = both(&b, req(r#"User::"u""#, r#"Action::"fly""#, r#"Doc::"d""#));
        assert_eq!(none.tags, ["drift"]);
        assert_eq!(none.reason, DecisionReason::Forbidden);
    }

    #[test]
    fn a_bundle_without_approval_policies_never_holds() {
        let d = docs().decide(req(
            r#"User::"alice""#,
            r#"Action::"read""#,
            r#"Doc::"keys""#,
        ));
        assert_eq!(d.reason, DecisionReason::Forbidden);
        assert!(d.tags.is_empty());
    }

    #[test]
    fn approval_on_a_permit_and_malformed_annotations_are_refused() {
        let load = |text: &str| {
            PolicyBundle::from_sources(&sources(&[("a.cedar", text)], None, None)).unwrap_err()
        };
        let err = load(r#"@id("p") @approval("why") permit(principal, action, resource);"#);
        assert!(
            matches!(&err, PolicyError::ApprovalOnPermit { policy } if policy == "a.cedar#p"),
            "{err}"
        );
        assert!(err.to_string().contains("forbid"), "{err}");
        for empty in [r#"@approval"#, r#"@approval("")"#, r#"@approval("  ")"#] {
            let err = load(&format!("{empty} forbid(principal, action, resource);"));
            assert!(matches!(err, PolicyError::EmptyApproval { .. }), "{err}");
        }
        let too_long = format!("@reason(\"{}\")", "a".repeat(MAX_REASON + 1));
        for bad in [
            r#"@reason("Drift")"#,
            r#"@reason("two words")"#,
            r#"@reason("1st")"#,
            r#"@reason("")"#,
            r#"@reason("drift-deny")"#,
            &too_long,
        ] {
            let err = load(&format!("{bad} forbid(principal, action, resource);"));
            assert!(matches!(err, PolicyError::BadReason { .. }), "{bad}: {err}");
        }
        let fine = format!(
            "@reason(\"{}\") forbid(principal, action, resource);",
            "a".repeat(MAX_REASON)
        );
        PolicyBundle::from_sources(&sources(&[("a.cedar", &fine)], None, None)).unwrap();
    }

    #[test]
    fn a_hold_follows_the_request_attributes_on_both_paths() {
        // The permit depends on a request-supplied attribute: without it the
        // approval forbid alone stands and nothing permits, so no hold.
        let policies = r#"
            @id("trusted-delete")
            permit(principal, action == Action::"delete", resource) when { principal.trusted };
            @id("sign-off") @approval("deletes data")
            forbid(principal, action == Action::"delete", resource);
        "#;
        let b = PolicyBundle::from_sources(&sources(&[("p.cedar", policies)], None, None)).unwrap();
        let mut r = req(r#"User::"u""#, r#"Action::"delete""#, r#"Doc::"d""#);
        r.principal_attrs = vec![("trusted".into(), RestrictedExpression::new_bool(true))];
        assert!(both(&b, r.clone()).needs_approval());
        r.principal_attrs = vec![("trusted".into(), RestrictedExpression::new_bool(false))];
        let d = both(&b, r);
        assert_eq!(d.reason, DecisionReason::NoPermit, "{d:?}");
    }
}
