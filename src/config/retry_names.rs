//! The names of retry and ambiguous files. In: an input (its name and format) and, for
//! `--retry-file`, the path given. Out: the default name's extension, the ambiguous
//! file beside a retry file, or a refusal of a name the same command would not read back.
//!
//! A retry file must load again with the command that wrote it, so its name must make
//! that command read it as the format czload writes it in. That is asked of the format
//! registry (`crate::source`: `Format::retry_format`, `read_by_name`), not decided here:
//! a new format brings its own answer.

use crate::error::{Error, Result};
use crate::source::{Compression, Input};
use std::path::{Path, PathBuf};

/// Whether a name says how it is compressed.
pub(crate) fn named_compression(name: &str) -> Option<Compression> {
    let n = name.to_ascii_lowercase();
    if n.ends_with(".gz") {
        Some(Compression::Gzip)
    } else if n.ends_with(".zst") {
        Some(Compression::Zstd)
    } else {
        None
    }
}

/// `name` without a `.gz`/`.zst` that says its compression.
fn inner(name: &str) -> &str {
    match named_compression(name) {
        Some(_) => &name[..name.rfind('.').unwrap_or(name.len())],
        None => name,
    }
}

/// The extension of an input's default retry file: the input's own when a file of that
/// name holding the retry rows reads back the same way (`.tsv` with tabs, `.jsonl`, a
/// `.json` array), else the usual one of the format the retry file is written in (a
/// sheet's rows go to `.ndjson`). Not its compression: a default retry file is plain,
/// unless `--compression` must read it.
pub fn default_ext(input: &Input) -> String {
    let retry = input.format.retry_format();
    let name = input.file_name();
    let inner = inner(&name);
    match inner.rsplit_once('.') {
        Some((_, ext)) if retry.read_by_name(inner) => ext.to_string(),
        _ => retry.ext().to_string(),
    }
}

/// The ambiguous file beside a retry file: `orders.retry.csv` -> `orders.ambiguous.csv`,
/// `failed.csv.gz` -> `failed.ambiguous.csv.gz`.
pub fn ambiguous_path(retry: &Path) -> PathBuf {
    let name = retry
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let new = match name.rfind(".retry.") {
        Some(i) => format!("{}.ambiguous.{}", &name[..i], &name[i + 7..]),
        None => match name[1.min(name.len())..].find('.') {
            Some(i) => format!("{}.ambiguous{}", &name[..i + 1], &name[i + 1..]),
            None => format!("{name}.ambiguous"),
        },
    };
    retry.with_file_name(new)
}

/// `--retry-file PATH` must read back with the same command: without `--format`, its
/// name must make it read as the format czload writes it in, and without `--delimiter`,
/// a delimited file's name must say the same delimiter (`.tsv`: tab).
pub fn check_name(
    input: &Input,
    path: &Path,
    format_given: bool,
    delimiter_given: bool,
) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let inner = inner(&name);
    let retry = input.format.retry_format();
    let fits = format_given || retry.read_by_name(inner);
    let ext = inner.rsplit_once('.').map_or("", |(_, e)| e);
    let input_ext = default_ext(input);
    let tabs = |e: &str| e.eq_ignore_ascii_case("tsv");
    let same_delimiter = !retry.delimited() || delimiter_given || tabs(ext) == tabs(&input_ext);
    if fits && same_delimiter {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "--retry-file {}: the same command would not read it as it reads {} (its name must end .{input_ext}, as the input's does); name it so, or leave the flag out",
        path.display(),
        input.display(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Format;

    #[test]
    fn ambiguous_files_sit_beside_retry_files() {
        let a = |p: &str| ambiguous_path(Path::new(p)).display().to_string();
        assert_eq!(a("/d/orders.retry.csv"), "/d/orders.ambiguous.csv");
        assert_eq!(
            a("o.shard-0-of-2.retry.ndjson"),
            "o.shard-0-of-2.ambiguous.ndjson"
        );
        assert_eq!(a("failed.csv.gz"), "failed.ambiguous.csv.gz");
        assert_eq!(a(".hidden.csv"), ".hidden.ambiguous.csv");
        assert_eq!(a("failed"), "failed.ambiguous");
    }

    /// Every registered format's retry file, under each name a user might give it: only
    /// the names that read back as what is written in it pass.
    #[test]
    fn a_retry_name_passes_only_when_it_reads_back_as_written() {
        let f = |n: &str| Format::by_name(n).unwrap();
        let cases = [
            ("csv", "x.csv", true),
            ("csv", "x.txt", true),
            ("csv", "x.ndjson", false),
            ("ndjson", "x.ndjson", true),
            ("ndjson", "x.jsonl", true),
            // Lines of objects in a `.json` read as NDJSON: not an array.
            ("ndjson", "x.json", true),
            ("ndjson", "x.csv", false),
            ("json-array", "x.json", true),
            // An array written to a `.ndjson` would be read as lines: refused.
            ("json-array", "x.ndjson", false),
            ("xlsx", "x.ndjson", true),
            ("xlsx", "x.xlsx", false),
            ("ods", "x.ods", false),
        ];
        for (format, name, ok) in cases {
            let retry = f(format).retry_format();
            assert_eq!(retry.read_by_name(name), ok, "{format} into {name}");
        }
        assert_eq!(f("json-array").retry_format().ext(), "json");
        assert_eq!(f("xlsx").retry_format().ext(), "ndjson");
    }
}
