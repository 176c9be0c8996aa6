//! Versioned data migrations, recorded in `system/schema`. Each runs in a
//! transaction that also records it, so concurrent instances apply it once.

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::json;

use super::personas::TEMPLATES_DOC;
use super::trends;
use crate::error::AppResult;
use crate::store::{self, DocPath, Fields, Store, TxOutcome, Write, value};

pub const SYSTEM: &str = "system";
const SCHEMA_DOC: &str = "schema";

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    writes: fn() -> AppResult<Vec<Write>>,
    /// Data work too large for one transaction, run before the version is
    /// recorded. It must be idempotent and safe alongside live writers and
    /// other instances running it (all may, until one records the version).
    backfill: Option<Backfill>,
}

type Backfill = for<'a> fn(&'a dyn Store) -> BoxFuture<'a, AppResult<()>>;

/// Every migration, in order. Append only; never edit one that has shipped.
pub fn all() -> Vec<Migration> {
    vec![
        Migration {
            version: 1,
            name: "persona templates and default system config",
            writes: initial_system_docs,
            backfill: None,
        },
        Migration {
            version: 2,
            name: "trend counters of existing analyses",
            writes: || Ok(Vec::new()),
            backfill: Some(|store| {
                async move {
                    let n = trends::backfill(store).await?;
                    tracing::info!(analyses = n, "trend counters backfilled");
                    Ok(())
                }
                .boxed()
            }),
        },
    ]
}

/// Applies every pending migration; returns the versions applied now.
pub async fn run(store: &dyn Store) -> AppResult<Vec<i64>> {
    let schema = DocPath::root(SYSTEM, SCHEMA_DOC)?;
    let mut applied_now = Vec::new();
    for m in all() {
        if let Some(backfill) = m.backfill
            && !applied_versions(store.get(&schema).await?.as_ref()).contains(&m.version)
        {
            backfill(store).await?;
        }
        let writes = (m.writes)()?;
        let applied = store::run_transaction(store, |tx| {
            let (schema, writes) = (schema.clone(), writes.clone());
            let (version, name) = (m.version, m.name);
            async move {
                let current = tx.get(&schema).await?;
                // A create in a migration means "only if absent": drop those whose document exists.
                let create_paths: Vec<DocPath> = writes
                    .iter()
                    .filter(|w| w.precondition == store::Precondition::Exists(false))
                    .map(|w| w.path.clone())
                    .collect();
                let present: Vec<DocPath> = tx
                    .get_all(&create_paths)
                    .await?
                    .into_iter()
                    .flatten()
                    .map(|d| d.path)
                    .collect();
                let writes: Vec<Write> = writes
                    .into_iter()
                    .filter(|w| {
                        !(w.precondition == store::Precondition::Exists(false) && present.contains(&w.path))
                    })
                    .collect();
                let versions = applied_versions(current.as_ref());
                if versions.contains(&version) {
                    return Ok::<_, crate::error::AppError>(TxOutcome::new(Vec::new(), false));
                }
                let mut all_versions = versions;
                all_versions.push(version);
                let mut fields = Fields::new();
                fields.insert(
                    "versions".into(),
                    value::array(all_versions.iter().map(|v| value::int(*v)).collect()),
                );
                value::set_path(
                    &mut fields,
                    &format!("applied.v{version}.name"),
                    value::string(name),
                );
                let mut out = writes;
                out.push(
                    Write::merge(
                        schema,
                        fields,
                        vec!["versions".into(), format!("applied.v{version}.name")],
                    )
                    .server_time(&format!("applied.v{version}.at")),
                );
                Ok(TxOutcome::new(out, true))
            }
            .boxed()
        })
        .await?;
        if applied {
            tracing::info!(version = m.version, name = m.name, "migration applied");
            applied_now.push(m.version);
        }
    }
    Ok(applied_now)
}

fn applied_versions(doc: Option<&store::Doc>) -> Vec<i64> {
    doc.and_then(|d| d.field("versions"))
        .map(value::to_json)
        .and_then(|j| serde_json::from_value(j).ok())
        .unwrap_or_default()
}

/// The built-in persona templates (`system/personaTemplates`).
pub(crate) fn initial_templates() -> serde_json::Value {
    json!({ "items": [
        template("saas-founder", "SaaS Founder", "Early-stage founder weighing tools by time-to-value and price.",
            ["25-40", "Founder / CEO", "$80k-$200k"], &["efficiency", "growth"], &["automation", "startups"],
            &["limited time", "tight budget"], "data-driven, fast", &["Twitter/X", "newsletters", "podcasts"],
            &["free trial", "peer recommendation"]),
        template("marketing-manager", "Marketing Manager", "In-house marketer accountable for pipeline and conversion rates.",
            ["28-45", "Marketing Manager", "$70k-$130k"], &["results", "credibility"], &["analytics", "content"],
            &["proving ROI", "small team"], "consensus with stakeholders", &["LinkedIn", "webinars", "blogs"],
            &["case studies", "integrations"]),
        template("ecommerce-owner", "E-commerce Owner", "Runs an online store and optimises every step of checkout.",
            ["30-55", "Store Owner", "$50k-$250k"], &["independence", "profit"], &["conversion", "ads"],
            &["cart abandonment", "ad costs"], "experiments, then commits", &["YouTube", "Facebook groups"],
            &["measurable uplift", "discounts"]),
        template("enterprise-buyer", "Enterprise Buyer", "Procurement-minded decision maker in a large organisation.",
            ["35-60", "Director / VP", "$150k+"], &["risk reduction", "compliance"], &["security", "vendor management"],
            &["long approval cycles", "integration risk"], "committee, risk-averse", &["analyst reports", "events"],
            &["security review", "references"]),
    ]})
}

fn initial_system_docs() -> AppResult<Vec<Write>> {
    let templates = initial_templates();
    let config = json!({
        "maintenanceMode": false,
        "features": { "sharing": true, "copyGeneration": true },
        "announcement": null,
    });
    let to_fields = |j: serde_json::Value| -> Fields {
        value::as_map(&value::from_json(&j)).cloned().unwrap_or_default()
    };
    Ok(vec![
        Write::set(DocPath::root(SYSTEM, TEMPLATES_DOC)?, to_fields(templates)),
        // Only if absent: an admin may already have changed the config.
        Write::create(DocPath::root(SYSTEM, "config")?, to_fields(config)),
    ])
}

#[allow(clippy::too_many_arguments)]
fn template(
    id: &str,
    name: &str,
    description: &str,
    demo: [&str; 3],
    values: &[&str],
    interests: &[&str],
    challenges: &[&str],
    decision: &str,
    media: &[&str],
    triggers: &[&str],
) -> serde_json::Value {
    json!({
        "templateId": id, "name": name, "description": description,
        "characteristics": {
            "demographics": {"ageRange": demo[0], "occupation": demo[1], "income": demo[2]},
            "psychographics": {"values": values, "interests": interests, "challenges": challenges},
            "behavior": {"decisionMaking": decision, "mediaConsumption": media, "purchasingTriggers": triggers},
        }
    })
}
