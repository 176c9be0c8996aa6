//! Load benchmark of the service on loopback: `cargo bench --bench load`.
//!
//! Without `--bench` among its arguments (that is, under `cargo test --all-targets`) it prints
//! one line and exits at once. Under `cargo bench --bench load`:
//!
//! 1. the process (the *supervisor*) starts its own Firestore emulator on a free port of
//!    127.0.0.1 (log in `target/tmp/load-bench/emulator.log`) and re-runs itself as a child
//!    with `FIRESTORE_EMULATOR_HOST` in its environment: the crate forbids `unsafe`, so the
//!    variable cannot be set in-process (`std::env::set_var` is unsafe in edition 2024), and the
//!    supervisor stops the emulator whatever happens to the child (panic included);
//! 2. the child spawns the release binary `target/release/funnelflow` (built by `cargo bench`)
//!    against that emulator, with a rate limit high enough not to interfere, seeds a user with
//!    1,050 analyses through the API, and drives closed-loop load (N keep-alive connections,
//!    each sending its next request as soon as the previous answer arrived) for a fixed time
//!    after a warm-up, recording every latency;
//! 3. it compares the service with the emulator driven directly through the `firestore` crate
//!    (same call shape, same concurrency, same document or query), measures page 50 against the
//!    shallow pages, cold start and idle RSS of the binary on the embedded store, and prints a
//!    table of absolute figures, ratios and each quality bar of DESIGN.md with PASS/FAIL.
//!
//! 4. a hostile sweep: a free user with 10 analyses of ~195 KiB sends 10,000 requests, each a
//!    filter combination or trends `days` value never sent before, to the release binary on the
//!    embedded store; its RSS afterwards must stay under idle + `FUNNELFLOW_CACHE_MB` + a margin.
//!    `LOAD_BENCH_ONLY=hostile` runs only this scenario.
//!
//! 5. GDPR export and erasure (`load/gdpr.rs`): accounts of 1,000 and 10,000 analyses seeded
//!    directly into the emulator; the service's RSS rise while exporting (fast and slow
//!    reader), the cost per exported analysis of the small account against the large one,
//!    and `DELETE /v1/me` of 10,000 analyses against the same deletes through the crate.
//!    `LOAD_BENCH_ONLY=gdpr` runs only these (the emulator is still started).
//! 6. the invalidation feed (`load/feed.rs`): its cost on writes and the propagation time between
//!    two instances. Only with `LOAD_BENCH_ONLY=feed`, which runs it alone.
//!
//! Every loop is bounded in count and time; all traffic goes to 127.0.0.1.
//! `LOAD_BENCH_SECS` (measured seconds per scenario, default 5) and `LOAD_BENCH_CONC`
//! (connections, default 32) tune it. The results also go to `target/tmp/load-bench/results.md`.
//! `LOAD_BENCH_KEEP_STDOUT=1` keeps each service's request and domain logs (stdout) next to its
//! stderr log, e.g. the erasure's phase timings (`user erased`).

