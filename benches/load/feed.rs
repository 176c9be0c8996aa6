//! The invalidation feed (`src/domain/feed/`): what it adds to a write, and
//! how long a change on one instance takes to reach another's warm cache.
//! `LOAD_BENCH_ONLY=feed cargo bench --bench load` runs only this.
//!
//! 1. Write cost, on the store directly (sequential, emulator): a one-field
//!    profile update alone; the same with a feed entry in its commit (what a
//!    revocation, role or plan change pays); a head increment (the
//!    announcement after every published commit); an entry in a commit of its
//!    own (what a list-only write pays before its announcement); and head
//!    increments from 32 concurrent writers over the 16 shards.
//! 2. Propagation, between two release binaries A and B on one emulator:
//!    B's profile cache is warm; A changes the name (`PATCH /v1/me`); B is
//!    polled every millisecond until it answers the new name. Then the same
//!    for a revoked API key (B answers 401). Timed from A's answer to B's
//!    first changed answer, so it includes the head increment, the listen
//!    stream, B's catch-up query and the eviction.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, ensure};
use funnelflow::store::firestore::FirestoreStore;
use funnelflow::store::{DocPath, Fields, Store, Write, value};
use serde_json::json;

use super::{REQUEST_TIMEOUT, Service, http_json, out_dir, service_env, token};

const WRITES: usize = 300;
const PROPAGATIONS: usize = 100;
const REVOCATIONS: usize = 40;
const CONCURRENT: usize = 32;

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

struct Stat {
    name: String,
    p50: f64,
    p99: f64,
    n: usize,
}

impl Stat {
    fn of(name: &str, mut ms: Vec<f64>) -> Self {
        Self {
            name: name.to_owned(),
            p50: pct(&mut ms, 0.5),
            p99: pct(&mut ms, 0.99),
            n: ms.len(),
        }
    }
}

fn entry(i: usize) -> Result<Write> {
    let mut f = Fields::new();
    f.insert("uid".into(), value::string(format!("bench-{i}")));
    f.insert("kind".into(), value::string("profile"));
    f.insert("keyIds".into(), value::array(vec![]));
    f.insert("origin".into(), value::string("bench"));
    f.insert("expireAt".into(), value::timestamp(value::now()));
    let path = DocPath::root("invalidations", &uuid::Uuid::new_v4().simple().to_string())
        .map_err(|e| anyhow!("{e}"))?;
    Ok(Write::set(path, f).server_time("at"))
}

fn head(shard: usize) -> Result<Write> {
    let path = DocPath::root("invalidationHeads", &(shard % 16).to_string()).map_err(|e| anyhow!("{e}"))?;
    Ok(Write::transform(path).increment("seq", 1))
}

