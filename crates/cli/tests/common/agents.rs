//! Agents and task tokens over the wire: registering agents through the admin
//! API, mTLS clients presenting their SVIDs, token requests, DPoP proofs,
//! AuthZEN calls with a task token as the subject.

use std::path::{Path, PathBuf};
use std::process::Output;

use mandate_tokens::DpopKey;
use serde_json::{Value, json};

use super::{Node, TestStore, repo_root};

/// RFC 8693 token exchange.
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// A task token as subject_token (delegation).
pub const TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
/// A JWT-SVID as subject_token or actor_token.
pub const TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

/// The shipped policy directory of the agents quickstart: the baseline pack
/// (`baseline/`) and the example grants (`examples/`).
pub fn agent_policies() -> PathBuf {
    repo_root().join("policies")
}

/// Mandate's Cedar schema, for tests that write their own policies beside it.
pub fn mandate_schema() -> PathBuf {
    agent_policies().join("baseline/mandate.cedarschema")
}

/// Grants the gateway tests share: anyone may hold the `reports` data domain
/// and the `read` capability, and a call is allowed for the tools its task holds.
pub const READ_REPORTS_CALL_WITHIN_TASK: &str = r#"
@id("anyone-holds-reports")
permit (principal is Agent, action == Action::"hold_data_domain", resource == DataDomain::"reports");

@id("read-only")
permit (principal is Agent, action == Action::"hold_capability", resource == Capability::"read");

@id("call-within-task")
permit (principal is Agent, action == Action::"call", resource is Tool)
when { context.task.tools.contains(resource) };
"#;

/// Writes `<dir>/policies`: Mandate's schema, and the `policies` one after
/// the other in `<name>.cedar`. Returns the directory.
pub fn schema_and_policies(dir: &Path, name: &str, policies: &[&str]) -> PathBuf {
    let dir = dir.join("policies");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(mandate_schema(), dir.join("mandate.cedarschema")).unwrap();
    std::fs::write(dir.join(format!("{name}.cedar")), policies.concat()).unwrap();
    dir
}

/// Copies the shipped policy directory, subdirectories included, into `dest`
/// (so that a test can change or add files).
pub fn copy_agent_policies(dest: &Path) {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
    copy(&agent_policies(), dest);
}

