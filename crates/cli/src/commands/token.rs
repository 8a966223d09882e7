//! The agent's side: `mandate token request` obtains a task token with the
//! agent's X.509-SVID (mTLS) and a DPoP proof made with the SVID's key;
//! `mandate dpop` makes a DPoP proof for one request, for curl and scripts.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use mandate_tokens::DpopKey;
use serde_json::{Value, json};

/// `mandate token ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum TokenCommand {
    /// Ask for a task token (RFC 8693 token exchange) as an agent.
    Request(RequestArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Binding {
    /// DPoP (RFC 9449), with the SVID's key.
    Dpop,
    /// The mTLS certificate (RFC 8705).
    Mtls,
}

#[derive(Debug, Args)]
pub(crate) struct RequestArgs {
    /// Directory with the agent's svid.pem, svid.key and bundle.pem (from `agent create`).
    #[arg(long, value_name = "DIR")]
    svid: PathBuf,
    /// Base URL of the node's TLS listener.
    #[arg(
        long,
        value_name = "URL",
        env = "MANDATE_TLS_SERVER",
        default_value = "https://127.0.0.1:8443"
    )]
    server: String,
    /// What the task is for.
    #[arg(long)]
    purpose: String,
    /// A tool the task needs (repeat for more).
    #[arg(long = "tool", value_name = "NAME", required = true)]
    tools: Vec<String>,
    /// A data domain the task touches (repeat for more).
    #[arg(long = "data-domain", value_name = "NAME")]
    data_domains: Vec<String>,
    /// A capability: read, act or delegate (repeat for more).
    #[arg(long = "capability", value_name = "CLASS", default_value = "read")]
    capabilities: Vec<String>,
    /// Task lifetime in seconds.
    #[arg(long, default_value_t = 300)]
    ttl: u64,
    /// Call budget.
    #[arg(long)]
    max_calls: Option<u64>,
    /// How the token is bound to the agent.
    #[arg(long, value_enum, default_value = "dpop")]
    binding: Binding,
    /// A parent task token (file) to delegate from: this agent becomes its sub-agent.
    #[arg(long, value_name = "FILE")]
    parent_token: Option<PathBuf>,
    /// Write the access token alone to this file (the full answer goes to stdout).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// `mandate dpop`.
#[derive(Debug, Args)]
pub(crate) struct DpopArgs {
    /// The private key (PKCS#8 PEM), e.g. the agent's svid.key.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// HTTP method of the request.
    #[arg(long, default_value = "POST")]
    method: String,
    /// Absolute URL of the request.
    #[arg(long)]
    url: String,
    /// File holding the access token the proof accompanies (sets `ath`).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

pub(crate) fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// An HTTPS client presenting the agent's SVID and trusting its bundle.
pub(crate) fn svid_client(dir: &Path) -> anyhow::Result<reqwest::Client> {
    let cert = read(&dir.join("svid.pem"))?;
    let key = read(&dir.join("svid.key"))?;
    let bundle = read(&dir.join("bundle.pem"))?;
    let identity = reqwest::Identity::from_pem(format!("{cert}\n{key}").as_bytes())
        .map_err(|e| anyhow::anyhow!("the SVID in {} cannot be used: {e}", dir.display()))?;
    let mut builder = reqwest::Client::builder().identity(identity);
    for cert in reqwest::Certificate::from_pem_bundle(bundle.as_bytes())
        .map_err(|e| anyhow::anyhow!("bundle.pem: {e}"))?
    {
        builder = builder.add_root_certificate(cert);
    }
    Ok(builder.build()?)
}

/// What a task token is asked for: the `agent_task` authorization details.
#[derive(Debug, Clone)]
pub(crate) struct TaskSpec {
    pub(crate) purpose: String,
    pub(crate) tools: Vec<String>,
    pub(crate) data_domains: Vec<String>,
    pub(crate) capabilities: Vec<String>,
    pub(crate) ttl: u64,
    pub(crate) max_calls: Option<u64>,
}

/// Asks `{server}/oauth/token` for a task token as the agent whose SVID is in
/// `svid` (over mTLS with `client`, made by [`svid_client`]). With `dpop`,
/// the token is bound to that key by a proof; else to the certificate. With
/// `parent`, the token is delegated from that parent token. Returns the
/// token endpoint's answer (`access_token`, `expires_in`, `task_id`, ...).
pub(crate) async fn request_token(
    client: &reqwest::Client,
    server: &str,
    task: &TaskSpec,
    dpop: Option<&DpopKey>,
    parent: Option<&str>,
) -> anyhow::Result<Value> {
    let url = format!("{}/oauth/token", server.trim_end_matches('/'));
    let details = json!([{
        "type": "agent_task",
        "purpose": task.purpose,
        "tools": task.tools,
        "data_domains": task.data_domains,
        "ttl_seconds": task.ttl,
        "max_calls": task.max_calls,
        "capabilities": task.capabilities,
    }]);
    let mut form = vec![
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange".to_owned(),
        ),
        ("authorization_details", details.to_string()),
    ];
    if let Some(parent) = parent {
        form.push(("subject_token", parent.trim().to_owned()));
        form.push((
            "subject_token_type",
            "urn:ietf:params:oauth:token-type:access_token".to_owned(),
        ));
    }
    let mut request = client.post(&url).form(&form);
    if let Some(key) = dpop {
        request = request.header("DPoP", key.proof("POST", &url, None, now()));
    }
    let response = request
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach {url}: {e}"))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        anyhow::bail!(
            "{status}: {} ({})",
            body["error_description"].as_str().unwrap_or(""),
            body["error"].as_str().unwrap_or("error")
        );
    }
    Ok(body)
}

/// The agent's SVID key (`svid.key` in `dir`), as a DPoP key.
pub(crate) fn svid_key(dir: &Path) -> anyhow::Result<DpopKey> {
    DpopKey::from_pkcs8_pem(&read(&dir.join("svid.key"))?)
        .map_err(|e| anyhow::anyhow!("svid.key: {e}"))
}

pub(crate) async fn run(command: TokenCommand) -> anyhow::Result<ExitCode> {
    let TokenCommand::Request(args) = command;
    let client = svid_client(&args.svid)?;
    let task = TaskSpec {
        purpose: args.purpose,
        tools: args.tools,
        data_domains: args.data_domains,
        capabilities: args.capabilities,
        ttl: args.ttl,
        max_calls: args.max_calls,
    };
    let key = match args.binding {
        Binding::Dpop => Some(svid_key(&args.svid)?),
        Binding::Mtls => None,
    };
    let parent = args.parent_token.as_deref().map(read).transpose()?;
    let body = request_token(
        &client,
        &args.server,
        &task,
        key.as_ref(),
        parent.as_deref(),
    )
    .await?;
    if let Some(out) = &args.out {
        std::fs::write(out, body["access_token"].as_str().unwrap_or(""))
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
    }
    println!("{}", serde_json::to_string_pretty(&body)?);
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn dpop(args: DpopArgs) -> anyhow::Result<ExitCode> {
    let key = DpopKey::from_pkcs8_pem(&read(&args.key)?)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.key.display()))?;
    let token = args.token_file.as_deref().map(read).transpose()?;
    println!(
        "{}",
        key.proof(
            &args.method.to_ascii_uppercase(),
            &args.url,
            token.as_deref().map(str::trim),
            now()
        )
    );
    Ok(ExitCode::SUCCESS)
}
