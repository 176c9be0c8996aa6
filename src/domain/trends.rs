//! Trends (`GET /v1/analyses/trends`) from per-day counters, so a window of up
//! to 365 days costs one query of at most that many small documents, never a
//! read of every analysis in it.
//!
//! `users/{uid}/trendDays/{YYYY-MM-DD}` (under the user, so erasure finds it)
//! counts the user's existing analyses created that UTC day: `total`,
//! `byStatus.<status>`, `byPersona.<key>`, and for the averages `withResults`,
//! `confidenceSum`, `processingTimeMsSum`. Every write that changes what an
//! analysis contributes moves them with increment transforms in its own
//! transaction: the create (+), the PATCH that completes or fails it (status
//! and results move), the delete (−). An analysis carries `trendDay` (the day
//! document holding it): only such analyses are counted, which lets the
//! backfill migration count older ones exactly once.
//!
//! Why counters and not aggregation queries: an aggregation returns one number
//! per query, so `byDay` would cost a query per day (365) and `byPersona` one
//! per persona — whose names are not known without reading the analyses.
//!
//! Persona names are arbitrary (dots, backticks, `__x__`): as map keys they are
//! `p` + the hex of their UTF-8 bytes, a plain field name Firestore always
//! accepts (at most 801 characters for 100 characters of input).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::analyses::{self, Analysis};
use super::freshness::UserCache;
use super::users;
use crate::cache::{self, CacheBudget, Share};
use crate::error::{AppError, AppResult};
use crate::metrics::Metrics;
use crate::store::{self, DocPath, Fields, Op, Query, Store, Transform, Write, value};

