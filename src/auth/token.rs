//! JWT mechanics: the pre-verification header check, the claims as they come
//! off the wire and their Firebase-specific checks, RSA key loading, and
//! signing (dev tokens and test forgeries).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey, EncodeRsaPrivateKey, EncodeRsaPublicKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde::Deserialize;
use serde_json::json;

use super::{AuthError, AuthSetupError, Claims, EXP_LEEWAY_SECS, LEEWAY_SECS, MAX_SUB_CHARS, unix_now};

/// Longest credential looked at; Firebase ID tokens are ~1 KiB.
pub(crate) const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Smallest RSA modulus accepted for verification keys, in bits.
const MIN_RSA_BITS: usize = 2048;

/// What the header must tell us before any key is looked up.
#[derive(Debug)]
pub(crate) struct PreHeader {
    pub kid: Option<String>,
}

/// Checks the token's shape and its header: exactly three base64url segments, a JSON
/// object header whose `alg` is `RS256`. Anything else (`none`, `HS256`, `RS512`, …)
/// is refused here, before a key is chosen.
pub(crate) fn pre_check(token: &str) -> Result<PreHeader, AuthError> {
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed);
    };
    let is_b64url = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if header.is_empty() || payload.is_empty() || !is_b64url(payload) || !is_b64url(signature) {
        return Err(AuthError::Malformed);
    }
    let header = URL_SAFE_NO_PAD.decode(header).map_err(|_| AuthError::Malformed)?;
    // A JSON object (serde would happily read a struct from an array).
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|_| AuthError::Malformed)?;
    match header.get("alg") {
        Some(serde_json::Value::String(alg)) if alg == "RS256" => {}
        Some(_) => return Err(AuthError::BadAlgorithm),
        None => return Err(AuthError::Malformed),
    }
    // An empty signature can never be valid RS256 (e.g. an `alg: none` token relabelled).
    if signature.is_empty() {
        return Err(AuthError::BadSignature);
    }
    let kid = match header.get("kid") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(AuthError::Malformed),
    };
    Ok(PreHeader { kid })
}

/// The payload as signed. Everything optional so that each missing or wrong claim gets
/// its own error instead of a generic parse failure.
#[derive(Debug, Deserialize)]
pub(crate) struct RawClaims {
    iss: Option<serde_json::Value>,
    aud: Option<serde_json::Value>,
    sub: Option<String>,
    exp: Option<i64>,
    iat: Option<i64>,
    auth_time: Option<i64>,
    email: Option<String>,
    email_verified: Option<bool>,
    name: Option<String>,
    picture: Option<String>,
    firebase: Option<FirebaseClaim>,
}

#[derive(Debug, Deserialize)]
struct FirebaseClaim {
    sign_in_provider: Option<String>,
}

impl RawClaims {
    /// The Firebase checks jsonwebtoken's `Validation` does not cover (or covers more
    /// loosely, e.g. it accepts an `aud` array): run after the signature was verified.
    pub(crate) fn check(self, project_id: &str, issuer: &str) -> Result<Claims, AuthError> {
        let now = unix_now();
        match &self.aud {
            Some(serde_json::Value::String(aud)) if aud == project_id => {}
            _ => return Err(AuthError::WrongAudience),
        }
        match &self.iss {
            Some(serde_json::Value::String(iss)) if iss == issuer => {}
            _ => return Err(AuthError::WrongIssuer),
        }
        let exp = self.exp.ok_or(AuthError::MissingClaim("exp"))?;
        if exp.saturating_add(EXP_LEEWAY_SECS) <= now {
            return Err(AuthError::Expired);
        }
        let iat = self.iat.ok_or(AuthError::MissingClaim("iat"))?;
        let auth_time = self.auth_time.ok_or(AuthError::MissingClaim("auth_time"))?;
        if iat > now.saturating_add(LEEWAY_SECS) || auth_time > now.saturating_add(LEEWAY_SECS) {
            return Err(AuthError::NotYetValid);
        }
        // No Firebase sign-in predates 1970; `auth_time` is stored (`lastLoginAt`),
        // and Firestore cannot hold instants before year 1.
        if auth_time < 0 {
            return Err(AuthError::Malformed);
        }
        let sub = self.sub.ok_or(AuthError::MissingSubject)?;
        if sub.is_empty() || sub.chars().count() > MAX_SUB_CHARS {
            return Err(AuthError::MissingSubject);
        }
        Ok(Claims {
            sub,
            email: self.email,
            name: self.name,
            picture: self.picture,
            auth_time,
            iat,
            exp,
            sign_in_provider: self.firebase.and_then(|f| f.sign_in_provider),
            email_verified: self.email_verified,
        })
    }
}

/// Maps jsonwebtoken's failures onto ours.
pub(crate) fn map_jwt_error(e: &jsonwebtoken::errors::Error) -> AuthError {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::InvalidSignature => AuthError::BadSignature,
        K::InvalidAlgorithm | K::InvalidAlgorithmName | K::MissingAlgorithm => AuthError::BadAlgorithm,
        K::ExpiredSignature => AuthError::Expired,
        K::InvalidIssuer => AuthError::WrongIssuer,
        K::InvalidAudience => AuthError::WrongAudience,
        K::ImmatureSignature => AuthError::NotYetValid,
        K::InvalidSubject => AuthError::MissingSubject,
        K::MissingRequiredClaim(claim) => match claim.as_str() {
            "sub" => AuthError::MissingSubject,
            "iss" => AuthError::WrongIssuer,
            "aud" => AuthError::WrongAudience,
            "exp" => AuthError::MissingClaim("exp"),
            _ => AuthError::Malformed,
        },
        K::InvalidRsaKey(_) | K::InvalidKeyFormat | K::InvalidEcdsaKey | K::InvalidEddsaKey => {
            tracing::warn!(error = %e, "verification key rejected by jsonwebtoken");
            AuthError::BadSignature
        }
        _ => AuthError::Malformed,
    }
}

