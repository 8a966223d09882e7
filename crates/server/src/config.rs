//! Mandate's settings: each defined once here, with its default and its check.
//!
//! Settings come from four layers, the later winning: built-in defaults, a TOML
//! file (`--config FILE`), `MANDATE_<KEY>` environment variables, and
//! command-line flags. A bad value stops the server at start with a message
//! naming the key and where it came from.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Every setting of `mandate serve`. Field docs are the user documentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on. Loopback by default; an address reachable from other
    /// hosts must be asked for explicitly.
    pub listen: SocketAddr,
    /// Directory for Mandate's own files: the SQLite database, the node ID and the
    /// audit digest key. Created if missing.
    pub data_dir: PathBuf,
    /// Directory of `*.cedar` policies, optional `*.cedarschema` and
    /// `entities.json`. Default: `<data_dir>/policies` (created empty: everything
    /// is denied until policies are added).
    pub policy_dir: Option<PathBuf>,
    /// Store URL: `sqlite://PATH` or `postgres://USER@HOST:PORT/DB`.
    /// Default: `sqlite://<data_dir>/mandate.db`.
    pub database: Option<String>,
    /// This node's ID in the audit chain. Default: generated once and kept in
    /// `<data_dir>/node-id`.
    pub node_id: Option<String>,
    /// Log format on stderr: `json` or `text`.
    pub log_format: LogFormat,
    /// Log filter, in `tracing` syntax (`info`, `mandate=debug,info`).
    pub log_level: String,
    /// Bearer key that AuthZEN callers must present (`Authorization: Bearer KEY`).
    /// Unset: the AuthZEN endpoints take no key, so keep them on loopback.
    #[serde(deserialize_with = "text_or_number")]
    pub authzen_api_key: Option<String>,
    /// Whether deny responses carry `context.reason_admin` naming the deciding
    /// policies. The audit log records them either way.
    pub explain_decisions: bool,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Most evaluations in one `/access/v1/evaluations` batch.
    pub max_batch_items: usize,
    /// Time limit for one request, in milliseconds.
    pub request_timeout_ms: u64,
    /// How often the policy directory is checked for changes, in milliseconds.
    pub policy_poll_ms: u64,
    /// Most audit records committed in one transaction.
    pub audit_max_batch: usize,
    /// Base URL announced in `/.well-known/authzen-configuration`.
    /// Default: `http://<listen>`.
    pub public_url: Option<String>,
    /// Address of the TLS listener, where agents authenticate with an X.509-SVID
    /// (mTLS). Its certificate comes from the built-in CA. Empty string: no TLS
    /// listener.
    pub tls_listen: String,
    /// Base URL of the TLS listener as agents address it (DPoP proofs name it).
    /// Default: `https://<tls_listen>`.
    pub tls_public_url: Option<String>,
    /// Extra DNS names for the TLS certificate (besides `localhost`).
    pub tls_dns_names: Vec<String>,
    /// Trust domain of the built-in CA: agents get `spiffe://<trust_domain>/agent/<name>`.
    pub trust_domain: String,
    /// Lifetime of X.509-SVIDs issued by the built-in CA, in seconds.
    pub svid_ttl_seconds: u64,
    /// More SPIFFE trust bundles (e.g. a SPIRE server's), as
    /// `{ trust_domain = "example.org", path = "bundle.json" }`. The file is a
    /// SPIFFE bundle (JWKS) or PEM certificates.
    pub trust_bundles: Vec<TrustBundleSource>,
    /// Issuer (`iss`) of task tokens, and the OAuth metadata's issuer. Nodes
    /// sharing a store must share it. Default: the public URL.
    pub issuer: Option<String>,
    /// Audience (`aud`) of task tokens: Mandate's enforcement points. Default:
    /// the issuer.
    pub token_audience: Option<String>,
    /// Audience a JWT-SVID must name to be accepted at `/oauth/token`.
    /// Default: the issuer.
    pub jwt_svid_audience: Option<String>,
    /// Longest task a token may be issued for, in seconds.
    pub max_task_ttl_seconds: u64,
    /// Deepest delegation chain (a root task has depth 0).
    pub max_delegation_depth: usize,
    /// Issue unbound bearer tokens when a request has no DPoP proof and no
    /// client certificate. Off: such a request is refused.
    pub allow_bearer_tokens: bool,
    /// How long a rotated-out signing key still verifies, in seconds (at least
    /// `max_task_ttl_seconds`).
    pub signing_key_overlap_seconds: u64,
    /// Accepted age of a DPoP proof's `iat`, either way, in seconds.
    pub dpop_iat_window_seconds: u32,
    /// How often revocations, suspensions and keys are re-read from the store
    /// (other nodes' changes), in milliseconds.
    pub sync_ms: u64,
    /// The key-encryption key that seals secrets at rest: 64 hex characters or
    /// the base64 of 32 bytes. Best given as `MANDATE_SECRETS_KEK`. Default
    /// (neither this nor `secrets_kek_file`): generated once and kept in
    /// `<data_dir>/secrets.kek`, next to the database, with a warning at start.
    #[serde(deserialize_with = "text_or_number")]
    pub secrets_kek: Option<String>,
    /// A file holding the key-encryption key (same forms as `secrets_kek`),
    /// kept outside the data directory. Not together with `secrets_kek`.
    pub secrets_kek_file: Option<PathBuf>,
    /// How long a call held for a person's approval waits for a decision, in
    /// seconds; then it is denied.
    pub approval_timeout_seconds: u64,
    /// Where each new hold is announced: an `http(s)://` URL that gets a
    /// signed `POST` (see the README). Unset: no webhook.
    pub approval_webhook_url: Option<String>,
    /// A file holding the key that signs webhook requests (at least 16
    /// bytes). The key is never set in the config file itself:
    /// `MANDATE_APPROVAL_WEBHOOK_SECRET` or this file.
    pub approval_webhook_secret_file: Option<PathBuf>,
    /// MCP servers reachable through the gateway at `/mcp/<name>` (TOML only;
    /// see [`McpUpstream`]).
    pub mcp_upstreams: Vec<McpUpstream>,
    /// Origins (`scheme://host[:port]`) a browser may call the MCP gateway
    /// from. A request with any other `Origin` header is refused with 403;
    /// requests without one (non-browser clients) are not affected.
    pub mcp_allowed_origins: Vec<String>,
    /// Legacy REST APIs reachable through the HTTP reverse proxy at
    /// `/proxy/<name>/...` (TOML only; see [`HttpUpstream`]).
    pub http_upstreams: Vec<HttpUpstream>,
    /// Calls per second each agent may make through the MCP gateway and the
    /// HTTP reverse proxy, on average, on this node (a token bucket). A call
    /// over the limit is denied with reason `rate_limited`.
    pub agent_rate_per_second: u32,
    /// Calls an agent may make at once above its rate, after a quiet spell.
    pub agent_rate_burst: u32,
    /// Calls of one agent in flight at once on this node (waiting for an
    /// approval or for the upstream included). One more is denied with reason
    /// `concurrency_limit`.
    pub agent_max_concurrent_calls: u32,
    /// The window of `GET /admin/v1/posture`, in days (fractions allowed): an
    /// agent with no token issued and no call in it is idle, a policy that
    /// matched no audit record in it never matched, and the tasks issued in it
    /// are the ones whose grants and endings are examined.
    pub posture_idle_days: f64,
    /// Age in days (fractions allowed) after which a secret not rotated since
    /// is reported by `GET /admin/v1/posture`.
    pub posture_secret_max_age_days: f64,
}

