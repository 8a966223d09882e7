//! One JSON-RPC 2.0 message as an MCP client sends it over Streamable HTTP.
//!
//! The gateway decides on the body and forwards the body, so parsing keeps the
//! original bytes of `id` and `params` ([`RawValue`]) and refuses anything two
//! readers could understand differently: a key repeated inside an object (one
//! parser keeps the first, another the last), a batch (no longer part of MCP
//! since 2025-06-18), an id that is neither a string nor an integer.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::reply::{INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, PARSE_ERROR};

/// Longest piece of an offending value quoted in an error message, in characters.
const QUOTE_CHARS: usize = 60;

/// Why a message (or an upstream's response) cannot be used. Each variant maps
/// to a JSON-RPC error code through [`EnvelopeError::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The body is not JSON (`-32700`).
    #[error("the body is not valid JSON: {detail}")]
    Parse {
        /// What the JSON parser said.
        detail: String,
    },
    /// The body is a JSON array (`-32600`).
    #[error(
        "JSON-RPC batching is not supported in this protocol revision: send one request per POST"
    )]
    Batch,
    /// The body is JSON but not an object (`-32600`).
    #[error("a JSON-RPC message must be an object, not {found}")]
    NotAnObject {
        /// What it is (`a string`, `a number`, ...).
        found: &'static str,
    },
    /// A key appears twice in one object (`-32600`).
    #[error("key {key:?} appears twice in one object; send each key once")]
    DuplicateKey {
        /// The repeated key.
        key: String,
    },
    /// No `jsonrpc` member (`-32600`).
    #[error("missing \"jsonrpc\": \"2.0\"")]
    MissingVersion,
    /// `jsonrpc` is not the string `"2.0"` (`-32600`).
    #[error("\"jsonrpc\" must be \"2.0\", not {found}")]
    WrongVersion {
        /// The value sent, as JSON.
        found: String,
    },
    /// Neither `method` (request, notification) nor `result`/`error` (response) (`-32600`).
    #[error(
        "a message needs \"method\" (a request or notification) or \"result\"/\"error\" (a response)"
    )]
    MissingMethod,
    /// `method` is not a string (`-32600`).
    #[error("\"method\" must be a string, not {found}")]
    MethodNotString {
        /// What it is.
        found: &'static str,
    },
    /// A request id of `null` (`-32600`).
    #[error("a request id must not be null (MCP forbids it): use a string or an integer")]
    NullId,
    /// A request or response id that is neither a string nor an integer (`-32600`).
    #[error("an id must be a string or an integer, not {found}")]
    BadId {
        /// What it is (`an object`, `an array`, `a boolean`, `the number 1.5`).
        found: String,
    },
    /// `method` together with `result` or `error` (`-32600`).
    #[error("a message cannot have both \"method\" and \"{member}\"")]
    Ambiguous {
        /// `result` or `error`.
        member: &'static str,
    },
    /// A response with both `result` and `error` (`-32600`).
    #[error("a response has either \"result\" or \"error\", not both")]
    ResultAndError,
    /// A response without an `id` (`-32600`).
    #[error("a response must carry the id of the request it answers")]
    ResponseWithoutId,
    /// `params` is present but not an object (`-32602`).
    #[error("\"params\" must be an object, not {found}")]
    ParamsNotObject {
        /// What it is.
        found: &'static str,
    },
    /// The params of a method the gateway inspects are wrong (`-32602`).
    #[error("invalid params for {method}: {reason}")]
    InvalidParams {
        /// The method.
        method: String,
        /// What is wrong, naming the member.
        reason: String,
    },
    /// An upstream's answer cannot be filtered (`-32603`): it is not a
    /// JSON-RPC response, or its `result.tools` is malformed. Never forwarded.
    #[error("the upstream's response cannot be filtered: {reason}")]
    BadUpstreamResponse {
        /// What is wrong.
        reason: String,
    },
}

impl EnvelopeError {
    /// The JSON-RPC error code for this error: `-32700` parse error, `-32600`
    /// invalid request, `-32602` invalid params, `-32603` for an upstream
    /// answer that cannot be filtered.
    pub fn code(&self) -> i64 {
        match self {
            EnvelopeError::Parse { .. } => PARSE_ERROR,
            EnvelopeError::ParamsNotObject { .. } | EnvelopeError::InvalidParams { .. } => {
                INVALID_PARAMS
            }
            EnvelopeError::BadUpstreamResponse { .. } => INTERNAL_ERROR,
            EnvelopeError::Batch
            | EnvelopeError::NotAnObject { .. }
            | EnvelopeError::DuplicateKey { .. }
            | EnvelopeError::MissingVersion
            | EnvelopeError::WrongVersion { .. }
            | EnvelopeError::MissingMethod
            | EnvelopeError::MethodNotString { .. }
            | EnvelopeError::NullId
            | EnvelopeError::BadId { .. }
            | EnvelopeError::Ambiguous { .. }
            | EnvelopeError::ResultAndError
            | EnvelopeError::ResponseWithoutId => INVALID_REQUEST,
        }
    }
}

