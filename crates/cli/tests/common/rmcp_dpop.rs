//! A DPoP-signing HTTP client for rmcp's Streamable HTTP transport: how an
//! agent built on the official MCP Rust SDK presents its task token to
//! Mandate's gateway. Small and self-contained, to be copied.
//!
//! rmcp's own reqwest client sends `Authorization: Bearer <auth_header>`, and a
//! DPoP-bound token needs `Authorization: DPoP <token>` plus a new proof for
//! each request's method and URL (RFC 9449 §7.1). rmcp lets the transport run
//! over any [`StreamableHttpClient`]; [`DpopHttpClient`] is one that adds both
//! headers to every POST, GET and DELETE and hands the request to reqwest.
//!
//! ```ignore
//! let client = DpopHttpClient::new(reqwest::Client::new(), &token, key)?;
//! let transport = StreamableHttpClientTransport::with_client(
//!     client,
//!     StreamableHttpClientTransportConfig::with_uri("http://127.0.0.1:8180/mcp/everything"),
//! );
//! let mcp = ().serve(transport).await?;
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use futures::stream::BoxStream;
use mandate_tokens::DpopKey;
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue, InvalidHeaderValue};
use rmcp::model::ClientJsonRpcMessage;
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
    StreamableHttpResponseLimits,
};
use sse_stream::Sse;

/// Signs a DPoP proof for one request: `(method, htu)` in, compact JWS out.
pub type ProofSigner = dyn Fn(&str, &str) -> String + Send + Sync;

/// reqwest under rmcp, with `Authorization: DPoP <token>` and a fresh `DPoP`
/// proof on every request.
#[derive(Clone)]
pub struct DpopHttpClient {
    http: reqwest::Client,
    authorization: HeaderValue,
    sign: Arc<ProofSigner>,
}

impl DpopHttpClient {
    /// A client presenting `token`, with proofs signed by `key` (the key the
    /// token is bound to), each carrying the token's hash (`ath`).
    pub fn new(
        http: reqwest::Client,
        token: &str,
        key: DpopKey,
    ) -> Result<DpopHttpClient, InvalidHeaderValue> {
        let owned = token.to_owned();
        DpopHttpClient::with_signer(
            http,
            token,
            Arc::new(move |method: &str, htu: &str| {
                key.proof(method, htu, Some(&owned), unix_now())
            }),
        )
    }

    /// A client presenting `token` with the proofs `sign` makes (tests use it
    /// to send a stale or replayed proof).
    pub fn with_signer(
        http: reqwest::Client,
        token: &str,
        sign: Arc<ProofSigner>,
    ) -> Result<DpopHttpClient, InvalidHeaderValue> {
        Ok(DpopHttpClient {
            http,
            authorization: HeaderValue::try_from(format!("DPoP {token}"))?,
            sign,
        })
    }

    /// `headers` plus this client's Authorization and a proof for `method uri`.
    fn authorize(
        &self,
        method: &str,
        uri: &str,
        mut headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<HashMap<HeaderName, HeaderValue>, StreamableHttpError<reqwest::Error>> {
        // RFC 9449 §4.2: htu is the request URI without query and fragment.
        let htu = uri.split(['?', '#']).next().unwrap_or(uri);
        let proof = HeaderValue::try_from((self.sign)(method, htu)).map_err(|e| {
            StreamableHttpError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        })?;
        headers.insert(AUTHORIZATION, self.authorization.clone());
        headers.insert(HeaderName::from_static("dpop"), proof);
        Ok(headers)
    }
}

/// Seconds since the epoch, for the proof's `iat`.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

// Each method goes to reqwest's own implementation with `auth_header` left
// out: reqwest would send it as `Bearer`, which a DPoP-bound token is not.
// The `*_with_*` variants are implemented too, so rmcp's response limits
// still reach reqwest.
impl StreamableHttpClient for DpopHttpClient {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<reqwest::Error>> {
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            None,
            custom_headers,
            StreamableHttpResponseLimits::default(),
        )
        .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<reqwest::Error>> {
        let headers = self.authorize("POST", &uri, custom_headers)?;
        self.http
            .post_message_with_max_sse_event_size(
                uri,
                message,
                session_id,
                None,
                headers,
                max_sse_event_size,
            )
            .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<reqwest::Error>> {
        let headers = self.authorize("POST", &uri, custom_headers)?;
        self.http
            .post_message_with_response_limits(uri, message, session_id, None, headers, limits)
            .await
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<reqwest::Error>> {
        let headers = self.authorize("DELETE", &uri, custom_headers)?;
        self.http
            .delete_session(uri, session_id, None, headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<reqwest::Error>>
    {
        let headers = self.authorize("GET", &uri, custom_headers)?;
        self.http
            .get_stream(uri, session_id, last_event_id, None, headers)
            .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<reqwest::Error>>
    {
        let headers = self.authorize("GET", &uri, custom_headers)?;
        self.http
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                None,
                headers,
                max_sse_event_size,
            )
            .await
    }
}
