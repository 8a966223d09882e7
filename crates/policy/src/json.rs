//! JSON as Cedar values, for the parts of a request Mandate itself writes or
//! lets callers write in Cedar's own terms (AuthZEN properties and context,
//! the task context of a task token).
//!
//! Strings, booleans, integers, arrays and objects become Cedar strings,
//! booleans, longs, sets and records. An object of the single key `__entity`
//! holding `{"type": T, "id": I}` is an entity reference `T::"I"`, as in
//! Cedar's own JSON format. Cedar has no null and no floating point: those
//! are refused, naming where they were.

use std::str::FromStr;

use cedar_policy::{EntityId, EntityTypeName, EntityUid, RestrictedExpression};
use serde_json::{Map, Value};

/// A JSON value Cedar cannot represent, and where it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {what}")]
pub struct JsonValueError {
    /// Where, as a JSON path (`resource.properties.tags[2]`).
    pub path: String,
    /// What was wrong.
    pub what: String,
}

/// Converts `value` into a Cedar value; `path` names it in errors.
pub fn json_to_cedar(
    value: &Value,
    path: &mut String,
) -> Result<RestrictedExpression, JsonValueError> {
    let bad = |path: &String, what: String| JsonValueError {
        path: path.clone(),
        what,
    };
    match value {
        Value::String(s) => Ok(RestrictedExpression::new_string(s.clone())),
        Value::Bool(b) => Ok(RestrictedExpression::new_bool(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Ok(RestrictedExpression::new_long(i)),
            None => Err(bad(
                path,
                format!(
                    "{n} is not a 64-bit integer; Cedar has no floating point (send it as a string, e.g. for decimal())"
                ),
            )),
        },
        Value::Null => Err(bad(
            path,
            "null is not a Cedar value; leave the field out instead".to_owned(),
        )),
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                out.push(json_to_cedar(item, path)?);
                path.truncate(len);
            }
            Ok(RestrictedExpression::new_set(out))
        }
        Value::Object(map) if map.len() == 1 && map.contains_key("__entity") => {
            let reference = &map["__entity"];
            let field = |name: &str| reference.get(name).and_then(Value::as_str);
            match (field("type"), field("id")) {
                (Some(kind), Some(id)) if !id.is_empty() => {
                    let type_name = EntityTypeName::from_str(kind)
                        .map_err(|_| bad(path, format!("{kind:?} is not a valid entity type")))?;
                    Ok(RestrictedExpression::new_entity_uid(
                        EntityUid::from_type_name_and_id(type_name, EntityId::new(id)),
                    ))
                }
                _ => Err(bad(
                    path,
                    "__entity must be {\"type\": \"...\", \"id\": \"...\"}".to_owned(),
                )),
            }
        }
        Value::Object(map) => {
            let pairs = json_object_to_cedar(map, path)?;
            // Keys of a JSON object are unique, so this cannot fail.
            RestrictedExpression::new_record(pairs).map_err(|e| bad(path, e.to_string()))
        }
    }
}

/// Converts each member of `map`, named `<path>.<key>` in errors.
pub fn json_object_to_cedar(
    map: &Map<String, Value>,
    path: &mut String,
) -> Result<Vec<(String, RestrictedExpression)>, JsonValueError> {
    let mut out = Vec::with_capacity(map.len());
    for (k, v) in map {
        let len = path.len();
        path.push('.');
        path.push_str(k);
        out.push((k.clone(), json_to_cedar(v, path)?));
        path.truncate(len);
    }
    Ok(out)
}