/// One MCP server behind the gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpUpstream {
    /// Its name: the gateway serves it at `/mcp/<name>`, and its tools are
    /// `Tool::"<name>.<tool>"` in policies.
    pub name: String,
    /// Its Streamable HTTP endpoint (`http://127.0.0.1:3001/mcp`). Exactly
    /// one of `url` and `command`.
    #[serde(default)]
    pub url: Option<String>,
    /// A server Mandate spawns and speaks stdio to: its argv
    /// (`["npx", "-y", "@modelcontextprotocol/server-filesystem", "/data"]`).
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Environment variables for a `command` upstream, besides the few it
    /// inherits from the node (`PATH`, `HOME`, ...).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The credential injected into every request forwarded to it (a header
    /// for a `url` upstream), or into its environment (`env`, for a
    /// `command` upstream, when it is spawned).
    #[serde(default)]
    pub credential: Option<UpstreamCredential>,
    /// How long a forwarded request may take, in milliseconds.
    #[serde(default = "default_upstream_timeout_ms")]
    pub timeout_ms: u64,
    /// What each tool is: its capability class and data labels. A tool not
    /// listed is `delegate`-class, egress-capable and labelled `unclassified`.
    #[serde(default)]
    pub tools: Vec<McpToolEntry>,
}

/// An MCP upstream is either `url` (with a header credential) or `command`
/// (with an environment credential).
fn check_mcp_upstream_kind(upstream: &McpUpstream) -> Result<(), String> {
    match (&upstream.url, &upstream.command) {
        (Some(url), None) => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err("url must start with http:// or https://".into());
            }
            if !upstream.env.is_empty() {
                return Err("env is only for a command upstream".into());
            }
            if let Some(credential) = &upstream.credential {
                check_header_credential(credential)?;
            }
            Ok(())
        }
        (None, Some(argv)) => {
            if argv.first().is_none_or(|program| program.is_empty()) {
                return Err("command must name a program: [\"program\", \"arg\", ...]".into());
            }
            if argv.iter().any(|a| a.contains('\0')) {
                return Err("command must not contain NUL characters".into());
            }
            for (key, value) in &upstream.env {
                if !env_name_ok(key) || value.contains('\0') {
                    return Err(format!(
                        "env {key:?}: a variable name is letters, digits and '_', not starting with a digit; values have no NUL"
                    ));
                }
            }
            if let Some(credential) = &upstream.credential {
                match (&credential.env, &credential.header) {
                    (Some(var), None) if env_name_ok(var) => {}
                    (Some(var), None) => {
                        return Err(format!(
                            "credential env {var:?} is not an environment variable name"
                        ));
                    }
                    _ => {
                        return Err(
                            "the credential of a command upstream is { env = \"VAR\", secret = \"...\" }, not a header".into(),
                        );
                    }
                }
                mandate_secrets::validate_name(&credential.secret)
                    .map_err(|e| format!("credential secret: {e}"))?;
            }
            Ok(())
        }
        _ => Err("give exactly one of url (Streamable HTTP) and command (stdio)".into()),
    }
}

/// A credential that sets a header: `header` and no `env`.
fn check_header_credential(credential: &UpstreamCredential) -> Result<(), String> {
    let Some(header) = &credential.header else {
        return Err("the credential needs a header (env is only for command upstreams)".into());
    };
    if credential.env.is_some() {
        return Err("the credential sets a header or an env variable, not both".into());
    }
    if axum::http::HeaderName::from_bytes(header.as_bytes()).is_err() {
        return Err(format!("credential header {header:?} is not a header name"));
    }
    mandate_secrets::validate_name(&credential.secret)
        .map_err(|e| format!("credential secret: {e}"))
}

