//! Evaluating single and batch AuthZEN requests, and what each leaves in the log.
//!
//! A batch item that is malformed or does not map onto Cedar is denied on its
//! own, with the reason in its `context.error`; the rest of the batch proceeds.
//! Only a batch that is itself malformed or too large is refused whole (by the
//! caller, with a 400).

use mandate_core::{AuditEvent, AuditKind, Decision, RequestDigester};
use mandate_policy::PolicyBundle;
use serde_json::{Map, Value, json};

use crate::mapping::to_cedar;
use crate::wire::{EvaluationRequest, EvaluationResponse, EvaluationsRequest, EvaluationsSemantic};

/// Limits and presentation choices for evaluations.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// The most items one batch may hold.
    pub max_items: usize,
    /// Whether deny responses carry `context.reason_admin` naming the policies.
    pub explain: bool,
    /// Most bytes of batch defaults processed over all items (items that inherit
    /// the defaults × their serialized size).
    pub max_work_bytes: usize,
}

/// One evaluated request: what to answer and what to record.
#[derive(Debug, Clone)]
pub struct EvaluatedItem {
    /// The AuthZEN response for this item.
    pub response: EvaluationResponse,
    /// The decision behind it.
    pub decision: Decision,
    subject: String,
    action: String,
    resource: String,
    /// Keyed digest of the request as it was evaluated (defaults merged),
    /// computed at once so the request itself is not kept.
    request_digest: String,
    /// The task of an `Agent` subject (`context.task.id`), recorded so the
    /// decision can be traced to its task.
    task_id: Option<String>,
}

impl EvaluatedItem {
    /// The Cedar action decided (`Action::"call"`).
    pub fn action(&self) -> &str {
        &self.action
    }

    /// The Cedar resource decided (`Tool::"files.read"`).
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The keyed digest of the request as evaluated: what an approval of
    /// this one request is bound to.
    pub fn request_digest(&self) -> &str {
        &self.request_digest
    }

    /// The task of an `Agent` subject, if any.
    pub fn task_id(&self) -> Option<&str> {
        self.task_id.as_deref()
    }

    /// The audit event recording this evaluation. The request itself is kept only
    /// as a keyed digest.
    pub fn audit_event(&self, time_us: i64, request_id: &str) -> AuditEvent {
        let mut detail = Map::new();
        // Only codes and policy IDs: error texts can quote request values, and
        // the log must not hold the request (its digest stands for it).
        detail.insert("reason".into(), Value::from(self.decision.reason.code()));
        if let Some(task_id) = &self.task_id {
            detail.insert("task_id".into(), Value::from(task_id.as_str()));
        }
        if !self.decision.errors.is_empty() {
            let errored: Vec<&str> = self
                .decision
                .errors
                .iter()
                .map(|e| e.policy.as_str())
                .collect();
            detail.insert("errored_policies".into(), json!(errored));
        }
        AuditEvent {
            time_us,
            // A call that left its task is recorded as drift.
            kind: if self.decision.has_tag("drift") {
                AuditKind::Drift
            } else {
                AuditKind::Decision
            },
            request_id: request_id.to_owned(),
            subject: self.subject.clone(),
            action: self.action.clone(),
            resource: self.resource.clone(),
            outcome: self.decision.effect.as_str().to_owned(),
            policies: self.decision.policies.clone(),
            request_digest: self.request_digest.clone(),
            detail: Value::Object(detail),
        }
    }
}

fn response_for(decision: &Decision, explain: bool) -> EvaluationResponse {
    let context = (!decision.is_allow() && explain).then(|| {
        let mut c = Map::new();
        c.insert("reason_admin".into(), json!({"en": decision.explain()}));
        c
    });
    EvaluationResponse {
        decision: decision.is_allow(),
        context,
    }
}

/// Evaluates one request that has already been parsed. A request that cannot be
/// mapped onto Cedar is an error for the caller to answer with a 400.
pub fn evaluate_one(
    bundle: &PolicyBundle,
    request: &EvaluationRequest,
    limits: BatchLimits,
    digester: &RequestDigester,
) -> Result<EvaluatedItem, crate::MappingError> {
    let parsed = to_cedar(request)?;
    let decision = bundle.decide(parsed.request);
    Ok(EvaluatedItem {
        response: response_for(&decision, limits.explain),
        decision,
        subject: parsed.subject,
        action: parsed.action,
        resource: parsed.resource,
        request_digest: digester.digest_json_hex(request),
        task_id: agent_task_id(request),
    })
}

