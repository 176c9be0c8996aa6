//! GDPR export and erasure scenarios (`LOAD_BENCH_ONLY=gdpr` runs only these).
//!
//! Accounts are seeded straight into the emulator in commits of 500, in the shape the
//! service writes (`Analysis` encoded by the store, with its `trendDay` marker and the
//! day documents), each account in a project of its own so that one scenario's data
//! never sits in another's queries. Every account's profile is created by the service
//! (`GET /v1/me`), as a real sign-in would.
//!
//! - **Export memory**: `VmHWM` of the service is reset (`/proc/<pid>/clear_refs` = 5) and
//!   `VmRSS` read just before `GET /v1/me/export`; during the export `VmRSS` is sampled
//!   every 2 ms; peak − before is the export's cost in memory. A fast reader takes the body
//!   as fast as it comes; a slow one reads 16 KiB every 4 ms (≤ 4 MiB/s).
//! - **Export cost per document**: wall time (request → last byte) and service CPU time
//!   (sum of `/proc/<pid>/task/*/schedstat`, ns) of the 1,000-analysis account's export
//!   against the 10,000-analysis account's, per analysis; median of several runs each.
//! - **Erasure**: `DELETE /v1/me` on a 10,000-analysis account against deleting the same
//!   documents (listed beforehand) through the `firestore` crate's `Commit` in commits of
//!   500, one at a time and 4 at a time (the service's concurrency, `erasure::CONCURRENCY`).
//!   Each run gets a freshly seeded account; after one untimed run of the service and of the
//!   crate (the emulator's JIT warms up), the order is A B C C B A.
//!
//! `LOAD_BENCH_GDPR=export` or `=erase` runs one half only.
//!
//! The export formats are a parameter (`LOAD_BENCH_EXPORT_FORMATS`, default `json,csv`): a
//! format the server answers 400 to is reported as skipped.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use firestore::gcloud_sdk::google::firestore::v1 as proto;
use firestore::gcloud_sdk::google::firestore::v1::value::ValueType;
use firestore::{
    FirestoreDb, FirestoreDbOptions, FirestoreQueryCursor, FirestoreQueryDirection, FirestoreQueryOrder,
    FirestoreTimestamp, FirestoreValue,
};
use funnelflow::domain::analyses::{
    Analysis, AnalysisInput, AnalysisMetadata, COLLECTION, Finding, InputType, Results, SampleCopy, Sharing,
    Status,
};
use funnelflow::domain::trends;
use funnelflow::store::firestore::FirestoreStore;
use funnelflow::store::{self, DocPath, Store, Write};
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Bar, Service, bar, cpu_ticks, http_json, out_dir, rss_kib, service_env, token};

const LARGE: usize = 10_000;
const SMALL: usize = 1_000;
/// Analyses per seeding commit, and deletes per baseline commit (Firestore's limit).
const BATCH: usize = 500;
/// The service's commits in flight while erasing (`erasure::CONCURRENCY`).
const ERASE_CONCURRENCY: usize = 4;
const EXPORT_RSS_BAR_MIB: f64 = 20.0;
const ERASE_BAR: f64 = 1.5;
/// Rounds of (10,000 once, 1,000 three times) for the cost per document.
const EXPORT_ROUNDS: usize = 2;
const SMALL_PER_ROUND: usize = 3;
const SLOW_READ: usize = 16 << 10;
const SLOW_PAUSE: Duration = Duration::from_millis(4);
const LONG_TIMEOUT: Duration = Duration::from_secs(300);

pub fn only() -> bool {
    std::env::var("LOAD_BENCH_ONLY").as_deref() == Ok("gdpr")
}

fn formats() -> Vec<String> {
    std::env::var("LOAD_BENCH_EXPORT_FORMATS")
        .ok()
        .filter(|f| !f.trim().is_empty())
        .unwrap_or_else(|| "json,csv".to_owned())
        .split(',')
        .map(|f| f.trim().to_owned())
        .filter(|f| !f.is_empty())
        .collect()
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

// ---------------------------------------------------------------------------------------------
// Process measurements

/// On-CPU time of every thread of `pid`, in ns (`/proc/<pid>/task/*/schedstat`): the tick
/// counts of `/proc/<pid>/stat` (10 ms) are too coarse for a 1,000-analysis export.
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Resets `VmHWM` to the current `VmRSS`.
fn reset_hwm(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// Samples `VmRSS` of `pid` every 2 ms until stopped; the largest sample, in KiB.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (s, p) = (stop.clone(), peak.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                if let Some((rss, _)) = rss_kib(pid) {
                    p.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        Self { stop, peak, task }
    }

    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.peak.load(Ordering::Relaxed)
    }
}

