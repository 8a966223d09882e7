//! The baseline policy pack in `policies/`, loaded from the repository as a
//! node loads it, under its schema in strict mode. Each rule is attacked: a
//! request built to get past it, often with a broad permit of the attacker's
//! own beside the pack, must still be refused (or held); and the path the rule
//! leaves open must stay open. Every decision is taken on both the indexed and
//! the reference path, which must agree.

use std::path::PathBuf;

use mandate_core::{Decision, DecisionReason, Effect, normalize_label};
use mandate_policy::cedar_policy::{Context, EntityUid, RestrictedExpression};
use mandate_policy::{DecisionRequest, PolicyBundle, PolicyError, PolicySources, SourceFile};
use serde_json::{Value, json};

const DRIFT: &str = "baseline/drift.cedar#drift";
const CLASS: &str = "baseline/capabilities.cedar#class-needs-capability";
const DESTRUCTIVE: &str = "baseline/approval.cedar#destructive-needs-approval";
const EGRESS: &str = "baseline/egress.cedar#no-egress-after-confidential";
const PROD_UNKNOWN: &str = "baseline/production.cedar#production-no-unknown-tools";
const PROD_EGRESS: &str = "baseline/production.cedar#production-egress-needs-approval";
const PROD_ACT: &str = "baseline/production.cedar#production-act-needs-approval";
const PROD_DEPTH: &str = "baseline/production.cedar#production-delegation-depth";
const CALL_GRANT: &str = "examples/grants.cedar#call-within-task";
const PROXY_GRANT: &str = "examples/grants.cedar#proxy-within-task";

const DESTROYS: &str = "the tool destroys or overwrites data";
const SENDS: &str = "a production agent sends data out";
const ACTS: &str = "a production agent acts or delegates";

/// An attacker's permit of everything, as if standing rights were unlimited.
const PERMIT_ALL: &str = r#"@id("everything") permit(principal, action, resource);"#;

fn policy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

fn sources() -> PolicySources {
    PolicySources::read_dir(&policy_dir()).expect("policies/ reads")
}

/// `policies/` as shipped.
fn pack() -> PolicyBundle {
    PolicyBundle::from_sources(&sources()).expect("policies/ loads")
}

/// `policies/` with a user's file `mine.cedar` beside it.
fn pack_with(extra: &str) -> PolicyBundle {
    let mut s = sources();
    s.policies.push(SourceFile {
        name: "mine.cedar".into(),
        text: extra.into(),
    });
    PolicyBundle::from_sources(&s).expect("policies/ with mine.cedar loads")
}

/// Decides on both paths and insists that they agree.
fn decide(bundle: &PolicyBundle, request: DecisionRequest) -> Decision {
    let fast = bundle.decide(request.clone());
    let full = bundle.decide_unindexed(request.clone());
    assert_eq!(
        fast, full,
        "indexed and full decisions differ for {request:?}"
    );
    fast
}

fn uid(kind: &str, id: &str) -> EntityUid {
    EntityUid::from_json(json!({"type": kind, "id": id})).unwrap()
}

const SPIFFE: &str = "spiffe://mandate.local/agent/summariser";

fn agent_attrs(env: &str) -> Vec<(String, RestrictedExpression)> {
    [
        ("name", "summariser"),
        ("owner", "alice@example.com"),
        ("env", env),
        ("function", "summarises quarterly reports"),
        ("spiffe_id", SPIFFE),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), RestrictedExpression::new_string(v.to_owned())))
    .collect()
}

/// `context.task` as the server builds it.
fn task(tools: &[&str], capabilities: &[&str]) -> Value {
    json!({
        "id": "task-1",
        "purpose": "summarise the Q3 report",
        "tools": tools.iter().map(|t| json!({"__entity": {"type": "Tool", "id": t}})).collect::<Vec<_>>(),
        "data_domains": [{"__entity": {"type": "DataDomain", "id": "reports"}}],
        "capabilities": capabilities,
        "depth": 0,
        "delegation_chain": [SPIFFE],
    })
}

/// What the catalog says about a tool.
#[derive(Clone)]
struct Tool {
    class: &'static str,
    egress: bool,
    destructive: bool,
    known: bool,
    labels: Vec<&'static str>,
}

/// A catalogued read-only tool that sends nothing out and destroys nothing.
fn read_tool() -> Tool {
    Tool {
        class: "read",
        egress: false,
        destructive: false,
        known: true,
        labels: Vec::new(),
    }
}

