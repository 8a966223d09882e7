//! Server-Sent Events, as an upstream answers a POST with
//! `Content-Type: text/event-stream` (WHATWG HTML, "Server-sent events",
//! §9.2.6 "Interpreting an event stream").
//!
//! Reading follows the standard: UTF-8 (invalid bytes replaced), one leading
//! BOM dropped, lines ended by CRLF, LF or CR, `:` comments ignored, one space
//! after the colon removed, `data` lines joined with LF, `retry` only when all
//! digits, an `id` containing NUL ignored, and an event only at a blank line:
//! a block the stream ends in the middle of is not an event, as a browser
//! would not dispatch it either. Unlike a browser, events with empty data
//! (MCP's "priming" event, an `id` and an empty `data`) and `retry`-only
//! events are kept, so that forwarding preserves them; comments are not kept.

use crate::envelope::EnvelopeError;
use crate::tools_list::filter_tools_list;

/// One event of a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `id` field.
    pub id: Option<String>,
    /// The `event` field (the type; `message` when absent).
    pub event: Option<String>,
    /// The `data` lines, joined with `\n`.
    pub data: String,
    /// The `retry` field, in milliseconds.
    pub retry: Option<u64>,
}

/// Every event of `body` (see the module docs).
pub fn parse_sse(body: &[u8]) -> Vec<SseEvent> {
    let text = String::from_utf8_lossy(body);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut events = Vec::new();
    let mut current = SseEvent::default();
    let mut data_lines: Option<Vec<&str>> = None;
    let mut any_field = false;
    let mut rest = text;
    // Only lines with a terminator count: the text after the last one is an
    // unfinished line of an unfinished event.
    while let Some(end) = rest.find(['\r', '\n']) {
        let line = &rest[..end];
        let skip = if rest[end..].starts_with("\r\n") {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
        if line.is_empty() {
            if any_field {
                current.data = data_lines.take().unwrap_or_default().join("\n");
                events.push(std::mem::take(&mut current));
            }
            current = SseEvent::default();
            data_lines = None;
            any_field = false;
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => {
                current.event = Some(value.to_owned());
                any_field = true;
            }
            "data" => {
                data_lines.get_or_insert_with(Vec::new).push(value);
                any_field = true;
            }
            "id" if !value.contains('\0') => {
                current.id = Some(value.to_owned());
                any_field = true;
            }
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse() {
                    current.retry = Some(ms);
                    any_field = true;
                }
            }
            _ => {}
        }
    }
    events
}

/// The stream for `events`, LF-terminated. Data is split into one `data`
/// line per line (CRLF, LF and CR all end a line, as a reader would see
/// them); CR, LF and NUL are removed from `id` and `event`, which cannot carry them.
pub fn write_sse(events: &[SseEvent]) -> Vec<u8> {
    let mut out = String::new();
    let clean = |s: &str| s.replace(['\r', '\n', '\0'], "");
    for event in events {
        if let Some(id) = &event.id {
            out.push_str("id: ");
            out.push_str(&clean(id));
            out.push('\n');
        }
        if let Some(kind) = &event.event {
            out.push_str("event: ");
            out.push_str(&clean(kind));
            out.push('\n');
        }
        if let Some(ms) = event.retry {
            out.push_str(&format!("retry: {ms}\n"));
        }
        let data = event.data.replace("\r\n", "\n").replace('\r', "\n");
        for line in data.split('\n') {
            out.push_str("data:");
            if !line.is_empty() {
                out.push(' ');
                out.push_str(line);
            }
            out.push('\n');
        }
        out.push('\n');
    }
    out.into_bytes()
}