fn env_name_ok(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn default_upstream_timeout_ms() -> u64 {
    30_000
}

/// A credential the gateway adds to forwarded requests (or to a spawned
/// upstream's environment); the agent never sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamCredential {
    /// The header to set (`Authorization`, `X-Api-Key`, ...): for `url`
    /// upstreams and `http_upstreams`.
    #[serde(default)]
    pub header: Option<String>,
    /// The environment variable to set when the process is spawned: for
    /// `command` upstreams.
    #[serde(default)]
    pub env: Option<String>,
    /// The secret (see `mandate secret set`) holding the value.
    pub secret: String,
    /// The header or variable value, with `{secret}` replaced by the secret's
    /// value (`Bearer {secret}`). Default: the value alone.
    #[serde(default)]
    pub format: Option<String>,
}

/// A tool's catalog entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpToolEntry {
    /// The tool's name as the upstream lists it.
    pub name: String,
    /// `read`, `act` or `delegate`.
    pub class: String,
    /// Data labels of what it returns or touches (`confidential`, ...).
    #[serde(default)]
    pub labels: Vec<String>,
    /// Whether it can move data out (send, post, upload, fetch a URL), even if
    /// it only reads.
    #[serde(default)]
    pub egress: bool,
    /// Whether it destroys or overwrites something (delete, write, move).
    #[serde(default)]
    pub destructive: bool,
}

/// One REST API behind the HTTP reverse proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpUpstream {
    /// Its name: the proxy serves it at `/proxy/<name>/`, and each endpoint
    /// is the tool `<name>.<action>` a task must hold. Not also the name of an
    /// MCP upstream.
    pub name: String,
    /// Its base URL (`https://api.github.com`); `/proxy/<name>/a/b?q` goes to
    /// `<url>/a/b?q`.
    pub url: String,
    /// The credential injected into every request forwarded to it.
    #[serde(default)]
    pub credential: Option<UpstreamCredential>,
    /// How long the upstream may take to start answering (the request body
    /// sent, the status and headers back), in milliseconds. The answer's body
    /// then streams for as long as both sides keep it.
    #[serde(default = "default_upstream_timeout_ms")]
    pub timeout_ms: u64,
    /// Largest request body forwarded, in bytes, counted as it streams.
    /// Default: `max_body_bytes`.
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// Its endpoints, tried in order; a request no rule matches is refused.
    #[serde(default)]
    pub rules: Vec<HttpRule>,
}

/// One endpoint of an [`HttpUpstream`], mapped to a Cedar action and resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRule {
    /// `GET`, `POST`, ..., or `*` for any method.
    pub method: String,
    /// A path template below the upstream: `/repos/{owner}/{repo}/issues`;
    /// `{name}` matches one segment, a last `{name*}` the rest of the path.
    pub path: String,
    /// The Cedar action (`list_issues`), declared `in [proxy]` in the schema.
    pub action: String,
    /// The Cedar entity type of the resource (`Repo`).
    pub resource_type: String,
    /// The resource's id, from the path's captures (`{owner}/{repo}`).
    pub resource_id: String,
    /// `read`, `act` or `delegate`: the capability the endpoint needs.
    pub class: String,
    /// Data labels for policy (`confidential`, ...).
    #[serde(default)]
    pub labels: Vec<String>,
    /// Whether it can move data out (send, post, upload).
    #[serde(default)]
    pub egress: bool,
    /// Whether it destroys or overwrites something (DELETE, PUT over data).
    #[serde(default)]
    pub destructive: bool,
}

/// `labels` normalized ([`mandate_core::normalize_label`]), each once; the
/// first invalid one is the error.
fn normalized_labels(labels: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::with_capacity(labels.len());
    for label in labels {
        let l = mandate_core::normalize_label(label).ok_or_else(|| label.clone())?;
        if !out.contains(&l) {
            out.push(l);
        }
    }
    Ok(out)
}

impl HttpUpstream {
    /// Its rules, checked.
    pub(crate) fn routes(&self) -> Result<mandate_gateway::RestRoutes, String> {
        let mut rules = Vec::with_capacity(self.rules.len());
        for (index, rule) in self.rules.iter().enumerate() {
            let class = match rule.class.as_str() {
                "read" => mandate_gateway::ToolClass::Read,
                "act" => mandate_gateway::ToolClass::Act,
                "delegate" => mandate_gateway::ToolClass::Delegate,
                other => {
                    return Err(format!(
                        "{}: rules[{index}]: class {other:?} must be read, act or delegate",
                        self.name
                    ));
                }
            };
            rules.push(mandate_gateway::RestRule {
                method: rule.method.clone(),
                path: rule.path.clone(),
                action: rule.action.clone(),
                resource_type: rule.resource_type.clone(),
                resource_id: rule.resource_id.clone(),
                class,
                labels: normalized_labels(&rule.labels)
                    .map_err(|l| format!("{}: rule {index}: invalid label {l:?}", self.name))?,
                egress: rule.egress,
                destructive: rule.destructive,
            });
        }
        mandate_gateway::RestRoutes::new(rules).map_err(|e| format!("{}: {e}", self.name))
    }
}

