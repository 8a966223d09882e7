//! `mandate secret ...`: secrets through a running node's admin API.
//!
//! A value is read from standard input, never from the command line (where
//! `ps` and the shell history would keep it), sent once, and wiped from this
//! process's memory after. No command prints a value: there is no way to get
//! one back out.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};
use zeroize::{Zeroize, Zeroizing};

use super::admin_client::AdminArgs;

/// Secrets commands.
#[derive(Debug, Subcommand)]
pub(crate) enum SecretCommand {
    /// Store a new secret. Its value is read from stdin until end of input
    /// (one trailing newline is dropped): `mandate secret set NAME < file`.
    Set(NameArgs),
    /// Give a secret a new value, read from stdin like `set`.
    Rotate(NameArgs),
    /// List secrets: names, versions and dates, never values.
    List {
        #[command(flatten)]
        admin: AdminArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a secret.
    Delete(NameArgs),
}

#[derive(Debug, Args)]
pub(crate) struct NameArgs {
    /// The secret's name: letters, digits, '.', '_', '-' (at most 128).
    name: String,
    #[command(flatten)]
    admin: AdminArgs,
}

pub(crate) async fn run(command: SecretCommand) -> anyhow::Result<ExitCode> {
    match command {
        SecretCommand::Set(a) => {
            mandate_secrets::validate_name(&a.name)?;
            let value = read_value()?;
            let path = format!("/admin/v1/secrets/{}", a.name);
            let body = send_value(&a.admin, Method::PUT, &path, value).await?;
            println!("stored secret {} (version {})", a.name, version(&body));
            Ok(ExitCode::SUCCESS)
        }
        SecretCommand::Rotate(a) => {
            mandate_secrets::validate_name(&a.name)?;
            let value = read_value()?;
            let path = format!("/admin/v1/secrets/{}/rotate", a.name);
            let body = send_value(&a.admin, Method::POST, &path, value).await?;
            println!("rotated secret {} (version {})", a.name, version(&body));
            Ok(ExitCode::SUCCESS)
        }
        SecretCommand::List { admin, json } => {
            let body = admin
                .call(Method::GET, "/admin/v1/secrets", None)
                .await?
                .unwrap_or(Value::Null);
            if json {
                println!("{}", serde_json::to_string_pretty(&body)?);
                return Ok(ExitCode::SUCCESS);
            }
            let secrets = body["secrets"].as_array().cloned().unwrap_or_default();
            if secrets.is_empty() {
                println!("no secrets");
            }
            for s in secrets {
                println!(
                    "{:<32} v{:<5} created {}  rotated {}",
                    text(&s["name"]),
                    text(&s["version"]),
                    text(&s["created_at"]),
                    s["rotated_at"].as_str().unwrap_or("never"),
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        SecretCommand::Delete(a) => {
            mandate_secrets::validate_name(&a.name)?;
            let path = format!("/admin/v1/secrets/{}", a.name);
            a.admin.call(Method::DELETE, &path, None).await?;
            println!("deleted secret {}", a.name);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The value on stdin, without one trailing newline (`\n` or `\r\n`).
fn read_value() -> anyhow::Result<Zeroizing<String>> {
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("reading the secret's value from stdin; end it with Ctrl-D");
    }
    // Room up front, so the buffer does not move (leaving copies) while it fills.
    let mut bytes = Zeroizing::new(Vec::with_capacity(mandate_secrets::MAX_VALUE_LEN + 2));
    stdin
        .read_to_end(&mut bytes)
        .map_err(|e| anyhow::anyhow!("cannot read the value from stdin: {e}"))?;
    let value = Zeroizing::new(
        std::str::from_utf8(&bytes)
            .map_err(|_| anyhow::anyhow!("the value on stdin must be UTF-8 text"))?
            .to_owned(),
    );
    let trimmed = value
        .strip_suffix("\r\n")
        .or_else(|| value.strip_suffix('\n'))
        .unwrap_or(&value);
    anyhow::ensure!(
        !trimmed.is_empty(),
        "the value is empty: pipe it in on stdin, e.g. `mandate secret set NAME < value.txt`"
    );
    Ok(Zeroizing::new(trimmed.to_owned()))
}

/// Sends `{"value": ...}`, then wipes this side's copies.
async fn send_value(
    admin: &AdminArgs,
    method: Method,
    path: &str,
    value: Zeroizing<String>,
) -> anyhow::Result<Value> {
    let mut body = json!({ "value": value.as_str() });
    drop(value);
    let answer = admin.call(method, path, Some(&body)).await;
    if let Some(Value::String(value)) = body.get_mut("value") {
        value.zeroize();
    }
    Ok(answer?.unwrap_or(Value::Null))
}

fn version(body: &Value) -> String {
    text(&body["secret"]["version"])
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}
