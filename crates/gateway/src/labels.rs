//! Data labels an upstream puts on a tool's result.
//!
//! An MCP server that knows how sensitive what it returns is can say so in
//! `_meta` under [`RESULT_LABELS_KEY`], on the result or on any content item:
//!
//! ```json
//! {"jsonrpc": "2.0", "id": 7, "result": {
//!   "content": [{"type": "text", "text": "...", "_meta": {"mandate/labels": ["confidential"]}}],
//!   "_meta": {"mandate/labels": ["finance"]}}}
//! ```
//!
//! The gateway adds them, with the catalog's labels for the tool, to the
//! task's session before the result reaches the agent. A label that is not a
//! valid label ([`mandate_core::normalize_label`]) is kept as
//! [`INVALID_LABEL`], so a server cannot make a label vanish by misspelling it.

use serde_json::Value;

use crate::sse::parse_sse;

/// The `_meta` key of result labels (MCP's `prefix/name` form).
pub const RESULT_LABELS_KEY: &str = "mandate/labels";

/// What an unreadable label becomes.
pub const INVALID_LABEL: &str = "invalid-label";

/// Every label of a `tools/call` answer `body` (JSON, or SSE when `is_sse`),
/// normalized, sorted, each once. Bodies that do not mention the key cost one
/// substring search.
pub fn result_labels(body: &[u8], is_sse: bool) -> Vec<String> {
    let needle = RESULT_LABELS_KEY.as_bytes();
    if !body.windows(needle.len()).any(|w| w == needle) {
        return Vec::new();
    }
    let mut labels = Vec::new();
    if is_sse {
        for event in parse_sse(body) {
            if let Ok(message) = serde_json::from_str::<Value>(&event.data) {
                collect(&message, &mut labels);
            }
        }
    } else if let Ok(message) = serde_json::from_slice::<Value>(body) {
        collect(&message, &mut labels);
    }
    labels.sort();
    labels.dedup();
    labels
}

fn collect(message: &Value, out: &mut Vec<String>) {
    let Some(result) = message.get("result") else {
        return;
    };
    let metas = std::iter::once(result.get("_meta")).chain(
        result
            .get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|item| item.get("_meta")),
    );
    for meta in metas.flatten() {
        match meta.get(RESULT_LABELS_KEY) {
            None => {}
            Some(Value::Array(items)) => {
                for item in items {
                    out.push(
                        item.as_str()
                            .and_then(mandate_core::normalize_label)
                            .unwrap_or_else(|| INVALID_LABEL.to_owned()),
                    );
                }
            }
            Some(Value::String(one)) => out.push(
                mandate_core::normalize_label(one).unwrap_or_else(|| INVALID_LABEL.to_owned()),
            ),
            Some(_) => out.push(INVALID_LABEL.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_come_from_the_result_and_its_content_items() {
        let body = json!({"jsonrpc": "2.0", "id": 1, "result": {
            "content": [
                {"type": "text", "text": "a", "_meta": {"mandate/labels": ["Confidential", "pii"]}},
                {"type": "text", "text": "b"}
            ],
            "_meta": {"mandate/labels": ["finance", "pii"]}
        }});
        assert_eq!(
            result_labels(body.to_string().as_bytes(), false),
            ["confidential", "finance", "pii"]
        );
    }

    #[test]
    fn sse_answers_are_read_event_by_event() {
        let response = json!({"jsonrpc": "2.0", "id": 1, "result": {
            "content": [], "_meta": {"mandate/labels": ["secret"]}}});
        let body = format!(
            "event: message\ndata: {}\n\nevent: message\ndata: {response}\n\n",
            json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {}})
        );
        assert_eq!(result_labels(body.as_bytes(), true), ["secret"]);
    }

    #[test]
    fn a_label_a_server_gets_wrong_is_kept_as_invalid_not_dropped() {
        for meta in [
            json!({"mandate/labels": ["con fidential"]}),
            json!({"mandate/labels": [7]}),
            json!({"mandate/labels": {"a": 1}}),
        ] {
            let body = json!({"jsonrpc": "2.0", "id": 1, "result": {"content": [], "_meta": meta}});
            assert_eq!(
                result_labels(body.to_string().as_bytes(), false),
                [INVALID_LABEL]
            );
        }
        let one =
            json!({"jsonrpc": "2.0", "id": 1, "result": {"_meta": {"mandate/labels": "PII"}}});
        assert_eq!(result_labels(one.to_string().as_bytes(), false), ["pii"]);
    }

    #[test]
    fn answers_without_labels_have_none() {
        let plain = json!({"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "ok"}]}});
        assert!(result_labels(plain.to_string().as_bytes(), false).is_empty());
        // An error, or the key in the text of the content, labels nothing.
        let error =
            json!({"jsonrpc": "2.0", "id": 1, "error": {"code": 1, "message": "mandate/labels"}});
        assert!(result_labels(error.to_string().as_bytes(), false).is_empty());
        assert!(result_labels(b"not json mandate/labels", false).is_empty());
    }
}
