//! The request headers that mirror the body (MCP 2026-07-28, SEP-2243).
//!
//! `Mcp-Method` mirrors `method`; `Mcp-Name` mirrors `params.name`
//! (`tools/call`, `prompts/get`) or `params.uri` (`resources/read`);
//! `MCP-Protocol-Version` mirrors `params._meta["io.modelcontextprotocol/protocolVersion"]`.
//! Load balancers and other intermediaries may act on the headers alone, so a
//! header that disagrees with the body is refused: Mandate decides on the body,
//! and nothing downstream may see a different story in the headers.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use crate::envelope::{Message, quote};
use crate::reply::HEADER_MISMATCH;

/// `Mcp-Method`.
pub const MCP_METHOD_HEADER: &str = "Mcp-Method";
/// `Mcp-Name`.
pub const MCP_NAME_HEADER: &str = "Mcp-Name";
/// `MCP-Protocol-Version`.
pub const PROTOCOL_VERSION_HEADER: &str = "MCP-Protocol-Version";
/// The `_meta` key that carries the protocol version in 2026-07-28 requests.
pub const PROTOCOL_VERSION_META: &str = "io.modelcontextprotocol/protocolVersion";
/// The stateless revision: per-request `_meta`, `server/discover`, required
/// `Mcp-Method` / `Mcp-Name`, no sessions and no `initialize`.
pub const STATELESS_PROTOCOL_VERSION: &str = "2026-07-28";

const SENTINEL_PREFIX: &str = "=?base64?";
const SENTINEL_SUFFIX: &str = "?=";

/// A header that is missing, malformed or disagrees with the body. Answer with
/// HTTP 400 and JSON-RPC code [`HeaderMismatch::code`] (`-32020`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderMismatch {
    /// A header the protocol version requires is absent.
    #[error("Header mismatch: the {header} header is required")]
    Missing {
        /// The header's name.
        header: &'static str,
    },
    /// A header's value differs from the body's.
    #[error("Header mismatch: {header} header value {header_value:?} does not match body value {}", body_value.as_deref().map_or_else(|| "(none)".to_owned(), |b| format!("{b:?}")))]
    Differs {
        /// The header's name.
        header: &'static str,
        /// The header's value, decoded.
        header_value: String,
        /// The body's value, if it has one.
        body_value: Option<String>,
    },
    /// A header's value is not a valid field value, or its Base64 sentinel
    /// does not decode to UTF-8.
    #[error("Header mismatch: {header} header value {value:?} is malformed: {why}")]
    Malformed {
        /// The header's name.
        header: &'static str,
        /// The value sent (cut short).
        value: String,
        /// What is wrong.
        why: &'static str,
    },
}

impl HeaderMismatch {
    /// `-32020`, MCP's `HeaderMismatch` code.
    pub fn code(&self) -> i64 {
        HEADER_MISMATCH
    }
}

/// The body member `Mcp-Name` mirrors for `method`: `name` for `tools/call`
/// and `prompts/get`, `uri` for `resources/read`, `None` for methods where the
/// header is not required.
pub fn mcp_name_source(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    }
}

/// Checks the headers that are present against the body: `Mcp-Method` must
/// equal `method`; `Mcp-Name`, once decoded from its `=?base64?...?=` form,
/// must equal `params.name` (`tools/call`, `prompts/get`) or `params.uri`
/// (`resources/read`). For other methods a present `Mcp-Name` must equal
/// `params.name`, `params.uri` or `params.taskId`, whichever the body has,
/// so an unvalidated header never passes. Absent headers are not checked
/// here: see [`check_required_routing_headers`].
pub fn check_routing_headers(
    msg: &Message,
    mcp_method: Option<&str>,
    mcp_name: Option<&str>,
) -> Result<(), HeaderMismatch> {
    if let Some(header) = mcp_method {
        let header = field_value(MCP_METHOD_HEADER, header)?;
        if msg.method() != Some(header) {
            return Err(HeaderMismatch::Differs {
                header: MCP_METHOD_HEADER,
                header_value: header.to_owned(),
                body_value: msg.method().map(str::to_owned),
            });
        }
    }
    if let Some(header) = mcp_name {
        let decoded = decode_sentinel(MCP_NAME_HEADER, header)?;
        let params = msg.params_object();
        let body_value = match msg.method() {
            None => None,
            Some(method) => match mcp_name_source(method) {
                Some(member) => string_member(&params, member),
                None => ["name", "uri", "taskId"]
                    .iter()
                    .filter_map(|m| string_member(&params, m))
                    .find(|v| *v == decoded)
                    .or_else(|| string_member(&params, "name"))
                    .or_else(|| string_member(&params, "uri")),
            },
        };
        if body_value != Some(decoded.as_str()) {
            return Err(HeaderMismatch::Differs {
                header: MCP_NAME_HEADER,
                header_value: quote(&decoded),
                body_value: body_value.map(quote),
            });
        }
    }
    Ok(())
}

