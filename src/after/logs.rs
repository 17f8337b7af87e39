//! Reading the results logs a verify or an undo works from: the manifest (the process
//! the rows went to, in its flags) and the row lines, streamed one at a time so that a
//! log of millions of rows costs one line of memory.

use crate::error::{Error, Result};
use crate::sink::results::{LogLine, ResultLine};
use crate::sink::Manifest;
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// A results log and the process its rows went to.
#[derive(Debug, Clone)]
pub struct Log {
    pub path: PathBuf,
    pub manifest: Manifest,
    /// The fields naming the process in an op (`,"conv_id":555`), for `steps::Want`.
    pub target: String,
}

impl Log {
    /// Reads the manifest of the log at `path`. Refused: no manifest, or rows that each
    /// named their own process (`--conv-id-column`, `--op raw`).
    pub fn open(path: &Path) -> Result<Log> {
        let manifest = Manifest::read(path).ok_or_else(|| {
            Error::Usage(format!(
                "{}: not a results log of czload (its first line is not a manifest)",
                path.display()
            ))
        })?;
        let target = target_of(&manifest.flags).ok_or_else(|| {
            Error::Usage(format!(
                "{}: its rows did not all go to one process named by --conv-id or --alias (flags: {}); verify and undo ask one process",
                path.display(),
                manifest.flags.join(" ")
            ))
        })?;
        Ok(Log {
            path: path.to_owned(),
            manifest,
            target,
        })
    }

    /// Calls `f` with every row line, in order, and its line number. A damaged line
    /// stops it (which row it was is unknown); a line a crash cut short is passed over.
    pub fn rows(&self, mut f: impl FnMut(ResultLine<'_>, u64) -> Result<()>) -> Result<()> {
        let file = std::fs::File::open(&self.path)
            .map_err(|e| Error::file(&self.path, format!("cannot read: {e}")))?;
        let lines = std::io::BufReader::with_capacity(256 * 1024, file).split(b'\n');
        for (n, line) in lines.enumerate().skip(1) {
            let line = line.map_err(|e| Error::file(&self.path, e))?;
            match LogLine::of(&line) {
                LogLine::Row(r) => f(r, n as u64 + 1)?,
                LogLine::Other | LogLine::Cut => {}
                LogLine::Damaged(why) => {
                    return Err(Error::Usage(format!(
                        "{} line {}: not a results line ({why})",
                        self.path.display(),
                        n + 1
                    )))
                }
            }
        }
        Ok(())
    }
}

/// The process fields of an op, from a manifest's mapping flags: `--conv-id N`, or
/// `--alias NAME`, with `--company-id ID` when given.
fn target_of(flags: &[String]) -> Option<String> {
    let value = |name: &str| {
        flags
            .iter()
            .find_map(|f| f.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
    };
    let json = |v: &str| serde_json::to_string(v).unwrap_or_default();
    if flags.iter().any(|f| f == "--op raw") {
        return None;
    }
    let mut t = match (value("--conv-id"), value("--alias")) {
        (Some(c), _) => format!(",\"conv_id\":{}", c.parse::<u64>().ok()?),
        (None, Some(a)) => format!(",\"obj_alias\":{}", json(a)),
        _ => return None,
    };
    if let Some(c) = value("--company-id") {
        t.push_str(&format!(",\"company_id\":{}", json(c)));
    }
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_comes_from_the_mapping_flags() {
        let f = |v: &[&str]| target_of(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            f(&["--op create", "--conv-id 555"]).as_deref(),
            Some(r#","conv_id":555"#)
        );
        assert_eq!(
            f(&["--op create", "--alias o\"x", "--company-id c1"]).as_deref(),
            Some(r#","obj_alias":"o\"x","company_id":"c1""#)
        );
        assert_eq!(f(&["--op create", "--conv-id-column p"]), None);
        assert_eq!(f(&["--op raw", "--conv-id 555"]), None);
        // `--conv-id-column` is not `--conv-id`.
        assert_eq!(f(&["--conv-id-column 5"]), None);
    }
}
