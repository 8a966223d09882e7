//! The entities a decision may look at, cut down to what one request can reach.
//!
//! Handing Cedar the whole entity store costs time in proportion to its size
//! (the store is cloned and its transitive closure recomputed whenever request
//! entities are added). A request can only reach entities through the
//! principal, action and resource, the entity references in their attributes
//! (followed transitively), and entity literals written in policy conditions;
//! `in` checks read only the ancestor set that each reached entity already
//! carries. So the slice holds exactly those entities, and Cedar's answer on it
//! equals its answer on the whole store.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use cedar_policy::{Entities, Entity, EntityUid, PolicySet, RestrictedExpression, Schema};

/// The stored entities plus the reference graph used to slice them.
#[derive(Debug)]
pub(crate) struct EntityStore {
    entities: Entities,
    /// Entity references found in each stored entity's attributes and tags.
    refs: HashMap<EntityUid, Vec<EntityUid>>,
    /// Entities named in policy conditions, with everything they reach.
    static_slice: Vec<EntityUid>,
    kept: KeptSlices,
}

/// Request attributes, as a [`crate::DecisionRequest`] carries them.
type Attrs = Vec<(String, RestrictedExpression)>;

/// Most slices kept; when full, all are dropped.
const KEPT_SLICES: usize = 4096;

/// Slices built for requests with attributes, by the request's principal,
/// action and resource, each with the attributes it was built from. A slice
/// depends on nothing else but the store, which never changes (a reload
/// builds a new one), so a later request with equal roots and attributes (the
/// same agent calling the same tool, say) is decided on the same entities
/// without merging, validating and closing them again.
#[derive(Debug, Default)]
struct KeptSlices(Mutex<HashMap<[EntityUid; 3], KeptSlice>>);

#[derive(Debug)]
struct KeptSlice {
    principal_attrs: Attrs,
    resource_attrs: Attrs,
    entities: Arc<Entities>,
}

impl KeptSlices {
    fn lock(&self) -> MutexGuard<'_, HashMap<[EntityUid; 3], KeptSlice>> {
        // Every update leaves the map consistent, so a poisoned lock is safe.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Collects every `{"__entity": {"type": .., "id": ..}}` below `value`.
fn collect_entity_refs(value: &serde_json::Value, out: &mut Vec<EntityUid>) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Object(e)) = map.get("__entity")
                && let (Some(t), Some(id)) = (e.get("type"), e.get("id"))
                && let Ok(uid) = EntityUid::from_json(serde_json::json!({"type": t, "id": id}))
            {
                out.push(uid);
            }
            for v in map.values() {
                collect_entity_refs(v, out);
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                collect_entity_refs(v, out);
            }
        }
        _ => {}
    }
}

impl EntityStore {
    pub(crate) fn new(entities: Entities, policies: &PolicySet) -> EntityStore {
        let mut refs = HashMap::new();
        for entity in entities.iter() {
            let mut found = Vec::new();
            if let Ok(json) = entity.to_json_value() {
                if let Some(attrs) = json.get("attrs") {
                    collect_entity_refs(attrs, &mut found);
                }
                if let Some(tags) = json.get("tags") {
                    collect_entity_refs(tags, &mut found);
                }
            }
            if !found.is_empty() {
                refs.insert(entity.uid(), found);
            }
        }
        let mut literals = Vec::new();
        for policy in policies.policies() {
            // Scope literals (`principal in Group::"x"`) are compared by identity
            // only; condition literals may have their attributes read.
            if let Ok(json) = policy.to_json()
                && let Some(conditions) = json.get("conditions")
            {
                collect_entity_refs(conditions, &mut literals);
            }
        }
        let mut store = EntityStore {
            entities,
            refs,
            static_slice: Vec::new(),
            kept: KeptSlices::default(),
        };
        store.static_slice = store.reach(literals, &HashSet::new());
        store
    }

    /// The whole stored set.
    pub(crate) fn stored(&self) -> &Entities {
        &self.entities
    }

    pub(crate) fn get(&self, uid: &EntityUid) -> Option<&Entity> {
        self.entities.get(uid)
    }

    /// `roots` and every stored entity they reach through attribute references,
    /// skipping those in `skip`.
    fn reach(&self, roots: Vec<EntityUid>, skip: &HashSet<EntityUid>) -> Vec<EntityUid> {
        let mut seen: HashSet<EntityUid> = HashSet::new();
        let mut order = Vec::new();
        let mut stack = roots;
        while let Some(uid) = stack.pop() {
            if skip.contains(&uid) || !seen.insert(uid.clone()) {
                continue;
            }
            if let Some(next) = self.refs.get(&uid) {
                stack.extend(next.iter().cloned());
            }
            order.push(uid);
        }
        order
    }