/// As [`check_routing_headers`], and also requires the headers that MCP
/// 2026-07-28 makes mandatory: `Mcp-Method` on every request and
/// notification, `Mcp-Name` on `tools/call`, `resources/read` and
/// `prompts/get`. Use it when the request's protocol version is 2026-07-28 or
/// later ([`requires_routing_headers`]).
pub fn check_required_routing_headers(
    msg: &Message,
    mcp_method: Option<&str>,
    mcp_name: Option<&str>,
) -> Result<(), HeaderMismatch> {
    if let Some(method) = msg.method() {
        if mcp_method.is_none() {
            return Err(HeaderMismatch::Missing {
                header: MCP_METHOD_HEADER,
            });
        }
        if mcp_name_source(method).is_some() && mcp_name.is_none() {
            return Err(HeaderMismatch::Missing {
                header: MCP_NAME_HEADER,
            });
        }
    }
    check_routing_headers(msg, mcp_method, mcp_name)
}

/// True for protocol versions that require the mirrored headers: 2026-07-28
/// and later. Versions are dates, so they compare as strings.
pub fn requires_routing_headers(protocol_version: &str) -> bool {
    protocol_version.len() == STATELESS_PROTOCOL_VERSION.len()
        && protocol_version >= STATELESS_PROTOCOL_VERSION
}

/// The protocol version a 2026-07-28 request carries in
/// `params._meta["io.modelcontextprotocol/protocolVersion"]`.
pub fn body_protocol_version(msg: &Message) -> Option<String> {
    match msg
        .params_object()
        .get("_meta")?
        .get(PROTOCOL_VERSION_META)?
    {
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// Checks `MCP-Protocol-Version` against the body: when the body names a
/// version in `_meta`, the header must be present and equal. Bodies without
/// one (revisions up to 2025-11-25, which negotiate at `initialize`) are not
/// checked.
pub fn check_protocol_version_header(
    msg: &Message,
    header: Option<&str>,
) -> Result<(), HeaderMismatch> {
    let Some(body) = body_protocol_version(msg) else {
        return Ok(());
    };
    let Some(header) = header else {
        return Err(HeaderMismatch::Missing {
            header: PROTOCOL_VERSION_HEADER,
        });
    };
    if header != body {
        return Err(HeaderMismatch::Differs {
            header: PROTOCOL_VERSION_HEADER,
            header_value: quote(header),
            body_value: Some(quote(&body)),
        });
    }
    Ok(())
}

fn string_member<'a>(params: &'a Map<String, Value>, member: &str) -> Option<&'a str> {
    params.get(member).and_then(Value::as_str)
}

/// A plain header value: visible ASCII, spaces and tabs inside (RFC 9110 §5.5).
fn field_value<'a>(header: &'static str, value: &'a str) -> Result<&'a str, HeaderMismatch> {
    let ok = value
        .bytes()
        .all(|b| b == b'\t' || (0x20..=0x7e).contains(&b))
        && !value.starts_with([' ', '\t'])
        && !value.ends_with([' ', '\t']);
    if ok {
        Ok(value)
    } else {
        Err(HeaderMismatch::Malformed {
            header,
            value: quote(value),
            why: "only visible ASCII is allowed; encode other values as =?base64?...?=",
        })
    }
}

