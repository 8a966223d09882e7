//! Telling people that a call waits for them: a signed `POST` to the
//! configured webhook for every new hold.
//!
//! The receiver authenticates Mandate by the signature, not by the network:
//! `X-Mandate-Signature: v1=<hex HMAC-SHA256(key, "<timestamp>.<body>")>` with
//! `X-Mandate-Timestamp: <unix seconds>`, so a replayed or forged request is
//! recognisable. Delivery is best effort and never holds up the call: a few
//! tries with a short time limit each, then a warning in the log.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use hmac::{Hmac, KeyInit, Mac};
use mandate_store::ApprovalRecord;
use serde_json::{Value, json};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::admin::rfc3339;

/// The environment variable that may hold the webhook key.
pub(crate) const SECRET_ENV: &str = "MANDATE_APPROVAL_WEBHOOK_SECRET";

/// Shortest key accepted, in bytes: a guessable key would let anyone forge
/// approval requests to the receiver.
const MIN_KEY_BYTES: usize = 16;

/// How long one delivery attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Attempts per hold, and the pause before each retry.
const RETRY_PAUSES: [Duration; 2] = [Duration::from_millis(500), Duration::from_secs(2)];

/// Where holds are announced, and the key that signs each announcement.
pub(crate) struct Webhook {
    url: String,
    key: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// A webhook posting to `url`, signing with `key`.
    pub(crate) fn new(url: &str, key: &[u8]) -> anyhow::Result<Webhook> {
        anyhow::ensure!(
            key.len() >= MIN_KEY_BYTES,
            "approval webhook secret: must be at least {MIN_KEY_BYTES} bytes"
        );
        Ok(Webhook {
            url: url.to_owned(),
            key: Zeroizing::new(key.to_vec()),
        })
    }

    /// The webhook of the configuration: `approval_webhook_url`, signed with
    /// the key in `env_secret` (the value of [`SECRET_ENV`]) or else in
    /// `secret_file`. A URL without a key is refused: receivers could not
    /// tell Mandate from anyone else.
    pub(crate) fn from_config(
        url: Option<&str>,
        secret_file: Option<&Path>,
        env_secret: Option<Zeroizing<String>>,
    ) -> anyhow::Result<Option<Webhook>> {
        let Some(url) = url else {
            if env_secret.is_some() || secret_file.is_some() {
                tracing::warn!(
                    "an approval webhook secret is set but approval_webhook_url is not: no webhook is called"
                );
            }
            return Ok(None);
        };
        let key = match (env_secret, secret_file) {
            (Some(text), _) => Zeroizing::new(text.trim().as_bytes().to_vec()),
            (None, Some(path)) => {
                let text = Zeroizing::new(std::fs::read_to_string(path).with_context(|| {
                    format!(
                        "approval_webhook_secret_file: cannot read {}",
                        path.display()
                    )
                })?);
                Zeroizing::new(text.trim().as_bytes().to_vec())
            }
            (None, None) => anyhow::bail!(
                "approval_webhook_url is set but there is no key to sign with: set {SECRET_ENV} or approval_webhook_secret_file"
            ),
        };
        Ok(Some(Webhook::new(url, &key)?))
    }

    /// `v1=<hex>`: HMAC-SHA256 over `<timestamp>.<body>`.
    pub(crate) fn signature(&self, timestamp: i64, body: &[u8]) -> String {
        // HMAC takes keys of any length.
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1={}", hex::encode(mac.finalize().into_bytes()))
    }

