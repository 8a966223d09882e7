//! In-process decision benchmark: Mandate's decision path against raw Cedar.
//!
//! Both run over the same generated corpus (100 policies, ~1,000 entities) and
//! the same random requests, interleaved call by call so that machine noise hits
//! both alike. Mandate's path is the whole of it: the AuthZEN request mapped onto
//! Cedar (entities and context built natively), the indexed policy set and the
//! entity slice chosen, Cedar evaluated, the decision explained and its audit
//! event built with the keyed request digest (not written). The baseline is
//! `cedar_policy::Authorizer::is_authorized` on an already-built request over the
//! full policy set and entity store.
//!
//! A second scenario runs the AuthZEN Todo example (`examples/authzen-todo`,
//! with its schema) on a request that carries resource properties, so the
//! entity built from the request is schema-checked and the slice is rebuilt; its
//! baseline is raw Cedar with that entity already in the store.
//!
//! Run with: `cargo bench -p mandate-authzen --bench decision`
//! (set `MANDATE_BENCH_ITERATIONS` to change the sample count, default 20000).

use std::str::FromStr;
use std::time::Instant;

use mandate_authzen::{BatchLimits, EvaluationRequest, evaluate_one};
use mandate_core::RequestDigester;
use mandate_policy::PolicyBundle;
use mandate_policy::cedar_policy::{
    Authorizer, Context, Entities, EntityUid, PolicySet, Request, RestrictedExpression,
};
use mandate_testkit::{ACTIONS, Corpus, CorpusShape, Rng};
use serde_json::json;

// The same allocator as the `mandate` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USERS: usize = 492; // 2 × 492 users and documents + groups, folders, actions ≈ 1,000 entities

struct Case {
    authzen: EvaluationRequest,
    cedar: Request,
}

fn cases(n: usize, rng: &mut Rng) -> Vec<Case> {
    (0..n)
        .map(|_| {
            let user = format!("u{}", rng.below(USERS));
            let action = ACTIONS[rng.below(ACTIONS.len() - 1)];
            let doc = format!("d{}", rng.below(USERS));
            let hour = rng.below(24) as i64;
            let authzen: EvaluationRequest = serde_json::from_value(json!({
                "subject": {"type": "User", "id": user},
                "action": {"name": action},
                "resource": {"type": "Doc", "id": doc},
                "context": {"hour": hour}
            }))
            .expect("valid request");
            let uid =
                |t: &str, id: &str| EntityUid::from_str(&format!("{t}::\"{id}\"")).expect("uid");
            let cedar = Request::new(
                uid("User", &user),
                uid("Action", action),
                uid("Doc", &doc),
                Context::from_pairs([("hour".to_owned(), RestrictedExpression::new_long(hour))])
                    .expect("context"),
                None,
            )
            .expect("request");
            Case { authzen, cedar }
        })
        .collect()
}

fn main() {
    let iterations: usize = std::env::var("MANDATE_BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let corpus = Corpus::generate(
        42,
        CorpusShape {
            policies: 100,
            users: USERS,
        },
    );
    let bundle = PolicyBundle::from_sources(&corpus.sources).expect("corpus loads");
    let raw_policies =
        PolicySet::from_str(&corpus.sources.policies[0].text).expect("policies parse");
    let raw_entities = Entities::from_json_str(
        &corpus.sources.entities.as_ref().expect("entities").text,
        None,
    )
    .expect("entities parse");
    println!(
        "corpus: {} policies, {} entities; {iterations} requests each, interleaved",
        bundle.policy_count(),
        raw_entities.iter().count()
    );
    let limits = BatchLimits {
        max_items: 1,
        explain: true,
        max_work_bytes: 1 << 20,
    };
    let digester = RequestDigester::new(&[7; 32]);
    let authorizer = Authorizer::new();
    let mut rng = Rng::new(42);
    let cases = cases(iterations, &mut rng);

    // Warm up: caches, the index, the allocator.
    for case in cases.iter().take(2000) {
        let item = evaluate_one(&bundle, &case.authzen, limits, &digester).expect("maps");
        std::hint::black_box(item.audit_event(0, "warm"));
        std::hint::black_box(authorizer.is_authorized(&case.cedar, &raw_policies, &raw_entities));
    }

    let mut raw = Vec::with_capacity(iterations);
    let mut mandate = Vec::with_capacity(iterations);
    let mut agree = 0usize;
    for case in &cases {
        let t = Instant::now();
        let response = authorizer.is_authorized(&case.cedar, &raw_policies, &raw_entities);
        raw.push(t.elapsed());

        let t = Instant::now();
        let item = evaluate_one(&bundle, &case.authzen, limits, &digester).expect("maps");
        let event = item.audit_event(1, "bench");
        mandate.push(t.elapsed());
        std::hint::black_box(event);

        let raw_allow = response.decision() == mandate_policy::cedar_policy::Decision::Allow;
        agree += usize::from(raw_allow == item.decision.is_allow());
    }
    assert_eq!(
        agree, iterations,
        "Mandate and raw Cedar disagreed on some requests"
    );
    let raw_median = mandate_testkit::report_latency("raw Cedar is_authorized", raw);
    let mandate_median = mandate_testkit::report_latency("Mandate decision path", mandate);
    println!(
        "Mandate median / raw Cedar median = {:.3}  (all {iterations} decisions agree)",
        mandate_median.as_secs_f64() / raw_median.as_secs_f64()
    );
    todo_scenario(iterations, &digester);
}