/// A jsonwebtoken verification key from a parsed RSA public key (validated once here,
/// not on every verification).
pub(crate) fn rsa_decoding_key(key: &RsaPublicKey) -> Result<DecodingKey, AuthSetupError> {
    let bits = key.size() * 8;
    if bits < MIN_RSA_BITS {
        return Err(AuthSetupError::InvalidKey(format!(
            "RSA key of {bits} bits; at least {MIN_RSA_BITS} required"
        )));
    }
    let der = key
        .to_pkcs1_der()
        .map_err(|e| AuthSetupError::InvalidKey(format!("encoding RSA key: {e}")))?;
    Ok(DecodingKey::from_rsa_der(der.as_bytes()))
}

/// The verification key of the dev mode: a PEM RSA public key (`PUBLIC KEY` or `RSA PUBLIC KEY`).
pub(crate) fn dev_decoding_key(public_key_pem: &str) -> Result<DecodingKey, AuthSetupError> {
    let pem = public_key_pem.trim();
    let key = RsaPublicKey::from_public_key_pem(pem)
        .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem))
        .map_err(|e| AuthSetupError::InvalidKey(format!("dev auth key is not a PEM RSA public key: {e}")))?;
    rsa_decoding_key(&key)
}

fn encoding_key(private_key_pem: &str) -> Result<EncodingKey, AuthSetupError> {
    let pem = private_key_pem.trim();
    let key = RsaPrivateKey::from_pkcs8_pem(pem)
        .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem))
        .map_err(|e| AuthSetupError::InvalidKey(format!("not a PEM RSA private key: {e}")))?;
    let der = key
        .to_pkcs1_der()
        .map_err(|e| AuthSetupError::InvalidKey(format!("encoding RSA key: {e}")))?;
    Ok(EncodingKey::from_rsa_der(der.as_bytes()))
}

/// Signs arbitrary `claims` as an RS256 JWT with the PEM RSA private key (PKCS#8 or
/// PKCS#1), header `kid` = `kid` (omitted when empty). No claim is checked: tests use
/// it to forge tokens the verifier must refuse.
pub fn sign_claims(
    private_key_pem: &str,
    kid: &str,
    claims: &serde_json::Value,
) -> Result<String, AuthSetupError> {
    let key = encoding_key(private_key_pem)?;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = (!kid.is_empty()).then(|| kid.to_owned());
    jsonwebtoken::encode(&header, claims, &key).map_err(|e| AuthSetupError::Sign(e.to_string()))
}

/// What `mint_dev_token` puts in a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevTokenSpec {
    pub uid: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub picture: Option<String>,
    /// `firebase.sign_in_provider`, e.g. `google.com`.
    pub provider: String,
    /// Seconds since the epoch; `None` means now.
    pub auth_time: Option<i64>,
    pub ttl_secs: u64,
}

impl Default for DevTokenSpec {
    fn default() -> Self {
        Self {
            uid: "dev-user".into(),
            email: None,
            name: None,
            picture: None,
            provider: "google.com".into(),
            auth_time: None,
            ttl_secs: 3600,
        }
    }
}

/// Mints a token shaped like a Firebase ID token (same claims, RS256, header `kid`
/// "dev"), signed with the dev private key, that the dev auth mode accepts.
pub fn mint_dev_token(
    private_key_pem: &str,
    project_id: &str,
    spec: &DevTokenSpec,
) -> Result<String, AuthSetupError> {
    if spec.uid.is_empty() || spec.uid.chars().count() > MAX_SUB_CHARS {
        return Err(AuthSetupError::InvalidSpec(format!(
            "uid must be 1..={MAX_SUB_CHARS} characters"
        )));
    }
    let ttl = i64::try_from(spec.ttl_secs)
        .ok()
        .filter(|t| *t > 0)
        .ok_or_else(|| AuthSetupError::InvalidSpec("ttl must be a positive number of seconds".into()))?;
    let now = unix_now();
    let mut claims = json!({
        "iss": format!("https://securetoken.google.com/{project_id}"),
        "aud": project_id,
        "sub": spec.uid,
        "user_id": spec.uid,
        "iat": now,
        "exp": now.saturating_add(ttl),
        "auth_time": spec.auth_time.unwrap_or(now),
        "firebase": {
            "sign_in_provider": spec.provider,
            "identities": {},
        },
    });
    if let Some(obj) = claims.as_object_mut() {
        if let Some(email) = &spec.email {
            obj.insert("email".into(), json!(email));
            obj.insert("email_verified".into(), json!(true));
        }
        if let Some(name) = &spec.name {
            obj.insert("name".into(), json!(name));
        }
        if let Some(picture) = &spec.picture {
            obj.insert("picture".into(), json!(picture));
        }
    }
    sign_claims(private_key_pem, "dev", &claims)
}
