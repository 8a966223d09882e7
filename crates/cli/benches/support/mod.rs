//! What the benches share: the `mandate serve` under test, the agent they
//! register with it, the task-token request, DPoP proofs signed ahead of the
//! timing, the timed request and the tally of what the requests saw; and, in
//! [`load`], the load driver of the gateway and proxy benches.
#![allow(unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use serde_json::{Value, json};

pub mod load;

pub const WARM_UP: Duration = Duration::from_secs(2);

/// Config lines putting the per-agent rate and concurrency limits out of the
/// way: one agent makes every call of a bench. They are still checked.
#[allow(dead_code)] // used by the gateway and proxy benches
pub const LIMITS: &str = "agent_rate_per_second = 1000000000\nagent_rate_burst = 1000000000\n\
     agent_max_concurrent_calls = 1000000\n\n";
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

pub fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, not {v:?}")),
        Err(_) => default,
    }
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// The node.

/// The `mandate serve` under test.
pub struct Node {
    child: Option<Child>,
    #[allow(dead_code)] // read by the gateway bench only
    pub pid: u32,
    pub http_base: String,
    pub https_base: String,
    stderr_log: PathBuf,
    /// How long to wait for it to start (three times this) and to stop.
    patience: Duration,
}

impl Node {
    /// Starts `mandate serve` on loopback ports, with a SQLite store in `dir`,
    /// the shipped `policies/` and `config` (if any), and waits for both
    /// listening lines.
    pub fn start(dir: &Path, config: Option<&Path>) -> Node {
        let repo = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
        let data_dir = dir.join("data");
        let stderr_log = dir.join("node-stderr.log");
        let stderr = std::fs::File::create(&stderr_log).expect("stderr log");
        // `MANDATE_BENCH_NODE_WRAPPER` runs the node under a profiler, e.g.
        // `valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p`.
        let wrapper = std::env::var("MANDATE_BENCH_NODE_WRAPPER").unwrap_or_default();
        let mut words = wrapper.split_whitespace();
        let mut command = match words.next() {
            Some(program) => {
                let mut c = Command::new(program);
                c.args(words).arg(env!("CARGO_BIN_EXE_mandate"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_mandate")),
        };
        command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--policy-dir")
            .arg(repo.join("policies"));
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let mut child = command
            .args(["--log-level", "warn"])
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("mandate starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the two listening lines, then drains stdout to the end so the
        // node never writes into a closed pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(base) = line.trim().strip_prefix("mandate listening on ") {
                    let _ = tx.send(base.to_owned());
                }
            }
        });
        let mut node = Node {
            pid: child.id(),
            child: Some(child),
            http_base: String::new(),
            https_base: String::new(),
            stderr_log,
            patience: Duration::from_secs(if wrapper.is_empty() { 20 } else { 300 }),
        };
        // A node under a profiler starts many times slower.
        let deadline = Instant::now() + node.patience * 3;
        while node.http_base.is_empty() || node.https_base.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(base) if base.starts_with("https://") => node.https_base = base,
                Ok(base) => node.http_base = base,
                Err(_) => panic!(
                    "mandate did not print both listening lines:\n{}",
                    node.stderr()
                ),
            }
        }
        node
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// The admin credential the node printed on stderr at its first start.
    pub fn admin_credential(&self) -> String {
        let logs = self.stderr();
        let start = logs
            .find("mandate_admin_")
            .unwrap_or_else(|| panic!("no admin credential on stderr:\n{logs}"));
        logs[start..]
            .split(|c: char| c.is_whitespace() || c == '"')
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    /// SIGTERM, then waits up to 20 s (300 s under a profiler) for the node
    /// to exit (SIGKILL after).
    pub fn stop(&mut self) -> String {
        let Some(mut child) = self.child.take() else {
            return "not running".to_owned();
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + self.patience;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return format!("exited after SIGTERM: {status}"),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return format!(
                        "did not exit within {} s of SIGTERM: killed",
                        self.patience.as_secs()
                    );
                }
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `bench` against `node` on a fresh multi-thread runtime, then stops the
/// node with SIGTERM and says how it went. The exit status is whether the run
/// was valid; a panic is passed on after the node's stderr is printed.
pub fn run_then_stop(mut node: Node, bench: impl AsyncFnOnce(&Node) -> bool) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(bench(&node))
    }));
    drop(runtime);
    let stopped = node.stop();
    println!("node {stopped}");
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(panic) => {
            eprintln!("node stderr:\n{}", node.stderr());
            std::panic::resume_unwind(panic)
        }
    }
}

