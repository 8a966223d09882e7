//! Dev-only: one generated corpus of Cedar policies (some with `@approval`
//! and `@reason` annotations), entities and requests,
//! shared by the index-equivalence tests and the decision benchmarks, so that
//! what is measured is what is proven correct; the sample audit events the
//! store's tests and benchmarks write; and the latency report the in-process
//! benchmarks print.
//!
//! Generation is deterministic for a seed (a small xorshift generator, no
//! dependency), so a failing case can be replayed from its seed.

use mandate_core::{AuditEvent, AuditKind};
use mandate_policy::cedar_policy::{Context, EntityUid, RestrictedExpression};
use mandate_policy::{DecisionRequest, PolicySources, SourceFile};

/// A deterministic pseudo-random generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value, zero included).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

/// Sizes of a generated corpus.
#[derive(Debug, Clone, Copy)]
pub struct CorpusShape {
    /// Number of policies.
    pub policies: usize,
    /// Number of users (documents are as many again, plus groups and folders).
    pub users: usize,
}

/// Actions the corpus uses; `fly` is never mentioned by a policy.
pub const ACTIONS: [&str; 6] = ["read", "write", "delete", "share", "comment", "fly"];
const GROUPS: usize = 8;
const FOLDERS: usize = 8;

/// A generated policy directory and a way to make requests against it.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// The policy directory's contents.
    pub sources: PolicySources,
    shape: CorpusShape,
}

fn uid(t: &str, id: &str) -> EntityUid {
    EntityUid::from_json(serde_json::json!({"type": t, "id": id})).expect("valid uid")
}

fn entity_ref(t: &str, id: impl std::fmt::Display) -> serde_json::Value {
    serde_json::json!({"__entity": {"type": t, "id": id.to_string()}})
}

fn pick<'a>(rng: &mut Rng, items: &[&'a str]) -> &'a str {
    items[rng.below(items.len())]
}