/// Whether `name` may name an upstream: 1 to 64 lower-case letters, digits, '-' and '_'.
fn upstream_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A SPIFFE trust bundle to load at start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustBundleSource {
    /// The trust domain the bundle speaks for (`example.org`).
    pub trust_domain: String,
    /// A SPIFFE bundle JSON file, or PEM certificates.
    pub path: PathBuf,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

/// Reads a secret that an environment variable may hold as digits only:
/// figment types such values as numbers, and a key is text whatever it looks like.
fn text_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Unsigned(u64),
        Signed(i64),
    }
    Ok(Option::<Raw>::deserialize(d)?.map(|raw| match raw {
        Raw::Text(text) => text,
        Raw::Unsigned(n) => n.to_string(),
        Raw::Signed(n) => n.to_string(),
    }))
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8180)),
            data_dir: PathBuf::from("mandate-data"),
            policy_dir: None,
            database: None,
            node_id: None,
            log_format: LogFormat::Json,
            log_level: "info".to_owned(),
            authzen_api_key: None,
            explain_decisions: true,
            max_body_bytes: 1024 * 1024,
            max_batch_items: 1000,
            request_timeout_ms: 10_000,
            policy_poll_ms: 500,
            audit_max_batch: 1024,
            public_url: None,
            tls_listen: "127.0.0.1:8443".to_owned(),
            tls_public_url: None,
            tls_dns_names: Vec::new(),
            trust_domain: "mandate.local".to_owned(),
            svid_ttl_seconds: 3600,
            trust_bundles: Vec::new(),
            issuer: None,
            token_audience: None,
            jwt_svid_audience: None,
            max_task_ttl_seconds: 900,
            max_delegation_depth: 3,
            allow_bearer_tokens: false,
            signing_key_overlap_seconds: 3600,
            dpop_iat_window_seconds: 60,
            sync_ms: 250,
            mcp_upstreams: Vec::new(),
            mcp_allowed_origins: Vec::new(),
            http_upstreams: Vec::new(),
            agent_rate_per_second: 100,
            agent_rate_burst: 200,
            agent_max_concurrent_calls: 32,
            posture_idle_days: 30.0,
            posture_secret_max_age_days: 90.0,
            secrets_kek: None,
            secrets_kek_file: None,
            approval_timeout_seconds: 300,
            approval_webhook_url: None,
            approval_webhook_secret_file: None,
        }
    }
}

/// The keys a `MANDATE_*` variable may set. Other `MANDATE_*` variables (used by
/// tests or other tools) are left alone rather than rejected.
pub const KEYS: [&str; 43] = [
    "listen",
    "data_dir",
    "policy_dir",
    "database",
    "node_id",
    "log_format",
    "log_level",
    "authzen_api_key",
    "explain_decisions",
    "max_body_bytes",
    "max_batch_items",
    "request_timeout_ms",
    "policy_poll_ms",
    "audit_max_batch",
    "public_url",
    "tls_listen",
    "tls_public_url",
    "tls_dns_names",
    "trust_domain",
    "svid_ttl_seconds",
    "trust_bundles",
    "issuer",
    "token_audience",
    "jwt_svid_audience",
    "max_task_ttl_seconds",
    "max_delegation_depth",
    "allow_bearer_tokens",
    "signing_key_overlap_seconds",
    "dpop_iat_window_seconds",
    "sync_ms",
    "secrets_kek",
    "secrets_kek_file",
    "approval_timeout_seconds",
    "approval_webhook_url",
    "approval_webhook_secret_file",
    "mcp_upstreams",
    "mcp_allowed_origins",
    "http_upstreams",
    "agent_rate_per_second",
    "agent_rate_burst",
    "agent_max_concurrent_calls",
    "posture_idle_days",
    "posture_secret_max_age_days",
];

