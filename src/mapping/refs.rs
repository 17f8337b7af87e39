//! A row's ref, the same way for every kind of record: generated (`{file}:{row}`, or the
//! one a retry file carries in `_czload_ref`), from a field (`--ref-column`) or from a
//! template (`--ref-template`), then checked as the server will.
//!
//! In: the ref mode, and per row a way to read a field's text. Out: the ref in a reused
//! `String`, or a `Reject`.

use super::Reject;
use crate::error::{Error, Result};

/// The column (CSV) or field (NDJSON) in which a retry file carries a row's generated ref,
/// so that loading the retry file reuses the refs of the first run (see README).
pub const REF_COLUMN: &str = "_czload_ref";

/// A part of a `--ref-template`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    Lit(String),
    Field(String),
}

/// Parses `order-{id}`: `{name}` is a field of the row, `{{` and `}}` are literal braces.
pub fn parse_template(t: &str) -> std::result::Result<Vec<TemplatePart>, String> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                lit.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                lit.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => return Err(format!("unclosed '{{' in template {t:?}")),
                    }
                }
                if name.is_empty() {
                    return Err(format!("empty '{{}}' in template {t:?}"));
                }
                if !lit.is_empty() {
                    parts.push(TemplatePart::Lit(std::mem::take(&mut lit)));
                }
                parts.push(TemplatePart::Field(name));
            }
            '}' => {
                return Err(format!(
                    "unmatched '}}' in template {t:?}; write '}}}}' for a brace"
                ))
            }
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        parts.push(TemplatePart::Lit(lit));
    }
    if !parts.iter().any(|p| matches!(p, TemplatePart::Field(_))) {
        return Err(format!(
            "template {t:?} names no field, so every row would get the same ref; use e.g. 'order-{{id}}'"
        ));
    }
    Ok(parts)
}

/// Checks a ref the way the server will (1 to 255 characters).
pub fn check_ref(r: &str) -> std::result::Result<(), Reject> {
    if r.is_empty() {
        return Err(Reject("ref is empty".into()));
    }
    // A string of at most 255 bytes has at most 255 characters: skip the count.
    if r.len() <= 255 {
        return Ok(());
    }
    let n = r.chars().count();
    if n > 255 {
        return Err(Reject(format!(
            "ref is {n} characters long; the limit is 255"
        )));
    }
    Ok(())
}

/// The end of building a row's ref, for both plans. A ref that could not be built must not
/// be half-reported (`order-5-`), so it is cleared; one that was built is checked.
pub(super) fn settle_ref(
    built: std::result::Result<(), Reject>,
    has_ref: bool,
    ref_out: &mut String,
) -> std::result::Result<(), Reject> {
    if let Err(e) = built {
        ref_out.clear();
        return Err(e);
    }
    if has_ref {
        check_ref(ref_out)?;
    }
    Ok(())
}

/// Where a row's ref comes from. `F` is how a plan finds a field: a column (CSV), a key
/// (JSON objects).
#[derive(Debug)]
pub(super) enum RefSource<F> {
    /// Generated: the prefix `{file}:`, the row number follows.
    Auto(String),
    Field(F),
    Template(Vec<Part<F>>),
    None,
}

#[derive(Debug)]
pub(super) enum Part<F> {
    Lit(String),
    Field(F),
}

/// The flags a ref field comes from, as rejections name them.
pub(super) const REF_FLAG: &str = "--ref-column";
pub(super) const TEMPLATE_FLAG: &str = "--ref-template";

