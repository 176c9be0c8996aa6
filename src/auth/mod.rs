//! Firebase ID-token verification (and dev-token minting).
//!
//! [`TokenVerifier::verify`] runs, in this order:
//! 1. the verified-token cache (SHA-256 of the token → claims, entries living until
//!    the token's `exp`): a hit skips everything below (it passed them already);
//! 2. shape and header: three base64url segments, `alg` exactly `RS256` — any other
//!    algorithm (`none`, `HS256`, `RS512`, …) is refused before a key is chosen;
//! 3. the key: in firebase mode the certificate named by the header's `kid`
//!    (required), fetched from Google and cached per `Cache-Control` (see
//!    [`certs`]); in dev mode the configured public key (`kid` ignored);
//! 4. the RS256 signature and jsonwebtoken's `Validation` (algorithms, required
//!    `exp`/`iss`/`aud`/`sub`, issuer, audience, leeway);
//! 5. the Firebase rules on top: `aud` a string equal to the project id, `iss` equal
//!    to `https://securetoken.google.com/<project id>`, `iat` and `auth_time` present
//!    and not in the future, `sub` non-empty and at most 128 characters.
//!
//! `exp` is strict ([`EXP_LEEWAY_SECS`] = 0, as API.md says "exp in the
//! future" and the Firebase Admin SDKs do); `iat`/`auth_time` may be up to
//! [`LEEWAY_SECS`] (60 s) ahead of our clock, for the issuer's clock skew.
//! Cached entries expire at `exp`.

pub mod api_key;
mod certs;
mod token;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use moka::Expiry;
use moka::future::Cache;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::AuthMode;
use crate::error::AppError;

pub use token::{DevTokenSpec, mint_dev_token, sign_claims};

use certs::{CertPolicy, CertStore, KeyLookupError};

/// Clock-skew tolerance for `exp`, `iat` and `auth_time`, in seconds.
pub const LEEWAY_SECS: i64 = 60;
/// Tolerance after `exp`: none.
pub const EXP_LEEWAY_SECS: i64 = 0;
/// Longest accepted `sub` (Firebase uids are at most 128 characters).
pub const MAX_SUB_CHARS: usize = 128;
/// Default bytes of the verified-token cache (see [`TokenVerifier::with_cache_bytes`]).
const TOKEN_CACHE_BYTES: u64 = 8 << 20;

/// The verified claims of an ID token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user's uid.
    pub sub: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub picture: Option<String>,
    /// When the user signed in (seconds since the epoch).
    pub auth_time: i64,
    pub iat: i64,
    pub exp: i64,
    /// `firebase.sign_in_provider`, e.g. `google.com`.
    pub sign_in_provider: Option<String>,
    pub email_verified: Option<bool>,
}

/// Why a token was refused. Everything is a 401 except `CertsUnavailable` (503).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("token algorithm is not RS256")]
    BadAlgorithm,
    #[error("token has no key id")]
    MissingKeyId,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token audience is not this project")]
    WrongAudience,
    #[error("token issuer is not this project's")]
    WrongIssuer,
    #[error("token issued or authenticated in the future")]
    NotYetValid,
    #[error("token has no subject")]
    MissingSubject,
    #[error("token lacks the `{0}` claim")]
    MissingClaim(&'static str),
    #[error("token signed with an unknown key")]
    UnknownKey,
    #[error("signing certificates unavailable")]
    CertsUnavailable,
}

impl From<AuthError> for AppError {
    fn from(e: AuthError) -> Self {
        tracing::debug!(reason = %e, "ID token refused");
        match e {
            AuthError::CertsUnavailable => AppError::Unavailable {
                retry_after_secs: 5,
                cause: "cannot fetch the Firebase signing certificates".into(),
            },
            AuthError::Missing => AppError::Unauthenticated("missing bearer token".into()),
            AuthError::Expired => AppError::Unauthenticated("the ID token has expired".into()),
            _ => AppError::Unauthenticated("invalid ID token".into()),
        }
    }
}

/// A verifier could not be set up (bad key, HTTP client) or a token could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("invalid key: {0}")]
    InvalidKey(String),
    #[error("HTTP client: {0}")]
    Http(String),
    #[error("signing failed: {0}")]
    Sign(String),
    #[error("invalid dev token spec: {0}")]
    InvalidSpec(String),
}

enum Keys {
    Dev(DecodingKey),
    Firebase(CertStore),
}

/// Cache entries live until the token's `exp`.
struct UntilExp;

impl Expiry<[u8; 32], Claims> for UntilExp {
    fn expire_after_create(&self, _key: &[u8; 32], claims: &Claims, _at: Instant) -> Option<Duration> {
        Some(Duration::from_secs(
            u64::try_from(claims.exp.saturating_sub(unix_now())).unwrap_or(0),
        ))
    }
}