// ---------------------------------------------------------------------------------------------
// Seeding

/// A completed analysis as a user of the service would have it: five findings, sample
/// copy on every other one (~2.3 KiB stored, ~2.5 KiB exported).
fn analysis(uid: &str, i: usize, created: jiff::Timestamp) -> Analysis {
    let personas = ["Founder", "Marketing lead", "Agency owner", "Solo consultant"];
    let categories = ["Headline", "Offer", "Proof", "Call to action", "Pricing"];
    let findings = categories
        .iter()
        .enumerate()
        .map(|(k, c)| Finding {
            category: (*c).to_owned(),
            score: ((i * 7 + k * 13) % 60 + 40) as f64,
            finding: format!(
                "Offer {i}, {c}: the page promises a result without saying for whom or by when, \
                 so a reader cannot tell whether it applies to them (finding {k})."
            ),
            recommendation: format!(
                "Name the reader and the outcome in the first line, add one number a reader can \
                 check, and move the strongest proof next to the {c} (offer {i})."
            ),
        })
        .collect();
    let sample_copy = i.is_multiple_of(2).then(|| SampleCopy {
        headline: format!("Launch offer {i}: the audit that finds your leaking funnel step in a day"),
        body: "Most funnels lose buyers at one step. We read yours end to end, score every step \
               against what converts in your market, and hand you the three changes worth \
               making this week, with the copy already written. No retainer, no call needed: \
               send the link, get the report by tomorrow morning, keep it forever."
            .repeat(2),
        call_to_action: "Send me my funnel audit".to_owned(),
    });
    let ts = FirestoreTimestamp(created);
    Analysis {
        analysis_id: uuid::Uuid::new_v4().simple().to_string(),
        user_id: Some(uid.to_owned()),
        input: AnalysisInput {
            offer_details: format!(
                "https://example.com/offers/{i}?utm_source=newsletter&utm_campaign=spring"
            ),
            input_type: InputType::Link,
            persona: personas[i % personas.len()].to_owned(),
            custom_persona_id: None,
        },
        results: Some(Results {
            analysis: findings,
            sample_copy,
            confidence: 0.82,
            processing_time_ms: 1_200.0 + (i % 900) as f64,
        }),
        metadata: AnalysisMetadata {
            created_at: ts,
            updated_at: ts,
            status: Status::Completed,
            ai_model: "gpt-4o".to_owned(),
            version: "1.0".to_owned(),
            request_id: uuid::Uuid::new_v4().to_string(),
        },
        sharing: Sharing::default(),
    }
}

/// A project with one user: profile created by the service, `n` analyses (one a minute,
/// the newest now) and their trend day documents written directly in commits of 500.
struct Account {
    project: String,
    uid: String,
    token: String,
    emulator: String,
}

