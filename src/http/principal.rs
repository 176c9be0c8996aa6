//! The caller, as a typed extractor: a handler that takes `Principal` cannot
//! forget authentication, and one that takes `IdTokenPrincipal` cannot be
//! reached with an API key.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};

use crate::auth::api_key;
use crate::domain::users::{Account, AuthProvider, Role, SignIn, Users};
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::store::Timestamp;

/// How the caller authenticated.
#[derive(Debug, Clone)]
pub enum Credential {
    /// A Firebase (or dev) ID token.
    IdToken { auth_time: i64 },
    /// An API key of the user, limited to its permissions.
    ApiKey {
        key_id: String,
        permissions: Vec<Permission>,
    },
}

pub use crate::domain::api_keys::Permission;

/// An authenticated caller with their profile.
#[derive(Debug, Clone)]
pub struct Principal {
    pub uid: String,
    pub credential: Credential,
    pub account: Arc<Account>,
}

impl Principal {
    pub fn role(&self) -> Role {
        self.account.profile.role
    }

    /// Whether the credential carries `permission` (ID tokens carry every one).
    pub fn allows(&self, permission: Permission) -> bool {
        match &self.credential {
            Credential::IdToken { .. } => true,
            Credential::ApiKey { permissions, .. } => permissions.contains(&permission),
        }
    }

    /// 403 unless the credential carries `permission`. The route table
    /// (`http::routes`) checks it before the handler; handlers may check again.
    pub fn require(&self, permission: Permission) -> AppResult<()> {
        if self.allows(permission) {
            Ok(())
        } else {
            Err(AppError::Forbidden(format!(
                "this API key lacks the `{}` permission",
                permission.as_str()
            )))
        }
    }

    pub fn is_api_key(&self) -> bool {
        matches!(self.credential, Credential::ApiKey { .. })
    }

    /// Idempotency keys are per principal: the user, or one API key of theirs.
    pub fn idempotency_scope(&self) -> String {
        match &self.credential {
            Credential::IdToken { .. } => self.uid.clone(),
            Credential::ApiKey { key_id, .. } => format!("key:{key_id}"),
        }
    }
}

/// A caller authenticated with an ID token (API keys are refused with 403):
/// for `/v1/api-keys`, `PATCH`/`DELETE /v1/me` and admin routes.
#[derive(Debug, Clone)]
pub struct IdTokenPrincipal(pub Principal);

impl std::ops::Deref for IdTokenPrincipal {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.0
    }
}

impl FromRequest for IdTokenPrincipal {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AppError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let fut = Principal::from_request(req, payload);
        Box::pin(async move {
            let p = fut.await?;
            match p.credential {
                Credential::IdToken { .. } => Ok(IdTokenPrincipal(p)),
                Credential::ApiKey { .. } => Err(api_key_refused()),
            }
        })
    }
}

pub(crate) fn api_key_refused() -> AppError {
    AppError::Forbidden("API keys may not be used on this route: sign in with an ID token".into())
}

/// An admin, signed in with an ID token. The role comes from the stored
/// profile (through this instance's profile cache, which role changes
/// invalidate), never from token claims.
#[derive(Debug, Clone)]
pub struct Admin(pub Principal);

impl std::ops::Deref for Admin {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.0
    }
}

impl Admin {
    pub fn check(p: Principal) -> AppResult<Self> {
        if p.is_api_key() {
            return Err(api_key_refused());
        }
        if p.role() != Role::Admin {
            return Err(AppError::Forbidden("this route is for administrators".into()));
        }
        Ok(Admin(p))
    }
}

impl FromRequest for Admin {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AppError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let fut = Principal::from_request(req, payload);
        Box::pin(async move { Admin::check(fut.await?) })
    }
}

impl FromRequest for Principal {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AppError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            if let Some(p) = req.extensions().get::<Principal>() {
                return Ok(p.clone());
            }
            let state = req
                .app_data::<web::Data<AppState>>()
                .ok_or_else(|| AppError::internal("application state missing"))?
                .clone();
            let principal = authenticate(&state, &req).await?;
            req.extensions_mut().insert(principal.clone());
            Ok(principal)
        })
    }
}

/// Extracts the bearer credential from `Authorization` (or `X-API-Key`).
fn credential(req: &HttpRequest) -> AppResult<&str> {
    if let Some(v) = req.headers().get(header::AUTHORIZATION) {
        let v = v
            .to_str()
            .map_err(|_| AppError::Unauthenticated("malformed Authorization header".into()))?;
        let (scheme, token) = v.split_once(' ').ok_or_else(|| {
            AppError::Unauthenticated("expected `Authorization: Bearer <credential>`".into())
        })?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(AppError::Unauthenticated(
                "expected `Authorization: Bearer <credential>`".into(),
            ));
        }
        return Ok(token.trim());
    }
    if let Some(v) = req.headers().get("x-api-key") {
        return v
            .to_str()
            .map_err(|_| AppError::Unauthenticated("malformed X-API-Key header".into()));
    }
    Err(AppError::Unauthenticated("missing credentials".into()))
}

