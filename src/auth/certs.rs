//! Google's Firebase ID-token signing certificates: fetched over HTTPS, turned
//! into RSA verification keys, and cached per the response's
//! `Cache-Control: max-age`.
//!
//! Policy (see [`CertPolicy`] for the numbers):
//! - a fresh key set is used as is; an expired one is refetched before use;
//! - a token with an unknown `kid` triggers a refetch at most once per
//!   `unknown_kid_interval` (Google rotates keys well before using them, so an
//!   unknown kid is almost always a forged or foreign token);
//! - refreshes are single-flight: concurrent callers wait for the one fetch in
//!   progress instead of starting their own;
//! - when a refetch fails, keys up to `stale_limit` old are still served, and
//!   another attempt is made only after `failure_backoff` (so a Google outage
//!   does not queue every request behind a 5 s timeout).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::DecodingKey;
use x509_cert::Certificate;
use x509_cert::der::{DecodePem, Encode};

use super::AuthSetupError;
use super::token::rsa_decoding_key;

/// Tunables of the certificate cache. `Default` is the production policy.
#[derive(Debug, Clone)]
pub(crate) struct CertPolicy {
    /// Per-request deadline for the certificate fetch.
    pub timeout: Duration,
    /// Lower bound applied to `max-age` (a `max-age=0` must not mean "fetch per token").
    pub min_ttl: Duration,
    /// Upper bound applied to `max-age`.
    pub max_ttl: Duration,
    /// Lifetime when the response has no usable `max-age`.
    pub default_ttl: Duration,
    /// At most one refetch per this interval because of an unknown `kid`.
    pub unknown_kid_interval: Duration,
    /// After a failed fetch, no new attempt before this delay.
    pub failure_backoff: Duration,
    /// Keys older than this (since their fetch) are never served after a failed refresh.
    pub stale_limit: Duration,
}

impl Default for CertPolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(24 * 3600),
            default_ttl: Duration::from_secs(3600),
            unknown_kid_interval: Duration::from_secs(60),
            failure_backoff: Duration::from_secs(5),
            stale_limit: Duration::from_secs(24 * 3600),
        }
    }
}

/// Why no key could be produced for a `kid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyLookupError {
    /// The certificates are current (or were just refetched) and none has this kid.
    UnknownKey,
    /// No usable certificates: the fetch failed and nothing recent enough is cached.
    Unavailable,
}

/// One successfully fetched set of keys.
struct KeySet {
    /// Increases with every successful fetch; tells waiters whether someone else refreshed.
    generation: u64,
    keys: HashMap<String, Arc<DecodingKey>>,
    fetched_at: Instant,
    expires_at: Instant,
}

/// Bookkeeping of fetch attempts, guarded by the single-flight mutex.
#[derive(Default)]
struct FetchLog {
    last_attempt: Option<Instant>,
    last_failure: Option<Instant>,
    generation: u64,
}

pub(crate) struct CertStore {
    url: String,
    client: reqwest::Client,
    policy: CertPolicy,
    /// The current key set; read on every uncached verification, never held across `.await`.
    current: RwLock<Option<Arc<KeySet>>>,
    /// Single-flight guard: whoever holds it is the one fetching.
    refresh: tokio::sync::Mutex<FetchLog>,
}

