//! The REST proxy's added cost: a `GET` through `mandate serve`'s
//! `/proxy/<upstream>/<path>` against the same request made directly to the
//! upstream, measured side by side in one run, with the task token + DPoP
//! check, the rule match, the Cedar decision and the durable audit record all
//! on. The sibling of the `gateway` bench, with the same driver
//! (`support/load.rs`) and the same figures.
//!
//! Run it with:
//!
//! ```text
//! cargo bench -p mandate-cli --bench proxy
//! ```
//!
//! What it does:
//!
//! 1. starts a fast REST upstream inside this process (axum on loopback, on
//!    its own 2-thread runtime): `GET /api/repos/{owner}/{repo}/issues`
//!    answers a small JSON array;
//! 2. starts the real `mandate` binary (bench profile) with a SQLite store in
//!    a temp dir, the shipped `policies/` (whose example declares the `github`
//!    upstream's `list_issues` action) and a config declaring that upstream
//!    as `github` with the rule `GET /repos/{owner}/{repo}/issues` →
//!    `list_issues` on `Repo::"{owner}/{repo}"`, class `read`;
//! 3. registers one `dev` agent and gets two task tokens for the tool
//!    `github.list_issues` with capability `read`, DPoP-bound to its ES256
//!    key and to a fresh Ed25519 key;
//! 4. drives `direct` (`GET <upstream>/api/repos/acme/web/issues?state=open`,
//!    the baseline) and `proxy ES256` / `proxy EdDSA`
//!    (`GET <node>/proxy/github/repos/acme/web/issues?state=open` with
//!    `Authorization: DPoP` and a fresh proof each) closed loop and paced,
//!    interleaved, then the sustained run, exactly as the gateway bench does
//!    (see its documentation for every setting, `MANDATE_BENCH_CALLS` and
//!    `MANDATE_BENCH_NODE_WRAPPER` included).
//!
//! Every answer must be a 200 with the upstream's JSON array; a single
//! failure makes the run invalid (exit status 1). The targets judged are the
//! gateway's (issue 5).

mod support;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::Path as UrlPath;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use support::load::{ROUTES, Settings, Target, Workload, bindings};
use support::{LIMITS, Node};

/// What the upstream answers, byte for byte.
const ISSUES: &str = r#"[{"number":1,"title":"ok","state":"open"}]"#;

/// `GET /api/repos/{owner}/{repo}/issues` of the in-process upstream.
async fn upstream_issues(UrlPath((_owner, _repo)): UrlPath<(String, String)>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], ISSUES).into_response()
}

/// Writes the node's config: the upstream at `upstream_base` as `github`,
/// with one rule.
fn write_config(dir: &Path, upstream_base: &str) -> PathBuf {
    let config = dir.join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            "{LIMITS}[[http_upstreams]]\nname = \"github\"\nurl = \"{upstream_base}/api\"\n\n\
             [[http_upstreams.rules]]\nmethod = \"GET\"\npath = \"/repos/{{owner}}/{{repo}}/issues\"\n\
             action = \"list_issues\"\nresource_type = \"Repo\"\nresource_id = \"{{owner}}/{{repo}}\"\n\
             class = \"read\"\n"
        ),
    )
    .expect("config file");
    config
}

fn no_body(_id: u64) -> Option<String> {
    None
}

fn issues_answer(_id: u64, body: &Bytes) -> Result<(), String> {
    if body.as_ref() == ISSUES.as_bytes() {
        Ok(())
    } else {
        Err(format!(
            "not the upstream's answer: {}",
            String::from_utf8_lossy(body)
        ))
    }
}

async fn run(node: &Node, upstream_base: &str, settings: Settings) -> bool {
    let details = json!([{
        "type": "agent_task",
        "purpose": "bench",
        "tools": ["github.list_issues"],
        "ttl_seconds": 900,
        "capabilities": ["read"],
    }]);
    let workload = Workload {
        through: "proxy",
        method: reqwest::Method::GET,
        direct_url: format!("{upstream_base}/api/repos/acme/web/issues?state=open"),
        node_url: format!(
            "{}/proxy/github/repos/acme/web/issues?state=open",
            node.http_base
        ),
        headers: vec![("accept", "application/json")],
        body: no_body,
        check: issues_answer,
    };
    let target = Arc::new(Target::new(workload, bindings(node, &details).await));
    // The real thing works on every route before anything is timed.
    for route in ROUTES {
        let response = target
            .request_to(route, reqwest::Method::GET, None, None, None)
            .send()
            .await
            .expect("an answer");
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        assert!(
            status == 200 && issues_answer(0, &body).is_ok(),
            "{route:?}: {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    support::load::run(target, node, settings).await
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench` (and a filter, if any); nothing to choose here.
    let settings = Settings::from_env();
    let dir = tempfile::tempdir().expect("temp dir");
    let app = axum::Router::new().route(
        "/api/repos/{owner}/{repo}/issues",
        axum::routing::get(upstream_issues),
    );
    let (upstream_runtime, upstream_base) = support::serve_upstream(app);
    let config = write_config(dir.path(), &upstream_base);
    let node = Node::start(dir.path(), Some(&config));
    let status =
        support::run_then_stop(node, async |node| run(node, &upstream_base, settings).await);
    drop(upstream_runtime);
    status
}
