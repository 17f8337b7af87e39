//! `czload`: parse the flags, build the settings, run, map the outcome to an exit code.
//! Everything the user reads on stderr, but the progress display, is printed here, and
//! only here the process exits (signal handling included).
//!
//! Every write to stdout and stderr goes through `say!`/`out!`, which give up quietly:
//! a closed stderr (`czload load ... 2>&1 | head -1`) must not panic while rows are in
//! flight, since the results log is what `--resume` trusts.

use clap::Parser;
use czload::cli::{Cli, Command};
use czload::config::LoadConfig;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};

/// `--color` as decided for stderr (`ColorArg::colors`), for `say!`.
static COLOR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `eprint!` that ignores a failed write, its text wrapped to stderr's width (80 off a
/// terminal: a cron log or a mail reads it) and its alarms painted where colour is on.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let text = czload::term::wrap(&format!($($t)*), czload::term::width());
        let text = czload::term::paint(&text, COLOR.load(Ordering::Relaxed));
        let _ = write!(std::io::stderr(), "{text}");
    }};
}

/// `print!` that ignores a failed write.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($t)*);
    }};
}

/// The signal that stopped the run (0: none), for the exit code: 128 + its number, as a
/// shell reports a process killed by it (130 SIGINT, 143 SIGTERM, 129 SIGHUP).
static STOPPED_BY: AtomicI32 = AtomicI32::new(0);

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // Help and version go to stdout with 0; a usage error is exit 1 (docs/architecture.md).
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    // Generated from the flag definitions: nothing to run.
    match &cli.command {
        Command::Completions { shell } => return completions(*shell),
        Command::Man => return man(),
        _ => {}
    }
    let verbose = matches!(&cli.command, Command::Load(a) | Command::Check(a) if a.verbose);
    use std::io::IsTerminal as _;
    let color = cli.color.colors(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    init_logging(verbose, color);
    COLOR.store(color, Ordering::Relaxed);
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Command::Sandbox(a) = &cli.command {
        if let Some(n) = a.threads {
            rt.worker_threads(n.into());
        }
    }
    let rt = match rt.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            say!("czload: cannot start the async runtime: {e}\n");
            return ExitCode::from(1);
        }
    };
    let code = match cli.command {
        // On a worker thread, not this one: the dispatcher then hands each batch to a
        // sender task on its own thread instead of waking a worker for every batch.
        Command::Load(args) => match rt.block_on(rt.spawn(load(*args))) {
            Ok(code) => code,
            Err(e) => {
                say!("czload: internal error: {e}\n");
                1
            }
        },
        Command::Check(args) => match rt.block_on(rt.spawn(check(*args))) {
            Ok(code) => code,
            Err(e) => {
                say!("czload: internal error: {e}\n");
                1
            }
        },
        Command::Sandbox(args) => match rt.block_on(czload::sandbox::run_command(*args)) {
            Ok(()) => 0,
            Err(e) => {
                say!("czload: {e}\n");
                e.exit_code()
            }
        },
        Command::Report(args) => {
            match czload::sink::report::report_command(&args.results, &args.output) {
                Ok(n) => {
                    say!(
                        "czload: wrote {} ({n} rows from {})\n",
                        args.output.display(),
                        args.results
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    0
                }
                Err(e) => {
                    say!("czload: {e}\n");
                    e.exit_code()
                }
            }
        }
        Command::MergeResults(args) => merge_results(&args),
        Command::Undo(args) => match rt.block_on(rt.spawn(undo(args))) {
            Ok(code) => code,
            Err(e) => {
                say!("czload: internal error: {e}\n");
                1
            }
        },
        Command::Verify(args) => match rt.block_on(rt.spawn(verify(args))) {
            Ok(code) => code,
            Err(e) => {
                say!("czload: internal error: {e}\n");
                1
            }
        },
        Command::Completions { .. } | Command::Man => unreachable!("handled above"),
    };
    // Requests still draining after a second Ctrl-C must not hold the exit.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    ExitCode::from(code)
}

