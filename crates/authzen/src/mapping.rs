//! How an AuthZEN request becomes a Cedar request.
//!
//! | AuthZEN                         | Cedar                                         |
//! |---------------------------------|-----------------------------------------------|
//! | `subject.type`, `subject.id`    | principal `<type>::"<id>"`                    |
//! | `subject.properties`            | attributes of the principal entity            |
//! | `action.name`                   | action `Action::"<name>"`                     |
//! | `action.properties`             | `context.action` (a record)                   |
//! | `resource.type`, `resource.id`  | resource `<type>::"<id>"`                     |
//! | `resource.properties`           | attributes of the resource entity             |
//! | `context`                       | the context record                            |
//!
//! JSON strings, booleans, integers, arrays and objects become Cedar strings,
//! booleans, longs, sets and records. Cedar has no null and no floating point,
//! so those are refused with the path of the offending value. An object of the
//! single key `__entity` holding `{"type": T, "id": I}` is an entity reference
//! `T::"I"`, as in Cedar's own JSON format. Properties are
//! merged under the attributes that `entities.json` holds for the same entity:
//! the PDP's own facts win over what the caller says.

use std::str::FromStr;

use mandate_policy::cedar_policy::{
    Context, EntityId, EntityTypeName, EntityUid, RestrictedExpression,
};
use mandate_policy::{DecisionRequest, JsonValueError, json_object_to_cedar, json_to_cedar};
use serde_json::{Map, Value};

use crate::wire::EvaluationRequest;

/// Why an AuthZEN request cannot be put to Cedar. Each variant names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MappingError {
    /// A `type` that is not a Cedar entity type name.
    #[error(
        "{field}: {value:?} is not a valid entity type (use letters, digits and '_', optionally namespaced with '::')"
    )]
    BadType {
        /// `subject.type` or `resource.type`.
        field: &'static str,
        /// The value sent.
        value: String,
    },
    /// An empty `id` or `name`.
    #[error("{field} must not be empty")]
    Empty {
        /// The field.
        field: &'static str,
    },
    /// A JSON value Cedar cannot represent.
    #[error("{path}: {what}")]
    Value {
        /// Where, as a JSON path (`resource.properties.tags[2]`).
        path: String,
        /// What was wrong.
        what: String,
    },
    /// `action.properties` was sent and `context` already has an `action` key.
    #[error("context.action is reserved for action.properties; rename the context field")]
    ReservedContextKey,
}

/// A Cedar request together with the readable names the audit log records.
#[derive(Debug, Clone)]
pub struct ParsedRequest {
    /// The request for the policy engine.
    pub request: DecisionRequest,
    /// The principal as Cedar prints it (`user::"alice"`).
    pub subject: String,
    /// The action as Cedar prints it.
    pub action: String,
    /// The resource as Cedar prints it.
    pub resource: String,
}

fn entity_uid(
    field_type: &'static str,
    field_id: &'static str,
    kind: &str,
    id: &str,
) -> Result<EntityUid, MappingError> {
    let type_name = EntityTypeName::from_str(kind).map_err(|_| MappingError::BadType {
        field: field_type,
        value: kind.to_owned(),
    })?;
    if id.is_empty() {
        return Err(MappingError::Empty { field: field_id });
    }
    Ok(EntityUid::from_type_name_and_id(
        type_name,
        EntityId::new(id),
    ))
}

impl From<JsonValueError> for MappingError {
    fn from(e: JsonValueError) -> MappingError {
        MappingError::Value {
            path: e.path,
            what: e.what,
        }
    }
}

fn to_value(value: &Value, path: &mut String) -> Result<RestrictedExpression, MappingError> {
    Ok(json_to_cedar(value, path)?)
}

fn to_pairs(
    map: &Map<String, Value>,
    path: &mut String,
) -> Result<Vec<(String, RestrictedExpression)>, MappingError> {
    Ok(json_object_to_cedar(map, path)?)
}

fn properties(
    map: Option<&Map<String, Value>>,
    prefix: &str,
) -> Result<Vec<(String, RestrictedExpression)>, MappingError> {
    match map {
        Some(m) => to_pairs(m, &mut prefix.to_owned()),
        None => Ok(Vec::new()),
    }
}