/// The SPIRE-shaped fixtures (made with openssl, not by Mandate).
pub fn spire_fixtures() -> PathBuf {
    repo_root().join("crates/identity/tests/fixtures/spire")
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Runs `mandate ARGS` with extra environment variables.
pub fn mandate_env(args: &[&str], envs: &[(&str, &str)]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("MANDATE_SERVER")
        .env_remove("MANDATE_ADMIN_TOKEN")
        .env_remove("MANDATE_TLS_SERVER")
        .envs(envs.iter().copied())
        .output()
        .expect("mandate runs")
}

/// Asserts that a `mandate` run succeeded and returns its stdout.
pub fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A node serving the agents example, with its store and admin credential.
pub struct AgentNode {
    pub node: Node,
    pub store: TestStore,
    pub admin: String,
    /// A plain HTTP client (no TLS identity).
    pub http: reqwest::Client,
}

impl AgentNode {
    /// Starts a node on `store` with the example agent policies.
    pub fn start(store: TestStore, extra: &[&str], envs: &[(&str, &str)]) -> AgentNode {
        AgentNode::start_with_policies(store, &agent_policies(), extra, envs)
    }

    /// Starts a node on `store` with the policies in `policies`.
    pub fn start_with_policies(
        store: TestStore,
        policies: &Path,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> AgentNode {
        let node = Node::start_with_env(
            &store.dir.path().join("data"),
            &store.url,
            policies,
            extra,
            envs,
        );
        let admin = node.admin_token();
        AgentNode {
            node,
            store,
            admin,
            http: reqwest::Client::new(),
        }
    }

    /// Starts a node on `store` with the policies in `policies` and the config
    /// file `config` (MCP upstreams, REST routes, ...).
    pub fn start_with_config(store: TestStore, config: &Path, policies: &Path) -> AgentNode {
        let config = config.to_str().expect("a UTF-8 config path");
        AgentNode::start_with_policies(store, policies, &["--config", config], &[])
    }

    /// A node on a fresh SQLite store.
    pub async fn sqlite() -> AgentNode {
        AgentNode::start(TestStore::new(super::Backend::Sqlite).await, &[], &[])
    }

    pub fn base(&self) -> &str {
        &self.node.base
    }

    pub fn tls(&self) -> &str {
        self.node
            .tls_base
            .as_deref()
            .expect("the node has a TLS listener")
    }

    pub fn data_dir(&self) -> &Path {
        &self.node.data_dir
    }

    /// The node's built-in CA certificate (PEM).
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("ca/ca.pem")).unwrap()
    }

    /// The node's built-in CA, loaded from its data directory.
    pub fn ca(&self) -> mandate_identity::BuiltinCa {
        let key = std::fs::read_to_string(self.data_dir().join("ca/ca.key")).unwrap();
        mandate_identity::BuiltinCa::from_pem(&self.ca_pem(), &key).unwrap()
    }

    /// The environment for `mandate agent ...` / `mandate keys ...`.
    pub fn admin_env(&self) -> [(&'static str, &str); 2] {
        [
            ("MANDATE_SERVER", self.base()),
            ("MANDATE_ADMIN_TOKEN", self.admin.as_str()),
        ]
    }

    /// Runs an admin API call with the admin credential.
    pub async fn admin_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, self.node.url(path))
            .bearer_auth(&self.admin);
        if let Some(body) = body {
            request = request.json(body);
        }
        answer(request.send().await.expect("admin API answers")).await
    }

    /// Creates secret `name` with `value` through the admin API (201).
    pub async fn put_secret(&self, name: &str, value: &str) {
        let (status, body) = self
            .admin_call(
                reqwest::Method::PUT,
                &format!("/admin/v1/secrets/{name}"),
                Some(&json!({"value": value})),
            )
            .await;
        assert_eq!(status, 201, "creating secret {name}: {body}");
    }

    /// The admin API's view of task `task_id`: status and body.
    pub async fn task_view(&self, task_id: &str) -> (u16, Value) {
        self.admin_call(
            reqwest::Method::GET,
            &format!("/admin/v1/tasks/{task_id}"),
            None,
        )
        .await
    }

    /// Registers a `dev` agent with a fresh key and returns it with its SVID.
    pub async fn agent(&self, name: &str) -> Agent {
        self.agent_in(name, "dev").await
    }

    /// Registers an agent in environment `env` with a fresh key.
    pub async fn agent_in(&self, name: &str, env: &str) -> Agent {
        let (private, public) = mandate_identity::generate_agent_key().unwrap();
        let (status, body) = self
            .admin_call(
                reqwest::Method::POST,
                "/admin/v1/agents",
                Some(&json!({
                    "name": name,
                    "owner": format!("{name}@example.com"),
                    "env": env,
                    "function": format!("test agent {name}"),
                    "public_key_pem": public,
                })),
            )
            .await;
        assert_eq!(status, 201, "creating agent {name}: {body}");
        Agent {
            name: name.to_owned(),
            spiffe_id: body["agent"]["spiffe_id"].as_str().unwrap().to_owned(),
            cert_pem: body["svid"]["certificate_pem"].as_str().unwrap().to_owned(),
            key_pem: private,
            bundle_pem: body["svid"]["bundle_pem"].as_str().unwrap().to_owned(),
        }
    }

    /// A client of the TLS listener that trusts the node's CA and presents no certificate.
    pub fn anonymous_tls(&self) -> reqwest::Client {
        tls_client(&self.ca_pem(), None)
    }

    /// Asks for a root task token as `agent`, over mTLS with its SVID and
    /// with a DPoP proof made with its SVID key.
    pub async fn root_token(&self, agent: &Agent, details: &Value) -> Token {
        let (status, body) = self
            .token_request(&agent.mtls(), &[], Some(&agent.dpop_key()), details)
            .await;
        assert_eq!(status, 200, "token for {}: {body}", agent.name);
        Token::from_answer(&body, agent.dpop_key())
    }

    /// Asks for a child of `parent` as `sub_agent` (mTLS + its own DPoP proof).
    pub async fn delegate(
        &self,
        parent: &Token,
        sub_agent: &Agent,
        details: &Value,
    ) -> (u16, Value) {
        self.token_request(
            &sub_agent.mtls(),
            &[
                ("subject_token", parent.access_token.as_str()),
                ("subject_token_type", TYPE_ACCESS_TOKEN),
            ],
            Some(&sub_agent.dpop_key()),
            details,
        )
        .await
    }

    /// POSTs to `{tls}/oauth/token` with `client`: the token exchange grant,
    /// `details`, the `extra` parameters and, with `dpop`, a proof for it.
    pub async fn token_request(
        &self,
        client: &reqwest::Client,
        extra: &[(&str, &str)],
        dpop: Option<&DpopKey>,
        details: &Value,
    ) -> (u16, Value) {
        let url = format!("{}/oauth/token", self.tls());
        token_post(client, &url, extra, dpop, details).await
    }

    /// An AuthZEN `call` decision on `tool` with `token` as the subject and
    /// `proof` as its DPoP proof, at the plain listener.
    pub async fn call(&self, token: &str, proof: Option<&str>, tool: &str) -> (u16, Value) {
        evaluate(&self.http, self.base(), token, proof, tool).await
    }

    /// A `call` decision on `tool` with a fresh, correct proof made with `key`.
    pub async fn call_with(&self, token: &Token, tool: &str) -> (u16, Value) {
        let proof = token.proof_for(&format!("{}/access/v1/evaluation", self.base()));
        self.call(&token.access_token, Some(&proof), tool).await
    }

    /// Revokes `token` with the admin credential.
    pub async fn admin_revoke(&self, token: &str) -> u16 {
        self.http
            .post(self.node.url("/oauth/revoke"))
            .bearer_auth(&self.admin)
            .form(&[("token", token)])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// RFC 7662 introspection with the admin credential.
    pub async fn introspect(&self, token: &str) -> Value {
        let response = self
            .http
            .post(self.node.url("/oauth/introspect"))
            .bearer_auth(&self.admin)
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Completes the task of `token` as its holder.
    pub async fn complete(&self, token: &Token) -> (u16, Value) {
        let url = self.node.url(&format!("/tasks/{}/complete", token.task_id));
        let proof = token.proof_for(&url);
        let response = self
            .http
            .post(&url)
            .header("Authorization", format!("DPoP {}", token.access_token))
            .header("DPoP", proof)
            .send()
            .await
            .unwrap();
        answer(response).await
    }

    /// Stops the node and drops its store.
    pub async fn finish(self) {
        self.finish_keep(|| {}).await;
    }

    /// Stops the node, runs `check` on its stopped store, then drops the store.
    pub async fn finish_keep(self, check: impl FnOnce()) {
        let AgentNode {
            mut node, store, ..
        } = self;
        assert!(node.stop().success(), "{}", node.logs());
        check();
        store.cleanup().await;
    }
}

/// A registered agent and its SVID.
#[derive(Clone)]
pub struct Agent {
    pub name: String,
    pub spiffe_id: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub bundle_pem: String,
}

impl Agent {
    /// Its SVID key, as a DPoP key.
    pub fn dpop_key(&self) -> DpopKey {
        DpopKey::from_pkcs8_pem(&self.key_pem).unwrap()
    }

    /// A client of the TLS listener presenting this agent's SVID.
    pub fn mtls(&self) -> reqwest::Client {
        tls_client(&self.bundle_pem, Some((&self.cert_pem, &self.key_pem)))
    }
}

/// A task token as issued, with the key it is bound to.
pub struct Token {
    pub access_token: String,
    pub task_id: String,
    pub answer: Value,
    pub key: DpopKey,
}

impl Token {
    pub fn from_answer(answer: &Value, key: DpopKey) -> Token {
        Token {
            access_token: answer["access_token"].as_str().unwrap().to_owned(),
            task_id: answer["task_id"].as_str().unwrap().to_owned(),
            answer: answer.clone(),
            key,
        }
    }

    /// A fresh DPoP proof for `POST url` carrying this token's `ath`.
    pub fn proof_for(&self, url: &str) -> String {
        self.key.proof("POST", url, Some(&self.access_token), now())
    }

    /// The token's JOSE header.
    pub fn header(&self) -> Value {
        jwt_part(&self.access_token, 0)
    }

    /// The token's claims.
    pub fn claims(&self) -> Value {
        jwt_part(&self.access_token, 1)
    }
}

/// One `agent_task` entry.
pub fn task(tools: &[&str], capabilities: &[&str], ttl_seconds: u64) -> Value {
    json!([{
        "type": "agent_task",
        "purpose": "prepare the weekly report",
        "tools": tools,
        "data_domains": ["reports"],
        "ttl_seconds": ttl_seconds,
        "capabilities": capabilities,
    }])
}

/// An HTTPS client trusting `roots_pem`, presenting `identity` (cert, key) if given.
pub fn tls_client(roots_pem: &str, identity: Option<(&str, &str)>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder();
    for cert in reqwest::Certificate::from_pem_bundle(roots_pem.as_bytes()).unwrap() {
        builder = builder.add_root_certificate(cert);
    }
    if let Some((cert, key)) = identity {
        builder = builder.identity(
            reqwest::Identity::from_pem(format!("{cert}\n{key}").as_bytes())
                .expect("a usable client identity"),
        );
    }
    builder.build().unwrap()
}

/// POSTs a token exchange to `url`.
pub async fn token_post(
    client: &reqwest::Client,
    url: &str,
    extra: &[(&str, &str)],
    dpop: Option<&DpopKey>,
    details: &Value,
) -> (u16, Value) {
    let details = details.to_string();
    let mut form: Vec<(&str, &str)> = vec![
        ("grant_type", TOKEN_EXCHANGE),
        ("authorization_details", details.as_str()),
    ];
    form.extend_from_slice(extra);
    let mut request = client.post(url).form(&form);
    if let Some(key) = dpop {
        request = request.header("DPoP", key.proof("POST", url, None, now()));
    }
    answer(request.send().await.expect("the token endpoint answers")).await
}

/// An AuthZEN `call` of `tool` at `{base}/access/v1/evaluation` with `token` as the subject.
pub async fn evaluate(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    proof: Option<&str>,
    tool: &str,
) -> (u16, Value) {
    let mut subject = json!({"type": "task_token", "id": token});
    if let Some(proof) = proof {
        subject["properties"] = json!({"dpop_proof": proof});
    }
    let body = json!({
        "subject": subject,
        "action": {"name": "call"},
        "resource": {"type": "Tool", "id": tool},
    });
    let response = client
        .post(format!("{base}/access/v1/evaluation"))
        .json(&body)
        .send()
        .await
        .expect("the PDP answers");
    answer(response).await
}

/// (status, body as JSON, or as a string if it is not JSON).
pub async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// Asserts an OAuth error answer: status, `error`, and `needle` in `error_description`.
#[track_caller]
pub fn assert_oauth_error(got: &(u16, Value), status: u16, error: &str, needle: &str) {
    let (s, body) = got;
    assert_eq!(
        (*s, body["error"].as_str()),
        (status, Some(error)),
        "expected {status} {error} ({needle:?}), got {s}: {body}"
    );
    let description = body["error_description"].as_str().unwrap_or_default();
    assert!(
        description.contains(needle),
        "error_description {description:?} does not mention {needle:?}"
    );
}

/// Asserts an error answer of the admin API or the PDP: status, `error`, and
/// `needle` in `message`.
#[track_caller]
pub fn assert_api_error(got: &(u16, Value), status: u16, error: &str, needle: &str) {
    let (s, body) = got;
    assert_eq!(
        (*s, body["error"].as_str()),
        (status, Some(error)),
        "expected {status} {error} ({needle:?}), got {s}: {body}"
    );
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(needle),
        "message {message:?} does not mention {needle:?}: {body}"
    );
}

