//! The flags as the user types them (clap derive). Nothing past `config/` sees these
//! types: `LoadConfig::from_args` (src/config/) validates them into plain settings.

use crate::op::OpKind;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "czload",
    version,
    about = "Load CSV, TSV, NDJSON and JSON-array files into Corezoid processes as tasks: streaming, batched, signed, rate-limited, exactly once",
    long_about = None,
    after_help = EXAMPLES,
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Colour in messages on stderr: auto (only on a terminal, and not when NO_COLOR is
    /// set), always or never.
    #[arg(long, global = true, value_enum, default_value_t = ColorArg::Auto, value_name = "WHEN")]
    pub color: ColorArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorArg {
    Auto,
    Always,
    Never,
}

impl ColorArg {
    /// Whether to colour stderr: `auto` colours a terminal only, and honours `NO_COLOR`
    /// (no-color.org: set and not empty) so that a log file or a CI log gets plain text.
    pub fn colors(self, stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
        match self {
            ColorArg::Always => true,
            ColorArg::Never => false,
            ColorArg::Auto => stderr_is_terminal && no_color.is_none_or(|v| v.is_empty()),
        }
    }
}

/// The common tasks, shown after `czload --help` and in the man page's EXAMPLES.
pub const EXAMPLES: &str = "\
Examples:
  Try it on the built-in sandbox (no account needed):
    czload load samples/orders.csv --conv-id 555 --sandbox
  Check a mapping against the process, then load with a key column as the ref:
    czload check orders.csv --conv-id 555 --ref-column order_id --type amount:number
    czload load orders.csv --conv-id 555 --ref-column order_id --type amount:number
  Read, map and sign everything, send nothing:
    czload load orders.csv --conv-id 555 --dry-run
  After a crash, Ctrl-C or kill: go on where the results log ends:
    czload load orders.csv --conv-id 555 --resume
  Load the rows that failed, with the same flags:
    czload load orders.retry.csv --conv-id 555
  One load as 3 copies, then one results log:
    czload load orders.csv --conv-id 555 --shard 0/3   (and 1/3, 2/3)
    czload merge-results orders.shard-*-of-3.results.ndjson -o orders.results.ndjson
  A report of a run:
    czload report orders.results.ndjson -o orders.report.html
  Check on the server that the tasks are there (`czload undo` takes a load back):
    czload verify orders.results.ndjson

The secret comes from COREZOID_API_SECRET or --secret-file, never a flag. `czload load \
--help` lists every flag; `czload man` prints the manual.";

/// `czload load --help`: its exit codes, then the examples.
pub const LOAD_EXAMPLES: &str = "\
Exit codes: 0 every row succeeded; 2 some did not; 1 the run could not proceed and a \
retry would not help (usage, input, authentication, a refusal of the process, results log \
in use or unfinished); 75 the server was away longer than --max-retry-time (or never \
answered): worth running again later, with --resume; 130 / 143 / 129 stopped by SIGINT / SIGTERM / SIGHUP after finishing the requests in flight (resumable \
with --resume; a second signal exits at once).

Examples:
  czload load orders.csv --conv-id 555 --ref-column order_id --type amount:number --rate 50
  czload load events.ndjson.gz --conv-id 555 --dry-run
  czload load export.csv --conv-id 555 --delimiter ';' --encoding windows-1251
  cat rows.ndjson | czload load - --conv-id 555 --results rows.results.ndjson
  czload load orders.csv --conv-id 555 --resume        (after a stop: the rest, exactly once)
  czload load orders.csv --conv-id 555 --restart       (start over, replacing the log)";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load rows from CSV, TSV, NDJSON or JSON-array files into a Corezoid process as tasks.
    #[command(after_help = LOAD_EXAMPLES)]
    Load(Box<LoadArgs>),
    /// Check that a mapping fits the process before loading: map the first rows as `load`
    /// would (same flags) and compare them with the process's declared parameters.
    #[command(
        after_help = "Reports each required parameter no column or field supplies, each value whose \
type clashes with the declared one, and each column the process does not declare (a warning), \
naming the flag that fixes it. Nothing is created: it sends only `show conv` and \
`list conv_params`.\n\nExit codes: 0 the mapping fits; 2 it does not; 1 it cannot be checked \
(usage, input, authentication, no such process)."
    )]
    Check(Box<LoadArgs>),
    /// Run a local server that speaks the Corezoid API, for trying czload and for tests.
    Sandbox(Box<SandboxArgs>),
    /// Write an HTML report (one self-contained file, charts included) from a results log.
    Report(ReportArgs),
    /// Join the results logs of the N copies of one load (`load --shard i/N`) into one
    /// results log in which every row appears once.
    #[command(
        after_help = "Exit codes: 0 merged; 2 the logs are not the N finished shards of one load \
(a shard missing, given twice or unfinished, a row in two shards, other inputs or mapping), \
named, and nothing written; 1 a file cannot be read or written."
    )]
    MergeResults(MergeArgs),
    /// Ask the server whether the tasks a results log says it loaded are there (read-only).
    #[command(after_help = crate::after::VERIFY_HELP)]
    Verify(Box<crate::after::verify::VerifyArgs>),
    /// Delete the tasks a load created, from its results log; resumable, exactly once.
    #[command(after_help = crate::after::UNDO_HELP)]
    Undo(Box<crate::after::undo::UndoArgs>),
    /// Print a shell completion script on stdout.
    Completions {
        #[arg(value_enum)]
        shell: ShellArg,
    },
    /// Print the man page (roff) on stdout.
    Man,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShellArg {
    Bash,
    Zsh,
    Fish,
    Powershell,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The results log of a run (finished, interrupted or resumed), a merged log, or the
    /// logs of the copies of one load (`--shard i/N`): those are drawn on one wall-clock
    /// axis, a lane per copy, with their total.
    #[arg(value_name = "RESULTS", required = true, num_args = 1..)]
    pub results: Vec<PathBuf>,

    /// Where to write the report.
    #[arg(short, long, value_name = "FILE", default_value = "report.html")]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The results logs of the copies, one per shard, in any order.
    #[arg(value_name = "LOG", required = true)]
    pub logs: Vec<PathBuf>,

    /// Where to write the merged results log.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressArg {
    /// A bar on a terminal, a plain line every few seconds otherwise.
    Auto,
    /// One JSON object per line on stderr, every few seconds (for log collectors).
    Json,
    /// No progress display (as --quiet).
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    None,
    Gzip,
    Zstd,
}

