//! The Corezoid API sandbox: a local server that speaks the protocol of `docs/protocol.md`.
//!
//! In: signed `POST /api/{1,2}/json/{login}/{ts}/{sig}` requests with `{"ops":[...]}`
//! bodies. Out: answers as Corezoid gives them (shuffled unless `ordered`), an in-memory
//! task store, and counts of everything received ([`Stats`]), readable from the library
//! ([`Sandbox::stats`], [`Sandbox::tasks`]) or over HTTP (`GET /__sandbox/stats`,
//! `GET /__sandbox/tasks`, no authentication: it is a local test tool).
//!
//! It checks what the real server checks (login, signature in any hex case, timestamp
//! within `max_skew`), applies `create`, `modify` and `show` on tasks with a unique `ref`
//! per process, answers `show conv` and `list conv_params` from `params` (`meta.rs`), and can misbehave on purpose: a tasks-per-second limit (`rps`, refusing the
//! whole request with 429 or each excess op), and faults drawn per request from a
//! (seedable) random generator: 503 before applying, 502 with an HTML body after applying,
//! a connection dropped after applying, a delay. That is what lets tests prove a loader
//! neither loses nor duplicates a row.
//!
//! Choices where the real server's behaviour is unknown (see docs/protocol.md):
//! - authentication failures are HTTP 401 with `{"request_proc":"error","description":..}`;
//! - a create or modify without `data` is a per-op error (`key: "data"`);
//! - validation errors are `proc: "error"` with `key` and `description`, the duplicate
//!   ref is `proc: "not_unical_ref"`, a missing task `proc: "not_found_task"`;
//! - the Sync API is served under `/sync` (`POST /sync/api/1/json/{login}/{ts}/{sig}`, body
//!   `{"timeout":S,"ops":[...]}`, `sync.rs`): creates are applied at once, then each is
//!   answered `{"proc":"ok","data":{...}}` (no `obj_id`) after its delay, or "Timeout for
//!   create task" past `timeout`; without `timeout`, past 60 s the request gets HTTP 504;
//! - `show conv` and `list conv_params` answer with their fields at the top of the op's
//!   answer (`status`, `title`, `privs`; `params`, `ref_mask`), every process active
//!   and every key with create, modify and view rights;
//! - every op, `show` included, counts toward the RPS limit, by default in a fixed window
//!   per wall-clock second (`rps_shape`: also a token bucket or a sliding window);
//! - faults are drawn independently in order: fail-before, then (after applying)
//!   fail-after, then drop-after;
//! - the process-level refusals (docs/protocol.md, Errors) as per-op errors: "Object conv
//!   with id N does not exist", "bad object", and, for the processes of `denied`,
//!   `inactive` and a `company` other than the op's, `proc` `access_denied`,
//!   `conveyor_is_not_active` and "Company of object do not matches companyId of
//!   request".
//!
//! Layout: `server` (HTTP, auth, limits, faults) → `ops` (parse, validate, apply, answer)
//! → `store` (a locked shard per process); `stats` and `limit` are lock-free.

mod limit;
mod meta;
mod ops;
mod server;
mod stats;
mod store;
mod sync;
mod validate;

pub use limit::RpsShape;
pub use meta::Param;
pub use stats::Stats;
pub use store::Task;