async fn load(args: czload::cli::LoadArgs) -> u8 {
    let cfg = match LoadConfig::from_args(&args) {
        Ok(c) => c,
        Err(e) => {
            say!("czload: {e}\n");
            return e.exit_code();
        }
    };
    for n in &cfg.notes {
        say!("czload: {n}\n");
    }
    if args.check {
        if cfg.inputs.iter().any(|i| i.path.is_none()) {
            say!("czload: --check reads the first rows before the load reads them all, and stdin cannot be read twice: run `czload check` on a file, or leave out --check\n");
            return 1;
        }
        match czload::check(cfg.clone(), args.check_rows).await {
            Ok(r) if r.fits() => say!("{}", r.render()),
            Ok(r) => {
                say!("{}czload: nothing was loaded (--check)\n", r.render());
                return 2;
            }
            Err(e) => {
                say!("czload: {e}\n");
                return 1;
            }
        }
    }
    match czload::run(cfg, stop_signal()).await {
        Ok(done) => {
            if let Some(req) = &done.dry_run_request {
                out!(
                    "first request:\nPOST {}\n{}\n",
                    req.url,
                    String::from_utf8_lossy(&req.body)
                );
            }
            for r in &done.summary.dry_run_rejects {
                say!("{r}\n");
            }
            for n in &done.summary.notes {
                say!("czload: {n}\n");
            }
            if let Some(s) = &done.sandbox_report {
                say!("{s}");
            }
            say!("{}", done.summary.render());
            for e in &done.summary.report_errors {
                say!("czload: {e}\n");
            }
            if !done.summary.report_errors.is_empty() {
                1
            } else if done.summary.interrupted {
                match STOPPED_BY.load(Ordering::SeqCst) {
                    0 => 130,
                    sig => (128 + sig) as u8,
                }
            } else {
                done.summary.exit_code() as u8
            }
        }
        Err(e) => {
            say!("czload: {e}\n");
            e.exit_code()
        }
    }
}

/// `czload check`: the report on stdout; 0 fits, 2 does not, 1 cannot check.
async fn check(args: czload::cli::LoadArgs) -> u8 {
    let cfg = match LoadConfig::for_check(&args) {
        Ok(c) => c,
        Err(e) => {
            say!("czload: {e}\n");
            return e.exit_code();
        }
    };
    match czload::check(cfg, args.check_rows).await {
        Ok(r) => {
            // Read by a person, often in a CI log: wrapped as the messages are.
            out!(
                "{}",
                czload::term::wrap(&r.render(), czload::term::stdout_width())
            );
            if r.fits() {
                0
            } else {
                2
            }
        }
        Err(e) => {
            say!("czload: {e}\n");
            e.exit_code()
        }
    }
}

/// `czload completions SHELL`: the script on stdout.
fn completions(shell: czload::cli::ShellArg) -> ExitCode {
    use clap::CommandFactory;
    use clap_complete::Shell;
    let shell = match shell {
        czload::cli::ShellArg::Bash => Shell::Bash,
        czload::cli::ShellArg::Zsh => Shell::Zsh,
        czload::cli::ShellArg::Fish => Shell::Fish,
        czload::cli::ShellArg::Powershell => Shell::PowerShell,
    };
    // Into memory first: clap_complete panics on a write error (`| head` closing the pipe).
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "czload", &mut out);
    write_stdout(&out, "the completion script")
}

/// Writes generated text to stdout; a reader that stopped early (`| head`) is not an error.
fn write_stdout(out: &[u8], what: &str) -> ExitCode {
    use std::io::Write;
    match std::io::stdout().write_all(out) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("czload: cannot write {what}: {e}");
            ExitCode::from(1)
        }
        _ => ExitCode::SUCCESS,
    }
}

/// `czload man`: the man page (roff) on stdout, its subcommands' flags included, then the
/// sections man readers look for by name: EXIT STATUS (from each command's help, so the two
/// cannot disagree), ENVIRONMENT (from the flags' `env`) and EXAMPLES.
fn man() -> ExitCode {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let mut out = Vec::new();
    let main = clap_mangen::Man::new(cmd.clone());
    // Its after-help (the examples) is the EXAMPLES section at the end, not "EXTRA".
    let mut ok = main.render_title(&mut out).is_ok()
        && main.render_name_section(&mut out).is_ok()
        && main.render_synopsis_section(&mut out).is_ok()
        && main.render_description_section(&mut out).is_ok()
        && main.render_options_section(&mut out).is_ok()
        && main.render_subcommands_section(&mut out).is_ok()
        && main.render_version_section(&mut out).is_ok();
    // One page, with a part per subcommand after the main one (`man czload` shows all);
    // their after-help texts (exit codes) go to EXIT STATUS instead of "EXTRA".
    let subs: Vec<&clap::Command> = cmd
        .get_subcommands()
        .filter(|s| s.get_name() != "help")
        .collect();
    for sub in &subs {
        let page = clap_mangen::Man::new((*sub).clone().name(format!("czload-{}", sub.get_name())));
        ok &= page.render_name_section(&mut out).is_ok()
            && page.render_synopsis_section(&mut out).is_ok()
            && page.render_description_section(&mut out).is_ok()
            && (sub.get_arguments().next().is_none()
                || page.render_options_section(&mut out).is_ok());
    }
    if !ok {
        eprintln!("czload: cannot render the man page");
        return ExitCode::from(1);
    }
    out.extend_from_slice(man_sections(&cmd, &subs).as_bytes());
    write_stdout(&out, "the man page")
}

