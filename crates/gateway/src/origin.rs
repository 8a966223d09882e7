//! The `Origin` check MCP requires of every Streamable HTTP server, against
//! DNS rebinding: a browser page must not reach the gateway from a site the
//! operator did not list. Answer a refused origin with HTTP 403.

/// True when `origin` may use the gateway: absent (clients other than
/// browsers send none), or equal to one of `allowed` once both are
/// normalized ([`normalize_origin`]). A present origin that cannot be read,
/// `null` included, is refused; so is every origin when `allowed` is empty.
pub fn origin_allowed(origin: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let Some(origin) = normalize_origin(origin) else {
        return false;
    };
    allowed
        .iter()
        .any(|a| normalize_origin(a).as_deref() == Some(origin.as_str()))
}

/// `scheme://host[:port]` with scheme and host in lowercase and a default
/// port (80 for `http`/`ws`, 443 for `https`/`wss`) left out; `None` for
/// anything else (a path, user info, an empty host, a bad port, `null`).
/// Use it to check configured origins at load.
pub fn normalize_origin(origin: &str) -> Option<String> {
    let (scheme, rest) = origin.split_once("://")?;
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return None;
    }
    let scheme = scheme.to_ascii_lowercase();
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (inside, after) = v6.split_once(']')?;
        if inside.is_empty()
            || !inside
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return None;
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (format!("[{inside}]"), port)
    } else {
        let (host, port) = match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        let host_ok = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
        if !host_ok {
            return None;
        }
        (host.to_owned(), port)
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok()?)
        }
        Some(_) => return None,
    };
    let default = match scheme.as_str() {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    };
    let host = host.to_ascii_lowercase();
    Some(match port {
        Some(p) if Some(p) != default => format!("{scheme}://{host}:{p}"),
        _ => format!("{scheme}://{host}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Vec<String> {
        vec![
            "https://app.example.com".into(),
            "http://localhost:3000".into(),
            "https://[::1]:8443".into(),
        ]
    }

    #[test]
    fn no_origin_is_allowed_and_listed_ones_match_case_insensitively() {
        assert!(origin_allowed(None, &allowed()));
        assert!(origin_allowed(Some("https://app.example.com"), &allowed()));
        assert!(origin_allowed(Some("HTTPS://App.Example.COM"), &allowed()));
        assert!(origin_allowed(
            Some("https://app.example.com:443"),
            &allowed()
        ));
        assert!(origin_allowed(Some("http://localhost:3000"), &allowed()));
        assert!(origin_allowed(Some("https://[::1]:8443"), &allowed()));
    }

    #[test]
    fn other_origins_are_refused() {
        for o in [
            "https://evil.example.com",
            "http://app.example.com",
            "https://app.example.com:8443",
            "http://localhost:3001",
            "https://app.example.com.evil.com",
            "https://app.example.com/",
            "https://user@app.example.com",
            "null",
            "",
            "https://",
            "https://app.example.com:99999",
        ] {
            assert!(!origin_allowed(Some(o), &allowed()), "{o}");
        }
        assert!(!origin_allowed(Some("https://app.example.com"), &[]));
    }

    #[test]
    fn normalizes_scheme_host_and_default_ports() {
        assert_eq!(
            normalize_origin("HTTP://LocalHost:80").as_deref(),
            Some("http://localhost")
        );
        assert_eq!(
            normalize_origin("https://a.b:0443").as_deref(),
            Some("https://a.b")
        );
        assert_eq!(normalize_origin("https://a.b:").as_deref(), None);
        assert_eq!(normalize_origin("https://[::1]x").as_deref(), None);
    }
}
