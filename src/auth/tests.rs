#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

use super::*;
use crate::config::{DEV_PRIVATE_KEY_PEM, DEV_PUBLIC_KEY_PEM};

const PROJECT: &str = "demo-funnelflow";
const OTHER_PRIVATE_PEM: &str = include_str!("../../emulator/dev-keys/other-private.pem");
const DEV_CERT_PEM: &str = include_str!("../../emulator/dev-keys/dev-auth-cert.pem");

fn dev_verifier() -> TokenVerifier {
    TokenVerifier::new(
        &AuthMode::Dev {
            public_key_pem: DEV_PUBLIC_KEY_PEM.into(),
        },
        PROJECT,
    )
    .unwrap()
}

fn claims_for(uid: &str) -> Value {
    let now = unix_now();
    json!({
        "iss": format!("https://securetoken.google.com/{PROJECT}"),
        "aud": PROJECT,
        "sub": uid,
        "user_id": uid,
        "iat": now - 10,
        "exp": now + 3600,
        "auth_time": now - 100,
        "email": "ada@example.com",
        "email_verified": true,
        "name": "Ada",
        "picture": "https://example.com/ada.png",
        "firebase": {"sign_in_provider": "google.com", "identities": {}},
    })
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

fn sign(claims: &Value) -> String {
    sign_claims(DEV_PRIVATE_KEY_PEM, "dev", claims).unwrap()
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

async fn refused(v: &TokenVerifier, token: &str) -> AuthError {
    v.verify(token).await.expect_err("token must be refused")
}

#[tokio::test]
async fn happy_path_extracts_claims() {
    let v = dev_verifier();
    let claims = claims_for("uid-1");
    let got = v.verify(&sign(&claims)).await.unwrap();
    assert_eq!(got.sub, "uid-1");
    assert_eq!(got.email.as_deref(), Some("ada@example.com"));
    assert_eq!(got.name.as_deref(), Some("Ada"));
    assert_eq!(got.picture.as_deref(), Some("https://example.com/ada.png"));
    assert_eq!(got.sign_in_provider.as_deref(), Some("google.com"));
    assert_eq!(got.email_verified, Some(true));
    assert_eq!(got.auth_time, claims["auth_time"].as_i64().unwrap());
    assert_eq!(got.iat, claims["iat"].as_i64().unwrap());
    assert_eq!(got.exp, claims["exp"].as_i64().unwrap());
}

#[tokio::test]
async fn optional_claims_may_be_absent_and_kid_is_ignored_in_dev_mode() {
    let v = dev_verifier();
    let mut claims = claims_for("uid-2");
    for k in ["email", "email_verified", "name", "picture", "firebase"] {
        claims = without(claims, k);
    }
    let token = sign_claims(DEV_PRIVATE_KEY_PEM, "", &claims).unwrap();
    let got = v.verify(&token).await.unwrap();
    assert_eq!((got.email, got.name, got.picture), (None, None, None));
    assert_eq!(got.sign_in_provider, None);
    let token = sign_claims(DEV_PRIVATE_KEY_PEM, "whatever", &claims_for("uid-2")).unwrap();
    assert!(v.verify(&token).await.is_ok());
}

#[tokio::test]
async fn minted_dev_token_verifies() {
    let v = dev_verifier();
    let spec = DevTokenSpec {
        uid: "dev-uid".into(),
        email: Some("dev@example.com".into()),
        name: Some("Dev".into()),
        provider: "github.com".into(),
        auth_time: Some(unix_now() - 3600),
        ..DevTokenSpec::default()
    };
    let token = mint_dev_token(DEV_PRIVATE_KEY_PEM, PROJECT, &spec).unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(&token).unwrap().kid.as_deref(),
        Some("dev")
    );
    let got = v.verify(&token).await.unwrap();
    assert_eq!(got.sub, "dev-uid");
    assert_eq!(got.email.as_deref(), Some("dev@example.com"));
    assert_eq!(got.name.as_deref(), Some("Dev"));
    assert_eq!(got.picture, None);
    assert_eq!(got.sign_in_provider.as_deref(), Some("github.com"));
    assert_eq!(got.auth_time, spec.auth_time.unwrap());
    assert!(got.exp - got.iat == 3600);
    let payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(payload["user_id"], "dev-uid");
    assert_eq!(payload["firebase"]["identities"], json!({}));
    // For another project, the same token is refused.
    let other = mint_dev_token(DEV_PRIVATE_KEY_PEM, "other-project", &spec).unwrap();
    assert!(matches!(
        refused(&v, &other).await,
        AuthError::WrongIssuer | AuthError::WrongAudience
    ));
    // Bad specs and keys are errors, not panics.
    let empty = DevTokenSpec {
        uid: String::new(),
        ..DevTokenSpec::default()
    };
    assert!(mint_dev_token(DEV_PRIVATE_KEY_PEM, PROJECT, &empty).is_err());
    let zero_ttl = DevTokenSpec {
        ttl_secs: 0,
        ..DevTokenSpec::default()
    };
    assert!(mint_dev_token(DEV_PRIVATE_KEY_PEM, PROJECT, &zero_ttl).is_err());
    assert!(mint_dev_token(DEV_PUBLIC_KEY_PEM, PROJECT, &DevTokenSpec::default()).is_err());
    assert!(mint_dev_token("garbage", PROJECT, &DevTokenSpec::default()).is_err());
}

#[tokio::test]
async fn missing_and_garbage_tokens_are_refused_without_panicking() {
    let v = dev_verifier();
    assert_eq!(refused(&v, "").await, AuthError::Missing);
    let valid = sign(&claims_for("uid-g"));
    let huge = "a".repeat(100_000);
    let garbage = [
        "x",
        "abc",
        ".",
        "..",
        "...",
        "a.b",
        "a.b.c",
        "a.b.c.d",
        "Bearer x.y.z",
        "eyJ.eyJ.sig",
        "ÿÿÿ.ÿÿÿ.ÿÿÿ",
        "\0\0.\0.\0",
        huge.as_str(),
    ];
    for token in garbage {
        assert_eq!(refused(&v, token).await, AuthError::Malformed, "{token:.40}");
    }
    // Header that is not an object, or has no alg, or a non-string kid.
    let body = b64(&claims_for("uid-g"));
    for header in [json!([1, 2]), json!("RS256"), json!({"typ": "JWT"}), json!(null)] {
        let token = format!("{}.{body}.c2ln", b64(&header));
        assert_eq!(refused(&v, &token).await, AuthError::Malformed, "{header}");
    }
    let token = format!("{}.{body}.c2ln", b64(&json!({"alg": "RS256", "kid": 5})));
    assert_eq!(refused(&v, &token).await, AuthError::Malformed);
    // Valid header, non-JSON payload with a bogus signature.
    let header = valid.split('.').next().unwrap();
    let token = format!("{header}.bm90IGpzb24.c2ln");
    assert!(refused(&v, &token).await != AuthError::Missing);
    // Every single-character corruption of a valid token is refused (and nothing panics).
    let bytes = valid.as_bytes();
    for i in (0..bytes.len()).step_by(7) {
        for replacement in [b'A', b'.', b'_', b'=', b'~'] {
            if bytes[i] == replacement {
                continue;
            }
            let mut t = bytes.to_vec();
            t[i] = replacement;
            let t = String::from_utf8(t).unwrap();
            assert!(v.verify(&t).await.is_err(), "corrupted at {i}: {t}");
        }
    }
    // Truncations.
    for cut in (0..valid.len()).step_by(13) {
        assert!(v.verify(&valid[..cut]).await.is_err());
    }
}

#[tokio::test]
async fn alg_none_is_refused() {
    let v = dev_verifier();
    let body = b64(&claims_for("uid-n"));
    for alg in ["none", "None", "NONE"] {
        let header = b64(&json!({"alg": alg, "typ": "JWT"}));
        assert_eq!(
            refused(&v, &format!("{header}.{body}.")).await,
            AuthError::BadAlgorithm
        );
        assert_eq!(
            refused(&v, &format!("{header}.{body}.c2ln")).await,
            AuthError::BadAlgorithm
        );
    }
    // An RS256 header with no signature at all.
    let header = b64(&json!({"alg": "RS256", "typ": "JWT"}));
    assert_eq!(
        refused(&v, &format!("{header}.{body}.")).await,
        AuthError::BadSignature
    );
}

#[tokio::test]
async fn hs256_with_public_key_as_secret_is_refused() {
    // The classic algorithm-confusion attack: HMAC keyed with the (public) RSA key.
    let v = dev_verifier();
    let claims = claims_for("uid-h");
    for secret in [
        DEV_PUBLIC_KEY_PEM.as_bytes(),
        DEV_PUBLIC_KEY_PEM.trim().as_bytes(),
    ] {
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap();
        assert_eq!(refused(&v, &token).await, AuthError::BadAlgorithm);
    }
}

#[tokio::test]
async fn other_rsa_algorithms_are_refused() {
    let v = dev_verifier();
    let claims = claims_for("uid-r");
    let key = EncodingKey::from_rsa_pem(DEV_PRIVATE_KEY_PEM.as_bytes()).unwrap();
    for alg in [Algorithm::RS512, Algorithm::RS384, Algorithm::PS256] {
        let mut header = Header::new(alg);
        header.kid = Some("dev".into());
        let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
        assert_eq!(refused(&v, &token).await, AuthError::BadAlgorithm, "{alg:?}");
    }
}

#[tokio::test]
async fn token_signed_by_another_key_is_refused() {
    let v = dev_verifier();
    let token = sign_claims(OTHER_PRIVATE_PEM, "dev", &claims_for("uid-o")).unwrap();
    assert_eq!(refused(&v, &token).await, AuthError::BadSignature);
    // Claims swapped under a valid signature.
    let good = sign(&claims_for("uid-o"));
    let forged_body = b64(&claims_for("someone-else"));
    let mut parts: Vec<&str> = good.split('.').collect();
    parts[1] = &forged_body;
    assert_eq!(refused(&v, &parts.join(".")).await, AuthError::BadSignature);
}

#[tokio::test]
async fn claim_checks() {
    let v = dev_verifier();
    let now = unix_now();
    let base = || claims_for("uid-c");
    let cases: Vec<(&str, Value, AuthError)> = vec![
        (
            "wrong aud",
            with(base(), "aud", json!("other-project")),
            AuthError::WrongAudience,
        ),
        (
            "aud array",
            with(base(), "aud", json!([PROJECT])),
            AuthError::WrongAudience,
        ),
        ("no aud", without(base(), "aud"), AuthError::WrongAudience),
        (
            "wrong iss",
            with(base(), "iss", json!("https://securetoken.google.com/other")),
            AuthError::WrongIssuer,
        ),
        (
            "google iss",
            with(base(), "iss", json!("https://accounts.google.com")),
            AuthError::WrongIssuer,
        ),
        ("no iss", without(base(), "iss"), AuthError::WrongIssuer),
        (
            "expired",
            with(base(), "exp", json!(now - 3600)),
            AuthError::Expired,
        ),
        (
            "expired seconds ago",
            with(base(), "exp", json!(now - 5)),
            AuthError::Expired,
        ),
        ("no exp", without(base(), "exp"), AuthError::MissingClaim("exp")),
        (
            "iat in future",
            with(base(), "iat", json!(now + 3600)),
            AuthError::NotYetValid,
        ),
        (
            "iat past leeway",
            with(base(), "iat", json!(now + LEEWAY_SECS + 5)),
            AuthError::NotYetValid,
        ),
        ("no iat", without(base(), "iat"), AuthError::MissingClaim("iat")),
        (
            "auth_time in future",
            with(base(), "auth_time", json!(now + 3600)),
            AuthError::NotYetValid,
        ),
        (
            "no auth_time",
            without(base(), "auth_time"),
            AuthError::MissingClaim("auth_time"),
        ),
        (
            "nbf in future",
            with(base(), "nbf", json!(now + 3600)),
            AuthError::NotYetValid,
        ),
        (
            "empty sub",
            with(base(), "sub", json!("")),
            AuthError::MissingSubject,
        ),
        ("no sub", without(base(), "sub"), AuthError::MissingSubject),
        (
            "long sub",
            with(base(), "sub", json!("x".repeat(129))),
            AuthError::MissingSubject,
        ),
        (
            "sub not a string",
            with(base(), "sub", json!(42)),
            AuthError::Malformed,
        ),
        (
            "exp not a number",
            with(base(), "exp", json!("tomorrow")),
            AuthError::Malformed,
        ),
    ];
    for (what, claims, expected) in cases {
        assert_eq!(refused(&v, &sign(&claims)).await, expected, "{what}");
    }
    // Within the leeway: accepted.
    let skewed = with(with(base(), "iat", json!(now + 30)), "auth_time", json!(now + 30));
    assert!(v.verify(&sign(&skewed)).await.is_ok());
    // No tolerance after `exp`.
    let just_expired = with(base(), "exp", json!(now - 1));
    assert_eq!(refused(&v, &sign(&just_expired)).await, AuthError::Expired);
    assert!(
        v.verify(&sign(&with(base(), "sub", json!("x".repeat(128)))))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn verified_tokens_are_cached() {
    let v = dev_verifier();
    let token = sign(&claims_for("uid-cache"));
    assert_eq!(v.cache_stats(), (0, 0));
    let first = v.verify(&token).await.unwrap();
    let second = v.verify(&token).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(v.cache_stats(), (1, 1));
    // Refusals are never cached as successes.
    let bad = sign(&with(claims_for("uid-cache"), "aud", json!("x")));
    assert!(v.verify(&bad).await.is_err());
    assert!(v.verify(&bad).await.is_err());
    assert_eq!(v.cache_stats(), (1, 3));
    // An expired token is refused every time (never served from the cache).
    let late = sign(&with(claims_for("uid-late"), "exp", json!(unix_now() - 5)));
    assert!(v.verify(&late).await.is_err());
    assert!(v.verify(&late).await.is_err());
    assert_eq!(v.cache_stats(), (1, 5));
}

#[test]
fn errors_map_to_app_errors() {
    use actix_web::ResponseError;
    use actix_web::http::StatusCode;
    for e in [
        AuthError::Missing,
        AuthError::Malformed,
        AuthError::BadAlgorithm,
        AuthError::BadSignature,
        AuthError::Expired,
        AuthError::WrongAudience,
        AuthError::WrongIssuer,
        AuthError::NotYetValid,
        AuthError::MissingSubject,
        AuthError::UnknownKey,
        AuthError::MissingKeyId,
    ] {
        let app: AppError = e.into();
        assert!(matches!(app, AppError::Unauthenticated(_)));
        assert_eq!(app.status_code(), StatusCode::UNAUTHORIZED);
    }
    let app: AppError = AuthError::CertsUnavailable.into();
    assert!(matches!(
        app,
        AppError::Unavailable {
            retry_after_secs: 5,
            ..
        }
    ));
    assert_eq!(app.status_code(), StatusCode::SERVICE_UNAVAILABLE);
}

#[test]
fn setup_errors() {
    let dev = |pem: &str| {
        TokenVerifier::new(
            &AuthMode::Dev {
                public_key_pem: pem.into(),
            },
            PROJECT,
        )
    };
    assert!(dev("not a key").is_err());
    assert!(dev(DEV_PRIVATE_KEY_PEM).is_err());
    assert!(dev(DEV_CERT_PEM).is_err());
    assert!(dev(DEV_PUBLIC_KEY_PEM).is_ok());
    assert!(
        TokenVerifier::new(
            &AuthMode::Dev {
                public_key_pem: DEV_PUBLIC_KEY_PEM.into()
            },
            ""
        )
        .is_err()
    );
}

// ---------------------------------------------------------------------------
// Firebase mode, against a local HTTP server serving `{kid: certificate}`.

struct CertServer {
    url: String,
    requests: Arc<AtomicUsize>,
    up: Arc<AtomicBool>,
}

impl CertServer {
    /// Serves `body` with `Cache-Control: public, max-age=<max_age>` until `up` is cleared,
    /// then drops every connection without answering.
    fn start(body: Value, max_age: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/certs", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let up = Arc::new(AtomicBool::new(true));
        let (count, alive) = (requests.clone(), up.clone());
        let body = body.to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                if !alive.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection closed
                }
                stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                count.fetch_add(1, Ordering::SeqCst);
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=UTF-8\r\n\
                     Cache-Control: public, max-age={max_age}, must-revalidate, no-transform\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes());
            }
        });
        Self { url, requests, up }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn firebase_verifier(url: &str, policy: CertPolicy) -> TokenVerifier {
    TokenVerifier::with_cert_policy(
        &AuthMode::Firebase {
            certs_url: url.into(),
        },
        PROJECT,
        policy,
    )
    .unwrap()
}