impl Tool {
    fn class(self, class: &'static str) -> Tool {
        Tool { class, ..self }
    }

    fn egress(self) -> Tool {
        Tool {
            egress: true,
            ..self
        }
    }

    fn destructive(self) -> Tool {
        Tool {
            destructive: true,
            ..self
        }
    }

    /// What the gateway sends for a tool missing from its catalog.
    fn unknown() -> Tool {
        Tool {
            class: "delegate",
            egress: true,
            destructive: true,
            known: false,
            labels: vec!["unclassified"],
        }
    }

    fn json(&self, qualified: &str) -> Value {
        let (upstream, name) = qualified.split_once('.').unwrap_or(("up", qualified));
        json!({
            "name": name, "upstream": upstream, "class": self.class,
            "labels": self.labels, "egress": self.egress,
            "destructive": self.destructive, "known": self.known,
        })
    }
}

fn session(labels: &[&str]) -> Value {
    json!({"labels": labels})
}

fn request(env: &str, action: &str, resource: EntityUid, context: Value) -> DecisionRequest {
    DecisionRequest {
        principal: uid("Agent", SPIFFE),
        action: uid("Action", action),
        resource,
        context: Context::from_json_value(context, None).expect("context converts"),
        principal_attrs: agent_attrs(env),
        resource_attrs: vec![],
    }
}

/// A `tools/call` through the gateway: task, tool, args and session.
fn call(env: &str, tool_id: &str, tool: &Tool, task: Value, labels: &[&str]) -> DecisionRequest {
    request(
        env,
        "call",
        uid("Tool", tool_id),
        json!({"task": task, "tool": tool.json(tool_id), "args": [], "session": session(labels)}),
    )
}

/// An AuthZEN `call` with a task token: task and session only.
fn authzen_call(tool_id: &str, task: Value) -> DecisionRequest {
    request(
        "dev",
        "call",
        uid("Tool", tool_id),
        json!({"task": task, "session": session(&[])}),
    )
}

/// A REST proxy call of `action` on `resource`, whose tool is `tool_id`.
fn proxy_call(
    env: &str,
    action: &str,
    resource: EntityUid,
    tool_id: &str,
    tool: &Tool,
    task: Value,
    labels: &[&str],
) -> DecisionRequest {
    request(
        env,
        action,
        resource,
        json!({
            "task": task,
            "session": session(labels),
            "http": {"method": "POST", "path": "/x", "query": "", "upstream": "github"},
            "params": {"owner": "acme", "repo": "web"},
            "tool": tool.json(tool_id),
            "tool_entity": {"__entity": {"type": "Tool", "id": tool_id}},
        }),
    )
}

/// A call of the github example's `action` (`list_issues`, `create_issue`)
/// on `Repo::"acme/web"`.
fn proxy(env: &str, action: &str, tool: &Tool, task: Value, labels: &[&str]) -> DecisionRequest {
    proxy_call(
        env,
        action,
        uid("Repo", "acme/web"),
        &format!("github.{action}"),
        tool,
        task,
        labels,
    )
}

/// A `hold_*` question at issuance.
fn hold(env: &str, action: &str, resource: EntityUid, depth: i64) -> DecisionRequest {
    request(
        env,
        action,
        resource,
        json!({
            "purpose": "summarise the Q3 report", "depth": depth,
            "tools": ["files.read"], "data_domains": ["reports"], "capabilities": ["read"],
        }),
    )
}

fn assert_allowed_by(d: &Decision, policy: &str) {
    assert_eq!(d.effect, Effect::Allow, "{d:?}");
    assert_eq!(d.policies, [policy], "{d:?}");
    assert!(d.tags.is_empty(), "{d:?}");
}

fn assert_forbidden(d: &Decision, policies: &[&str], tags: &[&str]) {
    assert_eq!(d.effect, Effect::Deny, "{d:?}");
    assert_eq!(d.reason, DecisionReason::Forbidden, "{d:?}");
    assert_eq!(d.policies, policies, "{d:?}");
    assert_eq!(d.tags, tags, "{d:?}");
}

fn assert_held(d: &Decision, policies: &[&str], texts: &[&str]) {
    assert_eq!(d.effect, Effect::Deny, "a hold must fail closed: {d:?}");
    assert!(d.needs_approval(), "{d:?}");
    assert_eq!(d.policies, policies, "{d:?}");
    assert_eq!(
        d.reason,
        DecisionReason::ApprovalRequired(texts.iter().map(|t| (*t).to_owned()).collect()),
    );
}