/// Each variant once per round, round after round, so that the machine's
/// drifting load (2 shared cores) weighs on all of them alike.
async fn timed_rounds(
    store: &dyn Store,
    variants: &[&dyn Fn(usize) -> Result<Vec<Write>>],
) -> Result<Vec<Vec<f64>>> {
    let mut ms = vec![Vec::with_capacity(WRITES); variants.len()];
    for i in 0..WRITES + 20 {
        for (v, make) in variants.iter().enumerate() {
            let writes = make(i)?;
            let t = Instant::now();
            store.commit(writes).await.map_err(|e| anyhow!("commit: {e}"))?;
            if i >= 20 {
                ms[v].push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    Ok(ms)
}

async fn write_costs(emulator: &str) -> Result<Vec<Stat>> {
    let project = format!("bench-feed-w-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let store: Arc<dyn Store> = Arc::new(
        FirestoreStore::connect(&project, "(default)", Some(emulator), Duration::from_secs(10))
            .await
            .map_err(|e| anyhow!("connecting: {e}"))?,
    );
    let user = DocPath::root("users", "bench").map_err(|e| anyhow!("{e}"))?;
    let update = |i: usize| {
        let mut f = Fields::new();
        f.insert("name".into(), value::string(format!("n{i}")));
        Write::merge(user.clone(), f, vec!["name".into()])
    };
    let alone = |i: usize| Ok(vec![update(i)]);
    let with_entry = |i: usize| Ok(vec![update(i), entry(i)?]);
    let bump = |i: usize| Ok(vec![head(i)?]);
    let own = |i: usize| Ok(vec![entry(i)?]);
    let names = [
        "profile update alone",
        "profile update + feed entry, one commit",
        "head increment (announcement)",
        "feed entry alone (publish of a list-only write)",
    ];
    let rounds = timed_rounds(store.as_ref(), &[&alone, &with_entry, &bump, &own]).await?;
    let mut stats: Vec<Stat> = names.iter().zip(rounds).map(|(n, ms)| Stat::of(n, ms)).collect();
    // Concurrent announcements over the 16 shards.
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENT)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut ms = Vec::new();
                for i in 0..WRITES / 10 {
                    let writes = vec![head(w * 7 + i)?];
                    let t = Instant::now();
                    store.commit(writes).await.map_err(|e| anyhow!("commit: {e}"))?;
                    ms.push(t.elapsed().as_secs_f64() * 1e3);
                }
                Ok::<_, anyhow::Error>(ms)
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let per_sec = all.len() as f64 / started.elapsed().as_secs_f64();
    stats.push(Stat::of(
        &format!("head increment, {CONCURRENT} concurrent writers ({per_sec:.0}/s)"),
        all,
    ));
    Ok(stats)
}

async fn propagation(emulator: &str) -> Result<Vec<Stat>> {
    let project = format!("bench-feed-p-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let env = service_env(&project, emulator, "warn");
    let a = Service::spawn("service A (feed)", &env, "service-feed-a.log").await?;
    let b = Service::spawn("service B (feed)", &env, "service-feed-b.log").await?;
    let client = reqwest::Client::new();
    // Both feeds current before measuring.
    let started = Instant::now();
    for svc in [&a, &b] {
        loop {
            let text = client.get(svc.url("/metrics")).send().await?.text().await?;
            if text.lines().any(|l| l == "funnelflow_feed_current 1") {
                break;
            }
            ensure!(
                started.elapsed() < Duration::from_secs(60),
                "feed not current after 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let tok = token(&project, "bench-feed")?;
    let me_on = |svc: &Service| {
        client
            .get(svc.url("/v1/me"))
            .bearer_auth(&tok)
            .timeout(REQUEST_TIMEOUT)
    };
    http_json(me_on(&a), 200).await?;
    let mut profile_ms = Vec::new();
    for i in 0..PROPAGATIONS {
        let name = format!("name {i}");
        // B is warm (a cached profile with the old name).
        http_json(me_on(&b), 200).await?;
        http_json(
            client
                .patch(a.url("/v1/me"))
                .bearer_auth(&tok)
                .json(&json!({"name": name})),
            200,
        )
        .await?;
        let t = Instant::now();
        loop {
            if http_json(me_on(&b), 200).await?["name"] == name.as_str() {
                break;
            }
            ensure!(t.elapsed() < Duration::from_secs(10), "B never saw {name}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        profile_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let mut revoke_ms = Vec::new();
    for _ in 0..REVOCATIONS {
        let created = http_json(
            client
                .post(a.url("/v1/api-keys"))
                .bearer_auth(&tok)
                .json(&json!({"name": "k", "permissions": ["profile:read"]})),
            201,
        )
        .await?;
        let key = created["key"]
            .as_str()
            .ok_or_else(|| anyhow!("no key"))?
            .to_owned();
        let id = created["keyId"]
            .as_str()
            .ok_or_else(|| anyhow!("no keyId"))?
            .to_owned();
        let with_key = || client.get(b.url("/v1/me")).header("x-api-key", &key);
        for _ in 0..2 {
            http_json(with_key(), 200).await?;
        }
        let res = client
            .delete(a.url(&format!("/v1/api-keys/{id}")))
            .bearer_auth(&tok)
            .send()
            .await?;
        ensure!(res.status() == 204, "revoke: {}", res.status());
        let t = Instant::now();
        loop {
            let s = with_key().send().await?.status().as_u16();
            if s == 401 {
                break;
            }
            ensure!(s == 200, "B answered {s}");
            ensure!(t.elapsed() < Duration::from_secs(10), "B never refused the key");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        revoke_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(vec![
        Stat::of(
            "profile change A → B (PATCH /v1/me, cached GET /v1/me)",
            profile_ms,
        ),
        Stat::of("key revocation A → B (401 on B)", revoke_ms),
    ])
}

pub async fn run(emulator: &str) -> Result<String> {
    eprintln!("load: feed: write costs on the store");
    let writes = write_costs(emulator).await?;
    eprintln!("load: feed: propagation between two instances");
    let props = propagation(emulator).await?;
    let mut md = String::from("### Invalidation feed\n\n| what | p50 ms | p99 ms | n |\n|---|---|---|---|\n");
    for s in writes.iter().chain(&props) {
        md.push_str(&format!(
            "| {} | {:.2} | {:.2} | {} |\n",
            s.name, s.p50, s.p99, s.n
        ));
    }
    let alone = writes[0].p50;
    let with_entry = writes[1].p50;
    let bump = writes[2].p50;
    let own = writes[3].p50;
    md.push_str(&format!(
        "\nAdded to a write (p50): an entry in the same commit +{:.2} ms, then the head increment +{:.2} ms \
         (authorization writes: +{:.2} ms in all); a list-only write publishes after its commit: +{:.2} ms.\n",
        with_entry - alone,
        bump,
        with_entry - alone + bump,
        own + bump
    ));
    let path = out_dir().join("results-feed.md");
    std::fs::write(&path, &md)?;
    Ok(md)
}