/// Serves `app` on a loopback port from its own 2-thread runtime (so the
/// upstream never waits on the client's runtime); returns the runtime and
/// the base URL.
#[allow(dead_code)] // used by the gateway and proxy benches
pub fn serve_upstream(app: axum::Router) -> (tokio::runtime::Runtime, String) {
    use axum::serve::ListenerExt;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("upstream")
        .enable_all()
        .build()
        .expect("upstream runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("upstream listens");
    let addr = listener.local_addr().expect("upstream address");
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    runtime.spawn(async move { axum::serve(listener, app).await });
    (runtime, format!("http://{addr}"))
}

// ---------------------------------------------------------------------------
// The agent.

/// Registers the agent `bench` and returns an mTLS client presenting its
/// SVID (built from `builder`), and its private key (PKCS#8 PEM).
pub async fn register_agent(
    node: &Node,
    builder: reqwest::ClientBuilder,
) -> (reqwest::Client, String) {
    let (private_pem, public_pem) = mandate_identity::generate_agent_key().expect("agent key");
    let admin = node.admin_credential();
    let response = reqwest::Client::new()
        .post(format!("{}/admin/v1/agents", node.http_base))
        .bearer_auth(&admin)
        .json(&json!({
            "name": "bench",
            "owner": "bench@example.com",
            "env": "dev",
            "function": "benchmark",
            "public_key_pem": public_pem,
        }))
        .send()
        .await
        .expect("admin API answers");
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 201, "agent registration failed: {body}");
    let cert_pem = body["svid"]["certificate_pem"]
        .as_str()
        .expect("svid.certificate_pem");
    let bundle_pem = body["svid"]["bundle_pem"]
        .as_str()
        .expect("svid.bundle_pem");
    let identity = reqwest::Identity::from_pem(format!("{cert_pem}\n{private_pem}").as_bytes())
        .expect("SVID + key make a TLS identity");
    let root = reqwest::Certificate::from_pem(bundle_pem.as_bytes()).expect("bundle");
    let client = builder
        .identity(identity)
        .add_root_certificate(root)
        .build()
        .expect("mTLS client");
    (client, private_pem)
}

/// The form of a token exchange (RFC 8693) asking for `details`
/// (`authorization_details`).
pub fn token_exchange_form(details: &Value) -> [(&'static str, String); 2] {
    [
        ("grant_type", TOKEN_EXCHANGE.to_owned()),
        ("authorization_details", details.to_string()),
    ]
}

// ---------------------------------------------------------------------------
// The requests.

/// `n` fresh proofs from `sign`, signed on all cores.
pub fn sign_on_all_cores(n: usize, sign: impl Fn() -> String + Sync) -> Vec<String> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = n.div_ceil(threads);
    let sign = &sign;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let count = per.min(n.saturating_sub(i * per));
                s.spawn(move || (0..count).map(|_| sign()).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("signing thread"))
            .collect()
    })
}

/// Pre-signed proofs handed out once each.
pub struct ProofBatch {
    proofs: Vec<String>,
    next: AtomicUsize,
}

impl ProofBatch {
    pub fn new(proofs: Vec<String>) -> ProofBatch {
        ProofBatch {
            proofs,
            next: AtomicUsize::new(0),
        }
    }

    pub fn take(&self) -> Option<String> {
        self.proofs
            .get(self.next.fetch_add(1, Ordering::Relaxed))
            .cloned()
    }
}

/// Sends `request` and reads the answer in full: its status, its body and the
/// time from send to last body byte, in microseconds. `Err` holds what went
/// wrong.
pub async fn send_timed(
    request: reqwest::RequestBuilder,
) -> Result<(reqwest::StatusCode, Bytes, u32), String> {
    let started = Instant::now();
    let response = request.send().await.map_err(|e| format!("send: {e}"))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| format!("body: {e}"))?;
    let took = started.elapsed();
    Ok((
        status,
        body,
        u32::try_from(took.as_micros()).unwrap_or(u32::MAX),
    ))
}

// ---------------------------------------------------------------------------
// The tally.

/// What the tasks of one or more stretches saw.
#[derive(Default)]
pub struct Tally {
    /// Latency of each successful request, in microseconds.
    pub latencies_us: Vec<u32>,
    pub failures: u64,
    pub first_failure: Option<String>,
    pub inline_proofs: u64,
    pub elapsed: Duration,
    /// The node's CPU ticks over the stretches (where a bench reads them).
    pub cpu_ticks: u64,
    /// Paced runs: how late the latest request started after its scheduled time.
    pub max_lag: Duration,
}

impl Tally {
    pub fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        self.failures += other.failures;
        self.first_failure = self.first_failure.take().or(other.first_failure);
        self.inline_proofs += other.inline_proofs;
        self.elapsed += other.elapsed;
        self.cpu_ticks += other.cpu_ticks;
        self.max_lag = self.max_lag.max(other.max_lag);
    }

    pub fn record(&mut self, outcome: Result<u32, String>) {
        match outcome {
            Ok(us) => self.latencies_us.push(us),
            Err(why) => {
                self.failures += 1;
                self.first_failure.get_or_insert(why);
            }
        }
    }

    pub fn rate(&self) -> f64 {
        self.latencies_us.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Nearest-rank percentile in milliseconds (`latencies_us` sorted).
    pub fn percentile_ms(&self, p: f64) -> f64 {
        let n = self.latencies_us.len();
        if n == 0 {
            return f64::NAN;
        }
        let rank = ((p * n as f64).ceil() as usize).clamp(1, n);
        f64::from(self.latencies_us[rank - 1]) / 1000.0
    }

    /// The node's CPU per successful request, in microseconds.
    #[allow(dead_code)] // used by the gateway bench only
    pub fn cpu_us_per_call(&self, ticks_per_second: f64) -> f64 {
        self.cpu_ticks as f64 / ticks_per_second * 1e6 / (self.latencies_us.len().max(1) as f64)
    }
}
