use std::process::ExitCode;

use clap::Parser;
use funnelflow::cli::{AdminAction, Cli, Command};
use funnelflow::{Application, Config, commands, telemetry};

/// mimalloc instead of glibc's malloc: allocation was a fifth of the
/// instructions of an uncached read. Without transparent huge pages (the
/// `no_thp` feature), which doubled the idle RSS (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("funnelflow: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.log_format, &config.project_id);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate => commands::migrate(&config).await,
        Command::DevToken {
            uid,
            email,
            name,
            provider,
            ttl,
        } => commands::dev_token(&config, uid, email, name, provider, ttl),
        Command::Admin {
            action: AdminAction::GrantAdmin { uid },
        } => commands::grant_admin(&config, &uid).await,
        Command::Seed {
            users,
            analyses_per_user,
            seed,
            yes_this_is_production,
        } => commands::seed(&config, users, analyses_per_user, seed, yes_this_is_production).await,
        Command::Backup { out, timestamped } => commands::backup(&config, &out, timestamped).await,
        Command::Restore {
            from,
            force,
            progress,
        } => commands::restore(&config, &from, force, progress).await,
        Command::Purge { dry_run } => commands::purge(&config, dry_run).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("funnelflow: {e:#}");
            // Refusals an operator must act on have exit codes of their own.
            e.downcast_ref::<funnelflow::ops::Refused>()
                .map_or(ExitCode::FAILURE, |r| ExitCode::from(r.exit_code()))
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = Application::build(config).await?;
    app.run_until_stopped().await?;
    tracing::info!("stopped");
    Ok(())
}