// ---- Loading ----

#[test]
fn the_schema_validates_every_policy_of_the_pack_strictly() {
    let b = pack();
    assert!(b.has_schema());
    assert!(b.warnings().is_empty(), "{:?}", b.warnings());
    let ids = b.policy_ids();
    for id in [
        DRIFT,
        CLASS,
        DESTRUCTIVE,
        EGRESS,
        PROD_UNKNOWN,
        PROD_EGRESS,
        PROD_ACT,
        PROD_DEPTH,
        CALL_GRANT,
        PROXY_GRANT,
    ] {
        assert!(ids.iter().any(|i| i == id), "{id} missing from {ids:?}");
    }
    // Validation is really on: a policy reading an attribute the vocabulary
    // does not have is refused.
    let mut s = sources();
    s.policies.push(SourceFile {
        name: "typo.cedar".into(),
        text: r#"forbid(principal, action == Action::"call", resource)
                 when { context has tool && context.tool.egres };"#
            .into(),
    });
    let err = PolicyBundle::from_sources(&s).unwrap_err();
    assert!(matches!(err, PolicyError::Validation(_)), "{err}");
}

#[test]
fn the_baseline_loads_alone_and_then_allows_nothing() {
    let mut s = sources();
    s.policies.retain(|f| f.name.starts_with("baseline/"));
    s.schemas.retain(|f| f.name.starts_with("baseline/"));
    assert_eq!(s.policies.len(), 5);
    let b = PolicyBundle::from_sources(&s).expect("the baseline validates on its own");
    assert!(b.warnings().is_empty(), "{:?}", b.warnings());
    // Default deny: the baseline only forbids and holds; without grants even
    // an in-task read is not allowed.
    let d = decide(
        &b,
        call(
            "dev",
            "files.read",
            &read_tool(),
            task(&["files.read"], &["read"]),
            &[],
        ),
    );
    assert_eq!(d.reason, DecisionReason::NoPermit, "{d:?}");
    let d = decide(&b, hold("dev", "hold_tool", uid("Tool", "files.read"), 0));
    assert_eq!(d.reason, DecisionReason::NoPermit, "{d:?}");
}

#[test]
fn users_add_their_own_policies_and_types_beside_the_baseline() {
    let mut s = sources();
    s.schemas.push(SourceFile {
        name: "team/billing.cedarschema".into(),
        text: "entity Invoice;
               action pay_invoice in [proxy] appliesTo {
                 principal: Agent, resource: Invoice,
                 context: { task: Task, session: Session, http: HttpRequest,
                            params: { owner: String, repo: String },
                            tool: ToolCall, tool_entity: Tool },
               };"
        .into(),
    });
    s.policies.push(SourceFile {
        name: "team/billing.cedar".into(),
        text: r#"@id("pay") permit(principal, action == Action::"pay_invoice", resource);"#.into(),
    });
    let b = PolicyBundle::from_sources(&s).unwrap();
    assert!(
        b.policy_ids()
            .contains(&"team/billing.cedar#pay".to_owned())
    );
    // The user's action is in `proxy`, so the baseline governs it too: outside
    // the task it is drift, whatever the user's permit says (and no hold: the
    // approval policy matches, but so does drift) ...
    let pay = |t: Value| {
        proxy_call(
            "dev",
            "pay_invoice",
            uid("Invoice", "inv-1"),
            "billing.pay_invoice",
            &read_tool().class("act").destructive(),
            t,
            &[],
        )
    };
    let d = decide(&b, pay(task(&["github.list_issues"], &["act"])));
    assert_forbidden(&d, &[DESTRUCTIVE, DRIFT], &["destructive", "drift"]);
    // ... and in the task, a destructive endpoint is held.
    let d = decide(&b, pay(task(&["billing.pay_invoice"], &["act"])));
    assert_held(&d, &[DESTRUCTIVE], &[DESTROYS]);
}

// ---- The open path ----

#[test]
fn an_in_task_catalogued_read_is_allowed_through_gateway_authzen_and_proxy() {
    let b = pack();
    let t = task(&["files.read", "github.list_issues"], &["read"]);
    let d = decide(&b, call("dev", "files.read", &read_tool(), t.clone(), &[]));
    assert_allowed_by(&d, CALL_GRANT);
    let d = decide(&b, authzen_call("files.read", t.clone()));
    assert_allowed_by(&d, CALL_GRANT);
    let d = decide(&b, proxy("dev", "list_issues", &read_tool(), t, &[]));
    assert_allowed_by(&d, PROXY_GRANT);
}