/// Applies [`filter_tools_list`] to every event that carries a JSON-RPC
/// result, keeping every other event (notifications, server requests, errors,
/// empty priming events) as it was. Refused: data that is not JSON (a reader
/// more lenient than this one might still find tools in it) or a JSON array.
pub fn filter_tools_list_sse(
    body: &[u8],
    allowed: impl Fn(&str) -> bool,
) -> Result<Vec<u8>, EnvelopeError> {
    let mut events = parse_sse(body);
    for event in &mut events {
        if event.data.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(&event.data).map_err(|e| EnvelopeError::BadUpstreamResponse {
                reason: format!("an event's data is not JSON: {e}"),
            })?;
        match &value {
            serde_json::Value::Array(_) => return Err(EnvelopeError::Batch),
            serde_json::Value::Object(m) if m.contains_key("result") => {
                let filtered = filter_tools_list(event.data.as_bytes(), &allowed)?;
                event.data =
                    String::from_utf8(filtered).expect("filtering UTF-8 JSON yields UTF-8 JSON");
            }
            _ => {}
        }
    }
    Ok(write_sse(&events))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: Option<&str>, event: Option<&str>, data: &str, retry: Option<u64>) -> SseEvent {
        SseEvent {
            id: id.map(str::to_owned),
            event: event.map(str::to_owned),
            data: data.to_owned(),
            retry,
        }
    }

    #[test]
    fn reads_fields_multi_line_data_and_every_line_ending() {
        let body = b"\xef\xbb\xbf: a comment\r\nid: 1\r\nevent: message\rdata: {\"a\":\ndata:1}\n\ndata:  two spaces\nretry: 3000\nunknown: x\n\n";
        assert_eq!(
            parse_sse(body),
            vec![
                ev(Some("1"), Some("message"), "{\"a\":\n1}", None),
                ev(None, None, " two spaces", Some(3000)),
            ]
        );
    }

    #[test]
    fn keeps_priming_and_retry_only_events_and_drops_comment_only_blocks() {
        let body = b"id: prime-0\ndata:\n\n: keepalive\n\nretry: 500\n\nfield-only\n\n";
        assert_eq!(
            parse_sse(body),
            vec![
                ev(Some("prime-0"), None, "", None),
                ev(None, None, "", Some(500)),
            ]
        );
    }

    #[test]
    fn ignores_bad_retry_and_ids_with_nul_and_an_unfinished_last_event() {
        let body = b"retry: 12a\nid: a\0b\ndata: x\n\ndata: cut off\n";
        assert_eq!(parse_sse(body), vec![ev(None, None, "x", None)]);
        assert_eq!(parse_sse(b"data: no terminator"), vec![]);
        assert_eq!(parse_sse(b"data\n\n"), vec![ev(None, None, "", None)]);
    }

    #[test]
    fn writing_then_reading_gives_the_same_events() {
        let events = vec![
            ev(Some("7"), Some("message"), "line1\nline2\n", Some(10)),
            ev(None, None, " leading space", None),
            ev(Some("p"), None, "", None),
        ];
        let written = write_sse(&events);
        assert_eq!(
            String::from_utf8(written.clone()).unwrap(),
            "id: 7\nevent: message\nretry: 10\ndata: line1\ndata: line2\ndata:\n\ndata:  leading space\n\nid: p\ndata:\n\n"
        );
        assert_eq!(parse_sse(&written), events);
    }

    #[test]
    fn writing_cannot_inject_fields() {
        let events = vec![ev(
            Some("1\ndata: evil"),
            Some("x\r\nid: 2"),
            "a\rid: 3",
            None,
        )];
        let read = parse_sse(&write_sse(&events));
        assert_eq!(
            read,
            vec![ev(Some("1data: evil"), Some("xid: 2"), "a\nid: 3", None)]
        );
    }

    #[test]
    fn filters_the_tools_list_response_and_keeps_other_events() {
        let body = concat!(
            "id: 0\ndata:\n\n",
            "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n",
            ": keepalive\n\n",
            "event: message\nid: 1\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"tools\":[\n",
            "data: {\"name\":\"read\",\"x\":1},{\"name\":\"delete\"}]}}\n\n",
        );
        let out = filter_tools_list_sse(body.as_bytes(), |n| n == "read").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            concat!(
                "id: 0\ndata:\n\n",
                "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n",
                "id: 1\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"tools\":[{\"name\":\"read\",\"x\":1}]}}\n\n",
            )
        );
    }

    #[test]
    fn refuses_streams_it_cannot_read_with_certainty() {
        let not_json = b"data: {\"result\": {\"tools\": [\n\n";
        assert!(matches!(
            filter_tools_list_sse(not_json, |_| false).unwrap_err(),
            EnvelopeError::BadUpstreamResponse { .. }
        ));
        let batch =
            b"data: [{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"x\"}]}}]\n\n";
        assert_eq!(
            filter_tools_list_sse(batch, |_| false).unwrap_err(),
            EnvelopeError::Batch
        );
        let dup = b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[]},\"result\":{\"tools\":[{\"name\":\"x\"}]}}\n\n";
        assert!(matches!(
            filter_tools_list_sse(dup, |_| false).unwrap_err(),
            EnvelopeError::DuplicateKey { .. }
        ));
    }
}
