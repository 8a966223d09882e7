//! Decides what the MCP gateway does with each JSON-RPC message an agent sends
//! to an upstream MCP server over Streamable HTTP (MCP 2025-11-25 and 2026-07-28).
//!
//! The flow, for one POST: [`parse_message`] reads the body, keeping its bytes;
//! [`check_routing_headers`] refuses `Mcp-Method` / `Mcp-Name` headers that
//! disagree with it; [`gate`] says which question the message raises
//! ([`Gate`]); the `*_request` functions ([`tool_call_request`], ...) build
//! the Cedar request for the policy engine, the [`Catalog`] supplying what the
//! operator says about each tool; [`filter_tools_list`] and
//! [`filter_tools_list_sse`] narrow a `tools/list` answer to what the task may
//! call; [`error_response`] writes refusals with Mandate's codes.
//! [`protected_resource_metadata`], [`www_authenticate`] and
//! [`origin_allowed`] serve the HTTP edges. For the HTTP reverse proxy in
//! front of legacy REST APIs, [`RestRoutes`] maps a method and path to a
//! Cedar action and resource and [`rest_request`] builds its question.
//!
//! Everything here is a pure function over bytes and values: no network, no
//! clock, no store, no token checks. The server does HTTP, verifies task
//! tokens, asks policy and forwards.
//!
//! ```
//! use mandate_gateway::{
//!     Catalog, CatalogEntry, Gate, PolicySchema, ToolClass, check_routing_headers, gate,
//!     parse_message, tool_call_request,
//! };
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let body = br#"{"jsonrpc": "2.0", "id": 7, "method": "tools/call",
//!                 "params": {"name": "read", "arguments": {"path": "/q3.pdf"}}}"#;
//! let message = parse_message(body)?;
//! check_routing_headers(&message, Some("tools/call"), Some("read"))?;
//! let Gate::ToolCall { name, arguments } = gate(&message)? else { unreachable!() };
//!
//! // The catalog of upstream "files", keyed by its tools' names.
//! let read = CatalogEntry { class: ToolClass::Read, labels: vec![], egress: false, destructive: false };
//! let catalog = Catalog::new([("read".to_owned(), read)])?;
//! let (entry, known) = catalog.lookup(&name);
//! let task = serde_json::json!({"id": "t1", "tools": [{"__entity": {"type": "Tool", "id": "files.read"}}]});
//! let request = tool_call_request(
//!     "files", &name, &entry, known, &arguments, &task,
//!     "spiffe://mandate.local/agent/summariser", &[("env", "dev")],
//!     PolicySchema::Absent,
//! )?;
//! assert_eq!(request.resource.to_string(), r#"Tool::"files.read""#);
//! # Ok(())
//! # }
//! ```

mod catalog;
mod cedar;
mod envelope;
mod gate;
mod headers;
mod labels;
mod oauth;
mod origin;
mod reply;
mod rest;
mod sse;
mod tools_list;

pub use catalog::{Catalog, CatalogEntry, CatalogError, ToolClass, UNCLASSIFIED};
pub use cedar::{
    MAX_ARGUMENT_DEPTH, MAX_ARGUMENT_PATH, MAX_ARGUMENT_VALUES, PolicySchema, RequestError,
    SCHEMA_FRAGMENT, TaskScope, method_request, prompt_get_request, resource_read_request,
    tool_call_request, tool_id,
};
pub use envelope::{EnvelopeError, Message, RequestId, parse_message};
pub use gate::{Gate, gate};
pub use headers::{
    HeaderMismatch, MCP_METHOD_HEADER, MCP_NAME_HEADER, PROTOCOL_VERSION_HEADER,
    PROTOCOL_VERSION_META, STATELESS_PROTOCOL_VERSION, body_protocol_version,
    check_protocol_version_header, check_required_routing_headers, check_routing_headers,
    mcp_name_source, requires_routing_headers,
};
pub use labels::{INVALID_LABEL, RESULT_LABELS_KEY, result_labels};
pub use oauth::{
    DPOP_SIGNING_ALGS, WELL_KNOWN_PATH, protected_resource_metadata, resource_metadata_url,
    www_authenticate,
};
pub use origin::{normalize_origin, origin_allowed};
pub use reply::{
    APPROVAL_PENDING, AUDIT_UNAVAILABLE, DENIED_BY_POLICY, HEADER_MISMATCH, INTERNAL_ERROR,
    INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR, STATE_UNAVAILABLE,
    UPSTREAM_TIMEOUT, UPSTREAM_UNAVAILABLE, denial_data, error_response, tool_error_result,
};
pub use rest::{
    MatchError, PROXY_ACTION_GROUP, REST_SCHEMA_FRAGMENT, RestMatch, RestRoutes, RestRule,
    RuleError, rest_request,
};
pub use sse::{SseEvent, filter_tools_list_sse, parse_sse, write_sse};
pub use tools_list::filter_tools_list;
