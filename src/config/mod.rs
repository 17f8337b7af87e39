//! Validated settings. The clap types of `cli.rs` stop here; the rest of the program sees
//! plain data with every flag checked, and every error names the flag.
//!
//! `LoadConfig::from_args` calls one function per concern, each in its own file:
//! `inputs.rs` (files, format, delimiter), `mapping.rs` (row -> op), `sending.rs`
//! (requests, rate, server, credentials), `outputs.rs` (results log, retry files);
//! `secret.rs` reads the API secret (the sandbox uses it too). A function may add a note
//! for the user (`LoadConfig::notes`), which `main` prints before the run.

mod inputs;
mod mapping;
mod outputs;
pub mod retry_names;
mod secret;
mod sending;

pub use secret::{read_secret, SECRET_ENV};

use crate::cli::LoadArgs;
use crate::error::Result;
use crate::mapping::MappingConfig;
use crate::send::SendConfig;
use crate::source::Input;
use std::path::PathBuf;
use std::time::Duration;

/// Everything `czload load` needs, checked.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub inputs: Vec<Input>,
    pub mapping: MappingConfig,
    /// CSV: whether the first row names the columns.
    pub has_header: bool,
    pub delimiter: u8,
    pub batch_size: usize,
    pub batch_bytes: usize,
    pub linger: Duration,
    pub send: SendConfig,
    /// `None` in a dry run.
    pub results: Option<PathBuf>,
    /// One per input.
    pub retry_files: Vec<PathBuf>,
    /// One per input, beside its retry file: the rows whose fate is unknown (`ambiguous`),
    /// to check on the server rather than load again.
    pub ambiguous_files: Vec<PathBuf>,
    pub summary_json: Option<PathBuf>,
    /// `--report`: the HTML report written at the end.
    pub report: Option<PathBuf>,
    /// `--metrics`: the Prometheus text file written at the end.
    pub metrics: Option<PathBuf>,
    /// `--metrics-push`: the Pushgateway URL the same figures go to (`push_url`).
    pub metrics_push: Option<String>,
    pub progress: ProgressMode,
    pub resume: bool,
    /// `--restart`: an unfinished results log is kept aside, not refused.
    pub restart: bool,
    /// `--max-errors`: when rejected rows stop the run.
    pub max_errors: Option<MaxErrors>,
    pub quiet: bool,
    pub dry_run: bool,
    /// Start an in-process sandbox and load into it.
    pub sandbox: bool,
    /// `--shard i/N`: this copy loads only its shard's rows.
    pub shard: Option<crate::shard::Shard>,
    /// Per input, the name its generated refs start with (`{name}:{row}`): the file name
    /// or `--ref-prefix`; on `--resume`, the one the log's run used (`pipeline.rs`).
    pub ref_names: Vec<String>,
    /// Whether `ref_names` came from `--ref-prefix` (a resume then refuses other names
    /// rather than taking the log's).
    pub ref_names_given: bool,
    /// Notes for the user about adjusted settings, printed before the run.
    pub notes: Vec<String>,
}

/// How progress is shown (`--progress`; off with `--quiet` or `--dry-run`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar on a terminal, plain lines otherwise.
    Auto,
    /// JSON lines.
    Json,
    Off,
}

/// `--max-errors N` or `N%`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxErrors {
    Rows(u64),
    Percent(f64),
}

impl MaxErrors {
    /// Rows settled before a share is judged: the first rows alone say little.
    const SAMPLE: u64 = 100;

    fn parse(s: &str) -> Result<MaxErrors> {
        let bad = || {
            crate::Error::Usage(format!(
                "--max-errors {s}: give a number of rows (100) or a share of the rows (5%)"
            ))
        };
        match s.strip_suffix('%') {
            Some(p) => match p.trim().parse::<f64>() {
                Ok(v) if (0.0..=100.0).contains(&v) => Ok(MaxErrors::Percent(v)),
                _ => Err(bad()),
            },
            None => s.trim().parse().map(MaxErrors::Rows).map_err(|_| bad()),
        }
    }

