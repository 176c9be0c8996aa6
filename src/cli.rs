//! The `funnelflow` command line.

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