impl Account {
    async fn create(prefix: &str, emulator: &str, n: usize) -> Result<Self> {
        let project = unique(prefix);
        let uid = format!("{prefix}-user");
        let tok = token(&project, &uid)?;
        {
            let setup = Service::spawn(
                "service (GDPR setup)",
                &service_env(&project, emulator, "warn"),
                "service-gdpr-setup.log",
            )
            .await?;
            http_json(
                reqwest::Client::new().get(setup.url("/v1/me")).bearer_auth(&tok),
                200,
            )
            .await
            .context("creating the profile")?;
        }
        let store = FirestoreStore::connect(&project, "(default)", Some(emulator), Duration::from_secs(60))
            .await
            .map_err(|e| anyhow!("connecting to the emulator: {e}"))?;
        let user = DocPath::root("users", &uid).map_err(|e| anyhow!("{e}"))?;
        let now = store::value::now();
        let mut writes = Vec::with_capacity(n + 16);
        let mut days = std::collections::BTreeMap::new();
        for i in 0..n {
            let minutes = i64::try_from(n - i).unwrap_or(0);
            let created = now
                .checked_sub(jiff::SignedDuration::from_mins(minutes))
                .map_err(|e| anyhow!("{e}"))?;
            let a = analysis(&uid, i, created);
            let path = user
                .child(COLLECTION, &a.analysis_id)
                .map_err(|e| anyhow!("{e}"))?;
            let mut fields = store::encode(&a).map_err(|e| anyhow!("{e}"))?;
            // The marker the service sets; the day document with the first analysis's
            // counts (the counters' values do not matter to export or erasure).
            let day = trends::count_new(&user, &a, &mut fields).map_err(|e| anyhow!("{e}"))?;
            days.entry(trends::day_of(created)).or_insert(day);
            writes.push(Write::create(path, fields));
        }
        writes.extend(days.into_values());
        let started = Instant::now();
        let chunks: Vec<Vec<Write>> = writes.chunks(BATCH).map(<[Write]>::to_vec).collect();
        let store = &store;
        futures::stream::iter(chunks)
            .map(|c| async move { store.commit(c).await.map_err(|e| anyhow!("seeding: {e}")) })
            .buffer_unordered(4)
            .try_collect::<Vec<_>>()
            .await?;
        eprintln!(
            "load: gdpr: seeded {n} analyses into {project} in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(Self {
            project,
            uid,
            token: tok,
            emulator: emulator.to_owned(),
        })
    }

    async fn service(&self, log: &str) -> Result<Service> {
        let mut env = service_env(&self.project, &self.emulator, "info");
        env.push(("FUNNELFLOW_EXPORT_RATE_LIMIT", "1000000/1s".to_owned()));
        Service::spawn("service (GDPR)", &env, log).await
    }

    async fn db(&self) -> Result<FirestoreDb> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(FirestoreDb::with_options(
            FirestoreDbOptions::new(self.project.clone()).with_database_id("(default)".to_owned()),
        )
        .await?)
    }
}

// ---------------------------------------------------------------------------------------------
// Export

#[derive(Clone, Copy, PartialEq)]
enum Reader {
    Fast,
    Slow,
}

struct Export {
    format: String,
    n: usize,
    reader: Reader,
    status: u16,
    bytes: usize,
    secs: f64,
    first_byte_secs: f64,
    svc_cpu_ns: u64,
    emu_cpu_ticks: u64,
    before_kib: u64,
    peak_kib: u64,
    hwm_reset: bool,
}

impl Export {
    fn rise_mib(&self) -> f64 {
        self.peak_kib.saturating_sub(self.before_kib) as f64 / 1024.0
    }
    fn wall_us_per_doc(&self) -> f64 {
        self.secs * 1e6 / self.n as f64
    }
    fn cpu_us_per_doc(&self) -> f64 {
        self.svc_cpu_ns as f64 / 1e3 / self.n as f64
    }
}