    /// Whether `rejected` of `settled` rows reach the limit.
    pub fn reached(self, rejected: u64, settled: u64) -> bool {
        match self {
            MaxErrors::Rows(n) => rejected >= n.max(1),
            MaxErrors::Percent(p) => {
                settled >= Self::SAMPLE && rejected as f64 * 100.0 > p * settled as f64
            }
        }
    }
}

impl std::fmt::Display for MaxErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaxErrors::Rows(n) => write!(f, "--max-errors {n}"),
            MaxErrors::Percent(p) => write!(f, "--max-errors {p}%"),
        }
    }
}

/// The sending settings alone, as a load's flags give them: `czload verify` and `czload
/// undo` send as a load does (`src/after/flags.rs`).
pub fn send_config(
    a: &crate::cli::LoadArgs,
    op: crate::op::OpKind,
    notes: &mut Vec<String>,
) -> Result<crate::send::SendConfig> {
    sending::sending(a, op, None, notes)
}

impl LoadConfig {
    /// The settings of `czload load`: every output checked (`crate::outpath`).
    pub fn from_args(a: &LoadArgs) -> Result<LoadConfig> {
        Self::build(a, true)
    }

    /// The settings of `czload check`, which writes nothing: its outputs are not checked.
    pub fn for_check(a: &LoadArgs) -> Result<LoadConfig> {
        Self::build(a, false)
    }

    fn build(a: &LoadArgs, writes: bool) -> Result<LoadConfig> {
        let mut notes = Vec::new();
        let shard = a
            .shard
            .as_deref()
            .map(crate::shard::Shard::parse)
            .transpose()?;
        let inputs = inputs::inputs(a, &mut notes)?;
        let mapping = mapping::mapping(a, &inputs, &mut notes)?;
        let ref_names = mapping::ref_names(a, &inputs)?;
        let mut send = sending::sending(a, mapping.op, shard, &mut notes)?;
        send.one_process = !mapping.op.rows_are_ops
            && matches!(
                mapping.target,
                crate::mapping::Target::Conv(_) | crate::mapping::Target::Alias(_)
            );
        let out = outputs::outputs(a, &inputs, shard, writes, &mut notes)?;
        Ok(LoadConfig {
            inputs,
            mapping,
            has_header: !a.no_header,
            delimiter: match &a.delimiter {
                Some(d) => inputs::parse_delimiter(d)?,
                None => b',',
            },
            batch_size: send.batch_size,
            batch_bytes: a.batch_bytes,
            linger: Duration::from_millis(a.linger_ms.max(1)),
            send,
            results: out.results,
            ambiguous_files: out.ambiguous_files,
            retry_files: out.retry_files,
            summary_json: out.summary_json,
            report: out.report,
            metrics: out.metrics,
            metrics_push: metrics_push(a, shard)?,
            progress: match a.progress {
                _ if a.quiet || a.dry_run => ProgressMode::Off,
                crate::cli::ProgressArg::Auto => ProgressMode::Auto,
                crate::cli::ProgressArg::Json => ProgressMode::Json,
                crate::cli::ProgressArg::Off => ProgressMode::Off,
            },
            resume: a.resume,
            restart: a.restart,
            max_errors: a.max_errors.as_deref().map(MaxErrors::parse).transpose()?,
            quiet: a.quiet,
            dry_run: a.dry_run,
            sandbox: a.sandbox,
            shard,
            ref_names,
            ref_names_given: !a.ref_prefix.is_empty(),
            notes,
        })
    }
}

