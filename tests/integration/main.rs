//! The one integration-test binary. Store-touching tests run against both the
//! embedded store and the Firestore emulator (`FIRESTORE_EMULATOR_HOST`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api_access;
mod api_admin;
mod api_analyses;
mod api_auth;
mod api_caches;
mod api_contract;
mod api_erasure;
mod api_events;
mod api_export;
mod api_export_csv;
mod api_http;
mod api_idempotency;
mod api_if_match;
mod api_keys;
mod api_persona_templates;
mod api_personas;
mod api_profile;
mod api_store_errors;
mod api_trends;
mod app;
mod binary;
mod deploy;
mod erasure_killed;
mod feed;
mod feed_processes;
mod indexes;
mod instances;
mod migrations;
mod openapi;
mod ops_backup;
mod ops_cli;
mod ops_purge;
mod ops_restore;
mod readiness;
#[macro_use]
mod store_contract;
mod store_commits;
mod store_contract_streams;
mod store_limits;
mod support;
