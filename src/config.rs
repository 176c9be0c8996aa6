//! Configuration, read once at startup from the environment into typed values.
//! Every variable is listed in README.md's configuration table.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The development secret used when `FUNNELFLOW_SECRET` is unset (dev only).
pub const DEV_SECRET: &str = "funnelflow-development-secret-not-for-production";
/// Google's published signing certificates for Firebase ID tokens.
pub const GOOGLE_CERTS_URL: &str =
    "https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com";
/// The development key pair shipped in `emulator/dev-keys/` (NOT secret).
pub const DEV_PUBLIC_KEY_PEM: &str = include_str!("../emulator/dev-keys/dev-auth-public.pem");
pub const DEV_PRIVATE_KEY_PEM: &str = include_str!("../emulator/dev-keys/dev-auth-private.pem");

#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Firestore,
    Embedded,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMode {
    /// Google-signed Firebase ID tokens, certificates fetched from `certs_url`.
    Firebase { certs_url: String },
    /// Tokens signed with a locally configured RSA key (development and tests).
    Dev { public_key_pem: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Whom a rate limit's quota is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateScope {
    /// Each instance allows the whole quota (N instances: up to N× it).
    Instance,
    /// The instances share the quota: each allows `ceil(quota / live instances)`.
    Global,
}

/// `N` requests per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSpec {
    pub requests: u32,
    pub window: Duration,
}

impl RateSpec {
    /// Parses `N/DURATION`, e.g. `100/10s`, `5/1h`, `30/500ms`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (n, d) = s
            .split_once('/')
            .ok_or_else(|| format!("expected N/DURATION, got {s:?}"))?;
        let requests: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("bad request count in {s:?}"))?;
        let window = parse_duration(d.trim()).ok_or_else(|| format!("bad duration in {s:?}"))?;
        if requests == 0 || window.is_zero() {
            return Err(format!(
                "{s:?} must allow at least one request per non-empty window"
            ));
        }
        Ok(Self { requests, window })
    }
}

