//! `/v1/me`: the caller's own profile.

use actix_web::{HttpRequest, HttpResponse, web};

use super::access::Access::{IdTokenOnly, Permission};
use super::json::JsonBody;
use super::principal::Permission::ProfileRead;
use super::principal::{IdTokenPrincipal, Principal};
use super::routes;
use super::{etag, request_id};
use crate::domain::users::{Account, Profile, ProfilePatch, Subscription};
use crate::error::{AppResult, Problem};
use crate::state::AppState;

pub fn resources() -> Vec<routes::Routes> {
    vec![
        routes::resource("/v1/me")
            .get(Permission(ProfileRead), get_me)
            .patch(IdTokenOnly, patch_me)
            .delete(IdTokenOnly, super::gdpr::erase_me),
        routes::resource("/v1/me/subscription").get(Permission(ProfileRead), get_subscription),
    ]
}

fn profile_response(account: &Account) -> HttpResponse {
    etag::ok(&account.profile.for_response(), account.version)
}

/// The caller's profile (created from the token's claims on first use).
#[utoipa::path(get, path = "/v1/me", tag = "profile", operation_id = "getMe",
    responses((status = 200, description = "Your profile", body = Profile, headers(("ETag" = String)))),
    security(("bearer" = [])))]
pub async fn get_me(principal: Principal) -> AppResult<HttpResponse> {
    Ok(profile_response(&principal.account))
}

/// Rectification: change `name`, `profileImage`, `preferences` (audited). ID token only.
#[utoipa::path(patch, path = "/v1/me", tag = "profile", operation_id = "patchMe", request_body = ProfilePatch,
    params(etag::IfMatchHeader),
    responses((status = 200, description = "Your profile as it is now", body = Profile, headers(("ETag" = String))),
        (status = 403, description = "`forbidden`: API keys may not change the profile", body = Problem),
        (status = 412, description = "`precondition_failed`: If-Match does not match", body = Problem)),
    security(("bearer" = [])))]
pub async fn patch_me(
    state: web::Data<AppState>,
    principal: IdTokenPrincipal,
    req: HttpRequest,
    body: JsonBody,
) -> AppResult<HttpResponse> {
    let patch: ProfilePatch = body.validated().await?;
    let precondition = etag::if_match(&req)?;
    let account = state
        .users
        .patch(&principal.uid, &patch, &precondition, &request_id::current())
        .await?;
    Ok(profile_response(&account))
}

/// The caller's subscription.
#[utoipa::path(get, path = "/v1/me/subscription", tag = "profile", operation_id = "getSubscription",
    responses((status = 200, description = "Your subscription", body = Subscription)),
    security(("bearer" = [])))]
pub async fn get_subscription(principal: Principal) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(principal.account.profile.for_response().subscription))
}
