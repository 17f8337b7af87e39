//! Issue 25, class 2 ("files harmed"), over the class: every output of every command that
//! writes (`load`: `--results`, `--retry-file`, the default retry file beside the input,
//! the ambiguous file beside the retry file, `--summary-json`, `--report`, `--metrics`;
//! `merge-results -o`; `report -o`; `verify --output`; `undo --output`; `sandbox --dump`) × what is at its path (nothing,
//! czload's own file, a user's file, an empty file, a FIFO, a device node, a directory, a
//! symlink and a hard link to the input, a folder that is not there) × how the load runs
//! (plain, `--resume` without a log, `--resume` with one, `--restart`). Each case is
//! either refused before any request (exit 2, the flag named, the sandbox got nothing) or
//! handled (exit 0), and every file that is not czload's own is byte-, inode- and
//! mode-identical afterwards. docs/outputs.md says the rules.
//!
//! The device node is made with mknod(2) in the case's folder when the tests run as
//! root; otherwise it is a symlink to /dev/null (which the same rules refuse).

use crate::common::{self, load_command, s, Out, SECRET};
use czload::sandbox::Sandbox;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Absent,
    Own,
    User,
    Empty,
    Fifo,
    Device,
    Dir,
    SymlinkToInput,
    HardlinkToInput,
    MissingFolder,
}

const STATES: [State; 10] = [
    State::Absent,
    State::Own,
    State::User,
    State::Empty,
    State::Fifo,
    State::Device,
    State::Dir,
    State::SymlinkToInput,
    State::HardlinkToInput,
    State::MissingFolder,
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Plain,
    ResumeNoLog,
    ResumeLog,
    Restart,
}

const MODES: [Mode; 4] = [
    Mode::Plain,
    Mode::ResumeNoLog,
    Mode::ResumeLog,
    Mode::Restart,
];

/// An output of `load`, and how a case names it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Flag {
    Results,
    RetryFile,
    /// No flag: `in.retry.csv` beside the input.
    DefaultRetry,
    /// `out.ambiguous.csv` beside `--retry-file out.csv`.
    Ambiguous,
    SummaryJson,
    Report,
    Metrics,
}

impl Flag {
    /// The flag a refusal names.
    fn named(self) -> &'static str {
        match self {
            Flag::Results => "--results",
            Flag::RetryFile | Flag::DefaultRetry | Flag::Ambiguous => "--retry-file",
            Flag::SummaryJson => "--summary-json",
            Flag::Report => "--report",
            Flag::Metrics => "--metrics",
        }
    }

    /// A retry or ambiguous file: czload's own only once rows went to it.
    fn retry_kind(self) -> bool {
        matches!(self, Flag::RetryFile | Flag::DefaultRetry | Flag::Ambiguous)
    }

    /// Flags every run of the case takes: without refs, rows whose fate is unknown are
    /// `ambiguous` (so that an ambiguous file is written).
    fn extra(self) -> Vec<String> {
        match self {
            Flag::Ambiguous => vec!["--no-ref".into()],
            _ => vec![],
        }
    }

    fn file_name(self) -> &'static str {
        match self {
            Flag::Results => "out.ndjson",
            Flag::RetryFile => "out.csv",
            Flag::DefaultRetry => "in.retry.csv",
            Flag::Ambiguous => "out.ambiguous.csv",
            Flag::SummaryJson => "out.json",
            Flag::Report => "out.html",
            Flag::Metrics => "out.prom",
        }
    }

    /// The flags that point the load's output at `target`.
    fn args(self, target: &Path) -> Vec<String> {
        let t = s(target).to_string();
        let beside = |name: &str| s(&target.with_file_name(name)).to_string();
        match self {
            Flag::Results => vec!["--results".into(), t],
            Flag::RetryFile => vec!["--retry-file".into(), t],
            Flag::DefaultRetry => vec![],
            Flag::Ambiguous => vec!["--retry-file".into(), beside("out.csv")],
            Flag::SummaryJson => vec!["--summary-json".into(), t],
            Flag::Report => vec!["--report".into(), t],
            Flag::Metrics => vec!["--metrics".into(), t],
        }
    }
}

const ROWS: usize = 3;