use crate::cli::{RpsModeArg, RpsShapeArg, SandboxArgs};
use crate::error::{Error, Result};
use crate::sign::Secret;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Everything the sandbox needs; the defaults are those of `czload sandbox`'s flags.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The API login it accepts.
    pub login: String,
    /// The secret signatures are checked against. Never printed.
    pub secret: Secret,
    /// The processes (conv ids) that exist; ops on others are refused.
    pub convs: Vec<u64>,
    /// Largest accepted difference between a request's timestamp and the clock, seconds.
    pub max_skew: u64,
    /// Answer ops in request order instead of shuffled.
    pub ordered: bool,
    /// Tasks (ops) per second accepted; `None` for no limit.
    pub rps: Option<u32>,
    /// How the RPS limit refuses.
    pub rps_mode: RpsMode,
    /// How the RPS limit counts (see `limit.rs`).
    pub rps_shape: RpsShape,
    /// Share of requests answered 503 before anything is applied.
    pub fail_before: f64,
    /// Share of requests applied, then answered 502 with an HTML body.
    pub fail_after: f64,
    /// Share of requests applied, then closed without an answer.
    pub drop_after: f64,
    /// The round trip: each API request waits half of it before it is handled and half
    /// before its answer goes.
    pub delay_ms: u64,
    /// Up to this much more on the way in, drawn per request: a network's jitter.
    pub delay_jitter_ms: u64,
    /// Other clients of the license (the account's live processes): tasks per second
    /// taken from `rps` in steps of 10 ms, and what that becomes after some seconds.
    pub background_rps: u32,
    pub background_after: Option<(u64, u32)>,
    /// Seed for shuffles, faults and ids; random when `None`.
    pub seed: Option<u64>,
    /// Largest task data (serialized JSON) in bytes.
    pub max_task_bytes: usize,
    /// Largest request body in bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// The input parameters every process declares (`list conv_params`); none: anything
    /// goes.
    pub params: Vec<Param>,
    /// `obj_alias` names that stand for a process (`--alias NAME=CONV`), with any
    /// non-empty `company_id`.
    pub aliases: Vec<(String, u64)>,
    /// Every Nth create in a process is answered ok and then not kept (0: never), so
    /// `czload verify` can be shown a server that loses tasks.
    pub lose_every: u64,
    /// The Sync API: how long the process takes to reply to a created task (a task's
    /// `sync_delay_ms` field overrides it).
    pub sync_delay_ms: u64,
    /// Processes that exist but refuse the key every task op: `proc: "access_denied"`.
    pub denied: Vec<u64>,
    /// Processes that exist but are not active: `proc: "conveyor_is_not_active"`.
    pub inactive: Vec<u64>,
    /// The company every process belongs to: an op naming another `company_id` is
    /// refused, "Company of object do not matches companyId of request".
    pub company: Option<String>,
}

/// `--alias NAME=CONV`, for a process the sandbox has.
fn parse_alias(a: &str, convs: &[u64]) -> Result<(String, u64)> {
    let bad = || {
        Error::Usage(format!(
            "--alias {a:?}: give NAME=CONV, CONV one of the --conv ids"
        ))
    };
    let (name, conv) = a.split_once('=').ok_or_else(bad)?;
    let conv: u64 = conv.parse().map_err(|_| bad())?;
    if name.is_empty() || !convs.contains(&conv) {
        return Err(bad());
    }
    Ok((name.to_owned(), conv))
}

/// How the RPS limit refuses the excess.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpsMode {
    /// The whole request: HTTP 429 with `Retry-After: 1`, nothing applied.
    Request,
    /// Each op beyond the limit: `proc: "error"`, "RPS limit reached"; the rest apply.
    Op,
}

impl SandboxConfig {
    /// A sandbox for `login`/`secret` with the processes `convs`, other settings as the
    /// flags' defaults.
    pub fn new(login: impl Into<String>, secret: Secret, convs: Vec<u64>) -> SandboxConfig {
        SandboxConfig {
            login: login.into(),
            secret,
            convs,
            max_skew: 300,
            ordered: false,
            rps: None,
            rps_mode: RpsMode::Request,
            rps_shape: RpsShape::Window,
            fail_before: 0.0,
            fail_after: 0.0,
            drop_after: 0.0,
            delay_ms: 0,
            delay_jitter_ms: 0,
            background_rps: 0,
            background_after: None,
            seed: None,
            max_task_bytes: 131_072,
            max_body_bytes: 32 * 1024 * 1024,
            params: Vec::new(),
            aliases: Vec::new(),
            lose_every: 0,
            sync_delay_ms: 0,
            denied: Vec::new(),
            inactive: Vec::new(),
            company: None,
        }
    }