// ---- No call without a task ----

#[test]
fn a_call_without_a_task_is_invalid_and_denied_even_with_a_permit_of_everything() {
    let b = pack_with(PERMIT_ALL);
    for context in [
        json!({}),
        json!({"session": session(&[])}),
        json!({"tool": read_tool().json("files.read"), "args": [], "session": session(&[])}),
        // A task without its capabilities is no task.
        json!({"task": {"id": "t", "purpose": "p", "tools": [], "data_domains": [],
                        "depth": 0, "delegation_chain": []}}),
    ] {
        let d = decide(
            &b,
            request("dev", "call", uid("Tool", "files.read"), context.clone()),
        );
        assert_eq!(d.effect, Effect::Deny, "{context}: {d:?}");
        assert!(
            matches!(d.reason, DecisionReason::InvalidRequest(_)),
            "{context}: {d:?}"
        );
    }
    // Proxy actions need their task too.
    let mut r = proxy("dev", "list_issues", &read_tool(), json!({}), &[]);
    r.context = Context::from_json_value(json!({"session": session(&[])}), None).unwrap();
    assert!(matches!(
        decide(&b, r).reason,
        DecisionReason::InvalidRequest(_)
    ));
}

// ---- Capability classes ----

#[test]
fn no_capability_class_implies_another() {
    // A permit of everything stands for the broadest standing rights.
    let b = pack_with(PERMIT_ALL);
    for (tool_class, held) in [
        ("act", &["read"][..]),
        ("delegate", &["read"][..]),
        ("act", &["delegate"][..]),
        ("delegate", &["read", "act"][..]),
        ("read", &["act"][..]),
        ("read", &["act", "delegate"][..]),
        ("act", &[][..]),
    ] {
        let tool = read_tool().class(tool_class);
        let d = decide(
            &b,
            call("dev", "files.op", &tool, task(&["files.op"], held), &[]),
        );
        assert_forbidden(&d, &[CLASS], &["capability"]);
        // The proxy enforces the same, on the endpoint's class.
        let t = task(&["github.create_issue"], held);
        let d = decide(&b, proxy("dev", "create_issue", &tool, t, &[]));
        assert_forbidden(&d, &[CLASS], &["capability"]);
    }
    // The class a task holds is enough.
    for class in ["read", "act", "delegate"] {
        let tool = read_tool().class(class);
        let d = decide(
            &b,
            call("dev", "files.op", &tool, task(&["files.op"], &[class]), &[]),
        );
        assert_eq!(d.effect, Effect::Allow, "{class}: {d:?}");
    }
}

#[test]
fn a_class_is_compared_exactly_not_by_prefix_or_case() {
    let b = pack_with(PERMIT_ALL);
    for held in ["Act", "act ", "acts", "ACT", "a"] {
        let d = decide(
            &b,
            call(
                "dev",
                "files.write",
                &read_tool().class("act"),
                task(&["files.write"], &[held]),
                &[],
            ),
        );
        assert_forbidden(&d, &[CLASS], &["capability"]);
    }
}

// ---- Drift ----

#[test]
fn drift_holds_even_where_standing_rights_would_allow_the_call() {
    let specific = r#"@id("summariser-may-send")
        permit(principal, action == Action::"call", resource == Tool::"mail.send");"#;
    for extra in [PERMIT_ALL, specific] {
        let b = pack_with(extra);
        let t = task(&["files.read"], &["read", "act"]);
        let d = decide(&b, call("dev", "mail.send", &read_tool(), t.clone(), &[]));
        assert_forbidden(&d, &[DRIFT], &["drift"]);
        assert!(d.has_tag("drift"));
        // An AuthZEN caller, without the catalog's view, drifts the same way.
        let d = decide(&b, authzen_call("mail.send", t.clone()));
        assert_forbidden(&d, &[DRIFT], &["drift"]);
    }
}

