//! The results log: one JSON line per row (`ResultLine`) after a `Manifest` line, and an
//! `END_LINE` once a run has settled every row. It is the checkpoint for `--resume`:
//! `read_settled` reads it back into one `RowSet` per input. In: rejected rows and settled
//! batches. Out: the log file, flushed at each checkpoint, so after a crash it holds every
//! sent row whose outcome reached the journal (rows rejected before sending may be
//! missing: a resume rejects them again). A log without the end line is unfinished
//! (crash, stop, or a log of a czload before the line existed): `claim.rs` will not
//! replace it without `--restart`.

use super::manifest::Reading;
use super::{Sink, Summary, Tally};
use crate::batch::Batch;
use crate::config::LoadConfig;
use crate::error::{Error, Result};
use crate::outcome::{Outcome, RejectedRow, Status};
use crate::sink::summary::Counts;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One line of the results log.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResultLine<'a> {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub input: Option<u32>,
    pub row: u64,
    pub line: u64,
    // Borrowed when written (no copy of each ref and id per row), owned when read back.
    #[serde(
        rename = "ref",
        skip_serializing_if = "Option::is_none",
        default,
        borrow
    )]
    pub reference: Option<Cow<'a, str>>,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none", default, borrow)]
    pub obj_id: Option<Cow<'a, str>>,
    pub attempts: u32,
    // For the report (src/sink/report/); absent in logs of older versions, which still
    // resume. `ms`: the latency of the request that settled the row; `throttled`: how
    // many times a rate limit refused it; `t`: ms since the run started when it settled.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ms: Option<u32>,
    #[serde(skip_serializing_if = "is_zero", default)]
    pub throttled: u32,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub t: Option<u64>,
    /// The wall-clock time it settled (ms since the Unix epoch), so that the logs of
    /// copies that ran side by side are drawn side by side (`czload report A B`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub at: Option<u64>,
    #[serde(
        rename = "proc",
        skip_serializing_if = "Option::is_none",
        default,
        borrow
    )]
    pub proc_: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none", default, borrow)]
    pub error: Option<Cow<'a, str>>,
    /// The answer op's `data` (the Sync API's reply), as the server wrote it. Not read
    /// back: nothing that reads a log needs it.
    #[serde(skip_serializing_if = "Option::is_none", skip_deserializing)]
    pub reply: Option<RawJson<'a>>,
}

/// JSON text known to be valid (it came out of a parsed answer), written as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawJson<'a>(pub &'a str);

impl Serialize for RawJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::Error;
        serde_json::value::RawValue::from_string(self.0.to_string())
            .map_err(S::Error::custom)?
            .serialize(s)
    }
}

impl ResultLine<'_> {
    /// Writes the line as JSON, byte for byte what serde writes for it (a unit test holds
    /// the two together), straight into `out` (the log's buffered writer). By hand because
    /// a line is written for every row and serde's generic map machinery was most of the
    /// journal thread's time in profiles.
    pub fn write_json<W: Write>(&self, out: &mut W) -> std::io::Result<()> {
        fn num<W: Write>(out: &mut W, key: &[u8], n: impl itoa::Integer) -> std::io::Result<()> {
            out.write_all(key)?;
            out.write_all(itoa::Buffer::new().format(n).as_bytes())
        }
        fn text<W: Write>(out: &mut W, key: &[u8], v: &str) -> std::io::Result<()> {
            out.write_all(key)?;
            crate::mapping::write_json_str(out, v)
        }
        out.write_all(b"{")?;
        if let Some(i) = self.input {
            num(out, b"\"input\":", i)?;
            out.write_all(b",")?;
        }
        num(out, b"\"row\":", self.row)?;
        num(out, b",\"line\":", self.line)?;
        if let Some(r) = &self.reference {
            text(out, b",\"ref\":", r)?;
        }
        text(out, b",\"status\":", self.status.as_str())?;
        if let Some(o) = &self.obj_id {
            text(out, b",\"obj_id\":", o)?;
        }
        num(out, b",\"attempts\":", self.attempts)?;
        if let Some(ms) = self.ms {
            num(out, b",\"ms\":", ms)?;
        }
        if self.throttled != 0 {
            num(out, b",\"throttled\":", self.throttled)?;
        }
        if let Some(t) = self.t {
            num(out, b",\"t\":", t)?;
        }
        if let Some(at) = self.at {
            num(out, b",\"at\":", at)?;
        }
        if let Some(p) = &self.proc_ {
            text(out, b",\"proc\":", p)?;
        }
        if let Some(e) = &self.error {
            text(out, b",\"error\":", e)?;
        }
        if let Some(r) = &self.reply {
            out.write_all(b",\"reply\":")?;
            out.write_all(r.0.as_bytes())?;
        }
        out.write_all(b"}")
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The last line a run writes to the results log: what the rows do not say. `read_settled`
/// skips it (it is not a row), as older versions do.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunLine {
    pub elapsed_ms: u64,
    pub requests: u64,
    pub retries: u64,
    pub throttled: u64,
    #[serde(default)]
    pub interrupted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fatal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<crate::send::RateReport>,
    /// When, by which czload and command, and where to (absent in older logs).
    #[serde(flatten)]
    pub facts: RunFacts,
    /// The requests by what came of them (answered, 429, each 5xx, connection errors,
    /// timeouts) over the run's time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcomes: Option<crate::send::Outcomes>,
}