    /// Validates the flags of `czload sandbox`; errors name the flag.
    pub fn from_args(args: &SandboxArgs) -> Result<SandboxConfig> {
        let secret = crate::config::read_secret(args.secret_file.as_deref())?.ok_or_else(|| {
            Error::Usage(format!(
                "the sandbox needs a secret to check signatures: set {} or pass --secret-file FILE",
                crate::config::SECRET_ENV
            ))
        })?;
        if args.api_login.is_empty() || args.api_login.contains('/') {
            return Err(Error::Usage(
                "--api-login cannot appear in a URL path (the value is not shown, as it may be the secret)".into(),
            ));
        }
        if args.convs.is_empty() {
            return Err(Error::Usage("--conv: give at least one process id".into()));
        }
        if args.rps == Some(0) {
            return Err(Error::Usage("--rps must be at least 1".into()));
        }
        let rps_shape = match args.rps_shape {
            RpsShapeArg::Window => RpsShape::Window,
            RpsShapeArg::Bucket => RpsShape::Bucket,
            RpsShapeArg::Sliding => RpsShape::Sliding,
        };
        if rps_shape == RpsShape::Sliding
            && args
                .rps
                .is_some_and(|n| n > limit::SlidingWindow::MAX_LIMIT)
        {
            return Err(Error::Usage(format!(
                "--rps-shape sliding counts up to --rps {}; use --rps-shape bucket or window for more",
                limit::SlidingWindow::MAX_LIMIT
            )));
        }
        for (flag, p) in [
            ("--fail-before", args.fail_before),
            ("--fail-after", args.fail_after),
            ("--drop-after", args.drop_after),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(Error::Usage(format!(
                    "{flag} is a probability between 0 and 1, got {p}"
                )));
            }
        }
        let background = match &args.background_rps {
            None => (0, None),
            Some(b) => parse_background(b)?,
        };
        Ok(SandboxConfig {
            max_skew: args.max_skew,
            ordered: args.ordered,
            rps: args.rps,
            rps_mode: match args.rps_mode {
                RpsModeArg::Request => RpsMode::Request,
                RpsModeArg::Op => RpsMode::Op,
            },
            rps_shape,
            fail_before: args.fail_before,
            fail_after: args.fail_after,
            drop_after: args.drop_after,
            delay_ms: args.delay_ms,
            delay_jitter_ms: args.delay_jitter_ms,
            background_rps: background.0,
            background_after: background.1,
            sync_delay_ms: args.sync_delay_ms,
            seed: args.seed,
            max_task_bytes: args.max_task_bytes,
            max_body_bytes: args.max_body_bytes,
            params: args
                .params
                .iter()
                .map(|p| Param::parse(p))
                .collect::<Result<_>>()?,
            aliases: args
                .aliases
                .iter()
                .map(|a| parse_alias(a, &args.convs))
                .collect::<Result<_>>()?,
            lose_every: args.lose_every,
            ..SandboxConfig::new(args.api_login.clone(), secret, args.convs.clone())
        })
    }
}

/// What the server tasks share. Everything mutable is an atomic or behind a shard's lock.
#[derive(Debug)]
pub(crate) struct State {
    pub cfg: SandboxConfig,
    pub store: store::Store,
    pub counters: stats::Counters,
    pub ids: store::IdGen,
    pub rps: Option<limit::RpsLimit>,
    pub seed: u64,
    /// Set by [`Sandbox::heal`]: no more injected faults.
    pub healed: std::sync::atomic::AtomicBool,
}

/// A running sandbox. Dropping it stops the server too; [`Sandbox::shutdown`] also waits
/// for the requests in progress.
#[derive(Debug)]
pub struct Sandbox {
    addr: SocketAddr,
    state: Arc<State>,
    stop: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
}