#[test]
fn drift_is_exact_about_which_tool_the_task_named() {
    let b = pack_with(PERMIT_ALL);
    let t = task(&["files.read"], &["read"]);
    // Another upstream's tool of the same name, a prefix, a case variant.
    for other in [
        "evil.files.read",
        "files.read2",
        "files.rea",
        "Files.read",
        "files",
    ] {
        let d = decide(&b, call("dev", other, &read_tool(), t.clone(), &[]));
        assert_forbidden(&d, &[DRIFT], &["drift"]);
    }
    // An empty task names nothing.
    let d = decide(
        &b,
        call("dev", "files.read", &read_tool(), task(&[], &["read"]), &[]),
    );
    assert_forbidden(&d, &[DRIFT], &["drift"]);
}

#[test]
fn drift_covers_the_rest_proxy_by_its_endpoint_tool() {
    let b = pack_with(PERMIT_ALL);
    // The task names another endpoint of the same upstream.
    let t = task(&["github.list_issues"], &["read"]);
    let d = decide(&b, proxy("dev", "create_issue", &read_tool(), t, &[]));
    assert_forbidden(&d, &[DRIFT], &["drift"]);
    // Naming the repository (the resource) or the bare action does not help.
    let t = task(&["acme/web", "create_issue"], &["read"]);
    let d = decide(&b, proxy("dev", "create_issue", &read_tool(), t, &[]));
    assert_forbidden(&d, &[DRIFT], &["drift"]);
}

// ---- Unknown tools ----

#[test]
fn an_unknown_tool_is_denied_unless_a_permit_names_it_and_then_needs_everything() {
    let tool = Tool::unknown();
    let all = task(&["legacy.frob"], &["read", "act", "delegate"]);
    // The example grants admit catalogued tools only: default deny.
    let d = decide(&pack(), call("dev", "legacy.frob", &tool, all.clone(), &[]));
    assert_eq!(d.reason, DecisionReason::NoPermit, "{d:?}");
    // A permit naming it admits it as the most dangerous class: it needs the
    // `delegate` capability ...
    let named = r#"@id("frob")
        permit(principal, action == Action::"call", resource == Tool::"legacy.frob");"#;
    let b = pack_with(named);
    let t = task(&["legacy.frob"], &["read", "act"]);
    let d = decide(&b, call("dev", "legacy.frob", &tool, t, &[]));
    assert_eq!(d.reason, DecisionReason::Forbidden, "{d:?}");
    assert!(d.has_tag("capability"), "{d:?}");
    // ... and then a person's approval (it counts as destructive) ...
    let d = decide(&b, call("dev", "legacy.frob", &tool, all.clone(), &[]));
    assert_held(&d, &[DESTRUCTIVE], &[DESTROYS]);
    // ... and as egress after a confidential read it is refused outright.
    let d = decide(
        &b,
        call("dev", "legacy.frob", &tool, all.clone(), &["confidential"]),
    );
    assert_eq!(d.reason, DecisionReason::Forbidden, "{d:?}");
    assert!(d.has_tag("egress_after_confidential"), "{d:?}");
    // In production nothing admits it.
    let d = decide(
        &pack_with(PERMIT_ALL),
        call("prod", "legacy.frob", &tool, all, &[]),
    );
    assert_eq!(d.reason, DecisionReason::Forbidden, "{d:?}");
    assert!(d.policies.contains(&PROD_UNKNOWN.to_owned()), "{d:?}");
    assert!(d.has_tag("unknown_tool"));
}

// ---- Approval ----

#[test]
fn a_destructive_call_with_every_permit_is_held_not_allowed() {
    let b = pack_with(PERMIT_ALL);
    let tool = read_tool().class("act").destructive();
    let t = task(&["files.delete"], &["act"]);
    let d = decide(&b, call("dev", "files.delete", &tool, t, &[]));
    assert_held(&d, &[DESTRUCTIVE], &[DESTROYS]);
    assert_eq!(d.tags, ["destructive"]);
    assert!(
        d.explain()
            .starts_with("held for approval: the tool destroys")
    );
    // Through the proxy too.
    let t = task(&["github.create_issue"], &["act"]);
    let d = decide(&b, proxy("dev", "create_issue", &tool, t, &[]));
    assert_held(&d, &[DESTRUCTIVE], &[DESTROYS]);
}

