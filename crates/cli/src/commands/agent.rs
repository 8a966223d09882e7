//! `mandate agent ...` and `mandate keys rotate`: the agent registry and
//! signing keys, through a running node's admin API.
//!
//! `agent create` makes the agent's private key here, sends only its public
//! half, and writes what the built-in CA returns to `--out`: `svid.pem` (the
//! X.509-SVID), `svid.key` (the private key, mode 0600), `bundle.pem` (the
//! CA to trust) and `bundle.spiffe.json` (the same as a SPIFFE bundle).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::admin_client::AdminArgs;

/// Agent registry commands.
#[derive(Debug, Subcommand)]
pub(crate) enum AgentCommand {
    /// Register an agent and, in the built-in trust domain, issue its SVID.
    Create(CreateArgs),
    /// List agents.
    List {
        #[command(flatten)]
        admin: AdminArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one agent and its active tasks.
    Show(NameArgs),
    /// Suspend an agent: its tokens are refused from now on.
    Suspend(NameArgs),
    /// Resume a suspended agent.
    Resume(NameArgs),
    /// Stop an agent at once: suspend it, revoke every task it and its
    /// delegates hold, cancel its pending approvals and cut its calls in flight.
    Kill(NameArgs),
    /// Delete an agent from the registry.
    Delete(NameArgs),
    /// Issue a fresh SVID for an agent (keeps its key in --out if there is one).
    Renew(RenewArgs),
}

#[derive(Debug, Args)]
pub(crate) struct NameArgs {
    /// The agent's name.
    name: String,
    #[command(flatten)]
    admin: AdminArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// The agent's name: lower-case letters, digits, '-', '_', '.'.
    name: String,
    /// E-mail of the person accountable for the agent.
    #[arg(long)]
    owner: String,
    /// Environment it runs in (dev, staging, prod, ...).
    #[arg(long)]
    env: String,
    /// What the agent is for, in a sentence.
    #[arg(long)]
    function: String,
    /// Its SPIFFE ID when its identity comes from another trust domain (a
    /// SPIRE server); no SVID is issued then.
    #[arg(long, value_name = "SPIFFE_ID")]
    spiffe_id: Option<String>,
    /// Directory for the SVID, key and bundle [default: ./NAME].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RenewArgs {
    /// The agent's name.
    name: String,
    /// Directory of the agent's files [default: ./NAME].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    #[command(flatten)]
    admin: AdminArgs,
}

/// `mandate keys ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Make a new token signing key active; the old one verifies until the overlap ends.
    Rotate {
        #[command(flatten)]
        admin: AdminArgs,
    },
}

