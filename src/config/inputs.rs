//! Inputs: which files, in which format, encoding and compression, and how CSV is split.
//! In: the input paths, `--format`, `--compression`, `--encoding`, `--delimiter`, `--sheet`. Out:
//! the resolved `Input`s (each with its delimiter: tab for .tsv unless `--delimiter`).

use crate::cli::{CompressionArg, LoadArgs};
use crate::error::{Error, Result};
use crate::source::{decode, Compression, Input, Reading};

pub(super) fn inputs(a: &LoadArgs, notes: &mut Vec<String>) -> Result<Vec<Input>> {
    let format = a.format;
    let compression = match a.compression {
        CompressionArg::None => Compression::None,
        CompressionArg::Gzip => Compression::Gzip,
        CompressionArg::Zstd => Compression::Zstd,
    };
    let encoding = match &a.encoding {
        None => None,
        Some(label) => decode::parse(label).ok_or_else(|| {
            Error::Usage(format!(
                "--encoding {label:?}: not an encoding name; use a WHATWG label such as utf-8, windows-1251, koi8-u, latin1 or utf-16le"
            ))
        })?,
    };
    let delimiter = a.delimiter.as_deref().map(parse_delimiter).transpose()?;
    if a.inputs.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
        return Err(Error::Usage("stdin (`-`) can be given only once".into()));
    }
    let how = Reading {
        format,
        compression,
        encoding,
        delimiter,
        sheet: a.sheet.clone(),
        encoding_flag: a.encoding.is_some(),
        has_header: !a.no_header,
    };
    let inputs = a
        .inputs
        .iter()
        .enumerate()
        .map(|(i, p)| Input::resolve(i as u32, p, &how))
        .collect::<Result<Vec<_>>>()?;
    for i in &inputs {
        if let Some(d) = i.delimiter_hint {
            notes.push(format!(
                "warning: {}: {}",
                i.display(),
                crate::source::csv::delimiter_hint(d)
            ));
        }
    }
    Ok(inputs)
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
