//! The HTTP reverse proxy's routing: which configured rule a legacy REST
//! request falls under, and the Cedar request it raises.
//!
//! The operator maps each endpoint of an upstream to a Cedar action and
//! resource with a [`RestRule`]; [`RestRoutes::match_request`] finds the first
//! rule whose method and path template fit, and [`rest_request`] builds the
//! question for the policy engine:
//!
//! | request to upstream `github` | rule | Cedar |
//! |---|---|---|
//! | `GET /repos/acme/web/issues` | `GET /repos/{owner}/{repo}/issues` → `list_issues` on `Repo` `{owner}/{repo}` | `Action::"list_issues"` on `Repo::"acme/web"` |
//! | `GET /repos/acme/web/contents/src/main.rs` | `GET /repos/{owner}/{repo}/contents/{path*}` → `get_contents` on `File` `{owner}/{repo}:{path}` | `Action::"get_contents"` on `File::"acme/web:src/main.rs"` |
//! | `DELETE /repos/acme/web` | none | refused before policy (`no_route`) |
//!
//! The principal is `Agent::"<SPIFFE ID>"` with its registry attributes, as for
//! MCP calls. The context holds `task`; `http` (`method`, the decoded `path`
//! below the upstream, the raw `query` or `""`, `upstream`); `params`, a record
//! of the captures as strings; `tool`, a `ToolCall` record (`name` is the
//! action, `known` is true); and `tool_entity`, `Tool::"<upstream>.<action>"`,
//! the tool a task must hold for the call. [`REST_SCHEMA_FRAGMENT`] declares
//! the types and the `proxy` action group every rule's action belongs to.
//!
//! **Paths** are matched segment by segment after percent-decoding, and
//! refused outright ([`MatchError::UnsafePath`]) when a server could read them
//! as another path than the one matched: a `.` or `..` segment (also encoded,
//! or followed by `;...` as Tomcat reads it), an empty segment (`//`) other
//! than a trailing slash, an encoded `/` or `\` inside a segment, a backslash,
//! NUL or another control character, bytes that are not UTF-8, or a segment
//! still percent-encoded after one decoding (`%252e`).

use std::str::FromStr;

use mandate_policy::DecisionRequest;
use mandate_policy::cedar_policy::{EntityId, EntityTypeName, EntityUid, RestrictedExpression};

use crate::catalog::ToolClass;
use crate::cedar::{RequestError, TaskScope, build, record, scope_pairs, string, tool_id, uid};

/// The Cedar schema the proxy's requests need, beside [`crate::SCHEMA_FRAGMENT`]
/// (whose `ToolCall` type it uses). `policies/baseline/mandate.cedarschema`
/// contains exactly this text; `policies/examples/github.cedarschema`
/// declares an example upstream's actions.
pub const REST_SCHEMA_FRAGMENT: &str = r#"// ---- The HTTP reverse proxy (crates/gateway/src/rest.rs). ----

// The request as the proxy received it.
type HttpRequest = {
  method: String,      // GET, POST, ...
  path: String,        // below the upstream's prefix, percent-decoded
  query: String,       // as sent, "" for none
  upstream: String,
};

// The group of every action an `http_upstreams` rule names. Declare each as
//   action <name> in [proxy] appliesTo {
//     principal: Agent,
//     resource: <the rule's resource_type>,
//     context: { task: Task, http: HttpRequest, params: { <one String per capture> },
//                tool: ToolCall, tool_entity: Tool },
//   };
action proxy;
"#;

/// The action group of [`REST_SCHEMA_FRAGMENT`].
pub const PROXY_ACTION_GROUP: &str = "proxy";

/// Actions a rule may not name: the gateway's, issuance's and the group.
const RESERVED_ACTIONS: [&str; 8] = [
    "call",
    "read_resource",
    "get_prompt",
    "mcp_method",
    "hold_tool",
    "hold_data_domain",
    "hold_capability",
    PROXY_ACTION_GROUP,
];

