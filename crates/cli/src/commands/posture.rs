//! `mandate posture`: what needs attention, from a running node's
//! `GET /admin/v1/posture`, as text or as the node's JSON.

use std::fmt::Write as _;
use std::process::ExitCode;

use clap::Args;
use reqwest::Method;
use serde_json::Value;

use super::admin_client::AdminArgs;

/// `mandate posture` arguments.
#[derive(Debug, Args)]
pub(crate) struct PostureArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: PostureArgs) -> anyhow::Result<ExitCode> {
    let report = args
        .admin
        .call(Method::GET, "/admin/v1/posture", None)
        .await?
        .unwrap_or(Value::Null);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_text(&report));
    }
    Ok(ExitCode::SUCCESS)
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(|i| !i.is_object()) => {
            items.iter().map(scalar).collect::<Vec<_>>().join(", ")
        }
        other => other.to_string(),
    }
}

fn joined(value: &Value) -> String {
    match value.as_array() {
        Some(items) if !items.is_empty() => items.iter().map(scalar).collect::<Vec<_>>().join(", "),
        _ => "-".to_owned(),
    }
}

/// The report as text: a summary line, then one block per finding.
pub(crate) fn render_text(report: &Value) -> String {
    let mut out = String::new();
    let summary = &report["summary"];
    let window = &report["window"];
    let _ = writeln!(
        out,
        "posture at {}: {} findings ({} high, {} medium, {} low); window {} days since {}{}",
        scalar(&report["generated_at"]),
        summary["total"],
        summary["high"],
        summary["medium"],
        summary["low"],
        window["idle_days"],
        scalar(&window["since"]),
        if window["complete"] == Value::Bool(false) {
            " (partial: the window holds more records or tasks than one report reads)"
        } else {
            ""
        }
    );
    for finding in report["findings"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "\n{:<6}  {}  {}",
            scalar(&finding["severity"]).to_uppercase(),
            scalar(&finding["id"]),
            scalar(&finding["subject"])
        );
        let _ = writeln!(out, "        {}", scalar(&finding["title"]));
        if let Some(detail) = finding["detail"].as_object() {
            for (key, value) in detail {
                if value.is_null() {
                    continue;
                }
                let _ = writeln!(out, "        {key}: {}", scalar(value));
            }
        }
        let m = &finding["mappings"];
        let _ = writeln!(
            out,
            "        OWASP Agentic: {} | OWASP NHI: {} | NIST AI RMF: {}",
            joined(&m["owasp_agentic"]),
            joined(&m["owasp_nhi"]),
            joined(&m["nist_ai_rmf"])
        );
        let _ = writeln!(out, "        fix: {}", scalar(&finding["remediation"]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_lists_each_finding_with_its_mappings() {
        let report = json!({
            "generated_at": "2026-11-25T10:00:00Z",
            "window": {"since": "2026-10-26T10:00:00Z", "idle_days": 30.0, "complete": true},
            "summary": {"total": 1, "high": 0, "medium": 1, "low": 0},
            "findings": [{
                "id": "secret_not_rotated", "severity": "medium",
                "title": "secret not rotated within the maximum age", "subject": "github-token",
                "detail": {"age_days": 120.5, "rotated_at": null, "version": 1},
                "mappings": {"owasp_agentic": ["ASI03 Identity and Privilege Abuse"],
                             "owasp_nhi": ["NHI7:2025 Long-Lived Secrets"],
                             "nist_ai_rmf": ["MEASURE 2.7"]},
                "remediation": "Rotate it."
            }]
        });
        assert_eq!(
            render_text(&report),
            "posture at 2026-11-25T10:00:00Z: 1 findings (0 high, 1 medium, 0 low); window 30.0 days since 2026-10-26T10:00:00Z

MEDIUM  secret_not_rotated  github-token
        secret not rotated within the maximum age
        age_days: 120.5
        version: 1
        OWASP Agentic: ASI03 Identity and Privilege Abuse | OWASP NHI: NHI7:2025 Long-Lived Secrets | NIST AI RMF: MEASURE 2.7
        fix: Rotate it.
"
        );
    }
}