use std::fmt::Write as _;
use std::fs::File;
use std::future::Future;
use std::io::{Read, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use firestore::gcloud_sdk::google::firestore::v1::value::ValueType;
use firestore::gcloud_sdk::google::firestore::v1::{Document, Value as ProtoValue};
use firestore::{
    FirestoreDb, FirestoreDbOptions, FirestoreQueryCursor, FirestoreQueryDirection, FirestoreQueryOrder,
    FirestoreValue,
};
use funnelflow::store::{DocPath, Fields, Store, Write, value};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[path = "load/feed.rs"]
mod feed;
#[path = "load/gdpr.rs"]
mod gdpr;

/// Set in the child's environment by the supervisor.
const CHILD_MARK: &str = "FUNNELFLOW_LOAD_BENCH_CHILD";
const EMULATOR_PID_VAR: &str = "FUNNELFLOW_LOAD_BENCH_EMULATOR_PID";
const BIN: &str = env!("CARGO_BIN_EXE_funnelflow");
const TARGET_TMP: &str = env!("CARGO_TARGET_TMPDIR");
const DEFAULT_JAR: &str =
    "/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar";
const EMULATOR_MAIN: &str = "com.google.cloud.datastore.emulator.firestore.CloudFirestore";

/// The whole child run is stopped past this.
const CHILD_DEADLINE: Duration = Duration::from_secs(20 * 60);
/// One request (HTTP or gRPC) longer than this counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Analyses seeded into the one history (page 50 of 20 needs ≥ 1,000).
const HISTORY_SIZE: usize = 1_050;
const PAGE: usize = 20;
const DEEP_PAGE: usize = 50;
const UID: &str = "bench-user";
/// Linux reports process CPU time in clock ticks of 1/100 s (USER_HZ).
const TICKS_PER_SEC: f64 = 100.0;

fn main() -> ExitCode {
    if !std::env::args().skip(1).any(|a| a == "--bench") {
        println!("load benchmark: run with `cargo bench --bench load`");
        return ExitCode::SUCCESS;
    }
    let result = if std::env::var_os(CHILD_MARK).is_some() {
        run_child()
    } else {
        supervise()
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("load benchmark failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn out_dir() -> PathBuf {
    PathBuf::from(TARGET_TMP).join("load-bench")
}

// ---------------------------------------------------------------------------------------------
// Processes

/// A child process killed (and reaped) when dropped, also while unwinding from a panic.
struct Proc {
    child: Child,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A blocking `GET path` on 127.0.0.1:port; the status, if any answer came.
fn blocking_status(port: u16, path: &str) -> Option<u16> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

fn hostile_only() -> bool {
    std::env::var("LOAD_BENCH_ONLY").as_deref() == Ok("hostile")
}

/// Starts the emulator, runs the benchmark in a child process that sees it, stops it.
fn supervise() -> Result<ExitCode> {
    let out = out_dir();
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    if hostile_only() {
        // The embedded store only: no emulator needed.
        return run_child();
    }
    let jar = std::env::var("FIRESTORE_EMULATOR_JAR")
        .ok()
        .filter(|j| !j.is_empty())
        .unwrap_or_else(|| DEFAULT_JAR.to_owned());
    ensure!(
        Path::new(&jar).is_file(),
        "the Firestore emulator jar is missing at {jar} (set FIRESTORE_EMULATOR_JAR or run scripts/install-deps.sh)"
    );
    let log_path = out.join("emulator.log");
    let log = File::create(&log_path)?;
    let port = free_port()?;
    let started = Instant::now();
    let mut emulator = Proc {
        child: Command::new("java")
            .args([
                "-Duser.language=en",
                "-cp",
                &jar,
                EMULATOR_MAIN,
                "start",
                "--host=127.0.0.1",
            ])
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting the Firestore emulator (is java installed?)")?,
    };
    eprintln!(
        "load: starting the Firestore emulator on 127.0.0.1:{port} (log: {})",
        log_path.display()
    );
    loop {
        if blocking_status(port, "/") == Some(200) {
            break;
        }
        if emulator.exited() {
            bail!("the emulator exited during startup; see {}", log_path.display());
        }
        if started.elapsed() > Duration::from_secs(90) {
            bail!(
                "the emulator did not answer within 90 s; see {}",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "load: emulator ready after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let mut child = Proc {
        child: Command::new(std::env::current_exe()?)
            .args(std::env::args_os().skip(1))
            .env(CHILD_MARK, "1")
            .env("FIRESTORE_EMULATOR_HOST", format!("127.0.0.1:{port}"))
            .env(EMULATOR_PID_VAR, emulator.pid().to_string())
            .spawn()
            .context("re-running the benchmark as a child")?,
    };
    let deadline = Instant::now() + CHILD_DEADLINE;
    let status = loop {
        if let Some(status) = child.child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            eprintln!("load: the benchmark ran past {CHILD_DEADLINE:?}; stopping it");
            drop(child);
            drop(emulator);
            return Ok(ExitCode::FAILURE);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(emulator);
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn run_child() -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(bench())?;
    Ok(ExitCode::SUCCESS)
}

/// CPU time (ticks) of a process, from `/proc/<pid>/stat` (utime + stime).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// (busy, total) ticks of the whole machine, from `/proc/stat`.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4)?;
    Some((total - idle, total))
}

/// `VmRSS` and `VmHWM` in KiB.
fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// The processes whose CPU a scenario accounts for.
#[derive(Clone, Copy)]
struct Pids {
    bench: u32,
    service: Option<u32>,
    emulator: Option<u32>,
}

#[derive(Clone, Copy, Default)]
struct CpuSnap {
    bench: u64,
    service: u64,
    emulator: u64,
    busy: u64,
    total: u64,
}

fn snap(p: Pids) -> CpuSnap {
    let (busy, total) = machine_ticks().unwrap_or((0, 0));
    CpuSnap {
        bench: cpu_ticks(p.bench).unwrap_or(0),
        service: p.service.and_then(cpu_ticks).unwrap_or(0),
        emulator: p.emulator.and_then(cpu_ticks).unwrap_or(0),
        busy,
        total,
    }
}

/// Cores used over a window, per process, and the machine's busy share.
#[derive(Clone, Copy, Default)]
struct CpuUse {
    bench: f64,
    service: f64,
    emulator: f64,
    machine_busy: f64,
}

fn cpu_use(a: CpuSnap, b: CpuSnap, secs: f64) -> CpuUse {
    let cores = |x: u64, y: u64| (y.saturating_sub(x)) as f64 / TICKS_PER_SEC / secs;
    CpuUse {
        bench: cores(a.bench, b.bench),
        service: cores(a.service, b.service),
        emulator: cores(a.emulator, b.emulator),
        machine_busy: if b.total > a.total {
            (b.busy - a.busy) as f64 / (b.total - a.total) as f64
        } else {
            0.0
        },
    }
}

/// The release binary as a separate process against the emulator.
struct Service {
    proc: Proc,
    port: u16,
    addr: SocketAddr,
}

impl Service {
    async fn spawn(name: &'static str, env: &[(&str, String)], log_name: &str) -> Result<Self> {
        let port = free_port()?;
        let log = File::create(out_dir().join(log_name))?;
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PORT", port.to_string())
            .env("FUNNELFLOW_HOST", "127.0.0.1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        // Request logs are formatted as in production, then discarded, unless
        // `LOAD_BENCH_KEEP_STDOUT=1` keeps them in `<log>.stdout`.
        let stdout = match std::env::var("LOAD_BENCH_KEEP_STDOUT").as_deref() {
            Ok("1") => Stdio::from(File::create(out_dir().join(format!("{log_name}.stdout")))?),
            _ => Stdio::null(),
        };
        let mut proc = Proc {
            child: cmd
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {BIN}"))?,
        };
        let started = Instant::now();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        for path in ["/healthz", "/readyz"] {
            loop {
                if get_status(addr, path).await == Some(200) {
                    break;
                }
                if proc.exited() {
                    bail!("{name} exited during startup; see {log_name}");
                }
                if started.elapsed() > Duration::from_secs(60) {
                    bail!("{name}: {path} not 200 after 60 s");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(Self { proc, port, addr })
    }

    fn pid(&self) -> u32 {
        self.proc.pid()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

async fn get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut c = HttpConn::connect(addr).await.ok()?;
    tokio::time::timeout(Duration::from_secs(2), c.roundtrip(&get_request(path, None)))
        .await
        .ok()?
        .ok()
}

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 keep-alive client: the cheapest generator, so the service gets the CPU.

fn get_request(path: &str, token: Option<&str>) -> Vec<u8> {
    let mut r = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    if let Some(t) = token {
        let _ = write!(r, "Authorization: Bearer {t}\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

struct HttpConn {
    stream: TcpStream,
    buf: Vec<u8>,
    len: usize,
    /// Bytes of `buf` taken by the last response (dropped before the next request).
    consumed: usize,
    body_start: usize,
}

const MAX_RESPONSE: usize = 16 << 20;

impl HttpConn {
    async fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: vec![0; 64 << 10],
            len: 0,
            consumed: 0,
            body_start: 0,
        })
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        if self.len == self.buf.len() {
            if self.buf.len() >= MAX_RESPONSE {
                return Err(std::io::Error::other("response too large"));
            }
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = self.stream.read(&mut self.buf[self.len..]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.len += n;
        Ok(())
    }

    /// Sends `req`, reads the whole response, returns its status.
    async fn roundtrip(&mut self, req: &[u8]) -> std::io::Result<u16> {
        if self.consumed > 0 {
            self.buf.copy_within(self.consumed..self.len, 0);
            self.len -= self.consumed;
            self.consumed = 0;
        }
        self.stream.write_all(req).await?;
        let head_end = loop {
            if let Some(p) = self.buf[..self.len].windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            self.fill().await?;
        };
        let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_owned());
        let head = std::str::from_utf8(&self.buf[..head_end]).map_err(|_| bad("non-UTF-8 head"))?;
        let status: u16 = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no status"))?;
        let mut length = 0usize;
        for line in head.lines().skip(1) {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().map_err(|_| bad("bad content-length"))?;
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                return Err(bad("chunked responses are not supported by this client"));
            }
        }
        let total = head_end + length;
        while self.len < total {
            self.fill().await?;
        }
        self.body_start = head_end;
        self.consumed = total;
        Ok(status)
    }

    fn body(&self) -> &[u8] {
        &self.buf[self.body_start..self.consumed]
    }
}

// ---------------------------------------------------------------------------------------------
// Closed-loop load

trait Worker: Send + 'static {
    /// One operation; `Err` counts as an error.
    fn call(&mut self) -> impl Future<Output = Result<()>> + Send;
}

type RequestMaker = Arc<dyn Fn() -> Vec<u8> + Send + Sync>;

enum Requests {
    Fixed(Arc<Vec<u8>>),
    Each(RequestMaker),
}

/// One keep-alive connection sending GETs and expecting 200.
struct HttpWorker {
    addr: SocketAddr,
    conn: Option<HttpConn>,
    requests: Arc<Requests>,
}

impl HttpWorker {
    fn many(n: usize, addr: SocketAddr, requests: Requests) -> Vec<Self> {
        let requests = Arc::new(requests);
        (0..n)
            .map(|_| Self {
                addr,
                conn: None,
                requests: requests.clone(),
            })
            .collect()
    }
}

impl Worker for HttpWorker {
    async fn call(&mut self) -> Result<()> {
        if self.conn.is_none() {
            self.conn = Some(HttpConn::connect(self.addr).await?);
        }
        let generated;
        let req: &[u8] = match self.requests.as_ref() {
            Requests::Fixed(r) => r,
            Requests::Each(make) => {
                generated = make();
                &generated
            }
        };
        let Some(conn) = self.conn.as_mut() else {
            bail!("no connection");
        };
        match conn.roundtrip(req).await {
            Ok(200) => Ok(()),
            Ok(status) => {
                let body = String::from_utf8_lossy(conn.body())
                    .chars()
                    .take(300)
                    .collect::<String>();
                Err(anyhow!("HTTP {status}: {body}"))
            }
            Err(e) => {
                self.conn = None;
                Err(e.into())
            }
        }
    }
}

/// The same request through `reqwest` (a heavier, general-purpose client), for comparison.
struct ReqwestWorker {
    client: reqwest::Client,
    url: String,
    token: String,
}

impl Worker for ReqwestWorker {
    async fn call(&mut self) -> Result<()> {
        let res = self.client.get(&self.url).bearer_auth(&self.token).send().await?;
        let status = res.status();
        let _ = res.bytes().await?;
        ensure!(status == 200, "HTTP {status}");
        Ok(())
    }
}

/// A single-document get through the `firestore` crate, as the service's store does it.
struct RawGet {
    db: FirestoreDb,
    parent: String,
    id: String,
}

impl Worker for RawGet {
    async fn call(&mut self) -> Result<()> {
        let doc = self
            .db
            .fluent()
            .select()
            .by_id_in("analyses")
            .parent(&self.parent)
            .one(&self.id)
            .await?;
        ensure!(doc.is_some(), "the document is missing");
        Ok(())
    }
}

/// The history query through the `firestore` crate, as the service's store sends it.
#[derive(Clone)]
struct RawQuery {
    db: FirestoreDb,
    parent: String,
    after: Option<Vec<FirestoreValue>>,
    limit: u32,
}

fn history_order() -> Vec<FirestoreQueryOrder> {
    vec![
        FirestoreQueryOrder::new("metadata.createdAt".into(), FirestoreQueryDirection::Descending),
        FirestoreQueryOrder::new("__name__".into(), FirestoreQueryDirection::Descending),
    ]
}

impl RawQuery {
    async fn run(&self) -> Result<Vec<Document>> {
        let mut select = self
            .db
            .fluent()
            .select()
            .from("analyses")
            .parent(&self.parent)
            .order(|_| history_order())
            .limit(self.limit);
        if let Some(after) = &self.after {
            select = select.start_at(FirestoreQueryCursor::AfterValue(after.clone()));
        }
        Ok(select.query().await?)
    }
}

impl Worker for RawQuery {
    async fn call(&mut self) -> Result<()> {
        let docs = self.run().await?;
        ensure!(docs.len() == self.limit as usize, "got {} documents", docs.len());
        Ok(())
    }
}

#[derive(Default)]
struct Run {
    name: String,
    conc: usize,
    secs: f64,
    /// Latencies of the requests that succeeded in the window, in µs, sorted.
    lat_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
    cpu: CpuUse,
}

impl Run {
    fn rps(&self) -> f64 {
        self.lat_us.len() as f64 / self.secs
    }

    fn pct_ms(&self, q: f64) -> f64 {
        if self.lat_us.is_empty() {
            return f64::NAN;
        }
        let i = ((q * self.lat_us.len() as f64).ceil() as usize).clamp(1, self.lat_us.len()) - 1;
        f64::from(self.lat_us[i]) / 1000.0
    }

    /// Two runs of the same scenario as one (their windows and samples added); the name
    /// keeps each run's throughput.
    fn merge(mut self, other: Run) -> Run {
        self.name = format!(
            "{} (2 runs: {:.0} + {:.0} req/s)",
            self.name,
            self.rps(),
            other.rps()
        );
        let (a, b) = (self.secs, other.secs);
        let w = |x: f64, y: f64| (x * a + y * b) / (a + b);
        self.cpu = CpuUse {
            bench: w(self.cpu.bench, other.cpu.bench),
            service: w(self.cpu.service, other.cpu.service),
            emulator: w(self.cpu.emulator, other.cpu.emulator),
            machine_busy: w(self.cpu.machine_busy, other.cpu.machine_busy),
        };
        self.secs += other.secs;
        self.lat_us.extend(other.lat_us);
        self.lat_us.sort_unstable();
        self.errors += other.errors;
        self.first_error = self.first_error.or(other.first_error);
        self
    }
}

struct Timing {
    warmup: Duration,
    measure: Duration,
}

async fn run_load<W: Worker>(name: &str, workers: Vec<W>, t: &Timing, pids: Pids) -> Result<Run> {
    let conc = workers.len();
    let start = Instant::now();
    let warm_end = start + t.warmup;
    let end = warm_end + t.measure;
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|mut w| {
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(1 << 16);
                let mut errors = 0u64;
                let mut first_error = None;
                loop {
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    let r = tokio::time::timeout(REQUEST_TIMEOUT, w.call()).await;
                    let t1 = Instant::now();
                    let counted = t1 >= warm_end && t1 <= end;
                    let failure = match r {
                        Ok(Ok(())) => {
                            if counted {
                                let us = (t1 - t0).as_micros();
                                lat.push(u32::try_from(us).unwrap_or(u32::MAX));
                            }
                            None
                        }
                        Ok(Err(e)) => Some(format!("{e:#}")),
                        Err(_) => Some(format!("timed out after {REQUEST_TIMEOUT:?}")),
                    };
                    if let Some(f) = failure {
                        if counted {
                            errors += 1;
                            first_error.get_or_insert(f);
                        }
                        // Do not spin on a refused connection.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                (lat, errors, first_error)
            })
        })
        .collect();
    tokio::time::sleep_until(warm_end.into()).await;
    let c0 = snap(pids);
    tokio::time::sleep_until(end.into()).await;
    let c1 = snap(pids);
    let mut run = Run {
        name: name.to_owned(),
        conc,
        secs: t.measure.as_secs_f64(),
        cpu: cpu_use(c0, c1, t.measure.as_secs_f64()),
        ..Run::default()
    };
    for task in tasks {
        let (lat, errors, first_error) = task.await?;
        run.lat_us.extend(lat);
        run.errors += errors;
        if run.first_error.is_none() {
            run.first_error = first_error;
        }
    }
    run.lat_us.sort_unstable();
    eprintln!(
        "load: {name:<58} c={conc:<3} {:>9.0} req/s  p50 {:>7.3} ms  p99 {:>7.3} ms  errors {}{}",
        run.rps(),
        run.pct_ms(0.50),
        run.pct_ms(0.99),
        run.errors,
        run.first_error
            .as_deref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default()
    );
    ensure!(
        !run.lat_us.is_empty(),
        "{name}: no request succeeded ({})",
        run.first_error.as_deref().unwrap_or("no error recorded")
    );
    Ok(run)
}

// ---------------------------------------------------------------------------------------------
// Setup helpers

fn claims(project: &str, uid: &str) -> Value {
    let now = jiff::Timestamp::now().as_second();
    json!({
        "iss": format!("https://securetoken.google.com/{project}"),
        "aud": project,
        "sub": uid,
        "user_id": uid,
        "iat": now - 10,
        "exp": now + 3 * 3600,
        "auth_time": now - 60,
        "email": format!("{uid}@example.com"),
        "name": format!("User {uid}"),
        "firebase": {"sign_in_provider": "google.com", "identities": {}},
    })
}

fn token(project: &str, uid: &str) -> Result<String> {
    funnelflow::auth::sign_claims(
        funnelflow::config::DEV_PRIVATE_KEY_PEM,
        "dev",
        &claims(project, uid),
    )
    .map_err(|e| anyhow!("signing a dev token: {e}"))
}

fn service_env(project: &str, emulator: &str, rust_log: &str) -> Vec<(&'static str, String)> {
    vec![
        ("GOOGLE_CLOUD_PROJECT", project.to_owned()),
        ("FIRESTORE_EMULATOR_HOST", emulator.to_owned()),
        ("FUNNELFLOW_STORE", "firestore".to_owned()),
        ("FUNNELFLOW_AUTH", "dev".to_owned()),
        ("FUNNELFLOW_RATE_LIMIT", "100000000/1s".to_owned()),
        ("FUNNELFLOW_LOG_FORMAT", "json".to_owned()),
        ("RUST_LOG", rust_log.to_owned()),
    ]
}

fn new_analysis(i: usize) -> Value {
    json!({
        "input": {
            "offerDetails": format!("https://example.com/offers/{i}"),
            "inputType": "link",
            "persona": "Founder",
        },
        "status": "completed",
        "aiModel": "gpt-x",
        "version": "1.0",
        "requestId": uuid::Uuid::new_v4().to_string(),
        "results": {
            "analysis": [
                {"category": "Headline", "score": 72, "finding": "Vague promise", "recommendation": "Name the outcome"},
                {"category": "Offer", "score": 64, "finding": "No guarantee", "recommendation": "Add a risk reversal"},
                {"category": "Call to action", "score": 81, "finding": "Clear", "recommendation": "Keep it"},
            ],
            "confidence": 0.8,
            "processingTimeMs": 1200,
        },
    })
}

async fn http_json(rb: reqwest::RequestBuilder, want: u16) -> Result<Value> {
    let res = rb.timeout(REQUEST_TIMEOUT).send().await?;
    let status = res.status().as_u16();
    let text = res.text().await?;
    ensure!(status == want, "HTTP {status} (wanted {want}): {text}");
    Ok(serde_json::from_str(&text)?)
}

/// Seeds `n` analyses through the API, oldest first; their ids, newest last.
async fn seed(client: &reqwest::Client, svc: &Service, token: &str, n: usize) -> Result<Vec<String>> {
    let started = Instant::now();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        ensure!(
            started.elapsed() < Duration::from_secs(300),
            "seeding took over 300 s ({i} of {n} done)"
        );
        let a = http_json(
            client
                .post(svc.url("/v1/analyses"))
                .bearer_auth(token)
                .json(&new_analysis(i)),
            201,
        )
        .await
        .with_context(|| format!("creating analysis {i}"))?;
        let id = a["analysisId"]
            .as_str()
            .ok_or_else(|| anyhow!("no analysisId in {a}"))?;
        ids.push(id.to_owned());
    }
    eprintln!(
        "load: seeded {n} analyses through POST /v1/analyses in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(ids)
}

/// Gives `uid` the unlimited plan directly in the store (the service caches profiles, so
/// the service is restarted after this).
async fn make_enterprise(project: &str, emulator: &str, uid: &str) -> Result<()> {
    let store = funnelflow::store::firestore::FirestoreStore::connect(
        project,
        "(default)",
        Some(emulator),
        Duration::from_secs(10),
    )
    .await
    .map_err(|e| anyhow!("connecting to the emulator: {e}"))?;
    let mut f = Fields::new();
    value::set_path(&mut f, "subscription.planType", value::string("enterprise"));
    let path = DocPath::root("users", uid).map_err(|e| anyhow!("{e}"))?;
    store
        .commit(vec![Write::update(path, f, vec!["subscription.planType".into()])])
        .await
        .map_err(|e| anyhow!("upgrading the plan: {e}"))?;
    Ok(())
}

/// The `nextCursor` of a history page, ids of its items.
async fn history_page(
    client: &reqwest::Client,
    svc: &Service,
    token: &str,
    cursor: Option<&str>,
) -> Result<(Vec<String>, Option<String>)> {
    let path = match cursor {
        Some(c) => format!("/v1/analyses?limit={PAGE}&cursor={c}"),
        None => format!("/v1/analyses?limit={PAGE}"),
    };
    let page = http_json(client.get(svc.url(&path)).bearer_auth(token), 200).await?;
    let ids = page["items"]
        .as_array()
        .ok_or_else(|| anyhow!("no items in {page}"))?
        .iter()
        .filter_map(|it| it["analysisId"].as_str().map(str::to_owned))
        .collect();
    Ok((ids, page["nextCursor"].as_str().map(str::to_owned)))
}

fn doc_id(d: &Document) -> &str {
    d.name.rsplit('/').next().unwrap_or_default()
}

/// A query cursor just after `d` in the history order: its `metadata.createdAt` and name.
fn cursor_after(d: &Document) -> Result<Vec<FirestoreValue>> {
    let created = match d.fields.get("metadata").and_then(|m| m.value_type.as_ref()) {
        Some(ValueType::MapValue(m)) => m.fields.get("createdAt").cloned(),
        _ => None,
    }
    .ok_or_else(|| anyhow!("{} has no metadata.createdAt", d.name))?;
    let reference = ProtoValue {
        value_type: Some(ValueType::ReferenceValue(d.name.clone())),
    };
    Ok(vec![
        FirestoreValue::from(created),
        FirestoreValue::from(reference),
    ])
}

// ---------------------------------------------------------------------------------------------
// Cold start and idle RSS

struct ColdStart {
    /// Spawn → first 200 on /healthz, ms, one per start.
    healthz_ms: Vec<f64>,
    /// Spawn → first 200 on an authenticated `GET /v1/me` (last start only).
    first_me_ms: f64,
    rss_kib: u64,
    hwm_kib: u64,
}

async fn first_200(addr: SocketAddr, req: &[u8], t0: Instant, proc: &mut Proc) -> Result<f64> {
    loop {
        if let Ok(mut c) = HttpConn::connect(addr).await
            && let Ok(Ok(200)) = tokio::time::timeout(Duration::from_secs(2), c.roundtrip(req)).await
        {
            return Ok(t0.elapsed().as_secs_f64() * 1000.0);
        }
        if proc.exited() {
            bail!("the service exited during startup");
        }
        ensure!(t0.elapsed() < Duration::from_secs(10), "no 200 within 10 s");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn cold_start() -> Result<ColdStart> {
    const STARTS: usize = 8;
    let project = "bench-cold";
    let me = get_request("/v1/me", Some(&token(project, "cold-user")?));
    let healthz = get_request("/healthz", None);
    let mut out = ColdStart {
        healthz_ms: Vec::new(),
        first_me_ms: 0.0,
        rss_kib: 0,
        hwm_kib: 0,
    };
    for i in 0..STARTS {
        let port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = File::create(out_dir().join("cold-start.log"))?;
        let t0 = Instant::now();
        let mut proc = Proc {
            child: Command::new(BIN)
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("PORT", port.to_string())
                .env("FUNNELFLOW_HOST", "127.0.0.1")
                .env("FUNNELFLOW_STORE", "embedded")
                .env("FUNNELFLOW_AUTH", "dev")
                .env("GOOGLE_CLOUD_PROJECT", project)
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()?,
        };
        let ms = first_200(addr, &healthz, t0, &mut proc).await?;
        // The first start warms the page cache: not counted.
        if i > 0 {
            out.healthz_ms.push(ms);
        }
        if i == STARTS - 1 {
            out.first_me_ms = first_200(addr, &me, t0, &mut proc).await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let (rss, hwm) = rss_kib(proc.pid()).ok_or_else(|| anyhow!("no /proc status"))?;
            out.rss_kib = rss;
            out.hwm_kib = hwm;
        }
    }
    eprintln!(
        "load: cold start to first /healthz 200: {:?} ms; idle RSS {} KiB",
        out.healthz_ms.iter().map(|m| m.round()).collect::<Vec<_>>(),
        out.rss_kib
    );
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Hostile sweep: bounded memory whatever filters a client sends

/// Requests of the sweep, each with a filter combination or `days` value never sent before.
const SWEEP_REQUESTS: u64 = 10_000;
const SWEEP_CONN: usize = 8;
/// `FUNNELFLOW_CACHE_MB` of the swept service (the default).
const SWEEP_CACHE_MB: u64 = 64;
/// Room above idle RSS + the cache budget for in-flight work: 8 connections each
/// building a ~2 MB page (document clones, decoded items, the JSON body) and the
/// allocator's retained free memory.
const SWEEP_MARGIN_MB: u64 = 64;

struct Sweep {
    idle_kib: u64,
    after_kib: u64,
    peak_kib: u64,
    secs: f64,
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    response_mib: f64,
}

impl Sweep {
    fn ceiling_kib(&self) -> u64 {
        self.idle_kib + (SWEEP_CACHE_MB + SWEEP_MARGIN_MB) * 1024
    }
}

/// An analysis of ~195 KiB (the longest strings and lists the API accepts).
fn large_analysis(i: usize) -> Value {
    let long = |c: char, n: usize| std::iter::repeat_n(c, n).collect::<String>();
    let findings: Vec<Value> = (0..50)
        .map(|k| {
            json!({"category": format!("{k} {}", long('c', 90)), "score": 50,
                   "finding": long('f', 1990), "recommendation": long('r', 1990)})
        })
        .collect();
    json!({
        "input": {"offerDetails": format!("https://example.com/{i}/{}", long('o', 1900)),
                  "inputType": "link", "persona": format!("Persona {i}")},
        "status": "completed",
        "aiModel": "gpt-x",
        "version": "1.0",
        "requestId": uuid::Uuid::new_v4().to_string(),
        "results": {"analysis": findings, "confidence": 0.7, "processingTimeMs": 900,
                    "sampleCopy": {"headline": long('h', 200), "body": long('b', 4990), "callToAction": long('a', 100)}},
    })
}

/// The `i`-th request of the sweep: history with a distinct `since` (full pages of
/// every analysis at limits 10..100), with distinct `until` × status × persona,
/// or trends over every `days` value.
fn sweep_request(i: u64, token: &str) -> Vec<u8> {
    let base = 1_600_000_000 + i64::try_from(i).unwrap_or(0);
    let at = |secs: i64| jiff::Timestamp::from_second(secs).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let path = match i % 4 {
        0 | 1 => format!("/v1/analyses?limit={}&since={}", 10 + i % 91, at(base)),
        2 => format!(
            "/v1/analyses?limit={}&until={}&status={}&persona=Persona%20{}",
            1 + i % 100,
            at(base + 400_000_000),
            ["completed", "processing", "failed"][(i % 3) as usize],
            i % 12
        ),
        _ => format!("/v1/analyses/trends?days={}", 1 + (i / 4) % 365),
    };
    get_request(&path, Some(token))
}

/// A free user with 10 large analyses sweeps `SWEEP_REQUESTS` distinct filter
/// combinations and `days` values against the release binary on the embedded
/// store (the defect's setup: 4,000 distinct `since` grew it to 7.8 GiB). RSS
/// before (after seeding) and after.
async fn hostile_sweep() -> Result<Sweep> {
    let project = "bench-hostile";
    let tok = token(project, "sweeper")?;
    let env = [
        ("FUNNELFLOW_STORE", "embedded".to_owned()),
        ("FUNNELFLOW_AUTH", "dev".to_owned()),
        ("GOOGLE_CLOUD_PROJECT", project.to_owned()),
        ("FUNNELFLOW_RATE_LIMIT", "100000000/1s".to_owned()),
        ("FUNNELFLOW_CACHE_MB", SWEEP_CACHE_MB.to_string()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    let svc = Service::spawn("service (hostile sweep)", &env, "service-hostile.log").await?;
    let client = reqwest::Client::new();
    for i in 0..10 {
        http_json(
            client
                .post(svc.url("/v1/analyses"))
                .bearer_auth(&tok)
                .json(&large_analysis(i)),
            201,
        )
        .await
        .with_context(|| format!("seeding large analysis {i}"))?;
    }
    let page = http_json(
        client.get(svc.url("/v1/analyses?limit=10")).bearer_auth(&tok),
        200,
    )
    .await?;
    let page_kib = serde_json::to_vec(&page)?.len() / 1024;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (idle_kib, _) = rss_kib(svc.pid()).ok_or_else(|| anyhow!("no /proc status"))?;
    eprintln!("load: hostile sweep: 10 analyses seeded (a page of them: {page_kib} KiB); RSS {idle_kib} KiB");

    let next = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..SWEEP_CONN)
        .map(|_| {
            let (next, bytes, tok, addr) = (next.clone(), bytes.clone(), tok.clone(), svc.addr);
            tokio::spawn(async move {
                let (mut errors, mut first_error) = (0u64, None::<String>);
                let mut conn: Option<HttpConn> = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= SWEEP_REQUESTS {
                        break;
                    }
                    if conn.is_none() {
                        conn = HttpConn::connect(addr).await.ok();
                    }
                    let Some(c) = conn.as_mut() else {
                        errors += 1;
                        continue;
                    };
                    let req = sweep_request(i, &tok);
                    match tokio::time::timeout(REQUEST_TIMEOUT, c.roundtrip(&req)).await {
                        Ok(Ok(200)) => {
                            bytes.fetch_add(c.body().len() as u64, Ordering::Relaxed);
                        }
                        other => {
                            errors += 1;
                            first_error.get_or_insert_with(|| match other {
                                Ok(Ok(status)) => format!(
                                    "HTTP {status}: {}",
                                    String::from_utf8_lossy(c.body())
                                        .chars()
                                        .take(200)
                                        .collect::<String>()
                                ),
                                Ok(Err(e)) => e.to_string(),
                                Err(_) => "timed out".into(),
                            });
                            conn = None;
                        }
                    }
                }
                (errors, first_error)
            })
        })
        .collect();
    let mut peak_kib = 0;
    let mut errors = 0;
    let mut first_error = None;
    let results = {
        // RSS sampled every 100 ms while the sweep runs.
        let poll = async {
            loop {
                if let Some((rss, _)) = rss_kib(svc.pid()) {
                    peak_kib = peak_kib.max(rss);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let all = futures::future::join_all(tasks);
        tokio::pin!(all);
        tokio::pin!(poll);
        tokio::select! {
            r = &mut all => r,
            () = &mut poll => unreachable!("the poll loop never ends"),
        }
    };
    for r in results {
        let (e, f) = r?;
        errors += e;
        first_error = first_error.or(f);
    }
    let secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (after_kib, hwm_kib) = rss_kib(svc.pid()).ok_or_else(|| anyhow!("no /proc status"))?;
    let out = Sweep {
        idle_kib,
        after_kib,
        peak_kib: peak_kib.max(hwm_kib),
        secs,
        requests: SWEEP_REQUESTS,
        errors,
        first_error,
        response_mib: bytes.load(Ordering::Relaxed) as f64 / (1024.0 * 1024.0),
    };
    eprintln!(
        "load: hostile sweep: {} requests in {:.1} s ({:.0} MiB of responses), errors {}{}; RSS {} KiB → {} KiB (peak {} KiB; ceiling {} KiB)",
        out.requests,
        out.secs,
        out.response_mib,
        out.errors,
        out.first_error
            .as_deref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default(),
        out.idle_kib,
        out.after_kib,
        out.peak_kib,
        out.ceiling_kib()
    );
    Ok(out)
}

fn sweep_markdown(s: &Sweep) -> String {
    let mib = |k: u64| k as f64 / 1024.0;
    format!(
        "Hostile sweep (embedded store, free user with 10 analyses of ~195 KiB, {} requests over {SWEEP_CONN} \
         connections, each a filter combination or `days` value never sent before; {:.1} s, {:.0} MiB of \
         responses, {} errors): RSS {:.1} MiB after seeding → {:.1} MiB after the sweep (peak {:.1} MiB); \
         ceiling = idle + FUNNELFLOW_CACHE_MB ({SWEEP_CACHE_MB}) + {SWEEP_MARGIN_MB} MiB in-flight margin = {:.1} MiB.\n",
        s.requests,
        s.secs,
        s.response_mib,
        s.errors,
        mib(s.idle_kib),
        mib(s.after_kib),
        mib(s.peak_kib),
        mib(s.ceiling_kib()),
    )
}

fn sweep_bar(s: &Sweep) -> Bar {
    bar(
        "RSS after 10,000 distinct filters / days values",
        format!(
            "{:.1} MiB (peak {:.1}, idle {:.1})",
            s.after_kib as f64 / 1024.0,
            s.peak_kib as f64 / 1024.0,
            s.idle_kib as f64 / 1024.0
        ),
        &format!(
            "< idle + cache + {SWEEP_MARGIN_MB} MiB = {:.0} MiB",
            s.ceiling_kib() as f64 / 1024.0
        ),
        Some(s.errors == 0 && s.after_kib <= s.ceiling_kib() && s.peak_kib <= s.ceiling_kib()),
    )
}

/// With `LOAD_BENCH_PERF=1`, a `perf record` of process `pid` for the length of a scenario
/// (into `target/tmp/load-bench/perf-LABEL.data`). Sampling costs CPU: a profiled run's figures
/// are for attribution, not for the table.
fn perf_start(label: &str, pid: u32, t: &Timing) -> Option<Proc> {
    std::env::var_os("LOAD_BENCH_PERF")?;
    let file = out_dir().join(format!("perf-{label}.data"));
    let secs = (t.warmup + t.measure).as_secs_f64();
    let child = Command::new("perf")
        .args(["record", "-q", "-F", "499", "--call-graph", "dwarf,16384", "-o"])
        .arg(&file)
        .args(["-p", &pid.to_string(), "--", "sleep", &format!("{secs:.1}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    Some(Proc { child })
}

fn perf_finish(p: Option<Proc>) {
    if let Some(mut p) = p {
        let _ = p.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// The benchmark

struct Bar {
    name: String,
    measured: String,
    target: String,
    verdict: &'static str,
}

fn bar(name: &str, measured: String, target: &str, pass: Option<bool>) -> Bar {
    Bar {
        name: name.to_owned(),
        measured,
        target: target.to_owned(),
        verdict: match pass {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "not measurable yet",
        },
    }
}

fn env_num(name: &str, default: u64, min: u64, max: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
        .clamp(min, max)
}

async fn bench() -> Result<()> {
    // `LOAD_BENCH_ONLY=hostile`: only the hostile sweep (embedded store).
    if hostile_only() {
        let sweep = hostile_sweep().await?;
        let b = sweep_bar(&sweep);
        let md = format!(
            "{}\n| bar | measured | target | verdict |\n|---|---|---|---|\n| {} | {} | {} | {} |\n",
            sweep_markdown(&sweep),
            b.name,
            b.measured,
            b.target,
            b.verdict
        );
        let path = out_dir().join("results-hostile.md");
        std::fs::write(&path, &md)?;
        println!("\n{md}\n(also in {})", path.display());
        return Ok(());
    }
    let emulator = std::env::var("FIRESTORE_EMULATOR_HOST").context("FIRESTORE_EMULATOR_HOST")?;
    // `LOAD_BENCH_ONLY=feed`: only the invalidation feed between two instances.
    if std::env::var("LOAD_BENCH_ONLY").as_deref() == Ok("feed") {
        let md = feed::run(&emulator).await?;
        println!(
            "\n{md}\n(also in {})",
            out_dir().join("results-feed.md").display()
        );
        return Ok(());
    }
    let emulator_pid: Option<u32> = std::env::var(EMULATOR_PID_VAR).ok().and_then(|p| p.parse().ok());
    // `LOAD_BENCH_ONLY=gdpr`: only the GDPR export and erasure scenarios.
    if gdpr::only() {
        return gdpr::only_report(&emulator, emulator_pid).await;
    }
    let secs = env_num("LOAD_BENCH_SECS", 5, 1, 30);
    let conc = usize::try_from(env_num("LOAD_BENCH_CONC", 32, 1, 256))?;
    let timing = Timing {
        warmup: Duration::from_secs(1),
        measure: Duration::from_secs(secs),
    };
    let short = Timing {
        warmup: Duration::from_millis(500),
        measure: Duration::from_secs(secs.div_ceil(2).max(2)),
    };
    let bench_pid = std::process::id();
    let started = Instant::now();

    // (e) first, while the machine is quiet (the emulator idles).
    let cold = cold_start().await?;
    let sweep = hostile_sweep().await?;

    let project = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let tok = token(&project, UID)?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;

    // The profile is created by the service on first use; then the plan is raised directly
    // and the service restarted (it caches profiles), so seeding meets no quota.
    {
        let first = Service::spawn(
            "service (setup)",
            &service_env(&project, &emulator, "warn"),
            "service-setup.log",
        )
        .await?;
        http_json(client.get(first.url("/v1/me")).bearer_auth(&tok), 200).await?;
        make_enterprise(&project, &emulator, UID).await?;
    }
    let svc = Service::spawn(
        "service",
        &service_env(&project, &emulator, "info"),
        "service.log",
    )
    .await?;
    let me = http_json(client.get(svc.url("/v1/me")).bearer_auth(&tok), 200).await?;
    ensure!(
        me["subscription"]["planType"] == "enterprise",
        "plan not raised: {me}"
    );
    let ids = seed(&client, &svc, &tok, HISTORY_SIZE).await?;
    let newest = ids.last().cloned().ok_or_else(|| anyhow!("nothing seeded"))?;

    // Cursors through the service: page 2 and page 50.
    let (page1, mut cursor) = history_page(&client, &svc, &tok, None).await?;
    ensure!(page1.len() == PAGE, "page 1 has {} items", page1.len());
    let page2_cursor = cursor.clone().ok_or_else(|| anyhow!("no cursor after page 1"))?;
    let mut page2_ids = Vec::new();
    for page in 2..DEEP_PAGE {
        let (items, next) = history_page(&client, &svc, &tok, cursor.as_deref()).await?;
        ensure!(items.len() == PAGE, "page {page} has {} items", items.len());
        if page == 2 {
            page2_ids = items;
        }
        cursor = next;
    }
    let page50_cursor = cursor.ok_or_else(|| anyhow!("no cursor after page 49"))?;

    // The emulator through the crate directly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let db = FirestoreDb::with_options(
        FirestoreDbOptions::new(project.clone()).with_database_id("(default)".to_owned()),
    )
    .await?;
    let parent = format!("{}/users/{UID}", db.get_documents_path());
    let all = RawQuery {
        db: db.clone(),
        parent: parent.clone(),
        after: None,
        limit: 1_000,
    }
    .run()
    .await?;
    ensure!(all.len() == 1_000, "raw query returned {}", all.len());
    ensure!(
        doc_id(&all[0]) == newest,
        "the newest analysis differs between the API and the query"
    );
    let raw_page2: Vec<String> = all[PAGE..2 * PAGE].iter().map(|d| doc_id(d).to_owned()).collect();
    ensure!(
        raw_page2 == page2_ids,
        "page 2 differs between the API and the raw query"
    );
    let raw_query = |after: Option<Vec<FirestoreValue>>| RawQuery {
        db: db.clone(),
        parent: parent.clone(),
        after,
        limit: u32::try_from(PAGE + 1).unwrap_or(21),
    };
    let raw_after_page1 = cursor_after(&all[PAGE - 1])?;
    let raw_after_page49 = cursor_after(&all[(DEEP_PAGE - 1) * PAGE - 1])?;

    let pids = Pids {
        bench: bench_pid,
        service: Some(svc.pid()),
        emulator: emulator_pid,
    };
    let me_req = Arc::new(get_request("/v1/me", Some(&tok)));
    let get_req = Arc::new(get_request(&format!("/v1/analyses/{newest}"), Some(&tok)));
    let page1_req = Arc::new(get_request(&format!("/v1/analyses?limit={PAGE}"), Some(&tok)));
    let page2_req = Arc::new(get_request(
        &format!("/v1/analyses?limit={PAGE}&cursor={page2_cursor}"),
        Some(&tok),
    ));
    let page50_req = Arc::new(get_request(
        &format!("/v1/analyses?limit={PAGE}&cursor={page50_cursor}"),
        Some(&tok),
    ));
    let http = |n: usize, r: &Arc<Vec<u8>>| HttpWorker::many(n, svc.addr, Requests::Fixed(r.clone()));
    let raw_gets = |n: usize| {
        (0..n)
            .map(|_| RawGet {
                db: db.clone(),
                parent: parent.clone(),
                id: newest.clone(),
            })
            .collect::<Vec<_>>()
    };
    let raw_queries = |n: usize, after: &Vec<FirestoreValue>| {
        (0..n).map(|_| raw_query(Some(after.clone()))).collect::<Vec<_>>()
    };

    // Warm the emulator's JIT and both clients before anything is measured.
    let warm = Timing {
        warmup: Duration::from_secs(4),
        measure: Duration::from_secs(1),
    };
    run_load("warm-up: raw get", raw_gets(conc), &warm, pids).await?;
    // The emulator's query path takes longest to reach its steady speed.
    let warm_query = Timing {
        warmup: Duration::from_secs(9),
        measure: Duration::from_secs(1),
    };
    run_load(
        "warm-up: raw query",
        raw_queries(conc, &raw_after_page1),
        &warm_query,
        pids,
    )
    .await?;
    run_load(
        "warm-up: GET /v1/analyses/{id}",
        http(conc, &get_req),
        &warm,
        pids,
    )
    .await?;
    run_load(
        "warm-up: GET /v1/analyses page 2",
        http(conc, &page2_req),
        &warm,
        pids,
    )
    .await?;

    let mut runs: Vec<Run> = Vec::new();

    // (a) cached GET /v1/me
    let perf = perf_start("me", svc.pid(), &timing);
    let me_main = run_load("GET /v1/me (cached)", http(conc, &me_req), &timing, pids).await?;
    perf_finish(perf);
    for n in [1, 8, 128] {
        if n != conc {
            runs.push(run_load("GET /v1/me (cached)", http(n, &me_req), &short, pids).await?);
        }
    }
    let healthz_req = Arc::new(get_request("/healthz", None));
    let healthz = run_load(
        "GET /healthz (HTTP stack only)",
        http(conc, &healthz_req),
        &short,
        pids,
    )
    .await?;
    let reqwest_workers = (0..conc)
        .map(|_| ReqwestWorker {
            client: client.clone(),
            url: svc.url("/v1/me"),
            token: tok.clone(),
        })
        .collect::<Vec<_>>();
    runs.push(
        run_load(
            "GET /v1/me (cached), reqwest client",
            reqwest_workers,
            &short,
            pids,
        )
        .await?,
    );

    // (b) uncached single get vs the emulator's get: A B B A, so neither side gets the warmer JIT.
    let raw_get_a = run_load("emulator get (firestore crate)", raw_gets(conc), &timing, pids).await?;
    let perf = perf_start("get", svc.pid(), &timing);
    let svc_get_a = run_load(
        "GET /v1/analyses/{id} (uncached)",
        http(conc, &get_req),
        &timing,
        pids,
    )
    .await?;
    perf_finish(perf);
    let svc_get_b = run_load(
        "GET /v1/analyses/{id} (uncached)",
        http(conc, &get_req),
        &timing,
        pids,
    )
    .await?;
    let raw_get_b = run_load("emulator get (firestore crate)", raw_gets(conc), &timing, pids).await?;
    let raw_get = raw_get_a.merge(raw_get_b);
    let svc_get = svc_get_a.merge(svc_get_b);

    // (c) history: the uncached page (page 2, by cursor) vs the same query on the emulator.
    let raw_q_a = run_load(
        "emulator history query, page 2 (firestore crate)",
        raw_queries(conc, &raw_after_page1),
        &timing,
        pids,
    )
    .await?;
    let perf = perf_start("history", svc.pid(), &timing);
    let svc_q_a = run_load(
        "GET /v1/analyses?limit=20 page 2 (uncached)",
        http(conc, &page2_req),
        &timing,
        pids,
    )
    .await?;
    perf_finish(perf);
    let svc_q_b = run_load(
        "GET /v1/analyses?limit=20 page 2 (uncached)",
        http(conc, &page2_req),
        &timing,
        pids,
    )
    .await?;
    let raw_q_b = run_load(
        "emulator history query, page 2 (firestore crate)",
        raw_queries(conc, &raw_after_page1),
        &timing,
        pids,
    )
    .await?;
    let raw_q = raw_q_a.merge(raw_q_b);
    let svc_q = svc_q_a.merge(svc_q_b);
    let svc_first_cached = run_load(
        "GET /v1/analyses?limit=20 page 1 (cached)",
        http(conc, &page1_req),
        &timing,
        pids,
    )
    .await?;

    // (d) depth: one request at a time, latency of page 50 vs the shallow pages.
    let since = Arc::new(AtomicU64::new(0));
    let tok_d = tok.clone();
    let page1_uncached: RequestMaker = Arc::new(move || {
        // A distinct `since` (before every analysis) per request: a first page the cache never saw.
        let n = since.fetch_add(1, Ordering::Relaxed);
        let t = jiff::Timestamp::from_second(1_000_000_000 + i64::try_from(n).unwrap_or(0))
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        get_request(&format!("/v1/analyses?limit={PAGE}&since={t}"), Some(&tok_d))
    });
    let d_p1 = run_load(
        "GET /v1/analyses page 1 (uncached: distinct since=)",
        HttpWorker::many(1, svc.addr, Requests::Each(page1_uncached)),
        &short,
        pids,
    )
    .await?;
    let d_p2 = run_load(
        "GET /v1/analyses page 2 (cursor)",
        http(1, &page2_req),
        &short,
        pids,
    )
    .await?;
    let d_p50 = run_load(
        "GET /v1/analyses page 50 (cursor)",
        http(1, &page50_req),
        &short,
        pids,
    )
    .await?;
    let d_raw2 = run_load(
        "emulator history query, page 2",
        raw_queries(1, &raw_after_page1),
        &short,
        pids,
    )
    .await?;
    let d_raw50 = run_load(
        "emulator history query, page 50",
        raw_queries(1, &raw_after_page49),
        &short,
        pids,
    )
    .await?;
    let d_svc50c = run_load(
        "GET /v1/analyses page 50 (cursor)",
        http(conc, &page50_req),
        &timing,
        pids,
    )
    .await?;

    let (svc_rss, svc_hwm) = rss_kib(svc.pid()).unwrap_or((0, 0));
    drop(svc);

    // Logging cost: the same cached endpoint with request logs off.
    let quiet = Service::spawn(
        "service (RUST_LOG=warn)",
        &service_env(&project, &emulator, "warn"),
        "service-quiet.log",
    )
    .await?;
    let quiet_pids = Pids {
        service: Some(quiet.pid()),
        ..pids
    };
    let me_quiet = run_load(
        "GET /v1/me (cached), RUST_LOG=warn (no request span)",
        HttpWorker::many(conc, quiet.addr, Requests::Fixed(me_req.clone())),
        &timing,
        quiet_pids,
    )
    .await?;
    drop(quiet);

    // (g) GDPR export and erasure, on accounts of their own.
    let gdpr = gdpr::run(&emulator, emulator_pid).await?;

    // ------------------------------------------------------------------ report
    let get_ratio = svc_get.rps() / raw_get.rps();
    let query_ratio = svc_q.rps() / raw_q.rps();
    let depth_ratio = d_p50.pct_ms(0.5) / d_p2.pct_ms(0.5);
    let depth_ratio_p1 = d_p50.pct_ms(0.5) / d_p1.pct_ms(0.5);
    let raw_depth_ratio = d_raw50.pct_ms(0.5) / d_raw2.pct_ms(0.5);
    let cold_median = median(&cold.healthz_ms);
    let cold_max = cold.healthz_ms.iter().copied().fold(0.0, f64::max);

    let mut md = String::new();
    let _ = writeln!(
        md,
        "Machine: {} cores ({}); {} s measured per scenario after a {} s warm-up (depth runs: {} s); \
         closed loop, keep-alive, all on 127.0.0.1; total run {:.0} s.\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        cpu_model(),
        timing.measure.as_secs(),
        timing.warmup.as_secs(),
        short.measure.as_secs(),
        started.elapsed().as_secs_f64(),
    );
    md.push_str(
        "| scenario | conn | req/s | p50 ms | p99 ms | errors | CPU cores: service / emulator / bench | machine busy | service CPU µs/req |\n\
         |---|---:|---:|---:|---:|---:|---|---:|---:|\n",
    );
    let mut table: Vec<&Run> = vec![&healthz, &me_main];
    table.extend(runs.iter());
    table.push(&me_quiet);
    table.extend([&raw_get, &svc_get, &raw_q, &svc_q, &svc_first_cached]);
    table.extend([&d_p1, &d_p2, &d_p50, &d_raw2, &d_raw50, &d_svc50c]);
    for r in table {
        // The emulator-only rows leave the service idle.
        let per_req = if r.cpu.service > 0.05 && r.rps() > 0.0 {
            format!("{:.0}", r.cpu.service * 1e6 / r.rps())
        } else {
            "–".to_owned()
        };
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {:.3} | {:.3} | {} | {:.2} / {:.2} / {:.2} | {:.0}% | {} |",
            r.name,
            r.conc,
            r.rps(),
            r.pct_ms(0.5),
            r.pct_ms(0.99),
            r.errors,
            r.cpu.service,
            r.cpu.emulator,
            r.cpu.bench,
            r.cpu.machine_busy * 100.0,
            per_req,
        );
    }
    let _ = writeln!(
        md,
        "\nRatios: uncached get {:.0}% of the emulator's get ({:.0} vs {:.0} req/s); uncached history page \
         {:.0}% of the raw query ({:.0} vs {:.0} req/s); page 50 / page 2 p50 latency {:.2} \
         ({:.3} vs {:.3} ms), page 50 / uncached page 1 {:.2}, emulator alone page 50 / page 2 {:.2}; \
         /v1/me with RUST_LOG=warn (request span off): {:.0} req/s ({:+.0}%); GET /healthz (no auth, no store): {:.0} req/s.",
        get_ratio * 100.0,
        svc_get.rps(),
        raw_get.rps(),
        query_ratio * 100.0,
        svc_q.rps(),
        raw_q.rps(),
        depth_ratio,
        d_p50.pct_ms(0.5),
        d_p2.pct_ms(0.5),
        depth_ratio_p1,
        raw_depth_ratio,
        me_quiet.rps(),
        (me_quiet.rps() / me_main.rps() - 1.0) * 100.0,
        healthz.rps(),
    );
    let _ = writeln!(
        md,
        "Cold start (embedded store, spawn → first 200 on /healthz, {} starts): median {:.1} ms, max {:.1} ms; \
         spawn → first authenticated GET /v1/me: {:.1} ms. Idle RSS {:.1} MiB (peak {:.1} MiB). \
         RSS of the emulator-backed service after the load: {:.1} MiB (peak {:.1} MiB).\n",
        cold.healthz_ms.len(),
        cold_median,
        cold_max,
        cold.first_me_ms,
        cold.rss_kib as f64 / 1024.0,
        cold.hwm_kib as f64 / 1024.0,
        svc_rss as f64 / 1024.0,
        svc_hwm as f64 / 1024.0,
    );
    md.push_str(&sweep_markdown(&sweep));
    md.push('\n');
    md.push_str(&gdpr.markdown());
    let mut bars = vec![
        bar(
            "cached GET /v1/me throughput",
            format!("{:.0} req/s ({conc} conn)", me_main.rps()),
            "≥ 40,000 req/s",
            Some(me_main.rps() >= 40_000.0),
        ),
        bar(
            "cached GET /v1/me p99",
            format!("{:.2} ms", me_main.pct_ms(0.99)),
            "< 5 ms",
            Some(me_main.pct_ms(0.99) < 5.0),
        ),
        bar(
            "uncached GET /v1/analyses/{id} / emulator get",
            format!("{:.0}%", get_ratio * 100.0),
            "≥ 70%",
            Some(get_ratio >= 0.70),
        ),
        bar(
            "uncached history page / emulator raw query",
            format!("{:.0}%", query_ratio * 100.0),
            "≥ 80%",
            Some(query_ratio >= 0.80),
        ),
        bar(
            "page 50 / page 2 latency (p50, 1 conn)",
            format!("{depth_ratio:.2}"),
            "≈ 1.0 (PASS if ≤ 1.25)",
            Some(depth_ratio <= 1.25),
        ),
        bar(
            "cold start → first 200 (max of starts)",
            format!("{cold_max:.1} ms"),
            "< 300 ms",
            Some(cold_max < 300.0),
        ),
        bar(
            "idle RSS (embedded store)",
            format!("{:.1} MiB", cold.rss_kib as f64 / 1024.0),
            "< 30 MB",
            Some((cold.rss_kib as f64) * 1024.0 < 30e6),
        ),
        sweep_bar(&sweep),
    ];
    bars.extend(gdpr.bars());
    md.push_str("| bar | measured | target | verdict |\n|---|---|---|---|\n");
    for b in &bars {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            b.name, b.measured, b.target, b.verdict
        );
    }
    let path = out_dir().join("results.md");
    std::fs::write(&path, &md)?;
    println!("\n{md}\n(also in {})", path.display());
    Ok(())
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}
