//! Fields the user adds or renames in every task: `--set KEY[:TYPE]=VALUE` and
//! `--rename OLD:NEW`.
//!
//! In: the flags' text. Out: [`Edits`], checked once (a bad value fails before the run),
//! with the constant fields rendered once as JSON (`"key":value,...`), which each plan
//! appends to every task's data; and the data key a column or top-level field goes under.
//! A constant replaces a column or field of the same (renamed) name. Both are part of the
//! mapping's fingerprint, so `--resume` refuses a log written without them.

use super::json::{push_json_str, write_typed};
use super::ColType;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Edits {
    /// `--set`: key, type, value as typed.
    pub set: Vec<(String, ColType, String)>,
    /// `--rename`: old name, new name.
    pub rename: Vec<(String, String)>,
}

impl Edits {
    /// Parses the flags; the errors name the flag and what to write instead.
    pub fn parse(set: &[String], rename: &[String]) -> Result<Edits, String> {
        let mut e = Edits::default();
        for s in set {
            let (key, value) = s.split_once('=').ok_or_else(|| {
                format!("--set {s:?}: expected KEY=VALUE or KEY:TYPE=VALUE, e.g. --set batch:integer=42")
            })?;
            let (key, ty) = match key.rsplit_once(':') {
                Some((k, t)) => match ColType::parse(t) {
                    Some(ty) => (k, ty),
                    None => {
                        return Err(format!(
                            "--set {s:?}: unknown type {t:?}; use string, number, integer, bool or json"
                        ))
                    }
                },
                None => (key, ColType::String),
            };
            if key.is_empty() {
                return Err(format!("--set {s:?}: the key is empty"));
            }
            write_typed(&mut Vec::new(), value, ty).map_err(|m| format!("--set {s:?}: {m}"))?;
            // The last one of a key wins, like --type.
            e.set.retain(|(k, _, _)| k != key);
            e.set.push((key.to_string(), ty, value.to_string()));
        }
        for r in rename {
            match r.split_once(':') {
                Some((old, new)) if !old.is_empty() && !new.is_empty() => {
                    e.rename.push((old.to_string(), new.to_string()))
                }
                _ => {
                    return Err(format!(
                        "--rename {r:?}: expected OLD:NEW, e.g. --rename cust_id:customer"
                    ))
                }
            }
        }
        Ok(e)
    }

    /// The data key of a column or field named `name` in the input.
    pub fn renamed<'a>(&'a self, name: &'a str) -> &'a str {
        self.rename
            .iter()
            .rev()
            .find(|(o, _)| o == name)
            .map_or(name, |(_, n)| n.as_str())
    }

    /// Whether a column or field named `name` in the input leaves the data: a constant
    /// takes its (renamed) key.
    pub fn replaced(&self, name: &str) -> bool {
        let key = self.renamed(name);
        self.set.iter().any(|(k, _, _)| k == key)
    }

    /// The constant fields as JSON members, `"k":v,"k2":v2` (empty without `--set`).
    pub fn constants(&self) -> Vec<u8> {
        let mut v = Vec::new();
        for (i, (k, ty, value)) in self.set.iter().enumerate() {
            if i > 0 {
                v.push(b',');
            }
            push_json_str(&mut v, k);
            v.push(b':');
            write_typed(&mut v, value, *ty).expect("checked in parse");
        }
        v
    }
}

/// Appends `members` (see [`Edits::constants`]) to the object that ends `buf` at its
/// closing `}` (trailing whitespace allowed), from `start` where it begins.
pub(super) fn append_members(buf: &mut Vec<u8>, start: usize, members: &[u8]) {
    while buf.len() > start && buf.last().is_some_and(u8::is_ascii_whitespace) {
        buf.pop();
    }
    if buf.pop() != Some(b'}') {
        unreachable!("the data is an object");
    }
    let empty = buf[start..].trim_ascii_end().ends_with(b"{");
    if !empty {
        buf.push(b',');
    }
    buf.extend_from_slice(members);
    buf.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_typed_and_render_once() {
        let e = Edits::parse(
            &[
                "batch:integer=42".into(),
                "src=crm:eu".into(),
                "ok:bool=true".into(),
                "batch:integer=43".into(),
            ],
            &["a:b".into()],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(e.constants()).unwrap(),
            r#""src":"crm:eu","ok":true,"batch":43"#
        );
        assert_eq!(e.renamed("a"), "b");
        assert_eq!(e.renamed("c"), "c");
        assert!(e.replaced("batch") && !e.replaced("a"));
        for (set, want) in [
            ("x", "KEY=VALUE"),
            ("n:integer=4.5", "--set"),
            ("n:date=1", "unknown type"),
            ("=1", "empty"),
        ] {
            let err = Edits::parse(&[set.into()], &[]).unwrap_err();
            assert!(err.contains(want), "{set}: {err}");
        }
        assert!(Edits::parse(&[], &["a".into()]).is_err());

        let mut buf = b"xx{}".to_vec();
        append_members(&mut buf, 2, br#""k":1"#);
        assert_eq!(buf, br#"xx{"k":1}"#);
        let mut buf = br#"{"a":1} "#.to_vec();
        append_members(&mut buf, 0, br#""k":1"#);
        assert_eq!(buf, br#"{"a":1,"k":1}"#);
    }
}
