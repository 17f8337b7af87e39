//! What the manifest (the results log's first line) says about reading and mapping, and
//! what is checked against it. Per input, every flag that decides its rows, in flag syntax
//! whether typed or found (`--format json-array`, `--encoding windows-1251`,
//! `--compression gzip`, `--delimiter ';'`, `--no-header`, `--ref-prefix orders.csv`), and
//! the mapping's flags (`MappingConfig::flags`), so that `--resume` and `merge-results`
//! refuse a log written otherwise and name the flag as it is typed
//! (`--encoding koi8-u (was: --encoding windows-1251)`), and so that a resume keeps the
//! refs the first run generated when the input was renamed, moved or linked since
//! (docs/architecture.md, Exactly once).
//!
//! In: this run's config and manifest, the log's first line. Out: a refusal, or the ref
//! names a resume keeps.

use super::results::Manifest;
use crate::config::LoadConfig;
use crate::error::{Error, Result};
use crate::mapping::RefMode;
use crate::source::{Compression, Input};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How input bytes become rows. A resume that read them otherwise would take row N for
/// another row. Whatever later changes the reading belongs in `inputs`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Reading {
    /// Per input: its retry file's extension (`csv`, `ndjson`), as older czloads wrote
    /// and compare it.
    pub formats: Vec<String>,
    /// CSV only (`None` without a CSV input): the delimiter and whether the first row is
    /// a header, as older czloads wrote them.
    pub delimiter: Option<String>,
    pub header: Option<bool>,
    /// Per input, the flags that read it and name its rows (see the module's doc).
    /// Absent in older logs, which are compared by the fields above.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<Vec<String>>,
}

impl Reading {
    pub fn new(cfg: &LoadConfig) -> Reading {
        let csv = cfg.inputs.iter().any(|i| i.format.delimited());
        Reading {
            formats: cfg.inputs.iter().map(|i| i.manifest_format()).collect(),
            // As older czloads wrote it (`,`, `\t`), so that their logs still resume.
            delimiter: csv.then(|| match cfg.delimiter {
                b'\t' => "\\t".to_string(),
                d => char::from(d).to_string(),
            }),
            header: csv.then_some(cfg.has_header),
            inputs: cfg.inputs.iter().map(|i| input_flags(cfg, i)).collect(),
        }
    }

    /// What differs from `was`, one item per flag, in flag syntax.
    fn differences(&self, was: &Reading, label: &str) -> Vec<String> {
        if self.inputs.is_empty() || was.inputs.is_empty() {
            return self.old_differences(was);
        }
        let many = self.inputs.len() > 1;
        let mut d = Vec::new();
        for (k, (now, then)) in self.inputs.iter().zip(&was.inputs).enumerate() {
            for x in flag_differences(now, then, label) {
                d.push(if many {
                    format!("input {}: {x}", k + 1)
                } else {
                    x
                });
            }
        }
        d
    }

    /// `differences` against a log of a czload that recorded less.
    fn old_differences(&self, was: &Reading) -> Vec<String> {
        let mut d = Vec::new();
        for (now, then) in self.formats.iter().zip(&was.formats) {
            if now != then {
                d.push(format!("--format {now} (was: --format {then})"));
            }
        }
        if let (Some(now), Some(then)) = (&self.delimiter, &was.delimiter) {
            if now != then {
                d.push(format!("--delimiter '{now}' (was: --delimiter '{then}')"));
            }
        }
        match (self.header, was.header) {
            (Some(false), Some(true)) => d.push("--no-header (was: without it)".into()),
            (Some(true), Some(false)) => d.push("no --no-header (was: --no-header)".into()),
            _ => {}
        }
        d
    }
}

fn delimiter_text(d: u8) -> String {
    match d {
        b'\t' => "'\\t'".into(),
        b'\'' => "\"'\"".into(),
        d => format!("'{}'", char::from(d)),
    }
}

/// The flags that read `input` and name its rows.
fn input_flags(cfg: &LoadConfig, input: &Input) -> Vec<String> {
    let format = input.format.name();
    let encoding = input
        .encoding
        .map_or("utf-8".into(), |e| e.name().to_ascii_lowercase());
    let compression = match input.compression {
        Compression::None => "none",
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
    };
    let mut f = vec![
        format!("--format {format}"),
        format!("--encoding {encoding}"),
        format!("--compression {compression}"),
    ];
    if let Some(sheet) = &input.sheet {
        f.push(format!("--sheet {sheet}"));
    }
    if input.format.delimited() {
        f.push(format!("--delimiter {}", delimiter_text(input.delimiter)));
    }
    if input.format.header_row() && !cfg.has_header {
        f.push("--no-header".into());
    }
    if cfg.mapping.ref_mode == RefMode::Auto {
        f.push(format!(
            "{REF_PREFIX}{}",
            cfg.ref_names[input.index as usize]
        ));
    }
    f
}