#[test]
fn a_destructive_call_that_would_be_refused_anyway_is_not_held() {
    let b = pack_with(PERMIT_ALL);
    let tool = read_tool().class("act").destructive();
    // Outside the task: drift, however a person might answer.
    let t = task(&["files.read"], &["act"]);
    let d = decide(&b, call("dev", "files.delete", &tool, t, &[]));
    assert!(!d.needs_approval());
    assert_eq!(d.reason, DecisionReason::Forbidden);
    assert!(d.has_tag("drift"), "{d:?}");
    // Without the capability: forbidden.
    let t = task(&["files.delete"], &["read"]);
    let d = decide(&b, call("dev", "files.delete", &tool, t, &[]));
    assert!(!d.needs_approval());
    assert!(d.has_tag("capability"), "{d:?}");
    // With nothing permitting it (the baseline alone), a default deny, not
    // a hold that a person's sign-off could lift.
    let mut s = sources();
    s.policies.retain(|f| f.name.starts_with("baseline/"));
    let alone = PolicyBundle::from_sources(&s).unwrap();
    let t = task(&["files.delete"], &["act"]);
    let d = decide(&alone, call("dev", "files.delete", &tool, t, &[]));
    assert_eq!(d.reason, DecisionReason::NoPermit, "{d:?}");
    assert!(d.policies.is_empty());
}

#[test]
fn a_user_cannot_approve_in_advance_with_an_approval_permit() {
    let mut s = sources();
    s.policies.push(SourceFile {
        name: "mine.cedar".into(),
        text: r#"@id("pre-approved") @approval("approved in advance")
                 permit(principal, action == Action::"call", resource);"#
            .into(),
    });
    let err = PolicyBundle::from_sources(&s).unwrap_err();
    assert!(
        matches!(&err, PolicyError::ApprovalOnPermit { policy } if policy == "mine.cedar#pre-approved"),
        "{err}"
    );
}

// ---- No egress after a confidential read ----

#[test]
fn no_egress_after_a_confidential_read_whatever_permits_it() {
    let b = pack_with(PERMIT_ALL);
    let send = read_tool().class("act").egress();
    let t = task(&["mail.send"], &["act"]);
    for labels in [
        &["confidential"][..],
        &["secret"][..],
        &["public", "reports", "confidential"][..],
    ] {
        let d = decide(&b, call("dev", "mail.send", &send, t.clone(), labels));
        assert_forbidden(&d, &[EGRESS], &["egress_after_confidential"]);
        // The proxy's egress endpoints too.
        let t = task(&["github.create_issue"], &["act"]);
        let d = decide(&b, proxy("dev", "create_issue", &send, t, labels));
        assert_forbidden(&d, &[EGRESS], &["egress_after_confidential"]);
    }
    // A read-only tool that moves data out (fetch a URL) is egress all the same.
    let fetch = read_tool().egress();
    let t = task(&["web.fetch"], &["read"]);
    let d = decide(&b, call("dev", "web.fetch", &fetch, t, &["secret"]));
    assert_forbidden(&d, &[EGRESS], &["egress_after_confidential"]);
}

#[test]
fn label_spellings_reach_the_rule_as_the_gateway_normalizes_them() {
    let b = pack_with(PERMIT_ALL);
    let send = read_tool().class("act").egress();
    for raw in [
        "Confidential",
        "CONFIDENTIAL",
        " confidential ",
        "Secret",
        "sEcReT",
    ] {
        let label = normalize_label(raw).expect("a valid label");
        let t = task(&["mail.send"], &["act"]);
        let d = decide(&b, call("dev", "mail.send", &send, t, &[&label]));
        assert_forbidden(&d, &[EGRESS], &["egress_after_confidential"]);
    }
}

#[test]
fn without_a_confidential_read_or_without_egress_the_call_goes_ahead() {
    let b = pack_with(PERMIT_ALL);
    let send = read_tool().class("act").egress();
    let t = task(&["mail.send", "files.read"], &["act", "read"]);
    for labels in [
        &[][..],
        &["public", "reports"][..],
        &["confidentiality-notice"][..],
    ] {
        let d = decide(&b, call("dev", "mail.send", &send, t.clone(), labels));
        assert_eq!(d.effect, Effect::Allow, "{labels:?}: {d:?}");
    }
    // Reading more confidential data is not egress.
    let d = decide(
        &b,
        call("dev", "files.read", &read_tool(), t, &["confidential"]),
    );
    assert_eq!(d.effect, Effect::Allow, "{d:?}");
}

// ---- Production ----

