//! Every way a credential is refused, and that one user never sees another's profile.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::app::{Backend, TestApp, json_of, problem, spawn_app};

const OTHER_KEY: &str = include_str!("../../emulator/dev-keys/other-private.pem");
const DEV_PUBLIC_KEY: &str = include_str!("../../emulator/dev-keys/dev-auth-public.pem");

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// A token with an arbitrary header and an HMAC-SHA256 signature made with `secret`.
fn hs256(claims: &Value, secret: &[u8]) -> String {
    let signing_input = format!(
        "{}.{}",
        b64(&json!({"alg": "HS256", "typ": "JWT", "kid": "dev"})),
        b64(claims)
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

async fn me_with(app: &TestApp, token: &str) -> reqwest::Response {
    app.get("/v1/me", token).await
}

async fn refuses_every_bad_credential(app: TestApp) {
    let now = jiff::Timestamp::now().as_second();
    // No credentials at all, and malformed Authorization headers.
    let res = app.request(Method::GET, "/v1/me", None).send().await.unwrap();
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    problem(res, 401, "unauthenticated").await;
    for header in ["Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "token abc"] {
        let res = app
            .client
            .get(app.url("/v1/me"))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        problem(res, 401, "unauthenticated").await;
    }
    let claims = app.claims("mallory");
    let unsigned = format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&claims));
    let cases: Vec<(&str, String)> = vec![
        ("garbage", "not-a-jwt".into()),
        ("three garbage parts", "a.b.c".into()),
        ("alg none", unsigned),
        (
            "HS256 with the public key as secret",
            hs256(&claims, DEV_PUBLIC_KEY.as_bytes()),
        ),
        (
            "wrong audience",
            app.token_with("mallory", |c| c["aud"] = json!("another-project")),
        ),
        (
            "wrong issuer",
            app.token_with("mallory", |c| c["iss"] = json!("https://evil.example.com/x")),
        ),
        (
            "expired",
            app.token_with("mallory", |c| {
                c["exp"] = json!(now - 600);
                c["iat"] = json!(now - 4000);
            }),
        ),
        (
            "issued in the future",
            app.token_with("mallory", |c| c["iat"] = json!(now + 3600)),
        ),
        (
            "authenticated in the future",
            app.token_with("mallory", |c| c["auth_time"] = json!(now + 3600)),
        ),
        (
            "empty subject",
            app.token_with("mallory", |c| c["sub"] = json!("")),
        ),
        (
            "signed by another key",
            funnelflow::auth::sign_claims(OTHER_KEY, "dev", &claims).unwrap(),
        ),
    ];
    for (what, token) in cases {
        let res = me_with(&app, &token).await;
        assert_eq!(res.status(), 401, "{what} must be refused");
        let body = problem(res, 401, "unauthenticated").await;
        assert!(!body["detail"].as_str().unwrap_or_default().is_empty(), "{what}");
    }
    // A sign-in provider the product does not accept: 403, and nothing is provisioned.
    let pw = app.token_with("mallory", |c| {
        c["firebase"]["sign_in_provider"] = json!("password")
    });
    problem(me_with(&app, &pw).await, 403, "forbidden").await;
    let path = funnelflow::store::DocPath::root("users", "mallory").unwrap();
    assert!(
        app.store().get(&path).await.unwrap().is_none(),
        "a refused caller leaves no data"
    );
}
crate::both_backends!(refuses_every_bad_credential);

async fn accepts_each_supported_provider(app: TestApp) {
    for (provider, expected) in [
        ("google.com", "google"),
        ("github.com", "github"),
        ("microsoft.com", "microsoft"),
    ] {
        let uid = format!("u-{expected}");
        let token = app.token_with(&uid, |c| c["firebase"]["sign_in_provider"] = json!(provider));
        let me = json_of(app.get("/v1/me", &token).await, 200).await;
        assert_eq!(me["authProvider"], expected);
        assert_eq!(me["userId"], uid.as_str());
    }
}
crate::both_backends!(accepts_each_supported_provider);

#[tokio::test]
async fn a_user_only_ever_sees_their_own_profile() {
    let app = spawn_app(Backend::Firestore).await;
    let alice = app.token("alice");
    let bob = app.token("bob");
    let a = json_of(app.get("/v1/me", &alice).await, 200).await;
    let b = json_of(app.get("/v1/me", &bob).await, 200).await;
    assert_eq!(a["userId"], "alice");
    assert_eq!(b["userId"], "bob");
    assert_eq!(a["email"], "alice@example.com");
    // Bob's rename does not touch Alice.
    json_of(app.patch("/v1/me", &bob, &json!({"name": "Bobby"})).await, 200).await;
    let a2 = json_of(app.get("/v1/me", &alice).await, 200).await;
    assert_eq!(a2["name"], "User alice");
}

/// `FUNNELFLOW_AUTH=firebase` end to end: certificates fetched over HTTP from
/// the configured URL (a local stand-in for Google's), tokens checked against them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firebase_mode_verifies_against_fetched_certificates() {
    use actix_web::{App, HttpResponse, HttpServer, web};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let cert = include_str!("../../emulator/dev-keys/dev-auth-cert.pem");
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let certs_url = format!("http://{}/certs", listener.local_addr().unwrap());
    let server = HttpServer::new(move || {
        let counter = counter.clone();
        App::new().route(
            "/certs",
            web::get().to(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    HttpResponse::Ok()
                        .insert_header(("cache-control", "public, max-age=3600"))
                        .json(json!({ "dev": cert }))
                }
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);

    let app = crate::app::spawn_app_with(
        Backend::Embedded,
        &[
            ("FUNNELFLOW_AUTH", "firebase"),
            ("FUNNELFLOW_GOOGLE_CERTS_URL", &certs_url),
            (
                "FUNNELFLOW_SECRET",
                "a-test-secret-that-is-long-enough-0123456789",
            ),
        ],
    )
    .await;
    let me = json_of(app.get("/v1/me", &app.token("fb-user")).await, 200).await;
    assert_eq!(me["userId"], "fb-user");
    json_of(app.get("/v1/me", &app.token("fb-user-2")).await, 200).await;
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "certificates are cached per Cache-Control"
    );
    // A key id Google never published, and a token without one, are refused.
    let claims = app.claims("fb-user");
    let unknown =
        funnelflow::auth::sign_claims(funnelflow::config::DEV_PRIVATE_KEY_PEM, "rotated-away", &claims)
            .unwrap();
    problem(me_with(&app, &unknown).await, 401, "unauthenticated").await;
    let no_kid = funnelflow::auth::sign_claims(funnelflow::config::DEV_PRIVATE_KEY_PEM, "", &claims).unwrap();
    problem(me_with(&app, &no_kid).await, 401, "unauthenticated").await;
}
