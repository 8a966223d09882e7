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
//!
//! Within a key, policies whose scope names an entity (`principal == User::"a"`,
//! `resource in Folder::"f"`) are then tested against the request's principal
//! and resource and their stored ancestors, and one policy set is cached per
//! pattern of which tests passed (a bounded number per key).

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

/// A scope condition on a named entity, checked per request.
#[derive(Debug, Clone)]
enum LiteralTest {
    /// `== uid`
    Eq(EntityUid),
    /// `in uid`: the entity is `uid` or has it among its ancestors.
    In(EntityUid),
}

impl LiteralTest {
    fn admits(&self, uid: &EntityUid, ancestors: &[&EntityUid]) -> bool {
        match self {
            LiteralTest::Eq(want) => uid == want,
            LiteralTest::In(group) => uid == group || ancestors.contains(&group),
        }
    }
}

fn principal_test(c: &PrincipalConstraint) -> Option<LiteralTest> {
    match c {
        PrincipalConstraint::Eq(uid) => Some(LiteralTest::Eq(uid.clone())),
        PrincipalConstraint::In(g) | PrincipalConstraint::IsIn(_, g) => {
            Some(LiteralTest::In(g.clone()))
        }
        PrincipalConstraint::Any | PrincipalConstraint::Is(_) => None,
    }
}

fn resource_test(c: &ResourceConstraint) -> Option<LiteralTest> {
    match c {
        ResourceConstraint::Eq(uid) => Some(LiteralTest::Eq(uid.clone())),
        ResourceConstraint::In(g) | ResourceConstraint::IsIn(_, g) => {
            Some(LiteralTest::In(g.clone()))
        }
        ResourceConstraint::Any | ResourceConstraint::Is(_) => None,
    }
}

#[derive(Debug)]
struct IndexedPolicy {
    policy: Policy,
    principal: TypeScope,
    action: ActionConstraint,
    resource: TypeScope,
    principal_test: Option<LiteralTest>,
    resource_test: Option<LiteralTest>,
}

type Key = (
    Option<EntityTypeName>,
    Option<EntityUid>,
    Option<EntityTypeName>,
);

/// Most policy sets cached per key; past it, sets are built per request.
const MAX_PATTERNS_PER_KEY: usize = 1024;

/// The policies of one key: those that always apply, those that need a literal
/// test, and the sets built so far per test outcome.
#[derive(Debug)]
struct Bucket {
    fixed: Vec<usize>,
    tested: Vec<usize>,
    sets: RwLock<HashMap<Box<[u64]>, Arc<PolicySet>>>,
}

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
    cache: RwLock<HashMap<Key, Arc<Bucket>>>,
}

impl PolicyIndex {
    pub(crate) fn new(set: &PolicySet, entities: &Entities) -> PolicyIndex {
        let mut principal_types = HashSet::new();
        let mut resource_types = HashSet::new();
        let mut actions = HashSet::new();
        let mut policies = Vec::new();
        for policy in set.policies() {
            let principal_constraint = policy.principal_constraint();
            let resource_constraint = policy.resource_constraint();
            let principal_test = principal_test(&principal_constraint);
            let resource_test = resource_test(&resource_constraint);
            let principal = TypeScope::from_principal(principal_constraint);
            let resource = TypeScope::from_resource(resource_constraint);
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
                principal_test,
                resource_test,
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

    /// The policies whose scope matches this request. `entities` is the stored
    /// entity set, whose ancestor sets decide `in` tests.
    pub(crate) fn candidates(
        &self,
        principal: &EntityUid,
        action: &EntityUid,
        resource: &EntityUid,
        entities: &Entities,
    ) -> Arc<PolicySet> {
        let bucket = self.bucket(principal, action, resource);
        let mut mask = vec![0u64; bucket.tested.len().div_ceil(64)].into_boxed_slice();
        if !bucket.tested.is_empty() {
            let principal_ancestors: Vec<&EntityUid> = entities
                .ancestors(principal)
                .map(Iterator::collect)
                .unwrap_or_default();
            let resource_ancestors: Vec<&EntityUid> = entities
                .ancestors(resource)
                .map(Iterator::collect)
                .unwrap_or_default();
            for (bit, &i) in bucket.tested.iter().enumerate() {
                let p = &self.policies[i];
                let admitted = p
                    .principal_test
                    .as_ref()
                    .is_none_or(|t| t.admits(principal, &principal_ancestors))
                    && p.resource_test
                        .as_ref()
                        .is_none_or(|t| t.admits(resource, &resource_ancestors));
                if admitted {
                    mask[bit / 64] |= 1 << (bit % 64);
                }
            }
        }
        if let Some(hit) = bucket
            .sets
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&mask)
        {
            return Arc::clone(hit);
        }
        let chosen = bucket.fixed.iter().copied().chain(
            bucket
                .tested
                .iter()
                .enumerate()
                .filter(|(bit, _)| mask[bit / 64] & (1 << (bit % 64)) != 0)
                .map(|(_, &i)| i),
        );
        // Ids are unique in the full set, so a subset cannot fail to build.
        let set = Arc::new(
            PolicySet::from_policies(chosen.map(|i| self.policies[i].policy.clone()))
                .expect("a subset of a valid policy set is valid"),
        );
        let mut cache = bucket
            .sets
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if cache.len() < MAX_PATTERNS_PER_KEY {
            cache.insert(mask, Arc::clone(&set));
        }
        set
    }

    fn bucket(
        &self,
        principal: &EntityUid,
        action: &EntityUid,
        resource: &EntityUid,
    ) -> Arc<Bucket> {
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
        let bucket = Arc::new(self.build(&key));
        self.cache
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(key)
            .or_insert(bucket)
            .clone()
    }

    fn build(&self, (principal, action, resource): &Key) -> Bucket {
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
        let mut fixed = Vec::new();
        let mut tested = Vec::new();
        for (i, p) in self.policies.iter().enumerate() {
            if !(p.principal.admits(principal.as_ref())
                && p.resource.admits(resource.as_ref())
                && action_admits(&p.action))
            {
                continue;
            }
            if p.principal_test.is_some() || p.resource_test.is_some() {
                tested.push(i);
            } else {
                fixed.push(i);
            }
        }
        Bucket {
            fixed,
            tested,
            sets: RwLock::new(HashMap::new()),
        }
    }
}