fn make_input(dir: &Path) -> PathBuf {
    let p = dir.join("in.csv");
    let mut text = String::from("id,name\n");
    for i in 0..ROWS {
        text.push_str(&format!("{i},n{i}\n"));
    }
    std::fs::write(&p, text).unwrap();
    p
}

/// Runs czload; a run that does not end within a minute (a FIFO opened) fails the test.
pub(crate) async fn run(mut cmd: std::process::Command) -> Out {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().expect("czload starts");
        let start = Instant::now();
        loop {
            if child.try_wait().expect("wait").is_some() {
                return Out::from(child.wait_with_output().expect("output"));
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                let out = Out::from(child.wait_with_output().expect("output"));
                panic!("czload hung (a FIFO opened?): {out:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    })
    .await
    .unwrap()
}

pub(crate) async fn load(url: &str, input: &Path, extra: &[String]) -> Out {
    let mut cmd = load_command(url, SECRET);
    cmd.args([s(input), "--conv-id", "555"]).args(extra);
    run(cmd).await
}

pub(crate) fn mkfifo(p: &Path) {
    let st = std::process::Command::new("mkfifo")
        .arg(p)
        .status()
        .expect("mkfifo runs");
    assert!(st.success());
}

/// A character device like /dev/null (1, 3) made at `p` when root may; else a symlink
/// to /dev/null.
fn device(p: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: mknod on a NUL-terminated path in the test's temporary folder.
    let made = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 3)) };
    if made != 0 {
        std::os::unix::fs::symlink("/dev/null", p).unwrap();
    }
}

/// Puts `state` at `target` (czload's own file is made by the caller's earlier run).
fn place(state: State, target: &Path, input: &Path) {
    match state {
        State::Absent | State::Own | State::MissingFolder => {}
        State::User => std::fs::write(target, "a user's file\n").unwrap(),
        State::Empty => std::fs::write(target, "").unwrap(),
        State::Fifo => mkfifo(target),
        State::Device => device(target),
        State::Dir => std::fs::create_dir(target).unwrap(),
        State::SymlinkToInput => std::os::unix::fs::symlink(input, target).unwrap(),
        State::HardlinkToInput => std::fs::hard_link(input, target).unwrap(),
    }
}

/// What a file is: its type, inode, mode, and (a regular file) its bytes, (a symlink)
/// where it points. Never opens anything but a regular file.
#[derive(Debug, PartialEq)]
pub(crate) struct Snap {
    kind: String,
    ino: u64,
    mode: u32,
    bytes: Option<Vec<u8>>,
}

pub(crate) fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Snap> {
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let md = std::fs::symlink_metadata(&p).unwrap();
        let t = md.file_type();
        let bytes = if t.is_file() {
            Some(std::fs::read(&p).unwrap())
        } else if t.is_symlink() {
            Some(
                std::fs::read_link(&p)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes(),
            )
        } else {
            None
        };
        let snap = Snap {
            kind: format!("{t:?}"),
            ino: md.ino(),
            mode: md.mode(),
            bytes,
        };
        m.insert(p, snap);
    }
    m
}

/// Asserts that every file of `before` but czload's own (`own`) is as it was, and that
/// no temporary file was left.
pub(crate) fn untouched(case: &str, before: &BTreeMap<PathBuf, Snap>, dir: &Path, own: &[PathBuf]) {
    let after = snapshot(dir);
    for (p, was) in before {
        if own.contains(p) {
            continue;
        }
        assert_eq!(after.get(p), Some(was), "{case}: {} changed", p.display());
    }
    for p in after.keys() {
        let name = p.file_name().unwrap().to_string_lossy();
        assert!(!name.contains("czload-tmp"), "{case}: left {name}");
    }
}

/// Removes the end line, the last run line and the last row line: an unfinished log
/// (a crash), for `--resume` and `--restart`.
fn cut(log: &Path) {
    let text = std::fs::read_to_string(log).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.truncate(lines.len() - 3);
    std::fs::write(log, lines.join("\n") + "\n").unwrap();
}

/// What the case should come to.
fn refused_expected(flag: Flag, state: State, mode: Mode) -> bool {
    match state {
        State::Absent => false,
        // Without the log that names it, a retry file is nobody's czload knows.
        State::Own => {
            mode == Mode::ResumeNoLog
                && matches!(flag, Flag::RetryFile | Flag::DefaultRetry | Flag::Ambiguous)
        }
        _ => true,
    }
}