/// What the report says of a run besides its figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunFacts {
    /// The start, in UTC (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// The start in ms since the Unix epoch: where the run goes on a shared time axis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The command line, with any password in a URL replaced by `***` (the API secret is
    /// never on it: it comes from the environment or a file).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// The URL and the flags that name the process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `--shard i/N`: which copy (a merged log keeps each copy's run line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
}

impl RunFacts {
    /// The facts of the run `cfg` describes, starting now.
    pub fn of(cfg: &LoadConfig) -> RunFacts {
        let now = std::time::SystemTime::now();
        RunFacts {
            start: Some(humantime::format_rfc3339_seconds(now).to_string()),
            start_ms: Some(unix_ms(now)),
            version: Some(env!("CARGO_PKG_VERSION").to_string()),
            command: std::env::args()
                .map(|a| hide_secret(&hide_password(&a), cfg.send.secret.expose()))
                .collect(),
            target: Some(format!(
                "{} {}",
                cfg.send.base,
                crate::sink::progress::target_flags(cfg)
            )),
            shard: cfg.shard.map(|s| s.to_string()),
        }
    }
}

/// `scheme://user:password@host...` with the password replaced by `***`, anywhere in `arg`.
pub fn hide_password(arg: &str) -> String {
    let Some(scheme) = arg.find("://") else {
        return arg.to_string();
    };
    let rest = &arg[scheme + 3..];
    let authority = rest.find(['/', '?', '#']).map_or(rest, |e| &rest[..e]);
    match authority.rfind('@') {
        Some(at) if authority[..at].contains(':') => {
            let colon = authority.find(':').unwrap_or(at);
            format!(
                "{}{}:***{}",
                &arg[..scheme + 3],
                &authority[..colon],
                &arg[scheme + 3 + at..]
            )
        }
        _ => arg.to_string(),
    }
}

/// `arg` with the API secret replaced by `***` wherever it appears: the secret is never
/// a flag, but a user may type it where another value goes (`--api-login SECRET`).
fn hide_secret(arg: &str, secret: &[u8]) -> String {
    match std::str::from_utf8(secret) {
        Ok(s) if !s.is_empty() && arg.contains(s) => arg.replace(s, "***"),
        _ => arg.to_string(),
    }
}

/// Ms since the Unix epoch (0 for a clock before it).
pub fn unix_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The last line of a log whose run settled every row. Not a `ResultLine` (no `row`), so
/// a resume, of this czload or an older one, passes over it.
pub const END_LINE: &[u8] = b"{\"end\":\"finished\"}";

/// The first line of the results log: what this run loads and how, so that `--resume`
/// can refuse a log written for other inputs, another reading of them or another
/// mapping. Fields added later are optional, so older logs still resume.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub czload: u32,
    pub inputs: Vec<InputId>,
    pub mapping: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reading: Option<Reading>,
    /// The mapping in flag syntax (`--op create`, `--conv-id 555`, `--type n:number`):
    /// what a refused resume or merge names. Absent in older logs (`mapping` alone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    /// The retry files this run writes, as given: a later run may replace them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retry_files: Vec<String>,
    /// `--shard i/N`: which copy of a load wrote the log (`czload merge-results` joins
    /// the N copies' logs; a resume must be the same copy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// `czload merge-results`: how many copies' logs this one joins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_from: Option<u32>,
}