    /// The entities a request over `principal`, `action` and `resource` can
    /// reach, with `overrides` (entities built from the request) in place of
    /// stored ones of the same UID.
    pub(crate) fn slice(
        &self,
        roots: [&EntityUid; 3],
        overrides: Vec<Entity>,
    ) -> Result<Entities, String> {
        let override_ids: HashSet<EntityUid> = overrides.iter().map(Entity::uid).collect();
        let mut roots_vec: Vec<EntityUid> = roots.iter().map(|u| (*u).clone()).collect();
        // Entities that request attributes refer to are reached too.
        for e in &overrides {
            if let Ok(json) = e.to_json_value()
                && let Some(attrs) = json.get("attrs")
            {
                collect_entity_refs(attrs, &mut roots_vec);
            }
        }
        let mut wanted = self.reach(roots_vec, &HashSet::new());
        for uid in &self.static_slice {
            if !wanted.contains(uid) {
                wanted.push(uid.clone());
            }
        }
        let mut chosen: Vec<Entity> = overrides;
        for uid in wanted {
            if override_ids.contains(&uid) {
                continue;
            }
            if let Some(e) = self.entities.get(&uid) {
                chosen.push(e.clone());
            }
        }
        Entities::from_entities(chosen, None).map_err(|e| e.to_string())
    }

    /// The slice [`EntityStore::keep_slice`] kept for these roots and these
    /// request attributes (equal, in the same order), if any.
    pub(crate) fn kept_slice(
        &self,
        roots: [&EntityUid; 3],
        principal_attrs: &[(String, RestrictedExpression)],
        resource_attrs: &[(String, RestrictedExpression)],
    ) -> Option<Arc<Entities>> {
        if principal_attrs.is_empty() && resource_attrs.is_empty() {
            return None;
        }
        let key = roots.map(EntityUid::clone);
        let kept = self.kept.lock();
        let slice = kept.get(&key)?;
        (slice.principal_attrs == principal_attrs && slice.resource_attrs == resource_attrs)
            .then(|| Arc::clone(&slice.entities))
    }

    /// Keeps `entities`, the slice built for `roots` with these request
    /// attributes, in place of any other kept for the same roots.
    pub(crate) fn keep_slice(
        &self,
        roots: [&EntityUid; 3],
        principal_attrs: Attrs,
        resource_attrs: Attrs,
        entities: Arc<Entities>,
    ) {
        let mut kept = self.kept.lock();
        if kept.len() >= KEPT_SLICES {
            kept.clear();
        }
        kept.insert(
            roots.map(EntityUid::clone),
            KeptSlice {
                principal_attrs,
                resource_attrs,
                entities,
            },
        );
    }

    /// The whole store with `overrides` upserted: what Cedar would see without
    /// slicing. Slow on a large store; used as the reference in tests.
    pub(crate) fn full_with(&self, overrides: Vec<Entity>) -> Result<Entities, String> {
        self.entities
            .clone()
            .upsert_entities(overrides, None)
            .map_err(|e| e.to_string())
    }
}

/// Builds the entity for `uid` from request attributes, merged over the stored
/// entity of that UID if any: stored attributes and parents win, request
/// attributes fill in the rest.
pub(crate) fn merge_request_entity(
    store: &EntityStore,
    uid: &EntityUid,
    request_attrs: Vec<(String, RestrictedExpression)>,
    schema: Option<&Schema>,
) -> Result<Entity, String> {
    let (attrs, parents) = match store.get(uid) {
        Some(stored) => {
            if stored.tags().next().is_some() {
                return Err(format!(
                    "{uid} has tags in entities.json and cannot also take properties from the request"
                ));
            }
            let (_, mut attrs, parents) = stored.clone().into_inner();
            for (k, v) in request_attrs {
                attrs.entry(k).or_insert(v);
            }
            (attrs, parents)
        }
        None => (request_attrs.into_iter().collect(), HashSet::new()),
    };
    let entity = Entity::new(uid.clone(), attrs, parents).map_err(|e| format!("{uid}: {e}"))?;
    if let Some(schema) = schema {
        // Validate the one entity on its own: the stored ones were checked at load.
        Entities::from_entities([entity.clone()], Some(schema))
            .map_err(|e| format!("{uid} does not fit the schema: {e}"))?;
    }
    Ok(entity)
}