/// The value of a header that may use MCP's `=?base64?{value}?=` sentinel.
fn decode_sentinel(header: &'static str, value: &str) -> Result<String, HeaderMismatch> {
    let value = field_value(header, value)?;
    let Some(encoded) = value
        .strip_prefix(SENTINEL_PREFIX)
        .and_then(|v| v.strip_suffix(SENTINEL_SUFFIX))
    else {
        return Ok(value.to_owned());
    };
    let malformed = |why| HeaderMismatch::Malformed {
        header,
        value: quote(value),
        why,
    };
    let bytes = STANDARD
        .decode(encoded)
        .map_err(|_| malformed("the =?base64?...?= value is not valid Base64"))?;
    String::from_utf8(bytes).map_err(|_| malformed("the =?base64?...?= value is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::parse_message;

    fn msg(body: &str) -> Message {
        parse_message(body.as_bytes()).unwrap()
    }

    fn call(name: &str) -> Message {
        msg(&format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":{},"arguments":{{}}}}}}"#,
            Value::from(name)
        ))
    }

    #[test]
    fn matching_headers_pass_and_absent_ones_are_not_checked() {
        let m = call("files.read");
        assert_eq!(
            check_routing_headers(&m, Some("tools/call"), Some("files.read")),
            Ok(())
        );
        assert_eq!(check_routing_headers(&m, None, None), Ok(()));
    }

    #[test]
    fn a_method_header_that_disagrees_with_the_body_is_refused() {
        let m = call("delete_everything");
        let err = check_routing_headers(&m, Some("tools/list"), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"Header mismatch: Mcp-Method header value "tools/list" does not match body value "tools/call""#
        );
        assert_eq!(err.code(), -32020);
        // Values are case-sensitive.
        assert!(check_routing_headers(&m, Some("Tools/Call"), None).is_err());
    }

    #[test]
    fn a_name_header_that_disagrees_with_the_body_is_refused() {
        let m = call("delete_everything");
        let err = check_routing_headers(&m, Some("tools/call"), Some("read_report")).unwrap_err();
        assert_eq!(
            err,
            HeaderMismatch::Differs {
                header: "Mcp-Name",
                header_value: "read_report".into(),
                body_value: Some("delete_everything".into()),
            }
        );
    }

    #[test]
    fn the_name_header_mirrors_the_uri_of_resources_read() {
        let m = msg(
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a.txt","name":"b"}}"#,
        );
        assert_eq!(
            check_routing_headers(&m, Some("resources/read"), Some("file:///a.txt")),
            Ok(())
        );
        assert!(check_routing_headers(&m, None, Some("b")).is_err());
    }

    #[test]
    fn a_base64_name_is_decoded_before_comparing() {
        let m = call("Hello, 世界");
        assert_eq!(
            check_routing_headers(&m, None, Some("=?base64?SGVsbG8sIOS4lueVjA==?=")),
            Ok(())
        );
        // A literal that looks like the sentinel must itself be encoded.
        let m = call("=?base64?literal?=");
        assert!(check_routing_headers(&m, None, Some("=?base64?literal?=")).is_err());
        assert_eq!(
            check_routing_headers(&m, None, Some("=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=")),
            Ok(())
        );
        let err = check_routing_headers(&m, None, Some("=?base64?!!!?=")).unwrap_err();
        assert!(matches!(err, HeaderMismatch::Malformed { .. }), "{err:?}");
    }

    #[test]
    fn malformed_header_values_are_refused() {
        let m = call("a");
        for bad in [" a", "a ", "a\nb", "é"] {
            let err = check_routing_headers(&m, None, Some(bad)).unwrap_err();
            assert!(matches!(err, HeaderMismatch::Malformed { .. }), "{bad:?}");
        }
    }

    #[test]
    fn a_name_header_on_a_method_without_a_name_is_refused() {
        let m = msg(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
        assert!(check_routing_headers(&m, Some("tools/list"), Some("files.read")).is_err());
        let m = msg(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
        assert!(check_routing_headers(&m, Some("tools/call"), None).is_err());
        // For other methods it may mirror name, uri or taskId, but must mirror one.
        let m = msg(r#"{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"taskId":"t1"}}"#);
        assert_eq!(check_routing_headers(&m, None, Some("t1")), Ok(()));
        assert!(check_routing_headers(&m, None, Some("t2")).is_err());
    }

    #[test]
    fn the_stateless_revision_requires_the_headers() {
        let m = call("a");
        assert_eq!(
            check_required_routing_headers(&m, None, Some("a")),
            Err(HeaderMismatch::Missing {
                header: "Mcp-Method"
            })
        );
        assert_eq!(
            check_required_routing_headers(&m, Some("tools/call"), None),
            Err(HeaderMismatch::Missing { header: "Mcp-Name" })
        );
        let list = msg(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
        assert_eq!(
            check_required_routing_headers(&list, Some("tools/list"), None),
            Ok(())
        );
        assert!(requires_routing_headers("2026-07-28"));
        assert!(requires_routing_headers("2027-01-01"));
        assert!(!requires_routing_headers("2025-11-25"));
        assert!(!requires_routing_headers("garbage"));
    }

    #[test]
    fn the_protocol_version_header_must_match_the_body_meta() {
        let m = msg(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        );
        assert_eq!(body_protocol_version(&m).as_deref(), Some("2026-07-28"));
        assert_eq!(
            check_protocol_version_header(&m, Some("2026-07-28")),
            Ok(())
        );
        assert!(check_protocol_version_header(&m, Some("2025-11-25")).is_err());
        assert!(check_protocol_version_header(&m, None).is_err());
        let old = msg(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
        assert_eq!(
            check_protocol_version_header(&old, Some("2025-11-25")),
            Ok(())
        );
    }
}