/// A configuration that cannot be used. The message names the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A value has the wrong type or form, or a key is unknown.
    #[error("configuration: {0}")]
    Parse(String),
    /// A value is well-formed but not acceptable.
    #[error("configuration: {key}: {message}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Reads the layers: defaults, `file` (if given, it must exist), `MANDATE_*`
    /// environment variables, then `flags` (fields set to `None` are skipped).
    pub fn load(file: Option<&Path>, flags: impl Serialize) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::Parse(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let config: Config = figment
            .merge(
                // Figment hands the filter the key as written (upper case);
                // `UncasedStr` compares without case.
                Env::prefixed("MANDATE_").filter(|k| KEYS.iter().any(|key| k == *key)),
            )
            .merge(Serialized::defaults(flags))
            .extract()
            .map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.to_owned(),
            })
        };
        if let Some(key) = &self.authzen_api_key
            && key.len() < 16
        {
            return invalid("authzen_api_key", "must be at least 16 characters");
        }
        if self.max_body_bytes < 1024 {
            return invalid("max_body_bytes", "must be at least 1024");
        }
        if self.max_batch_items == 0 {
            return invalid("max_batch_items", "must be at least 1");
        }
        for (key, value) in [
            ("agent_rate_per_second", self.agent_rate_per_second),
            ("agent_rate_burst", self.agent_rate_burst),
            (
                "agent_max_concurrent_calls",
                self.agent_max_concurrent_calls,
            ),
        ] {
            if value == 0 {
                return invalid(
                    key,
                    "must be at least 1 (`mandate agent kill` stops an agent)",
                );
            }
        }
        if self.request_timeout_ms == 0 {
            return invalid("request_timeout_ms", "must be at least 1");
        }
        if self.policy_poll_ms < 100 {
            return invalid("policy_poll_ms", "must be at least 100");
        }
        for (key, days) in [
            ("posture_idle_days", self.posture_idle_days),
            (
                "posture_secret_max_age_days",
                self.posture_secret_max_age_days,
            ),
        ] {
            // A day is 86,400,000,000 µs; ten years keeps every product in i64.
            if !(days.is_finite() && days > 0.0 && days <= 3650.0) {
                return invalid(key, "must be a number of days above 0 and at most 3650");
            }
        }
        if self.audit_max_batch == 0 {
            return invalid("audit_max_batch", "must be at least 1");
        }
        if let Some(db) = &self.database
            && !(db.starts_with("sqlite:")
                || db.starts_with("postgres://")
                || db.starts_with("postgresql://"))
        {
            return invalid(
                "database",
                "must start with sqlite://, postgres:// or postgresql://",
            );
        }
        if let Some(id) = &self.node_id
            && (id.is_empty() || id.len() > 128)
        {
            return invalid("node_id", "must be 1 to 128 characters");
        }
        if !self.tls_listen.is_empty() && self.tls_listen.parse::<SocketAddr>().is_err() {
            return invalid(
                "tls_listen",
                "must be an address such as 127.0.0.1:8443, or empty for no TLS listener",
            );
        }
        if mandate_tokens::SpiffeId::parse(&format!("spiffe://{}/x", self.trust_domain)).is_err() {
            return invalid(
                "trust_domain",
                "must be a SPIFFE trust domain: lower-case letters, digits, '.', '-', '_'",
            );
        }
        if !(60..=30 * 86_400).contains(&self.svid_ttl_seconds) {
            return invalid("svid_ttl_seconds", "must be between 60 and 2592000");
        }
        if !(10..=mandate_tokens::MAX_TTL_SECONDS).contains(&self.max_task_ttl_seconds) {
            return invalid(
                "max_task_ttl_seconds",
                &format!("must be between 10 and {}", mandate_tokens::MAX_TTL_SECONDS),
            );
        }
        if !(1..=mandate_tokens::MAX_ACTOR_DEPTH).contains(&self.max_delegation_depth) {
            return invalid(
                "max_delegation_depth",
                &format!("must be between 1 and {}", mandate_tokens::MAX_ACTOR_DEPTH),
            );
        }
        if self.signing_key_overlap_seconds < self.max_task_ttl_seconds {
            return invalid(
                "signing_key_overlap_seconds",
                "must be at least max_task_ttl_seconds, or live tokens would lose their key",
            );
        }
        if !(1..=600).contains(&self.dpop_iat_window_seconds) {
            return invalid("dpop_iat_window_seconds", "must be between 1 and 600");
        }
        if !(50..=10_000).contains(&self.sync_ms) {
            return invalid("sync_ms", "must be between 50 and 10000");
        }
        if self.secrets_kek.is_some() && self.secrets_kek_file.is_some() {
            return invalid(
                "secrets_kek",
                "set secrets_kek or secrets_kek_file, not both",
            );
        }
        if let Some(text) = &self.secrets_kek
            && let Err(error) = mandate_secrets::Kek::parse(text)
        {
            // The message never quotes the key.
            return invalid("secrets_kek", &error.to_string());
        }
        if self
            .secrets_kek_file
            .as_ref()
            .is_some_and(|path| path.as_os_str().is_empty())
        {
            return invalid("secrets_kek_file", "must be a path");
        }
        if !(1..=86_400).contains(&self.approval_timeout_seconds) {
            return invalid(
                "approval_timeout_seconds",
                "must be between 1 and 86400 (a day)",
            );
        }
        if let Some(url) = &self.approval_webhook_url {
            let ok = (url.starts_with("http://") || url.starts_with("https://"))
                && reqwest::Url::parse(url).is_ok();
            if !ok {
                return invalid("approval_webhook_url", "must be an http:// or https:// URL");
            }
        }
        if self
            .approval_webhook_secret_file
            .as_ref()
            .is_some_and(|path| path.as_os_str().is_empty())
        {
            return invalid("approval_webhook_secret_file", "must be a path");
        }
        let mut names = std::collections::HashSet::new();
        for upstream in &self.mcp_upstreams {
            if !upstream_name_ok(&upstream.name) {
                return invalid(
                    "mcp_upstreams",
                    &format!(
                        "name {:?}: use 1 to 64 lower-case letters, digits, '-' and '_'",
                        upstream.name
                    ),
                );
            }
            if !names.insert(upstream.name.as_str()) {
                return invalid(
                    "mcp_upstreams",
                    &format!("name {:?} is used twice", upstream.name),
                );
            }
            if let Err(message) = check_mcp_upstream_kind(upstream) {
                return invalid("mcp_upstreams", &format!("{}: {message}", upstream.name));
            }
            if upstream.timeout_ms == 0 {
                return invalid(
                    "mcp_upstreams",
                    &format!("{}: timeout_ms must be at least 1", upstream.name),
                );
            }
            for tool in &upstream.tools {
                if !matches!(tool.class.as_str(), "read" | "act" | "delegate") {
                    return invalid(
                        "mcp_upstreams",
                        &format!(
                            "{}: tool {:?}: class must be read, act or delegate",
                            upstream.name, tool.name
                        ),
                    );
                }
            }
        }
        let mut http_names = std::collections::HashSet::new();
        for upstream in &self.http_upstreams {
            let name = &upstream.name;
            if !upstream_name_ok(name) {
                return invalid(
                    "http_upstreams",
                    &format!("name {name:?}: use 1 to 64 lower-case letters, digits, '-' and '_'"),
                );
            }
            if !http_names.insert(name.as_str()) {
                return invalid("http_upstreams", &format!("name {name:?} is used twice"));
            }
            if names.contains(name.as_str()) {
                return invalid(
                    "http_upstreams",
                    &format!(
                        "name {name:?} is also an MCP upstream's: their tools would share names"
                    ),
                );
            }
            let url_ok = (upstream.url.starts_with("http://")
                || upstream.url.starts_with("https://"))
                && !upstream.url.contains(['?', '#'])
                && reqwest::Url::parse(&upstream.url).is_ok();
            if !url_ok {
                return invalid(
                    "http_upstreams",
                    &format!(
                        "{name}: url must be an http:// or https:// base URL without query or fragment"
                    ),
                );
            }
            if upstream.timeout_ms == 0 {
                return invalid(
                    "http_upstreams",
                    &format!("{name}: timeout_ms must be at least 1"),
                );
            }
            if upstream.max_body_bytes == Some(0) {
                return invalid(
                    "http_upstreams",
                    &format!("{name}: max_body_bytes must be at least 1"),
                );
            }
            if let Some(credential) = &upstream.credential
                && let Err(message) = check_header_credential(credential)
            {
                return invalid("http_upstreams", &format!("{name}: {message}"));
            }
            if let Err(message) = upstream.routes() {
                return invalid("http_upstreams", &message);
            }
        }
        for bundle in &self.trust_bundles {
            if bundle.trust_domain == self.trust_domain {
                return invalid(
                    "trust_bundles",
                    "a bundle names the built-in CA's trust domain; choose another trust_domain",
                );
            }
        }
        Ok(())
    }

    /// The TLS listener's address, if there is one.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_listen.parse().ok()
    }

    /// The base URL of the plain listener.
    pub fn base_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
            .trim_end_matches('/')
            .to_owned()
    }

    /// The base URL of the TLS listener, if there is one.
    pub fn tls_base_url(&self) -> Option<String> {
        let addr = self.tls_addr()?;
        Some(
            self.tls_public_url
                .clone()
                .unwrap_or_else(|| format!("https://{addr}"))
                .trim_end_matches('/')
                .to_owned(),
        )
    }

    /// The issuer of task tokens in effect.
    pub fn issuer(&self) -> String {
        self.issuer.clone().unwrap_or_else(|| self.base_url())
    }

    /// The policy directory in effect.
    pub fn policy_dir(&self) -> PathBuf {
        self.policy_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("policies"))
    }

    /// The store URL in effect.
    pub fn database_url(&self) -> String {
        self.database
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("mandate.db").display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::Jail;

    #[derive(Serialize, Default)]
    struct Flags {
        #[serde(skip_serializing_if = "Option::is_none")]
        listen: Option<String>,
    }

    // figment's `Jail::expect_with` fixes the closure's error type; not ours to shrink.
    #[allow(clippy::result_large_err)]
    fn load_in_jail(
        f: impl FnOnce(&mut Jail) -> Result<Config, ConfigError>,
    ) -> Result<Config, String> {
        let mut out = Err(String::new());
        Jail::expect_with(|jail| {
            out = f(jail).map_err(|e| e.to_string());
            Ok(())
        });
        out
    }

    #[test]
    fn posture_windows_take_fractions_of_a_day_and_refuse_nonsense() {
        let config = load_in_jail(|jail| {
            jail.set_env("MANDATE_POSTURE_IDLE_DAYS", "0.5");
            Config::load(None, Flags::default())
        })
        .unwrap();
        assert_eq!(config.posture_idle_days, 0.5);
        assert_eq!(config.posture_secret_max_age_days, 90.0);
        for bad in ["0", "-1", "4000"] {
            let err = load_in_jail(|jail| {
                jail.set_env("MANDATE_POSTURE_SECRET_MAX_AGE_DAYS", bad);
                Config::load(None, Flags::default())
            })
            .unwrap_err();
            assert!(
                err.starts_with("configuration: posture_secret_max_age_days"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn approvals_time_out_after_five_minutes_unless_told_and_webhooks_need_http() {
        let config = load_in_jail(|_| Config::load(None, Flags::default())).unwrap();
        assert_eq!(config.approval_timeout_seconds, 300);
        assert_eq!(config.approval_webhook_url, None);
        let config = load_in_jail(|jail| {
            jail.set_env("MANDATE_APPROVAL_TIMEOUT_SECONDS", "30");
            jail.set_env(
                "MANDATE_APPROVAL_WEBHOOK_URL",
                "https://hooks.example/mandate",
            );
            Config::load(None, Flags::default())
        })
        .unwrap();
        assert_eq!(config.approval_timeout_seconds, 30);
        assert_eq!(
            config.approval_webhook_url.as_deref(),
            Some("https://hooks.example/mandate")
        );
        for (key, bad, expected) in [
            (
                "MANDATE_APPROVAL_TIMEOUT_SECONDS",
                "0",
                "configuration: approval_timeout_seconds: must be between 1 and 86400 (a day)",
            ),
            (
                "MANDATE_APPROVAL_WEBHOOK_URL",
                "file:///etc/passwd",
                "configuration: approval_webhook_url: must be an http:// or https:// URL",
            ),
        ] {
            let err = load_in_jail(|jail| {
                jail.set_env(key, bad);
                Config::load(None, Flags::default())
            })
            .unwrap_err();
            assert_eq!(err, expected);
        }
        // The key itself is no setting: not in the file, and its variable is
        // read by the node, not the configuration.
        let err = load_in_jail(|jail| {
            jail.create_file("m.toml", "approval_webhook_secret = \"0123456789abcdef\"")
                .unwrap();
            Config::load(Some(Path::new("m.toml")), Flags::default())
        })
        .unwrap_err();
        assert!(err.contains("approval_webhook_secret"), "{err}");
        let c = load_in_jail(|jail| {
            jail.set_env("MANDATE_APPROVAL_WEBHOOK_SECRET", "0123456789abcdef");
            Config::load(None, Flags::default())
        });
        assert!(c.is_ok(), "{c:?}");
    }

    #[test]
    fn keys_lists_every_field() {
        let value = serde_json::to_value(Config::default()).unwrap();
        let mut fields: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut keys = KEYS.to_vec();
        fields.sort();
        keys.sort();
        assert_eq!(fields, keys);
    }

    #[test]
    fn defaults_listen_on_loopback_only() {
        let c = load_in_jail(|_| Config::load(None, Flags::default())).unwrap();
        assert!(c.listen.ip().is_loopback());
        assert_eq!(c.database_url(), "sqlite://mandate-data/mandate.db");
        assert_eq!(c.policy_dir(), PathBuf::from("mandate-data/policies"));
    }

    #[test]
    fn flags_beat_env_which_beats_the_file() {
        let c = load_in_jail(|jail| {
            jail.create_file(
                "m.toml",
                "listen = \"127.0.0.1:1000\"\nmax_batch_items = 5\nlog_level = \"debug\"",
            )
            .unwrap();
            jail.set_env("MANDATE_LISTEN", "127.0.0.1:2000");
            jail.set_env("MANDATE_MAX_BATCH_ITEMS", "7");
            Config::load(
                Some(Path::new("m.toml")),
                Flags {
                    listen: Some("127.0.0.1:3000".into()),
                },
            )
        })
        .unwrap();
        assert_eq!(c.listen.port(), 3000);
        assert_eq!(c.max_batch_items, 7);
        assert_eq!(c.log_level, "debug");
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let err = load_in_jail(|jail| {
            jail.set_env("MANDATE_MAX_BODY_BYTES", "lots");
            Config::load(None, Flags::default())
        })
        .unwrap_err();
        // Named as the user wrote it: MANDATE_MAX_BODY_BYTES.
        assert!(err.contains("MAX_BODY_BYTES"), "{err}");
        let err = load_in_jail(|jail| {
            jail.create_file("m.toml", "lisen = \"127.0.0.1:1\"")
                .unwrap();
            Config::load(Some(Path::new("m.toml")), Flags::default())
        })
        .unwrap_err();
        assert!(err.contains("lisen"), "{err}");
        let err = load_in_jail(|_| Config::load(Some(Path::new("missing.toml")), Flags::default()))
            .unwrap_err();
        assert!(err.contains("missing.toml"), "{err}");
    }

    #[test]
    fn unsafe_values_are_refused() {
        let err = load_in_jail(|jail| {
            jail.set_env("MANDATE_AUTHZEN_API_KEY", "short");
            Config::load(None, Flags::default())
        })
        .unwrap_err();
        assert_eq!(
            err,
            "configuration: authzen_api_key: must be at least 16 characters"
        );
        let err = load_in_jail(|jail| {
            jail.set_env("MANDATE_DATABASE", "mysql://x");
            Config::load(None, Flags::default())
        })
        .unwrap_err();
        assert!(err.contains("database"), "{err}");
    }

    #[test]
    fn an_api_key_of_digits_stays_text() {
        let c = load_in_jail(|jail| {
            jail.set_env("MANDATE_AUTHZEN_API_KEY", "1234567890123456789");
            Config::load(None, Flags::default())
        })
        .unwrap();
        assert_eq!(c.authzen_api_key.as_deref(), Some("1234567890123456789"));
    }

    #[test]
    fn a_secrets_kek_is_checked_without_being_quoted() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let c = load_in_jail(|jail| {
            jail.set_env("MANDATE_SECRETS_KEK", hex);
            Config::load(None, Flags::default())
        })
        .unwrap();
        assert_eq!(c.secrets_kek.as_deref(), Some(hex));
        let err = load_in_jail(|jail| {
            jail.set_env("MANDATE_SECRETS_KEK", "c2hvcnQtc2VjcmV0");
            Config::load(None, Flags::default())
        })
        .unwrap_err();
        assert_eq!(
            err,
            "configuration: secrets_kek: the secrets KEK must be 64 hex characters or the base64 \
             of 32 bytes: it does not decode to exactly 32 bytes"
        );
        let err = load_in_jail(|jail| {
            jail.set_env("MANDATE_SECRETS_KEK", hex);
            jail.set_env("MANDATE_SECRETS_KEK_FILE", "/etc/mandate/kek");
            Config::load(None, Flags::default())
        })
        .unwrap_err();
        assert_eq!(
            err,
            "configuration: secrets_kek: set secrets_kek or secrets_kek_file, not both"
        );
    }

    const GITHUB: &str = r#"
[[http_upstreams]]
name = "github"
url = "https://api.github.com"
credential = { header = "Authorization", secret = "github-token", format = "Bearer {secret}" }

[[http_upstreams.rules]]
method = "GET"
path = "/repos/{owner}/{repo}/issues"
action = "list_issues"
resource_type = "Repo"
resource_id = "{owner}/{repo}"
class = "read"
"#;

    #[test]
    fn http_upstreams_are_read_from_toml_with_defaults() {
        let c = load_in_jail(|jail| {
            jail.create_file("m.toml", GITHUB).unwrap();
            Config::load(Some(Path::new("m.toml")), Flags::default())
        })
        .unwrap();
        let github = &c.http_upstreams[0];
        assert_eq!(github.timeout_ms, 30_000);
        assert_eq!(github.max_body_bytes, None);
        let rule = &github.rules[0];
        assert_eq!((rule.labels.len(), rule.egress), (0, false));
        assert_eq!(github.routes().unwrap().len(), 1);
    }

    #[test]
    fn the_documented_http_upstream_loads() {
        let readme = include_str!("../../../README.md");
        let doc = &readme[readme
            .find("## HTTP reverse proxy")
            .expect("the README documents the proxy")..];
        let start = doc.find("```toml\n").expect("a TOML example") + "```toml\n".len();
        let toml = &doc[start..start + doc[start..].find("```").unwrap()];
        let c = load_in_jail(|jail| {
            jail.create_file("m.toml", toml).unwrap();
            Config::load(Some(Path::new("m.toml")), Flags::default())
        })
        .unwrap();
        let routes = c.http_upstreams[0].routes().unwrap();
        let matched = routes
            .match_request("POST", "/repos/acme/web/issues")
            .unwrap();
        assert_eq!(
            (matched.action.as_str(), matched.resource_id.as_str()),
            ("create_issue", "acme/web")
        );
    }

    #[test]
    fn a_bad_http_rule_is_named_by_upstream_and_index() {
        let cases = [
            (
                GITHUB.replace("class = \"read\"", "class = \"write\""),
                r#"configuration: http_upstreams: github: rules[0]: class "write" must be read, act or delegate"#,
            ),
            (
                GITHUB.replace("{owner}/{repo}\"\nclass", "{owner}/{repository}\"\nclass"),
                r#"configuration: http_upstreams: github: rules[0]: resource_id "{owner}/{repository}": {repository} is not a capture of the path (it has ["owner", "repo"])"#,
            ),
            (
                GITHUB.replace("https://api.github.com", "https://api.github.com/?x=1"),
                "configuration: http_upstreams: github: url must be an http:// or https:// base URL without query or fragment",
            ),
            (
                format!(
                    "{GITHUB}\n[[mcp_upstreams]]\nname = \"github\"\nurl = \"http://127.0.0.1:1/mcp\"\n"
                ),
                r#"configuration: http_upstreams: name "github" is also an MCP upstream's: their tools would share names"#,
            ),
            (
                GITHUB.replace("header = \"Authorization\"", "header = \"Bad Header\""),
                r#"configuration: http_upstreams: github: credential header "Bad Header" is not a header name"#,
            ),
        ];
        for (toml, expected) in cases {
            let err = load_in_jail(|jail| {
                jail.create_file("m.toml", &toml).unwrap();
                Config::load(Some(Path::new("m.toml")), Flags::default())
            })
            .unwrap_err();
            assert_eq!(err, expected);
        }
    }

    #[test]
    fn stdio_upstreams_take_a_command_and_an_env_credential() {
        let load = |toml: &str| {
            load_in_jail(|jail| {
                jail.create_file("m.toml", toml).unwrap();
                Config::load(Some(Path::new("m.toml")), Flags::default())
            })
        };
        let c = load(
            "[[mcp_upstreams]]\nname = \"fs\"\ncommand = [\"npx\", \"-y\", \"server\"]\n\
             env = { A_B = \"1\" }\ncredential = { env = \"TOKEN\", secret = \"fs-token\" }\n",
        )
        .unwrap();
        let fs = &c.mcp_upstreams[0];
        assert_eq!(fs.url, None);
        assert_eq!(fs.command.as_deref().unwrap(), ["npx", "-y", "server"]);
        assert_eq!(fs.env["A_B"], "1");
        assert_eq!(
            fs.credential.as_ref().unwrap().env.as_deref(),
            Some("TOKEN")
        );
        for (toml, expected) in [
            (
                "[[mcp_upstreams]]\nname = \"x\"\n",
                "configuration: mcp_upstreams: x: give exactly one of url (Streamable HTTP) and command (stdio)",
            ),
            (
                "[[mcp_upstreams]]\nname = \"x\"\nurl = \"http://h/mcp\"\ncommand = [\"a\"]\n",
                "configuration: mcp_upstreams: x: give exactly one of url (Streamable HTTP) and command (stdio)",
            ),
            (
                "[[mcp_upstreams]]\nname = \"x\"\ncommand = []\n",
                r#"configuration: mcp_upstreams: x: command must name a program: ["program", "arg", ...]"#,
            ),
            (
                "[[mcp_upstreams]]\nname = \"x\"\ncommand = [\"a\"]\ncredential = { header = \"X-Key\", secret = \"k\" }\n",
                r#"configuration: mcp_upstreams: x: the credential of a command upstream is { env = "VAR", secret = "..." }, not a header"#,
            ),
            (
                "[[mcp_upstreams]]\nname = \"x\"\ncommand = [\"a\"]\ncredential = { env = \"1X\", secret = \"k\" }\n",
                r#"configuration: mcp_upstreams: x: credential env "1X" is not an environment variable name"#,
            ),
            (
                "[[mcp_upstreams]]\nname = \"x\"\nurl = \"http://h/mcp\"\ncredential = { env = \"K\", secret = \"k\" }\n",
                "configuration: mcp_upstreams: x: the credential needs a header (env is only for command upstreams)",
            ),
            (
                "[[mcp_upstreams]]\nname = \"x\"\nurl = \"http://h/mcp\"\nenv = { A = \"1\" }\n",
                "configuration: mcp_upstreams: x: env is only for a command upstream",
            ),
        ] {
            assert_eq!(load(toml).unwrap_err(), expected, "{toml}");
        }
    }

    #[test]
    fn unrelated_mandate_variables_are_ignored() {
        let c = load_in_jail(|jail| {
            jail.set_env("MANDATE_TEST_POSTGRES_URL", "postgres://x");
            Config::load(None, Flags::default())
        });
        assert!(c.is_ok(), "{c:?}");
    }
}