#[test]
fn production_holds_egress_and_acting_that_development_allows() {
    let b = pack_with(PERMIT_ALL);
    let fetch = read_tool().egress();
    let write = read_tool().class("act");
    let spawn = read_tool().class("delegate");
    let t = task(
        &["web.fetch", "files.write", "agents.spawn"],
        &["read", "act", "delegate"],
    );
    for (tool_id, tool) in [
        ("web.fetch", &fetch),
        ("files.write", &write),
        ("agents.spawn", &spawn),
    ] {
        let d = decide(&b, call("dev", tool_id, tool, t.clone(), &[]));
        assert_eq!(d.effect, Effect::Allow, "dev {tool_id}: {d:?}");
    }
    let d = decide(&b, call("prod", "web.fetch", &fetch, t.clone(), &[]));
    assert_held(&d, &[PROD_EGRESS], &[SENDS]);
    assert_eq!(d.tags, ["production"]);
    let d = decide(&b, call("prod", "files.write", &write, t.clone(), &[]));
    assert_held(&d, &[PROD_ACT], &[ACTS]);
    let d = decide(&b, call("prod", "agents.spawn", &spawn, t.clone(), &[]));
    assert_held(&d, &[PROD_ACT], &[ACTS]);
    // An acting, egress, destructive endpoint needs all three sign-offs.
    let all = read_tool().class("act").egress().destructive();
    let t = task(&["github.create_issue"], &["act"]);
    let d = decide(&b, proxy("prod", "create_issue", &all, t, &[]));
    assert_held(
        &d,
        &[DESTRUCTIVE, PROD_ACT, PROD_EGRESS],
        &[ACTS, SENDS, DESTROYS],
    );
    assert_eq!(d.tags, ["destructive", "production"]);
    // A plain read stays allowed in production.
    let t = task(&["files.read"], &["read"]);
    let d = decide(&b, call("prod", "files.read", &read_tool(), t, &[]));
    assert_eq!(d.effect, Effect::Allow, "{d:?}");
}

#[test]
fn every_environment_but_dev_and_test_counts_as_production() {
    let b = pack_with(PERMIT_ALL);
    let fetch = read_tool().egress();
    let t = task(&["web.fetch"], &["read"]);
    for env in [
        "prod",
        "production",
        "Prod",
        "PROD",
        "staging",
        "Dev",
        "dev2",
        "",
    ] {
        let d = decide(&b, call(env, "web.fetch", &fetch, t.clone(), &[]));
        assert!(d.needs_approval(), "env {env:?}: {d:?}");
    }
    for env in ["dev", "test"] {
        let d = decide(&b, call(env, "web.fetch", &fetch, t.clone(), &[]));
        assert_eq!(d.effect, Effect::Allow, "env {env:?}: {d:?}");
    }
}

#[test]
fn production_tasks_are_delegated_at_most_once() {
    let b = pack_with(PERMIT_ALL);
    let items = [
        ("hold_tool", uid("Tool", "files.read")),
        ("hold_data_domain", uid("DataDomain", "reports")),
        ("hold_capability", uid("Capability", "read")),
    ];
    for (action, resource) in &items {
        for depth in [0, 1] {
            let d = decide(&b, hold("prod", action, resource.clone(), depth));
            assert_eq!(d.effect, Effect::Allow, "{action} at {depth}: {d:?}");
        }
        for depth in [2, 3, i64::MAX] {
            let d = decide(&b, hold("prod", action, resource.clone(), depth));
            assert_forbidden(&d, &[PROD_DEPTH], &["delegation_depth"]);
        }
        // Development leaves depth to the node's own limit.
        let d = decide(&b, hold("dev", action, resource.clone(), 3));
        assert_eq!(d.effect, Effect::Allow, "{d:?}");
    }
}

// ---- The example grants ----

#[test]
fn the_example_grants_give_dev_agents_their_tools_and_never_act() {
    let b = pack();
    let d = decide(&b, hold("dev", "hold_tool", uid("Tool", "files.read"), 0));
    assert_eq!(d.effect, Effect::Allow);
    // Not a production agent, not a tool it was not granted, never `act`.
    for (env, action, resource) in [
        ("prod", "hold_tool", uid("Tool", "files.read")),
        ("dev", "hold_tool", uid("Tool", "mail.send")),
        ("dev", "hold_capability", uid("Capability", "act")),
        ("dev", "hold_data_domain", uid("DataDomain", "hr")),
    ] {
        let d = decide(&b, hold(env, action, resource.clone(), 0));
        assert_eq!(
            d.reason,
            DecisionReason::NoPermit,
            "{env} {action} {resource}: {d:?}"
        );
    }
}
