//! Operator commands that work on the whole database: `seed`, `backup`,
//! `restore`, `purge`. Each is a library function over a `Store` (the tests
//! call them directly, against both stores); `commands.rs` wires them to the CLI.

pub mod backup;
pub mod manifest;
pub mod purge;
pub mod restore;
pub mod seed;
pub mod typed;

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use rand::Rng;

use crate::store::StoreError;

/// A refusal an operator must act on, with its own exit code (so scripts can
/// tell a bad backup from a busy target from a failure).
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The backup is tampered with, truncated or incomplete: nothing was written.
    #[error("backup refused: {0}")]
    BadBackup(String),
    /// The target database holds documents (and `--force` was not given).
    #[error("{0}")]
    TargetNotEmpty(String),
    /// A development-only command against a real Firestore.
    #[error("{0}")]
    Production(String),
}

impl Refused {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::BadBackup(_) => 3,
            Self::TargetNotEmpty(_) => 4,
            Self::Production(_) => 5,
        }
    }
}

/// Attempts of one store call before an operation gives up.
const ATTEMPTS: u32 = 10;
/// Nor does it retry past this much time on one call: an operator pointing a
/// command at a store that is not there hears so within about a minute.
const RETRY_BUDGET: Duration = Duration::from_secs(60);

/// Runs `call` again with jittered exponential backoff (100 ms … 10 s) while
/// the store is overloaded or unreachable (`RESOURCE_EXHAUSTED`, `UNAVAILABLE`,
/// deadlines: all `Unavailable`) or the call was aborted by contention.
/// Returns the result and the number of retries it took.
pub async fn with_backoff<T, F, Fut>(mut call: F) -> Result<(T, u32), StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let started = std::time::Instant::now();
    let mut attempt = 0u32;
    loop {
        match call().await {
            Ok(v) => return Ok((v, attempt)),
            Err(e @ (StoreError::Unavailable(_) | StoreError::Aborted(_)))
                if attempt + 1 < ATTEMPTS && started.elapsed() < RETRY_BUDGET =>
            {
                attempt += 1;
                let base = 100u64.saturating_mul(1 << attempt.min(7)).min(10_000);
                let wait = base / 2 + rand::rng().random_range(0..=base / 2);
                tracing::warn!(attempt, error = %e, wait_ms = wait, "store busy or unreachable, backing off");
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A progress bar on a terminal (stderr); nothing otherwise (logs and CI get
/// the one-line summary the command prints at the end).
pub fn progress(what: &str, total: Option<u64>) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} documents ({per_sec}, eta {eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {msg}: {pos} documents ({per_sec}) {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.set_message(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
