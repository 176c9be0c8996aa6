//! The non-serving subcommands (`dev-token`, `admin …`, the operations of
//! `ops/`), as library functions.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::auth::{DevTokenSpec, mint_dev_token};
use crate::config::{AuthMode, Config, StoreKind};
use crate::domain::audit;
use crate::domain::feed::{Feed, Kind};
use crate::domain::users::Users;
use crate::metrics::Metrics;
use crate::store::{Fields, Write, value};

pub fn dev_token(
    config: &Config,
    uid: String,
    email: Option<String>,
    name: Option<String>,
    provider: String,
    ttl: u64,
) -> anyhow::Result<()> {
    if config.on_cloud_run || !matches!(config.auth, AuthMode::Dev { .. }) {
        anyhow::bail!("dev-token is for FUNNELFLOW_AUTH=dev only");
    }
    let spec = DevTokenSpec {
        uid,
        email,
        name,
        provider,
        ttl_secs: ttl,
        ..DevTokenSpec::default()
    };
    let token = mint_dev_token(&config.dev_private_key_pem, &config.project_id, &spec)?;
    println!("{token}");
    Ok(())
}

/// Applies pending migrations and reports them.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let store = crate::startup::open_store(config, Metrics::new()?);
    let applied = crate::domain::migrations::run(store.as_ref())
        .await
        .map_err(|e| anyhow::anyhow!("migrations failed: {e}"))?;
    if applied.is_empty() {
        println!("schema up to date");
    } else {
        println!("applied migrations {applied:?}");
    }
    Ok(())
}

/// Sets `role: admin` on `users/{uid}` (merging: a profile that does not exist
/// yet is completed on the user's first sign-in), audited, and announced on the
/// invalidation feed so running instances drop their cached profile.
pub async fn grant_admin(config: &Config, uid: &str) -> anyhow::Result<()> {
    let metrics = Metrics::new()?;
    let store = crate::startup::open_store(config, metrics.clone());
    let feed = Feed::new(store.clone(), metrics);
    let entry = feed
        .entry(uid, Kind::Profile, &[])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let path = Users::path(uid).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut fields = Fields::new();
    fields.insert("role".into(), value::string("admin"));
    fields.insert("userId".into(), value::string(uid));
    let audit = audit::record(
        "cli",
        "user.role.grant_admin",
        &format!("users/{uid}"),
        "cli",
        serde_json::json!({"role": "admin"}),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    store
        .commit(vec![
            Write::merge(path, fields, vec!["role".into(), "userId".into()]),
            audit,
            entry,
        ])
        .await
        .context("writing the role")?;
    feed.announce().await;
    println!("{uid} is now an admin");
    Ok(())
}

/// `backup --out DIR`: prints one summary line.
pub async fn backup(config: &Config, out: &Path, timestamped: bool) -> anyhow::Result<()> {
    let store = crate::startup::open_store(config, Metrics::new()?);
    let out = if timestamped {
        out.join(jiff::Timestamp::now().strftime("%Y-%m-%dT%H-%M-%SZ").to_string())
    } else {
        out.to_owned()
    };
    let summary = crate::ops::backup::run(store.as_ref(), &config.project_id, &config.database, &out).await?;
    let m = &summary.manifest.body;
    println!(
        "backup of {}/{}: {} documents in {} files, {} to {}, in {}",
        m.source.project,
        m.source.database,
        m.documents,
        m.files.len(),
        m.started_at,
        m.finished_at,
        summary.dir.display()
    );
    Ok(())
}

/// `restore --from DIR [--force] [--progress FILE]`: prints the counts.
pub async fn restore(
    config: &Config,
    from: &Path,
    force: bool,
    progress: Option<PathBuf>,
) -> anyhow::Result<()> {
    let store = crate::startup::open_store(config, Metrics::new()?);
    let root = crate::ops::typed::Root::new(&config.project_id, &config.database);
    let options = crate::ops::restore::Options { force, progress };
    let r = crate::ops::restore::run(store.as_ref(), &root, from, &options).await?;
    println!(
        "restored {} documents from {} files into {}/{}: {} written now, {} by an earlier interrupted run, \
         {} commits, {} retries",
        r.documents, r.files, config.project_id, config.database, r.written, r.skipped, r.commits, r.retries
    );
    Ok(())
}

/// Whether the store is one a development command may write to freely.
fn is_development_store(config: &Config) -> bool {
    config.store == StoreKind::Embedded || config.emulator_host.is_some()
}

/// `seed --users N …`: refuses a real Firestore unless told otherwise.
pub async fn seed(
    config: &Config,
    users: u32,
    analyses: u32,
    seed: u64,
    production: bool,
) -> anyhow::Result<()> {
    if !is_development_store(config) && !production {
        return Err(crate::ops::Refused::Production(format!(
            "seed writes made-up users into project {}, which is not the emulator; \
             pass --yes-this-is-production if that is really what you want",
            config.project_id
        ))
        .into());
    }
    let metrics = Metrics::new()?;
    let store = crate::startup::open_store(config, metrics.clone());
    let state = crate::state::AppState::new(
        std::sync::Arc::new(config.clone()),
        store,
        std::sync::Arc::new(crate::auth::TokenVerifier::new(&config.auth, &config.project_id)?),
        metrics,
    )?;
    let spec = crate::ops::seed::Spec {
        users,
        analyses_per_user: analyses,
        seed,
    };
    let r = crate::ops::seed::run(&state, &spec).await?;
    println!(
        "seeded {} users ({} free, {} pro, {} enterprise), {} analyses ({} shared), {} personas; \
         {} existing users left alone",
        r.users, r.plans[0], r.plans[1], r.plans[2], r.analyses, r.shared, r.personas, r.skipped
    );
    Ok(())
}

/// `purge [--dry-run]`: prints what it removed (or would remove).
pub async fn purge(config: &Config, dry_run: bool) -> anyhow::Result<()> {
    let store = crate::startup::open_store(config, Metrics::new()?);
    let spec = crate::ops::purge::Spec {
        retention_days: config.analytics_retention_days,
        now: crate::store::value::now(),
        dry_run,
    };
    let r = crate::ops::purge::run(store.as_ref(), &spec).await?;
    let verb = if dry_run { "would remove" } else { "removed" };
    println!(
        "purge {verb} {} analytics events older than {} ({} days) and {} expired idempotency records \
         ({} expired invalidation feed entries)",
        r.analytics, r.analytics_cutoff, config.analytics_retention_days, r.idempotency, r.invalidations
    );
    Ok(())
}
