//! The client side of the admin API, shared by `agent` and `keys`: where the
//! server is, the admin credential, and errors turned into messages.

use std::path::PathBuf;

use clap::Args;
use serde_json::Value;

/// How to reach a running node's admin API.
#[derive(Debug, Clone, Args)]
pub(crate) struct AdminArgs {
    /// Base URL of the node.
    #[arg(
        long,
        value_name = "URL",
        env = "MANDATE_SERVER",
        default_value = "http://127.0.0.1:8180"
    )]
    pub(crate) server: String,
    /// File holding the admin credential [default: the MANDATE_ADMIN_TOKEN
    /// variable]. Never given on the command line, where `ps` would show it.
    #[arg(long, value_name = "FILE")]
    pub(crate) admin_token_file: Option<PathBuf>,
}

impl AdminArgs {
    fn credential(&self) -> anyhow::Result<String> {
        let token = match &self.admin_token_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
            None => std::env::var("MANDATE_ADMIN_TOKEN").map_err(|_| {
                anyhow::anyhow!(
                    "the admin credential is needed: set MANDATE_ADMIN_TOKEN (printed once by the node's first start) or pass --admin-token-file"
                )
            })?,
        };
        let token = token.trim().to_owned();
        anyhow::ensure!(!token.is_empty(), "the admin credential is empty");
        Ok(token)
    }

    /// Sends one admin request; a non-2xx answer becomes an error carrying
    /// the server's message.
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Option<Value>> {
        let credential = self.credential()?;
        let url = format!("{}{path}", self.server.trim_end_matches('/'));
        let client = reqwest::Client::new();
        let mut request = client.request(method, &url).bearer_auth(credential);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach {url}: {e}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or(text);
            anyhow::bail!("{status}: {message}");
        }
        if text.is_empty() {
            return Ok(None);
        }
        Ok(Some(serde_json::from_str(&text)?))
    }
}