/// One endpoint of an upstream, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestRule {
    /// `GET`, `POST`, ... (upper case, compared exactly), or `*` for any.
    pub method: String,
    /// A template starting with `/`: literal segments, `{name}` for one
    /// non-empty segment, and, last, `{name*}` for the rest of the path (one
    /// segment or more). A trailing `/` must be matched by one.
    pub path: String,
    /// The Cedar action (`list_issues`): letters, digits, `_` and `-`.
    pub action: String,
    /// The Cedar entity type of the resource (`Repo`, `Github::Repo`).
    pub resource_type: String,
    /// The resource's id, a template over the path's captures (`{owner}/{repo}`).
    pub resource_id: String,
    /// The capability the endpoint needs.
    pub class: ToolClass,
    /// Free labels for policy.
    pub labels: Vec<String>,
    /// Whether the endpoint can send data outside.
    pub egress: bool,
    /// Whether the endpoint destroys or overwrites something.
    pub destructive: bool,
}

/// Why a rule cannot be used. `index` is its position in the list, from 0.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// Not an upper-case method name nor `*`.
    #[error("rules[{index}]: method {method:?} must be an upper-case HTTP method (GET) or \"*\"")]
    Method {
        /// The rule's position.
        index: usize,
        /// The method.
        method: String,
    },
    /// A path template that cannot be matched as written.
    #[error("rules[{index}]: path {path:?}: {why}")]
    Path {
        /// The rule's position.
        index: usize,
        /// The template.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// An action name that is malformed or reserved.
    #[error("rules[{index}]: action {action:?}: {why}")]
    Action {
        /// The rule's position.
        index: usize,
        /// The action.
        action: String,
        /// What is wrong.
        why: &'static str,
    },
    /// Not a Cedar entity type name.
    #[error(
        "rules[{index}]: resource_type {resource_type:?} is not a Cedar entity type name (Repo, Github::Repo)"
    )]
    ResourceType {
        /// The rule's position.
        index: usize,
        /// The type.
        resource_type: String,
    },
    /// A resource id template that is empty or names no capture.
    #[error("rules[{index}]: resource_id {resource_id:?}: {why}")]
    ResourceId {
        /// The rule's position.
        index: usize,
        /// The template.
        resource_id: String,
        /// What is wrong.
        why: String,
    },
}

/// Why a request has no rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MatchError {
    /// A path a server could read as another one (see the module docs).
    #[error("path {path:?} is refused: {why}")]
    UnsafePath {
        /// The path as sent.
        path: String,
        /// What makes it unsafe.
        why: &'static str,
    },
    /// No rule fits: the default is to refuse.
    #[error("no rule of this upstream matches {method} {path}")]
    NoRoute {
        /// The request's method.
        method: String,
        /// The path as sent.
        path: String,
    },
}

/// The rule a request fell under, with what it captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestMatch {
    /// The rule's position in the list.
    pub rule: usize,
    /// The request's path, percent-decoded.
    pub path: String,
    /// Each capture, in template order, decoded.
    pub params: Vec<(String, String)>,
    /// The rule's action.
    pub action: String,
    /// The rule's resource type.
    pub resource_type: String,
    /// The resource id, with the captures put in.
    pub resource_id: String,
    /// The rule's class.
    pub class: ToolClass,
    /// The rule's labels.
    pub labels: Vec<String>,
    /// The rule's egress flag.
    pub egress: bool,
    /// The rule's destructive flag.
    pub destructive: bool,
}

#[derive(Debug, Clone)]
enum Segment {
    Literal(String),
    Capture(String),
    Rest(String),
}

#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    Capture(String),
}

#[derive(Debug, Clone)]
struct CompiledRule {
    rule: RestRule,
    segments: Vec<Segment>,
    resource_id: Vec<Piece>,
}

/// An upstream's rules, checked; the first that fits a request decides it.
#[derive(Debug, Clone, Default)]
pub struct RestRoutes {
    rules: Vec<CompiledRule>,
}