/// One case of the load matrix, in its own folder under `root`.
async fn load_case(
    (sb, bad): (&Sandbox, Option<&Sandbox>),
    root: &Path,
    flag: Flag,
    state: State,
    mode: Mode,
) {
    let name = format!("{flag:?}-{state:?}-{mode:?}");
    let dir = root.join(&name);
    std::fs::create_dir(&dir).unwrap();
    let input = make_input(&dir);
    let target = match state {
        State::MissingFolder => dir.join("missing").join(flag.file_name()),
        _ => dir.join(flag.file_name()),
    };
    // The log of the earlier run: the target only when it is czload's own results log.
    let log = match (flag, state) {
        (Flag::Results, State::Own) => target.clone(),
        _ => dir.join("in.results.ndjson"),
    };
    let args = flag.args(&target);
    // Czload's own file: an earlier run wrote it (a retry file: the log names it, and
    // rows were written to it).
    let with_log = matches!(mode, Mode::ResumeLog | Mode::Restart);
    if state == State::Own || with_log {
        let mut prep_args = if state == State::Own {
            args.clone()
        } else {
            vec![]
        };
        prep_args.extend(flag.extra());
        // A retry or ambiguous file of czload's own holds rows that went there: the
        // earlier run loads into a sandbox whose every answer fails.
        let (url, code) = match (state, flag.retry_kind()) {
            (State::Own, true) => {
                prep_args.extend(["--max-attempts".into(), "1".into()]);
                (bad.expect("a failing sandbox").url(), 2)
            }
            _ => (sb.url(), 0),
        };
        let out = load(&url, &input, &prep_args).await;
        assert_eq!(out.code, code, "{name}: the earlier run: {out:?}");
        if state == State::Own {
            assert!(
                target.is_file(),
                "{name}: czload's own file is there: {out:?}"
            );
        }
        if with_log {
            cut(&log);
        } else if mode == Mode::ResumeNoLog && log != target {
            std::fs::remove_file(&log).unwrap();
        }
    }
    place(state, &target, &input);
    let mut own: Vec<PathBuf> = vec![dir.join("in.results.ndjson")];
    if state == State::Own {
        own.push(target.clone());
    }
    let before = snapshot(&dir);
    let requests = sb.stats().requests;
    let mut run_args = args.clone();
    run_args.extend(flag.extra());
    match mode {
        Mode::Plain => {}
        Mode::ResumeNoLog | Mode::ResumeLog => run_args.push("--resume".into()),
        Mode::Restart => run_args.push("--restart".into()),
    }
    let out = load(&sb.url(), &input, &run_args).await;
    if refused_expected(flag, state, mode) {
        assert_eq!(out.code, 2, "{name}: refused: {out:?}");
        assert!(
            out.stderr.contains(flag.named())
                && (out.stderr.contains(flag.file_name()) || state == State::MissingFolder)
                && out.stderr.contains(s(&dir)),
            "{name}: names {} and the file: {}",
            flag.named(),
            out.stderr
        );
        assert_eq!(sb.stats().requests, requests, "{name}: nothing sent");
    } else {
        // Exit 2 too when rows the earlier run failed are resumed: it answers for them.
        let earlier_failed = state == State::Own && flag.retry_kind() && mode == Mode::ResumeLog;
        let code = if earlier_failed { 2 } else { 0 };
        assert_eq!(out.code, code, "{name}: handled: {out:?}");
        // (A resume of czload's own finished log has nothing left to send.)
        let finished = flag == Flag::Results && mode == Mode::ResumeNoLog;
        assert!(
            finished || sb.stats().requests > requests,
            "{name}: the load ran"
        );
    }
    untouched(&name, &before, &dir, &own);
    if state == State::MissingFolder {
        assert!(!dir.join("missing").exists(), "{name}: no folder made");
    }
}