impl<F> RefSource<F> {
    /// From `--ref-*`; `find` locates a field named by `flag` (or says why it cannot).
    pub(super) fn new(
        mode: &super::RefMode,
        file_name: &str,
        mut find: impl FnMut(&str, &'static str) -> Result<F>,
    ) -> Result<RefSource<F>> {
        use super::RefMode;
        Ok(match mode {
            RefMode::Auto => RefSource::Auto(format!("{file_name}:")),
            RefMode::None => RefSource::None,
            RefMode::Column(c) => RefSource::Field(find(c, REF_FLAG)?),
            RefMode::Template(t) => {
                let parts =
                    parse_template(t).map_err(|e| Error::Usage(format!("{TEMPLATE_FLAG}: {e}")))?;
                let mut out = Vec::with_capacity(parts.len());
                for p in parts {
                    out.push(match p {
                        TemplatePart::Lit(s) => Part::Lit(s),
                        TemplatePart::Field(f) => Part::Field(find(&f, TEMPLATE_FLAG)?),
                    });
                }
                RefSource::Template(out)
            }
        })
    }

    /// Generated refs start with `name` instead (`--ref-prefix`, or a resumed run's).
    pub(super) fn rename(&mut self, name: &str) {
        if let RefSource::Auto(prefix) = self {
            *prefix = format!("{name}:");
        }
    }

    /// Whether refs are generated (so a retry file must carry them).
    pub(super) fn is_auto(&self) -> bool {
        matches!(self, RefSource::Auto(_))
    }

    /// The fields the ref reads.
    pub(super) fn fields(&self) -> impl Iterator<Item = &F> {
        let (one, parts) = match self {
            RefSource::Field(f) => (Some(f), &[][..]),
            RefSource::Template(p) => (None, &p[..]),
            RefSource::Auto(_) | RefSource::None => (None, &[][..]),
        };
        one.into_iter().chain(parts.iter().filter_map(|p| match p {
            Part::Field(f) => Some(f),
            Part::Lit(_) => None,
        }))
    }

    /// Builds the ref of `row` into `out` (cleared first). `carried` writes the ref a
    /// retry file carries for the row, if it has one (it wins over a generated one);
    /// `field` appends a field's text, or rejects it naming the flag.
    pub(super) fn build(
        &self,
        row: u64,
        carried: Option<impl FnOnce(&mut String) -> std::result::Result<(), Reject>>,
        mut field: impl FnMut(&F, &'static str, &mut String) -> std::result::Result<(), Reject>,
        out: &mut String,
    ) -> std::result::Result<(), Reject> {
        // A rejected row must not report the previous row's ref.
        out.clear();
        let built = match (self, carried) {
            (RefSource::Auto(_), Some(carried)) => carried(out),
            (RefSource::Auto(prefix), None) => {
                out.push_str(prefix);
                out.push_str(itoa::Buffer::new().format(row));
                Ok(())
            }
            (RefSource::Field(f), _) => field(f, REF_FLAG, out),
            (RefSource::Template(parts), _) => parts.iter().try_for_each(|p| match p {
                Part::Lit(s) => {
                    out.push_str(s);
                    Ok(())
                }
                Part::Field(f) => field(f, TEMPLATE_FLAG, out),
            }),
            (RefSource::None, _) => Ok(()),
        };
        settle_ref(built, !matches!(self, RefSource::None), out)
    }
}

/// Whether `r` is the ref generated for `row` of `file_name` (`{file}:{row}`), as opposed
/// to one read from a `_czload_ref` field.
pub(super) fn is_generated(r: &str, file_name: &str, row: u64) -> bool {
    r.strip_prefix(file_name)
        .and_then(|x| x.strip_prefix(':'))
        .is_some_and(|n| n == itoa::Buffer::new().format(row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_are_checked_in_characters() {
        assert!(check_ref(&"é".repeat(255)).is_ok());
        assert!(check_ref(&"a".repeat(256)).is_err());
        assert!(check_ref("").is_err());
    }

    #[test]
    fn a_ref_that_cannot_be_built_is_not_half_reported() {
        let src: RefSource<&str> = RefSource::new(
            &super::super::RefMode::Template("o-{a}-{b}".into()),
            "f.csv",
            |name, _| Ok(if name == "a" { "a" } else { "b" }),
        )
        .unwrap();
        assert_eq!(src.fields().copied().collect::<Vec<_>>(), ["a", "b"]);
        let mut out = String::from("previous");
        let field = |f: &&str, flag: &'static str, out: &mut String| match *f {
            "a" => {
                out.push('5');
                Ok(())
            }
            _ => Err(Reject(format!("{f} {flag}"))),
        };
        type Carried = fn(&mut String) -> std::result::Result<(), Reject>;
        let none: Option<Carried> = None;
        let err = src.build(7, none, field, &mut out).unwrap_err();
        assert_eq!(err.0, "b --ref-template");
        assert_eq!(out, "");
        assert!(is_generated("f.csv:7", "f.csv", 7));
        assert!(!is_generated("f.csv:70", "f.csv", 7));
    }
}
