//! Funnel Flow backend.
//!
//! Layers, with dependencies pointing one way:
//! `http` (actix handlers, extractors, error mapping) → `domain` (business
//! rules, testable without HTTP) → `store` (document-store interface: Firestore
//! or embedded). `auth`, `config`, `cache`, `telemetry` and `metrics` are
//! cross-cutting modules used by the layers above `store`.

pub mod auth;
pub mod cache;
pub mod cli;
pub mod commands;
pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod metrics;
pub mod ratelimit;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;

pub use config::Config;
pub use error::{AppError, AppResult};
pub use startup::Application;