/// `--op`: the kinds of op, from their table (`src/op.rs`), so a new kind needs no line here.
impl ValueEnum for OpKind {
    fn value_variants<'a>() -> &'a [Self] {
        OpKind::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name).help(self.help))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EmptyArg {
    /// String columns get "", typed columns leave the key out.
    Keep,
    /// Every empty cell leaves its key out of the task.
    Omit,
    /// Every empty cell becomes null.
    Null,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Input files (CSV, TSV, NDJSON, a JSON array, XLSX or ODS; all but spreadsheets
    /// optionally .gz or .zst); `-` reads standard input.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,

    /// Input format; by default taken from the extension (below; also under .gz or .zst,
    /// but for spreadsheets). A .json file whose first character is `[` is a JSON array,
    /// else NDJSON. Required for stdin.
    #[arg(long, value_parser = crate::source::format_parser(), help_heading = "Input")]
    pub format: Option<crate::source::Format>,

    /// XLSX, ODS: the sheet to read, by name or by position from 1; default the first.
    /// Other inputs ignore it (so a retry file loads with the same flags).
    #[arg(long, value_name = "NAME|N", help_heading = "Input")]
    pub sheet: Option<String>,

    /// Standard input's compression, and that of files whose name does not end in .gz or
    /// .zst.
    #[arg(long, value_enum, default_value = "none", help_heading = "Input")]
    pub compression: CompressionArg,

    /// The inputs' text encoding, any WHATWG label: windows-1251, koi8-u, latin1,
    /// utf-16le, ... Default UTF-8 (UTF-16 when the file starts with its byte order
    /// mark). Retry files are written in the same encoding.
    #[arg(long, value_name = "NAME", help_heading = "Input")]
    pub encoding: Option<String>,

    /// CSV: the file has no header row; columns are named key1, key2, ...
    #[arg(long, help_heading = "Input")]
    pub no_header: bool,

    /// CSV: field delimiter, one ASCII character (`\t` for tab). Default `,`, and tab
    /// for .tsv files.
    #[arg(long, help_heading = "Input")]
    pub delimiter: Option<String>,

    /// CSV: type of a column, `COL:string|number|integer|bool|json` (repeatable). Columns
    /// default to string, as in Corezoid's own import.
    #[arg(long = "type", value_name = "COL:TYPE", help_heading = "Input")]
    pub types: Vec<String>,

    /// CSV: `number` columns (--type COL:number) use a decimal comma, as Excel writes
    /// them in many locales: `12,50` is 12.5. A value with a `.` or a second `,` (a
    /// thousands separator?) is rejected, not guessed.
    #[arg(long, help_heading = "Input")]
    pub decimal_comma: bool,

    /// CSV: what an empty cell becomes.
    #[arg(long, value_enum, default_value = "keep", help_heading = "Input")]
    pub empty: EmptyArg,

    /// CSV: leave this column out of the task data (repeatable).
    #[arg(long, value_name = "COL", help_heading = "Input")]
    pub exclude: Vec<String>,

    /// Add a field with this value to every task (repeatable): `KEY=VALUE`, typed like
    /// --type with `KEY:TYPE=VALUE` (e.g. `batch:integer=42`). It replaces a column or
    /// field of the same name.
    #[arg(long = "set", value_name = "KEY=VALUE", help_heading = "Input")]
    pub set: Vec<String>,

    /// Rename a column (CSV) or top-level field (JSON) in the task data: `OLD:NEW`
    /// (repeatable). Other flags (--type, --ref-column, ...) name it as the input does.
    #[arg(long, value_name = "OLD:NEW", help_heading = "Input")]
    pub rename: Vec<String>,

    /// NDJSON, JSON array: take the task data from this top-level field (an object) instead of the
    /// whole line.
    #[arg(long, value_name = "NAME", help_heading = "Input")]
    pub data_field: Option<String>,

    /// Target process id.
    #[arg(long, value_name = "N", help_heading = "Target")]
    pub conv_id: Option<u64>,

    /// Take the process id of each row from this column or field.
    #[arg(
        long,
        value_name = "COL",
        conflicts_with = "conv_id",
        help_heading = "Target"
    )]
    pub conv_id_column: Option<String>,

    /// The process by its alias (with --company-id) instead of --conv-id: `obj_alias`.
    #[arg(long, value_name = "NAME", help_heading = "Target")]
    pub alias: Option<String>,

    /// Company id, for processes that belong to a company.
    #[arg(long, value_name = "ID", help_heading = "Target")]
    pub company_id: Option<String>,

    /// Operation for every row.
    #[arg(long, value_enum, default_value = "create", help_heading = "Target")]
    pub op: OpKind,

    /// Take each task's ref from this column (CSV) or top-level field (NDJSON).
    #[arg(
        long,
        value_name = "COL",
        group = "refmode",
        help_heading = "Ref (exactly once)"
    )]
    pub ref_column: Option<String>,

    /// Build each ref from the row's fields, e.g. 'order-{id}'.
    #[arg(
        long,
        value_name = "TEMPLATE",
        group = "refmode",
        help_heading = "Ref (exactly once)"
    )]
    pub ref_template: Option<String>,

    /// Send no ref. Rows whose request outcome is unknown are then reported `ambiguous`
    /// instead of being retried.
    #[arg(long, group = "refmode", help_heading = "Ref (exactly once)")]
    pub no_ref: bool,

    /// Generated refs are NAME:ROW instead of FILE:ROW (once per input, in order): a
    /// renamed or linked file keeps the refs it was first loaded under.
    #[arg(long, value_name = "NAME", help_heading = "Ref (exactly once)")]
    pub ref_prefix: Vec<String>,

    /// Operations per request.
    #[arg(
        long,
        default_value_t = 100,
        value_name = "N",
        help_heading = "Batching"
    )]
    pub batch_size: usize,

    /// Largest request body in bytes; a single op larger than this is rejected.
    #[arg(long, default_value_t = 4 * 1024 * 1024, value_name = "BYTES", help_heading = "Batching")]
    pub batch_bytes: usize,

    /// Send a partial batch after this many milliseconds without new input (stdin).
    #[arg(
        long,
        default_value_t = 200,
        value_name = "MS",
        help_heading = "Batching"
    )]
    pub linger_ms: u64,

    /// Largest task data in bytes (Corezoid's default limit is 128 KiB).
    #[arg(
        long,
        default_value_t = 131_072,
        value_name = "BYTES",
        help_heading = "Batching"
    )]
    pub max_task_bytes: usize,

    /// Corezoid API base URL.
    #[arg(
        long,
        env = "COREZOID_URL",
        default_value = "https://api.corezoid.com",
        help_heading = "Sending"
    )]
    pub url: String,

    /// API login (the numeric id of the API key).
    #[arg(
        long,
        env = "COREZOID_API_LOGIN",
        value_name = "LOGIN",
        help_heading = "Sending"
    )]
    pub api_login: Option<String>,

    /// Read the API secret from this file (it must not be readable by other users).
    /// Otherwise it comes from COREZOID_API_SECRET; it is never a plain flag.
    #[arg(long, value_name = "FILE", help_heading = "Sending")]
    pub secret_file: Option<PathBuf>,

    /// Requests in flight at once, fixed. Default: as many as the rate needs at the
    /// measured latency (rate x latency / batch size, and half again), from 4 up to
    /// --max-concurrency.
    #[arg(long, value_name = "N", help_heading = "Sending")]
    pub concurrency: Option<usize>,

    /// The most requests in flight when the rate sets how many. Each holds a batch
    /// (with --batch-size 100 rows of 300 bytes, about 30 KiB; at most --batch-bytes),
    /// and twice as many batches may wait.
    #[arg(
        long,
        default_value_t = 128,
        value_name = "N",
        help_heading = "Sending"
    )]
    pub max_concurrency: usize,

    /// Tasks per second, counted in operations (not requests). `auto` (the default) finds
    /// the server's limit whatever way it counts: it grows the rate until refused, takes
    /// what the server accepted over the last second as the limit, holds just under it
    /// and probes for more now and then; copies (--shard) settle on fair shares. It keeps
    /// the limit found in the state directory ($XDG_STATE_HOME/czload) and the next run
    /// against the same URL, login and process starts there; `auto:N` starts at N. A
    /// number holds that rate at any latency (a cap). `unlimited`: no pacing.
    #[arg(long, value_name = "N|auto|auto:N|unlimited", help_heading = "Sending")]
    pub rate: Option<String>,

    /// Seconds to wait for one request's answer.
    #[arg(
        long,
        default_value_t = 30.0,
        value_name = "SECS",
        help_heading = "Sending"
    )]
    pub timeout: f64,

    /// Attempts per row before it is reported `failed`.
    #[arg(long, default_value_t = 8, value_name = "N", help_heading = "Sending")]
    pub max_attempts: u32,

    /// Seconds a row may spend retrying before it is reported `failed`.
    #[arg(
        long,
        default_value_t = 300.0,
        value_name = "SECS",
        help_heading = "Sending"
    )]
    pub max_retry_time: f64,

    /// Create each task through the Sync API and log the process's reply as the row's
    /// `reply`. A row whose reply did not come within --sync-timeout is `no_reply` (its
    /// task was created and runs on; it is never created twice). A request holds its
    /// connection until its slowest reply: keep --batch-size small.
    #[arg(long, help_heading = "Sending")]
    pub sync: bool,

    /// The Sync API's base URL: https://sync-api.corezoid.com when --url is the public
    /// API (its default); required with --sync against any other --url (an on-premise
    /// install has its own), so that no task goes to a host the user did not name.
    #[arg(
        long,
        env = "COREZOID_SYNC_URL",
        value_name = "URL",
        help_heading = "Sending"
    )]
    pub sync_url: Option<String>,

    /// Seconds the process has to reply to each task (sent with each request).
    #[arg(
        long,
        default_value_t = 60,
        value_name = "SECS",
        help_heading = "Sending"
    )]
    pub sync_timeout: u64,

    /// Accept a TLS certificate that does not verify (self-signed test installs only).
    #[arg(long, help_heading = "Sending")]
    pub insecure: bool,

    /// Start a sandbox server inside this process for the --conv-id process and load
    /// into it, with a generated login and secret. Try czload without an account.
    #[arg(long, help_heading = "Sending")]
    pub sandbox: bool,

    /// Run `czload check` first (the same flags) and stop, exit 2, if the mapping does
    /// not fit the process.
    #[arg(long, help_heading = "Target")]
    pub check: bool,

    /// Rows `check` maps and compares.
    #[arg(long, default_value_t = 100, value_name = "N", help_heading = "Target")]
    pub check_rows: usize,

    /// Run as copy i of N copies of one load (0 <= i < N): every copy reads the same
    /// inputs and keeps the rows whose ref hashes to i (rows without a ref: row number mod
    /// N), so the N runs together load every row exactly once. --rate is then the total
    /// (each copy sends 1/N of it), and the default output names carry the shard
    /// (`orders.shard-0-of-3.results.ndjson`). `czload merge-results` joins the N logs.
    #[arg(
        long,
        env = "CZLOAD_SHARD",
        value_name = "i/N",
        help_heading = "Sending"
    )]
    pub shard: Option<String>,

    /// Read, map, batch and sign everything, report what would be sent, send nothing.
    #[arg(long, help_heading = "Sending")]
    pub dry_run: bool,

    /// Results log (NDJSON, a line per row). Default: `<first input>.results.ndjson`.
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub results: Option<PathBuf>,

    /// Retry file: rows that did not succeed, in the input's format. Default:
    /// `<input>.retry.<ext>` beside each input. Only with a single input.
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub retry_file: Option<PathBuf>,

    /// Write the summary as JSON to this file too.
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub summary_json: Option<PathBuf>,

    /// Write an HTML report of the run (charts, reasons, counts) to this file at the end,
    /// built from the results log (`czload report` makes one from any results log).
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub report: Option<PathBuf>,

    /// Write the run's figures at the end in the Prometheus text format to this file (for
    /// node_exporter's textfile collector): rows by status, requests, retries, throttled,
    /// duration, the rate reached and found, the last success. Replaced whole (a rename);
    /// an existing file that czload did not write is refused.
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub metrics: Option<PathBuf>,

    /// Push the same figures to a Prometheus Pushgateway at the end: its base URL
    /// (`http://pushgateway:9091`: czload adds `/metrics/job/czload`, and `/shard/I` for a
    /// copy), or a full `.../metrics/job/NAME` URL. A failed push is said, not fatal.
    #[arg(long, value_name = "URL", help_heading = "Output")]
    pub metrics_push: Option<String>,

    /// Skip the rows that already have a final status in the results log.
    #[arg(long, help_heading = "Output", conflicts_with = "restart")]
    pub resume: bool,

    /// Start over although the results log holds an unfinished run (without it such a run
    /// is refused: it wants --resume). The old log is kept as `<log>.unfinished-N`.
    #[arg(long, help_heading = "Output")]
    pub restart: bool,

    /// Stop once this many rows are rejected (`N`), or once rejected rows are over this
    /// share of the rows settled (`N%`, judged from 100 rows on): a broken export stops
    /// early, exit 2, resumable with --resume once fixed.
    #[arg(long, value_name = "N|N%", help_heading = "Output")]
    pub max_errors: Option<String>,

    /// No progress display.
    #[arg(long, short, help_heading = "Output")]
    pub quiet: bool,

    /// How progress is shown on stderr.
    #[arg(long, value_enum, default_value = "auto", help_heading = "Output")]
    pub progress: ProgressArg,

    /// Debug logging of requests and answers (the secret is never shown). RUST_LOG also works.
    #[arg(long, short, help_heading = "Output")]
    pub verbose: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RpsModeArg {
    /// Refuse the whole request with HTTP 429 and Retry-After.
    Request,
    /// Refuse each op beyond the limit with a per-op "RPS limit reached" error.
    Op,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RpsShapeArg {
    /// A fixed window per wall-clock second.
    Window,
    /// A token bucket: refills at --rps per second, holds at most --rps.
    Bucket,
    /// A sliding window over the last second (the previous second's count, weighted).
    Sliding,
}

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,

    /// API login the sandbox accepts.
    #[arg(long, env = "COREZOID_API_LOGIN", default_value = "1001")]
    pub api_login: String,

    /// Read the secret from this file; otherwise COREZOID_API_SECRET.
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,

    /// A process id that exists (repeatable).
    #[arg(long = "conv", value_name = "ID", required = true)]
    pub convs: Vec<u64>,

    /// Largest accepted clock difference, in seconds.
    #[arg(long, default_value_t = 300)]
    pub max_skew: u64,

    /// Answer ops in request order instead of shuffled.
    #[arg(long)]
    pub ordered: bool,

    /// Tasks per second the sandbox accepts (a license limit).
    #[arg(long, value_name = "N")]
    pub rps: Option<u32>,

    /// How the RPS limit refuses.
    #[arg(long, value_enum, default_value = "request")]
    pub rps_mode: RpsModeArg,

    /// How the RPS limit counts.
    #[arg(long, value_enum, default_value = "window")]
    pub rps_shape: RpsShapeArg,

    /// Share of requests answered 503 before anything is applied (0..1).
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub fail_before: f64,

    /// Share of requests applied, then answered 502 with an HTML body (0..1).
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub fail_after: f64,

    /// Share of requests applied, then the connection closed without an answer (0..1).
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub drop_after: f64,

    /// The Sync API (`POST /sync/api/1/json/...`, `--sync-url http://ADDR/sync`): the
    /// process replies to each created task after this many milliseconds (a task's
    /// `sync_delay_ms` field overrides it), within the request's `timeout`.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub sync_delay_ms: u64,

    /// A round trip to emulate: each request waits half of it before it is handled
    /// (and counted against --rps) and half before its answer goes.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub delay_ms: u64,

    /// Up to this many milliseconds more on each request's way in, drawn per request:
    /// a network's jitter on top of --delay-ms.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub delay_jitter_ms: u64,

    /// Other clients of the license (the account's live processes): they take N tasks/s
    /// of --rps; `N,M@T`: M from T seconds after the start.
    #[arg(long, value_name = "N[,M@T]")]
    pub background_rps: Option<String>,

    /// Seed for shuffling and fault injection, for repeatable runs.
    #[arg(long)]
    pub seed: Option<u64>,

    /// Largest task data in bytes.
    #[arg(long, default_value_t = 131_072)]
    pub max_task_bytes: usize,

    /// Largest request body in bytes; larger ones get 413.
    #[arg(long, default_value_t = 32 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// An input parameter every process declares, `NAME:TYPE[:required]` with TYPE one of
    /// string, number, boolean, object, array (repeatable): what `czload check` compares a
    /// mapping with. None: the processes declare nothing, and anything goes.
    #[arg(long = "param", value_name = "NAME:TYPE[:required]")]
    pub params: Vec<String>,

    /// A process alias: `obj_alias` NAME (with any `company_id`) stands for process CONV,
    /// as `--alias` on a load addresses it. Repeatable.
    #[arg(long = "alias", value_name = "NAME=CONV")]
    pub aliases: Vec<String>,

    /// Lose every Nth task created in a process: answered ok with an obj_id, then not
    /// kept, as a server that loses tasks would (for `czload verify`). 0: never.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub lose_every: u64,

    /// Write every stored task as NDJSON to this file on shutdown.
    #[arg(long, value_name = "FILE")]
    pub dump: Option<PathBuf>,

    /// Worker threads serving requests [default: one per core]. With `taskset` this
    /// gives the sandbox a core of its own, as a real server has (benches/e2e.sh).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn flag_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    /// Every `czload ...` line of the help's examples is a command clap accepts, so the
    /// examples cannot drift from the flags. Shell quoting is only `'...'`; a note in
    /// parentheses after the command is dropped, and a glob stands for its files.
    #[test]
    fn every_example_in_the_help_parses() {
        let mut n = 0;
        for line in EXAMPLES.lines().chain(LOAD_EXAMPLES.lines()) {
            let line = line.trim();
            let piped = line.split_once("| ").map_or(line, |(_, c)| c);
            let Some(cmd) = piped.strip_prefix("czload ") else {
                continue;
            };
            let cmd = cmd.split("  (").next().unwrap_or(cmd);
            let words: Vec<String> = std::iter::once("czload".to_owned())
                .chain(
                    cmd.split_whitespace()
                        .map(|w| w.trim_matches('\'').to_owned()),
                )
                .collect();
            if let Err(e) = Cli::try_parse_from(&words) {
                panic!("example `{line}` does not parse: {e}");
            }
            n += 1;
        }
        assert!(n >= 15, "only {n} examples found");
    }
}