/// A JSON-RPC id: a string or an integer, kept as the exact JSON text sent, so
/// that an answer echoes it byte for byte (an integer beyond 64 bits included).
#[derive(Debug, Clone)]
pub struct RequestId(Box<RawValue>);

impl RequestId {
    /// Checks and keeps `raw`: a JSON string or an integer literal (no fraction,
    /// no exponent).
    fn from_raw(raw: &RawValue) -> Result<RequestId, EnvelopeError> {
        let text = raw.get();
        match text.as_bytes().first() {
            Some(b'"') => Ok(RequestId(raw.to_owned())),
            Some(b'-' | b'0'..=b'9') => {
                if text.bytes().all(|b| b == b'-' || b.is_ascii_digit()) {
                    Ok(RequestId(raw.to_owned()))
                } else {
                    Err(EnvelopeError::BadId {
                        found: format!("the number {}", quote(text)),
                    })
                }
            }
            Some(b'n') => Err(EnvelopeError::NullId),
            _ => Err(EnvelopeError::BadId {
                found: kind_of_raw(text).to_owned(),
            }),
        }
    }

    /// An id made from a JSON value: a string or an integer.
    pub fn from_value(value: &Value) -> Result<RequestId, EnvelopeError> {
        let raw = serde_json::value::to_raw_value(value).map_err(|e| EnvelopeError::Parse {
            detail: e.to_string(),
        })?;
        RequestId::from_raw(&raw)
    }

    /// The id exactly as sent (`"abc"` with its quotes, or `17`).
    pub fn raw(&self) -> &RawValue {
        &self.0
    }

    /// The id as a JSON value. An integer too large for 64 bits becomes a
    /// float here; use [`RequestId::raw`] to echo it.
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.0.get()).unwrap_or(Value::Null)
    }
}

impl PartialEq for RequestId {
    fn eq(&self, other: &RequestId) -> bool {
        self.0.get() == other.0.get()
    }
}

impl Eq for RequestId {}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.get())
    }
}

/// One JSON-RPC message from an MCP client.
#[derive(Debug, Clone)]
pub enum Message {
    /// A request: it has an `id` and expects an answer.
    Request {
        /// The id, as sent.
        id: RequestId,
        /// The method (`tools/call`, ...).
        method: String,
        /// The params object, as sent.
        params: Option<Box<RawValue>>,
    },
    /// A notification: no `id`, no answer.
    Notification {
        /// The method (`notifications/cancelled`, ...).
        method: String,
        /// The params object, as sent.
        params: Option<Box<RawValue>>,
    },
    /// A response the client sends to a request of the server (a sampling or
    /// elicitation result, in revisions up to 2025-11-25). Exactly one of
    /// `result` and `error` is present.
    Response {
        /// The id of the server's request; `None` only for an error response
        /// sent with `"id": null`.
        id: Option<RequestId>,
        /// The result, as sent.
        result: Option<Box<RawValue>>,
        /// The error object, as sent.
        error: Option<Box<RawValue>>,
    },
}

impl Message {
    /// The method of a request or notification.
    pub fn method(&self) -> Option<&str> {
        match self {
            Message::Request { method, .. } | Message::Notification { method, .. } => Some(method),
            Message::Response { .. } => None,
        }
    }

    /// The id of a request or response.
    pub fn id(&self) -> Option<&RequestId> {
        match self {
            Message::Request { id, .. } => Some(id),
            Message::Response { id, .. } => id.as_ref(),
            Message::Notification { .. } => None,
        }
    }

    /// The params of a request or notification, as sent.
    pub fn params(&self) -> Option<&RawValue> {
        match self {
            Message::Request { params, .. } | Message::Notification { params, .. } => {
                params.as_deref()
            }
            Message::Response { .. } => None,
        }
    }

    /// The params as a JSON object (empty when absent).
    pub(crate) fn params_object(&self) -> serde_json::Map<String, Value> {
        self.params()
            .and_then(|p| serde_json::from_str(p.get()).ok())
            .unwrap_or_default()
    }
}