impl Corpus {
    /// Generates a corpus of `shape` from `seed`.
    pub fn generate(seed: u64, shape: CorpusShape) -> Corpus {
        let mut rng = Rng::new(seed);
        let mut entities = Vec::new();
        for g in 0..GROUPS {
            let parents: Vec<_> = if g > 0 && rng.chance(50) {
                vec![serde_json::json!({"type": "Group", "id": format!("g{}", rng.below(g))})]
            } else {
                vec![]
            };
            entities.push(serde_json::json!({"uid": {"type": "Group", "id": format!("g{g}")}, "attrs": {"size": g}, "parents": parents}));
        }
        for f in 0..FOLDERS {
            entities.push(serde_json::json!({"uid": {"type": "Folder", "id": format!("f{f}")}, "attrs": {}, "parents": []}));
        }
        for u in 0..shape.users {
            let mut attrs = serde_json::json!({
                "level": rng.below(10),
                "dept": format!("d{}", rng.below(4)),
            });
            if u > 0 {
                attrs["manager"] = entity_ref("User", format!("u{}", rng.below(u)));
            }
            let parents =
                vec![serde_json::json!({"type": "Group", "id": format!("g{}", rng.below(GROUPS))})];
            entities.push(serde_json::json!({"uid": {"type": "User", "id": format!("u{u}")}, "attrs": attrs, "parents": parents}));
        }
        for d in 0..shape.users {
            let attrs = serde_json::json!({
                "owner": entity_ref("User", format!("u{}", rng.below(shape.users))),
                "classification": rng.below(10),
            });
            let parents = vec![
                serde_json::json!({"type": "Folder", "id": format!("f{}", rng.below(FOLDERS))}),
            ];
            entities.push(serde_json::json!({"uid": {"type": "Doc", "id": format!("d{d}")}, "attrs": attrs, "parents": parents}));
        }
        // An action group: read and comment are "readish".
        entities.push(serde_json::json!({"uid": {"type": "Action", "id": "readish"}, "attrs": {}, "parents": []}));
        for a in ["read", "comment"] {
            entities.push(serde_json::json!({"uid": {"type": "Action", "id": a}, "attrs": {}, "parents": [{"type": "Action", "id": "readish"}]}));
        }

        let mut text = String::new();
        // Annotations draw from their own generator so that the policies
        // themselves stay what they were before annotations existed.
        let mut marks = Rng::new(seed ^ 0x5EED_A770);
        for i in 0..shape.policies {
            let effect = if rng.chance(20) { "forbid" } else { "permit" };
            let mut annotations = String::new();
            if effect == "forbid" && marks.chance(50) {
                annotations.push_str(&format!("@approval(\"sign-off {}\")\n", marks.below(3)));
            }
            if marks.chance(30) {
                annotations.push_str(&format!(
                    "@reason(\"{}\")\n",
                    pick(&mut marks, &["drift", "egress", "destructive"])
                ));
            }
            let principal = match rng.below(5) {
                0 => "principal".to_owned(),
                1 => format!(r#"principal == User::"u{}""#, rng.below(shape.users)),
                2 => "principal is User".to_owned(),
                3 => format!(r#"principal in Group::"g{}""#, rng.below(GROUPS)),
                _ => format!(r#"principal is User in Group::"g{}""#, rng.below(GROUPS)),
            };
            let action = match rng.below(4) {
                0 => "action".to_owned(),
                1 => format!(r#"action == Action::"{}""#, pick(&mut rng, &ACTIONS[..5])),
                2 => format!(
                    r#"action in [Action::"{}", Action::"{}"]"#,
                    pick(&mut rng, &ACTIONS[..5]),
                    pick(&mut rng, &ACTIONS[..5])
                ),
                _ => r#"action in Action::"readish""#.to_owned(),
            };
            let resource = match rng.below(5) {
                0 => "resource".to_owned(),
                1 => format!(r#"resource == Doc::"d{}""#, rng.below(shape.users)),
                2 => "resource is Doc".to_owned(),
                3 => format!(r#"resource in Folder::"f{}""#, rng.below(FOLDERS)),
                _ => format!(r#"resource is Doc in Folder::"f{}""#, rng.below(FOLDERS)),
            };
            let k = rng.below(10);
            let condition = match rng.below(8) {
                0 => String::new(),
                1 => format!("when {{ principal.level > {k} }}"),
                2 => "when { resource.owner == principal }".to_owned(),
                3 => "when { resource.owner.dept == principal.dept }".to_owned(),
                4 => format!("when {{ context.hour < {} }}", k + 8),
                5 => format!("when {{ principal.manager.level >= {k} }}"),
                6 => format!(
                    r#"when {{ Group::"g{}".size > {k} && principal in Group::"g{}" }}"#,
                    rng.below(GROUPS),
                    rng.below(GROUPS)
                ),
                _ => "unless { resource.classification > principal.level }".to_owned(),
            };
            text.push_str(&format!(
                "@id(\"p{i}\")\n{annotations}{effect}({principal}, {action}, {resource}) {condition};\n"
            ));
        }
        Corpus {
            sources: PolicySources {
                policies: vec![SourceFile {
                    name: "corpus.cedar".into(),
                    text,
                }],
                schemas: vec![],
                entities: Some(SourceFile {
                    name: "entities.json".into(),
                    text: serde_json::Value::Array(entities).to_string(),
                }),
            },
            shape,
        }
    }

    /// A random request: mostly known users, actions and documents, sometimes
    /// unknown ones, other types, or request-supplied attributes.
    pub fn request(&self, rng: &mut Rng) -> DecisionRequest {
        let users = self.shape.users;
        let principal = match rng.below(10) {
            0 => uid("User", "ghost"),
            1 => uid("Bot", "b1"),
            2 => uid("Group", &format!("g{}", rng.below(GROUPS))),
            _ => uid("User", &format!("u{}", rng.below(users))),
        };
        let action = uid("Action", ACTIONS[rng.below(ACTIONS.len())]);
        let resource = match rng.below(10) {
            0 => uid("Doc", "unstored"),
            1 => uid("Folder", &format!("f{}", rng.below(FOLDERS))),
            _ => uid("Doc", &format!("d{}", rng.below(users))),
        };
        let mut resource_attrs = Vec::new();
        if rng.chance(20) {
            resource_attrs.push((
                "owner".to_owned(),
                RestrictedExpression::new_entity_uid(uid(
                    "User",
                    &format!("u{}", rng.below(users)),
                )),
            ));
            resource_attrs.push((
                "classification".to_owned(),
                RestrictedExpression::new_long(rng.below(10) as i64),
            ));
        }
        let context = if rng.chance(80) {
            Context::from_pairs([(
                "hour".to_owned(),
                RestrictedExpression::new_long(rng.below(24) as i64),
            )])
            .expect("valid context")
        } else {
            Context::empty()
        };
        DecisionRequest {
            principal,
            action,
            resource,
            context,
            principal_attrs: vec![],
            resource_attrs,
        }
    }
}

/// Audit event `n` of the shared sample: an allow of `user::"alice"` reading
/// `document::"n"`, distinct per `n` in time, request ID and resource.
pub fn sample_audit_event(n: u32) -> AuditEvent {
    AuditEvent {
        time_us: 1_700_000_000_000_000 + i64::from(n),
        kind: AuditKind::Decision,
        request_id: format!("req-{n}"),
        subject: r#"user::"alice""#.into(),
        action: r#"Action::"read""#.into(),
        resource: format!(r#"document::"{n}""#),
        outcome: "allow".into(),
        policies: vec!["policies/docs.cedar#p0".into()],
        request_digest: "ab".repeat(32),
        detail: serde_json::json!({"reason": "permitted"}),
    }
}

fn percentile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Prints one line of latency figures (median, p90, p99, max in µs) for
/// `samples` under `name`, and returns the median.
pub fn report_latency(name: &str, mut samples: Vec<std::time::Duration>) -> std::time::Duration {
    samples.sort();
    let median = percentile(&samples, 0.5);
    println!(
        "{name:<40} median {:>8.2} µs   p90 {:>8.2} µs   p99 {:>8.2} µs   max {:>8.2} µs",
        median.as_secs_f64() * 1e6,
        percentile(&samples, 0.9).as_secs_f64() * 1e6,
        percentile(&samples, 0.99).as_secs_f64() * 1e6,
        samples[samples.len() - 1].as_secs_f64() * 1e6,
    );
    median
}