fn sign_kid(kid: &str, uid: &str) -> String {
    sign_claims(DEV_PRIVATE_KEY_PEM, kid, &claims_for(uid)).unwrap()
}

#[tokio::test]
async fn firebase_mode_verifies_and_caches_certificates() {
    let server = CertServer::start(json!({"dev": DEV_CERT_PEM, "broken": "not a certificate"}), 3600);
    let v = firebase_verifier(&server.url, CertPolicy::default());
    assert_eq!(server.requests(), 0, "nothing fetched at construction");

    let got = v.verify(&sign_kid("dev", "fb-1")).await.unwrap();
    assert_eq!(got.sub, "fb-1");
    assert_eq!(server.requests(), 1);
    // Another token (not in the token cache) uses the cached certificates.
    assert!(v.verify(&sign_kid("dev", "fb-2")).await.is_ok());
    assert_eq!(server.requests(), 1);
    // Unknown kid: refused; the refetch it may trigger is rate-limited (one was just done).
    assert_eq!(
        refused(&v, &sign_kid("rotated-away", "fb-3")).await,
        AuthError::UnknownKey
    );
    assert_eq!(
        refused(&v, &sign_kid("broken", "fb-3")).await,
        AuthError::UnknownKey
    );
    assert_eq!(server.requests(), 1);
    // No kid at all.
    assert_eq!(refused(&v, &sign_kid("", "fb-4")).await, AuthError::MissingKeyId);
    // Right kid, wrong key.
    let forged = sign_claims(OTHER_PRIVATE_PEM, "dev", &claims_for("fb-5")).unwrap();
    assert_eq!(refused(&v, &forged).await, AuthError::BadSignature);
    // Algorithm checks happen before any key lookup.
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims_for("fb-6"),
        &EncodingKey::from_secret(DEV_CERT_PEM.as_bytes()),
    )
    .unwrap();
    assert_eq!(refused(&v, &hs).await, AuthError::BadAlgorithm);
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn concurrent_first_requests_fetch_once() {
    let server = CertServer::start(json!({"dev": DEV_CERT_PEM}), 3600);
    let v = Arc::new(firebase_verifier(&server.url, CertPolicy::default()));
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let v = v.clone();
            tokio::spawn(async move { v.verify(&sign_kid("dev", &format!("c-{i}"))).await })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().is_ok());
    }
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn unknown_kid_refetches_when_allowed() {
    let server = CertServer::start(json!({"dev": DEV_CERT_PEM}), 3600);
    let policy = CertPolicy {
        unknown_kid_interval: Duration::ZERO,
        ..CertPolicy::default()
    };
    let v = firebase_verifier(&server.url, policy);
    assert!(v.verify(&sign_kid("dev", "k-1")).await.is_ok());
    assert_eq!(
        refused(&v, &sign_kid("new-key", "k-2")).await,
        AuthError::UnknownKey
    );
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn expired_certificates_are_refetched_and_served_stale_on_failure() {
    // max-age=0 and no lower clamp: every lookup finds the set expired.
    let server = CertServer::start(json!({"dev": DEV_CERT_PEM}), 0);
    let policy = CertPolicy {
        min_ttl: Duration::ZERO,
        failure_backoff: Duration::ZERO,
        ..CertPolicy::default()
    };
    let v = firebase_verifier(&server.url, policy.clone());
    assert!(v.verify(&sign_kid("dev", "e-1")).await.is_ok());
    assert!(v.verify(&sign_kid("dev", "e-2")).await.is_ok());
    assert_eq!(server.requests(), 2);
    // Google goes down: the expired-but-recent keys are still served.
    server.up.store(false, Ordering::SeqCst);
    assert!(v.verify(&sign_kid("dev", "e-3")).await.is_ok());
    assert_eq!(server.requests(), 2);

    // Same, but keys too old to serve stale: 503.
    let server = CertServer::start(json!({"dev": DEV_CERT_PEM}), 0);
    let v = firebase_verifier(
        &server.url,
        CertPolicy {
            stale_limit: Duration::ZERO,
            ..policy
        },
    );
    assert!(v.verify(&sign_kid("dev", "s-1")).await.is_ok());
    server.up.store(false, Ordering::SeqCst);
    assert_eq!(
        refused(&v, &sign_kid("dev", "s-2")).await,
        AuthError::CertsUnavailable
    );
}

#[tokio::test]
async fn certificate_server_down_is_unavailable() {
    // A port nobody listens on.
    let url = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/certs", l.local_addr().unwrap())
    };
    let v = firebase_verifier(&url, CertPolicy::default());
    let e = refused(&v, &sign_kid("dev", "d-1")).await;
    assert_eq!(e, AuthError::CertsUnavailable);
    assert!(matches!(AppError::from(e), AppError::Unavailable { .. }));
    assert_eq!(v.warm_up().await, Err(AuthError::CertsUnavailable));

    // A server that answers garbage is no better.
    let server = CertServer::start(json!(["not", "a", "map"]), 60);
    let v = firebase_verifier(&server.url, CertPolicy::default());
    assert_eq!(
        refused(&v, &sign_kid("dev", "d-2")).await,
        AuthError::CertsUnavailable
    );
    let server = CertServer::start(json!({"dev": "garbage"}), 60);
    let v = firebase_verifier(&server.url, CertPolicy::default());
    assert_eq!(
        refused(&v, &sign_kid("dev", "d-3")).await,
        AuthError::CertsUnavailable
    );
}

#[tokio::test]
async fn warm_up_fetches_certificates() {
    let server = CertServer::start(json!({"dev": DEV_CERT_PEM}), 3600);
    let v = firebase_verifier(&server.url, CertPolicy::default());
    assert_eq!(v.warm_up().await, Ok(()));
    assert_eq!(server.requests(), 1);
    assert!(v.verify(&sign_kid("dev", "w-1")).await.is_ok());
    assert_eq!(server.requests(), 1);
    assert_eq!(dev_verifier().warm_up().await, Ok(()));
}
