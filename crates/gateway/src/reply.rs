//! The answers Mandate writes itself, in JSON-RPC: errors with their codes,
//! and the data that explains a denial.
//!
//! MCP 2026-07-28 reserves `-32020` to `-32099` for codes it defines and asks
//! new implementations to stay out of `-32000` to `-32019` and, for their own
//! purposes, out of the whole JSON-RPC range `-32768` to `-32000`. Mandate's
//! own codes are therefore `-31001` to `-31006`.

use mandate_core::Decision;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::envelope::RequestId;

/// JSON-RPC: the body is not JSON.
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC: not a valid request object.
pub const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC: no such method (MCP: answer with HTTP 404 on Streamable HTTP).
pub const METHOD_NOT_FOUND: i64 = -32601;
/// JSON-RPC: bad params.
pub const INVALID_PARAMS: i64 = -32602;
/// JSON-RPC: internal error.
pub const INTERNAL_ERROR: i64 = -32603;
/// MCP 2026-07-28: headers disagree with the body (answer with HTTP 400).
pub const HEADER_MISMATCH: i64 = -32020;

/// Mandate: policy denied the call. `data` is [`denial_data`].
pub const DENIED_BY_POLICY: i64 = -31001;
/// Mandate: the call waits for a human's approval (reserved for approvals).
pub const APPROVAL_PENDING: i64 = -31002;
/// Mandate: the upstream MCP server could not be reached or failed.
pub const UPSTREAM_UNAVAILABLE: i64 = -31003;
/// Mandate: the upstream MCP server did not answer in time.
pub const UPSTREAM_TIMEOUT: i64 = -31004;
/// Mandate: the audit log cannot be written, so nothing is decided or
/// forwarded (or, after the call, its result is withheld).
pub const AUDIT_UNAVAILABLE: i64 = -31005;
/// Mandate: the store that holds budgets and session labels cannot be read
/// or written, so nothing is decided or forwarded (or the result is withheld).
pub const STATE_UNAVAILABLE: i64 = -31006;

#[derive(Serialize)]
struct ErrorObject<'a> {
    code: i64,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Value>,
}

#[derive(Serialize)]
struct ErrorResponse<'a> {
    jsonrpc: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a RawValue>,
    error: ErrorObject<'a>,
}

/// A JSON-RPC error response. `id` is the request's id, echoed byte for byte;
/// with `None` (the id could not be read) the member is left out, as MCP's
/// schema has it (`id?`), rather than sent as `null`.
pub fn error_response(
    id: Option<&RequestId>,
    code: i64,
    message: &str,
    data: Option<Value>,
) -> Vec<u8> {
    let response = ErrorResponse {
        jsonrpc: "2.0",
        id: id.map(RequestId::raw),
        error: ErrorObject {
            code,
            message,
            data,
        },
    };
    serde_json::to_vec(&response).expect("an error response always serializes")
}

/// The `data` of a [`DENIED_BY_POLICY`] error:
/// `{"reason": "no_permit", "policies": [...], "explanation": "..."}`, plus
/// `"detail"` for an invalid request.
pub fn denial_data(decision: &Decision) -> Value {
    let mut data = json!({
        "reason": decision.reason.code(),
        "policies": decision.policies,
        "explanation": decision.explain(),
    });
    if let mandate_core::DecisionReason::InvalidRequest(detail) = &decision.reason {
        data["detail"] = Value::from(detail.as_str());
    }
    data
}

/// A `tools/call` result that reports a failure to the model rather than to
/// the client (`isError: true`, with `message` as text), for callers that
/// prefer the model to see why a call was refused. `resultType` is included
/// for 2026-07-28 clients; earlier clients ignore it.
pub fn tool_error_result(id: &RequestId, message: &str) -> Vec<u8> {
    #[derive(Serialize)]
    struct Response<'a> {
        jsonrpc: &'static str,
        id: &'a RawValue,
        result: Value,
    }
    let response = Response {
        jsonrpc: "2.0",
        id: id.raw(),
        result: json!({
            "resultType": "complete",
            "content": [{"type": "text", "text": message}],
            "isError": true,
        }),
    };
    serde_json::to_vec(&response).expect("a tool result always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::parse_message;
    use mandate_core::{DecisionReason, Effect};

    fn id_of(body: &str) -> RequestId {
        parse_message(body.as_bytes())
            .unwrap()
            .id()
            .unwrap()
            .clone()
    }

    #[test]
    fn an_error_echoes_the_id_exactly() {
        let id = id_of(r#"{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"x"}"#);
        let body = error_response(Some(&id), DENIED_BY_POLICY, "denied", None);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"jsonrpc":"2.0","id":123456789012345678901234567890,"error":{"code":-31001,"message":"denied"}}"#
        );
        let id = id_of(r#"{"jsonrpc":"2.0","id":"a\"b","method":"x"}"#);
        let body = error_response(Some(&id), -32602, "bad", Some(json!({"k": 1})));
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"jsonrpc":"2.0","id":"a\"b","error":{"code":-32602,"message":"bad","data":{"k":1}}}"#
        );
    }

    #[test]
    fn an_error_without_an_id_leaves_it_out() {
        let body = error_response(None, PARSE_ERROR, "the body is not valid JSON", None);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"jsonrpc":"2.0","error":{"code":-32700,"message":"the body is not valid JSON"}}"#
        );
    }

    #[test]
    fn denial_data_names_the_policies_and_the_reason() {
        let d = Decision {
            effect: Effect::Deny,
            policies: vec!["agents.cedar#gateway-unknown-tools".into()],
            errors: vec![],
            reason: DecisionReason::Forbidden,
            tags: vec![],
        };
        assert_eq!(
            denial_data(&d),
            json!({
                "reason": "forbidden",
                "policies": ["agents.cedar#gateway-unknown-tools"],
                "explanation": "forbidden by agents.cedar#gateway-unknown-tools",
            })
        );
        let d = Decision::invalid("context does not fit");
        assert_eq!(denial_data(&d)["detail"], "context does not fit");
    }

    #[test]
    fn a_tool_error_result_is_a_result_with_is_error() {
        let id = id_of(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call"}"#);
        let v: Value = serde_json::from_slice(&tool_error_result(&id, "denied")).unwrap();
        assert_eq!(
            v,
            json!({"jsonrpc": "2.0", "id": 7, "result": {
                "resultType": "complete",
                "content": [{"type": "text", "text": "denied"}],
                "isError": true}})
        );
    }
}