async fn load_matrix(flag: Flag) {
    let sb = common::sandbox().await;
    let bad = match flag.retry_kind() {
        true => Some(
            Sandbox::start(czload::sandbox::SandboxConfig {
                fail_after: 1.0,
                ..common::config()
            })
            .await
            .unwrap(),
        ),
        false => None,
    };
    let root = tempfile::tempdir().unwrap();
    for state in STATES {
        // The default retry file is beside the input, in a folder that is there.
        if flag == Flag::DefaultRetry && state == State::MissingFolder {
            continue;
        }
        for mode in MODES {
            load_case((&sb, bad.as_ref()), root.path(), flag, state, mode).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_log_matrix() {
    load_matrix(Flag::Results).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_file_matrix() {
    load_matrix(Flag::RetryFile).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_retry_file_matrix() {
    load_matrix(Flag::DefaultRetry).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_file_matrix() {
    load_matrix(Flag::Ambiguous).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_json_matrix() {
    load_matrix(Flag::SummaryJson).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_matrix() {
    load_matrix(Flag::Report).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_matrix() {
    load_matrix(Flag::Metrics).await;
}

/// `merge-results -o` and `report -o` over every state; their inputs are the shard logs
/// (or the results log), and the load's input that the logs' manifests name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_and_report_output_matrix() {
    let sb = common::sandbox().await;
    let root = tempfile::tempdir().unwrap();
    for (cmd, file) in [("merge-results", "merged.ndjson"), ("report", "r.html")] {
        for state in STATES {
            let name = format!("{cmd}-{state:?}");
            let dir = root.path().join(&name);
            std::fs::create_dir(&dir).unwrap();
            let input = make_input(&dir);
            let logs: Vec<PathBuf> = (0..2)
                .map(|i| dir.join(format!("in.shard-{i}-of-2.results.ndjson")))
                .collect();
            for i in 0..2 {
                let out = load(&sb.url(), &input, &["--shard".into(), format!("{i}/2")]).await;
                assert_eq!(out.code, 0, "{name}: shard {i}: {out:?}");
            }
            let target = match state {
                State::MissingFolder => dir.join("missing").join(file),
                _ => dir.join(file),
            };
            let command = |target: &Path| {
                let mut c = common::czload();
                c.arg(cmd);
                match cmd {
                    "report" => c.arg(&logs[0]),
                    _ => c.args(&logs),
                };
                c.arg("-o").arg(target);
                c
            };
            if state == State::Own {
                let out = run(command(&target)).await;
                assert_eq!(out.code, 0, "{name}: the earlier run: {out:?}");
            }
            place(state, &target, &input);
            let before = snapshot(&dir);
            let out = run(command(&target)).await;
            if refused_expected(Flag::Report, state, Mode::Plain) {
                assert_eq!(out.code, 2, "{name}: refused: {out:?}");
                assert!(
                    out.stderr.contains("-o ") && out.stderr.contains(file),
                    "{name}: {}",
                    out.stderr
                );
            } else {
                assert_eq!(out.code, 0, "{name}: handled: {out:?}");
            }
            let own = if state == State::Own {
                vec![target.clone()]
            } else {
                vec![]
            };
            untouched(&name, &before, &dir, &own);
        }
    }
    // Onto one of the logs it merges, or reports on: refused, the log unchanged.
    let dir = root.path().join("onto-a-log");
    std::fs::create_dir(&dir).unwrap();
    let input = make_input(&dir);
    for i in 0..2 {
        let out = load(&sb.url(), &input, &["--shard".into(), format!("{i}/2")]).await;
        assert_eq!(out.code, 0, "{out:?}");
    }
    let log0 = dir.join("in.shard-0-of-2.results.ndjson");
    let log1 = dir.join("in.shard-1-of-2.results.ndjson");
    let before = snapshot(&dir);
    let mut c = common::czload();
    c.args(["merge-results", s(&log0), s(&log1), "-o", s(&log1)]);
    let out = run(c).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("is the input"), "{}", out.stderr);
    let mut c = common::czload();
    c.args(["report", s(&log0), "-o", s(&log0)]);
    let out = run(c).await;
    assert_eq!(out.code, 2, "{out:?}");
    untouched("onto-a-log", &before, &dir, &[]);
}

/// `sandbox --dump` is checked when the sandbox starts, not when it stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_dump_is_checked_at_the_start() {
    let root = tempfile::tempdir().unwrap();
    for state in STATES {
        if matches!(state, State::Absent | State::Own) {
            continue;
        }
        let dir = root.path().join(format!("{state:?}"));
        std::fs::create_dir(&dir).unwrap();
        let input = make_input(&dir);
        let target = match state {
            State::MissingFolder => dir.join("missing").join("dump.ndjson"),
            _ => dir.join("dump.ndjson"),
        };
        place(state, &target, &input);
        let before = snapshot(&dir);
        let mut c = common::czload();
        c.args(["sandbox", "--conv", "555", "--listen", "127.0.0.1:0"])
            .args(["--dump", s(&target)])
            .env("COREZOID_API_SECRET", SECRET);
        let out = run(c).await;
        assert_eq!(out.code, 2, "{state:?}: {out:?}");
        assert!(out.stderr.contains("--dump"), "{state:?}: {}", out.stderr);
        untouched(&format!("dump-{state:?}"), &before, &dir, &[]);
    }
}

/// `verify --output` and `undo --output` over every state: refused before any request
/// (exit 2, the flag named) or handled, other files as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_and_undo_output_matrix() {
    let sb = common::sandbox().await;
    let root = tempfile::tempdir().unwrap();
    for (cmd, file) in [("verify", "v.ndjson"), ("undo", "u.ndjson")] {
        for state in STATES {
            let name = format!("{cmd}-{state:?}");
            let dir = root.path().join(&name);
            std::fs::create_dir(&dir).unwrap();
            let input = make_input(&dir);
            let out = load(&sb.url(), &input, &[]).await;
            assert_eq!(out.code, 0, "{name}: the load: {out:?}");
            let log = dir.join("in.results.ndjson");
            let target = match state {
                State::MissingFolder => dir.join("missing").join(file),
                _ => dir.join(file),
            };
            let args = |extra: &[&str]| -> Vec<String> {
                let mut v = vec![s(&log).to_string(), "--output".into(), s(&target).into()];
                if cmd == "undo" {
                    v.push("--yes".into());
                }
                v.extend(extra.iter().map(|x| x.to_string()));
                v
            };
            let run_it = |a: Vec<String>| {
                let url = sb.url();
                async move {
                    let a: Vec<&str> = a.iter().map(String::as_str).collect();
                    crate::after::after_cmd(cmd, &url, &a).await
                }
            };
            let mut extra: Vec<&str> = vec![];
            if state == State::Own {
                let out = run_it(args(&[])).await;
                assert_eq!(out.code, 0, "{name}: the earlier run: {out:?}");
                // An undo log is gone on with, never started over.
                if cmd == "undo" {
                    extra.push("--resume");
                }
            }
            place(state, &target, &input);
            let before = snapshot(&dir);
            let requests = sb.stats().requests;
            let out = run_it(args(&extra)).await;
            if refused_expected(Flag::Report, state, Mode::Plain) {
                assert_eq!(out.code, 2, "{name}: refused: {out:?}");
                assert!(out.stderr.contains("--output"), "{name}: {}", out.stderr);
                assert_eq!(sb.stats().requests, requests, "{name}: nothing sent");
            } else {
                assert_eq!(out.code, 0, "{name}: handled: {out:?}");
            }
            let own = if state == State::Own {
                vec![target.clone()]
            } else {
                vec![]
            };
            untouched(&name, &before, &dir, &own);
        }
    }
}

/// A finished results log with another hard link (a backup made with `cp -al`, say) is
/// replaced by a new file on a plain re-run, never truncated: the other name keeps the
/// old log, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_linked_results_log_is_replaced_not_truncated() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = make_input(dir.path());
    let out = load(&sb.url(), &input, &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let log = dir.path().join("in.results.ndjson");
    let backup = dir.path().join("backup.ndjson");
    std::fs::hard_link(&log, &backup).unwrap();
    let before = snapshot(dir.path());
    let out = load(&sb.url(), &input, &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let own = [log.clone()];
    untouched("hard-linked log", &before, dir.path(), &own);
    let (a, b) = (
        std::fs::metadata(&log).unwrap(),
        std::fs::metadata(&backup).unwrap(),
    );
    assert_ne!(a.ino(), b.ino(), "the log is a new file");
    assert_eq!(b.nlink(), 1);
    assert_eq!(common::results(&log).len(), ROWS, "the new run's rows");
    assert!(common::results(&log)
        .iter()
        .all(|l| l["status"] == "exists"));
}