pub const COLLECTION: &str = "trendDays";
/// The field of an analysis naming the day document that counts it.
pub const MARKER: &str = "trendDay";

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DayCount {
    pub date: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Trends {
    pub days: u32,
    pub total: u64,
    pub by_status: BTreeMap<String, u64>,
    pub by_persona: BTreeMap<String, u64>,
    pub by_day: Vec<DayCount>,
    pub average_confidence: Option<f64>,
    pub average_processing_time_ms: Option<f64>,
}

/// One day's counters, as read back.
#[derive(Debug, Clone, Default, Serialize)]
struct Day {
    date: String,
    total: i64,
    by_status: BTreeMap<String, i64>,
    /// Decoded persona names.
    by_persona: BTreeMap<String, i64>,
    with_results: i64,
    confidence_sum: f64,
    processing_time_ms_sum: f64,
}

/// The counter documents of the last `days` days up to `today`, cached per user.
#[derive(Debug, Serialize)]
struct Window {
    today: String,
    days: u32,
    list: Vec<Day>,
}

// ---- writes ----

fn persona_key(name: &str) -> String {
    format!("p{}", hex::encode(name.as_bytes()))
}

fn persona_name(key: &str) -> Option<String> {
    let bytes = hex::decode(key.strip_prefix('p')?).ok()?;
    String::from_utf8(bytes).ok()
}

/// The UTC day (`YYYY-MM-DD`) of an instant.
pub fn day_of(t: jiff::Timestamp) -> String {
    t.to_zoned(jiff::tz::TimeZone::UTC).date().to_string()
}

fn day_path(user: &DocPath, day: &str) -> AppResult<DocPath> {
    Ok(user.child(COLLECTION, day)?)
}

/// Deltas of one day document: integer counters and the two sums.
#[derive(Default)]
struct Deltas {
    ints: BTreeMap<String, i64>,
    confidence: f64,
    processing_ms: f64,
}

impl Deltas {
    /// Adds `sign` × what `a` contributes (with `status` and `results` as given).
    fn add(&mut self, a: &Analysis, sign: i64) {
        let mut int = |field: String, by: i64| *self.ints.entry(field).or_default() += by;
        int("total".into(), sign);
        int(format!("byStatus.{}", a.metadata.status.as_str()), sign);
        int(format!("byPersona.{}", persona_key(&a.input.persona)), sign);
        if let Some(r) = &a.results {
            int("withResults".into(), sign);
            self.confidence = saturating_add(self.confidence, sign as f64 * r.confidence);
            self.processing_ms = saturating_add(self.processing_ms, sign as f64 * r.processing_time_ms);
        }
    }

    /// The write applying these deltas to `path` (creating it if missing).
    fn write(self, path: DocPath, day: &str) -> Write {
        let mut fields = Fields::new();
        fields.insert("day".into(), value::string(day));
        let mut w = Write::merge(path, fields, vec!["day".into()]);
        for (field, by) in self.ints {
            if by != 0 {
                w = w.increment(&field, by);
            }
        }
        for (field, by) in [
            ("confidenceSum", self.confidence),
            ("processingTimeMsSum", self.processing_ms),
        ] {
            if by != 0.0 {
                w.transforms
                    .push((field.into(), Transform::Increment(value::double(by))));
            }
        }
        w
    }
}

/// `a + b`, finite: a sum of values stored before the input bounds (up to
/// `f64::MAX` each) saturates instead of becoming infinite, and a non-finite
/// `b` adds nothing.
fn saturating_add(a: f64, b: f64) -> f64 {
    if b.is_finite() {
        (a + b).clamp(-f64::MAX, f64::MAX)
    } else {
        a
    }
}

/// A day's sum of a value bounded by `max` per analysis, over `n` analyses, as
/// at most `n × max`: sums holding values from before the input bounds, or
/// infinity or NaN, still give finite averages within the bounds.
fn bounded_sum(sum: f64, n: i64, max: f64) -> f64 {
    let hi = (n.max(0) as f64 * max).min(f64::MAX);
    if sum.is_nan() { hi } else { sum.clamp(0.0, hi) }
}

/// For a create: the fields of the new analysis get the marker, and the write
/// counting it on its day.
pub fn count_new(user: &DocPath, a: &Analysis, fields: &mut Fields) -> AppResult<Write> {
    let day = day_of(a.metadata.created_at.0);
    fields.insert(MARKER.into(), value::string(day.clone()));
    let mut d = Deltas::default();
    d.add(a, 1);
    Ok(d.write(day_path(user, &day)?, &day))
}

/// The day document counting the stored analysis `doc`, if it is counted.
fn counted_day(doc: &store::Doc) -> Option<String> {
    doc.field(MARKER).and_then(value::as_str).map(str::to_owned)
}

/// For a completion: moves `before`'s status (and results) to `after`'s, when counted.
pub fn count_transition(
    user: &DocPath,
    doc: &store::Doc,
    before: &Analysis,
    after: &Analysis,
) -> AppResult<Option<Write>> {
    let Some(day) = counted_day(doc) else {
        return Ok(None);
    };
    let mut d = Deltas::default();
    d.add(before, -1);
    d.add(after, 1);
    Ok(Some(d.write(day_path(user, &day)?, &day)))
}

/// For a delete: uncounts the stored analysis, when counted.
pub fn count_removal(user: &DocPath, doc: &store::Doc, a: &Analysis) -> AppResult<Option<Write>> {
    let Some(day) = counted_day(doc) else {
        return Ok(None);
    };
    let mut d = Deltas::default();
    d.add(a, -1);
    Ok(Some(d.write(day_path(user, &day)?, &day)))
}

// ---- reads ----

fn window_query(user: &DocPath, first: &str, last: &str) -> Query {
    Query::collection(Some(user), COLLECTION)
        .filter("day", Op::Ge, value::string(first))
        .filter("day", Op::Le, value::string(last))
}

pub fn query_shapes() -> Vec<(&'static str, Query)> {
    let Ok(u) = DocPath::root(users::COLLECTION, "example") else {
        return Vec::new();
    };
    vec![
        (
            "trends: days of a window",
            window_query(&u, "2026-01-01", "2026-01-31"),
        ),
        ("trends backfill: every analysis", backfill_query(None)),
    ]
}

fn decode_day(doc: &store::Doc) -> Day {
    let int = |f: &str| doc.field(f).and_then(value::as_i64).unwrap_or(0);
    let float = |f: &str| doc.field(f).and_then(value::as_f64).unwrap_or(0.0);
    let counts = |f: &str, decode: fn(&str) -> Option<String>| -> BTreeMap<String, i64> {
        doc.field(f)
            .and_then(value::as_map)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((decode(k)?, value::as_i64(v)?)))
                    .collect()
            })
            .unwrap_or_default()
    };
    Day {
        date: doc.id().to_owned(),
        total: int("total"),
        by_status: counts("byStatus", |k| Some(k.to_owned())),
        by_persona: counts("byPersona", persona_name),
        with_results: int("withResults"),
        confidence_sum: float("confidenceSum"),
        processing_time_ms_sum: float("processingTimeMsSum"),
    }
}

/// The first day of a window of `days` days ending `today`.
fn first_day(today: jiff::civil::Date, days: u32) -> AppResult<jiff::civil::Date> {
    today
        .checked_sub(jiff::Span::new().days(i64::from(days) - 1))
        .map_err(AppError::internal)
}

