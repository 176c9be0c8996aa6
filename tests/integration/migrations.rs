//! Migrations: applied once, recorded, idempotent, safe when instances race.

use std::sync::Arc;

use funnelflow::domain::migrations;
use funnelflow::store::{DocPath, Fields, Store, Write, value};

async fn applies_once_even_when_instances_race(store: Arc<dyn Store>) {
    // An admin already changed the config: migration 1 must keep it.
    let config = DocPath::root("system", "config").unwrap();
    let mut f = Fields::new();
    f.insert("maintenanceMode".into(), value::boolean(true));
    store.commit(vec![Write::set(config.clone(), f)]).await.unwrap();

    let runs = (0..4).map(|_| migrations::run(store.as_ref()));
    let results: Vec<Vec<i64>> = futures::future::join_all(runs)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let mut applied: Vec<i64> = results.into_iter().flatten().collect();
    applied.sort_unstable();
    assert_eq!(
        applied,
        vec![1, 2],
        "each migration applied by exactly one runner"
    );
    assert!(
        migrations::run(store.as_ref()).await.unwrap().is_empty(),
        "idempotent"
    );

    let schema = store
        .get(&DocPath::root("system", "schema").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        value::to_json(schema.field("versions").unwrap()),
        serde_json::json!([1, 2])
    );
    assert!(
        schema
            .field("applied.v1.at")
            .and_then(value::as_timestamp)
            .is_some()
    );
    let templates = store
        .get(&DocPath::root("system", "personaTemplates").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        value::to_json(templates.field("items").unwrap())
            .as_array()
            .unwrap()
            .len()
            >= 4
    );
    let config = store.get(&config).await.unwrap().unwrap();
    assert_eq!(config.field("maintenanceMode"), Some(&value::boolean(true)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_migrations_apply_once() {
    applies_once_even_when_instances_race(
        crate::support::store(crate::support::StoreBackend::Embedded, "migrations").await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firestore_migrations_apply_once() {
    applies_once_even_when_instances_race(
        crate::support::store(crate::support::StoreBackend::Firestore, "migrations").await,
    )
    .await;
}