impl CertStore {
    pub(crate) fn new(url: &str, policy: CertPolicy) -> Result<Self, AuthSetupError> {
        let client = reqwest::Client::builder()
            .timeout(policy.timeout)
            .connect_timeout(policy.timeout)
            .user_agent(concat!("funnelflow/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AuthSetupError::Http(e.to_string()))?;
        Ok(Self {
            url: url.to_owned(),
            client,
            policy,
            current: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(FetchLog::default()),
        })
    }

    fn snapshot(&self) -> Option<Arc<KeySet>> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The verification key for `kid`, fetching or refreshing the certificates as the policy says.
    pub(crate) async fn key(&self, kid: &str) -> Result<Arc<DecodingKey>, KeyLookupError> {
        let set = self.usable_set().await?;
        if let Some(key) = set.keys.get(kid) {
            return Ok(key.clone());
        }
        // Unknown kid: maybe Google rotated; refetch, rate-limited.
        let set = self.refresh(Some(set.generation), true).await.unwrap_or(set);
        set.keys.get(kid).cloned().ok_or(KeyLookupError::UnknownKey)
    }

    /// Makes sure a usable key set is loaded (fetching it if needed).
    pub(crate) async fn warm_up(&self) -> Result<(), KeyLookupError> {
        self.usable_set().await.map(|_| ())
    }

    /// The current key set if fresh; else a refreshed one; else, if the refresh failed,
    /// the previous one when it is younger than `stale_limit`.
    async fn usable_set(&self) -> Result<Arc<KeySet>, KeyLookupError> {
        let snapshot = self.snapshot();
        if let Some(set) = snapshot.as_ref().filter(|s| Instant::now() < s.expires_at) {
            return Ok(set.clone());
        }
        let seen = snapshot.as_ref().map(|s| s.generation);
        if let Some(set) = self.refresh(seen, false).await {
            return Ok(set);
        }
        // The refresh failed (or is backing off): whatever is newest, if recent enough.
        let newest = self.snapshot().or(snapshot);
        let usable = newest
            .filter(|s| Instant::now().saturating_duration_since(s.fetched_at) < self.policy.stale_limit)
            .ok_or(KeyLookupError::Unavailable)?;
        tracing::warn!(
            age_secs = Instant::now()
                .saturating_duration_since(usable.fetched_at)
                .as_secs(),
            "serving stale Firebase signing certificates: refresh failed"
        );
        Ok(usable)
    }

    /// Fetches a new key set unless someone already did since generation `seen`, or the
    /// policy forbids an attempt now. Returns the key set to use, `None` when there is no
    /// new one (fetch failed or skipped); the caller then falls back to what it had.
    async fn refresh(&self, seen: Option<u64>, unknown_kid: bool) -> Option<Arc<KeySet>> {
        let mut log = self.refresh.lock().await;
        let now = Instant::now();
        // Someone refreshed while we waited for the lock: use theirs.
        if let Some(current) = self.snapshot()
            && Some(current.generation) != seen
            && now < current.expires_at
        {
            return Some(current);
        }
        let recently = |at: Option<Instant>, within: Duration| {
            at.is_some_and(|t| now.saturating_duration_since(t) < within)
        };
        if unknown_kid && recently(log.last_attempt, self.policy.unknown_kid_interval) {
            return None;
        }
        if recently(log.last_failure, self.policy.failure_backoff) {
            return None;
        }
        log.last_attempt = Some(now);
        match self.fetch().await {
            Ok((keys, ttl)) => {
                log.generation += 1;
                let fetched_at = Instant::now();
                let set = Arc::new(KeySet {
                    generation: log.generation,
                    keys,
                    fetched_at,
                    expires_at: fetched_at + ttl,
                });
                tracing::info!(
                    keys = set.keys.len(),
                    ttl_secs = ttl.as_secs(),
                    "fetched Firebase signing certificates"
                );
                *self
                    .current
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(set.clone());
                log.last_failure = None;
                Some(set)
            }
            Err(cause) => {
                log.last_failure = Some(Instant::now());
                tracing::warn!(url = %self.url, error = %cause, "cannot fetch Firebase signing certificates");
                None
            }
        }
    }

    async fn fetch(&self) -> Result<(HashMap<String, Arc<DecodingKey>>, Duration), String> {
        let response = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        let ttl = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age)
            .map_or(self.policy.default_ttl, |age| {
                age.clamp(self.policy.min_ttl, self.policy.max_ttl)
            });
        let body = response.bytes().await.map_err(|e| format!("reading body: {e}"))?;
        let certs: HashMap<String, String> =
            serde_json::from_slice(&body).map_err(|e| format!("not a {{kid: certificate}} object: {e}"))?;
        let mut keys = HashMap::with_capacity(certs.len());
        for (kid, pem) in certs {
            match key_from_certificate_pem(&pem) {
                Ok(key) => {
                    keys.insert(kid, Arc::new(key));
                }
                Err(e) => tracing::warn!(%kid, error = %e, "skipping unusable signing certificate"),
            }
        }
        if keys.is_empty() {
            return Err("no usable certificate in the response".into());
        }
        Ok((keys, ttl))
    }
}

/// The `max-age` directive of a `Cache-Control` value, if any.
fn max_age(cache_control: &str) -> Option<Duration> {
    cache_control.split(',').find_map(|directive| {
        let (name, value) = directive.trim().split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("max-age") {
            return None;
        }
        value
            .trim()
            .trim_matches('"')
            .parse::<u64>()
            .ok()
            .map(Duration::from_secs)
    })
}

/// The RSA verification key of a PEM X.509 certificate (its SubjectPublicKeyInfo).
pub(crate) fn key_from_certificate_pem(pem: &str) -> Result<DecodingKey, AuthSetupError> {
    let cert = Certificate::from_pem(pem.as_bytes())
        .map_err(|e| AuthSetupError::InvalidKey(format!("not a PEM X.509 certificate: {e}")))?;
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| AuthSetupError::InvalidKey(format!("certificate public key: {e}")))?;
    let key = <rsa::RsaPublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_der(&spki)
        .map_err(|e| AuthSetupError::InvalidKey(format!("certificate key is not RSA: {e}")))?;
    rsa_decoding_key(&key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_max_age() {
        assert_eq!(
            max_age("public, max-age=19702, must-revalidate, no-transform"),
            Some(Duration::from_secs(19702))
        );
        assert_eq!(max_age("Max-Age = 5"), Some(Duration::from_secs(5)));
        assert_eq!(max_age("no-cache"), None);
        assert_eq!(max_age("max-age=-1"), None);
        assert_eq!(max_age("s-maxage=10"), None);
    }

    #[test]
    fn extracts_rsa_key_from_certificate() {
        assert!(key_from_certificate_pem(include_str!("../../emulator/dev-keys/dev-auth-cert.pem")).is_ok());
        assert!(key_from_certificate_pem("garbage").is_err());
        // A public key is not a certificate.
        assert!(key_from_certificate_pem(crate::config::DEV_PUBLIC_KEY_PEM).is_err());
    }
}