/// Sums the days of `list` within the last `days` days up to `today`.
fn summarize(list: &[Day], today: jiff::civil::Date, days: u32) -> AppResult<Trends> {
    let first = first_day(today, days)?;
    let first_s = first.to_string();
    let mut t = Trends {
        days,
        total: 0,
        by_status: BTreeMap::new(),
        by_persona: BTreeMap::new(),
        by_day: Vec::with_capacity(days as usize),
        average_confidence: None,
        average_processing_time_ms: None,
    };
    let pos = |n: i64| u64::try_from(n).unwrap_or(0);
    let (mut with_results, mut conf, mut time) = (0i64, 0.0, 0.0);
    let mut per_day: BTreeMap<&str, u64> = BTreeMap::new();
    for d in list.iter().filter(|d| d.date >= first_s) {
        t.total += pos(d.total);
        per_day.insert(&d.date, pos(d.total));
        for (s, n) in &d.by_status {
            *t.by_status.entry(s.clone()).or_default() += pos(*n);
        }
        for (p, n) in &d.by_persona {
            *t.by_persona.entry(p.clone()).or_default() += pos(*n);
        }
        with_results += d.with_results.max(0);
        conf += bounded_sum(d.confidence_sum, d.with_results, analyses::MAX_CONFIDENCE);
        time = saturating_add(
            time,
            bounded_sum(
                d.processing_time_ms_sum,
                d.with_results,
                analyses::MAX_PROCESSING_TIME_MS,
            ),
        );
    }
    // Counters that went back to zero (deleted analyses) are not listed.
    t.by_status.retain(|_, n| *n > 0);
    t.by_persona.retain(|_, n| *n > 0);
    if with_results > 0 {
        t.average_confidence = Some(conf / with_results as f64);
        t.average_processing_time_ms = Some(time / with_results as f64);
    }
    let mut day = first;
    for _ in 0..days {
        let date = day.to_string();
        t.by_day.push(DayCount {
            count: per_day.get(date.as_str()).copied().unwrap_or(0),
            date,
        });
        day = day.tomorrow().map_err(AppError::internal)?;
    }
    Ok(t)
}

/// Trends from the counters, with one cached window per user (15 min): the
/// longest asked for today, so every `days` up to it is served from one entry.
#[derive(Clone)]
pub struct TrendCounters {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    cache: UserCache<(), Window>,
}

impl TrendCounters {
    pub fn new(store: Arc<dyn Store>, metrics: Arc<Metrics>, budget: &CacheBudget) -> Self {
        Self {
            store,
            metrics,
            cache: UserCache::new(
                "trends",
                Duration::from_secs(15 * 60),
                budget.bytes(Share::Trends),
                budget.bytes(Share::Generations) / 4,
                &[()],
                |w: &Window| cache::json_bytes(w),
            ),
        }
    }

    /// Drops this instance's cached window of `uid`.
    pub async fn invalidate(&self, uid: &str) {
        self.cache.invalidate(uid).await;
    }

    /// Drops every cached window on this instance.
    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }

    /// (entries, weighed bytes) of the cache.
    pub async fn cache_usage(&self) -> (u64, u64) {
        self.cache.usage().await
    }

    /// Counts over the last `days` UTC days (today included).
    pub async fn trends(&self, uid: &str, days: u32) -> AppResult<Arc<Trends>> {
        let today = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date();
        let today_s = today.to_string();
        let cached = self.cache.get(uid, &(), &self.metrics).await;
        let generation = self.cache.generation(uid).await;
        let window = match cached {
            Some(w) if w.today == today_s && w.days >= days => w,
            other => {
                let span = other
                    .filter(|w| w.today == today_s)
                    .map_or(days, |w| w.days.max(days));
                let user = users::Users::path(uid)?;
                let first = first_day(today, span)?.to_string();
                let docs = self.store.query(&window_query(&user, &first, &today_s)).await?;
                let w = Arc::new(Window {
                    today: today_s,
                    days: span,
                    list: docs.iter().map(decode_day).collect(),
                });
                self.cache.insert(uid, generation, (), w.clone()).await;
                w
            }
        };
        Ok(Arc::new(summarize(&window.list, today, days)?))
    }
}

// ---- backfill ----

/// Analyses read per page by the backfill; each costs up to two writes, within one commit.
const BACKFILL_PAGE: u32 = 200;

/// Every analysis of every user, a page at a time in document order.
fn backfill_query(after: Option<store::Cursor>) -> Query {
    Query::group(None, analyses::COLLECTION)
        .after(after)
        .limit(BACKFILL_PAGE)
}

