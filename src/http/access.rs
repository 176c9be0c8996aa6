//! Who may call a route. Every route in `http::routes` declares one [`Access`];
//! [`enforce`] runs before its handler.

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};

use super::principal::{Admin, Permission, Principal, api_key_refused};
use crate::error::AppResult;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No authentication.
    Public,
    /// Any signed-in caller: an ID token, or an API key whatever its permissions.
    SignedIn,
    /// An ID token, or an API key holding this permission.
    Permission(Permission),
    /// An ID token only: API keys are refused with 403 whatever they hold.
    IdTokenOnly,
    /// An ID token of a user whose stored role is `admin`.
    Admin,
}

impl Access {
    /// One sentence for the OpenAPI description of the operation.
    pub fn describe(self) -> String {
        match self {
            Self::Public => "Access: public (no authentication).".into(),
            Self::SignedIn => "Access: any signed-in caller (ID token, or an API key with any permission).".into(),
            Self::Permission(p) => format!(
                "Access: an ID token, or an API key with the `{}` permission (else 403).",
                p.as_str()
            ),
            Self::IdTokenOnly => "Access: ID token only; API keys are refused with 403.".into(),
            Self::Admin => {
                "Access: an ID token of a user whose stored role is `admin` (else 403); API keys are refused with 403.".into()
            }
        }
    }

    /// Whether an API key can ever satisfy it (the OpenAPI security requirement).
    pub fn accepts_api_keys(self) -> bool {
        matches!(self, Self::SignedIn | Self::Permission(_))
    }
}

/// Authenticates the caller (401) and checks `access` (403). The principal
/// stays in the request's extensions for the handler's extractors.
pub async fn enforce(access: Access, req: &HttpRequest) -> AppResult<()> {
    if access == Access::Public {
        return Ok(());
    }
    let principal = Principal::from_request(req, &mut Payload::None).await?;
    check(access, principal)
}

pub fn check(access: Access, principal: Principal) -> AppResult<()> {
    match access {
        Access::Public | Access::SignedIn => Ok(()),
        Access::Permission(p) => principal.require(p),
        Access::IdTokenOnly if principal.is_api_key() => Err(api_key_refused()),
        Access::IdTokenOnly => Ok(()),
        Access::Admin => Admin::check(principal).map(|_| ()),
    }
}
