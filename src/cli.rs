//! The `funnelflow` command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "funnelflow", version, about = "Funnel Flow backend")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Apply pending data migrations (also done by `serve` at startup).
    Migrate,
    /// Mint a development ID token accepted by FUNNELFLOW_AUTH=dev (never valid in production).
    DevToken {
        #[arg(long)]
        uid: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        name: Option<String>,
        /// Firebase sign-in provider (google.com, github.com, microsoft.com, …).
        #[arg(long, default_value = "google.com")]
        provider: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// Write realistic development data through the services (refuses a real
    /// Firestore unless --yes-this-is-production).
    Seed {
        /// Users to create (`seed-user-0001` …), at most 100,000.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        users: u32,
        /// Analyses per user, at most 1,000 (the plan is chosen so they fit its monthly quota).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=1_000))]
        analyses_per_user: u32,
        /// Seed of the random choices: the same seed gives the same data.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Allow seeding a Firestore that is not the emulator.
        #[arg(long)]
        yes_this_is_production: bool,
    },
    /// Back up every document of the database into DIR (NDJSON + manifest.json).
    Backup {
        #[arg(long)]
        out: PathBuf,
        /// Write into a new subdirectory of --out named after the start time
        /// (UTC, e.g. `2026-12-02T03-00-00Z`): for scheduled backups.
        #[arg(long)]
        timestamped: bool,
    },
    /// Verify a backup completely, then restore it (exit 3: bad backup, 4: target not empty).
    Restore {
        #[arg(long)]
        from: PathBuf,
        /// Write over a database that already holds documents.
        #[arg(long)]
        force: bool,
        /// Progress file for resuming (default: restore-progress.json in the backup directory).
        #[arg(long)]
        progress: Option<PathBuf>,
    },
    /// Remove analytics events past FUNNELFLOW_ANALYTICS_RETENTION_DAYS and expired idempotency records.
    Purge {
        /// Count what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Administrative actions.
    Admin {
        #[command(subcommand)]
        action: AdminAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminAction {
    /// Give a user the admin role (creates a partial profile if they never signed in).
    GrantAdmin { uid: String },
}