/// The Todo example: schema, 9 entities, 7 policies; the request carries
/// `resource.properties.ownerID`.
fn todo_scenario(iterations: usize, digester: &RequestDigester) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/authzen-todo");
    let sources = mandate_policy::PolicySources::read_dir(&dir).expect("example reads");
    let bundle = PolicyBundle::from_sources(&sources).expect("example loads");
    let schema_text = &sources.schemas[0].text;
    let (fragment, _) =
        mandate_policy::cedar_policy::SchemaFragment::from_cedarschema_str(schema_text)
            .expect("schema parses");
    let schema =
        mandate_policy::cedar_policy::Schema::from_schema_fragments([fragment]).expect("schema");
    let mut raw_policies = PolicySet::new();
    for file in &sources.policies {
        for p in PolicySet::from_str(&file.text).expect("parses").policies() {
            let id =
                mandate_policy::cedar_policy::PolicyId::new(format!("{}#{}", file.name, p.id()));
            raw_policies.add(p.new_id(id)).expect("adds");
        }
    }
    let pid = "CiRmZDE2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs";
    let todo = r#"todo::"7240d0db-8ff0-41ec-98b2-34a096273b91""#;
    let entities_text = sources.entities.as_ref().expect("entities").text.clone();
    let mut entities: Vec<serde_json::Value> = serde_json::from_str(&entities_text).expect("json");
    entities.push(json!({"uid": {"type": "todo", "id": "7240d0db-8ff0-41ec-98b2-34a096273b91"}, "attrs": {"ownerID": "morty@the-citadel.com"}, "parents": []}));
    let raw_entities = Entities::from_json_value(serde_json::Value::Array(entities), Some(&schema))
        .expect("entities");
    let raw_request = Request::new(
        EntityUid::from_str(&format!("user::\"{pid}\"")).expect("uid"),
        EntityUid::from_str(r#"Action::"can_update_todo""#).expect("uid"),
        EntityUid::from_str(todo).expect("uid"),
        Context::empty(),
        Some(&schema),
    )
    .expect("request");
    let authzen: EvaluationRequest = serde_json::from_value(json!({
        "subject": {"type": "user", "id": pid},
        "action": {"name": "can_update_todo"},
        "resource": {"type": "todo", "id": "7240d0db-8ff0-41ec-98b2-34a096273b91", "properties": {"ownerID": "morty@the-citadel.com"}}
    }))
    .expect("request");
    let limits = BatchLimits {
        max_items: 1,
        explain: true,
        max_work_bytes: 1 << 20,
    };
    let authorizer = Authorizer::new();
    let mut raw = Vec::with_capacity(iterations);
    let mut mandate = Vec::with_capacity(iterations);
    for i in 0..iterations + 2000 {
        let t = Instant::now();
        let response = authorizer.is_authorized(&raw_request, &raw_policies, &raw_entities);
        let raw_time = t.elapsed();
        let t = Instant::now();
        let item = evaluate_one(&bundle, &authzen, limits, digester).expect("maps");
        let event = item.audit_event(1, "bench");
        let mandate_time = t.elapsed();
        std::hint::black_box(event);
        assert!(item.decision.is_allow());
        assert_eq!(
            response.decision(),
            mandate_policy::cedar_policy::Decision::Allow
        );
        if i >= 2000 {
            raw.push(raw_time);
            mandate.push(mandate_time);
        }
    }
    println!("todo example, request with properties and a schema:");
    let raw_median = mandate_testkit::report_latency("raw Cedar is_authorized", raw);
    let mandate_median = mandate_testkit::report_latency("Mandate decision path", mandate);
    println!(
        "Mandate median / raw Cedar median = {:.3}",
        mandate_median.as_secs_f64() / raw_median.as_secs_f64()
    );
}