/// Subject type of agents, whose `context.task` the server fills in from a
/// verified task token and refuses from anyone else.
const AGENT_TYPE: &str = "Agent";

/// The task of a request made with a task token: `context.task.id` of an
/// `Agent` subject, at most 128 bytes (task IDs are 37).
fn agent_task_id(request: &EvaluationRequest) -> Option<String> {
    if request.subject.kind != AGENT_TYPE {
        return None;
    }
    request
        .context
        .as_ref()?
        .get("task")?
        .get("id")?
        .as_str()
        .filter(|id| id.len() <= 128)
        .map(str::to_owned)
}

/// A deny for a batch item that could not be evaluated.
fn item_error(
    index: usize,
    refusal: ItemRefusal,
    raw: &Value,
    digester: &RequestDigester,
) -> EvaluatedItem {
    let ItemRefusal { status, message } = refusal;
    let decision = Decision::invalid(format!("evaluations[{index}]: {message}"));
    let mut message = message;
    if let Some((cut, _)) = message.char_indices().nth(Decision::MAX_MESSAGE) {
        message.truncate(cut);
    }
    let mut context = Map::new();
    context.insert(
        "error".into(),
        json!({"status": status, "message": message}),
    );
    EvaluatedItem {
        response: EvaluationResponse {
            decision: false,
            context: Some(context),
        },
        decision,
        subject: String::new(),
        action: String::new(),
        resource: String::new(),
        request_digest: digester.digest_json_hex(raw),
        task_id: None,
    }
}

/// Fills an item's missing subject / action / resource / context from the
/// batch defaults (an item's own value replaces the default whole).
fn merged_item(defaults: &Map<String, Value>, raw: &Value) -> Result<EvaluationRequest, String> {
    let Value::Object(item) = raw else {
        return Err("each evaluation must be a JSON object".to_owned());
    };
    let mut merged = Map::new();
    for key in ["subject", "action", "resource", "context"] {
        let value = item.get(key).or_else(|| defaults.get(key));
        match value {
            Some(Value::Null) | None if key == "context" => {}
            Some(v) => {
                merged.insert(key.to_owned(), v.clone());
            }
            None => {
                return Err(format!(
                    "{key} is missing (in the item and in the batch defaults)"
                ));
            }
        }
    }
    serde_json::from_value(Value::Object(merged)).map_err(|e| e.to_string())
}

/// Either a batch's items, or (when it holds no `evaluations` array) the single
/// evaluation the specification says it then stands for.
#[derive(Debug)]
pub enum BatchOutcome {
    /// No `evaluations`: answered like `/access/v1/evaluation`.
    Single(Box<EvaluatedItem>),
    /// One item per evaluated request, in request order.
    Items(Vec<EvaluatedItem>),
}

/// Why one evaluation cannot be decided: the HTTP status it would get alone
/// (400 for a bad request, 401 for a refused credential) and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemRefusal {
    /// The status, reported in the item's `context.error.status`.
    pub status: u16,
    /// What was wrong.
    pub message: String,
}

impl ItemRefusal {
    /// A malformed request (400).
    pub fn bad_request(message: impl Into<String>) -> ItemRefusal {
        ItemRefusal {
            status: 400,
            message: message.into(),
        }
    }
}

/// Turns a request as the caller sent it into the request to decide, before it
/// is mapped onto Cedar: the server uses it to replace a task-token subject by
/// the verified agent and its task. `Err` denies that request.
pub trait SubjectResolver {
    /// Rewrites `request` in place, or says why it cannot be decided.
    fn resolve(&self, request: &mut EvaluationRequest) -> Result<(), ItemRefusal>;
}

/// Leaves every request as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct AsSent;

impl SubjectResolver for AsSent {
    fn resolve(&self, _: &mut EvaluationRequest) -> Result<(), ItemRefusal> {
        Ok(())
    }
}