/// Parses one JSON-RPC message from a POST body. Refuses malformed JSON,
/// batches, repeated keys and every deviation from JSON-RPC 2.0 and MCP's
/// rules for ids, with an error whose [`EnvelopeError::code`] is the JSON-RPC
/// code to answer with. Size limits are the caller's.
pub fn parse_message(body: &[u8]) -> Result<Message, EnvelopeError> {
    let object = parse_object(body)?;
    let mut jsonrpc = None;
    let mut id = None;
    let mut method = None;
    let mut params = None;
    let mut result = None;
    let mut error = None;
    for (key, value) in object.0 {
        match key.as_str() {
            "jsonrpc" => jsonrpc = Some(value),
            "id" => id = Some(value),
            "method" => method = Some(value),
            "params" => params = Some(value),
            "result" => result = Some(value),
            "error" => error = Some(value),
            _ => {}
        }
    }
    match jsonrpc {
        None => return Err(EnvelopeError::MissingVersion),
        Some(v) if v.get() == "\"2.0\"" => {}
        Some(v) => {
            // `"2\u002e0"` is "2.0" too.
            if serde_json::from_str::<String>(v.get()).ok().as_deref() != Some("2.0") {
                return Err(EnvelopeError::WrongVersion {
                    found: quote(v.get()),
                });
            }
        }
    }
    if let Some(p) = &params
        && !p.get().starts_with('{')
    {
        return Err(EnvelopeError::ParamsNotObject {
            found: kind_of_raw(p.get()),
        });
    }
    match method {
        Some(m) => {
            let method = match serde_json::from_str::<Value>(m.get()) {
                Ok(Value::String(s)) => s,
                _ => {
                    return Err(EnvelopeError::MethodNotString {
                        found: kind_of_raw(m.get()),
                    });
                }
            };
            if result.is_some() {
                return Err(EnvelopeError::Ambiguous { member: "result" });
            }
            if error.is_some() {
                return Err(EnvelopeError::Ambiguous { member: "error" });
            }
            match id {
                Some(raw) => Ok(Message::Request {
                    id: RequestId::from_raw(&raw)?,
                    method,
                    params,
                }),
                None => Ok(Message::Notification { method, params }),
            }
        }
        None => {
            if result.is_none() && error.is_none() {
                return Err(EnvelopeError::MissingMethod);
            }
            if result.is_some() && error.is_some() {
                return Err(EnvelopeError::ResultAndError);
            }
            let id = match id {
                None => return Err(EnvelopeError::ResponseWithoutId),
                // JSON-RPC lets an error answer carry a null id.
                Some(raw) if raw.get() == "null" && error.is_some() => None,
                Some(raw) => Some(RequestId::from_raw(&raw)?),
            };
            Ok(Message::Response { id, result, error })
        }
    }
}

/// Parses `body` as one JSON object with unique keys, keeping each member's bytes.
pub(crate) fn parse_object(body: &[u8]) -> Result<RawObject, EnvelopeError> {
    let duplicate: FirstDuplicate =
        serde_json::from_slice(body).map_err(|e| EnvelopeError::Parse {
            detail: e.to_string(),
        })?;
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        Some(b'[') => return Err(EnvelopeError::Batch),
        _ => {
            let text = String::from_utf8_lossy(body);
            return Err(EnvelopeError::NotAnObject {
                found: kind_of_raw(text.trim_start()),
            });
        }
    }
    if let Some(key) = duplicate.0 {
        return Err(EnvelopeError::DuplicateKey { key });
    }
    serde_json::from_slice(body).map_err(|e| EnvelopeError::Parse {
        detail: e.to_string(),
    })
}

/// "a string", "an object", ... for the JSON text `raw`.
pub(crate) fn kind_of_raw(raw: &str) -> &'static str {
    match raw.as_bytes().first() {
        Some(b'"') => "a string",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        Some(b'-' | b'0'..=b'9') => "a number",
        _ => "nothing",
    }
}

/// `text`, cut to [`QUOTE_CHARS`] characters.
pub(crate) fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// A JSON object as its members in order, each value kept as sent.
#[derive(Debug)]
pub(crate) struct RawObject(pub(crate) Vec<(String, Box<RawValue>)>);

impl RawObject {
    /// The value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| &**v)
    }

    /// Replaces the value of `key` (which must be present).
    pub(crate) fn set(&mut self, key: &str, value: Box<RawValue>) {
        if let Some(slot) = self.0.iter_mut().find(|(k, _)| k == key) {
            slot.1 = value;
        }
    }
}

