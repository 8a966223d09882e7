//! Comparing a DPoP proof's `htu` with the request's URI (RFC 9449 §4.3 step 9):
//! query and fragment dropped, then RFC 3986 §6.2.2 syntax-based and §6.2.3
//! scheme-based normalization (scheme and host lowercased, default port and
//! dot segments removed, percent-encoding case and unreserved characters
//! normalized, an empty path made `/`).

/// The normalized form of an absolute `http(s)` URI, or `None` if it is not one.
pub(crate) fn normalize(uri: &str) -> Option<String> {
    let end = uri.find(['?', '#']).unwrap_or(uri.len());
    let (scheme, rest) = uri[..end].split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => "443",
        "http" => "80",
        _ => return None,
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let (host, port) = if authority.starts_with('[') {
        let close = authority.find(']')?;
        let (host, tail) = authority.split_at(close + 1);
        match tail {
            "" => (host, ""),
            _ => (host, tail.strip_prefix(':')?),
        }
    } else {
        authority.rsplit_once(':').unwrap_or((authority, ""))
    };
    if host.is_empty()
        || !host.bytes().all(|b| b.is_ascii_graphic())
        || !port.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut out = format!("{scheme}://{}", host.to_ascii_lowercase());
    if !port.is_empty() && port != default_port {
        out.push(':');
        out.push_str(port);
    }
    out.push_str(&remove_dot_segments(&normalize_percent(path)?));
    Some(out)
}

/// Uppercases percent-encodings and decodes those of unreserved characters.
fn normalize_percent(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = path.get(i + 1..i + 3)?;
            let byte = u8::from_str_radix(hex, 16).ok()?;
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                out.push(char::from(byte));
            } else {
                out.push('%');
                out.push_str(&hex.to_ascii_uppercase());
            }
            i += 3;
        } else {
            let ch = path[i..].chars().next()?;
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    Some(out)
}

/// RFC 3986 §5.2.4 for an absolute path; an empty path becomes `/`.
fn remove_dot_segments(path: &str) -> String {
    let Some(rest) = path.strip_prefix('/') else {
        return "/".to_owned();
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    let mut trailing_slash = false;
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." => trailing_slash = last,
            ".." => {
                out.pop();
                trailing_slash = last;
            }
            s => out.push(s),
        }
    }
    let mut path = format!("/{}", out.join("/"));
    if trailing_slash && !out.is_empty() {
        path.push('/');
    }
    path
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn ignores_query_fragment_case_of_scheme_and_host_and_default_port() {
        let n = |u| normalize(u).unwrap();
        let base = n("https://server.example.com/v1/tools");
        for same in [
            "HTTPS://Server.Example.COM/v1/tools",
            "https://server.example.com:443/v1/tools?page=2",
            "https://server.example.com/v1/tools#frag",
            "https://server.example.com/v1/./x/../tools",
            "https://server.example.com/v1/%74ools",
        ] {
            assert_eq!(n(same), base, "{same}");
        }
        assert_eq!(n("https://a.example"), "https://a.example/");
        assert_eq!(n("http://a.example:80/x"), "http://a.example/x");
        assert_eq!(n("https://[::1]:8443/x"), "https://[::1]:8443/x");
        assert_eq!(n("https://a.example/%2f"), "https://a.example/%2F");
    }

    #[test]
    fn keeps_what_makes_another_resource() {
        let n = |u| normalize(u).unwrap();
        let base = n("https://server.example.com/v1/tools");
        for other in [
            "http://server.example.com/v1/tools",
            "https://server.example.com:8443/v1/tools",
            "https://evil.example.com/v1/tools",
            "https://server.example.com/v1/Tools",
            "https://server.example.com/v1/tools/",
            "https://server.example.com/v2/tools",
        ] {
            assert_ne!(n(other), base, "{other}");
        }
    }

    #[test]
    fn refuses_what_is_not_an_absolute_http_uri() {
        for bad in [
            "/v1/tools",
            "ftp://a.example/x",
            "https://",
            "https://user@a.example/x",
            "https://a.example:80x/y",
            "https://a.example/%zz",
            "https://a.example/%4",
        ] {
            assert_eq!(normalize(bad), None, "{bad}");
        }
    }
}
