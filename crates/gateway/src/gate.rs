//! Which question a message raises: a tool call to decide, a list to filter,
//! a resource or prompt to authorize, plumbing to let through, or a method
//! Mandate does not know, which policy must allow explicitly.
//!
//! | methods | gate |
//! |---|---|
//! | `tools/call` | [`Gate::ToolCall`]: `Action::"call"` on `Tool::"<upstream>.<name>"` |
//! | `tools/list` | [`Gate::ListTools`]: forward, then filter the answer |
//! | `resources/read` | [`Gate::ReadResource`]: `Action::"read_resource"` |
//! | `prompts/get` | [`Gate::GetPrompt`]: `Action::"get_prompt"` |
//! | `initialize`, `ping`, `server/discover`, `logging/setLevel`, `resources/list`, `resources/templates/list`, `prompts/list`, `resources/subscribe`, `resources/unsubscribe`, `subscriptions/listen`; the notifications `notifications/initialized`, `notifications/cancelled`, `notifications/progress`, `notifications/roots/list_changed`; every response | [`Gate::Passthrough`] |
//! | anything else, `completion/complete` and `tasks/*` included | [`Gate::Unknown`]: `Action::"mcp_method"` |
//!
//! Passthrough methods are session and protocol plumbing or list names only;
//! none of them runs a tool, reads content or hands the server data of the
//! client's beyond what the protocol needs. `completion/complete` is not
//! passthrough: its suggestions come from the server's data (file names,
//! database names, ...). `tasks/*` fetch results of earlier calls or feed them
//! input. An unknown method is denied unless a policy permits it by name.

use serde_json::{Map, Value};

use crate::envelope::{EnvelopeError, Message, kind_of_raw};

/// What to do with one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Gate {
    /// `tools/call`: decide, then forward.
    ToolCall {
        /// `params.name`.
        name: String,
        /// `params.arguments` (an empty object when absent or null).
        arguments: Value,
    },
    /// `tools/list`: forward, then keep only the tools the task may see.
    ListTools,
    /// `resources/read`: decide on the URI, then forward.
    ReadResource {
        /// `params.uri`.
        uri: String,
    },
    /// `prompts/get`: decide on the prompt, then forward.
    GetPrompt {
        /// `params.name`.
        name: String,
        /// `params.arguments` (an empty object when absent or null).
        arguments: Value,
    },
    /// Protocol plumbing: forward without asking policy.
    Passthrough,
    /// A method Mandate does not classify: deny unless policy allows
    /// `Action::"mcp_method"` on `McpMethod::"<upstream>:<method>"`.
    Unknown(String),
}

/// Requests that are plumbing (see the module docs).
const PASSTHROUGH_REQUESTS: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "logging/setLevel",
    "resources/list",
    "resources/templates/list",
    "prompts/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "subscriptions/listen",
];

/// Client notifications that are plumbing.
const PASSTHROUGH_NOTIFICATIONS: &[&str] = &[
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
];

/// Classifies `msg` (see the module docs). Checks the params of the methods it
/// gates: `tools/call` needs a non-empty string `name` and an object (or no)
/// `arguments`; `resources/read` a non-empty string `uri`; `prompts/get` a
/// non-empty string `name` and an object (or no) `arguments`. Anything else
/// is an [`EnvelopeError::InvalidParams`] (`-32602`).
pub fn gate(msg: &Message) -> Result<Gate, EnvelopeError> {
    let (method, is_request) = match msg {
        Message::Request { method, .. } => (method.as_str(), true),
        Message::Notification { method, .. } => (method.as_str(), false),
        Message::Response { .. } => return Ok(Gate::Passthrough),
    };
    if !is_request {
        return Ok(if PASSTHROUGH_NOTIFICATIONS.contains(&method) {
            Gate::Passthrough
        } else {
            Gate::Unknown(method.to_owned())
        });
    }
    let params = || msg.params_object();
    match method {
        "tools/call" => {
            let params = params();
            Ok(Gate::ToolCall {
                name: name_member(method, &params, "name")?,
                arguments: object_member(method, &params, "arguments")?,
            })
        }
        "tools/list" => Ok(Gate::ListTools),
        "resources/read" => Ok(Gate::ReadResource {
            uri: name_member(method, &params(), "uri")?,
        }),
        "prompts/get" => {
            let params = params();
            Ok(Gate::GetPrompt {
                name: name_member(method, &params, "name")?,
                arguments: object_member(method, &params, "arguments")?,
            })
        }
        m if PASSTHROUGH_REQUESTS.contains(&m) => Ok(Gate::Passthrough),
        m => Ok(Gate::Unknown(m.to_owned())),
    }
}

fn invalid(method: &str, reason: String) -> EnvelopeError {
    EnvelopeError::InvalidParams {
        method: method.to_owned(),
        reason,
    }
}

