//! Inputs: which files, in which format, and how CSV is split. In: the input paths,
//! `--format`, `--delimiter`. Out: the resolved `Input`s and the delimiter byte.

use crate::cli::{FormatArg, LoadArgs};
use crate::error::{Error, Result};
use crate::source::{Format, Input};

pub(super) fn inputs(a: &LoadArgs) -> Result<Vec<Input>> {
    let format = a.format.map(|f| match f {
        FormatArg::Csv => Format::Csv,
        FormatArg::Ndjson => Format::Ndjson,
    });
    if a.inputs.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
        return Err(Error::Usage("stdin (`-`) can be given only once".into()));
    }
    a.inputs
        .iter()
        .enumerate()
        .map(|(i, p)| Input::resolve(i as u32, p, format))
        .collect()
}

pub(super) fn parse_delimiter(s: &str) -> Result<u8> {
    match s {
        "\\t" | "tab" | "\t" => Ok(b'\t'),
        _ if s.len() == 1 && s.is_ascii() => Ok(s.as_bytes()[0]),
        _ => Err(Error::Usage(format!(
            "--delimiter {s:?}: must be one ASCII character (or \\t for tab)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delimiters() {
        assert_eq!(parse_delimiter(";").unwrap(), b';');
        assert_eq!(parse_delimiter("\\t").unwrap(), b'\t');
        assert!(parse_delimiter(";;").is_err());
        assert!(parse_delimiter("é").is_err());
    }
}
