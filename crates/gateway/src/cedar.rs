//! The Cedar requests the gateway asks, one per gated method.
//!
//! | method | action | resource | context |
//! |---|---|---|---|
//! | `tools/call` | `Action::"call"` | `Tool::"<upstream>.<tool>"` | `task`, `tool`, `args`, `arguments` |
//! | `resources/read` | `Action::"read_resource"` | `Resource::"<upstream>:<uri>"` | `task`, `upstream`, `uri` |
//! | `prompts/get` | `Action::"get_prompt"` | `Prompt::"<upstream>.<name>"` | `task`, `upstream`, `name`, `args`, `arguments` |
//! | any other gated method | `Action::"mcp_method"` | `McpMethod::"<upstream>:<method>"` | `task`, `upstream`, `method` |
//!
//! The principal is always `Agent::"<SPIFFE ID>"` with its registry attributes.
//! Upstream names are letters, digits, `-` and `_` only, so the first `.` or
//! `:` of an id always ends the upstream: a tool called `files.read` on
//! upstream `mail` is `Tool::"mail.files.read"`, never `Tool::"files.read"`.
//!
//! **Arguments** are what the agent sent, so they are converted without the
//! entity escape: an object `{"__entity": {...}}` stays a record and can never
//! name an entity. Strings, booleans, integers, arrays and objects become
//! Cedar strings, booleans, longs, sets and records. Cedar has no floating
//! point, so numbers that are not 64-bit integers become their decimal text
//! (`2.5`, `18446744073709551615`; beyond 64 bits, the text of the nearest
//! double, `1e+40`). Cedar has no null, so `null` members and elements are
//! dropped (`has` is false for them). Arrays become sets: order and repeats
//! are lost. At most [`MAX_ARGUMENT_DEPTH`] levels and [`MAX_ARGUMENT_VALUES`]
//! values are accepted.
//!
//! They appear twice. `context.args` is a `Set<Argument>` of `{path, value}`
//! records, one per scalar: `path` joins object keys with `.` and marks array
//! elements with `[]` (`to`, `options.dry_run`, `recipients[]`), a key's own
//! `\`, `.` and `[` escaped with `\`; `value` is the scalar as text. Its type is
//! fixed, so it validates under a schema:
//! `context.args.contains({path: "mode", value: "dry_run"})`.
//! `context.arguments` is the record itself, for deployments without a schema
//! (`context.arguments.mode == "dry_run"`). A Cedar schema cannot declare a
//! record whose attributes are not known in advance (`additionalAttributes`
//! needs Cedar's experimental `partial-validate` feature, which Mandate does
//! not enable), and a validated request may not carry undeclared attributes,
//! so with [`PolicySchema::Present`] `arguments` is left out.

use std::str::FromStr;

use mandate_policy::DecisionRequest;
use mandate_policy::cedar_policy::{
    Context, EntityId, EntityTypeName, EntityUid, RestrictedExpression,
};
use serde_json::Value;

use crate::catalog::CatalogEntry;

/// Deepest nesting of arguments accepted (the arguments object is level 1).
pub const MAX_ARGUMENT_DEPTH: usize = 32;
/// Most values (scalars and containers) in one call's arguments.
pub const MAX_ARGUMENT_VALUES: usize = 10_000;
/// Longest `path` of one entry of `context.args`, in bytes.
pub const MAX_ARGUMENT_PATH: usize = 1024;