impl RestRoutes {
    /// Checks every rule: method, path template, action, resource type and id.
    pub fn new(rules: impl IntoIterator<Item = RestRule>) -> Result<RestRoutes, RuleError> {
        let rules = rules
            .into_iter()
            .enumerate()
            .map(|(index, rule)| compile(index, rule))
            .collect::<Result<_, _>>()?;
        Ok(RestRoutes { rules })
    }

    /// The rules, in order.
    pub fn rules(&self) -> impl Iterator<Item = &RestRule> {
        self.rules.iter().map(|r| &r.rule)
    }

    /// The first rule whose method and template fit `method` and `path` (the
    /// path below the upstream's prefix, as sent: starting with `/`,
    /// percent-encoded, without the query).
    pub fn match_request(&self, method: &str, path: &str) -> Result<RestMatch, MatchError> {
        let segments = decode_path(path).map_err(|why| MatchError::UnsafePath {
            path: path.to_owned(),
            why,
        })?;
        for (index, compiled) in self.rules.iter().enumerate() {
            let rule = &compiled.rule;
            if rule.method != "*" && rule.method != method {
                continue;
            }
            let Some(params) = capture(&compiled.segments, &segments) else {
                continue;
            };
            let resource_id = compiled
                .resource_id
                .iter()
                .map(|piece| match piece {
                    Piece::Text(t) => t.as_str(),
                    Piece::Capture(name) => params
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| v.as_str())
                        .unwrap_or_default(),
                })
                .collect();
            return Ok(RestMatch {
                rule: index,
                path: format!("/{}", segments.join("/")),
                params,
                action: rule.action.clone(),
                resource_type: rule.resource_type.clone(),
                resource_id,
                class: rule.class,
                labels: rule.labels.clone(),
                egress: rule.egress,
                destructive: rule.destructive,
            });
        }
        Err(MatchError::NoRoute {
            method: method.to_owned(),
            path: path.to_owned(),
        })
    }

    /// How many rules there are.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when there is no rule (every request is refused).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// The request for a REST call that matched a rule (see the module docs).
/// `task_context` and `attributes` are as for [`crate::tool_call_request`].
#[allow(clippy::too_many_arguments)]
pub fn rest_request<'s>(
    upstream: &str,
    matched: &RestMatch,
    method: &str,
    query: Option<&str>,
    scope: impl Into<TaskScope<'s>>,
    spiffe_id: &str,
    attributes: &[(impl AsRef<str>, impl AsRef<str>)],
) -> Result<DecisionRequest, RequestError> {
    let tool = tool_id(upstream, &matched.action)?;
    if method.is_empty() {
        return Err(RequestError::EmptyName { what: "method" });
    }
    let kind =
        EntityTypeName::from_str(&matched.resource_type).map_err(|_| RequestError::Value {
            path: "resource".to_owned(),
            what: format!("{:?} is not a valid entity type", matched.resource_type),
        })?;
    let resource = EntityUid::from_type_name_and_id(kind, EntityId::new(&matched.resource_id));
    let http = record([
        ("method", string(method)),
        ("path", string(&matched.path)),
        ("query", string(query.unwrap_or_default())),
        ("upstream", string(upstream)),
    ])?;
    let params = RestrictedExpression::new_record(
        matched
            .params
            .iter()
            .map(|(name, value)| (name.clone(), string(value))),
    )
    .map_err(|e| RequestError::Value {
        path: "context.params".to_owned(),
        what: e.to_string(),
    })?;
    let tool_record = record([
        ("name", string(&matched.action)),
        ("upstream", string(upstream)),
        ("class", string(matched.class.as_str())),
        (
            "labels",
            RestrictedExpression::new_set(matched.labels.iter().map(|l| string(l))),
        ),
        ("egress", RestrictedExpression::new_bool(matched.egress)),
        (
            "destructive",
            RestrictedExpression::new_bool(matched.destructive),
        ),
        ("known", RestrictedExpression::new_bool(true)),
    ])?;
    let mut context = scope_pairs(scope.into())?;
    context.extend([
        ("http".to_owned(), http),
        ("params".to_owned(), params),
        ("tool".to_owned(), tool_record),
        (
            "tool_entity".to_owned(),
            RestrictedExpression::new_entity_uid(uid("Tool", &tool)),
        ),
    ]);
    build(spiffe_id, attributes, &matched.action, resource, context)
}

