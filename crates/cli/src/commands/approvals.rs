//! `mandate approvals ...`: calls held for a person's approval, listed,
//! shown and decided through a running node's admin API.
//!
//! A decision is made as the holder of the admin credential used
//! (`MANDATE_ADMIN_TOKEN` or `--admin-token-file`); the audit log records the
//! credential's name as the approver, so each person should have their own
//! (`mandate admin credential create NAME`).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::admin_client::AdminArgs;

/// Approvals commands.
#[derive(Debug, Subcommand)]
pub(crate) enum ApprovalsCommand {
    /// List held calls: the pending ones, or those in another state.
    List {
        /// pending, approved, denied, expired, cancelled, used, or all.
        #[arg(long, default_value = "pending", value_parser = [
            "pending", "approved", "denied", "expired", "cancelled", "used", "all",
        ])]
        state: String,
        /// Most to list (the newest), 1 to 1000.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Show one held call: who asked, for what, why it is held, what became of it.
    Show {
        /// The approval's ID (`apr_...`).
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Approve a held call: that one call (same arguments) runs, once.
    Approve(DecideArgs),
    /// Deny a held call: it fails.
    Deny(DecideArgs),
}

#[derive(Debug, Args)]
pub(crate) struct DecideArgs {
    /// The approval's ID (`apr_...`).
    id: String,
    /// Why, for the audit log and the agent.
    #[arg(long)]
    note: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    admin: AdminArgs,
}

pub(crate) async fn run(command: ApprovalsCommand) -> anyhow::Result<ExitCode> {
    match command {
        ApprovalsCommand::List {
            state,
            limit,
            json,
            admin,
        } => {
            let path = format!("/admin/v1/approvals?state={state}&limit={limit}");
            let body = admin
                .call(Method::GET, &path, None)
                .await?
                .unwrap_or(Value::Null);
            if json {
                println!("{}", serde_json::to_string_pretty(&body)?);
                return Ok(ExitCode::SUCCESS);
            }
            let holds = body["approvals"].as_array().cloned().unwrap_or_default();
            if holds.is_empty() {
                match state.as_str() {
                    "all" => println!("no approvals"),
                    state => println!("no {state} approvals"),
                }
            }
            for a in holds {
                let when = match a["state"].as_str() {
                    Some("pending") => format!("expires {}", text(&a["expires_at"])),
                    _ => match a["approver"].as_str() {
                        Some(who) => format!("by {who} {}", text(&a["decided_at"])),
                        None => format!("{} {}", text(&a["decided_by"]), text(&a["decided_at"])),
                    },
                };
                println!(
                    "{}  {:<9} {:<20} {:<36} {when}",
                    text(&a["id"]),
                    text(&a["state"]),
                    text(&a["agent_name"]),
                    text(&a["resource"]),
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ApprovalsCommand::Show { id, json, admin } => {
            let path = format!("/admin/v1/approvals/{}", checked_id(&id)?);
            let body = admin
                .call(Method::GET, &path, None)
                .await?
                .unwrap_or(Value::Null);
            print_approval(&body, json)
        }
        ApprovalsCommand::Approve(args) => decide(args, "approve").await,
        ApprovalsCommand::Deny(args) => decide(args, "deny").await,
    }
}

async fn decide(args: DecideArgs, verb: &str) -> anyhow::Result<ExitCode> {
    let path = format!("/admin/v1/approvals/{}/{verb}", checked_id(&args.id)?);
    let body = args.note.as_ref().map(|note| json!({ "note": note }));
    let answer = args
        .admin
        .call(Method::POST, &path, body.as_ref())
        .await?
        .unwrap_or(Value::Null);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(ExitCode::SUCCESS);
    }
    let a = &answer["approval"];
    match verb {
        "approve" => println!(
            "approved {} as {}: {} on {} by {} runs once",
            text(&a["id"]),
            text(&a["approver"]),
            text(&a["action"]),
            text(&a["resource"]),
            text(&a["agent_name"]),
        ),
        _ => println!(
            "denied {} as {}: {} on {} by {} fails",
            text(&a["id"]),
            text(&a["approver"]),
            text(&a["action"]),
            text(&a["resource"]),
            text(&a["agent_name"]),
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `id` if it can only name an approval: it goes into a URL path.
fn checked_id(id: &str) -> anyhow::Result<&str> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    anyhow::ensure!(
        ok,
        "{id:?} is not an approval ID (they look like apr_ and 22 letters, digits, '-' and '_')"
    );
    Ok(id)
}

fn print_approval(body: &Value, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(body)?);
        return Ok(ExitCode::SUCCESS);
    }
    let a = &body["approval"];
    let list = |v: &Value| {
        v.as_array()
            .map(|items| items.iter().map(text).collect::<Vec<_>>().join("; "))
            .unwrap_or_default()
    };
    println!("approval   {}", text(&a["id"]));
    println!("state      {}", text(&a["state"]));
    println!(
        "agent      {} ({})",
        text(&a["agent_name"]),
        text(&a["agent"])
    );
    println!(
        "task       {} (root {})",
        text(&a["task_id"]),
        text(&a["root_task_id"])
    );
    println!("purpose    {}", text(&a["purpose"]));
    let via = match a["upstream"].as_str() {
        Some(upstream) if !upstream.is_empty() => format!("{} {upstream}", text(&a["endpoint"])),
        _ => text(&a["endpoint"]),
    };
    println!(
        "call       {} on {} (via {via})",
        text(&a["action"]),
        text(&a["resource"])
    );
    println!("arguments  digest {}", text(&a["argument_digest"]));
    println!("reasons    {}", list(&a["reasons"]));
    println!("policies   {}", list(&a["policies"]));
    println!("created    {}", text(&a["created_at"]));
    println!("expires    {}", text(&a["expires_at"]));
    if !a["decided_at"].is_null() {
        let who = a["approver"]
            .as_str()
            .map_or_else(|| text(&a["decided_by"]), str::to_owned);
        println!("decided    {} by {who}", text(&a["decided_at"]));
    }
    if let Some(note) = a["note"].as_str() {
        println!("note       {note}");
    }
    if !a["closed_at"].is_null() {
        println!("closed     {}", text(&a["closed_at"]));
    }
    Ok(ExitCode::SUCCESS)
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}
