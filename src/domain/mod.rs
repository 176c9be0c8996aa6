//! Business rules, independent of HTTP: each service takes the store and
//! returns domain values or `AppError`s.

pub mod admin;
pub mod analyses;
pub mod analytics;
pub mod api_keys;
pub mod audit;
pub mod clock;
pub mod erasure;
pub mod export;
pub mod feed;
pub mod freshness;
pub mod idempotency;
pub mod input;
pub mod instances;
pub mod migrations;
pub mod pagination;
pub mod persona_counter;
pub mod persona_templates;
pub mod personas;
pub mod queries;
pub mod retention;
pub mod trends;
pub mod user_locks;
pub mod users;
pub mod versioned;