/// `--metrics-push URL`: http or https, with no `user:password@` (it would be printed in
/// messages and sit in `ps`; a Pushgateway behind a password is reached through a proxy
/// that adds it).
fn metrics_push(
    a: &crate::cli::LoadArgs,
    shard: Option<crate::shard::Shard>,
) -> Result<Option<String>> {
    let Some(u) = &a.metrics_push else {
        return Ok(None);
    };
    let refuse = |why: &str| Err(crate::Error::Usage(format!("--metrics-push: {why}")));
    let Some((scheme, rest)) = u.split_once("://") else {
        return refuse("give the Pushgateway's URL, http://HOST:9091");
    };
    if scheme != "http" && scheme != "https" {
        return refuse("the URL must start http:// or https://");
    }
    if rest
        .split('/')
        .next()
        .is_some_and(|host| host.contains('@'))
    {
        return refuse("a URL with user:password@ is refused (it would show in messages); reach the Pushgateway without it");
    }
    if a.dry_run {
        return refuse("a dry run sends nothing and has no figures to push; leave out --dry-run or --metrics-push");
    }
    Ok(Some(push_url(u, shard.as_ref())))
}

/// `--metrics-push URL`: the URL the metrics go to. A Pushgateway base URL gets
/// `/metrics/job/czload` (and `/shard/I` for copy I, so that copies do not replace
/// each other's metrics); a URL already naming `/metrics/job/` is used as given.
pub fn push_url(base: &str, shard: Option<&crate::shard::Shard>) -> String {
    if base.contains("/metrics/job/") {
        return base.to_string();
    }
    let u = format!("{}/metrics/job/czload", base.trim_end_matches('/'));
    match shard {
        Some(s) => format!("{u}/shard/{}", s.index),
        None => u,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn a_pushgateway_url_gets_the_job_and_the_shard() {
        let sh = crate::shard::Shard::parse("0/3").unwrap();
        assert_eq!(
            push_url("http://pg:9091/", None),
            "http://pg:9091/metrics/job/czload"
        );
        assert_eq!(
            push_url("http://pg:9091", Some(&sh)),
            "http://pg:9091/metrics/job/czload/shard/0"
        );
        assert_eq!(
            push_url("http://pg/metrics/job/x", Some(&sh)),
            "http://pg/metrics/job/x"
        );
    }
    use crate::cli::{Cli, Command};
    use clap::Parser;

    /// The settings `czload load ARGS...` would run with (`--sandbox`: no credentials).
    pub(crate) fn load_config(args: &[&str]) -> Result<LoadConfig> {
        let cli = Cli::try_parse_from(["czload", "load", "--sandbox"].iter().chain(args))
            .expect("valid flags");
        let Command::Load(a) = cli.command else {
            unreachable!()
        };
        LoadConfig::from_args(&a)
    }

    #[test]
    fn resume_without_a_results_log_yet_is_a_note_and_not_with_one() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("a.csv");
        std::fs::write(&input, "x\n1\n").unwrap();
        let input = input.to_str().unwrap();
        let note = |c: &LoadConfig| {
            c.notes
                .iter()
                .any(|n| n.starts_with("--resume: no results log at "))
        };

        let c = load_config(&[input, "--conv-id", "1", "--resume"]).unwrap();
        assert!(note(&c), "{:?}", c.notes);
        // A czload log (a manifest line), not a user's file: that would be refused.
        std::fs::write(
            c.results.as_ref().unwrap(),
            "{\"czload\":1,\"inputs\":[],\"mapping\":\"\"}\n",
        )
        .unwrap();
        let c = load_config(&[input, "--conv-id", "1", "--resume"]).unwrap();
        assert!(!note(&c), "{:?}", c.notes);
        let c = load_config(&[input, "--conv-id", "1"]).unwrap();
        assert!(!note(&c), "{:?}", c.notes);
    }

    #[test]
    fn a_fixed_rate_below_the_batch_size_lowers_both_batch_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("a.csv");
        std::fs::write(&input, "x\n1\n").unwrap();
        let input = input.to_str().unwrap();
        let c = load_config(&[input, "--conv-id", "1", "--rate", "7"]).unwrap();
        assert_eq!((c.batch_size, c.send.batch_size), (7, 7));
        assert!(c.notes.iter().any(|n| n.starts_with("--rate 7 is below")));
        let e = load_config(&[input, "--conv-id", "0"]).unwrap_err();
        assert!(e.to_string().contains("--conv-id 0"), "{e}");
    }
}