impl Manifest {
    /// This run's manifest.
    pub fn new(cfg: &LoadConfig) -> Manifest {
        Manifest {
            czload: 1,
            inputs: cfg
                .inputs
                .iter()
                .map(|i| input_id(i.path.as_deref()))
                .collect(),
            mapping: cfg.mapping.fingerprint(),
            reading: Some(Reading::new(cfg)),
            flags: cfg.mapping.flags(),
            retry_files: cfg
                .retry_files
                .iter()
                .chain(&cfg.ambiguous_files)
                .map(|p| p.display().to_string())
                .collect(),
            shard: cfg.shard.map(|s| s.to_string()),
            merged_from: None,
        }
    }

    /// The manifest of the log at `path`, if it starts with one.
    pub fn read(path: &Path) -> Option<Manifest> {
        use std::io::BufRead;
        let mut first = Vec::new();
        // Only a regular file, opened without waiting on a FIFO (crate::outpath).
        let f = crate::outpath::open_regular(path)?;
        std::io::BufReader::new(f)
            .take(1 << 20)
            .read_until(b'\n', &mut first)
            .ok()?;
        serde_json::from_slice(&first).ok()
    }
}

/// How an input is recognised again: its name, size and a hash of its first and last
/// 64 KiB (hashing a whole multi-GB file at every start would cost a full read).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InputId {
    pub path: String,
    pub size: Option<u64>,
    pub sample_sha1: Option<String>,
    /// `LEN:SHA1` of its first LEN bytes (up to 64 KiB): whether a file of the same name
    /// that a later run loads begins as this one did (`manifest::another_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
}

/// Results and retry files are opened through the owner of output paths.
pub use crate::outpath::{create_new_private, create_private};

/// The results log as a sink.
pub struct ResultsLog {
    path: PathBuf,
    w: BufWriter<File>,
    /// Whether result lines carry the input index (several inputs).
    multi_input: bool,
    /// Batches handled since the last checkpoint.
    dirty: bool,
    /// When the run started: each line's `t` counts from here.
    started: Instant,
    /// The same moment on the wall clock (ms since the Unix epoch): `t` plus this is `at`.
    started_at_ms: u64,
    /// What the run line says of the run (`RunFacts`).
    facts: RunFacts,
}

impl ResultsLog {
    /// Opens the log (appending when resuming, else truncating it), writing the manifest
    /// first when the file is new. `None` in a dry run: nothing is written.
    /// `multi_input`: the lines name their input (several inputs); `facts` go into the
    /// run line. Nothing else of the run's settings is the log's business.
    pub fn create(
        path: Option<&Path>,
        multi_input: bool,
        facts: RunFacts,
        resume: bool,
        manifest: &Manifest,
    ) -> Result<Option<Self>> {
        let Some(p) = path else {
            return Ok(None);
        };
        let mut first = serde_json::to_vec(manifest).map_err(|e| Error::file(p, e))?;
        first.push(b'\n');
        // The claim (claim.rs) created it with this manifest line: it is written on from there.
        let fresh = std::fs::metadata(p).is_ok_and(|m| m.len() == first.len() as u64)
            && std::fs::read(p).is_ok_and(|b| b == first);
        let existed = fresh || (resume && std::fs::metadata(p).is_ok_and(|m| m.len() > 0));
        // A crash can cut the last line short; start on a fresh line so that the next one
        // is not glued to it (the cut row is redone, as it has no line).
        let cut = existed && ends_mid_line(p);
        // The log the claim just created (its manifest alone) is written on, not
        // truncated: ext4 writes back a file that was truncated and rewritten when it is
        // closed (`auto_da_alloc`, a safeguard for files replaced by truncation), so
        // czload itself spent ~0.03 s of CPU per million rows writing the whole log back
        // at the end of the run. Only a log that holds lines is truncated.
        let empty = std::fs::metadata(p).map_or(true, |m| m.len() == 0);
        let f = create_private(p, resume || empty || fresh)
            .map_err(|e| Error::file(p, format!("cannot write the results log: {e}")))?;
        let mut w = BufWriter::with_capacity(256 * 1024, f);
        if cut {
            w.write_all(b"\n").map_err(|e| Error::file(p, e))?;
        }
        if !existed {
            w.write_all(&first)
                .and_then(|_| w.flush())
                .map_err(|e| Error::file(p, e))?;
        }
        Ok(Some(ResultsLog {
            path: p.to_path_buf(),
            w,
            multi_input,
            dirty: false,
            started: Instant::now(),
            started_at_ms: unix_ms(std::time::SystemTime::now()),
            facts,
        }))
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// `t` on the wall clock.
    fn at(&self, t: Option<u64>) -> Option<u64> {
        t.map(|t| self.started_at_ms + t)
    }

    fn write(&mut self, line: &ResultLine) -> Result<()> {
        line.write_json(&mut self.w)
            .and_then(|()| self.w.write_all(b"\n"))
            .map_err(|e| Error::file(&self.path, format!("cannot write: {e}")))
    }

    fn flush(&mut self) -> Result<()> {
        self.w
            .flush()
            .map_err(|e| Error::file(&self.path, format!("cannot write: {e}")))
    }
}

impl Sink for ResultsLog {
    fn on_rejected(&mut self, rows: &[RejectedRow]) -> Result<()> {
        // Rows rejected before sending do not make the log dirty (a file of bad rows
        // would cost a write per row); if a crash loses their lines, a resume rejects
        // them again, sending nothing.
        let t = Some(self.now_ms());
        for r in rows {
            self.write(&ResultLine {
                input: self.multi_input.then_some(r.input),
                row: r.row,
                line: r.line,
                reference: r.reference.as_deref().map(Cow::Borrowed),
                status: Status::Rejected,
                obj_id: None,
                attempts: 0,
                ms: None,
                throttled: 0,
                t,
                at: self.at(t),
                proc_: None,
                error: Some(Cow::Borrowed(&r.reason)),
                reply: None,
            })?;
        }
        Ok(())
    }

