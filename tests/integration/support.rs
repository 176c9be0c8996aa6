//! Shared helpers of the integration tests.

use std::sync::Arc;
use std::time::Duration;

use funnelflow::store::Store;
use funnelflow::store::embedded::EmbeddedStore;
use funnelflow::store::firestore::FirestoreStore;

/// The emulator's `host:port`; the Firestore tests need it running.
pub fn emulator_host() -> String {
    match std::env::var("FIRESTORE_EMULATOR_HOST") {
        Ok(host) if !host.is_empty() => host,
        _ => panic!(
            "the Firestore emulator is not running: use ./scripts/test.sh, or start it with emulator/start.sh"
        ),
    }
}

/// A project id of its own per test, so tests sharing one emulator never see each other's data.
pub fn unique_project_id(prefix: &str) -> String {
    let prefix: String = prefix
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(20)
        .collect();
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("test-{prefix}-{}", &id[..8])
}

/// The store implementations the contract suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreBackend {
    Embedded,
    Firestore,
}

/// A fresh, isolated store: a new embedded store, or a new emulator project.
pub async fn store(backend: StoreBackend, prefix: &str) -> Arc<dyn Store> {
    match backend {
        StoreBackend::Embedded => Arc::new(EmbeddedStore::new()),
        StoreBackend::Firestore => {
            emulator_host();
            let store = FirestoreStore::connect(
                &unique_project_id(prefix),
                "(default)",
                None,
                Duration::from_secs(10),
            )
            .await
            .expect("connect to the Firestore emulator");
            Arc::new(store)
        }
    }
}
