//! Matching REST requests to rules (and refusing confusing paths), and their
//! Cedar requests put to the shipped policy directory `policies/` (the
//! baseline pack, the example grants and the github example's actions).

use mandate_core::{DecisionReason, Effect};
use mandate_policy::{PolicyBundle, PolicySources};
use serde_json::{Value, json};

use super::*;

const EXAMPLE_SCHEMA: &str = include_str!("../../../../policies/baseline/mandate.cedarschema");
const SPIFFE: &str = "spiffe://mandate.local/agent/triager";
const ATTRS: &[(&str, &str)] = &[
    ("name", "triager"),
    ("owner", "alice@example.com"),
    ("env", "dev"),
    ("function", "triages issues"),
    ("spiffe_id", SPIFFE),
];

fn rule(method: &str, path: &str, action: &str, resource_type: &str, id: &str) -> RestRule {
    RestRule {
        method: method.into(),
        path: path.into(),
        action: action.into(),
        resource_type: resource_type.into(),
        resource_id: id.into(),
        class: ToolClass::Read,
        labels: vec![],
        egress: false,
        destructive: false,
    }
}

/// The example upstream of the README's "HTTP reverse proxy" section.
fn github() -> RestRoutes {
    RestRoutes::new([
        rule(
            "GET",
            "/repos/{owner}/{repo}/issues",
            "list_issues",
            "Repo",
            "{owner}/{repo}",
        ),
        RestRule {
            class: ToolClass::Act,
            labels: vec!["public".into()],
            egress: true,
            ..rule(
                "POST",
                "/repos/{owner}/{repo}/issues",
                "create_issue",
                "Repo",
                "{owner}/{repo}",
            )
        },
        rule(
            "GET",
            "/repos/{owner}/{repo}/contents/{path*}",
            "get_contents",
            "File",
            "{owner}/{repo}:{path}",
        ),
        rule(
            "*",
            "/repos/{owner}/{repo}/",
            "repo_any",
            "Repo",
            "{owner}/{repo}",
        ),
        rule("GET", "/", "root", "Api", "github"),
    ])
    .unwrap()
}

fn unsafe_why(path: &str) -> &'static str {
    match github().match_request("GET", path) {
        Err(MatchError::UnsafePath { why, .. }) => why,
        other => panic!("{path:?} was not refused as unsafe: {other:?}"),
    }
}

#[test]
fn the_first_rule_that_fits_names_action_resource_and_captures() {
    let m = github()
        .match_request("GET", "/repos/acme/web/issues")
        .unwrap();
    assert_eq!(
        m,
        RestMatch {
            rule: 0,
            path: "/repos/acme/web/issues".into(),
            params: vec![
                ("owner".into(), "acme".into()),
                ("repo".into(), "web".into())
            ],
            action: "list_issues".into(),
            resource_type: "Repo".into(),
            resource_id: "acme/web".into(),
            class: ToolClass::Read,
            labels: vec![],
            egress: false,
            destructive: false,
        }
    );
    let m = github()
        .match_request("POST", "/repos/acme/web/issues")
        .unwrap();
    assert_eq!(
        (m.rule, m.action.as_str(), m.class),
        (1, "create_issue", ToolClass::Act)
    );
    let m = github()
        .match_request("GET", "/repos/acme/web/contents/src/lib/main.rs")
        .unwrap();
    assert_eq!(m.resource_id, "acme/web:src/lib/main.rs");
    assert_eq!(m.params[2], ("path".into(), "src/lib/main.rs".into()));
    assert_eq!(github().match_request("GET", "/").unwrap().action, "root");
}

