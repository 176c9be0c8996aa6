//! The integration-test binary: every module runs against the embedded store
//! and against the Firestore emulator (`FIRESTORE_EMULATOR_HOST`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod store_contract;
mod support;