    fn on_batch(&mut self, batch: &Batch, outcomes: &[Option<Outcome>]) -> Result<()> {
        self.dirty = true;
        let t = Some(self.now_ms());
        let at = self.at(t);
        for (i, o) in outcomes.iter().enumerate() {
            // A row a stop left unsettled has no line: --resume picks it up.
            let Some(o) = o else { continue };
            let meta = &batch.rows[i];
            self.write(&ResultLine {
                input: self.multi_input.then_some(meta.input),
                row: meta.row,
                line: meta.line,
                reference: batch.reference(i).map(Cow::Borrowed),
                status: o.status,
                obj_id: o.obj_id.as_ref().map(|t| Cow::Borrowed(t.as_str())),
                attempts: o.attempts,
                ms: (o.attempts > 0).then_some(o.latency_ms),
                throttled: o.throttled,
                t,
                at,
                proc_: o.proc_.as_deref().map(Cow::Borrowed),
                error: o.error.as_deref().map(Cow::Borrowed),
                reply: o.reply.as_deref().map(RawJson),
            })?;
        }
        Ok(())
    }

    fn checkpoint(&mut self, _: &Tally) -> Result<()> {
        if std::mem::take(&mut self.dirty) {
            self.flush()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.flush()
    }

    /// Ends the run's lines with a `RunLine` (the report's requests, retries and rate).
    fn report(&mut self, s: &Summary) -> Result<()> {
        let run = RunLine {
            elapsed_ms: (s.elapsed_secs * 1000.0) as u64,
            requests: s.requests,
            retries: s.retries,
            throttled: s.throttled,
            interrupted: s.interrupted,
            fatal: s.fatal.clone(),
            rate: s.rate.clone(),
            facts: self.facts.clone(),
            outcomes: s.outcomes.clone(),
        };
        serde_json::to_writer(&mut self.w, &serde_json::json!({ "run": run }))
            .map_err(|e| Error::file(&self.path, format!("cannot write: {e}")))?;
        self.w
            .write_all(b"\n")
            .map_err(|e| Error::file(&self.path, format!("cannot write: {e}")))?;
        // A run that settled every row ends its log with `END_LINE`, so that a plain
        // re-run may replace it; a stopped one leaves it unfinished for `--resume`.
        let finished =
            !(s.interrupted || s.fatal.is_some() || s.limit_reached.is_some() || s.unsettled > 0);
        if finished {
            self.w
                .write_all(END_LINE)
                .and_then(|()| self.w.write_all(b"\n"))
                .map_err(|e| Error::file(&self.path, format!("cannot write: {e}")))?;
        }
        self.flush()
    }
}

/// Reads a results log for `--resume`: checks its manifest against this run's and
/// returns, per input, the rows that already reached a final status.
/// `on_ref` sees the ref of every row that was sent (all but `rejected`), so that the
/// resumed run can refuse a repeat of it.
/// `cut` gets the line numbers of lines a crash cut short (their rows are sent again);
/// any other line that is not a results line stops the resume, naming it.
pub fn read_settled(
    path: &Path,
    expected: &Manifest,
    mut on_ref: impl FnMut(&str, u32, u64),
    cut: &mut Vec<u64>,
) -> Result<(Vec<RowSet>, Counts)> {
    use std::io::BufRead;
    let f = File::open(path).map_err(|e| {
        Error::Resume(format!(
            "{}: cannot read the results log: {e}",
            path.display()
        ))
    })?;
    // Lines as bytes: a crash can cut the last line inside a UTF-8 character, and that
    // must cost only that row (redone), not the whole resume.
    let mut lines = std::io::BufReader::new(f).split(b'\n');
    let first = match lines.next() {
        Some(Ok(l)) => l,
        _ => {
            return Err(Error::Resume(format!(
                "{} is empty: there is nothing to resume; run without --resume",
                path.display()
            )))
        }
    };
    super::manifest::check(path, &first, expected)?;
    let mut sets = vec![RowSet::default(); expected.inputs.len()];
    let mut earlier = Counts::default();
    for (n, line) in lines.enumerate() {
        let line = line.map_err(|e| Error::Resume(format!("{}: {e}", path.display())))?;
        let r = match LogLine::of(&line) {
            LogLine::Row(r) => r,
            LogLine::Other => continue,
            LogLine::Cut => {
                cut.push(n as u64 + 2);
                continue;
            }
            LogLine::Damaged(why) => return Err(damaged(path, n as u64 + 2, &why)),
        };
        if let Some(s) = sets.get_mut(r.input.unwrap_or(0) as usize) {
            if !s.contains(r.row) {
                s.insert(r.row);
                earlier.add(r.status);
                if let (Some(reference), false) = (&r.reference, r.status == Status::Rejected) {
                    on_ref(reference, r.input.unwrap_or(0), r.row);
                }
            }
        }
    }
    Ok((sets, earlier))
}

/// What a line of a results log after the manifest is (docs/architecture.md, Exactly
/// once: the log is the checkpoint, so a line that cannot be read is never passed over
/// in silence).
pub enum LogLine<'a> {
    Row(ResultLine<'a>),
    /// Blank, a run's closing line, the end line.
    Other,
    /// The start of a line, cut short by a crash while it was written: its row has no
    /// line and is redone.
    Cut,
    /// Anything else: the log was damaged or edited, and the row it held is unknown.
    Damaged(String),
}

impl<'a> LogLine<'a> {
    pub fn of(line: &'a [u8]) -> LogLine<'a> {
        if line.iter().all(u8::is_ascii_whitespace) || line == END_LINE {
            return LogLine::Other;
        }
        let e = match serde_json::from_slice::<ResultLine>(line) {
            Ok(r) => return LogLine::Row(r),
            Err(e) => e,
        };
        #[derive(Deserialize)]
        struct Run {
            #[allow(dead_code)]
            run: serde::de::IgnoredAny,
        }
        if serde_json::from_slice::<Run>(line).is_ok() {
            return LogLine::Other;
        }
        // A write cut short ends inside the JSON (or inside a UTF-8 character), maybe
        // followed by the zero bytes a file system leaves in a block a crash did not fill.
        let kept = line.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        let head = &line[..kept];
        let cut_utf8 = std::str::from_utf8(head).is_err_and(|u| u.error_len().is_none());
        let eof = kept < line.len()
            && serde_json::from_slice::<ResultLine>(head).is_err_and(|e| e.is_eof());
        if e.is_eof() || cut_utf8 || eof || head.is_empty() {
            LogLine::Cut
        } else {
            LogLine::Damaged(e.to_string())
        }
    }
}

/// The refusal of a log with a damaged line: which line, and the two ways on.
fn damaged(path: &Path, line: u64, why: &str) -> Error {
    Error::Resume(format!(
        "{} line {line} is not a results line ({why}): the log was damaged or edited, and which row that line settled is unknown; repair or delete that line (a deleted line's row is sent again), or start over with --restart instead of --resume (rows with refs then come back exists; with --no-ref every row is created again)",
        path.display()
    ))
}

/// A set of row numbers as a bitmap: a million rows cost 125 KB.
#[derive(Debug, Clone, Default)]
pub struct RowSet {
    bits: Vec<u64>,
}

impl RowSet {
    pub fn insert(&mut self, row: u64) {
        let (w, b) = ((row / 64) as usize, row % 64);
        if self.bits.len() <= w {
            self.bits.resize(w + 1, 0);
        }
        self.bits[w] |= 1 << b;
    }