/// The body of an HTTP/1.1 response with `Transfer-Encoding: chunked`, unframed.
fn dechunk(mut b: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(b.len());
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("truncated chunk size"))?;
        let size_text = std::str::from_utf8(&b[..eol])?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        ensure!(b.len() >= size + 2, "truncated chunk");
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// One `GET /v1/me/export?format=…` on a fresh connection read to its end, with the
/// service's memory sampled throughout.
async fn export_once(
    addr: SocketAddr,
    svc_pid: u32,
    emulator_pid: Option<u32>,
    tok: &str,
    format: &str,
    n: usize,
    reader: Reader,
) -> Result<Export> {
    // Let the previous run's buffers go back and the service idle.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let hwm_reset = reset_hwm(svc_pid);
    let (before_kib, _) = rss_kib(svc_pid).ok_or_else(|| anyhow!("no /proc status"))?;
    let cpu0 = cpu_ns(svc_pid);
    let emu0 = emulator_pid.and_then(cpu_ticks).unwrap_or(0);
    let sampler = RssSampler::start(svc_pid);
    let t0 = Instant::now();
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let req = format!(
        "GET /v1/me/export?format={format} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {tok}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::with_capacity(if reader == Reader::Fast { 32 << 20 } else { 1 << 20 });
    let mut buf = vec![
        0u8;
        if reader == Reader::Fast {
            256 << 10
        } else {
            SLOW_READ
        }
    ];
    let mut first_byte = None;
    let read = async {
        loop {
            let k = s.read(&mut buf).await?;
            if k == 0 {
                return Ok::<_, std::io::Error>(());
            }
            first_byte.get_or_insert_with(|| t0.elapsed());
            raw.extend_from_slice(&buf[..k]);
            if reader == Reader::Slow {
                tokio::time::sleep(SLOW_PAUSE).await;
            }
        }
    };
    tokio::time::timeout(LONG_TIMEOUT, read)
        .await
        .map_err(|_| anyhow!("export not finished after {LONG_TIMEOUT:?}"))??;
    let secs = t0.elapsed().as_secs_f64();
    let sampled = sampler.finish().await;
    let svc_cpu_ns = cpu_ns(svc_pid).saturating_sub(cpu0);
    let emu_cpu_ticks = emulator_pid.and_then(cpu_ticks).unwrap_or(0).saturating_sub(emu0);
    let (_, hwm) = rss_kib(svc_pid).ok_or_else(|| anyhow!("no /proc status"))?;
    // VmHWM is the high-water mark since the reset (only when the reset worked).
    let peak_kib = if hwm_reset { sampled.max(hwm) } else { sampled };

    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no response head"))?
        + 4;
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let status: u16 = head
        .get(9..12)
        .and_then(|x| x.parse().ok())
        .ok_or_else(|| anyhow!("no status in {head}"))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked {
        dechunk(&raw[head_end..])?
    } else {
        raw[head_end..].to_vec()
    };
    if status == 200 && format == "json" {
        let v: Value = serde_json::from_slice(&body).context("the JSON export does not parse")?;
        let items = v["analysisHistory"].as_array().map(Vec::len);
        ensure!(items == Some(n), "the export holds {items:?} analyses, not {n}");
    }
    if status == 200 && format != "json" {
        ensure!(body.starts_with(b"PK"), "a {format} export that is not a ZIP");
    }
    Ok(Export {
        format: format.to_owned(),
        n,
        reader,
        status,
        bytes: body.len(),
        secs,
        first_byte_secs: first_byte.map_or(f64::NAN, |d| d.as_secs_f64()),
        svc_cpu_ns,
        emu_cpu_ticks,
        before_kib,
        peak_kib,
        hwm_reset,
    })
}

fn log_export(e: &Export) {
    eprintln!(
        "load: gdpr: export {} of {:>6} ({}) HTTP {}: {:.1} MiB in {:.2} s (first byte {:.3} s), \
         service CPU {:.0} ms, RSS {} KiB → peak {} KiB (+{:.1} MiB){}",
        e.format,
        e.n,
        if e.reader == Reader::Fast {
            "fast reader"
        } else {
            "slow reader"
        },
        e.status,
        e.bytes as f64 / (1024.0 * 1024.0),
        e.secs,
        e.first_byte_secs,
        e.svc_cpu_ns as f64 / 1e6,
        e.before_kib,
        e.peak_kib,
        e.rise_mib(),
        if e.hwm_reset {
            ""
        } else {
            " (VmHWM not reset: samples only)"
        }
    );
}

struct FormatResult {
    format: String,
    /// Why it was not measured.
    skipped: Option<String>,
    runs: Vec<Export>,
}

impl FormatResult {
    fn of(&self, n: usize, reader: Reader) -> impl Iterator<Item = &Export> {
        self.runs.iter().filter(move |e| e.n == n && e.reader == reader)
    }
    fn median_of(&self, n: usize, f: impl Fn(&Export) -> f64) -> f64 {
        super::median(&self.of(n, Reader::Fast).map(f).collect::<Vec<_>>())
    }
    fn wall_ratio(&self) -> f64 {
        self.median_of(SMALL, Export::wall_us_per_doc) / self.median_of(LARGE, Export::wall_us_per_doc)
    }
    fn cpu_ratio(&self) -> f64 {
        self.median_of(SMALL, Export::cpu_us_per_doc) / self.median_of(LARGE, Export::cpu_us_per_doc)
    }
    /// The largest rise of RSS over the exports of the large account.
    fn max_rise(&self, reader: Reader) -> f64 {
        self.of(LARGE, reader).map(Export::rise_mib).fold(0.0, f64::max)
    }
}

/// Both accounts, every format: warm-up, `EXPORT_ROUNDS` × (large once, small
/// `SMALL_PER_ROUND` times) with a fast reader, then the large one with a slow reader.
async fn exports(emulator: &str, emulator_pid: Option<u32>) -> Result<Vec<FormatResult>> {
    let large = Account::create("bench-export-10k", emulator, LARGE).await?;
    let small = Account::create("bench-export-1k", emulator, SMALL).await?;
    let svc_large = large.service("service-gdpr-export-10k.log").await?;
    let svc_small = small.service("service-gdpr-export-1k.log").await?;
    let mut out = Vec::new();
    for format in formats() {
        let run = |acc: &Account, svc: &Service, n: usize, reader: Reader| {
            let (addr, pid, tok, format) = (svc.addr, svc.pid(), acc.token.clone(), format.clone());
            async move { export_once(addr, pid, emulator_pid, &tok, &format, n, reader).await }
        };
        // Warm-up (also finds out whether the format exists).
        let probe = run(&small, &svc_small, SMALL, Reader::Fast).await?;
        if probe.status != 200 {
            eprintln!(
                "load: gdpr: export format={format} answered HTTP {}: skipped",
                probe.status
            );
            out.push(FormatResult {
                skipped: Some(format!(
                    "HTTP {} (format not supported on this build)",
                    probe.status
                )),
                format,
                runs: Vec::new(),
            });
            continue;
        }
        run(&large, &svc_large, LARGE, Reader::Fast).await?;
        let mut runs = Vec::new();
        for _ in 0..EXPORT_ROUNDS {
            let e = run(&large, &svc_large, LARGE, Reader::Fast).await?;
            log_export(&e);
            runs.push(e);
            for _ in 0..SMALL_PER_ROUND {
                let e = run(&small, &svc_small, SMALL, Reader::Fast).await?;
                log_export(&e);
                runs.push(e);
            }
        }
        let e = run(&large, &svc_large, LARGE, Reader::Slow).await?;
        log_export(&e);
        runs.push(e);
        for e in &runs {
            ensure!(
                e.status == 200,
                "export {format} of {} answered HTTP {}",
                e.n,
                e.status
            );
        }
        out.push(FormatResult {
            format,
            skipped: None,
            runs,
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Erasure

#[derive(Clone, Copy, PartialEq)]
enum Eraser {
    Service,
    RawSequential,
    RawConcurrent,
}

impl Eraser {
    fn label(self) -> &'static str {
        match self {
            Self::Service => "DELETE /v1/me (service)",
            Self::RawSequential => "firestore crate: Commit of 500 deletes, 1 at a time",
            Self::RawConcurrent => "firestore crate: Commit of 500 deletes, 4 at a time",
        }
    }
}

struct Erase {
    eraser: Eraser,
    docs: usize,
    secs: f64,
    svc_cpu_ns: u64,
    emu_cpu_ticks: u64,
    /// Listing the account's documents through the crate, as the service does (pages of
    /// 1,000): each page's time (raw runs only).
    list_pages: Vec<f64>,
    /// The same listing as one query (raw runs only).
    list_one_secs: Option<f64>,
    seed_secs: f64,
}

/// Every document under the user, by name, as the service's store lists them (pages of
/// `page`); the time each page took.
async fn descendants(db: &FirestoreDb, user_name: &str, page: u32) -> Result<(Vec<String>, Vec<f64>)> {
    let mut names: Vec<String> = Vec::new();
    let mut times = Vec::new();
    loop {
        let t0 = Instant::now();
        let mut select = db
            .fluent()
            .select()
            .fields(["__name__"])
            .from("")
            .parent(user_name)
            .all_descendants()
            .order(|_| {
                vec![FirestoreQueryOrder::new(
                    "__name__".into(),
                    FirestoreQueryDirection::Ascending,
                )]
            })
            .limit(page);
        if let Some(last) = names.last() {
            let reference = proto::Value {
                value_type: Some(ValueType::ReferenceValue(last.clone())),
            };
            select = select.start_at(FirestoreQueryCursor::AfterValue(vec![FirestoreValue::from(
                reference,
            )]));
        }
        let docs = select.query().await?;
        times.push(t0.elapsed().as_secs_f64());
        let full = docs.len() >= page as usize;
        names.extend(docs.into_iter().map(|d| d.name));
        if !full {
            return Ok((names, times));
        }
    }
}

async fn raw_delete(db: &FirestoreDb, names: Vec<String>, concurrency: usize) -> Result<()> {
    let chunks: Vec<Vec<String>> = names.chunks(BATCH).map(<[String]>::to_vec).collect();
    futures::stream::iter(chunks)
        .map(|chunk| async move {
            let writes = chunk
                .into_iter()
                .map(|name| proto::Write {
                    operation: Some(proto::write::Operation::Delete(name)),
                    ..Default::default()
                })
                .collect();
            db.client()
                .get()
                .commit(proto::CommitRequest {
                    database: db.get_database_path().clone(),
                    writes,
                    transaction: Vec::new(),
                    request_options: None,
                })
                .await
                .map_err(|s| anyhow!("commit: {s}"))?;
            Ok::<_, anyhow::Error>(())
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

async fn erase_once(eraser: Eraser, emulator: &str, emulator_pid: Option<u32>) -> Result<Erase> {
    let seed_started = Instant::now();
    let acc = Account::create("bench-erase", emulator, LARGE).await?;
    let seed_secs = seed_started.elapsed().as_secs_f64();
    let db = acc.db().await?;
    let user_name = format!("{}/users/{}", db.get_documents_path(), acc.uid);
    let svc = match eraser {
        Eraser::Service => Some(acc.service("service-gdpr-erase.log").await?),
        _ => None,
    };
    // The same documents either way: listed (timed: the service lists too), then the user.
    let (mut names, list_pages) = descendants(&db, &user_name, 1_000).await?;
    let list_one_secs = if svc.is_none() {
        let t0 = Instant::now();
        let (all, _) = descendants(&db, &user_name, 50_000).await?;
        ensure!(all == names, "the one-query listing differs from the paged one");
        Some(t0.elapsed().as_secs_f64())
    } else {
        None
    };
    names.push(user_name.clone());
    let docs = names.len();
    ensure!(docs > LARGE, "only {docs} documents seeded");
    tokio::time::sleep(Duration::from_secs(1)).await;

    let svc_pid = svc.as_ref().map(Service::pid);
    let cpu0 = svc_pid.map_or(0, cpu_ns);
    let emu0 = emulator_pid.and_then(cpu_ticks).unwrap_or(0);
    let t0 = Instant::now();
    match (&svc, eraser) {
        (Some(svc), _) => {
            let erased = http_json(
                reqwest::Client::new()
                    .delete(svc.url("/v1/me"))
                    .bearer_auth(&acc.token)
                    .timeout(LONG_TIMEOUT),
                200,
            )
            .await
            .context("DELETE /v1/me")?;
            ensure!(
                erased["deleted"]["analyses"] == LARGE,
                "the erasure reports {erased}"
            );
        }
        (None, Eraser::RawConcurrent) => raw_delete(&db, names, ERASE_CONCURRENCY).await?,
        (None, _) => raw_delete(&db, names, 1).await?,
    }
    let secs = t0.elapsed().as_secs_f64();
    let svc_cpu_ns = svc_pid.map_or(0, cpu_ns).saturating_sub(cpu0);
    let emu_cpu_ticks = emulator_pid.and_then(cpu_ticks).unwrap_or(0).saturating_sub(emu0);
    let (left, _) = descendants(&db, &user_name, 1_000).await?;
    ensure!(
        left.is_empty(),
        "{} documents left after {}",
        left.len(),
        eraser.label()
    );
    let e = Erase {
        eraser,
        docs,
        secs,
        svc_cpu_ns,
        emu_cpu_ticks,
        list_pages: if svc_pid.is_none() { list_pages } else { Vec::new() },
        list_one_secs,
        seed_secs,
    };
    eprintln!(
        "load: gdpr: erase {} documents, {}: {:.3} s (service CPU {:.0} ms, emulator CPU {:.2} s)",
        e.docs,
        eraser.label(),
        e.secs,
        e.svc_cpu_ns as f64 / 1e6,
        e.emu_cpu_ticks as f64 / super::TICKS_PER_SEC,
    );
    Ok(e)
}

async fn erasures(emulator: &str, emulator_pid: Option<u32>) -> Result<Vec<Erase>> {
    let order = [
        Eraser::RawConcurrent,
        Eraser::RawSequential,
        Eraser::Service,
        Eraser::Service,
        Eraser::RawSequential,
        Eraser::RawConcurrent,
    ];
    // The emulator's JIT warms up over the first runs (the first baseline ran 3× slower than
    // the last): one untimed run of each kind first.
    for e in [Eraser::RawConcurrent, Eraser::Service] {
        erase_once(e, emulator, emulator_pid).await?;
    }
    let mut out = Vec::new();
    for e in order {
        out.push(erase_once(e, emulator, emulator_pid).await?);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Report

pub struct Gdpr {
    exports: Vec<FormatResult>,
    erasures: Vec<Erase>,
}

pub async fn run(emulator: &str, emulator_pid: Option<u32>) -> Result<Gdpr> {
    // `LOAD_BENCH_GDPR=export|erase`: one half only (default both).
    let part = std::env::var("LOAD_BENCH_GDPR").unwrap_or_default();
    let exports = match part.as_str() {
        "erase" => Vec::new(),
        _ => exports(emulator, emulator_pid).await?,
    };
    let erasures = match part.as_str() {
        "export" => Vec::new(),
        _ => erasures(emulator, emulator_pid).await?,
    };
    Ok(Gdpr { exports, erasures })
}

impl Gdpr {
    fn mean_secs(&self, eraser: Eraser) -> f64 {
        let v: Vec<f64> = self
            .erasures
            .iter()
            .filter(|e| e.eraser == eraser)
            .map(|e| e.secs)
            .collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    }

    /// Service ÷ baseline erasure time; the baseline is the concurrent one (the service's own
    /// concurrency), the sequential one beside it.
    fn erase_ratios(&self) -> (f64, f64) {
        let svc = self.mean_secs(Eraser::Service);
        (
            svc / self.mean_secs(Eraser::RawConcurrent),
            svc / self.mean_secs(Eraser::RawSequential),
        )
    }

    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(
            md,
            "GDPR export: accounts of {LARGE} and {SMALL} analyses (~2.3 KiB each, seeded directly), each in its own \
             project and served by its own service process; RSS rise = peak (VmRSS sampled every 2 ms, and VmHWM \
             after a clear_refs reset) − VmRSS just before; slow reader: {} KiB every {} ms.\n",
            SLOW_READ >> 10,
            SLOW_PAUSE.as_millis()
        );
        md.push_str(
            "| format | analyses | reader | MiB | s | first byte s | µs/analysis (wall) | service CPU µs/analysis | emulator CPU s | RSS before MiB | RSS rise MiB |\n\
             |---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for f in &self.exports {
            if let Some(why) = &f.skipped {
                let _ = writeln!(md, "| {} | – | – | skipped: {why} | | | | | | | |", f.format);
                continue;
            }
            for e in &f.runs {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {:.1} | {:.3} | {:.3} | {:.1} | {:.1} | {:.2} | {:.1} | {:.1} |",
                    e.format,
                    e.n,
                    if e.reader == Reader::Fast { "fast" } else { "slow" },
                    e.bytes as f64 / (1024.0 * 1024.0),
                    e.secs,
                    e.first_byte_secs,
                    e.wall_us_per_doc(),
                    e.cpu_us_per_doc(),
                    e.emu_cpu_ticks as f64 / super::TICKS_PER_SEC,
                    e.before_kib as f64 / 1024.0,
                    e.rise_mib(),
                );
            }
            let _ = writeln!(
                md,
                "\n{}: per analysis, {SMALL} ÷ {LARGE} (medians of the fast runs): wall {:.2}, service CPU {:.2}; \
                 largest RSS rise for {LARGE}: {:.1} MiB (fast reader), {:.1} MiB (slow reader).\n",
                f.format,
                f.wall_ratio(),
                f.cpu_ratio(),
                f.max_rise(Reader::Fast),
                f.max_rise(Reader::Slow),
            );
        }
        if self.erasures.is_empty() {
            return md; // LOAD_BENCH_GDPR=export
        }
        md.push_str(
            "GDPR erasure of a freshly seeded account per run (order as listed):\n\n\
             | eraser | documents | s | service CPU s | emulator CPU s | listing via crate, pages of 1,000: total s (first / last page ms) | listing as one query s | seeding s |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for e in &self.erasures {
            let _ = writeln!(
                md,
                "| {} | {} | {:.3} | {:.2} | {:.2} | {} | {} | {:.1} |",
                e.eraser.label(),
                e.docs,
                e.secs,
                e.svc_cpu_ns as f64 / 1e9,
                e.emu_cpu_ticks as f64 / super::TICKS_PER_SEC,
                match (e.list_pages.first(), e.list_pages.last()) {
                    (Some(a), Some(b)) => format!(
                        "{:.3} ({:.0} / {:.0})",
                        e.list_pages.iter().sum::<f64>(),
                        a * 1e3,
                        b * 1e3
                    ),
                    _ => "–".to_owned(),
                },
                e.list_one_secs.map_or("–".to_owned(), |s| format!("{s:.3}")),
                e.seed_secs,
            );
        }
        let (conc, seq) = self.erase_ratios();
        let _ = writeln!(
            md,
            "\nErasure: service {:.3} s (mean) vs crate {:.3} s with 4 commits in flight ({conc:.2}×) and {:.3} s one \
             at a time ({seq:.2}×).\n",
            self.mean_secs(Eraser::Service),
            self.mean_secs(Eraser::RawConcurrent),
            self.mean_secs(Eraser::RawSequential),
        );
        md
    }

    pub fn bars(&self) -> Vec<Bar> {
        let mut bars = Vec::new();
        for f in &self.exports {
            if let Some(why) = &f.skipped {
                bars.push(bar(
                    &format!("GDPR export ({}) of {LARGE} analyses: RSS rise", f.format),
                    why.clone(),
                    &format!("< {EXPORT_RSS_BAR_MIB} MiB"),
                    None,
                ));
                continue;
            }
            let (fast, slow) = (f.max_rise(Reader::Fast), f.max_rise(Reader::Slow));
            bars.push(bar(
                &format!(
                    "GDPR export ({}) of {LARGE} analyses: RSS rise (fast / slow reader)",
                    f.format
                ),
                format!("{fast:.1} / {slow:.1} MiB"),
                &format!("< {EXPORT_RSS_BAR_MIB} MiB"),
                Some(fast < EXPORT_RSS_BAR_MIB && slow < EXPORT_RSS_BAR_MIB),
            ));
            let (wall, cpu) = (f.wall_ratio(), f.cpu_ratio());
            bars.push(bar(
                &format!(
                    "GDPR export ({}): per-analysis cost {SMALL} ÷ {LARGE} (issue #8)",
                    f.format
                ),
                format!("wall {wall:.2}, service CPU {cpu:.2}"),
                "≤ 1 within noise (PASS if ≤ 1.10)",
                Some(wall <= 1.10 && cpu <= 1.10),
            ));
            // The other direction: does the large export cost more per analysis (superlinear)?
            bars.push(bar(
                &format!(
                    "GDPR export ({}): per-analysis cost {LARGE} ÷ {SMALL} (linear scaling)",
                    f.format
                ),
                format!("wall {:.2}, service CPU {:.2}", 1.0 / wall, 1.0 / cpu),
                "≤ 1 within noise (PASS if ≤ 1.10)",
                Some(1.0 / wall <= 1.10 && 1.0 / cpu <= 1.10),
            ));
        }
        if self.erasures.is_empty() {
            return bars; // LOAD_BENCH_GDPR=export
        }
        let (conc, seq) = self.erase_ratios();
        bars.push(bar(
            &format!("GDPR erase of {LARGE} analyses ÷ crate's batched deletes (4 in flight)"),
            format!("{conc:.2}× ({seq:.2}× of 1 in flight)"),
            &format!("≤ {ERASE_BAR}×"),
            Some(conc <= ERASE_BAR),
        ));
        // Informative: a baseline that has to find the names too (as the service does).
        let listing: Vec<f64> = self.erasures.iter().filter_map(|e| e.list_one_secs).collect();
        if !listing.is_empty() {
            let list = listing.iter().sum::<f64>() / listing.len() as f64;
            let svc = self.mean_secs(Eraser::Service);
            let mut informative = bar(
                &format!(
                    "GDPR erase of {LARGE} analyses ÷ (crate's one listing + batched deletes, 4 in flight)"
                ),
                format!(
                    "{:.2}× (listing alone {list:.3} s = {:.2}× of the deletes)",
                    svc / (list + self.mean_secs(Eraser::RawConcurrent)),
                    list / self.mean_secs(Eraser::RawConcurrent)
                ),
                "–",
                None,
            );
            informative.verdict = "informative";
            bars.push(informative);
        }
        bars
    }
}

/// `LOAD_BENCH_ONLY=gdpr`: these scenarios alone, into `results-gdpr.md`.
pub async fn only_report(emulator: &str, emulator_pid: Option<u32>) -> Result<()> {
    let started = Instant::now();
    let g = run(emulator, emulator_pid).await?;
    let mut md = format!(
        "Machine: {} cores ({}); GDPR scenarios only, {:.0} s.\n\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        super::cpu_model(),
        started.elapsed().as_secs_f64()
    );
    md.push_str(&g.markdown());
    md.push_str("| bar | measured | target | verdict |\n|---|---|---|---|\n");
    for b in g.bars() {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            b.name, b.measured, b.target, b.verdict
        );
    }
    let path = out_dir().join("results-gdpr.md");
    std::fs::write(&path, &md)?;
    println!("\n{md}\n(also in {})", path.display());
    Ok(())
}