/// Counts every analysis not counted yet (no `trendDay`), exactly once even
/// with writers or other instances running: each page's markers and counters
/// go in one commit whose writes require the analyses unchanged since read;
/// a page that lost that race is read again. Returns how many were counted.
pub async fn backfill(store: &dyn Store) -> AppResult<u64> {
    let mut counted = 0u64;
    let mut after: Option<store::Cursor> = None;
    let mut conflicts = 0;
    loop {
        let q = backfill_query(after.clone());
        let docs = store.query(&q).await?;
        let Some(last) = docs.last() else {
            return Ok(counted);
        };
        let next = q.cursor_after(last);
        let (writes, n) = backfill_writes(&docs)?;
        if !writes.is_empty() {
            match store.commit(writes).await {
                Ok(_) => {}
                Err(store::StoreError::FailedPrecondition(_) | store::StoreError::Aborted(_))
                    if conflicts < 20 =>
                {
                    // An analysis changed meanwhile: read this page again.
                    conflicts += 1;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        counted += n;
        conflicts = 0;
        after = Some(next);
    }
}

/// The writes counting the uncounted analyses among `docs`: a marker per
/// analysis (requiring its update time) and one counter write per day document.
fn backfill_writes(docs: &[store::Doc]) -> AppResult<(Vec<Write>, u64)> {
    let mut per_day: BTreeMap<(DocPath, String), Deltas> = BTreeMap::new();
    let mut writes = Vec::new();
    for doc in docs {
        if counted_day(doc).is_some() {
            continue;
        }
        // Not an analysis of a user (or not decodable): nothing to count.
        let Some(user) = doc
            .path
            .parent()
            .filter(|u| u.collection_id() == users::COLLECTION)
        else {
            continue;
        };
        let Ok(a) = doc.decode::<Analysis>() else {
            continue;
        };
        let day = day_of(a.metadata.created_at.0);
        let mut fields = Fields::new();
        fields.insert(MARKER.into(), value::string(day.clone()));
        writes.push(
            Write::update(doc.path.clone(), fields, vec![MARKER.into()])
                .precondition(store::Precondition::UpdateTime(doc.update_time)),
        );
        per_day
            .entry((day_path(&user, &day)?, day))
            .or_default()
            .add(&a, 1);
    }
    let n = writes.len() as u64;
    writes.extend(per_day.into_iter().map(|((path, day), d)| d.write(path, &day)));
    Ok((writes, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persona_keys_round_trip_whatever_the_name() {
        for name in ["Founder", "a.b", "`x`", "__name__", "ñ 😀", &"é".repeat(100)] {
            let k = persona_key(name);
            assert!(k.len() <= 801);
            assert!(k.chars().all(|c| c.is_ascii_alphanumeric()), "{k}");
            assert_eq!(persona_name(&k).as_deref(), Some(name));
        }
        assert_eq!(persona_name("zz"), None);
    }

    #[test]
    fn summary_zero_fills_and_drops_zero_counters() -> AppResult<()> {
        let today = jiff::civil::date(2026, 3, 10);
        let day = |date: &str, total, persona: &str| Day {
            date: date.into(),
            total,
            by_status: BTreeMap::from([("completed".into(), total), ("failed".into(), 0)]),
            by_persona: BTreeMap::from([(persona.into(), total)]),
            with_results: total,
            confidence_sum: 0.5 * total as f64,
            processing_time_ms_sum: 100.0 * total as f64,
        };
        let list = vec![
            day("2026-03-01", 5, "old"),
            day("2026-03-09", 2, "A"),
            day("2026-03-10", 1, "A"),
        ];
        let t = summarize(&list, today, 3)?;
        assert_eq!(t.total, 3);
        assert_eq!(t.by_status, BTreeMap::from([("completed".into(), 3)]));
        assert_eq!(t.by_persona, BTreeMap::from([("A".into(), 3)]));
        let dates: Vec<(&str, u64)> = t.by_day.iter().map(|d| (d.date.as_str(), d.count)).collect();
        assert_eq!(
            dates,
            vec![("2026-03-08", 0), ("2026-03-09", 2), ("2026-03-10", 1)]
        );
        assert_eq!(t.average_confidence, Some(0.5));
        assert_eq!(t.average_processing_time_ms, Some(100.0));
        let empty = summarize(&[], today, 1)?;
        assert_eq!((empty.total, empty.average_confidence), (0, None));
        Ok(())
    }
}