fn name_member(
    method: &str,
    params: &Map<String, Value>,
    member: &str,
) -> Result<String, EnvelopeError> {
    match params.get(member) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(invalid(method, format!("\"{member}\" must not be empty"))),
        Some(other) => Err(invalid(
            method,
            format!(
                "\"{member}\" must be a string, not {}",
                kind_of_raw(&other.to_string())
            ),
        )),
        None => Err(invalid(method, format!("\"{member}\" is required"))),
    }
}

fn object_member(
    method: &str,
    params: &Map<String, Value>,
    member: &str,
) -> Result<Value, EnvelopeError> {
    match params.get(member) {
        None | Some(Value::Null) => Ok(Value::Object(Map::new())),
        Some(v @ Value::Object(_)) => Ok(v.clone()),
        Some(other) => Err(invalid(
            method,
            format!(
                "\"{member}\" must be an object, not {}",
                kind_of_raw(&other.to_string())
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::parse_message;
    use serde_json::json;

    fn gate_of(body: Value) -> Result<Gate, EnvelopeError> {
        gate(&parse_message(body.to_string().as_bytes()).unwrap())
    }

    fn request(method: &str, params: Value) -> Value {
        json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    }

    #[test]
    fn a_tool_call_names_its_tool_and_arguments() {
        assert_eq!(
            gate_of(request(
                "tools/call",
                json!({"name": "read", "arguments": {"path": "/q3.pdf"}})
            )),
            Ok(Gate::ToolCall {
                name: "read".into(),
                arguments: json!({"path": "/q3.pdf"})
            })
        );
        assert_eq!(
            gate_of(request("tools/call", json!({"name": "read"}))),
            Ok(Gate::ToolCall {
                name: "read".into(),
                arguments: json!({})
            })
        );
    }

    #[test]
    fn bad_tool_call_params_are_invalid_params() {
        for (params, reason) in [
            (json!({}), "\"name\" is required"),
            (
                json!({"name": 3}),
                "\"name\" must be a string, not a number",
            ),
            (json!({"name": ""}), "\"name\" must not be empty"),
            (
                json!({"name": "a", "arguments": [1]}),
                "\"arguments\" must be an object, not an array",
            ),
            (
                json!({"name": "a", "arguments": "x"}),
                "\"arguments\" must be an object, not a string",
            ),
        ] {
            let err = gate_of(request("tools/call", params)).unwrap_err();
            assert_eq!(err.code(), -32602);
            assert_eq!(
                err.to_string(),
                format!("invalid params for tools/call: {reason}")
            );
        }
        let no_params = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call"});
        assert_eq!(gate_of(no_params).unwrap_err().code(), -32602);
    }

    #[test]
    fn resources_and_prompts_are_gated_on_their_names() {
        assert_eq!(
            gate_of(request("resources/read", json!({"uri": "file:///a"}))),
            Ok(Gate::ReadResource {
                uri: "file:///a".into()
            })
        );
        assert!(gate_of(request("resources/read", json!({"name": "a"}))).is_err());
        assert_eq!(
            gate_of(request(
                "prompts/get",
                json!({"name": "summary", "arguments": {"tone": "dry"}})
            )),
            Ok(Gate::GetPrompt {
                name: "summary".into(),
                arguments: json!({"tone": "dry"})
            })
        );
        assert_eq!(
            gate_of(request("tools/list", json!({"cursor": "2"}))),
            Ok(Gate::ListTools)
        );
    }

    #[test]
    fn plumbing_passes_and_everything_else_is_unknown() {
        for m in [
            "initialize",
            "ping",
            "server/discover",
            "resources/list",
            "prompts/list",
            "subscriptions/listen",
        ] {
            assert_eq!(gate_of(request(m, json!({}))), Ok(Gate::Passthrough), "{m}");
        }
        for m in [
            "completion/complete",
            "tasks/result",
            "sampling/createMessage",
            "x",
        ] {
            assert_eq!(gate_of(request(m, json!({}))), Ok(Gate::Unknown(m.into())));
        }
        let note = |m: &str| json!({"jsonrpc": "2.0", "method": m});
        assert_eq!(
            gate_of(note("notifications/cancelled")),
            Ok(Gate::Passthrough)
        );
        assert_eq!(
            gate_of(note("notifications/custom")),
            Ok(Gate::Unknown("notifications/custom".into()))
        );
        // A notification named like a gated request is not a way around the gate.
        assert_eq!(
            gate_of(note("tools/call")),
            Ok(Gate::Unknown("tools/call".into()))
        );
        let response = json!({"jsonrpc": "2.0", "id": 4, "result": {"action": "accept"}});
        assert_eq!(gate_of(response), Ok(Gate::Passthrough));
    }
}
