//! A decision held for a person's approval is a deny on the AuthZEN wire: a
//! PEP that knows nothing of approvals must not let the call through, and a
//! batch treats the hold as the deny it is.

use mandate_authzen::{BatchLimits, BatchOutcome, EvaluationsRequest, evaluate_batch};
use mandate_core::RequestDigester;
use mandate_policy::{PolicyBundle, PolicySources, SourceFile};
use serde_json::json;

fn bundle() -> PolicyBundle {
    PolicyBundle::from_sources(&PolicySources {
        policies: vec![SourceFile {
            name: "p.cedar".into(),
            text: r#"
                @id("anything") permit(principal, action, resource);
                @id("delete-needs-a-person") @approval("deletes data") @reason("destructive")
                forbid(principal, action == Action::"delete", resource);
            "#
            .into(),
        }],
        ..PolicySources::default()
    })
    .unwrap()
}

const LIMITS: BatchLimits = BatchLimits {
    max_items: 10,
    explain: true,
    max_work_bytes: 1 << 20,
};

fn items(semantic: &str) -> Vec<mandate_authzen::EvaluatedItem> {
    let batch: EvaluationsRequest = serde_json::from_value(json!({
        "subject": {"type": "user", "id": "a"},
        "resource": {"type": "doc", "id": "d"},
        "options": {"evaluations_semantic": semantic},
        "evaluations": [
            {"action": {"name": "read"}},
            {"action": {"name": "delete"}},
            {"action": {"name": "read"}}
        ]
    }))
    .unwrap();
    match evaluate_batch(&bundle(), &batch, LIMITS, &RequestDigester::new(b"k")).unwrap() {
        BatchOutcome::Items(items) => items,
        BatchOutcome::Single(_) => panic!("expected items"),
    }
}

#[test]
fn a_hold_answers_decision_false_and_is_recorded_with_its_reason() {
    let all = items("execute_all");
    let decisions: Vec<bool> = all.iter().map(|i| i.response.decision).collect();
    assert_eq!(decisions, [true, false, true]);
    let held = &all[1];
    assert!(held.decision.needs_approval(), "{:?}", held.decision);
    assert!(held.decision.has_tag("destructive"));
    let event = held.audit_event(1, "r");
    assert_eq!(event.detail["reason"], "approval_required");
    assert_eq!(event.policies, ["p.cedar#delete-needs-a-person"]);
}

#[test]
fn a_hold_stops_a_deny_on_first_deny_batch() {
    let decisions: Vec<bool> = items("deny_on_first_deny")
        .iter()
        .map(|i| i.response.decision)
        .collect();
    assert_eq!(decisions, [true, false]);
}