/// Why a Cedar request cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// An upstream name with characters other than letters, digits, `-`, `_`.
    #[error(
        "upstream name {upstream:?} must be non-empty and use only ASCII letters, digits, '-' and '_'"
    )]
    BadUpstream {
        /// The name.
        upstream: String,
    },
    /// An empty tool name, URI, prompt name or method.
    #[error("the {what} must not be empty")]
    EmptyName {
        /// `tool`, `uri`, `prompt` or `method`.
        what: &'static str,
    },
    /// Arguments nested too deeply.
    #[error("arguments nest deeper than {limit} levels")]
    TooDeep {
        /// [`MAX_ARGUMENT_DEPTH`].
        limit: usize,
    },
    /// Arguments with too many values.
    #[error("arguments hold more than {limit} values")]
    TooLarge {
        /// [`MAX_ARGUMENT_VALUES`].
        limit: usize,
    },
    /// An argument path too long for `context.args`.
    #[error("argument path {path:?} is longer than {limit} bytes")]
    PathTooLong {
        /// The start of the path.
        path: String,
        /// [`MAX_ARGUMENT_PATH`].
        limit: usize,
    },
    /// The task context or an attribute cannot be put to Cedar.
    #[error("{path}: {what}")]
    Value {
        /// Where (`context.task.tools[0]`).
        path: String,
        /// What was wrong.
        what: String,
    },
}

/// Whether the policy set has a schema ([`mandate_policy::PolicyBundle::has_schema`]),
/// which decides if `context.arguments` can be sent (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicySchema {
    /// Requests are validated: only schema-typed attributes (`args`) are sent.
    Present,
    /// No schema: `arguments` is sent as a record too.
    Absent,
}

/// The Cedar schema the gateway's requests need, on top of the `Agent`,
/// `Tool`, `Task` and `Session` declarations of
/// `policies/baseline/mandate.cedarschema` (which ends with exactly this
/// text). It declares the `call` action, so remove any older `call`
/// declaration before appending it.
pub const SCHEMA_FRAGMENT: &str = r#"// ---- The MCP gateway (crates/gateway). ----

// What the gateway's catalog says about a called tool.
type ToolCall = {
  name: String,        // the tool's name on its upstream
  upstream: String,    // the upstream MCP server
  class: String,       // "read", "act" or "delegate": the capability it needs
  labels: Set<String>,
  egress: Bool,        // whether it can send data out
  destructive: Bool,   // whether it destroys or overwrites something
  known: Bool,         // false: not in the catalog (class "delegate", egress, destructive, label "unclassified")
};

// One scalar of a call's arguments: where it sits (`to`, `options.dry_run`,
// `recipients[]`) and its value as text.
type Argument = {
  path: String,
  value: String,
};

// A call of a tool under a task. The gateway sends all four; AuthZEN callers
// with a task token get `task` and `session`. Test `context has tool` first.
action call appliesTo {
  principal: Agent,
  resource: Tool,
  context: { task: Task, tool?: ToolCall, args?: Set<Argument>, session?: Session },
};

// `Resource::"<upstream>:<uri>"`, `Prompt::"<upstream>.<name>"`,
// `McpMethod::"<upstream>:<method>"`.
entity Resource;
entity Prompt;
entity McpMethod;

// resources/read.
action read_resource appliesTo {
  principal: Agent,
  resource: Resource,
  context: { task: Task, session?: Session, upstream: String, uri: String },
};

// prompts/get.
action get_prompt appliesTo {
  principal: Agent,
  resource: Prompt,
  context: { task: Task, session?: Session, upstream: String, name: String, args: Set<Argument> },
};

// Any other method the gateway does not classify (completion/complete, tasks/*, ...).
action mcp_method appliesTo {
  principal: Agent,
  resource: McpMethod,
  context: { task: Task, session?: Session, upstream: String, method: String },
};
"#;

/// `<upstream>.<tool>`, the id of the `Tool` entity and the catalog key,
/// after checking both parts.
pub fn tool_id(upstream: &str, tool: &str) -> Result<String, RequestError> {
    check_upstream(upstream)?;
    non_empty(tool, "tool")?;
    Ok(format!("{upstream}.{tool}"))
}

