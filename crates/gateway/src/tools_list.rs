//! Narrowing an upstream's `tools/list` answer to the tools a task may call.
//!
//! Everything else is kept as the upstream sent it, byte for byte: other
//! members of the response and of `result` (`nextCursor`, `ttlMs`, `_meta`,
//! members of later revisions), and every member of each kept tool. Only
//! `cacheScope`, when present, becomes `"private"`: the narrowed list depends
//! on who asked, so no shared cache may hand it to anyone else.
//! An answer that cannot be read with certainty is refused, never forwarded.

use serde_json::value::RawValue;

use crate::envelope::{EnvelopeError, RawObject, parse_object};

/// Drops from a JSON-RPC response to `tools/list` every tool whose `name` is
/// not `allowed`, and re-serializes it (see the module docs). An error
/// response, or a result without `tools`, is returned unchanged. Refused as
/// [`EnvelopeError::BadUpstreamResponse`] (or a parse error): a body that is
/// not one JSON-RPC response, a repeated key anywhere, `tools` that is not
/// an array, a tool that is not an object or has no string `name`.
pub fn filter_tools_list(
    result_body: &[u8],
    allowed: impl Fn(&str) -> bool,
) -> Result<Vec<u8>, EnvelopeError> {
    let mut response = parse_object(result_body)?;
    let Some(result) = response.get("result") else {
        if response.get("error").is_some() {
            return Ok(result_body.to_vec());
        }
        return Err(bad("the body has neither \"result\" nor \"error\""));
    };
    if !result.get().starts_with('{') {
        return Err(bad("\"result\" is not an object"));
    }
    let mut result: RawObject =
        serde_json::from_str(result.get()).map_err(|e| bad(&e.to_string()))?;
    let Some(tools) = result.get("tools") else {
        return Ok(result_body.to_vec());
    };
    let tools: Vec<Box<RawValue>> =
        serde_json::from_str(tools.get()).map_err(|_| bad("\"result.tools\" is not an array"))?;
    let mut kept = Vec::with_capacity(tools.len());
    for (i, tool) in tools.into_iter().enumerate() {
        let name = tool_name(&tool)
            .ok_or_else(|| bad(&format!("result.tools[{i}] has no string \"name\"")))?;
        if allowed(&name) {
            kept.push(tool);
        }
    }
    result.set("tools", raw(&kept)?);
    if result.get("cacheScope").is_some() {
        result.set("cacheScope", raw(&"private")?);
    }
    response.set("result", raw(&result)?);
    serde_json::to_vec(&response).map_err(|e| bad(&e.to_string()))
}

fn tool_name(tool: &RawValue) -> Option<String> {
    if !tool.get().starts_with('{') {
        return None;
    }
    let members: RawObject = serde_json::from_str(tool.get()).ok()?;
    serde_json::from_str::<String>(members.get("name")?.get()).ok()
}

fn raw<T: serde::Serialize + ?Sized>(value: &T) -> Result<Box<RawValue>, EnvelopeError> {
    serde_json::value::to_raw_value(value).map_err(|e| bad(&e.to_string()))
}

fn bad(reason: &str) -> EnvelopeError {
    EnvelopeError::BadUpstreamResponse {
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(body: &str, allowed: &[&str]) -> Result<String, EnvelopeError> {
        filter_tools_list(body.as_bytes(), |n| allowed.contains(&n))
            .map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn keeps_allowed_tools_and_every_unknown_field_as_sent() {
        let body = r#"{"jsonrpc":"2.0","id":"l-1","result":{"tools":[
            {"name":"read","description":"Reads","inputSchema":{"type":"object","x-mcp-header":"R"},"annotations":{"readOnlyHint":true},"x-vendor":[1,2.50,"é"]},
            {"name":"delete","description":"Deletes"}
          ],"nextCursor":"c2","_meta":{"k":1},"futureField":{"a":null}},"extra":true}"#;
        assert_eq!(
            filter(body, &["read"]).unwrap(),
            r#"{"jsonrpc":"2.0","id":"l-1","result":{"tools":[{"name":"read","description":"Reads","inputSchema":{"type":"object","x-mcp-header":"R"},"annotations":{"readOnlyHint":true},"x-vendor":[1,2.50,"é"]}],"nextCursor":"c2","_meta":{"k":1},"futureField":{"a":null}},"extra":true}"#
        );
    }

    #[test]
    fn a_narrowed_list_is_never_publicly_cacheable() {
        let body = r#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"complete","tools":[{"name":"a"}],"ttlMs":60000,"cacheScope":"public"}}"#;
        assert_eq!(
            filter(body, &[]).unwrap(),
            r#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"complete","tools":[],"ttlMs":60000,"cacheScope":"private"}}"#
        );
    }

    #[test]
    fn error_responses_and_results_without_tools_pass_unchanged() {
        let err = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}}"#;
        assert_eq!(filter(err, &[]).unwrap(), err);
        let other = r#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"input_required"}}"#;
        assert_eq!(filter(other, &[]).unwrap(), other);
    }

    #[test]
    fn refuses_what_it_cannot_read_with_certainty() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":{"name":"a"}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"title":"a"}]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":["a"]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":7}]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":[]}"#,
            r#"{"jsonrpc":"2.0","id":1}"#,
        ] {
            let err = filter(body, &["a"]).unwrap_err();
            assert!(
                matches!(err, EnvelopeError::BadUpstreamResponse { .. }),
                "{body}: {err:?}"
            );
            assert_eq!(err.code(), -32603);
        }
        // Two `tools` (or two names in one tool) could be read either way.
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[],"tools":[{"name":"secret"}]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a","name":"secret"}]}}"#,
        ] {
            assert!(matches!(
                filter(body, &["a"]).unwrap_err(),
                EnvelopeError::DuplicateKey { .. }
            ));
        }
        assert_eq!(
            filter(r#"[{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}]"#, &[]).unwrap_err(),
            EnvelopeError::Batch
        );
        assert!(matches!(
            filter("not json", &[]).unwrap_err(),
            EnvelopeError::Parse { .. }
        ));
    }

    #[test]
    fn names_are_compared_decoded() {
        let body =
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"re\u0061d"},{"name":"x"}]}}"#;
        assert_eq!(
            filter(body, &["read"]).unwrap(),
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"re\u0061d"}]}}"#
        );
    }
}