/// `--background-rps N` or `N,M@T` (M from T seconds on).
fn parse_background(s: &str) -> Result<(u32, Option<(u64, u32)>)> {
    let bad = || {
        Error::Usage(format!(
            "--background-rps {s:?}: tasks per second other clients take, N or N,M@SECONDS"
        ))
    };
    let (first, then) = match s.split_once(',') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let n = first.trim().parse().map_err(|_| bad())?;
    let after = match then {
        None => None,
        Some(t) => {
            let (m, at) = t.split_once('@').ok_or_else(bad)?;
            Some((
                at.trim().parse().map_err(|_| bad())?,
                m.trim().parse().map_err(|_| bad())?,
            ))
        }
    };
    Ok((n, after))
}

/// Other clients: every 10 ms, their share of the second is taken from the limit (as
/// many of it as fit: a live process is refused too when the license is spent).
async fn background(state: Arc<State>, mut stop: watch::Receiver<bool>) {
    let Some(limit) = &state.rps else { return };
    let started = tokio::time::Instant::now();
    let mut owed = 0.0f64;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(10));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let rate = match state.cfg.background_after {
            Some((at, m)) if started.elapsed().as_secs() >= at => m,
            _ => state.cfg.background_rps,
        };
        owed += f64::from(rate) / 100.0;
        let n = owed.floor();
        if n >= 1.0 {
            owed -= n;
            limit.admit_some(n as usize);
        }
    }
}