const REF_PREFIX: &str = "--ref-prefix ";

/// The flags of `now` that differ from those of `then`, grouped by flag, each saying
/// what `label` (`was`, or another log) had: `--type n:number (was: no --type)`.
pub fn flag_differences(now: &[String], then: &[String], label: &str) -> Vec<String> {
    let name = |f: &str| f.split(' ').next().unwrap_or("").to_string();
    let mut names: Vec<String> = Vec::new();
    for f in now.iter().chain(then) {
        let n = name(f);
        if !names.contains(&n) {
            names.push(n);
        }
    }
    let mut d = Vec::new();
    for n in names {
        let of =
            |v: &[String]| -> Vec<String> { v.iter().filter(|f| name(f) == n).cloned().collect() };
        let (a, b) = (of(now), of(then));
        if a == b {
            continue;
        }
        d.push(match (a.is_empty(), b.is_empty()) {
            (false, false) => format!("{} ({label}: {})", a.join(" "), b.join(" ")),
            (false, true) => format!("{} ({label}: no {n})", a.join(" ")),
            _ => format!("no {n} ({label}: {})", b.join(" ")),
        });
    }
    d
}

/// Every flag of reading or mapping in which `now` differs from `then`, in flag syntax.
pub fn differences(now: &Manifest, then: &Manifest, label: &str) -> Vec<String> {
    let mut d = match (&now.reading, &then.reading) {
        (Some(n), Some(t)) => n.differences(t, label),
        _ => Vec::new(),
    };
    if !now.flags.is_empty() && !then.flags.is_empty() {
        d.extend(flag_differences(&now.flags, &then.flags, label));
    }
    d
}

/// Refuses a log whose manifest (its first line, `first`) is not this run's.
pub fn check(path: &Path, first: &[u8], expected: &Manifest) -> Result<()> {
    let manifest: Manifest = serde_json::from_slice(first).map_err(|_| {
        Error::Resume(format!(
            "{} does not start with a czload manifest",
            path.display()
        ))
    })?;
    if manifest.inputs.len() != expected.inputs.len() {
        return Err(Error::Resume(format!(
            "{} was written for {} input(s), this run has {}",
            path.display(),
            manifest.inputs.len(),
            expected.inputs.len()
        )));
    }
    let d = differences(expected, &manifest, "was");
    if !d.is_empty() {
        return Err(Error::Resume(format!(
            "{} was written with other reading or mapping flags: {}; resume with the flags of that run, or start over without --resume (with --restart if that run is unfinished)",
            path.display(),
            d.join(", ")
        )));
    }
    if manifest.shard != expected.shard {
        let name = |s: &Option<String>| {
            s.as_ref()
                .map_or("no --shard".into(), |s| format!("--shard {s}"))
        };
        return Err(Error::Resume(format!(
            "{} was written by the copy with {}; this run has {}: resume each copy with its own shard and log",
            path.display(),
            name(&manifest.shard),
            name(&expected.shard)
        )));
    }
    // A log without the flags (an older czload), or a mapping the flags do not tell apart.
    if manifest.mapping != expected.mapping {
        return Err(Error::Resume(format!(
            "the mapping flags differ from those of the run that wrote {} (was: {}; now: {})",
            path.display(),
            manifest.mapping,
            expected.mapping
        )));
    }
    for (was, now) in manifest.inputs.iter().zip(&expected.inputs) {
        if was.size != now.size || was.sample_sha1 != now.sample_sha1 {
            return Err(Error::Resume(format!(
                "input {} changed since the run that wrote {} (size or content differs), so the log's rows are not this file's: to load it, run again with --restart in place of --resume (rows whose refs that run stored come back `exists`, and their new data is not stored)",
                now.path,
                path.display()
            )));
        }
    }
    Ok(())
}