/// Maps an AuthZEN evaluation onto a Cedar request (see the module docs).
pub fn to_cedar(req: &EvaluationRequest) -> Result<ParsedRequest, MappingError> {
    let principal = entity_uid(
        "subject.type",
        "subject.id",
        &req.subject.kind,
        &req.subject.id,
    )?;
    let resource = entity_uid(
        "resource.type",
        "resource.id",
        &req.resource.kind,
        &req.resource.id,
    )?;
    if req.action.name.is_empty() {
        return Err(MappingError::Empty {
            field: "action.name",
        });
    }
    let action = EntityUid::from_type_name_and_id(
        EntityTypeName::from_str("Action").expect("Action is a valid type name"),
        EntityId::new(&req.action.name),
    );
    let mut context = match &req.context {
        Some(c) => to_pairs(c, &mut "context".to_owned())?,
        None => Vec::new(),
    };
    if let Some(props) = &req.action.properties {
        if context.iter().any(|(k, _)| k == "action") {
            return Err(MappingError::ReservedContextKey);
        }
        let record = to_value(
            &Value::Object(props.clone()),
            &mut "action.properties".to_owned(),
        )?;
        context.push(("action".to_owned(), record));
    }
    let context = Context::from_pairs(context).map_err(|e| MappingError::Value {
        path: "context".to_owned(),
        what: e.to_string(),
    })?;
    Ok(ParsedRequest {
        subject: principal.to_string(),
        action: action.to_string(),
        resource: resource.to_string(),
        request: DecisionRequest {
            principal,
            action,
            resource,
            context,
            principal_attrs: properties(req.subject.properties.as_ref(), "subject.properties")?,
            resource_attrs: properties(req.resource.properties.as_ref(), "resource.properties")?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<ParsedRequest, MappingError> {
        to_cedar(&serde_json::from_value(v).unwrap())
    }

    #[test]
    fn maps_subject_action_resource_to_cedar_uids() {
        let p = parse(serde_json::json!({
            "subject": {"type": "user", "id": "alice@example.com"},
            "action": {"name": "can_read"},
            "resource": {"type": "Acme::Doc", "id": "d\"1"}
        }))
        .unwrap();
        assert_eq!(p.subject, r#"user::"alice@example.com""#);
        assert_eq!(p.action, r#"Action::"can_read""#);
        assert_eq!(p.resource, r#"Acme::Doc::"d\"1""#);
    }

    #[test]
    fn refuses_floats_and_nulls_with_their_path() {
        let err = parse(serde_json::json!({
            "subject": {"type": "user", "id": "a", "properties": {"scores": [1, 2.5]}},
            "action": {"name": "x"},
            "resource": {"type": "doc", "id": "d"}
        }))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "subject.properties.scores[1]: 2.5 is not a 64-bit integer; Cedar has no floating point (send it as a string, e.g. for decimal())"
        );
        let err = parse(serde_json::json!({
            "subject": {"type": "user", "id": "a"},
            "action": {"name": "x"},
            "resource": {"type": "doc", "id": "d"},
            "context": {"ip": null}
        }))
        .unwrap_err();
        assert!(err.to_string().starts_with("context.ip: null"), "{err}");
    }

    #[test]
    fn an_entity_escape_is_an_entity_reference_and_a_bad_one_is_refused() {
        let with = |v: Value| {
            parse(serde_json::json!({
                "subject": {"type": "user", "id": "a"},
                "action": {"name": "x"},
                "resource": {"type": "doc", "id": "d"},
                "context": {"tools": [v]}
            }))
        };
        assert!(
            with(serde_json::json!({"__entity": {"type": "Tool", "id": "files.read"}})).is_ok()
        );
        let err = with(serde_json::json!({"__entity": {"type": "Tool"}})).unwrap_err();
        assert!(
            err.to_string().starts_with("context.tools[0]: __entity"),
            "{err}"
        );
        let err =
            with(serde_json::json!({"__entity": {"type": "no type", "id": "x"}})).unwrap_err();
        assert!(err.to_string().contains("not a valid entity type"), "{err}");
    }

    #[test]
    fn refuses_bad_types_and_empty_ids() {
        let base = |t: &str, id: &str| {
            parse(serde_json::json!({
                "subject": {"type": t, "id": id},
                "action": {"name": "x"},
                "resource": {"type": "doc", "id": "d"}
            }))
        };
        assert!(matches!(
            base("not a type", "a"),
            Err(MappingError::BadType {
                field: "subject.type",
                ..
            })
        ));
        assert!(matches!(base("", "a"), Err(MappingError::BadType { .. })));
        assert!(matches!(
            base("user", ""),
            Err(MappingError::Empty {
                field: "subject.id"
            })
        ));
    }

    #[test]
    fn action_properties_go_to_context_action_and_may_not_collide() {
        let ok = parse(serde_json::json!({
            "subject": {"type": "user", "id": "a"},
            "action": {"name": "x", "properties": {"method": "GET"}},
            "resource": {"type": "doc", "id": "d"}
        }));
        assert!(ok.is_ok());
        let clash = parse(serde_json::json!({
            "subject": {"type": "user", "id": "a"},
            "action": {"name": "x", "properties": {"method": "GET"}},
            "resource": {"type": "doc", "id": "d"},
            "context": {"action": 1}
        }));
        assert_eq!(clash.unwrap_err(), MappingError::ReservedContextKey);
    }
}