    pub fn contains(&self, row: u64) -> bool {
        let (w, b) = ((row / 64) as usize, row % 64);
        self.bits.get(w).is_some_and(|x| x & (1 << b) != 0)
    }
}

/// Identifies an input for the manifest.
pub fn input_id(path: Option<&Path>) -> InputId {
    use sha1::{Digest, Sha1};
    use std::io::{Read, Seek, SeekFrom};
    let Some(p) = path else {
        return InputId {
            path: "-".into(),
            size: None,
            sample_sha1: None,
            head: None,
        };
    };
    let mut id = InputId {
        path: p.display().to_string(),
        size: None,
        sample_sha1: None,
        head: None,
    };
    if let Ok(mut f) = File::open(p) {
        let size = f.metadata().map(|m| m.len()).unwrap_or(0);
        id.size = Some(size);
        let mut h = Sha1::new();
        let mut buf = vec![0u8; 64 * 1024];
        let n = head(&mut f, &mut buf);
        h.update(&buf[..n]);
        id.head = Some(format!("{n}:{}", hex::encode(Sha1::digest(&buf[..n]))));
        if size > 128 * 1024 && f.seek(SeekFrom::End(-(64 * 1024))).is_ok() {
            let n = f.read(&mut buf).unwrap_or(0);
            h.update(&buf[..n]);
        }
        id.sample_sha1 = Some(hex::encode(h.finalize()));
    }
    id
}

/// Reads the start of `f` into `buf` (as far as it goes), giving its length.
pub(crate) fn head(f: &mut impl Read, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n
}

/// Whether a file's last byte is something other than a newline.
fn ends_mid_line(p: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = File::open(p) else {
        return false;
    };
    let mut last = [0u8; 1];
    f.seek(SeekFrom::End(-1)).is_ok() && f.read_exact(&mut last).is_ok() && last[0] != b'\n'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_typed_into_the_command_line_is_hidden_in_the_run_facts() {
        assert_eq!(
            hide_secret("--api-login=s3cr3t", b"s3cr3t"),
            "--api-login=***"
        );
        assert_eq!(hide_secret("s3cr3t", b"s3cr3t"), "***");
        assert_eq!(hide_secret("--conv-id", b"s3cr3t"), "--conv-id");
        assert_eq!(hide_secret("anything", b""), "anything");
    }

    #[test]
    fn result_lines_are_written_exactly_as_serde_writes_them() {
        let texts = [
            "a.csv:1",
            "",
            "quote \" and backslash \\",
            "tab\tnewline\ncontrol\u{1}",
            "é€𝄞 \u{7f} \u{2028}",
        ];
        let mut n = 0;
        for (k, &status) in Status::ALL.iter().enumerate() {
            for (j, t) in texts.iter().enumerate() {
                let some = |on: bool| on.then_some(Cow::Borrowed(*t));
                let line = ResultLine {
                    input: (j % 2 == 0).then_some(j as u32),
                    row: u64::MAX - k as u64,
                    line: j as u64,
                    reference: some(k % 2 == 0),
                    status,
                    obj_id: some(j % 3 != 0),
                    attempts: k as u32 * 7,
                    ms: (j % 2 == 0).then_some(j as u32 * 1000),
                    throttled: (k % 2) as u32 * 3,
                    t: (k % 3 != 0).then_some(u64::MAX - j as u64),
                    at: (k % 2 == 0).then_some(1_700_000_000_000 + j as u64),
                    proc_: some(k % 3 == 0),
                    error: some(j % 2 == 1),
                    reply: (j % 2 == 0).then_some(RawJson(r#"{"a":[1, "x\u00e9"]}"#)),
                };
                let mut mine = Vec::new();
                line.write_json(&mut mine).unwrap();
                assert_eq!(
                    String::from_utf8(mine).unwrap(),
                    serde_json::to_string(&line).unwrap()
                );
                n += 1;
            }
        }
        assert_eq!(n, Status::COUNT * texts.len());
    }

    #[test]
    fn lines_with_and_without_the_report_fields_read_back() {
        let old: ResultLine =
            serde_json::from_str(r#"{"row":1,"line":2,"status":"created","attempts":1}"#).unwrap();
        assert_eq!((old.ms, old.throttled, old.t), (None, 0, None));
        let new: ResultLine = serde_json::from_str(
            r#"{"row":1,"line":2,"status":"failed","attempts":8,"ms":30,"throttled":8,"t":900}"#,
        )
        .unwrap();
        assert_eq!((new.ms, new.throttled, new.t), (Some(30), 8, Some(900)));
        // The line that ends a run is not a row: `read_settled` skips it.
        assert!(serde_json::from_str::<ResultLine>(r#"{"run":{"elapsed_ms":1}}"#).is_err());
    }
}