/// The request for `tools/call` of `tool` on `upstream` (see the module docs).
/// `task_context` is the `context.task` JSON that AuthZEN uses, entity
/// references written `{"__entity": {"type": ..., "id": ...}}`. The principal
/// is `Agent::"<spiffe_id>"` with `attributes` (`name`, `owner`, `env`,
/// `function`, `spiffe_id`), as for AuthZEN. `schema` says whether
/// `context.arguments` can be sent.
#[allow(clippy::too_many_arguments)]
pub fn tool_call_request<'s>(
    upstream: &str,
    tool: &str,
    entry: &CatalogEntry,
    known: bool,
    arguments: &Value,
    scope: impl Into<TaskScope<'s>>,
    spiffe_id: &str,
    attributes: &[(impl AsRef<str>, impl AsRef<str>)],
    schema: PolicySchema,
) -> Result<DecisionRequest, RequestError> {
    let id = tool_id(upstream, tool)?;
    let tool_record = record([
        ("name", RestrictedExpression::new_string(tool.to_owned())),
        (
            "upstream",
            RestrictedExpression::new_string(upstream.to_owned()),
        ),
        (
            "class",
            RestrictedExpression::new_string(entry.class.as_str().to_owned()),
        ),
        (
            "labels",
            RestrictedExpression::new_set(
                entry
                    .labels
                    .iter()
                    .map(|l| RestrictedExpression::new_string(l.clone())),
            ),
        ),
        ("egress", RestrictedExpression::new_bool(entry.egress)),
        (
            "destructive",
            RestrictedExpression::new_bool(entry.destructive),
        ),
        ("known", RestrictedExpression::new_bool(known)),
    ])?;
    let mut context = scope_pairs(scope.into())?;
    context.push(("tool".to_owned(), tool_record));
    context.extend(argument_pairs(arguments, schema)?);
    build(spiffe_id, attributes, "call", uid("Tool", &id), context)
}

/// The request for `resources/read` of `uri` on `upstream`.
pub fn resource_read_request<'s>(
    upstream: &str,
    uri: &str,
    scope: impl Into<TaskScope<'s>>,
    spiffe_id: &str,
    attributes: &[(impl AsRef<str>, impl AsRef<str>)],
) -> Result<DecisionRequest, RequestError> {
    check_upstream(upstream)?;
    non_empty(uri, "uri")?;
    let mut context = scope_pairs(scope.into())?;
    context.push(("upstream".to_owned(), string(upstream)));
    context.push(("uri".to_owned(), string(uri)));
    build(
        spiffe_id,
        attributes,
        "read_resource",
        uid("Resource", &format!("{upstream}:{uri}")),
        context,
    )
}

/// The request for `prompts/get` of `name` on `upstream`, with its arguments
/// treated as a tool call's are.
pub fn prompt_get_request<'s>(
    upstream: &str,
    name: &str,
    arguments: &Value,
    scope: impl Into<TaskScope<'s>>,
    spiffe_id: &str,
    attributes: &[(impl AsRef<str>, impl AsRef<str>)],
    schema: PolicySchema,
) -> Result<DecisionRequest, RequestError> {
    check_upstream(upstream)?;
    non_empty(name, "prompt")?;
    let mut context = scope_pairs(scope.into())?;
    context.push(("upstream".to_owned(), string(upstream)));
    context.push(("name".to_owned(), string(name)));
    context.extend(argument_pairs(arguments, schema)?);
    build(
        spiffe_id,
        attributes,
        "get_prompt",
        uid("Prompt", &format!("{upstream}.{name}")),
        context,
    )
}

/// The request for a method the gateway does not classify ([`crate::Gate::Unknown`]).
pub fn method_request<'s>(
    upstream: &str,
    method: &str,
    scope: impl Into<TaskScope<'s>>,
    spiffe_id: &str,
    attributes: &[(impl AsRef<str>, impl AsRef<str>)],
) -> Result<DecisionRequest, RequestError> {
    check_upstream(upstream)?;
    non_empty(method, "method")?;
    let mut context = scope_pairs(scope.into())?;
    context.push(("upstream".to_owned(), string(upstream)));
    context.push(("method".to_owned(), string(method)));
    build(
        spiffe_id,
        attributes,
        "mcp_method",
        uid("McpMethod", &format!("{upstream}:{method}")),
        context,
    )
}

