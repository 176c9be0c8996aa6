//! Builds the application: store, services, HTTP server bound to a listener.
//! `main` and the tests both go through `Application::build`.

use std::net::TcpListener;
use std::sync::Arc;

use actix_cors::Cors;
use actix_web::dev::Server;
use actix_web::http::{Method, header};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use anyhow::Context;

use crate::auth::TokenVerifier;
use crate::cache::{CacheBudget, Share};
use crate::config::{Config, RateScope, StoreKind};
use crate::http;
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::store::Store;
use crate::store::deadline::{self, Deadlined};
use crate::store::embedded::EmbeddedStore;
use crate::store::instrumented::Instrumented;
use crate::store::lazy::LazyFirestore;

/// Headers a browser may read (API.md: CORS).
const EXPOSED_HEADERS: [&str; 7] = [
    "etag",
    "location",
    "x-request-id",
    "ratelimit",
    "ratelimit-policy",
    "retry-after",
    "idempotent-replayed",
];

/// Seconds in-flight requests get to finish after SIGTERM (Cloud Run allows 10).
const SHUTDOWN_GRACE_SECS: u64 = 8;

pub struct Application {
    port: u16,
    server: Server,
    /// `/metrics` alone, on `FUNNELFLOW_METRICS_PORT`, when configured.
    metrics: Option<(u16, Server)>,
    state: AppState,
    /// Keeps this instance counted while it serves (global rate limits).
    presence: Option<tokio::task::JoinHandle<()>>,
}

impl Application {
    /// Opens the store and binds `config.host:config.port` (port 0 picks a free one).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let metrics = Metrics::new().context("metrics registry")?;
        let store = open_store(&config, metrics.clone());
        Self::build_with_store(config, store, metrics).await
    }

    /// As `build`, with a store supplied by the caller (tests share one embedded store).
    pub async fn build_with_store(
        config: Config,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        if config.secret_is_default {
            tracing::warn!(
                "FUNNELFLOW_SECRET is not set: using the development secret (never do this in production)"
            );
        }
        let verifier = TokenVerifier::new(&config.auth, &config.project_id)
            .context("authentication setup")?
            .with_cache_bytes(CacheBudget::new(config.cache_bytes).bytes(Share::IdTokens));
        let config = Arc::new(config);
        let state = AppState::new(config.clone(), store, Arc::new(verifier), metrics)?;
        state.follow_feed();
        if config.migrate_on_start {
            // Firestore may still be down: then the next start (or `funnelflow migrate`) applies them.
            // Bounded like a request, so a store that is down or hangs delays serving little.
            let migrations = crate::domain::migrations::run(state.store.as_ref());
            match deadline::per_request(config.store_timeout, migrations).await {
                Ok(applied) if !applied.is_empty() => tracing::info!(?applied, "migrations applied"),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "migrations not applied; the store may be unavailable"),
            }
        }

        let presence = (config.rate_limit_scope == RateScope::Global).then(|| state.presence.clone().spawn());

        let listener = TcpListener::bind((config.host.as_str(), config.port))
            .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
        let port = listener.local_addr()?.port();
        let data = web::Data::new(state.clone());
        let cors_origins = config.cors_origins.clone();
        let metrics = match config.metrics_port {
            Some(mp) => Some(metrics_server(&config.host, mp, data.clone())?),
            None => None,
        };
        let metrics_elsewhere = metrics.is_some();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .configure(http::configure)
                .wrap(actix_web::middleware::Condition::new(
                    metrics_elsewhere,
                    from_fn(hide_metrics),
                ))
                .wrap(from_fn(http::deadline::middleware))
                .wrap(http::problems::error_handlers())
                .wrap(cors(&cors_origins))
                .wrap(http::problems::cors_rejections())
                .wrap(from_fn(http::observe::middleware))
                .wrap(from_fn(http::request_id::middleware))
        })
        .listen(listener)?
        .shutdown_timeout(SHUTDOWN_GRACE_SECS)
        .run();
        tracing::info!(
            port,
            metrics_port = metrics.as_ref().map(|m| m.0),
            store = state.store.kind(),
            "funnelflow listening"
        );
        Ok(Self {
            port,
            server,
            metrics,
            state,
            presence,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port `/metrics` is served on when it is not the API's.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics.as_ref().map(|m| m.0)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until SIGTERM/SIGINT, then drains in-flight requests.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = match self.metrics {
            None => self.server.await,
            Some((_, metrics)) => {
                let handle = metrics.handle();
                let metrics = tokio::spawn(metrics);
                let served = self.server.await;
                handle.stop(true).await;
                let _ = metrics.await;
                served
            }
        };
        if let Some(beats) = self.presence {
            beats.abort();
            // The others' shares grow at their next heartbeat rather than after `LIVE`.
            let leave = self.state.presence.leave();
            if let Err(e) = deadline::per_request(self.state.config.store_timeout, leave).await {
                tracing::warn!(error = %e, "could not remove this instance's presence");
            }
        }
        served
    }
}

/// A second listener serving only `/metrics`: Cloud Run routes requests to
/// `PORT` alone, so this one is reachable from inside the instance (a
/// Prometheus sidecar) and never from the internet.
fn metrics_server(host: &str, port: u16, data: web::Data<AppState>) -> anyhow::Result<(u16, Server)> {
    let listener = TcpListener::bind((host, port))
        .with_context(|| format!("cannot listen on {host}:{port} (FUNNELFLOW_METRICS_PORT)"))?;
    let port = listener.local_addr()?.port();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/metrics", web::get().to(http::health::metrics))
    })
    .workers(1)
    .listen(listener)?
    .shutdown_timeout(SHUTDOWN_GRACE_SECS)
    .run();
    Ok((port, server))
}

/// With a metrics port, `/metrics` on the public port is not found.
async fn hide_metrics(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    if req.path() == "/metrics" {
        return Err(crate::error::AppError::NotFound.into());
    }
    next.call(req).await
}

/// The configured store, bounded by the request deadline and wrapped with
/// latency metrics. Firestore connects in the background and keeps retrying,
/// so the service starts even while it is down.
pub fn open_store(config: &Config, metrics: Arc<Metrics>) -> Arc<dyn Store> {
    let inner: Arc<dyn Store> = match config.store {
        StoreKind::Embedded => {
            tracing::warn!("using the EMBEDDED store: data lives in this process only and is lost on exit");
            Arc::new(EmbeddedStore::new())
        }
        StoreKind::Firestore => {
            tracing::info!(project = %config.project_id, database = %config.database,
                emulator = config.emulator_host.as_deref(), "using Firestore");
            Arc::new(LazyFirestore::new(
                &config.project_id,
                &config.database,
                config.emulator_host.as_deref(),
                config.store_timeout,
            ))
        }
    };
    Instrumented::wrap(Deadlined::wrap(inner, config.store_timeout), metrics)
}

fn cors(origins: &[String]) -> Cors {
    let mut cors = Cors::default()
        .allowed_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::PUT,
            Method::DELETE,
        ])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            header::HeaderName::from_static("idempotency-key"),
            header::HeaderName::from_static("x-request-id"),
            header::HeaderName::from_static("x-api-key"),
        ])
        .expose_headers(EXPOSED_HEADERS)
        .max_age(3600);
    for o in origins {
        cors = cors.allowed_origin(o);
    }
    cors
}