/// Asserts that the PDP refused a task token: 401 invalid_token, with
/// `needle` in the message.
#[track_caller]
pub fn assert_token_refused(got: &(u16, Value), needle: &str) {
    let (s, body) = got;
    assert_eq!(
        (*s, body["error"].as_str()),
        (401, Some("invalid_token")),
        "expected the token to be refused ({needle:?}), got {s}: {body}"
    );
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("task token refused: ") && message.contains(needle),
        "message {message:?} does not say the task token was refused for {needle:?}"
    );
}

/// Asserts that the PDP allowed the call.
#[track_caller]
pub fn assert_allowed(got: &(u16, Value)) {
    assert_eq!(
        (got.0, &got.1["decision"]),
        (200, &Value::Bool(true)),
        "expected the call to be allowed, got {}: {}",
        got.0,
        got.1
    );
}

/// Decodes part `index` (0 header, 1 claims) of a compact JWS.
pub fn jwt_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).expect("a compact JWS");
    serde_json::from_slice(&b64url_decode(part)).expect("JSON in the JWS")
}

fn b64url_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'-' => 62,
            b'_' => 63,
            _ => panic!("not base64url: {c}"),
        }
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes() {
        acc = (acc << 6) | value(c);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Base64url without padding.
pub fn b64url_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    let (mut acc, mut bits) = (0u32, 0);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(char::from(ALPHABET[((acc >> bits) & 63) as usize]));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (6 - bits)) & 63) as usize]));
    }
    out
}

/// `token` with its claims replaced by `claims`, the header and signature kept.
pub fn with_claims(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a compact JWS");
    format!(
        "{}.{}.{}",
        parts[0],
        b64url_encode(claims.to_string().as_bytes()),
        parts[2]
    )
}
