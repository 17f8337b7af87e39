//! `czload`: parse the flags, build the settings, run, map the outcome to an exit code.
//! Everything the user reads on stderr, but the progress display, is printed here, and
//! only here the process exits (Ctrl-C handling included).

use clap::Parser;
use czload::cli::{Cli, Command};
use czload::config::LoadConfig;
use std::process::ExitCode;

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
    let verbose = matches!(&cli.command, Command::Load(a) if a.verbose);
    init_logging(verbose);
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Command::Sandbox(a) = &cli.command {
        if let Some(n) = a.threads {
            rt.worker_threads(n.into());
        }
    }
    let rt = match rt.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("czload: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = match cli.command {
        // On a worker thread, not this one: the dispatcher then hands each batch to a
        // sender task on its own thread instead of waking a worker for every batch.
        Command::Load(args) => match rt.block_on(rt.spawn(load(*args))) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("czload: internal error: {e}");
                1
            }
        },
        Command::Sandbox(args) => match rt.block_on(czload::sandbox::run_command(args)) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("czload: {e}");
                1
            }
        },
        Command::Report(args) => {
            match czload::sink::report::write_report(&args.results, &args.output) {
                Ok(n) => {
                    eprintln!(
                        "czload: wrote {} ({n} rows from {})",
                        args.output.display(),
                        args.results.display()
                    );
                    0
                }
                Err(e) => {
                    eprintln!("czload: {e}");
                    1
                }
            }
        }
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
            eprintln!("czload: {e}");
            return 1;
        }
    };
    for n in &cfg.notes {
        eprintln!("czload: {n}");
    }
    match czload::run(cfg, ctrl_c()).await {
        Ok(done) => {
            if let Some(req) = &done.dry_run_request {
                println!(
                    "first request:\nPOST {}\n{}",
                    req.url,
                    String::from_utf8_lossy(&req.body)
                );
            }
            for r in &done.summary.dry_run_rejects {
                eprintln!("{r}");
            }
            if let Some(s) = &done.sandbox_report {
                eprint!("{s}");
            }
            eprint!("{}", done.summary.render());
            for e in &done.summary.report_errors {
                eprintln!("czload: {e}");
            }
            if done.summary.report_errors.is_empty() {
                done.summary.exit_code() as u8
            } else {
                1
            }
        }
        Err(e) => {
            eprintln!("czload: {e}");
            1
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

/// `czload man`: the man page (roff) on stdout, its subcommands' flags included.
fn man() -> ExitCode {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let mut out = Vec::new();
    let mut page = |c: clap::Command| clap_mangen::Man::new(c).render(&mut out);
    let mut ok = page(cmd.clone()).is_ok();
    // One page, with a section per subcommand after the main one (`man czload` shows all).
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("czload-{}", sub.get_name());
        ok &= page(sub.clone().name(name)).is_ok();
    }
    if !ok {
        eprintln!("czload: cannot render the man page");
        return ExitCode::from(1);
    }
    write_stdout(&out, "the man page")
}

fn init_logging(verbose: bool) {
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
        .with_target(false)
        .try_init();
}

/// Resolves at the first Ctrl-C; a second one ends the process at once with 130 (the
/// results log is flushed batch by batch, so `--resume` still works).
async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        // No signal handling on this platform: never resolve.
        std::future::pending::<()>().await;
    }
    eprintln!(
        "czload: interrupted: finishing the requests in flight (Ctrl-C again to quit at once)"
    );
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("czload: second Ctrl-C: exiting now");
            std::process::exit(130);
        }
    });
}