#[test]
fn segments_are_matched_decoded_and_captures_are_never_empty() {
    let m = github()
        .match_request("GET", "/repos/acme%20corp/w%C3%A9b/issues")
        .unwrap();
    assert_eq!(m.resource_id, "acme corp/wéb");
    assert_eq!(m.path, "/repos/acme corp/wéb/issues");
    // A literal segment matches its encoded form too.
    assert_eq!(
        github()
            .match_request("GET", "/repos/acme/web/%69ssues")
            .unwrap()
            .action,
        "list_issues"
    );
    // The rest capture needs one segment or more; a trailing slash is a
    // segment of its own and must be in the template.
    for path in [
        "/repos/acme/web/contents",
        "/repos/acme/web/contents/",
        "/repos/acme/web/issues/",
        "/repos/acme/web",
        "/repos/acme/issues",
    ] {
        assert!(
            matches!(
                github().match_request("GET", path),
                Err(MatchError::NoRoute { .. })
            ),
            "{path}"
        );
    }
    let m = github().match_request("PATCH", "/repos/acme/web/").unwrap();
    assert_eq!(m.action, "repo_any");
}

#[test]
fn methods_are_compared_exactly_and_star_takes_any() {
    assert_eq!(
        github()
            .match_request("DELETE", "/repos/acme/web/issues")
            .unwrap_err(),
        MatchError::NoRoute {
            method: "DELETE".into(),
            path: "/repos/acme/web/issues".into()
        }
    );
    assert!(
        github()
            .match_request("get", "/repos/acme/web/issues")
            .is_err()
    );
    assert_eq!(
        github()
            .match_request("DELETE", "/repos/acme/web/")
            .unwrap()
            .action,
        "repo_any"
    );
}

#[test]
fn traversal_and_confusion_paths_are_refused_before_any_rule() {
    let dot = "it has a dot segment (., ..)";
    let cases: &[(&str, &str)] = &[
        ("/repos/acme/../admin/issues", dot),
        ("/repos/acme/web/contents/../../../etc/passwd", dot),
        ("/repos/acme/%2e%2e/issues", dot),
        ("/repos/acme/.%2E/issues", dot),
        ("/repos/./acme/web/issues", dot),
        ("/repos/acme/web/contents/..;/x", dot),
        ("/repos/acme/web/contents/...", dot),
        ("/repos//acme/web/issues", "it has an empty segment (//)"),
        ("//repos/acme/web/issues", "it has an empty segment (//)"),
        (
            "/repos/acme%2Fweb/x/issues",
            "it encodes a slash (%2F) inside a segment",
        ),
        (
            "/repos/acme/web/contents/a%2fb",
            "it encodes a slash (%2F) inside a segment",
        ),
        (
            "/repos/acme%5C..%5Cweb/issues",
            "it encodes a backslash (%5C) inside a segment",
        ),
        ("/repos/acme\\..\\web/issues", "it contains a backslash"),
        ("/repos/acme%00/web/issues", "it contains NUL"),
        (
            "/repos/acme%0d%0aX:1/web/issues",
            "it contains a control character",
        ),
        (
            "/repos/%252e%252e/web/issues",
            "it is percent-encoded twice",
        ),
        ("/repos/acme%252Fweb/issues", "it is percent-encoded twice"),
        (
            "/repos/%C0%AE%C0%AE/web/issues",
            "it is not UTF-8 once decoded",
        ),
        (
            "/repos/acme%2/web/issues",
            "it has a malformed percent-encoding",
        ),
        (
            "/repos/acme%zz/web/issues",
            "it has a malformed percent-encoding",
        ),
        ("repos/acme/web/issues", "it does not start with '/'"),
    ];
    for (path, why) in cases {
        assert_eq!(unsafe_why(path), *why, "{path}");
    }
    let err = github().match_request("GET", "/a//b").unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"path "/a//b" is refused: it has an empty segment (//)"#
    );
}

