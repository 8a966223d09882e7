//! Durable audit throughput on SQLite with `synchronous=FULL`: group commit
//! through `AuditLog` against one transaction per record.
//!
//! Run with: `cargo bench -p mandate-store --bench audit`

use std::sync::Arc;
use std::time::{Duration, Instant};

use mandate_core::{AuditEvent, AuditRecord, ChainHead};
use mandate_store::{AuditLog, AuditLogConfig, Store, connect, verify_audit};

const APPENDERS: u32 = 256;
const GROUPED_EVENTS: u32 = 50_000;
const SINGLE_EVENTS: u32 = 2_000;

/// Event `n` of the shared sample.
fn event(n: u32) -> AuditEvent {
    mandate_testkit::sample_audit_event(n)
}

/// `APPENDERS` tasks, each appending one event at a time and waiting for it.
async fn grouped(store: Arc<dyn Store>) -> Duration {
    let log = AuditLog::start(
        store,
        "grouped".into(),
        mandate_core::HeadSealer::new(b"test key"),
        AuditLogConfig::default(),
    )
    .await
    .expect("start the audit log");
    let per_task = GROUPED_EVENTS / APPENDERS;
    let started = Instant::now();
    let tasks: Vec<_> = (0..APPENDERS)
        .map(|task| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    log.append(vec![event(task * per_task + i)])
                        .await
                        .expect("append");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("appender");
    }
    let elapsed = started.elapsed();
    log.shutdown().await;
    elapsed
}

/// One record per transaction, in a loop.
async fn single(store: &dyn Store) -> Duration {
    let mut head = ChainHead::GENESIS;
    let started = Instant::now();
    for n in 0..SINGLE_EVENTS {
        let record = AuditRecord::seal("single", head, event(n));
        store
            .append_audit(std::slice::from_ref(&record), "")
            .await
            .expect("append");
        head = record.head();
    }
    started.elapsed()
}

fn rate(events: u32, elapsed: Duration) -> f64 {
    f64::from(events) / elapsed.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = connect(&url).await.expect("open the store");

    let grouped_time = grouped(store.clone()).await;
    let grouped_events = GROUPED_EVENTS / APPENDERS * APPENDERS;
    let single_time = single(&*store).await;

    let report = verify_audit(&*store, &[]).await.expect("the log verifies");
    assert_eq!(report.total, u64::from(grouped_events + SINGLE_EVENTS));
    store.close().await;

    let grouped_rate = rate(grouped_events, grouped_time);
    let single_rate = rate(SINGLE_EVENTS, single_time);
    println!("SQLite, synchronous=FULL, WAL ({url})");
    println!(
        "group commit:   {grouped_events} events from {APPENDERS} appenders in {:.2} s = {grouped_rate:.0} records/s",
        grouped_time.as_secs_f64()
    );
    println!(
        "one per commit: {SINGLE_EVENTS} events in {:.2} s = {single_rate:.0} records/s",
        single_time.as_secs_f64()
    );
    println!("ratio: {:.1}x", grouped_rate / single_rate);
}
