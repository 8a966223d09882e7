//! The compact JWS form (RFC 7515 §7.1), split and joined by hand so that the
//! header is read before any key is chosen and every refusal is precise.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

/// Largest token or proof accepted, in bytes: far above any real one, small
/// enough that parsing an attacker's input stays cheap.
pub(crate) const MAX_COMPACT_LEN: usize = 16 * 1024;

/// A compact JWS cut into its parts.
pub(crate) struct Compact<'a> {
    /// `header.payload`, the bytes the signature covers.
    pub(crate) signing_input: &'a str,
    pub(crate) header: Vec<u8>,
    pub(crate) payload: Vec<u8>,
    /// The signature, still base64url.
    pub(crate) signature: &'a str,
}

/// The header members this crate reads. `alg` stays a string so that `none`,
/// `HS256` and unknown names are refused by name rather than failing to parse.
#[derive(Deserialize)]
pub(crate) struct Header {
    pub(crate) alg: String,
    pub(crate) typ: Option<String>,
    pub(crate) kid: Option<String>,
    pub(crate) crit: Option<Vec<String>>,
    pub(crate) jwk: Option<serde_json::Value>,
}

/// A compact JWS cut into its three segments, nothing decoded yet.
pub(crate) struct Segments<'a> {
    /// The header, base64url.
    pub(crate) header: &'a str,
    /// The payload, base64url.
    pub(crate) payload: &'a str,
    /// `header.payload`, the bytes the signature covers.
    pub(crate) signing_input: &'a str,
    /// The signature, base64url.
    pub(crate) signature: &'a str,
}

/// Cuts a compact JWS into its segments; `Err` says what is wrong with its shape.
pub(crate) fn segments(token: &str) -> Result<Segments<'_>, &'static str> {
    if token.len() > MAX_COMPACT_LEN {
        return Err("longer than 16 KiB");
    }
    let mut parts = token.splitn(4, '.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not three dot-separated parts");
    };
    if h.is_empty() || p.is_empty() {
        return Err("empty header or payload");
    }
    Ok(Segments {
        header: h,
        payload: p,
        signing_input: &token[..h.len() + 1 + p.len()],
        signature: s,
    })
}

/// The header segment decoded.
pub(crate) fn decode_header(segments: &Segments<'_>) -> Result<Vec<u8>, &'static str> {
    URL_SAFE_NO_PAD
        .decode(segments.header)
        .map_err(|_| "header is not base64url")
}

/// The payload segment decoded.
pub(crate) fn decode_payload(segments: &Segments<'_>) -> Result<Vec<u8>, &'static str> {
    URL_SAFE_NO_PAD
        .decode(segments.payload)
        .map_err(|_| "payload is not base64url")
}

/// Splits a compact JWS and decodes its header and payload; `Err` says what
/// is wrong with its shape.
pub(crate) fn split(token: &str) -> Result<Compact<'_>, &'static str> {
    let segments = segments(token)?;
    Ok(Compact {
        header: decode_header(&segments)?,
        payload: decode_payload(&segments)?,
        signing_input: segments.signing_input,
        signature: segments.signature,
    })
}

/// Base64url without padding.
pub(crate) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding.
pub(crate) fn unb64(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}
