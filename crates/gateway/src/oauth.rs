//! How an MCP client learns to authenticate to the gateway: OAuth 2.0
//! Protected Resource Metadata (RFC 9728) and the `WWW-Authenticate`
//! challenge that points to it (RFC 9728 §5.1, RFC 9449 §7.1).

use mandate_tokens::AGENT_TASK_TYPE;
use serde_json::{Value, json};

/// The well-known path suffix of RFC 9728 §3.
pub const WELL_KNOWN_PATH: &str = "/.well-known/oauth-protected-resource";

/// The DPoP proof algorithms `mandate-tokens` verifies.
pub const DPOP_SIGNING_ALGS: &[&str] = &[
    "ES256", "ES384", "EdDSA", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
];

/// The metadata document for the gateway's MCP endpoint `resource` (its URL,
/// the resource identifier tokens are issued for). Tokens go in the
/// `Authorization` header, bound either to a DPoP key or to an mTLS client
/// certificate, so `dpop_bound_access_tokens_required` is `false` (set it to
/// `true` on the returned value where mTLS-bound tokens are not accepted).
/// Tasks are asked for with RFC 9396 `authorization_details` of type
/// `agent_task`.
pub fn protected_resource_metadata(
    resource: &str,
    authorization_servers: &[String],
    resource_name: &str,
) -> Value {
    json!({
        "resource": resource,
        "authorization_servers": authorization_servers,
        "bearer_methods_supported": ["header"],
        "dpop_signing_alg_values_supported": DPOP_SIGNING_ALGS,
        "dpop_bound_access_tokens_required": false,
        "tls_client_certificate_bound_access_tokens": true,
        "authorization_details_types_supported": [AGENT_TASK_TYPE],
        "resource_name": resource_name,
    })
}

/// Where the metadata of `resource` lives (RFC 9728 §3.1): the well-known
/// path inserted between the host and the path, a lone trailing `/` dropped.
/// `https://gw.example/mcp` → `https://gw.example/.well-known/oauth-protected-resource/mcp`.
/// `None` for a URL without `scheme://host`, or with a fragment.
pub fn resource_metadata_url(resource: &str) -> Option<String> {
    let (scheme, rest) = resource.split_once("://")?;
    if scheme.is_empty() || rest.contains('#') {
        return None;
    }
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(split);
    if authority.is_empty() {
        return None;
    }
    let tail = if tail == "/" { "" } else { tail };
    let tail = tail
        .strip_prefix('/')
        .map_or_else(|| tail.to_owned(), |path| format!("/{path}"));
    Some(format!("{scheme}://{authority}{WELL_KNOWN_PATH}{tail}"))
}

/// The `WWW-Authenticate` value of a 401 from the gateway:
/// `DPoP resource_metadata="<url>"`, then `error` and `error_description`
/// when given. Values are quoted strings; since RFC 6750 §3 forbids `"` and
/// `\` in `error_description` even escaped, a `"` becomes `'`, a `\` becomes
/// `/`, and any character outside printable ASCII becomes `?`, so no value
/// can end the string early or start another header line.
pub fn www_authenticate(resource_metadata_url: &str, error: Option<(&str, &str)>) -> String {
    let mut out = format!(
        "DPoP resource_metadata=\"{}\"",
        quoted(resource_metadata_url)
    );
    if let Some((code, description)) = error {
        out.push_str(&format!(
            ", error=\"{}\", error_description=\"{}\"",
            quoted(code),
            quoted(description)
        ));
    }
    out
}

fn quoted(value: &str) -> String {
    value
        .chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            ' '..='~' => c,
            _ => '?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_names_the_resource_its_servers_and_token_bindings() {
        let m = protected_resource_metadata(
            "https://gw.example/mcp",
            &["https://mandate.example".to_owned()],
            "Mandate gateway",
        );
        assert_eq!(
            m,
            json!({
                "resource": "https://gw.example/mcp",
                "authorization_servers": ["https://mandate.example"],
                "bearer_methods_supported": ["header"],
                "dpop_signing_alg_values_supported":
                    ["ES256", "ES384", "EdDSA", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"],
                "dpop_bound_access_tokens_required": false,
                "tls_client_certificate_bound_access_tokens": true,
                "authorization_details_types_supported": ["agent_task"],
                "resource_name": "Mandate gateway",
            })
        );
    }

    #[test]
    fn the_metadata_url_inserts_the_well_known_path_after_the_host() {
        let url = |r| resource_metadata_url(r);
        assert_eq!(
            url("https://gw.example/mcp").as_deref(),
            Some("https://gw.example/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(
            url("https://gw.example:8443/").as_deref(),
            Some("https://gw.example:8443/.well-known/oauth-protected-resource")
        );
        assert_eq!(
            url("https://gw.example").as_deref(),
            Some("https://gw.example/.well-known/oauth-protected-resource")
        );
        assert_eq!(
            url("https://gw.example/a/b?x=1").as_deref(),
            Some("https://gw.example/.well-known/oauth-protected-resource/a/b?x=1")
        );
        assert_eq!(url("gw.example/mcp"), None);
        assert_eq!(url("https://gw.example/mcp#f"), None);
    }

    #[test]
    fn the_challenge_points_to_the_metadata_and_cannot_be_broken_out_of() {
        assert_eq!(
            www_authenticate(
                "https://gw.example/.well-known/oauth-protected-resource/mcp",
                None
            ),
            r#"DPoP resource_metadata="https://gw.example/.well-known/oauth-protected-resource/mcp""#
        );
        assert_eq!(
            www_authenticate(
                "https://gw/x",
                Some((
                    "invalid_token",
                    "task \"q3\" has ended\r\nSet-Cookie: a=b \\ é"
                ))
            ),
            r#"DPoP resource_metadata="https://gw/x", error="invalid_token", error_description="task 'q3' has ended??Set-Cookie: a=b / ?""#
        );
    }
}