fn compile(index: usize, rule: RestRule) -> Result<CompiledRule, RuleError> {
    let method_ok = rule.method == "*"
        || (!rule.method.is_empty()
            && rule.method.len() <= 32
            && rule
                .method
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_'));
    if !method_ok {
        return Err(RuleError::Method {
            index,
            method: rule.method,
        });
    }
    let segments = parse_template(&rule.path).map_err(|why| RuleError::Path {
        index,
        path: rule.path.clone(),
        why,
    })?;
    let action_error = |why| RuleError::Action {
        index,
        action: rule.action.clone(),
        why,
    };
    if rule.action.is_empty()
        || rule.action.len() > 64
        || !rule
            .action
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(action_error(
            "use 1 to 64 ASCII letters, digits, '_' and '-'",
        ));
    }
    if RESERVED_ACTIONS.contains(&rule.action.as_str()) {
        return Err(action_error(
            "is reserved for Mandate's own questions; choose another name",
        ));
    }
    let type_ok = EntityTypeName::from_str(&rule.resource_type)
        .is_ok_and(|t| t.basename() != "Action" && t.to_string() == rule.resource_type);
    if !type_ok {
        return Err(RuleError::ResourceType {
            index,
            resource_type: rule.resource_type,
        });
    }
    let captures: Vec<&str> = segments
        .iter()
        .filter_map(|s| match s {
            Segment::Capture(n) | Segment::Rest(n) => Some(n.as_str()),
            Segment::Literal(_) => None,
        })
        .collect();
    let resource_id =
        parse_resource_id(&rule.resource_id, &captures).map_err(|why| RuleError::ResourceId {
            index,
            resource_id: rule.resource_id.clone(),
            why,
        })?;
    Ok(CompiledRule {
        rule,
        segments,
        resource_id,
    })
}

fn is_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 64
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn parse_template(path: &str) -> Result<Vec<Segment>, String> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err("must start with '/'".to_owned());
    };
    let raw: Vec<&str> = rest.split('/').collect();
    let mut segments = Vec::with_capacity(raw.len());
    let mut names: Vec<&str> = Vec::new();
    for (i, part) in raw.iter().enumerate() {
        let last = i + 1 == raw.len();
        if let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            let (name, rest) = match inner.strip_suffix('*') {
                Some(name) => (name, true),
                None => (inner, false),
            };
            if !is_name(name) {
                return Err(format!(
                    "capture {{{inner}}}: a name is an ASCII letter or '_', then letters, digits and '_'"
                ));
            }
            if names.contains(&name) {
                return Err(format!("capture {{{name}}} is named twice"));
            }
            if rest && !last {
                return Err(format!("{{{name}*}} must be the last segment"));
            }
            names.push(name);
            segments.push(if rest {
                Segment::Rest(name.to_owned())
            } else {
                Segment::Capture(name.to_owned())
            });
            continue;
        }
        if part.is_empty() && !last {
            return Err("has an empty segment (//)".to_owned());
        }
        if part.contains(['{', '}']) {
            return Err(format!(
                "segment {part:?}: a capture is a whole segment, {{name}} or {{name*}}"
            ));
        }
        if part.contains(['%', '\\', ';']) || part.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err(format!(
                "segment {part:?}: write literal segments decoded, without '%', '\\', ';' or control characters"
            ));
        }
        if !part.is_empty() && part.bytes().all(|b| b == b'.') {
            return Err(format!("segment {part:?}: dot segments never match"));
        }
        segments.push(Segment::Literal((*part).to_owned()));
    }
    Ok(segments)
}