/// `--resume` with a log already there: checks its manifest before any input is read
/// for the run (a wrong reading is refused for what it is, not for what it reads).
pub fn check_before_reading(cfg: &LoadConfig, expected: &Manifest) -> Result<()> {
    use std::io::BufRead;
    let Some(path) = cfg.results.as_ref().filter(|_| cfg.resume) else {
        return Ok(());
    };
    // Not a FIFO or a device: opening one to look would block or take its data.
    let regular = std::fs::metadata(path).is_ok_and(|m| m.is_file());
    let Some(f) = regular.then(|| std::fs::File::open(path).ok()).flatten() else {
        return Ok(());
    };
    let mut first = Vec::new();
    std::io::Read::take(std::io::BufReader::new(f), 1 << 20)
        .read_until(b'\n', &mut first)
        .map_err(|e| Error::Resume(format!("{}: cannot read it: {e}", path.display())))?;
    if first.is_empty() {
        return Ok(());
    }
    check(path, &first, expected)
}

/// `--resume`: each input keeps the name its generated refs had in the run that wrote
/// the log, when it has another now (renamed, moved, linked, or read from another
/// folder): the content is checked to be the same, so its rows must keep their refs, or
/// every row the crash left would be stored twice. Not over `--ref-prefix`, which the
/// check then refuses. Gives the notes that say so, and of the earlier run's retry and
/// ambiguous files this run does not write to.
pub fn keep_first_refs(cfg: &mut LoadConfig) -> Vec<String> {
    let Some(path) = cfg.results.clone().filter(|_| cfg.resume) else {
        return Vec::new();
    };
    let Some(was) = log_manifest(&path).filter(|m| m.inputs.len() == cfg.inputs.len()) else {
        return Vec::new();
    };
    let mut notes = elsewhere(cfg, &was, &path);
    if cfg.ref_names_given || cfg.mapping.ref_mode != RefMode::Auto {
        return notes;
    }
    for (k, input) in cfg.inputs.iter().enumerate() {
        let Some(then) = first_ref_name(&was, k) else {
            continue;
        };
        if then != cfg.ref_names[k] {
            notes.push(format!(
                "--resume: {} keeps the refs its rows were first sent under ({then}:ROW, as {} records); to load it again without --resume, pass --ref-prefix {then}",
                input.display(),
                path.display()
            ));
            cfg.ref_names[k] = then;
        }
    }
    notes
}

/// The retry and ambiguous files of the run that wrote the log that are not this run's
/// (named after an input's old name, or by another `--retry-file`) and hold rows: the
/// rows in them are in no file of this run, so the user must hear of them.
fn elsewhere(cfg: &LoadConfig, was: &Manifest, log: &Path) -> Vec<String> {
    let same = |a: &Path, b: &Path| match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    };
    let ours: Vec<&PathBuf> = cfg.retry_files.iter().chain(&cfg.ambiguous_files).collect();
    was.retry_files
        .iter()
        .map(Path::new)
        .filter(|p| !ours.iter().any(|o| same(o, p)))
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() > 0))
        .map(|p| {
            format!(
                "--resume: the run that wrote {} left rows in {} too (this run writes to its own files)",
                log.display(),
                p.display()
            )
        })
        .collect()
}

/// A plain run (not `--resume`) over a results log of an earlier run: an input whose
/// generated refs are those that run gave a file of the same name that began otherwise
/// (a new export under the old name, or the file edited) is warned of: a row that run
/// loaded comes back `exists` with its old data, whatever the row holds now. Not refused:
/// fixing rejected rows and loading the file again is right (their refs are free). A
/// file that only grew begins the same. Not with `--ref-prefix`, which names the refs on
/// purpose.
pub fn another_file(cfg: &LoadConfig) -> Vec<String> {
    let mut notes = Vec::new();
    let Some(log) = cfg.results.as_ref().filter(|_| !cfg.resume) else {
        return notes;
    };
    if cfg.ref_names_given || cfg.mapping.ref_mode != RefMode::Auto {
        return notes;
    }
    let Some(was) = log_manifest(log) else {
        return notes;
    };
    for (k, input) in cfg.inputs.iter().enumerate() {
        let Some(path) = &input.path else { continue };
        let then = (0..was.inputs.len())
            .find(|&j| first_ref_name(&was, j).as_deref() == Some(&cfg.ref_names[k]));
        let Some(head) = then.and_then(|j| was.inputs[j].head.as_deref()) else {
            continue;
        };
        if !begins_with(path, head) {
            notes.push(format!(
                "warning: {}: its rows get the refs {name}:ROW, as the file of that name did that {} records, but it does not begin as that one did: a row that run loaded comes back `exists` with that run's data, whatever it holds now. For a new file, pass --ref-prefix with a new name (say --ref-prefix {name}-2)",
                input.display(),
                log.display(),
                name = cfg.ref_names[k],
            ));
        }
    }
    notes
}

