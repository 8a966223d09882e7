//! `mandate audit verify`, `mandate audit tail` and `mandate audit trace`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use mandate_core::{AuditRecord, HeadSealer};
use mandate_server::existing_head_key;
use mandate_store::{VerifyError, verify_audit};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{StoreArgs, init_quiet_logs};

/// Exit code of `audit verify` for a broken log.
const BROKEN: u8 = 3;

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Walk every node's hash chain; exit 0 if intact, 3 naming the first broken record.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print the latest audit records.
    Tail {
        #[command(flatten)]
        store: StoreArgs,
        /// How many records to print.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: u32,
        /// Keep printing new records as they are written.
        #[arg(short, long)]
        follow: bool,
        /// One JSON object per record instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the tree of a task: its token, the tasks delegated from it and
    /// every call, approval and revocation, in order, from the audit log alone.
    Trace {
        /// The task (`task-...`, as the token answer and `audit tail` show it).
        task_id: String,
        #[command(flatten)]
        store: StoreArgs,
        /// JSON (a tree of tasks with ordered events) instead of text.
        #[arg(long)]
        json: bool,
        /// Walk every chain first, as `audit verify` does (exit 3 if broken);
        /// without it only the records shown have their hashes checked.
        #[arg(long)]
        verify: bool,
    },
}

pub(crate) async fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    init_quiet_logs();
    match cmd {
        AuditCommand::Verify { store } => verify(store).await,
        AuditCommand::Tail {
            store,
            lines,
            follow,
            json,
        } => tail(store, lines, follow, json).await,
        AuditCommand::Trace {
            task_id,
            store,
            json,
            verify,
        } => trace(&task_id, store, json, verify).await,
    }
}

/// The head keys found in `args`' data directory (the node's own, if it is
/// the node's directory).
fn head_keys(args: &StoreArgs) -> anyhow::Result<Vec<(String, HeadSealer)>> {
    let data_dir = args.config()?.data_dir;
    // The node's head key lives only in its data directory.
    Ok(existing_head_key(&data_dir)?
        .map(|(node, key)| (node, HeadSealer::new(&key)))
        .into_iter()
        .collect())
}

async fn trace(
    task_id: &str,
    args: StoreArgs,
    json: bool,
    verify: bool,
) -> anyhow::Result<ExitCode> {
    super::trace::check_task_id(task_id)?;
    let url = args.database_url()?;
    let store = mandate_store::connect(&url).await?;
    if verify {
        let keys = head_keys(&args)?;
        let result = verify_audit(store.as_ref(), &keys).await;
        match result {
            Ok(_) => {}
            Err(VerifyError::Broken(brk)) => {
                store.close().await;
                println!("audit log BROKEN at record {}: {brk}", brk.seq());
                return Ok(ExitCode::from(BROKEN));
            }
            Err(other) => {
                store.close().await;
                return Err(other.into());
            }
        }
    }
    let collected = super::trace::collect(store.as_ref(), task_id).await;
    store.close().await;
    let trace = collected?;
    if let Some(brk) = super::trace::first_modified(&trace) {
        println!("audit log BROKEN at record {}: {brk}", brk.seq());
        return Ok(ExitCode::from(BROKEN));
    }
    let now = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000;
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    if json {
        let value = super::trace::render_json(&trace, now, verify);
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", super::trace::render_text(&trace, now));
        let shown = trace.records;
        if verify {
            println!("{shown} records; every chain verified");
        } else {
            println!(
                "{shown} records, each checked against its hash; `mandate audit verify` (or --verify) shows whether any is missing"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn verify(args: StoreArgs) -> anyhow::Result<ExitCode> {
    let url = args.database_url()?;
    let data_dir = args.config()?.data_dir;
    let keys = head_keys(&args)?;
    let store = mandate_store::connect(&url).await?;
    let result = verify_audit(store.as_ref(), &keys).await;
    store.close().await;
    match result {
        Ok(report) => {
            let per_node: Vec<String> = report
                .chains
                .iter()
                .map(|c| {
                    let sealed = if c.sealed { ", seal checked" } else { "" };
                    format!("{}: {}{sealed}", c.node_id, c.records)
                })
                .collect();
            println!(
                "audit log intact: {} records ({})",
                report.total,
                if per_node.is_empty() {
                    "no nodes".to_owned()
                } else {
                    per_node.join("; ")
                }
            );
            if keys.is_empty() {
                println!(
                    "note: no node key in {}: chains were checked for consistency only; a rewrite with recomputed hashes is caught only with the node's data directory (--data-dir)",
                    data_dir.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(VerifyError::Broken(brk)) => {
            println!("audit log BROKEN at record {}: {brk}", brk.seq());
            Ok(ExitCode::from(BROKEN))
        }
        Err(other) => Err(other.into()),
    }
}

pub(crate) fn format_time(us: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| us.to_string())
}

fn print(record: &AuditRecord, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(record)?);
    } else {
        let e = &record.event;
        let policies = if e.policies.is_empty() {
            "-".to_owned()
        } else {
            e.policies.join(",")
        };
        println!(
            "{} {}#{} {} {} {} {} {} policies={} request_id={}",
            format_time(e.time_us),
            record.node_id,
            record.seq,
            e.kind.as_str(),
            e.outcome.to_uppercase(),
            e.subject,
            e.action,
            e.resource,
            policies,
            if e.request_id.is_empty() {
                "-"
            } else {
                &e.request_id
            },
        );
    }
    Ok(())
}

async fn tail(args: StoreArgs, lines: u32, follow: bool, json: bool) -> anyhow::Result<ExitCode> {
    let store = mandate_store::connect(&args.database_url()?).await?;
    let mut last = 0;
    for (row, record) in store.audit_latest(lines).await? {
        print(&record, json)?;
        last = row;
    }
    if follow {
        // Runs until interrupted.
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            for (row, record) in store.audit_after(last, 1000).await? {
                print(&record, json)?;
                last = row;
            }
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