    /// Posts `approval.requested` for `approval`, retrying a failed delivery
    /// (no answer, 408, 429, 5xx) a couple of times. Returns whether the
    /// receiver took it (a 2xx).
    pub(crate) async fn announce(
        &self,
        http: &reqwest::Client,
        approval: &ApprovalRecord,
        links_base: &str,
    ) -> bool {
        let body = announcement(approval, links_base).to_string().into_bytes();
        let attempts = RETRY_PAUSES.len() + 1;
        for attempt in 1..=attempts {
            let timestamp = crate::authority::now_seconds();
            let sent = http
                .post(&self.url)
                .timeout(ATTEMPT_TIMEOUT)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("X-Mandate-Timestamp", timestamp.to_string())
                .header("X-Mandate-Signature", self.signature(timestamp, &body))
                .body(body.clone())
                .send()
                .await;
            let retry = match sent {
                Ok(response) if response.status().is_success() => {
                    tracing::info!(approval = %approval.id, attempt, "approval webhook delivered");
                    return true;
                }
                Ok(response) => {
                    let status = response.status();
                    tracing::warn!(approval = %approval.id, attempt, %status, "approval webhook refused");
                    status.is_server_error()
                        || status == reqwest::StatusCode::REQUEST_TIMEOUT
                        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                }
                Err(error) => {
                    // Without the URL: it may carry a token of the receiver's.
                    tracing::warn!(approval = %approval.id, attempt, error = %error.without_url(), "approval webhook not delivered");
                    true
                }
            };
            match RETRY_PAUSES.get(attempt - 1) {
                Some(pause) if retry => tokio::time::sleep(*pause).await,
                _ => break,
            }
        }
        false
    }
}

/// The body of `approval.requested`: what is held and where to decide it.
pub(crate) fn announcement(approval: &ApprovalRecord, links_base: &str) -> Value {
    let this = format!("{links_base}/admin/v1/approvals/{}", approval.id);
    json!({
        "type": "approval.requested",
        "approval": {
            "id": approval.id,
            "agent": approval.agent,
            "agent_name": approval.agent_name,
            "task_id": approval.task_id,
            "purpose": approval.purpose,
            "endpoint": approval.endpoint,
            "upstream": approval.upstream,
            "action": approval.action,
            "resource": approval.resource,
            "argument_digest": approval.argument_digest,
            "reasons": approval.reasons,
            "created_at": rfc3339(approval.created_us),
            "expires_at": rfc3339(approval.expires_us),
        },
        "links": {
            "self": this,
            "approve": format!("{this}/approve"),
            "deny": format!("{this}/deny"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_dot_body() {
        let hook = Webhook::new("http://x", b"Jefe-and-a-longer-key").unwrap();
        let independent = {
            let mut mac =
                <Hmac<Sha256> as KeyInit>::new_from_slice(b"Jefe-and-a-longer-key").unwrap();
            mac.update(b"1700000000.{\"a\":1}");
            hex::encode(mac.finalize().into_bytes())
        };
        assert_eq!(
            hook.signature(1_700_000_000, br#"{"a":1}"#),
            format!("v1={independent}")
        );
        assert_ne!(
            hook.signature(1_700_000_001, br#"{"a":1}"#),
            hook.signature(1_700_000_000, br#"{"a":1}"#)
        );
    }

    #[test]
    fn a_webhook_needs_a_key_of_sixteen_bytes_and_never_prints_it() {
        let err = Webhook::from_config(Some("http://h/x"), None, None).unwrap_err();
        assert!(err.to_string().contains(SECRET_ENV), "{err}");
        let err = Webhook::from_config(
            Some("http://h/x"),
            None,
            Some(Zeroizing::new("short".into())),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "approval webhook secret: must be at least 16 bytes"
        );
        let hook = Webhook::from_config(
            Some("http://h/x"),
            None,
            Some(Zeroizing::new("hunter2-hunter2-hunter2\n".into())),
        )
        .unwrap()
        .unwrap();
        assert!(!format!("{hook:?}").contains("hunter2"));
        // The variable beats the file; the file is read, trimmed.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "from-the-file-0123456789\n").unwrap();
        let from_file = Webhook::from_config(Some("http://h/x"), Some(&file), None)
            .unwrap()
            .unwrap();
        let direct = Webhook::new("http://h/x", b"from-the-file-0123456789").unwrap();
        assert_eq!(from_file.signature(1, b"x"), direct.signature(1, b"x"));
        assert_eq!(
            Webhook::from_config(None, Some(&file), None)
                .unwrap()
                .map(|_| ()),
            None
        );
    }
}