/// EXIT STATUS, ENVIRONMENT and EXAMPLES in roff.
fn man_sections(cmd: &clap::Command, subs: &[&clap::Command]) -> String {
    // roff: a line starting with `.` or `'` is a request, and `-` should be `\-`.
    let text = |t: &str| {
        t.lines()
            .map(|l| {
                let l = l.replace('\\', "\\e").replace('-', "\\-");
                if l.starts_with(['.', '\'']) {
                    format!("\\&{l}")
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut s = String::from(".SH \"EXIT STATUS\"\n");
    for sub in subs {
        let Some(help) = sub.get_after_help() else {
            continue;
        };
        let help = help.to_string();
        let codes = help
            .split("\n\n")
            .find(|p| p.contains("Exit codes"))
            .unwrap_or(&help);
        s += &format!(
            ".TP\n\\fBczload {}\\fR\n{}\n",
            sub.get_name(),
            text(&codes.replace('\n', " "))
        );
    }
    s += ".SH ENVIRONMENT\n";
    let mut seen = std::collections::BTreeMap::new();
    for sub in std::iter::once(cmd).chain(subs.iter().copied()) {
        for arg in sub.get_arguments() {
            if let Some(env) = arg.get_env() {
                let flag = arg
                    .get_long()
                    .map(|l| format!("\\-\\-{l}"))
                    .unwrap_or_default();
                seen.entry(env.to_string_lossy().into_owned())
                    .or_insert(flag);
            }
        }
    }
    seen.insert(czload::config::SECRET_ENV.into(), String::new());
    seen.insert("RUST_LOG".into(), String::new());
    for (env, flag) in &seen {
        let what = match (env.as_str(), flag.is_empty()) {
            ("COREZOID_API_SECRET", _) => "The API key's secret (or \\-\\-secret\\-file). Never a flag, so never in \\fBps\\fR.".to_owned(),
            ("RUST_LOG", _) => "Log filter for \\-\\-verbose\\-style logging (czload=debug); the secret is never logged.".to_owned(),
            (_, false) => format!("The default of {flag}."),
            _ => String::new(),
        };
        s += &format!(".TP\n\\fB{env}\\fR\n{what}\n");
    }
    s += ".SH EXAMPLES\n.nf\n";
    s += &text(czload::cli::EXAMPLES.trim_start_matches("Examples:\n"));
    s += "\n.fi\n";
    s
}

/// `color`: `--color` decided (`ColorArg::colors`): escape codes in a file are noise.
fn init_logging(verbose: bool, color: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if verbose {
            "czload=debug"
        } else {
            "czload=warn"
        })
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        // Its own failed writes are reported with eprintln!, which panics on a closed
        // stderr: a log line is not worth the run.
        .log_internal_errors(false)
        .with_target(false)
        .try_init();
}

/// Resolves at the first SIGINT (Ctrl-C), SIGTERM (Kubernetes, systemd, `timeout`, CI
/// runners) or SIGHUP (a closed terminal): the run then drains, flushes and prints its
/// summary. A second one ends the process at once with 128 + its number (the results
/// log is flushed batch by batch, so `--resume` still works).
async fn stop_signal() {
    let Some(mut signals) = Signals::new() else {
        // No signal handling here: never resolve.
        return std::future::pending::<()>().await;
    };
    let (sig, name) = signals.next().await;
    STOPPED_BY.store(sig, Ordering::SeqCst);
    say!("czload: interrupted by {name}: finishing the requests in flight (a second signal quits at once)\n");
    tokio::spawn(async move {
        let (sig, name) = signals.next().await;
        say!("czload: second signal ({name}): exiting now\n");
        std::process::exit(128 + sig);
    });
}

#[cfg(unix)]
struct Signals([(tokio::signal::unix::Signal, i32, &'static str); 3]);

#[cfg(unix)]
impl Signals {
    fn new() -> Option<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        let one = |k, n, name| signal(k).ok().map(|s| (s, n, name));
        Some(Signals([
            one(SignalKind::interrupt(), libc::SIGINT, "Ctrl-C (SIGINT)")?,
            one(SignalKind::terminate(), libc::SIGTERM, "SIGTERM")?,
            one(SignalKind::hangup(), libc::SIGHUP, "SIGHUP")?,
        ]))
    }

    async fn next(&mut self) -> (i32, &'static str) {
        let [(a, na, ta), (b, nb, tb), (c, nc, tc)] = &mut self.0;
        tokio::select! {
            _ = a.recv() => (*na, *ta),
            _ = b.recv() => (*nb, *tb),
            _ = c.recv() => (*nc, *tc),
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn new() -> Option<Signals> {
        Some(Signals)
    }

    async fn next(&mut self) -> (i32, &'static str) {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        (2, "Ctrl-C")
    }
}

/// A progress line on stderr every few seconds, for `verify` and `undo`.
fn ticker(what: &'static str) -> czload::after::Ticker {
    czload::after::Ticker::new(Box::new(move |line| say!("czload {what}: {line}\n")))
}

/// `czload verify`: the report on stderr; 0 all confirmed, 2 not, 1 or 75 as a load.
async fn verify(args: Box<czload::after::verify::VerifyArgs>) -> u8 {
    match czload::after::verify::run(&args, ticker("verify"), stop_signal()).await {
        Ok(v) => {
            say!("{}", v.render());
            match (v.interrupted, STOPPED_BY.load(Ordering::SeqCst)) {
                (true, sig) if sig > 0 => (128 + sig) as u8,
                _ => v.exit_code(),
            }
        }
        Err(e) => {
            say!("czload: {e}\n");
            e.exit_code()
        }
    }
}

/// `czload undo`: asks first (unless --yes or --dry-run), then deletes; the report on
/// stderr.
async fn undo(args: Box<czload::after::undo::UndoArgs>) -> u8 {
    use std::io::IsTerminal as _;
    if !args.yes && !args.dry_run {
        if !std::io::stdin().is_terminal() {
            say!("czload: undo deletes tasks: pass --yes to confirm (stdin is not a terminal, so it cannot ask); --dry-run lists them\n");
            return 1;
        }
        let (n, procs) = match czload::after::undo::count(&args) {
            Ok(c) => c,
            Err(e) => {
                say!("czload: {e}\n");
                return e.exit_code();
            }
        };
        say!("Delete the {n} tasks these logs created ({procs})? [y/N] ");
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            say!("czload: nothing deleted\n");
            return 1;
        }
    }
    let done = if args.dry_run {
        czload::after::undo::dry_run(&args, &mut std::io::stdout().lock())
    } else {
        czload::after::undo::run(&args, ticker("undo"), stop_signal()).await
    };
    match done {
        Ok(u) => {
            say!("{}", u.render());
            match (u.interrupted, STOPPED_BY.load(Ordering::SeqCst)) {
                (true, sig) if sig > 0 => (128 + sig) as u8,
                _ => u.exit_code(),
            }
        }
        Err(e) => {
            say!("czload: {e}\n");
            e.exit_code()
        }
    }
}

/// `czload merge-results`: 0 merged, 2 refused (named), 1 a file that cannot be used.
fn merge_results(args: &czload::cli::MergeArgs) -> u8 {
    use czload::sink::merge::{merge_results, Merge};
    match merge_results(&args.logs, &args.output) {
        Ok(Merge::Done { shards, rows }) => {
            let per: Vec<String> = rows
                .iter()
                .enumerate()
                .map(|(i, n)| format!("shard {i}/{shards}: {n}"))
                .collect();
            say!(
                "czload: wrote {}: {} rows from {shards} shards ({})\n",
                args.output.display(),
                rows.iter().sum::<u64>(),
                per.join(", ")
            );
            0
        }
        Ok(Merge::Refused(why)) => {
            say!("czload: merge-results: {why}; nothing was written\n");
            2
        }
        Err(e) => {
            say!("czload: merge-results: {e}\n");
            e.exit_code()
        }
    }
}