fn parse_resource_id(template: &str, captures: &[&str]) -> Result<Vec<Piece>, String> {
    if template.is_empty() {
        return Err("must not be empty".to_owned());
    }
    let mut pieces = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        match rest.find(['{', '}']) {
            Some(at) if rest.as_bytes()[at] == b'{' => {
                if at > 0 {
                    pieces.push(Piece::Text(rest[..at].to_owned()));
                }
                let close = rest[at..]
                    .find('}')
                    .ok_or_else(|| "a '{' is never closed".to_owned())?;
                let name = &rest[at + 1..at + close];
                if !captures.contains(&name) {
                    return Err(format!(
                        "{{{name}}} is not a capture of the path (it has {captures:?})"
                    ));
                }
                pieces.push(Piece::Capture(name.to_owned()));
                rest = &rest[at + close + 1..];
            }
            Some(_) => return Err("a '}' is never opened".to_owned()),
            None => {
                pieces.push(Piece::Text(rest.to_owned()));
                rest = "";
            }
        }
    }
    Ok(pieces)
}

/// The request's segments, decoded, or why the path is refused.
fn decode_path(path: &str) -> Result<Vec<String>, &'static str> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err("it does not start with '/'");
    };
    let raw: Vec<&str> = rest.split('/').collect();
    let mut segments = Vec::with_capacity(raw.len());
    for (i, part) in raw.iter().enumerate() {
        if part.is_empty() && i + 1 != raw.len() {
            return Err("it has an empty segment (//)");
        }
        segments.push(decode_segment(part)?);
    }
    Ok(segments)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `%XX` at the start of `bytes`, decoded.
fn escape_at(bytes: &[u8]) -> Option<u8> {
    match bytes {
        [b'%', h, l, ..] => Some(hex_value(*h)? * 16 + hex_value(*l)?),
        _ => None,
    }
}

fn decode_segment(raw: &str) -> Result<String, &'static str> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = escape_at(&bytes[i..]).ok_or("it has a malformed percent-encoding")?;
            match byte {
                b'/' => return Err("it encodes a slash (%2F) inside a segment"),
                b'\\' => return Err("it encodes a backslash (%5C) inside a segment"),
                _ => out.push(byte),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    if out.contains(&0) {
        return Err("it contains NUL");
    }
    if out.contains(&b'\\') {
        return Err("it contains a backslash");
    }
    if out.iter().any(|b| *b < 0x20 || *b == 0x7f) {
        return Err("it contains a control character");
    }
    let text = String::from_utf8(out).map_err(|_| "it is not UTF-8 once decoded")?;
    let head = text.split(';').next().unwrap_or_default();
    if !head.is_empty() && head.bytes().all(|b| b == b'.') {
        return Err("it has a dot segment (., ..)");
    }
    if (0..text.len()).any(|at| escape_at(&text.as_bytes()[at..]).is_some()) {
        return Err("it is percent-encoded twice");
    }
    Ok(text)
}

/// The captures of `template` in `segments`, if it fits.
fn capture(template: &[Segment], segments: &[String]) -> Option<Vec<(String, String)>> {
    let mut params = Vec::new();
    for (i, part) in template.iter().enumerate() {
        match part {
            Segment::Literal(text) => {
                if segments.get(i)? != text {
                    return None;
                }
            }
            Segment::Capture(name) => {
                let value = segments.get(i).filter(|s| !s.is_empty())?;
                params.push((name.clone(), value.clone()));
            }
            Segment::Rest(name) => {
                let value = segments.get(i..)?.join("/");
                if value.is_empty() {
                    return None;
                }
                params.push((name.clone(), value));
                return Some(params);
            }
        }
    }
    (template.len() == segments.len()).then_some(params)
}

#[cfg(test)]
mod tests;