/// Evaluates a batch. Refuses (with the message for a 400) only a batch over the
/// item limit or, without items, one whose top-level request is incomplete.
pub fn evaluate_batch(
    bundle: &PolicyBundle,
    batch: &EvaluationsRequest,
    limits: BatchLimits,
    digester: &RequestDigester,
) -> Result<BatchOutcome, String> {
    evaluate_batch_resolved(bundle, batch, limits, digester, &AsSent)
}

/// [`evaluate_batch`], with each request (the defaults merged in) passed
/// through `resolver` first; an item it refuses is denied alone.
pub fn evaluate_batch_resolved(
    bundle: &PolicyBundle,
    batch: &EvaluationsRequest,
    limits: BatchLimits,
    digester: &RequestDigester,
    resolver: &dyn SubjectResolver,
) -> Result<BatchOutcome, String> {
    // The defaults are serialized once, not once per item.
    let mut defaults = Map::new();
    let fields = [
        ("subject", batch.subject.as_ref().map(serde_json::to_value)),
        ("action", batch.action.as_ref().map(serde_json::to_value)),
        (
            "resource",
            batch.resource.as_ref().map(serde_json::to_value),
        ),
        (
            "context",
            batch.context.clone().map(|c| Ok(Value::Object(c))),
        ),
    ];
    for (key, value) in fields {
        if let Some(value) = value {
            defaults.insert(key.to_owned(), value.map_err(|e| e.to_string())?);
        }
    }
    let items = match &batch.evaluations {
        Some(items) if !items.is_empty() => items,
        _ => {
            let mut single = merged_item(&defaults, &Value::Object(Map::new()))?;
            resolver.resolve(&mut single).map_err(|r| r.message)?;
            let item =
                evaluate_one(bundle, &single, limits, digester).map_err(|e| e.to_string())?;
            return Ok(BatchOutcome::Single(Box::new(item)));
        }
    };
    if items.len() > limits.max_items {
        return Err(format!(
            "a batch may hold at most {} evaluations; this one has {}",
            limits.max_items,
            items.len()
        ));
    }
    // Every item that inherits the defaults processes them again: bound that
    // work, or a small body with large defaults costs gigabytes.
    let inherited = serde_json::to_vec(&defaults).map(|v| v.len()).unwrap_or(0);
    if items.len().saturating_mul(inherited) > limits.max_work_bytes {
        return Err(format!(
            "a batch may process at most {} bytes of inherited defaults; this one has {} evaluations inheriting {} bytes each (send smaller defaults or fewer evaluations)",
            limits.max_work_bytes,
            items.len(),
            inherited
        ));
    }
    let semantic = batch
        .options
        .as_ref()
        .map(|o| o.evaluations_semantic)
        .unwrap_or_default();
    let mut out = Vec::with_capacity(items.len());
    for (index, raw) in items.iter().enumerate() {
        let merged = merged_item(&defaults, raw)
            .map_err(ItemRefusal::bad_request)
            .and_then(|mut request| {
                resolver.resolve(&mut request)?;
                Ok(request)
            });
        let item = match merged {
            Ok(request) => match evaluate_one(bundle, &request, limits, digester) {
                Ok(item) => item,
                Err(e) => item_error(
                    index,
                    ItemRefusal::bad_request(e.to_string()),
                    raw,
                    digester,
                ),
            },
            Err(refusal) => item_error(index, refusal, raw, digester),
        };
        let allowed = item.decision.is_allow();
        out.push(item);
        match semantic {
            EvaluationsSemantic::DenyOnFirstDeny if !allowed => break,
            EvaluationsSemantic::PermitOnFirstPermit if allowed => break,
            _ => {}
        }
    }
    Ok(BatchOutcome::Items(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mandate_policy::{PolicySources, SourceFile};

    fn bundle() -> PolicyBundle {
        PolicyBundle::from_sources(&PolicySources {
            policies: vec![SourceFile {
                name: "p.cedar".into(),
                text: r#"@id("read") permit(principal, action == Action::"read", resource);"#
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

    fn digester() -> RequestDigester {
        RequestDigester::new(b"test key")
    }

    fn batch(v: Value) -> EvaluationsRequest {
        serde_json::from_value(v).unwrap()
    }

    fn decisions(outcome: BatchOutcome) -> Vec<bool> {
        match outcome {
            BatchOutcome::Items(items) => items.iter().map(|i| i.response.decision).collect(),
            BatchOutcome::Single(_) => panic!("expected items"),
        }
    }

    #[test]
    fn the_task_of_an_agent_subject_is_recorded_and_no_other() {
        let request = |kind: &str| -> EvaluationRequest {
            serde_json::from_value(json!({
                "subject": {"type": kind, "id": "spiffe://mandate.local/agent/a"},
                "action": {"name": "read"},
                "resource": {"type": "doc", "id": "d"},
                "context": {"task": {"id": "task-0123"}}
            }))
            .unwrap()
        };
        let detail = |kind: &str| {
            evaluate_one(&bundle(), &request(kind), LIMITS, &digester())
                .unwrap()
                .audit_event(1, "r")
                .detail
        };
        assert_eq!(detail("Agent")["task_id"], "task-0123");
        assert_eq!(detail("Agent")["reason"], "permitted");
        // Only an Agent subject's context.task comes from a verified token.
        assert!(detail("user").get("task_id").is_none());
    }

    fn three() -> Value {
        json!({
            "subject": {"type": "user", "id": "a"},
            "resource": {"type": "doc", "id": "d"},
            "evaluations": [
                {"action": {"name": "read"}},
                {"action": {"name": "write"}},
                {"action": {"name": "read"}}
            ]
        })
    }

    #[test]
    fn execute_all_answers_every_item_in_order() {
        let out = evaluate_batch(&bundle(), &batch(three()), LIMITS, &digester()).unwrap();
        assert_eq!(decisions(out), [true, false, true]);
    }

    #[test]
    fn deny_on_first_deny_stops_after_the_deny() {
        let mut v = three();
        v["options"] = json!({"evaluations_semantic": "deny_on_first_deny"});
        assert_eq!(
            decisions(evaluate_batch(&bundle(), &batch(v), LIMITS, &digester()).unwrap()),
            [true, false]
        );
    }

    #[test]
    fn permit_on_first_permit_stops_after_the_permit() {
        let mut v = three();
        v["options"] = json!({"evaluations_semantic": "permit_on_first_permit"});
        assert_eq!(
            decisions(evaluate_batch(&bundle(), &batch(v), LIMITS, &digester()).unwrap()),
            [true]
        );
    }

    #[test]
    fn a_bad_item_is_denied_alone() {
        let v = json!({
            "subject": {"type": "user", "id": "a"},
            "evaluations": [
                {"action": {"name": "read"}, "resource": {"type": "doc", "id": "d"}},
                {"action": {"name": "read"}},
                {"action": {"name": 7}, "resource": {"type": "doc", "id": "d"}},
                "not an object",
                {"action": {"name": "read"}, "resource": {"type": "doc", "id": "d", "properties": {"x": 1.5}}}
            ]
        });
        let BatchOutcome::Items(items) =
            evaluate_batch(&bundle(), &batch(v), LIMITS, &digester()).unwrap()
        else {
            panic!()
        };
        let got: Vec<bool> = items.iter().map(|i| i.response.decision).collect();
        assert_eq!(got, [true, false, false, false, false]);
        let msg =
            |i: usize| items[i].response.context.as_ref().unwrap()["error"]["message"].clone();
        assert_eq!(
            msg(1),
            "resource is missing (in the item and in the batch defaults)"
        );
        assert!(
            msg(2).as_str().unwrap().contains("invalid type"),
            "{}",
            msg(2)
        );
        assert_eq!(msg(3), "each evaluation must be a JSON object");
        assert!(
            msg(4).as_str().unwrap().contains("resource.properties.x"),
            "{}",
            msg(4)
        );
    }

    #[test]
    fn an_oversized_batch_is_refused_whole() {
        let items: Vec<Value> = (0..11)
            .map(|_| json!({"action": {"name": "read"}}))
            .collect();
        let v = json!({"subject": {"type": "u", "id": "a"}, "resource": {"type": "d", "id": "d"}, "evaluations": items});
        let err = evaluate_batch(&bundle(), &batch(v), LIMITS, &digester()).unwrap_err();
        assert_eq!(
            err,
            "a batch may hold at most 10 evaluations; this one has 11"
        );
    }

    #[test]
    fn without_items_the_batch_is_one_evaluation() {
        let v = json!({"subject": {"type": "u", "id": "a"}, "action": {"name": "read"}, "resource": {"type": "d", "id": "d"}});
        let out = evaluate_batch(&bundle(), &batch(v), LIMITS, &digester()).unwrap();
        assert!(matches!(out, BatchOutcome::Single(item) if item.response.decision));
        let incomplete = json!({"subject": {"type": "u", "id": "a"}});
        assert!(evaluate_batch(&bundle(), &batch(incomplete), LIMITS, &digester()).is_err());
    }

    #[test]
    fn denies_explain_themselves_only_when_asked_and_audit_events_hold_no_request_data() {
        let req: EvaluationRequest = serde_json::from_value(json!({
            "subject": {"type": "user", "id": "a", "properties": {"ssn": "123-45-6789"}},
            "action": {"name": "write"},
            "resource": {"type": "doc", "id": "d"}
        }))
        .unwrap();
        let item = evaluate_one(&bundle(), &req, LIMITS, &digester()).unwrap();
        assert_eq!(
            item.response.context.as_ref().unwrap()["reason_admin"]["en"],
            "no permit policy matched (default deny)"
        );
        let quiet = evaluate_one(
            &bundle(),
            &req,
            BatchLimits {
                explain: false,
                ..LIMITS
            },
            &digester(),
        )
        .unwrap();
        assert_eq!(quiet.response.context, None);
        let event = item.audit_event(1, "r1");
        assert_eq!(event.outcome, "deny");
        assert_eq!(event.subject, r#"user::"a""#);
        assert!(
            !serde_json::to_string(&event)
                .unwrap()
                .contains("123-45-6789")
        );
        assert_eq!(event.request_digest.len(), 64);
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;
    use mandate_policy::{PolicySources, SourceFile};

    #[test]
    fn large_inherited_defaults_times_many_items_are_refused_before_any_work() {
        let bundle = PolicyBundle::from_sources(&PolicySources {
            policies: vec![SourceFile {
                name: "p.cedar".into(),
                text: "permit(principal, action, resource);".into(),
            }],
            ..PolicySources::default()
        })
        .unwrap();
        let items: Vec<Value> = (0..100).map(|_| json!({})).collect();
        let batch: EvaluationsRequest = serde_json::from_value(json!({
            "subject": {"type": "u", "id": "a"}, "action": {"name": "x"}, "resource": {"type": "d", "id": "d"},
            "context": {"blob": "A".repeat(100_000)},
            "evaluations": items
        }))
        .unwrap();
        let limits = BatchLimits {
            max_items: 1000,
            explain: true,
            max_work_bytes: 1 << 20,
        };
        let err = evaluate_batch(&bundle, &batch, limits, &RequestDigester::new(b"k")).unwrap_err();
        assert!(
            err.starts_with("a batch may process at most 1048576 bytes"),
            "{err}"
        );
    }

    #[test]
    fn audit_events_never_quote_request_values() {
        let schema =
            "entity user; entity doc; action read appliesTo { principal: user, resource: doc };";
        let bundle = PolicyBundle::from_sources(&PolicySources {
            policies: vec![SourceFile {
                name: "p.cedar".into(),
                text: "permit(principal, action, resource);".into(),
            }],
            schemas: vec![SourceFile {
                name: "s.cedarschema".into(),
                text: schema.into(),
            }],
            ..PolicySources::default()
        })
        .unwrap();
        let request: EvaluationRequest = serde_json::from_value(json!({
            "subject": {"type": "user", "id": "a"}, "action": {"name": "read"}, "resource": {"type": "doc", "id": "d"},
            "context": {"api_token": "sk-live-SECRET"}
        }))
        .unwrap();
        let limits = BatchLimits {
            max_items: 1,
            explain: true,
            max_work_bytes: 1 << 20,
        };
        let item = evaluate_one(&bundle, &request, limits, &RequestDigester::new(b"k")).unwrap();
        assert!(!item.decision.is_allow());
        let event = serde_json::to_string(&item.audit_event(1, "r")).unwrap();
        assert!(!event.contains("sk-live-SECRET"), "{event}");
        assert!(event.contains("invalid_request"), "{event}");
    }
}
