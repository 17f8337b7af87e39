//! czload: load CSV and NDJSON files into Corezoid processes as tasks, streaming,
//! batched, signed, concurrent, rate-limited, and exact about what became of every row.
//!
//! ```text
//! input files ─► source ─► mapping ─► batcher ─► signer ─► sender ─► journal
//! (CSV/NDJSON,    rows      ops        request    URL +     HTTP,      results log,
//!  gzip, stdin)                        bodies     body      retries    retry file,
//!                                                                      summary
//! ```
//!
//! `run(config, shutdown)` is the whole load; `sandbox` is a local Corezoid API server
//! for trying the tool and for tests.

pub mod batch;
pub mod cli;
pub mod config;
pub mod error;
pub mod journal;
pub mod mapping;
pub mod pipeline;
pub mod retry;
pub mod sandbox;
pub mod send;
pub mod sign;
pub mod source;

pub use error::{Error, Result};
pub use journal::{Status, Summary};

use config::LoadConfig;
use std::future::Future;

/// What a finished run hands back.
#[derive(Debug)]
pub struct Done {
    pub summary: Summary,
    /// A dry run's first request, as it would have been sent.
    pub dry_run_request: Option<pipeline::DryRunRequest>,
    /// With `--sandbox`: what the sandbox stored, for the user.
    pub sandbox_report: Option<String>,
}

/// Runs a load. `shutdown` resolving stops it gracefully (Ctrl-C): reading stops, the
/// requests in flight finish, the logs are flushed, and the summary says `interrupted`.
pub async fn run(cfg: LoadConfig, shutdown: impl Future<Output = ()>) -> Result<Done> {
    let (summary, dry_run_request) = pipeline::run(cfg, shutdown).await?;
    Ok(Done {
        summary,
        dry_run_request,
        sandbox_report: None,
    })
}

/// Resolves at the first Ctrl-C; a second one ends the process at once with 130 (the
/// results log is flushed batch by batch, so `--resume` still works).
pub async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        // No signal handling on this platform: never resolve.
        std::future::pending::<()>().await;
    }
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("czload: second Ctrl-C: exiting now");
            std::process::exit(130);
        }
    });
}
