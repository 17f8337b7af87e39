//! czload: load CSV, TSV, NDJSON, JSON-array, XLSX and ODS files into Corezoid processes as tasks, streaming,
//! batched, signed, concurrent, rate-limited, and exact about what became of every row.
//!
//! ```text
//! input files ─► source ─► mapping ─► batcher ─► signer ─► sender ─► sinks
//! (CSV/NDJSON,    rows      ops        request    URL +     HTTP,      results log,
//!  gzip, stdin)                        bodies     body      retries    retry file,
//!                                                                      summary
//! ```
//!
//! `run(config, shutdown)` is the whole load; `sandbox` is a local Corezoid API server
//! for trying the tool and for tests. The library neither prints (but for the progress
//! display the user asked for) nor exits: what the user should read comes back in
//! `Done`, `LoadConfig::notes` and `Summary`, and `main` prints it.

pub mod after;
pub mod batch;
pub mod check;
pub mod cli;
pub mod config;
pub mod error;
pub mod mapping;
pub mod op;
pub mod outcome;
pub mod outpath;
pub mod pipeline;
mod read;
pub mod sandbox;
pub mod send;
pub mod shard;
pub mod sign;
pub mod sink;
pub mod source;
mod swar;
pub mod term;

pub use error::{Error, Result, EXIT_OUTAGE};
pub use outcome::Status;
pub use sink::Summary;

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
pub async fn run(mut cfg: LoadConfig, shutdown: impl Future<Output = ()>) -> Result<Done> {
    let sandbox = if cfg.sandbox {
        Some(start_sandbox(&mut cfg).await?)
    } else {
        None
    };
    let push = cfg.metrics_push.clone();
    let (mut summary, dry_run_request) = pipeline::run(cfg, shutdown).await?;
    if let Some(url) = push {
        // Monitoring that did not arrive is said, but it changes nothing about the rows:
        // not a reason to fail a run (and an index of a Job) that loaded them.
        if let Err(e) = sink::metrics::push(&url, &summary, summary.exit_code()).await {
            summary
                .notes
                .push(format!("--metrics-push: the metrics were not pushed: {e}"));
        }
    }
    let sandbox_report = match sandbox {
        Some(sb) => {
            let report = sandbox_report(&sb);
            sb.shutdown().await;
            Some(report)
        }
        None => None,
    };
    Ok(Done {
        summary,
        dry_run_request,
        sandbox_report,
    })
}

/// `czload check` (and `load --check`): compares the mapping of the first `rows` rows
/// with the process's declared parameters. `Err`: the check could not be made.
pub async fn check(mut cfg: LoadConfig, rows: usize) -> Result<check::CheckReport> {
    let sandbox = if cfg.sandbox {
        Some(start_sandbox(&mut cfg).await?)
    } else {
        None
    };
    let report = check::check(&cfg, rows).await;
    if let Some(sb) = sandbox {
        sb.shutdown().await;
    }
    report
}

/// `--sandbox`: a sandbox in this process for the `--conv-id` process, with a generated
/// login and secret, and the load pointed at it.
async fn start_sandbox(cfg: &mut LoadConfig) -> Result<sandbox::Sandbox> {
    use rand::Rng;
    let conv = match &cfg.mapping.target {
        mapping::Target::Conv(c) => *c,
        mapping::Target::Column(_) | mapping::Target::Alias(_) => {
            return Err(Error::Usage(
                "--sandbox creates one process, the one named by --conv-id N; it cannot take --conv-id-column or --alias".into(),
            ))
        }
    };
    // Scoped: the thread's rng must not be held across the await below (the future
    // runs on the runtime's workers, so it must be Send).
    let (login, secret) = {
        let mut rng = rand::rng();
        let login = rng.random_range(100_000u64..1_000_000).to_string();
        (
            login,
            sign::Secret::new(hex::encode(rng.random::<[u8; 20]>())),
        )
    };
    let sb = sandbox::Sandbox::start(sandbox::SandboxConfig::new(
        login.clone(),
        secret.clone(),
        vec![conv],
    ))
    .await
    .map_err(|e| Error::Other(format!("cannot start the sandbox: {e}")))?;
    cfg.send.base = sb.url();
    if let Some(s) = &mut cfg.send.sync {
        s.url = format!("{}/sync", sb.url());
    }
    cfg.send.login = login;
    cfg.send.secret = secret;
    Ok(sb)
}

fn sandbox_report(sb: &sandbox::Sandbox) -> String {
    let st = sb.stats();
    let tasks = sb.tasks();
    let mut s = format!(
        "sandbox at {}: received {} requests with {} ops; stores {} tasks ({} created, {} modified, {} duplicate refs refused)\n",
        sb.url(),
        st.requests,
        st.ops,
        tasks.len(),
        st.created,
        st.modified,
        st.duplicate_refs
    );
    if let Some(t) = tasks.first() {
        // Pretty: one field a line reads within 80 columns, where one line of JSON
        // would be wrapped inside its strings.
        s.push_str("sandbox: one of them:\n");
        s.push_str(&serde_json::to_string_pretty(t).unwrap_or_default());
        s.push('\n');
    }
    s
}