pub(crate) fn check_upstream(upstream: &str) -> Result<(), RequestError> {
    let ok = !upstream.is_empty()
        && upstream
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(RequestError::BadUpstream {
            upstream: upstream.to_owned(),
        })
    }
}

fn non_empty(value: &str, what: &'static str) -> Result<(), RequestError> {
    if value.is_empty() {
        Err(RequestError::EmptyName { what })
    } else {
        Ok(())
    }
}

pub(crate) fn uid(kind: &str, id: &str) -> EntityUid {
    let kind = EntityTypeName::from_str(kind).expect("the gateway's entity types are valid names");
    EntityUid::from_type_name_and_id(kind, EntityId::new(id))
}

pub(crate) fn string(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_owned())
}

pub(crate) fn record<'a>(
    pairs: impl IntoIterator<Item = (&'a str, RestrictedExpression)>,
) -> Result<RestrictedExpression, RequestError> {
    RestrictedExpression::new_record(pairs.into_iter().map(|(k, v)| (k.to_owned(), v))).map_err(
        |e| RequestError::Value {
            path: "context".to_owned(),
            what: e.to_string(),
        },
    )
}

pub(crate) fn build(
    spiffe_id: &str,
    attributes: &[(impl AsRef<str>, impl AsRef<str>)],
    action: &str,
    resource: EntityUid,
    context: Vec<(String, RestrictedExpression)>,
) -> Result<DecisionRequest, RequestError> {
    let context = Context::from_pairs(context).map_err(|e| RequestError::Value {
        path: "context".to_owned(),
        what: e.to_string(),
    })?;
    Ok(DecisionRequest {
        principal: uid("Agent", spiffe_id),
        action: uid("Action", action),
        resource,
        context,
        principal_attrs: attributes
            .iter()
            .map(|(k, v)| (k.as_ref().to_owned(), string(v.as_ref())))
            .collect(),
        resource_attrs: Vec::new(),
    })
}

/// `args`, and `arguments` without a schema, after checking the bounds.
fn argument_pairs(
    arguments: &Value,
    schema: PolicySchema,
) -> Result<Vec<(String, RestrictedExpression)>, RequestError> {
    let mut values = 0;
    check_bounds(arguments, 1, &mut values)?;
    let mut flat = Vec::new();
    flatten(arguments, &mut String::new(), &mut flat)?;
    let mut pairs = vec![("args".to_owned(), RestrictedExpression::new_set(flat))];
    if schema == PolicySchema::Absent {
        let record = argument_value(arguments)?
            .unwrap_or_else(|| RestrictedExpression::new_record([]).expect("empty record"));
        pairs.push(("arguments".to_owned(), record));
    }
    Ok(pairs)
}

fn check_bounds(value: &Value, depth: usize, values: &mut usize) -> Result<(), RequestError> {
    *values += 1;
    if *values > MAX_ARGUMENT_VALUES {
        return Err(RequestError::TooLarge {
            limit: MAX_ARGUMENT_VALUES,
        });
    }
    let children: Box<dyn Iterator<Item = &Value>> = match value {
        Value::Array(items) => Box::new(items.iter()),
        Value::Object(map) => Box::new(map.values()),
        _ => return Ok(()),
    };
    if depth > MAX_ARGUMENT_DEPTH {
        return Err(RequestError::TooDeep {
            limit: MAX_ARGUMENT_DEPTH,
        });
    }
    for child in children {
        check_bounds(child, depth + 1, values)?;
    }
    Ok(())
}

/// A number as Cedar sees it: a long if it fits, else its decimal text.
fn number(n: &serde_json::Number) -> RestrictedExpression {
    match n.as_i64() {
        Some(i) => RestrictedExpression::new_long(i),
        None => RestrictedExpression::new_string(n.to_string()),
    }
}

