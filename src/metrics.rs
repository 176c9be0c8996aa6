//! Prometheus metrics: HTTP requests by route and status, store operation
//! latency by op, cache hits/misses by cache, rate-limit rejections.

use std::sync::Arc;
use std::time::Instant;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_latency: HistogramVec,
    pub store_latency: HistogramVec,
    pub cache_events: IntCounterVec,
    pub rate_limited: IntCounterVec,
    /// 1 while the invalidation feed is current, 0 while caches fall back to short TTLs.
    pub feed_current: IntGauge,
    /// Invalidation-feed events by kind (see `domain::feed`).
    pub feed_events: IntCounterVec,
    /// Seconds from an invalidation's commit on another instance to its eviction here.
    pub feed_lag: Histogram,
}

impl Metrics {
    pub fn new() -> Result<Arc<Self>, prometheus::Error> {
        let registry = Registry::new_custom(Some("funnelflow".into()), None)?;
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route, method and status"),
            &["route", "method", "status"],
        )?;
        let http_latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route and status",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ]),
            &["route", "status"],
        )?;
        let store_latency = HistogramVec::new(
            HistogramOpts::new(
                "store_operation_duration_seconds",
                "Store operation latency by operation",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
            ]),
            &["op", "outcome"],
        )?;
        let cache_events = IntCounterVec::new(
            Opts::new(
                "cache_requests_total",
                "Cache lookups by cache and result (hit/miss)",
            ),
            &["cache", "result"],
        )?;
        let rate_limited = IntCounterVec::new(
            Opts::new("rate_limit_rejections_total", "Requests refused by a rate limit"),
            &["policy"],
        )?;
        let feed_current = IntGauge::new(
            "feed_current",
            "1 while the invalidation feed is current; 0 while auth caches fall back to short TTLs",
        )?;
        let feed_events = IntCounterVec::new(
            Opts::new("feed_events_total", "Invalidation feed events by kind"),
            &["event"],
        )?;
        let feed_lag = Histogram::with_opts(
            HistogramOpts::new(
                "feed_propagation_seconds",
                "From an invalidation's commit on another instance to its eviction here",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 30.0,
            ]),
        )?;
        registry.register(Box::new(feed_current.clone()))?;
        registry.register(Box::new(feed_events.clone()))?;
        registry.register(Box::new(feed_lag.clone()))?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_latency.clone()))?;
        registry.register(Box::new(store_latency.clone()))?;
        registry.register(Box::new(cache_events.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        Ok(Arc::new(Self {
            registry,
            http_requests,
            http_latency,
            store_latency,
            cache_events,
            rate_limited,
            feed_current,
            feed_events,
            feed_lag,
        }))
    }

    pub fn cache_hit(&self, cache: &str) {
        self.cache_events.with_label_values(&[cache, "hit"]).inc();
    }

    pub fn cache_miss(&self, cache: &str) {
        self.cache_events.with_label_values(&[cache, "miss"]).inc();
    }

    pub fn feed_event(&self, event: &str) {
        self.feed_events.with_label_values(&[event]).inc();
    }

    pub fn observe_store(&self, op: &str, ok: bool, started: Instant) {
        self.store_latency
            .with_label_values(&[op, if ok { "ok" } else { "error" }])
            .observe(started.elapsed().as_secs_f64());
    }

    /// `route` is one of our route patterns (or `unmatched`) and `method` a fixed
    /// label: no client-chosen value may become a label (each would be a new series).
    pub fn observe_http(&self, route: &str, method: &'static str, status: u16, started: Instant) {
        let status = status.to_string();
        self.http_requests
            .with_label_values(&[route, method, &status])
            .inc();
        self.http_latency
            .with_label_values(&[route, &status])
            .observe(started.elapsed().as_secs_f64());
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