/// Counts a request of `principal`; the decision becomes RateLimit headers (429s included).
async fn rate_limit(state: &AppState, req: &HttpRequest, principal: &str) -> AppResult<()> {
    let decision = state.rate_limiter.check(principal).await;
    let (allowed, retry) = (decision.allowed, decision.reset_secs);
    req.extensions_mut().insert(decision);
    if allowed {
        Ok(())
    } else {
        state.metrics.rate_limited.with_label_values(&["default"]).inc();
        Err(AppError::RateLimited {
            retry_after_secs: retry,
        })
    }
}

async fn authenticate(state: &AppState, req: &HttpRequest) -> AppResult<Principal> {
    let token = credential(req)?;
    if api_key::looks_like_key(token) {
        return authenticate_key(state, req, token).await;
    }
    let claims = state.verifier.verify(token).await?;
    // A uid that cannot name a document is no uid Firebase issues.
    Users::path(&claims.sub).map_err(|_| AppError::Unauthenticated("invalid ID token".into()))?;
    tracing::Span::current().record("uid", claims.sub.as_str());
    // Count the request before any store work, so a flood costs us little.
    rate_limit(state, req, &claims.sub).await?;
    let provider = claims
        .sign_in_provider
        .as_deref()
        .and_then(AuthProvider::from_firebase)
        .ok_or_else(|| AppError::Forbidden("this sign-in provider is not supported".into()))?;
    let sign_in = SignIn {
        uid: claims.sub.clone(),
        email: claims.email.clone(),
        name: claims.name.clone(),
        picture: claims.picture.clone(),
        provider,
        auth_time: claims.auth_time,
    };
    // Erasing oneself is exempt from the tombstone (an interrupted erasure is
    // finished by calling again; `Erasure::erase_self` decides what an old
    // token may still do) and must not re-create the profile it deletes.
    let account = if is_self_erasure(req) {
        match state.users.get(&sign_in.uid).await? {
            Some(a) => a,
            None => Arc::new(Users::unprovisioned(&sign_in)?),
        }
    } else {
        let erased_at = state.erasure.check_token(&sign_in.uid, sign_in.auth_time).await?;
        match state.users.profile_for(&sign_in, erased_at).await? {
            Some(a) => a,
            None => finish_erasure(state, &sign_in, erased_at).await?,
        }
    };
    Ok(Principal {
        uid: claims.sub.clone(),
        credential: Credential::IdToken {
            auth_time: claims.auth_time,
        },
        account,
    })
}

/// A sign-in after an erasure that was interrupted: the erasure is finished
/// (in a task of its own, so a client that gives up does not cut it short
/// again), then the fresh account is provisioned.
async fn finish_erasure(
    state: &AppState,
    sign_in: &SignIn,
    erased_at: Option<Timestamp>,
) -> AppResult<Arc<Account>> {
    let erased_at =
        erased_at.ok_or_else(|| AppError::internal("an unfinished erasure without a tombstone"))?;
    let (erasure, uid) = (state.erasure.clone(), sign_in.uid.clone());
    let request_id = super::request_id::current();
    tokio::spawn(async move { erasure.resume(&uid, erased_at, &request_id).await })
        .await
        .map_err(AppError::internal)??;
    state
        .users
        .profile_for(sign_in, Some(erased_at))
        .await?
        .ok_or_else(|| AppError::internal("the erased account's user document is still there"))
}

/// `DELETE /v1/me`.
fn is_self_erasure(req: &HttpRequest) -> bool {
    req.method() == actix_web::http::Method::DELETE && req.match_pattern().as_deref() == Some("/v1/me")
}

/// An API key: checksum first (a mistyped or made-up key costs no store read),
/// then the cached lookup, the secret's keyed hash, the key's rate limit and its
/// owner's profile. Its use is recorded after, off the request's path.
async fn authenticate_key(state: &AppState, req: &HttpRequest, key: &str) -> AppResult<Principal> {
    let parsed = api_key::parse(key).ok_or_else(|| AppError::Unauthenticated("malformed API key".into()))?;
    let grant = state.api_keys.authenticate(&parsed).await?;
    tracing::Span::current().record("uid", grant.uid.as_str());
    // A key from before an erasure is dead even while an interrupted erasure
    // has not reached it yet.
    state.erasure.check_key(&grant.uid, grant.created_at).await?;
    rate_limit(state, req, &format!("key:{}", grant.key_id)).await?;
    // An owner whose profile is gone (erased) has no keys that work.
    let account = state
        .users
        .get(&grant.uid)
        .await?
        .ok_or_else(|| AppError::Unauthenticated("invalid API key".into()))?;
    state.api_keys.touch(&grant).await;
    Ok(Principal {
        uid: grant.uid,
        credential: Credential::ApiKey {
            key_id: grant.key_id,
            permissions: grant.permissions,
        },
        account,
    })
}