/// Verified tokens by digest, weighed by their claims' size, each until its `exp`.
fn token_cache(bytes: u64) -> Cache<[u8; 32], Claims> {
    Cache::builder()
        .name("id_tokens")
        .max_capacity(bytes)
        .weigher(|_: &[u8; 32], c: &Claims| crate::cache::weight(32, crate::cache::json_bytes(c)))
        .expire_after(UntilExp)
        .build()
}

/// Verifies Firebase ID tokens (or dev tokens), caching the verified ones.
pub struct TokenVerifier {
    project_id: String,
    issuer: String,
    keys: Keys,
    validation: Validation,
    cache: Cache<[u8; 32], Claims>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("project_id", &self.project_id)
            .field(
                "mode",
                &match self.keys {
                    Keys::Dev(_) => "dev",
                    Keys::Firebase(_) => "firebase",
                },
            )
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// Builds the verifier. Firebase mode fetches no certificate here: the first
    /// verification does (or [`TokenVerifier::warm_up`]).
    pub fn new(mode: &AuthMode, project_id: &str) -> Result<Self, AuthSetupError> {
        Self::with_cert_policy(mode, project_id, CertPolicy::default())
    }

    pub(crate) fn with_cert_policy(
        mode: &AuthMode,
        project_id: &str,
        policy: CertPolicy,
    ) -> Result<Self, AuthSetupError> {
        if project_id.is_empty() {
            return Err(AuthSetupError::InvalidSpec("empty project id".into()));
        }
        let keys = match mode {
            AuthMode::Dev { public_key_pem } => Keys::Dev(token::dev_decoding_key(public_key_pem)?),
            AuthMode::Firebase { certs_url } => Keys::Firebase(CertStore::new(certs_url, policy)?),
        };
        let issuer = format!("https://securetoken.google.com/{project_id}");
        let mut validation = Validation::new(Algorithm::RS256);
        validation.algorithms = vec![Algorithm::RS256];
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[&issuer]);
        validation.set_audience(&[project_id]);
        validation.leeway = EXP_LEEWAY_SECS.unsigned_abs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.reject_tokens_expiring_in_less_than = 0;
        let cache = token_cache(TOKEN_CACHE_BYTES);
        Ok(Self {
            project_id: project_id.to_owned(),
            issuer,
            keys,
            validation,
            cache,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    /// Holds the verified-token cache within `bytes` (the token share of
    /// `FUNNELFLOW_CACHE_MB`) instead of the default capacity.
    pub fn with_cache_bytes(mut self, bytes: u64) -> Self {
        self.cache = token_cache(bytes);
        self
    }

    /// Firebase mode: fetches the certificates now (e.g. at startup) so the first
    /// request does not wait for them. A no-op in dev mode.
    pub async fn warm_up(&self) -> Result<(), AuthError> {
        match &self.keys {
            Keys::Dev(_) => Ok(()),
            Keys::Firebase(store) => store.warm_up().await.map_err(|_| AuthError::CertsUnavailable),
        }
    }

    /// Verified-token cache (hits, misses) since start.
    pub fn cache_stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Verifies an ID token and returns its claims. Never panics on any input.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > token::MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed);
        }
        // A cached token passed every check below already: the hit path is one hash.
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(claims) = self.cache.get(&digest).await
            && claims.exp.saturating_add(EXP_LEEWAY_SECS) > unix_now()
        {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(claims);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let header = token::pre_check(token)?;
        let claims = self.verify_uncached(token, header.kid.as_deref()).await?;
        if claims.exp > unix_now() {
            self.cache.insert(digest, claims.clone()).await;
        }
        Ok(claims)
    }

    async fn verify_uncached(&self, token: &str, kid: Option<&str>) -> Result<Claims, AuthError> {
        let firebase_key;
        let key = match &self.keys {
            Keys::Dev(key) => key,
            Keys::Firebase(store) => {
                let kid = kid.filter(|k| !k.is_empty()).ok_or(AuthError::MissingKeyId)?;
                firebase_key = store.key(kid).await.map_err(|e| match e {
                    KeyLookupError::UnknownKey => AuthError::UnknownKey,
                    KeyLookupError::Unavailable => AuthError::CertsUnavailable,
                })?;
                firebase_key.as_ref()
            }
        };
        let data = jsonwebtoken::decode::<token::RawClaims>(token, key, &self.validation)
            .map_err(|e| token::map_jwt_error(&e))?;
        data.claims.check(&self.project_id, &self.issuer)
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