fn parse_duration(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "ms" => return Some(Duration::from_millis(n)),
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// A secret that never prints.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Every environment variable `Config::from_lookup` reads (it refuses, in
/// debug builds, to read one not listed): deploy specs are checked against it.
pub const KNOWN_VARS: &[&str] = &[
    "K_SERVICE",
    "PORT",
    "FUNNELFLOW_HOST",
    "FUNNELFLOW_METRICS_PORT",
    "FIRESTORE_EMULATOR_HOST",
    "GOOGLE_CLOUD_PROJECT",
    "FUNNELFLOW_STORE",
    "FIRESTORE_DATABASE",
    "FUNNELFLOW_STORE_TIMEOUT_MS",
    "FUNNELFLOW_CACHE_MB",
    "FUNNELFLOW_AUTH",
    "FUNNELFLOW_DEV_AUTH_KEY",
    "FUNNELFLOW_GOOGLE_CERTS_URL",
    "FUNNELFLOW_DEV_AUTH_PRIVATE_KEY",
    "FUNNELFLOW_SECRET",
    "FUNNELFLOW_CORS_ORIGINS",
    "FUNNELFLOW_RATE_LIMIT",
    "FUNNELFLOW_EXPORT_RATE_LIMIT",
    "FUNNELFLOW_RATE_LIMIT_SCOPE",
    "FUNNELFLOW_ANALYTICS_RETENTION_DAYS",
    "FUNNELFLOW_TRUST_PROXY",
    "FUNNELFLOW_LOG_FORMAT",
    "FUNNELFLOW_MIGRATE_ON_START",
    "FUNNELFLOW_PUBLIC_URL",
];

#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    /// Bind address (`0.0.0.0` for containers; tests bind loopback).
    pub host: String,
    /// When set, `/metrics` is served on this port only (not on `port`, which
    /// Cloud Run exposes): a sidecar in the same instance scrapes it.
    pub metrics_port: Option<u16>,
    pub store: StoreKind,
    pub project_id: String,
    pub emulator_host: Option<String>,
    pub database: String,
    /// The one deadline of a request's whole store time (from its arrival:
    /// every call, retry and backoff), so a hung store answers 503 in time;
    /// outside a request, of each call.
    pub store_timeout: Duration,
    pub auth: AuthMode,
    pub dev_private_key_pem: String,
    pub secret: Secret,
    /// True when the secret is the built-in development value.
    pub secret_is_default: bool,
    pub cors_origins: Vec<String>,
    pub rate_limit: RateSpec,
    pub export_rate_limit: RateSpec,
    pub rate_limit_scope: RateScope,
    pub analytics_retention_days: u32,
    pub trust_proxy: bool,
    pub log_format: LogFormat,
    /// `K_SERVICE` is set: running on Cloud Run.
    pub on_cloud_run: bool,
    /// Apply pending migrations when serving.
    pub migrate_on_start: bool,
    /// Public base URL of the API (for share links), e.g. `https://api.funnelflow.app`.
    pub public_url: Option<String>,
    /// Bytes all in-process caches may hold together (`FUNNELFLOW_CACHE_MB`).
    pub cache_bytes: u64,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads configuration through `get` (the environment in production, a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |k: &str| {
            debug_assert!(
                KNOWN_VARS.contains(&k),
                "{k} is read but not listed in KNOWN_VARS"
            );
            get(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
        };
        let err = |m: String| ConfigError(m);
        let on_cloud_run = var("K_SERVICE").is_some();

        let port = match var("PORT") {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| err(format!("PORT must be a port number, got {p:?}")))?,
            None => 8080,
        };
        let host = var("FUNNELFLOW_HOST").unwrap_or_else(|| "0.0.0.0".into());
        let metrics_port = match var("FUNNELFLOW_METRICS_PORT") {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(mp) if mp != 0 && mp == port => {
                    return Err(err(format!(
                        "FUNNELFLOW_METRICS_PORT must differ from PORT ({port}): /metrics would be public"
                    )));
                }
                Ok(mp) => Some(mp),
                Err(_) => {
                    return Err(err(format!(
                        "FUNNELFLOW_METRICS_PORT must be a port number, got {p:?}"
                    )));
                }
            },
        };
        let emulator_host = var("FIRESTORE_EMULATOR_HOST");
        let gcp_project = var("GOOGLE_CLOUD_PROJECT");
        let store = match var("FUNNELFLOW_STORE").as_deref() {
            Some("firestore") => StoreKind::Firestore,
            Some("embedded") => StoreKind::Embedded,
            Some(other) => {
                return Err(err(format!(
                    "FUNNELFLOW_STORE must be `firestore` or `embedded`, got {other:?}"
                )));
            }
            None if emulator_host.is_some() || gcp_project.is_some() => StoreKind::Firestore,
            None => StoreKind::Embedded,
        };
        let project_id = match (gcp_project, &emulator_host, store) {
            (Some(p), _, _) => p,
            (None, Some(_), _) | (None, None, StoreKind::Embedded) => "demo-funnelflow".into(),
            (None, None, StoreKind::Firestore) => {
                return Err(err(
                    "FUNNELFLOW_STORE=firestore needs GOOGLE_CLOUD_PROJECT (or FIRESTORE_EMULATOR_HOST)"
                        .into(),
                ));
            }
        };
        let database = var("FIRESTORE_DATABASE").unwrap_or_else(|| "(default)".into());
        let store_timeout = match var("FUNNELFLOW_STORE_TIMEOUT_MS") {
            Some(v) => {
                Duration::from_millis(v.parse::<u64>().ok().filter(|ms| *ms > 0).ok_or_else(|| {
                    err(format!(
                        "FUNNELFLOW_STORE_TIMEOUT_MS must be a positive integer, got {v:?}"
                    ))
                })?)
            }
            // Under the 10 s within which API.md wants a 503 when the store hangs.
            None => Duration::from_secs(8),
        };

        // A real Firestore (not the emulator): production data, never dev credentials.
        let real_firestore = store == StoreKind::Firestore && emulator_host.is_none();
        let auth_mode = match var("FUNNELFLOW_AUTH").as_deref() {
            Some("firebase") => "firebase",
            Some("dev") => "dev",
            Some(other) => {
                return Err(err(format!(
                    "FUNNELFLOW_AUTH must be `firebase` or `dev`, got {other:?}"
                )));
            }
            // Dev tokens can be minted by anyone holding the public dev key pair:
            // the default only where the data is local (embedded store or emulator).
            None if on_cloud_run || real_firestore => "firebase",
            None => "dev",
        };
        let read_pem = |var_name: &str, default: &str| -> Result<String, ConfigError> {
            match var(var_name) {
                Some(path) => std::fs::read_to_string(PathBuf::from(&path))
                    .map_err(|e| err(format!("{var_name}: cannot read {path:?}: {e}"))),
                None => Ok(default.to_owned()),
            }
        };
        let auth = if auth_mode == "dev" {
            if on_cloud_run {
                return Err(err("FUNNELFLOW_AUTH=dev is refused on Cloud Run (K_SERVICE is set): dev tokens can be minted by anyone".into()));
            }
            if real_firestore {
                return Err(err("FUNNELFLOW_AUTH=dev is refused against a real Firestore (FUNNELFLOW_STORE=firestore without FIRESTORE_EMULATOR_HOST): dev tokens can be minted by anyone; use FUNNELFLOW_AUTH=firebase".into()));
            }
            AuthMode::Dev {
                public_key_pem: read_pem("FUNNELFLOW_DEV_AUTH_KEY", DEV_PUBLIC_KEY_PEM)?,
            }
        } else {
            AuthMode::Firebase {
                certs_url: var("FUNNELFLOW_GOOGLE_CERTS_URL").unwrap_or_else(|| GOOGLE_CERTS_URL.into()),
            }
        };
        let dev_private_key_pem = read_pem("FUNNELFLOW_DEV_AUTH_PRIVATE_KEY", DEV_PRIVATE_KEY_PEM)?;

        let (secret, secret_is_default) = match var("FUNNELFLOW_SECRET") {
            Some(s) if s.len() < 32 => {
                return Err(err("FUNNELFLOW_SECRET must be at least 32 characters".into()));
            }
            Some(s) if s == DEV_SECRET && (real_firestore || on_cloud_run) => {
                return Err(err("FUNNELFLOW_SECRET is the built-in development value, refused against a real Firestore or on Cloud Run; set it to a random value of at least 32 characters".into()));
            }
            Some(s) => (Secret::new(s), false),
            None if real_firestore => {
                return Err(err("FUNNELFLOW_SECRET is required against a real Firestore (FUNNELFLOW_STORE=firestore without FIRESTORE_EMULATOR_HOST): it signs cursors and peppers API-key hashes; set it to a random value of at least 32 characters".into()));
            }
            None if matches!(auth, AuthMode::Firebase { .. }) => {
                return Err(err("FUNNELFLOW_AUTH=firebase requires FUNNELFLOW_SECRET (it signs cursors and peppers API-key hashes); set it to a random value of at least 32 characters".into()));
            }
            None => (Secret::new(DEV_SECRET), true),
        };

        let cors_origins = var("FUNNELFLOW_CORS_ORIGINS")
            .map(|v| {
                v.split(',')
                    .map(|o| o.trim().trim_end_matches('/').to_owned())
                    .filter(|o| !o.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let rate = |name: &str, default: &str| {
            RateSpec::parse(&var(name).unwrap_or_else(|| default.into()))
                .map_err(|m| err(format!("{name}: {m}")))
        };
        let rate_limit = rate("FUNNELFLOW_RATE_LIMIT", "100/10s")?;
        let export_rate_limit = rate("FUNNELFLOW_EXPORT_RATE_LIMIT", "5/1h")?;
        let rate_limit_scope = match var("FUNNELFLOW_RATE_LIMIT_SCOPE").as_deref() {
            Some("instance") => RateScope::Instance,
            Some("global") => RateScope::Global,
            Some(other) => {
                return Err(err(format!(
                    "FUNNELFLOW_RATE_LIMIT_SCOPE must be `instance` or `global`, got {other:?}"
                )));
            }
            // Cloud Run scales out: there the configured figure means the service's.
            None if on_cloud_run => RateScope::Global,
            None => RateScope::Instance,
        };
        let analytics_retention_days = match var("FUNNELFLOW_ANALYTICS_RETENTION_DAYS") {
            Some(v) => v.parse::<u32>().ok().filter(|d| *d > 0).ok_or_else(|| {
                err(format!(
                    "FUNNELFLOW_ANALYTICS_RETENTION_DAYS must be a positive number of days, got {v:?}"
                ))
            })?,
            None => 365,
        };
        let trust_proxy = parse_bool(&var, "FUNNELFLOW_TRUST_PROXY", on_cloud_run)?;
        let log_format = match var("FUNNELFLOW_LOG_FORMAT").as_deref() {
            Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some(other) => {
                return Err(err(format!(
                    "FUNNELFLOW_LOG_FORMAT must be `json` or `pretty`, got {other:?}"
                )));
            }
            None if on_cloud_run => LogFormat::Json,
            None => LogFormat::Pretty,
        };
        let migrate_on_start = parse_bool(&var, "FUNNELFLOW_MIGRATE_ON_START", true)?;
        let public_url = match var("FUNNELFLOW_PUBLIC_URL") {
            None => None,
            Some(u) => {
                let ok = url::Url::parse(&u).is_ok_and(|p| {
                    matches!(p.scheme(), "http" | "https") && p.has_host() && p.query().is_none()
                });
                if !ok {
                    return Err(err(format!(
                        "FUNNELFLOW_PUBLIC_URL must be an http(s) base URL, got {u:?}"
                    )));
                }
                Some(u.trim_end_matches('/').to_owned())
            }
        };

        let cache_bytes = match var("FUNNELFLOW_CACHE_MB") {
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|mb| (1..=1_048_576).contains(mb))
                .map(|mb| mb * 1024 * 1024)
                .ok_or_else(|| {
                    err(format!(
                        "FUNNELFLOW_CACHE_MB must be a whole number of MiB between 1 and 1048576, got {v:?}"
                    ))
                })?,
            None => 64 * 1024 * 1024,
        };

        Ok(Self {
            port,
            host,
            metrics_port,
            store,
            project_id,
            emulator_host,
            database,
            store_timeout,
            auth,
            dev_private_key_pem,
            secret,
            secret_is_default,
            cors_origins,
            rate_limit,
            export_rate_limit,
            rate_limit_scope,
            analytics_retention_days,
            trust_proxy,
            log_format,
            on_cloud_run,
            migrate_on_start,
            public_url,
            cache_bytes,
        })
    }
}

fn parse_bool(var: &impl Fn(&str) -> Option<String>, name: &str, default: bool) -> Result<bool, ConfigError> {
    match var(name).as_deref() {
        None => Ok(default),
        Some("true" | "1" | "yes") => Ok(true),
        Some("false" | "0" | "no") => Ok(false),
        Some(other) => Err(ConfigError(format!(
            "{name} must be true or false, got {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| m.get(k).cloned())
    }

    /// `KNOWN_VARS` is exactly what is read: nothing missing (the debug
    /// assertion), nothing stale (every listed name is asked for by one of
    /// the two auth modes' configurations).
    #[test]
    fn known_vars_are_the_vars_read() {
        let asked = std::sync::Mutex::new(std::collections::BTreeSet::new());
        for auth in ["dev", "firebase"] {
            Config::from_lookup(|k| {
                asked
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(k.to_owned());
                match k {
                    "FUNNELFLOW_AUTH" => Some(auth.to_owned()),
                    "FUNNELFLOW_SECRET" => Some("x".repeat(40)),
                    _ => None,
                }
            })
            .map_err(|e| e.0)
            .ok();
        }
        let asked = asked.into_inner().unwrap_or_default();
        let known: std::collections::BTreeSet<String> = KNOWN_VARS.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(asked, known);
    }

    #[test]
    fn metrics_port_must_not_be_the_public_one() {
        assert!(cfg(&[("PORT", "8080"), ("FUNNELFLOW_METRICS_PORT", "8080")]).is_err());
        assert!(cfg(&[("FUNNELFLOW_METRICS_PORT", "x")]).is_err());
        let c = cfg(&[("PORT", "8080"), ("FUNNELFLOW_METRICS_PORT", "9090")]).map_err(|e| e.0);
        assert_eq!(c.map(|c| c.metrics_port), Ok(Some(9090)));
    }

    #[test]
    fn defaults_to_embedded_store_and_dev_auth() -> Result<(), ConfigError> {
        let c = cfg(&[])?;
        assert_eq!(c.store, StoreKind::Embedded);
        assert!(matches!(c.auth, AuthMode::Dev { .. }));
        assert!(c.secret_is_default);
        assert_eq!(c.port, 8080);
        assert_eq!(c.cache_bytes, 64 * 1024 * 1024);
        assert_eq!(cfg(&[("FUNNELFLOW_CACHE_MB", "8")])?.cache_bytes, 8 << 20);
        assert_eq!(
            c.rate_limit,
            RateSpec {
                requests: 100,
                window: Duration::from_secs(10)
            }
        );
        assert_eq!(
            c.export_rate_limit,
            RateSpec {
                requests: 5,
                window: Duration::from_secs(3600)
            }
        );
        Ok(())
    }

    #[test]
    fn rate_limit_scope_is_global_on_cloud_run_unless_set() -> Result<(), ConfigError> {
        assert_eq!(cfg(&[])?.rate_limit_scope, RateScope::Instance);
        let cloud_run = [
            ("K_SERVICE", "funnelflow"),
            ("FUNNELFLOW_SECRET", "s3cret-s3cret-s3cret-s3cret-s3cret-s3cret"),
            ("FUNNELFLOW_AUTH", "firebase"),
            ("GOOGLE_CLOUD_PROJECT", "p"),
        ];
        assert_eq!(cfg(&cloud_run)?.rate_limit_scope, RateScope::Global);
        let mut local = cloud_run.to_vec();
        local.push(("FUNNELFLOW_RATE_LIMIT_SCOPE", "instance"));
        assert_eq!(cfg(&local)?.rate_limit_scope, RateScope::Instance);
        assert!(cfg(&[("FUNNELFLOW_RATE_LIMIT_SCOPE", "cluster")]).is_err());
        Ok(())
    }

    #[test]
    fn emulator_host_selects_firestore() -> Result<(), ConfigError> {
        let c = cfg(&[("FIRESTORE_EMULATOR_HOST", "127.0.0.1:8086")])?;
        assert_eq!(c.store, StoreKind::Firestore);
        assert_eq!(c.project_id, "demo-funnelflow");
        Ok(())
    }

    #[test]
    fn firebase_auth_requires_secret() {
        let e = cfg(&[("FUNNELFLOW_AUTH", "firebase")])
            .err()
            .map(|e| e.0)
            .unwrap_or_default();
        assert!(e.contains("FUNNELFLOW_SECRET"), "{e}");
    }

    #[test]
    fn dev_auth_refused_on_cloud_run() {
        let e = cfg(&[("K_SERVICE", "funnelflow"), ("FUNNELFLOW_AUTH", "dev")])
            .err()
            .map(|e| e.0)
            .unwrap_or_default();
        assert!(e.contains("Cloud Run"), "{e}");
        // On Cloud Run the default is firebase, which then needs a secret.
        assert!(cfg(&[("K_SERVICE", "x")]).is_err());
        assert!(
            cfg(&[
                ("K_SERVICE", "x"),
                ("FUNNELFLOW_SECRET", &"s".repeat(32)),
                ("GOOGLE_CLOUD_PROJECT", "p")
            ])
            .is_ok()
        );
    }

    /// Where the data lives, as the environment says it.
    const EMBEDDED: &[(&str, &str)] = &[];
    const EMULATOR: &[(&str, &str)] = &[("FIRESTORE_EMULATOR_HOST", "127.0.0.1:8086")];
    const REAL_BY_PROJECT: &[(&str, &str)] = &[("GOOGLE_CLOUD_PROJECT", "prod")];
    const REAL_EXPLICIT: &[(&str, &str)] = &[
        ("FUNNELFLOW_STORE", "firestore"),
        ("GOOGLE_CLOUD_PROJECT", "prod"),
    ];

    /// `FUNNELFLOW_AUTH` (`None`: unset) and `FUNNELFLOW_SECRET` on top of `store`.
    fn combo(store: &[(&str, &str)], auth: Option<&str>, secret: Option<&str>) -> Result<Config, String> {
        let mut pairs = store.to_vec();
        pairs.extend(auth.map(|a| ("FUNNELFLOW_AUTH", a)));
        pairs.extend(secret.map(|s| ("FUNNELFLOW_SECRET", s)));
        cfg(&pairs).map_err(|e| e.0)
    }

    fn is_dev(c: &Config) -> bool {
        matches!(c.auth, AuthMode::Dev { .. })
    }

    #[test]
    fn dev_auth_is_the_default_only_where_the_data_is_local() {
        let secret = "s".repeat(32);
        for store in [EMBEDDED, EMULATOR] {
            for s in [None, Some(secret.as_str())] {
                let c = combo(store, None, s).unwrap_or_else(|e| panic!("{store:?} {s:?}: {e}"));
                assert!(is_dev(&c), "{store:?}");
                assert_eq!(c.secret_is_default, s.is_none());
                let c = combo(store, Some("dev"), s).unwrap_or_else(|e| panic!("{store:?}: {e}"));
                assert!(is_dev(&c));
                // The development secret is fine where the data is local.
                assert!(combo(store, Some("dev"), Some(DEV_SECRET)).is_ok());
            }
            // firebase needs a real secret wherever it runs.
            let e = combo(store, Some("firebase"), None).err().unwrap_or_default();
            assert!(e.contains("FUNNELFLOW_SECRET"), "{e}");
            let c = combo(store, Some("firebase"), Some(&secret));
            assert!(c.is_ok_and(|c| !is_dev(&c) && !c.secret_is_default));
        }
        for store in [REAL_BY_PROJECT, REAL_EXPLICIT] {
            let c = combo(store, None, Some(&secret)).unwrap_or_else(|e| panic!("{store:?}: {e}"));
            assert_eq!(c.store, StoreKind::Firestore);
            assert!(!is_dev(&c), "a real Firestore defaults to firebase");
            assert!(combo(store, Some("firebase"), Some(&secret)).is_ok_and(|c| !is_dev(&c)));
        }
    }

    #[test]
    fn a_real_firestore_refuses_dev_auth_and_the_development_secret() {
        let secret = "s".repeat(32);
        for store in [REAL_BY_PROJECT, REAL_EXPLICIT] {
            for s in [None, Some(secret.as_str()), Some(DEV_SECRET)] {
                let e = combo(store, Some("dev"), s).err().unwrap_or_default();
                assert!(e.contains("FUNNELFLOW_AUTH=dev"), "{store:?} {s:?}: {e}");
            }
            for auth in [None, Some("firebase")] {
                let e = combo(store, auth, None).err().unwrap_or_default();
                assert!(e.contains("FUNNELFLOW_SECRET"), "{store:?} {auth:?}: {e}");
                let e = combo(store, auth, Some(DEV_SECRET)).err().unwrap_or_default();
                assert!(
                    e.contains("FUNNELFLOW_SECRET") && e.contains("development"),
                    "{store:?} {auth:?}: {e}"
                );
            }
        }
        // The emulator is not a real Firestore, even with a project id set.
        let mut emulator_with_project = EMULATOR.to_vec();
        emulator_with_project.push(("GOOGLE_CLOUD_PROJECT", "demo-x"));
        assert!(combo(&emulator_with_project, None, None).is_ok_and(|c| is_dev(&c)));
        // An explicit embedded store with a project id set is local too.
        let embedded_with_project = [("FUNNELFLOW_STORE", "embedded"), ("GOOGLE_CLOUD_PROJECT", "p")];
        assert!(combo(&embedded_with_project, None, None).is_ok_and(|c| is_dev(&c)));
    }

    #[test]
    fn rejects_bad_values() {
        for (k, v) in [
            ("PORT", "99999"),
            ("FUNNELFLOW_STORE", "mysql"),
            ("FUNNELFLOW_RATE_LIMIT", "100"),
            ("FUNNELFLOW_RATE_LIMIT", "0/10s"),
            ("FUNNELFLOW_EXPORT_RATE_LIMIT", "5/1y"),
            ("FUNNELFLOW_TRUST_PROXY", "maybe"),
            ("FUNNELFLOW_LOG_FORMAT", "xml"),
            ("FUNNELFLOW_ANALYTICS_RETENTION_DAYS", "-1"),
            ("FUNNELFLOW_DEV_AUTH_KEY", "/nonexistent/key.pem"),
            ("FUNNELFLOW_PUBLIC_URL", "javascript:alert(1)"),
            ("FUNNELFLOW_CACHE_MB", "0"),
            ("FUNNELFLOW_CACHE_MB", "64MB"),
        ] {
            assert!(cfg(&[(k, v)]).is_err(), "{k}={v} should be refused");
        }
    }

    #[test]
    fn secret_never_prints() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }
}