pub(crate) async fn run(command: AgentCommand) -> anyhow::Result<ExitCode> {
    match command {
        AgentCommand::Create(args) => create(args).await,
        AgentCommand::List { admin, json } => {
            let body = admin.call(Method::GET, "/admin/v1/agents", None).await?;
            let body = body.unwrap_or(Value::Null);
            if json {
                println!("{}", serde_json::to_string_pretty(&body)?);
            } else {
                let agents = body["agents"].as_array().cloned().unwrap_or_default();
                if agents.is_empty() {
                    println!("no agents");
                }
                for a in agents {
                    println!(
                        "{:<24} {:<10} {:<8} {:<28} {}",
                        text(&a["name"]),
                        text(&a["status"]),
                        text(&a["env"]),
                        text(&a["owner"]),
                        text(&a["spiffe_id"])
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::Show(a) => {
            let path = format!("/admin/v1/agents/{}", a.name);
            let body = a.admin.call(Method::GET, &path, None).await?;
            print_agent(body, a.json)
        }
        AgentCommand::Suspend(a) => {
            let path = format!("/admin/v1/agents/{}/suspend", a.name);
            let body = a.admin.call(Method::POST, &path, None).await?;
            print_agent(body, a.json)
        }
        AgentCommand::Resume(a) => {
            let path = format!("/admin/v1/agents/{}/resume", a.name);
            let body = a.admin.call(Method::POST, &path, None).await?;
            print_agent(body, a.json)
        }
        AgentCommand::Kill(a) => {
            let path = format!("/admin/v1/agents/{}/kill", a.name);
            let body = a
                .admin
                .call(Method::POST, &path, None)
                .await?
                .unwrap_or(Value::Null);
            if a.json {
                println!("{}", serde_json::to_string_pretty(&body)?);
            } else {
                let revoked = body["tasks_revoked"].as_array().map_or(0, Vec::len);
                println!(
                    "killed agent {} ({}): suspended, {revoked} task(s) revoked, {} pending approval(s) cancelled",
                    a.name,
                    text(&body["spiffe_id"]),
                    body["approvals_cancelled"].as_u64().unwrap_or(0),
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::Delete(a) => {
            let path = format!("/admin/v1/agents/{}", a.name);
            a.admin.call(Method::DELETE, &path, None).await?;
            println!("deleted agent {}", a.name);
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::Renew(args) => renew(args).await,
    }
}

pub(crate) async fn run_keys(command: KeysCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::Rotate { admin } => {
            let body = admin
                .call(Method::POST, "/admin/v1/keys/rotate", None)
                .await?
                .unwrap_or(Value::Null);
            println!(
                "active signing key {} (retired {}, which verifies until the overlap ends)",
                text(&body["active_kid"]),
                text(&body["retired_kid"])
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

fn print_agent(body: Option<Value>, json: bool) -> anyhow::Result<ExitCode> {
    let body = body.unwrap_or(Value::Null);
    if json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(ExitCode::SUCCESS);
    }
    let a = &body["agent"];
    for key in [
        "name",
        "spiffe_id",
        "status",
        "owner",
        "env",
        "function",
        "created_at",
        "updated_at",
    ] {
        println!("{key:<10} {}", text(&a[key]));
    }
    if let Some(tasks) = body["active_tasks"].as_array() {
        println!("tasks      {} active", tasks.len());
        for t in tasks {
            println!("  {} until {}", text(&t["task_id"]), text(&t["expires_at"]));
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn create(args: CreateArgs) -> anyhow::Result<ExitCode> {
    let external = args.spiffe_id.is_some();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    let key = if external {
        None
    } else {
        anyhow::ensure!(
            !out.join("svid.key").exists(),
            "{} already holds an svid.key; use `mandate agent renew` or another --out",
            out.display()
        );
        Some(mandate_identity::generate_agent_key().map_err(|e| anyhow::anyhow!("{e}"))?)
    };
    let body = json!({
        "name": args.name,
        "owner": args.owner,
        "env": args.env,
        "function": args.function,
        "spiffe_id": args.spiffe_id,
        "public_key_pem": key.as_ref().map(|(_, public)| public),
    });
    let answer = args
        .admin
        .call(Method::POST, "/admin/v1/agents", Some(&body))
        .await?
        .unwrap_or(Value::Null);
    let agent = &answer["agent"];
    println!(
        "registered agent {} as {}",
        text(&agent["name"]),
        text(&agent["spiffe_id"])
    );
    if let Some((private, _)) = key {
        write_svid(&out, &answer["svid"], Some(&private))?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn renew(args: RenewArgs) -> anyhow::Result<ExitCode> {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    let key_path = out.join("svid.key");
    let (private, public) = if key_path.exists() {
        let private = std::fs::read_to_string(&key_path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", key_path.display()))?;
        let public = mandate_identity::public_key_pem_of(&private)
            .map_err(|e| anyhow::anyhow!("{}: {e}", key_path.display()))?;
        (None, public)
    } else {
        let (private, public) =
            mandate_identity::generate_agent_key().map_err(|e| anyhow::anyhow!("{e}"))?;
        (Some(private), public)
    };
    let path = format!("/admin/v1/agents/{}/svid", args.name);
    let answer = args
        .admin
        .call(
            Method::POST,
            &path,
            Some(&json!({"public_key_pem": public})),
        )
        .await?
        .unwrap_or(Value::Null);
    write_svid(&out, &answer["svid"], private.as_deref())?;
    Ok(ExitCode::SUCCESS)
}

/// Writes the SVID files; the private key is readable only by the user.
fn write_svid(out: &Path, svid: &Value, private_key: Option<&str>) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", out.display()))?;
    if let Some(private) = private_key {
        let path = out.join("svid.key");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options
            .open(&path)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        file.write_all(private.as_bytes())?;
    }
    let bundle_json = serde_json::to_string_pretty(&svid["spiffe_bundle"])?;
    for (name, content) in [
        ("svid.pem", text(&svid["certificate_pem"])),
        ("bundle.pem", text(&svid["bundle_pem"])),
        ("bundle.spiffe.json", bundle_json),
    ] {
        let path = out.join(name);
        std::fs::write(&path, content)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    println!(
        "wrote {0}/svid.pem, {0}/svid.key, {0}/bundle.pem (SVID valid until {1})",
        out.display(),
        text(&svid["expires_at"])
    );
    Ok(())
}
