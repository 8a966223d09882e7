//! The gateway's requests, put to the shipped policy directory `policies/`
//! (the baseline pack and the example grants, under Mandate's schema, in
//! strict mode) and to schema-less policy sets.

use mandate_core::{Decision, DecisionReason, Effect};
use mandate_policy::cedar_policy::EvalResult;
use mandate_policy::{DecisionRequest, PolicyBundle, PolicySources, SourceFile};
use serde_json::{Value, json};

use super::*;
use crate::catalog::ToolClass;

const EXAMPLE_SCHEMA: &str = include_str!("../../../../policies/baseline/mandate.cedarschema");
/// The example grants alone (without the baseline), for tests of arguments.
const EXAMPLE_POLICIES: &str = include_str!("../../../../policies/examples/grants.cedar");

const SPIFFE: &str = "spiffe://mandate.local/agent/summariser";
const ATTRS: &[(&str, &str)] = &[
    ("name", "summariser"),
    ("owner", "alice@example.com"),
    ("env", "dev"),
    ("function", "summarises quarterly reports"),
    ("spiffe_id", SPIFFE),
];

/// The attributes as the server holds them.
fn attrs() -> Vec<(String, String)> {
    ATTRS
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// `context.task` as the server builds it for AuthZEN.
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

fn bundle(schema: Option<&str>, policies: &str) -> PolicyBundle {
    let file = |name: &str, text: &str| SourceFile {
        name: name.into(),
        text: text.into(),
    };
    PolicyBundle::from_sources(&PolicySources {
        policies: vec![file("agents.cedar", policies)],
        schemas: schema
            .map(|s| vec![file("agents.cedarschema", s)])
            .unwrap_or_default(),
        entities: None,
    })
    .unwrap()
}

/// `policies/` as shipped: baseline and example grants.
fn examples() -> PolicyBundle {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    PolicyBundle::from_sources(&PolicySources::read_dir(&dir).unwrap()).unwrap()
}

fn entry(class: ToolClass) -> CatalogEntry {
    CatalogEntry {
        class,
        labels: vec!["reports".into()],
        egress: false,
        destructive: false,
    }
}

fn call(
    upstream: &str,
    tool: &str,
    entry: &CatalogEntry,
    known: bool,
    arguments: Value,
    task: &Value,
    schema: PolicySchema,
) -> DecisionRequest {
    tool_call_request(
        upstream,
        tool,
        entry,
        known,
        &arguments,
        task,
        SPIFFE,
        &attrs(),
        schema,
    )
    .unwrap()
}

fn allowed_by(d: &Decision, policy: &str) {
    assert_eq!(d.effect, Effect::Allow, "{d:?}");
    assert_eq!(d.policies, [policy]);
}

fn forbidden_by(d: &Decision, policy: &str) {
    assert_eq!(d.effect, Effect::Deny, "{d:?}");
    assert_eq!(d.reason, DecisionReason::Forbidden, "{d:?}");
    assert!(d.policies.iter().any(|p| p == policy), "{d:?}");
}

#[test]
fn the_example_schema_ends_with_the_fragment() {
    assert!(EXAMPLE_SCHEMA.ends_with(SCHEMA_FRAGMENT));
    assert_eq!(EXAMPLE_SCHEMA.matches("action call ").count(), 1);
}

#[test]
fn a_tool_call_names_agent_action_and_qualified_tool() {
    let r = call(
        "files",
        "read",
        &entry(ToolClass::Read),
        true,
        json!({"path": "/q3.pdf"}),
        &task(&["files.read"], &["read"]),
        PolicySchema::Present,
    );
    assert_eq!(r.principal.to_string(), format!("Agent::\"{SPIFFE}\""));
    assert_eq!(r.action.to_string(), r#"Action::"call""#);
    assert_eq!(r.resource.to_string(), r#"Tool::"files.read""#);
    assert_eq!(r.principal_attrs.len(), 5);
    let context = r.context.to_json_value().unwrap();
    assert_eq!(
        context["tool"],
        json!({"name": "read", "upstream": "files", "class": "read",
               "labels": ["reports"], "egress": false, "destructive": false, "known": true})
    );
    // A bare task is a scope whose session has touched nothing.
    assert_eq!(context["session"], json!({"labels": []}));
    assert_eq!(
        context["task"]["tools"],
        json!([{"__entity": {"type": "Tool", "id": "files.read"}}])
    );
    assert_eq!(
        context["args"],
        json!([{"path": "path", "value": "/q3.pdf"}])
    );
    assert!(context.get("arguments").is_none());
}

#[test]
fn a_catalogued_read_tool_in_the_task_is_allowed_by_the_examples() {
    let d = examples().decide(call(
        "files",
        "read",
        &entry(ToolClass::Read),
        true,
        json!({"path": "/q3.pdf", "pages": [1, 2]}),
        &task(&["files.read"], &["read"]),
        PolicySchema::Present,
    ));
    allowed_by(&d, "examples/grants.cedar#call-within-task");
}

#[test]
fn a_tool_whose_class_the_task_lacks_is_forbidden() {
    let d = examples().decide(call(
        "files",
        "read",
        &entry(ToolClass::Act),
        true,
        json!({}),
        &task(&["files.read"], &["read"]),
        PolicySchema::Present,
    ));
    forbidden_by(&d, "baseline/capabilities.cedar#class-needs-capability");
}

#[test]
fn an_uncatalogued_tool_is_denied_even_in_the_task() {
    let (entry, known) = crate::Catalog::default().lookup("files.read");
    let d = examples().decide(call(
        "files",
        "read",
        &entry,
        known,
        json!({}),
        &task(&["files.read"], &["read", "act", "delegate"]),
        PolicySchema::Present,
    ));
    // The example grants admit catalogued tools only (policies/README: a
    // tool missing from the catalog needs a permit naming it).
    assert_eq!(d.effect, Effect::Deny, "{d:?}");
    assert_eq!(d.reason, DecisionReason::NoPermit, "{d:?}");
}

#[test]
fn a_tool_named_like_another_upstreams_tool_is_not_that_tool() {
    // Upstream "mail" serves a tool called "files.read": it is not the
    // granted Tool::"files.read".
    let r = call(
        "mail",
        "files.read",
        &entry(ToolClass::Read),
        true,
        json!({}),
        &task(&["files.read"], &["read"]),
        PolicySchema::Present,
    );
    assert_eq!(r.resource.to_string(), r#"Tool::"mail.files.read""#);
    let d = examples().decide(r);
    forbidden_by(&d, "baseline/drift.cedar#drift");
    assert!(d.has_tag("drift"), "{d:?}");
    // An upstream name with a dot or colon could make ids collide: refused.
    for upstream in ["files.x", "a:b", "", "sp ace"] {
        assert_eq!(
            tool_id(upstream, "read").unwrap_err(),
            RequestError::BadUpstream {
                upstream: upstream.into()
            }
        );
    }
    assert_eq!(
        tool_id("files", "").unwrap_err(),
        RequestError::EmptyName { what: "tool" }
    );
}

#[test]
fn the_authzen_call_with_task_only_still_validates() {
    let r = call(
        "files",
        "read",
        &entry(ToolClass::Read),
        true,
        json!({}),
        &task(&["files.read"], &["read"]),
        PolicySchema::Present,
    );
    let context = Context::from_pairs([(
        "task".to_owned(),
        task_value(&task(&["files.read"], &[])).unwrap(),
    )])
    .unwrap();
    let d = examples().decide(DecisionRequest { context, ..r });
    allowed_by(&d, "examples/grants.cedar#call-within-task");
}

#[test]
fn resource_prompt_and_method_requests_fit_the_schema() {
    let t = task(&["files.read"], &["read"]);
    let requests = [
        resource_read_request("files", "file:///q3.pdf", &t, SPIFFE, ATTRS).unwrap(),
        prompt_get_request(
            "files",
            "summary",
            &json!({"tone": "dry"}),
            &t,
            SPIFFE,
            ATTRS,
            PolicySchema::Present,
        )
        .unwrap(),
        method_request("files", "completion/complete", &t, SPIFFE, ATTRS).unwrap(),
    ];
    let ids: Vec<String> = requests.iter().map(|r| r.resource.to_string()).collect();
    assert_eq!(
        ids,
        [
            r#"Resource::"files:file:///q3.pdf""#,
            r#"Prompt::"files.summary""#,
            r#"McpMethod::"files:completion/complete""#,
        ]
    );
    for r in requests {
        // No example policy permits these: a default deny, not an invalid request.
        let d = examples().decide(r);
        assert_eq!(d.reason, DecisionReason::NoPermit, "{d:?}");
    }
    let permit = r#"
        @id("read-reports")
        permit (principal is Agent, action == Action::"read_resource", resource is Resource)
        when { context.uri like "file:///q3*" && context.task.capabilities.contains("read") };
    "#;
    let d = bundle(Some(EXAMPLE_SCHEMA), permit)
        .decide(resource_read_request("files", "file:///q3.pdf", &t, SPIFFE, ATTRS).unwrap());
    allowed_by(&d, "agents.cedar#read-reports");
}

#[test]
fn under_a_schema_arguments_are_seen_through_args() {
    let policies = format!(
        "{EXAMPLE_POLICIES}\n{}",
        r#"
        @id("no-mail-to-eve")
        forbid (principal, action == Action::"call", resource)
        when { context has args && context.args.contains({path: "to[]", value: "eve@evil.example"}) };
        "#
    );
    let b = bundle(Some(EXAMPLE_SCHEMA), &policies);
    let t = task(&["mail.send"], &["act"]);
    let send = |to: Value| {
        b.decide(call(
            "mail",
            "send",
            &entry(ToolClass::Act),
            true,
            json!({"to": to, "body": {"text": "hi"}}),
            &t,
            PolicySchema::Present,
        ))
    };
    allowed_by(
        &send(json!(["bob@example.com"])),
        "agents.cedar#call-within-task",
    );
    forbidden_by(
        &send(json!(["bob@example.com", "eve@evil.example"])),
        "agents.cedar#no-mail-to-eve",
    );
    // Sending the untypable record under a schema makes the request invalid.
    let d = b.decide(call(
        "mail",
        "send",
        &entry(ToolClass::Act),
        true,
        json!({"to": ["bob@example.com"]}),
        &t,
        PolicySchema::Absent,
    ));
    assert!(
        matches!(d.reason, DecisionReason::InvalidRequest(_)),
        "{d:?}"
    );
}

#[test]
fn flattened_paths_join_keys_mark_elements_and_escape_separators() {
    let r = call(
        "a",
        "b",
        &entry(ToolClass::Read),
        true,
        json!({"o": {"k": [1, {"x.y": true}], "n": null}, "a.b": "v", "s[": 2.5}),
        &task(&[], &[]),
        PolicySchema::Present,
    );
    let context = r.context.to_json_value().unwrap();
    let mut args: Vec<(String, String)> = context["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["path"].as_str().unwrap().to_owned(),
                e["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    args.sort();
    let expected: Vec<(String, String)> = [
        ("a\\.b", "v"),
        ("o.k[]", "1"),
        ("o.k[].x\\.y", "true"),
        ("s\\[", "2.5"),
    ]
    .iter()
    .map(|(p, v)| ((*p).to_owned(), (*v).to_owned()))
    .collect();
    assert_eq!(args, expected);
}

#[test]
fn without_a_schema_arguments_are_a_record_and_an_entity_escape_stays_a_record() {
    let policies = r#"
        @id("smuggled-entity")
        permit (principal, action, resource)
        when { context.arguments.who == Agent::"admin" };
        @id("record-read")
        permit (principal, action, resource)
        when { context.arguments.who["__entity"].id == "admin" && context.arguments.mode == "dry_run" };
    "#;
    let b = bundle(None, policies);
    let arguments = json!({
        "who": {"__entity": {"type": "Agent", "id": "admin"}},
        "mode": "dry_run",
    });
    let r = call(
        "ops",
        "run",
        &entry(ToolClass::Act),
        true,
        arguments,
        &task(&[], &["act"]),
        PolicySchema::Absent,
    );
    let Some(EvalResult::Record(args)) = r.context.get("arguments") else {
        panic!("arguments is not a record")
    };
    assert!(matches!(args.get("who"), Some(EvalResult::Record(_))));
    let d = b.decide(r);
    allowed_by(&d, "agents.cedar#record-read");
}

#[test]
fn floats_become_text_and_nulls_are_dropped() {
    let policies = r#"
        @id("shapes")
        permit (principal, action, resource)
        when {
          context.arguments.price == "2.5" &&
          context.arguments.big == "18446744073709551615" &&
          context.arguments.huge == "1e+40" &&
          context.arguments.count == 3 &&
          !(context.arguments has gone) &&
          context.arguments.list == [1, "x"] &&
          context.arguments.nested.deep.flag
        };
    "#;
    let arguments: Value = serde_json::from_str(
        r#"{"price": 2.5, "big": 18446744073709551615, "huge": 1e40, "count": 3, "gone": null,
            "list": [1, null, "x"], "nested": {"deep": {"flag": true, "nothing": null}}}"#,
    )
    .unwrap();
    let r = call(
        "ops",
        "run",
        &entry(ToolClass::Act),
        true,
        arguments,
        &task(&[], &[]),
        PolicySchema::Absent,
    );
    let d = bundle(None, policies).decide(r);
    allowed_by(&d, "agents.cedar#shapes");
}

fn nested(levels: usize) -> Value {
    let mut v = json!("leaf");
    for _ in 0..levels {
        v = json!({ "k": v });
    }
    v
}

#[test]
fn deep_or_huge_arguments_are_refused() {
    let t = task(&[], &[]);
    let try_args = |arguments: Value| {
        tool_call_request(
            "a",
            "b",
            &entry(ToolClass::Read),
            true,
            &arguments,
            &t,
            SPIFFE,
            ATTRS,
            PolicySchema::Absent,
        )
    };
    assert!(try_args(nested(MAX_ARGUMENT_DEPTH)).is_ok());
    assert_eq!(
        try_args(nested(MAX_ARGUMENT_DEPTH + 1)).unwrap_err(),
        RequestError::TooDeep { limit: 32 }
    );
    let deep_array = {
        let mut v = json!(1);
        for _ in 0..100 {
            v = json!([v]);
        }
        json!({ "a": v })
    };
    assert!(matches!(
        try_args(deep_array).unwrap_err(),
        RequestError::TooDeep { .. }
    ));
    let many = json!({ "items": vec![1; MAX_ARGUMENT_VALUES] });
    assert_eq!(
        try_args(many).unwrap_err().to_string(),
        "arguments hold more than 10000 values"
    );
    let long_key = json!({ "k".repeat(MAX_ARGUMENT_PATH + 1): 1 });
    assert!(matches!(
        try_args(long_key).unwrap_err(),
        RequestError::PathTooLong { limit: 1024, .. }
    ));
}
