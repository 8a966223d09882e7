//! Choosing the policies that can apply to a request before Cedar sees it.
//!
//! Cedar evaluates every policy in a set; most of them fail on their scope
//! (`principal`, `action`, `resource`) at once, but still cost time. A policy
//! whose scope cannot match never contributes to a decision nor raises an error
//! (Cedar short-circuits the scope before the conditions), so dropping it leaves
//! the answer unchanged. The index keys a request by principal type, action and
//! resource type, and caches one small policy set per key. Keys are folded onto
//! the types and actions the policies mention, so callers cannot grow the cache
//! without bound by inventing types.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use cedar_policy::{
    ActionConstraint, Entities, EntityTypeName, EntityUid, Policy, PolicySet, PrincipalConstraint,
    ResourceConstraint,
};

/// What a policy's principal or resource scope needs of the request's entity type.
#[derive(Debug, Clone)]
enum TypeScope {
    /// Any type (unconstrained, or `in` a group, which any type may be in).
    Any,
    /// Exactly this type (`==`, `is`, `is ... in`).
    Only(EntityTypeName),
}

impl TypeScope {
    fn from_principal(c: PrincipalConstraint) -> TypeScope {
        match c {
            PrincipalConstraint::Any | PrincipalConstraint::In(_) => TypeScope::Any,
            PrincipalConstraint::Eq(uid) => TypeScope::Only(uid.type_name().clone()),
            PrincipalConstraint::Is(t) | PrincipalConstraint::IsIn(t, _) => TypeScope::Only(t),
        }
    }

    fn from_resource(c: ResourceConstraint) -> TypeScope {
        match c {
            ResourceConstraint::Any | ResourceConstraint::In(_) => TypeScope::Any,
            ResourceConstraint::Eq(uid) => TypeScope::Only(uid.type_name().clone()),
            ResourceConstraint::Is(t) | ResourceConstraint::IsIn(t, _) => TypeScope::Only(t),
        }
    }

    fn admits(&self, t: Option<&EntityTypeName>) -> bool {
        match self {
            TypeScope::Any => true,
            TypeScope::Only(want) => t == Some(want),
        }
    }
}

#[derive(Debug)]
struct IndexedPolicy {
    policy: Policy,
    principal: TypeScope,
    action: ActionConstraint,
    resource: TypeScope,
}

type Key = (
    Option<EntityTypeName>,
    Option<EntityUid>,
    Option<EntityTypeName>,
);

/// Policies indexed by the principal type, action and resource type they can match.
#[derive(Debug)]
pub(crate) struct PolicyIndex {
    policies: Vec<IndexedPolicy>,
    principal_types: HashSet<EntityTypeName>,
    resource_types: HashSet<EntityTypeName>,
    /// Every action a policy names, plus every action entity in the store.
    actions: HashSet<EntityUid>,
    /// Ancestors of each stored action (for `action in [...]`).
    action_ancestors: HashMap<EntityUid, HashSet<EntityUid>>,
    cache: RwLock<HashMap<Key, Arc<PolicySet>>>,
}

impl PolicyIndex {
    pub(crate) fn new(set: &PolicySet, entities: &Entities) -> PolicyIndex {
        let mut principal_types = HashSet::new();
        let mut resource_types = HashSet::new();
        let mut actions = HashSet::new();
        let mut policies = Vec::new();
        for policy in set.policies() {
            let principal = TypeScope::from_principal(policy.principal_constraint());
            let resource = TypeScope::from_resource(policy.resource_constraint());
            let action = policy.action_constraint();
            if let TypeScope::Only(t) = &principal {
                principal_types.insert(t.clone());
            }
            if let TypeScope::Only(t) = &resource {
                resource_types.insert(t.clone());
            }
            match &action {
                ActionConstraint::Any => {}
                ActionConstraint::Eq(a) => {
                    actions.insert(a.clone());
                }
                ActionConstraint::In(list) => actions.extend(list.iter().cloned()),
            }
            policies.push(IndexedPolicy {
                policy: policy.clone(),
                principal,
                action,
                resource,
            });
        }
        let mut action_ancestors = HashMap::new();
        for entity in entities.iter() {
            let uid = entity.uid();
            if uid.type_name().basename() != "Action" {
                continue;
            }
            let ancestors: HashSet<EntityUid> = entities
                .ancestors(&uid)
                .map(|it| it.cloned().collect())
                .unwrap_or_default();
            actions.insert(uid.clone());
            action_ancestors.insert(uid, ancestors);
        }
        PolicyIndex {
            policies,
            principal_types,
            resource_types,
            actions,
            action_ancestors,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// The policies whose scope can match a request of this shape.
    pub(crate) fn candidates(
        &self,
        principal: &EntityUid,
        action: &EntityUid,
        resource: &EntityUid,
    ) -> Arc<PolicySet> {
        let key: Key = (
            Some(principal.type_name())
                .filter(|t| self.principal_types.contains(*t))
                .cloned(),
            Some(action).filter(|a| self.actions.contains(*a)).cloned(),
            Some(resource.type_name())
                .filter(|t| self.resource_types.contains(*t))
                .cloned(),
        );
        if let Some(hit) = self
            .cache
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&key)
        {
            return Arc::clone(hit);
        }
        let set = Arc::new(self.build(&key));
        self.cache
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(key)
            .or_insert(set)
            .clone()
    }

    fn build(&self, (principal, action, resource): &Key) -> PolicySet {
        let no_ancestors = HashSet::new();
        let ancestors = action
            .as_ref()
            .and_then(|a| self.action_ancestors.get(a))
            .unwrap_or(&no_ancestors);
        let action_admits = |c: &ActionConstraint| match (c, action) {
            (ActionConstraint::Any, _) => true,
            // An action no policy names and the store does not hold can only
            // match an unconstrained action scope.
            (_, None) => false,
            (ActionConstraint::Eq(want), Some(a)) => want == a,
            (ActionConstraint::In(groups), Some(a)) => {
                groups.iter().any(|g| g == a || ancestors.contains(g))
            }
        };
        let chosen = self.policies.iter().filter(|p| {
            p.principal.admits(principal.as_ref())
                && p.resource.admits(resource.as_ref())
                && action_admits(&p.action)
        });
        // Ids are unique in the full set, so adding a subset cannot fail.
        PolicySet::from_policies(chosen.map(|p| p.policy.clone()))
            .expect("a subset of a valid policy set is valid")
    }
}