impl<'de> Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RawObject, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = RawObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawObject, A::Error> {
                let mut members = Vec::new();
                while let Some(entry) = map.next_entry::<String, Box<RawValue>>()? {
                    members.push(entry);
                }
                Ok(RawObject(members))
            }
        }
        deserializer.deserialize_map(Members)
    }
}

impl Serialize for RawObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// The first key repeated within one object, anywhere in a JSON document.
struct FirstDuplicate(Option<String>);

impl<'de> Deserialize<'de> for FirstDuplicate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<FirstDuplicate, D::Error> {
        deserializer.deserialize_any(DuplicateFinder)
    }
}

struct DuplicateFinder;

impl<'de> Visitor<'de> for DuplicateFinder {
    type Value = FirstDuplicate;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<FirstDuplicate, E> {
        Ok(FirstDuplicate(None))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<FirstDuplicate, E> {
        Ok(FirstDuplicate(None))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<FirstDuplicate, E> {
        Ok(FirstDuplicate(None))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<FirstDuplicate, E> {
        Ok(FirstDuplicate(None))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<FirstDuplicate, E> {
        Ok(FirstDuplicate(None))
    }
    fn visit_unit<E: de::Error>(self) -> Result<FirstDuplicate, E> {
        Ok(FirstDuplicate(None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FirstDuplicate, A::Error> {
        let mut first = None;
        while let Some(FirstDuplicate(found)) = seq.next_element()? {
            first = first.or(found);
        }
        Ok(FirstDuplicate(first))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FirstDuplicate, A::Error> {
        let mut first = None;
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if first.is_some() {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let FirstDuplicate(inner) = map.next_value()?;
            if !seen.insert(key.clone()) {
                first = Some(key);
            } else {
                first = inner;
            }
        }
        Ok(FirstDuplicate(first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Message, EnvelopeError> {
        parse_message(body.as_bytes())
    }

    #[test]
    fn parses_a_request_keeping_id_and_params_as_sent() {
        let m = parse(r#"{"jsonrpc":"2.0","id":"a-1","method":"tools/call","params":{"name":"read", "arguments":{}}}"#).unwrap();
        let Message::Request { id, method, params } = m else {
            panic!("{m:?}")
        };
        assert_eq!(id.raw().get(), r#""a-1""#);
        assert_eq!(id.to_value(), Value::from("a-1"));
        assert_eq!(method, "tools/call");
        assert_eq!(params.unwrap().get(), r#"{"name":"read", "arguments":{}}"#);
    }

    #[test]
    fn keeps_a_huge_integer_id_byte_for_byte() {
        let m = parse(r#"{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"ping"}"#)
            .unwrap();
        assert_eq!(
            m.id().unwrap().to_string(),
            "123456789012345678901234567890"
        );
        let m = parse(r#"{"jsonrpc":"2.0","id":-7,"method":"ping"}"#).unwrap();
        assert_eq!(m.id().unwrap().to_value(), Value::from(-7));
    }

    #[test]
    fn tells_requests_notifications_and_responses_apart() {
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap(),
            Message::Notification { method, params: None } if method == "notifications/initialized"
        ));
        let m = parse(r#"{"jsonrpc":"2.0","id":5,"result":{"action":"accept"}}"#).unwrap();
        assert!(
            matches!(
                &m,
                Message::Response {
                    id: Some(_),
                    result: Some(_),
                    error: None
                }
            ),
            "{m:?}"
        );
        let m = parse(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-1,"message":"x"}}"#).unwrap();
        assert!(matches!(
            m,
            Message::Response {
                id: None,
                error: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn refuses_a_batch_saying_batching_is_not_supported() {
        let err = parse(r#" [{"jsonrpc":"2.0","id":1,"method":"ping"}]"#).unwrap_err();
        assert_eq!(err, EnvelopeError::Batch);
        assert_eq!(err.code(), -32600);
        assert_eq!(
            err.to_string(),
            "JSON-RPC batching is not supported in this protocol revision: send one request per POST"
        );
    }

    #[test]
    fn refuses_malformed_json_as_a_parse_error() {
        for body in [
            "",
            "{",
            r#"{"jsonrpc":"2.0"} x"#,
            "\u{feff}{}",
            r#"{"a":1,}"#,
        ] {
            let err = parse(body).unwrap_err();
            assert!(
                matches!(err, EnvelopeError::Parse { .. }),
                "{body:?}: {err:?}"
            );
            assert_eq!(err.code(), -32700);
        }
        let err = parse_message(b"{\"jsonrpc\":\"2.0\",\"method\":\"\xff\"}").unwrap_err();
        assert_eq!(err.code(), -32700);
    }

    #[test]
    fn refuses_wrong_or_missing_version() {
        assert_eq!(
            parse(r#"{"id":1,"method":"ping"}"#).unwrap_err(),
            EnvelopeError::MissingVersion
        );
        for (v, found) in [("\"1.0\"", "\"1.0\""), ("2.0", "2.0"), ("null", "null")] {
            let err = parse(&format!(r#"{{"jsonrpc":{v},"id":1,"method":"ping"}}"#)).unwrap_err();
            assert_eq!(
                err,
                EnvelopeError::WrongVersion {
                    found: found.into()
                }
            );
            assert_eq!(err.code(), -32600);
        }
        assert!(parse(r#"{"jsonrpc":"2\u002e0","id":1,"method":"ping"}"#).is_ok());
    }

    #[test]
    fn refuses_bad_methods_and_ids_with_precise_errors() {
        let err = parse(r#"{"jsonrpc":"2.0","id":1,"method":7}"#).unwrap_err();
        assert_eq!(err, EnvelopeError::MethodNotString { found: "a number" });
        let cases = [
            ("null", EnvelopeError::NullId),
            (
                "{}",
                EnvelopeError::BadId {
                    found: "an object".into(),
                },
            ),
            (
                "[1]",
                EnvelopeError::BadId {
                    found: "an array".into(),
                },
            ),
            (
                "true",
                EnvelopeError::BadId {
                    found: "a boolean".into(),
                },
            ),
            (
                "1.5",
                EnvelopeError::BadId {
                    found: "the number 1.5".into(),
                },
            ),
            (
                "1e3",
                EnvelopeError::BadId {
                    found: "the number 1e3".into(),
                },
            ),
        ];
        for (id, expected) in cases {
            let err =
                parse(&format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#)).unwrap_err();
            assert_eq!(err, expected, "id {id}");
            assert_eq!(err.code(), -32600);
        }
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0","id":1}"#).unwrap_err(),
            EnvelopeError::MissingMethod
        );
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}"#).unwrap_err(),
            EnvelopeError::Ambiguous { member: "result" }
        );
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0","result":{}}"#).unwrap_err(),
            EnvelopeError::ResponseWithoutId
        );
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{}}"#).unwrap_err(),
            EnvelopeError::ResultAndError
        );
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0","id":null,"result":{}}"#).unwrap_err(),
            EnvelopeError::NullId
        );
        assert_eq!(
            parse(r#""hello""#).unwrap_err(),
            EnvelopeError::NotAnObject { found: "a string" }
        );
    }

    #[test]
    fn refuses_params_that_are_not_an_object() {
        for (p, found) in [
            ("[1,2]", "an array"),
            ("null", "null"),
            ("\"x\"", "a string"),
        ] {
            let err = parse(&format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{p}}}"#
            ))
            .unwrap_err();
            assert_eq!(err, EnvelopeError::ParamsNotObject { found });
            assert_eq!(err.code(), -32602);
        }
    }

    #[test]
    fn refuses_a_key_repeated_at_any_depth() {
        let err =
            parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"ping"}"#).unwrap_err();
        assert_eq!(
            err,
            EnvelopeError::DuplicateKey {
                key: "method".into()
            }
        );
        let err = parse(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"to":"x","to":"y"}}}"#,
        )
        .unwrap_err();
        assert_eq!(err, EnvelopeError::DuplicateKey { key: "to".into() });
        // An escaped spelling of the same key is the same key.
        let err = parse(
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"a":[{"k":1,"\u006b":2}]}}"#,
        )
        .unwrap_err();
        assert_eq!(err, EnvelopeError::DuplicateKey { key: "k".into() });
        assert_eq!(err.code(), -32600);
        // The same key in sibling objects is fine.
        assert!(
            parse(r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"a":{"k":1},"b":{"k":2}}}"#)
                .is_ok()
        );
    }

    #[test]
    fn an_id_can_be_made_from_a_value() {
        assert_eq!(
            RequestId::from_value(&Value::from(3)).unwrap().to_string(),
            "3"
        );
        assert_eq!(
            RequestId::from_value(&Value::Null).unwrap_err(),
            EnvelopeError::NullId
        );
    }
}