/// An argument as a Cedar value, never an entity; `None` for null.
fn argument_value(value: &Value) -> Result<Option<RestrictedExpression>, RequestError> {
    Ok(Some(match value {
        Value::Null => return Ok(None),
        Value::Bool(b) => RestrictedExpression::new_bool(*b),
        Value::Number(n) => number(n),
        Value::String(s) => string(s),
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.extend(argument_value(item)?);
            }
            RestrictedExpression::new_set(out)
        }
        Value::Object(map) => {
            let mut out = Vec::with_capacity(map.len());
            for (k, v) in map {
                if let Some(v) = argument_value(v)? {
                    out.push((k.clone(), v));
                }
            }
            RestrictedExpression::new_record(out).map_err(|e| RequestError::Value {
                path: "arguments".to_owned(),
                what: e.to_string(),
            })?
        }
    }))
}

/// Appends one `{path, value}` record per scalar below `value`.
fn flatten(
    value: &Value,
    path: &mut String,
    out: &mut Vec<RestrictedExpression>,
) -> Result<(), RequestError> {
    let text = match value {
        Value::Null => return Ok(()),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let len = path.len();
            path.push_str("[]");
            for item in items {
                flatten(item, path, out)?;
            }
            path.truncate(len);
            return Ok(());
        }
        Value::Object(map) => {
            for (k, v) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                for c in k.chars() {
                    if matches!(c, '\\' | '.' | '[') {
                        path.push('\\');
                    }
                    path.push(c);
                }
                if path.len() > MAX_ARGUMENT_PATH {
                    let mut start = MAX_ARGUMENT_PATH.min(64);
                    while !path.is_char_boundary(start) {
                        start -= 1;
                    }
                    return Err(RequestError::PathTooLong {
                        path: format!("{}…", &path[..start]),
                        limit: MAX_ARGUMENT_PATH,
                    });
                }
                flatten(v, path, out)?;
                path.truncate(len);
            }
            return Ok(());
        }
    };
    out.push(record([
        ("path", string(path)),
        ("value", RestrictedExpression::new_string(text)),
    ])?);
    Ok(())
}

/// The task context, written by the server: entity escapes are honoured.
/// The task a request is made under, and what its session has touched so
/// far: `context.task` and `context.session`. A bare `&Value` (the task) is a
/// scope whose session has touched nothing.
#[derive(Debug, Clone, Copy)]
pub struct TaskScope<'a> {
    /// The `context.task` JSON, as AuthZEN uses it: entity references written
    /// `{"__entity": {"type": ..., "id": ...}}`.
    pub task: &'a Value,
    /// Every data label the task's delegation tree has touched
    /// (`context.session.labels`), normalized.
    pub session_labels: &'a [String],
}

impl<'a> From<&'a Value> for TaskScope<'a> {
    fn from(task: &'a Value) -> TaskScope<'a> {
        TaskScope {
            task,
            session_labels: &[],
        }
    }
}

/// `task` and `session` of a request's context.
pub(crate) fn scope_pairs(
    scope: TaskScope<'_>,
) -> Result<Vec<(String, RestrictedExpression)>, RequestError> {
    let session = record([(
        "labels",
        RestrictedExpression::new_set(scope.session_labels.iter().map(|l| string(l))),
    )])?;
    Ok(vec![
        ("task".to_owned(), task_value(scope.task)?),
        ("session".to_owned(), session),
    ])
}

pub(crate) fn task_value(task: &Value) -> Result<RestrictedExpression, RequestError> {
    let mut values = 0;
    check_bounds(task, 1, &mut values)?;
    trusted_value(task, &mut "context.task".to_owned())
}

fn trusted_value(value: &Value, path: &mut String) -> Result<RestrictedExpression, RequestError> {
    mandate_policy::json_to_cedar(value, path).map_err(|e| RequestError::Value {
        path: e.path,
        what: e.what,
    })
}

#[cfg(test)]
mod tests;
