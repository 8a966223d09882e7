//! One validated load of a policy directory, and the decision it makes.

use std::collections::HashSet;
use std::str::FromStr;

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

/// A policy directory, parsed, validated and indexed. Immutable: a reload builds
/// a new bundle.
#[derive(Debug)]
pub struct PolicyBundle {
    policies: PolicySet,
    schema: Option<Schema>,
    entities: EntityStore,
    index: PolicyIndex,
    warnings: Vec<String>,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
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
        let entities = EntityStore::new(entities, &policies);
        Ok(PolicyBundle {
            policies,
            schema,
            entities,
            index,
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
        let candidates = self.index.candidates(
            &request.principal,
            &request.action,
            &request.resource,
            self.entities.stored(),
        );
        self.evaluate(request, &candidates, true)
    }

    /// Decides `request` over the whole policy set and the whole entity store,
    /// as plain Cedar would. The reference that [`PolicyBundle::decide`] must
    /// always agree with; slower.
    pub fn decide_unindexed(&self, request: DecisionRequest) -> Decision {
        self.evaluate(request, &self.policies, false)
    }

    fn evaluate(&self, request: DecisionRequest, set: &PolicySet, sliced: bool) -> Decision {
        let schema = self.schema.as_ref();
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
        // Without request-supplied entities the stored set is used as it is: no
        // copy, no closure to recompute. Otherwise only the reachable slice is
        // rebuilt (or, for the reference path, the whole store).
        let built;
        let entities = if overrides.is_empty() {
            self.entities.stored()
        } else {
            let result = if sliced {
                self.entities.slice(
                    [&request.principal, &request.action, &request.resource],
                    overrides,
                )
            } else {
                self.entities.full_with(overrides)
            };
            match result {
                Ok(e) => {
                    built = e;
                    &built
                }
                Err(why) => return Decision::invalid(why),
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
        let response = Authorizer::new().is_authorized(&cedar_request, set, entities);
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
            cedar_policy::Decision::Deny => (Effect::Deny, DecisionReason::Forbidden),
        };
        Decision {
            effect,
            policies,
            errors,
            reason,
        }
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
}
