//! The non-serving subcommands (`dev-token`, `admin …`), as library functions.

use anyhow::Context;

use crate::auth::{DevTokenSpec, mint_dev_token};
use crate::config::{AuthMode, Config};
use crate::domain::audit;
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
/// yet is completed on the user's first sign-in), audited.
pub async fn grant_admin(config: &Config, uid: &str) -> anyhow::Result<()> {
    let metrics = Metrics::new()?;
    let store = crate::startup::open_store(config, metrics);
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
        ])
        .await
        .context("writing the role")?;
    println!("{uid} is now an admin");
    Ok(())
}