#[test]
fn bad_rules_are_refused_with_their_index() {
    let ok = || rule("GET", "/repos/{owner}", "list", "Repo", "{owner}");
    let err = |r: RestRule| RestRoutes::new([ok(), r]).unwrap_err().to_string();
    assert_eq!(
        err(RestRule {
            method: "get".into(),
            ..ok()
        }),
        r#"rules[1]: method "get" must be an upper-case HTTP method (GET) or "*""#
    );
    for (path, why) in [
        ("repos", "must start with '/'"),
        ("/a//b", "has an empty segment (//)"),
        ("/a/{x}/{x}", "capture {x} is named twice"),
        ("/a/{rest*}/b", "{rest*} must be the last segment"),
        (
            "/a/{1x}",
            "capture {1x}: a name is an ASCII letter or '_', then letters, digits and '_'",
        ),
        (
            "/a/v{x}.json",
            r#"segment "v{x}.json": a capture is a whole segment, {name} or {name*}"#,
        ),
        (
            "/a/%2e",
            r#"segment "%2e": write literal segments decoded, without '%', '\', ';' or control characters"#,
        ),
        ("/a/../b", r#"segment "..": dot segments never match"#),
    ] {
        assert_eq!(
            err(RestRule {
                path: path.into(),
                resource_id: "x".into(),
                ..ok()
            }),
            format!("rules[1]: path {path:?}: {why}")
        );
    }
    assert_eq!(
        err(RestRule {
            action: "call".into(),
            ..ok()
        }),
        r#"rules[1]: action "call": is reserved for Mandate's own questions; choose another name"#
    );
    assert_eq!(
        err(RestRule {
            action: "list issues".into(),
            ..ok()
        }),
        r#"rules[1]: action "list issues": use 1 to 64 ASCII letters, digits, '_' and '-'"#
    );
    for t in ["repo type", "Action", "Gh::Action", "", "Repo::"] {
        assert_eq!(
            err(RestRule {
                resource_type: t.into(),
                ..ok()
            }),
            format!(
                "rules[1]: resource_type {t:?} is not a Cedar entity type name (Repo, Github::Repo)"
            )
        );
    }
    assert!(
        RestRoutes::new([RestRule {
            resource_type: "Github::Repo".into(),
            ..ok()
        }])
        .is_ok()
    );
    for (id, why) in [
        ("", "must not be empty".to_owned()),
        ("{owner", "a '{' is never closed".to_owned()),
        ("owner}", "a '}' is never opened".to_owned()),
        (
            "{owner}/{repo}",
            r#"{repo} is not a capture of the path (it has ["owner"])"#.to_owned(),
        ),
    ] {
        assert_eq!(
            err(RestRule {
                resource_id: id.into(),
                ..ok()
            }),
            format!("rules[1]: resource_id {id:?}: {why}")
        );
    }
}

fn task(tools: &[&str], capabilities: &[&str]) -> Value {
    json!({
        "id": "task-1",
        "purpose": "triage the web issues",
        "tools": tools.iter().map(|t| json!({"__entity": {"type": "Tool", "id": t}})).collect::<Vec<_>>(),
        "data_domains": [{"__entity": {"type": "DataDomain", "id": "reports"}}],
        "capabilities": capabilities,
        "depth": 0,
        "delegation_chain": [SPIFFE],
    })
}

/// `policies/` as shipped.
fn examples() -> PolicyBundle {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    PolicyBundle::from_sources(&PolicySources::read_dir(&dir).unwrap()).unwrap()
}

fn request(method: &str, path: &str, query: Option<&str>, t: &Value) -> DecisionRequest {
    let m = github().match_request(method, path).unwrap();
    rest_request("github", &m, method, query, t, SPIFFE, ATTRS).unwrap()
}

#[test]
fn the_example_schema_holds_the_fragment() {
    assert!(EXAMPLE_SCHEMA.contains(REST_SCHEMA_FRAGMENT));
}

#[test]
fn a_rest_request_names_agent_action_resource_and_its_context() {
    let t = task(&["github.list_issues"], &["read"]);
    let r = request("GET", "/repos/acme/web/issues", Some("state=open"), &t);
    assert_eq!(r.principal.to_string(), format!("Agent::\"{SPIFFE}\""));
    assert_eq!(r.action.to_string(), r#"Action::"list_issues""#);
    assert_eq!(r.resource.to_string(), r#"Repo::"acme/web""#);
    assert_eq!(r.principal_attrs.len(), 5);
    let mut context = r.context.to_json_value().unwrap();
    context["task"] = Value::Null;
    assert_eq!(
        context,
        json!({
            "task": null,
            "http": {"method": "GET", "path": "/repos/acme/web/issues",
                     "query": "state=open", "upstream": "github"},
            "params": {"owner": "acme", "repo": "web"},
            "tool": {"name": "list_issues", "upstream": "github", "class": "read",
                     "labels": [], "egress": false, "destructive": false, "known": true},
            "tool_entity": {"__entity": {"type": "Tool", "id": "github.list_issues"}},
            "session": {"labels": []},
        })
    );
}

#[test]
fn a_scope_carries_the_session_labels_into_the_context() {
    let t = task(&["github.list_issues"], &["read"]);
    let m = github()
        .match_request("GET", "/repos/acme/web/issues")
        .unwrap();
    let labels = vec!["confidential".to_owned(), "pii".to_owned()];
    let scope = crate::TaskScope {
        task: &t,
        session_labels: &labels,
    };
    let r = rest_request("github", &m, "GET", None, scope, SPIFFE, ATTRS).unwrap();
    let context = r.context.to_json_value().unwrap();
    assert_eq!(
        context["session"],
        json!({"labels": ["confidential", "pii"]})
    );
}

#[test]
fn the_examples_allow_an_endpoint_whose_tool_and_class_the_task_holds() {
    let d = examples().decide(request(
        "GET",
        "/repos/acme/web/issues",
        None,
        &task(&["github.list_issues"], &["read"]),
    ));
    assert_eq!(d.effect, Effect::Allow, "{d:?}");
    assert_eq!(d.policies, ["examples/grants.cedar#proxy-within-task"]);
}

#[test]
fn the_examples_deny_an_endpoint_outside_the_task_or_its_capabilities() {
    // Not the task's tool: drift.
    let d = examples().decide(request(
        "GET",
        "/repos/acme/web/issues",
        None,
        &task(&["github.create_issue", "files.read"], &["read"]),
    ));
    assert_eq!(d.reason, DecisionReason::Forbidden, "{d:?}");
    assert_eq!(d.policies, ["baseline/drift.cedar#drift"]);
    // Its tool, but an `act` endpoint under a read-only task.
    let d = examples().decide(request(
        "POST",
        "/repos/acme/web/issues",
        None,
        &task(&["github.create_issue"], &["read"]),
    ));
    assert_eq!(d.reason, DecisionReason::Forbidden, "{d:?}");
    assert_eq!(
        d.policies,
        ["baseline/capabilities.cedar#class-needs-capability"]
    );
    // The same tool name on another upstream is another tool.
    let m = github()
        .match_request("GET", "/repos/acme/web/issues")
        .unwrap();
    let r = rest_request(
        "gitlab",
        &m,
        "GET",
        None,
        &task(&["github.list_issues"], &["read"]),
        SPIFFE,
        ATTRS,
    )
    .unwrap();
    assert!(examples().decide(r).has_tag("drift"));
}

#[test]
fn an_action_the_schema_does_not_declare_is_an_invalid_request() {
    // get_contents is not in the example schema: under it, deny with the reason.
    let d = examples().decide(request(
        "GET",
        "/repos/acme/web/contents/README.md",
        None,
        &task(&["github.get_contents"], &["read"]),
    ));
    assert!(
        matches!(d.reason, DecisionReason::InvalidRequest(_)),
        "{d:?}"
    );
    assert_eq!(d.effect, Effect::Deny);
}

#[test]
fn bad_upstream_names_are_refused() {
    let m = github()
        .match_request("GET", "/repos/acme/web/issues")
        .unwrap();
    let t = task(&[], &[]);
    assert_eq!(
        rest_request("git.hub", &m, "GET", None, &t, SPIFFE, ATTRS).unwrap_err(),
        RequestError::BadUpstream {
            upstream: "git.hub".into()
        }
    );
}
