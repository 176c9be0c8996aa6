//! The one context shared by every handler: configuration, store, services, caches.

use std::sync::Arc;

use crate::auth::TokenVerifier;
use crate::auth::api_key::SecretHasher;
use crate::cache::{CacheBudget, Share};
use crate::config::{Config, RateScope};
use crate::domain::admin::AdminService;
use crate::domain::analyses::Analyses;
use crate::domain::analytics::Analytics;
use crate::domain::api_keys::ApiKeys;
use crate::domain::erasure::Erasure;
use crate::domain::feed::{self, Feed};
use crate::domain::instances::Presence;
use crate::domain::pagination::CursorCodec;
use crate::domain::personas::Personas;
use crate::domain::users::Users;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::store::Store;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub verifier: Arc<TokenVerifier>,
    pub metrics: Arc<Metrics>,
    pub users: Users,
    pub analyses: Analyses,
    pub analytics: Analytics,
    pub personas: Personas,
    pub api_keys: ApiKeys,
    pub erasure: Erasure,
    pub admin: AdminService,
    /// The invalidation feed: publishes this instance's changes, follows the others'.
    pub feed: Feed,
    pub rate_limiter: RateLimiter,
    /// `FUNNELFLOW_EXPORT_RATE_LIMIT`, per user.
    pub export_limiter: RateLimiter,
    /// Exports in progress on this instance ([`crate::domain::export::IN_FLIGHT`]).
    pub exports: Arc<tokio::sync::Semaphore>,
    /// This instance among the running ones (the divisor of global rate limits).
    pub presence: Presence,
}

impl AppState {
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        verifier: Arc<TokenVerifier>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let cursors = CursorCodec::new(config.secret.expose())?;
        let budget = CacheBudget::new(config.cache_bytes);
        let feed = Feed::new(store.clone(), metrics.clone());
        let users = Users::new(store.clone(), metrics.clone(), &budget, feed.clone());
        let personas = Personas::new(
            store.clone(),
            cursors.clone(),
            metrics.clone(),
            &budget,
            feed.clone(),
        );
        let hasher = SecretHasher::new(config.secret.expose())?;
        let api_keys = ApiKeys::new(
            store.clone(),
            cursors.clone(),
            hasher,
            metrics.clone(),
            budget.bytes(Share::ApiKeys),
            feed.clone(),
        );
        let analyses = Analyses::new(
            store.clone(),
            cursors.clone(),
            users.clone(),
            personas.clone(),
            metrics.clone(),
            &budget,
            feed.clone(),
        );
        let presence = Presence::with_id(store.clone(), feed.origin().to_owned());
        let mut rate_limiter =
            RateLimiter::new("default", config.rate_limit, budget.bytes(Share::RateLimits));
        let mut export_limiter = RateLimiter::new("export", config.export_rate_limit, 1 << 20);
        if config.rate_limit_scope == RateScope::Global {
            rate_limiter = rate_limiter.shared_by(presence.live());
            export_limiter = export_limiter.shared_by(presence.live());
        }
        Ok(Self {
            erasure: Erasure::new(
                store.clone(),
                config.secret.expose(),
                users.clone(),
                analyses.clone(),
                personas.clone(),
                api_keys.clone(),
                feed.clone(),
            ),
            api_keys,
            analytics: Analytics::new(store.clone(), cursors.clone()),
            admin: AdminService::new(store.clone(), cursors, users.clone(), feed.clone()),
            feed,
            analyses,
            personas,
            export_limiter,
            exports: Arc::new(tokio::sync::Semaphore::new(crate::domain::export::IN_FLIGHT)),
            rate_limiter,
            presence,
            users,
            config,
            store,
            verifier,
            metrics,
        })
    }

    /// Starts following the other instances' changes (tasks of the current runtime).
    pub fn follow_feed(&self) {
        feed::spawn(
            self.feed.clone(),
            feed::Evictor {
                users: self.users.clone(),
                analyses: self.analyses.clone(),
                personas: self.personas.clone(),
                api_keys: self.api_keys.clone(),
                erasure: self.erasure.clone(),
            },
        );
    }
}