/// Whether the file at `path` begins as `head` (`LEN:SHA1`) says; a file shorter than
/// LEN (or a record that cannot be read) does not tell otherwise.
fn begins_with(path: &Path, head: &str) -> bool {
    use sha1::{Digest, Sha1};
    let Some((len, sha)) = head.split_once(':') else {
        return true;
    };
    let (Ok(len), Ok(mut f)) = (len.parse::<usize>(), std::fs::File::open(path)) else {
        return true;
    };
    let mut buf = vec![0u8; len.min(64 * 1024)];
    let n = super::results::head(&mut f, &mut buf);
    n < len || hex::encode(Sha1::digest(&buf[..n])) == sha
}

/// The manifest of the results log at `path`, when it is a regular file (a FIFO would
/// block, a device give what it holds).
fn log_manifest(path: &Path) -> Option<Manifest> {
    std::fs::metadata(path)
        .is_ok_and(|m| m.is_file())
        .then(|| Manifest::read(path))
        .flatten()
}

/// The name the generated refs of input `k` had in the run that wrote `was`; a log of an
/// older czload gives it by the input's path.
fn first_ref_name(was: &Manifest, k: usize) -> Option<String> {
    match was.reading.as_ref().filter(|r| !r.inputs.is_empty()) {
        Some(r) => r
            .inputs
            .get(k)?
            .iter()
            .find_map(|f| f.strip_prefix(REF_PREFIX))
            .map(str::to_string),
        None if was.mapping.contains(";ref=Auto;") => Path::new(&was.inputs.get(k)?.path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned()),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(x: &[&str]) -> Vec<String> {
        x.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn differences_name_each_flag_as_typed() {
        let then = v(&["--op create", "--type a:number", "--no-ref", "--empty keep"]);
        let now = v(&[
            "--op create",
            "--type a:string",
            "--type b:bool",
            "--empty omit",
        ]);
        assert_eq!(
            flag_differences(&now, &then, "was"),
            [
                "--type a:string --type b:bool (was: --type a:number)",
                "--empty omit (was: --empty keep)",
                "no --no-ref (was: --no-ref)",
            ]
        );
        assert!(flag_differences(&now, &now, "was").is_empty());
        assert_eq!(
            flag_differences(&v(&["--set k=1"]), &[], "x.ndjson"),
            ["--set k=1 (x.ndjson: no --set)"]
        );
    }

    #[test]
    fn older_logs_still_resume_and_keep_their_refs() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("now.csv");
        std::fs::write(&input, "id\n1\n").unwrap();
        let log = dir.path().join("log.ndjson");
        let args = [
            input.to_str().unwrap(),
            "--conv-id",
            "1",
            "--resume",
            "--results",
        ];
        let cfg =
            crate::config::tests::load_config(&[&args[..], &[log.to_str().unwrap()]].concat())
                .unwrap();
        let now = Manifest::new(&cfg);
        // A log of a czload that recorded neither the flags nor the reading per input,
        // written when the file was called `then.csv`.
        let mut old = now.clone();
        old.flags.clear();
        old.reading.as_mut().unwrap().inputs.clear();
        old.inputs[0].path = dir.path().join("then.csv").display().to_string();
        let then_retry = dir.path().join("then.retry.csv");
        std::fs::write(&then_retry, "id,_czload_ref\n1,then.csv:1\n").unwrap();
        old.retry_files = vec![then_retry.display().to_string()];
        let first = serde_json::to_vec(&old).unwrap();
        check(&log, &first, &now).unwrap();
        std::fs::write(&log, [&first[..], b"\n"].concat()).unwrap();
        let mut cfg = cfg;
        let notes = keep_first_refs(&mut cfg);
        assert_eq!(cfg.ref_names, ["then.csv"]);
        // The rows the first run left in its retry file are told of.
        assert!(notes[0].contains("then.retry.csv too"), "{notes:?}");
        assert!(notes[1].contains("then.csv:ROW"), "{notes:?}");

        // Another encoding is named as typed.
        let mut other = now.clone();
        other.reading.as_mut().unwrap().inputs[0][1] = "--encoding koi8-u".into();
        let e = check(&log, &serde_json::to_vec(&other).unwrap(), &now).unwrap_err();
        assert!(
            e.to_string()
                .contains("--encoding utf-8 (was: --encoding koi8-u)"),
            "{e}"
        );
    }
}
