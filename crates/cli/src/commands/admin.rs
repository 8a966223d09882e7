//! `mandate admin credential ...`: named admin credentials, one per person,
//! so that approvals and other admin actions name who made them.
//!
//! A new credential is shown once (or written to `--out`, readable only by
//! the user); the node keeps only its hash.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::admin_client::AdminArgs;

/// `mandate admin ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum AdminCommand {
    /// Admin credentials.
    #[command(subcommand)]
    Credential(CredentialCommand),
}

/// `mandate admin credential ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum CredentialCommand {
    /// Make a credential for a person (an approver): printed once.
    Create {
        /// Their name: lower-case letters, digits, '.', '_', '-', '@' (alice,
        /// bob@example.com).
        name: String,
        /// Write the credential to this new file (mode 0600) instead of
        /// printing it.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List credentials: names, IDs and dates, never the credentials.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

pub(crate) async fn run(command: AdminCommand) -> anyhow::Result<ExitCode> {
    let AdminCommand::Credential(command) = command;
    match command {
        CredentialCommand::Create { name, out, admin } => {
            if let Some(path) = &out {
                anyhow::ensure!(!path.exists(), "{} already exists", path.display());
            }
            let body = admin
                .call(
                    Method::POST,
                    "/admin/v1/credentials",
                    Some(&json!({ "name": name })),
                )
                .await?
                .unwrap_or(Value::Null);
            let secret = body["secret"]
                .as_str()
                .ok_or_else(|| anyhow::anyhow!("the node answered without a credential"))?;
            match out {
                Some(path) => {
                    write_private(&path, secret)?;
                    println!(
                        "admin credential {name} made ({}); written to {}",
                        text(&body["credential"]["id"]),
                        path.display()
                    );
                }
                None => {
                    eprintln!(
                        "admin credential {name} ({}), shown once; only its hash is kept:",
                        text(&body["credential"]["id"])
                    );
                    println!("{secret}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        CredentialCommand::List { json, admin } => {
            let body = admin
                .call(Method::GET, "/admin/v1/credentials", None)
                .await?
                .unwrap_or(Value::Null);
            if json {
                println!("{}", serde_json::to_string_pretty(&body)?);
                return Ok(ExitCode::SUCCESS);
            }
            for c in body["credentials"].as_array().cloned().unwrap_or_default() {
                println!(
                    "{:<32} {:<20} created {}",
                    text(&c["name"]),
                    text(&c["id"]),
                    text(&c["created_at"])
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Writes `secret` to a new file only the user can read.
fn write_private(path: &std::path::Path, secret: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    writeln!(file, "{secret}")?;
    Ok(())
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}