impl Sandbox {
    /// Starts a sandbox on `127.0.0.1` at a free port.
    pub async fn start(cfg: SandboxConfig) -> std::io::Result<Sandbox> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        Sandbox::start_on(listener, cfg).await
    }

    /// Starts a sandbox on a listener the caller bound.
    pub async fn start_on(listener: TcpListener, cfg: SandboxConfig) -> std::io::Result<Sandbox> {
        let addr = listener.local_addr()?;
        let seed = cfg.seed.unwrap_or_else(rand::random);
        let state = Arc::new(State {
            store: store::Store::new(&cfg.convs),
            counters: stats::Counters::default(),
            // Ids differ between sandboxes, and repeat under the same seed.
            ids: store::IdGen::new((seed >> 32) as u32 ^ seed as u32),
            rps: cfg.rps.map(|n| limit::RpsLimit::new(cfg.rps_shape, n)),
            seed,
            cfg,
            healed: Default::default(),
        });
        let (stop, stopped) = watch::channel(false);
        if state.rps.is_some()
            && (state.cfg.background_rps > 0 || state.cfg.background_after.is_some())
        {
            tokio::spawn(background(state.clone(), stopped.clone()));
        }
        let server = tokio::spawn(server::serve(listener, state.clone(), stopped));
        Ok(Sandbox {
            addr,
            state,
            stop,
            server: Some(server),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT`, the base URL to give czload.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops injecting faults (`fail_before`, `fail_after`, `drop_after`) from the next
    /// request on: a test loads through a faulty server, then retries through a sound one
    /// that still holds what the first run stored.
    pub fn heal(&self) {
        self.state
            .healed
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The counters now.
    pub fn stats(&self) -> Stats {
        self.state.counters.snapshot()
    }

    /// Every stored task, process by process in the configured order, each in creation
    /// order.
    pub fn tasks(&self) -> Vec<Task> {
        self.state
            .store
            .shards()
            .iter()
            .flat_map(|s| s.tasks())
            .collect()
    }

    /// The stored tasks as NDJSON (`{"conv_id":..,"ref":..,"obj_id":..,"data":{..}}` a line).
    pub fn write_tasks_ndjson(&self, w: &mut impl std::io::Write) -> std::io::Result<()> {
        write_tasks(&self.state, w)
    }

    /// Stops accepting connections, lets the requests in progress finish (for a few
    /// seconds at most), and returns.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn write_tasks(state: &State, w: &mut impl std::io::Write) -> std::io::Result<()> {
    // One shard at a time into a buffer, so a slow writer never holds a shard's lock.
    let mut buf = Vec::new();
    for shard in state.store.shards() {
        buf.clear();
        shard.write_ndjson(&mut buf);
        w.write_all(&buf)?;
    }
    w.flush()
}

/// `czload sandbox`: serves until Ctrl-C (or SIGTERM), then writes `--dump`.
pub async fn run_command(args: SandboxArgs) -> Result<()> {
    let cfg = SandboxConfig::from_args(&args)?;
    // Checked now, not after a day of serving (docs/outputs.md).
    let dump = match &args.dump {
        Some(p) => {
            let out = [crate::outpath::Output::new(
                "--dump",
                p,
                crate::outpath::Kind::Dump,
            )];
            let secret: Vec<&std::path::Path> =
                args.secret_file.iter().map(|p| p.as_path()).collect();
            Some(crate::outpath::check(&out, &secret)?.remove(0))
        }
        None => None,
    };
    let listener = TcpListener::bind(&args.listen)
        .await
        .map_err(|e| Error::Usage(format!("--listen {}: {e}", args.listen)))?;
    let sandbox = Sandbox::start_on(listener, cfg)
        .await
        .map_err(|e| Error::Other(format!("--listen {}: {e}", args.listen)))?;
    let convs: Vec<String> = args.convs.iter().map(|c| c.to_string()).collect();
    let url = sandbox.url();
    eprintln!(
        "czload sandbox: listening on {url} (api login {}, processes {})",
        args.api_login,
        convs.join(", ")
    );
    eprintln!(
        "  load into it: czload load --url {url} --api-login {} --conv-id {} FILE",
        args.api_login, convs[0]
    );
    eprintln!(
        "  with the same secret in {} or --secret-file; counts at {url}/__sandbox/stats, tasks at {url}/__sandbox/tasks",
        crate::config::SECRET_ENV
    );
    eprintln!("  Ctrl-C stops it");

    stop_signal().await?;
    eprintln!("czload sandbox: stopping");
    let state = sandbox.state.clone();
    sandbox.shutdown().await;
    let stats = state.counters.snapshot();
    if let Some(path) = &dump {
        let err = |e: std::io::Error| Error::file(path, format!("--dump: {e}"));
        let mut tmp =
            crate::outpath::Replace::new(path, crate::outpath::Kind::Dump).map_err(err)?;
        let mut w = std::io::BufWriter::new(tmp.file());
        write_tasks(&state, &mut w).map_err(err)?;
        drop(w);
        tmp.commit().map_err(err)?;
        eprintln!(
            "czload sandbox: wrote {} tasks to {}",
            stats.tasks,
            path.display()
        );
    }
    eprintln!(
        "czload sandbox: {} requests, {} ops, {} created, {} modified, {} duplicate refs, {} auth failures, {} tasks stored",
        stats.requests, stats.ops, stats.created, stats.modified, stats.duplicate_refs, stats.auth_failures, stats.tasks
    );
    Ok(())
}

async fn stop_signal() -> Result<()> {
    let fail = |e: std::io::Error| Error::Other(format!("cannot wait for Ctrl-C: {e}"));
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).map_err(fail)?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.map_err(fail),
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.map_err(fail)
    }
}

#[cfg(test)]
mod background_tests {
    use super::*;

    #[test]
    fn background_rps_parses_a_change() {
        assert_eq!(parse_background("300").ok(), Some((300, None)));
        assert_eq!(
            parse_background("300,900@15").ok(),
            Some((300, Some((15, 900))))
        );
        assert!(parse_background("300,900").is_err());
        assert!(parse_background("x").is_err());
    }

    /// Other clients that take the whole license leave nothing: a request is refused
    /// (but for one landing in the first 10 ms of a second, before they take it again).
    #[tokio::test]
    async fn other_clients_take_their_share_of_the_limit() {
        let sb = Sandbox::start(SandboxConfig {
            rps: Some(100),
            background_rps: 1_000_000,
            ..SandboxConfig::new("1", Secret::new("s"), vec![1])
        })
        .await
        .expect("starts");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let limit = sb.state.rps.as_ref().expect("a limit");
        let mut admitted = 0;
        for _ in 0..10 {
            admitted += limit.admit_some(10);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(admitted <= 10, "{admitted} of 100 admitted");
    }
}
