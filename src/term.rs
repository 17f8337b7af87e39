//! What czload writes on stderr, shaped for where it lands: lines as wide as the
//! terminal on one, else `$COLUMNS` if set, else 80 (a cron log, a mail, `kubectl logs`);
//! an RFC 3339 time for lines that a log collects over many nights.
//!
//! Wrapping breaks at spaces only (`textwrap` with `break_words` off): a path or URL
//! longer than a line stays whole on a line of its own, so that it can be copied.

use std::time::SystemTime;

/// Lines are this wide off a terminal, unless `$COLUMNS` says otherwise.
pub const DEFAULT_WIDTH: usize = 80;

/// The width stderr's lines should keep to.
pub fn width() -> usize {
    if let Some((terminal_size::Width(w), _)) = terminal_size::terminal_size_of(std::io::stderr()) {
        return usize::from(w).max(20);
    }
    columns_env().unwrap_or(DEFAULT_WIDTH)
}

/// As `width`, for what goes to stdout (`czload check`'s report).
pub fn stdout_width() -> usize {
    if let Some((terminal_size::Width(w), _)) = terminal_size::terminal_size_of(std::io::stdout()) {
        return usize::from(w).max(20);
    }
    columns_env().unwrap_or(DEFAULT_WIDTH)
}

/// `$COLUMNS`, the shells' and many tools' convention for the width to write to.
fn columns_env() -> Option<usize> {
    std::env::var("COLUMNS")
        .ok()?
        .trim()
        .parse::<usize>()
        .ok()
        .filter(|&w| w >= 20)
}

/// `text` with each line longer than `width` broken at spaces; a continued line is
/// indented two more than the line it continues, so that a reader (or `grep -A`) sees
/// where one message ends.
pub fn wrap(text: &str, width: usize) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / width.max(1) * 3);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if textwrap::core::display_width(line) <= width {
            out.push_str(line);
            continue;
        }
        let lead = line.len() - line.trim_start_matches(' ').len();
        let indent = " ".repeat(lead + 2);
        let options = textwrap::Options::new(width)
            .break_words(false)
            .subsequent_indent(&indent)
            .word_separator(textwrap::WordSeparator::AsciiSpace)
            // Never inside a word: `--conv-id` or a date broken at its hyphen is a
            // different word to whoever copies it.
            .word_splitter(textwrap::WordSplitter::NoHyphenation);
        out.push_str(&textwrap::fill(line, options));
    }
    out
}

/// The words that open a line the user must not miss, drawn red when colour is on
/// (`--color`, `NO_COLOR`: a terminal only, by default).
const ALARMS: [&str; 2] = ["stopped:", "input error:"];

/// `text` with the opening word of each alarming line (`ALARMS`) in red, if `color`.
pub fn paint(text: &str, color: bool) -> String {
    if !color {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        match ALARMS.iter().find(|a| line.starts_with(*a)) {
            Some(a) => {
                out.push_str("\x1b[31m");
                out.push_str(a);
                out.push_str("\x1b[0m");
                out.push_str(&line[a.len()..]);
            }
            None => out.push_str(line),
        }
    }
    out
}

/// Now, as an RFC 3339 UTC time to the second: `2026-12-04T14:55:03Z`.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_break_at_spaces_within_the_width_and_say_they_go_on() {
        let text = "czload: cannot resume: input /tmp/x/orders.csv changed since the run that wrote /tmp/x/orders.results.ndjson (size or content differs)\nshort\n      6  error: Object conv with id 999 does not exist, and more words follow here to wrap";
        let got = wrap(text, 40);
        for l in got.lines() {
            assert!(
                textwrap::core::display_width(l) <= 40 || !l.trim().contains(' '),
                "{l:?} in\n{got}"
            );
        }
        // No word is lost or broken: unwrapping gives the words back.
        let words = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(words(&got), words(text));
        let lines: Vec<&str> = got.lines().collect();
        assert!(lines[1].starts_with("  ") && !lines[1].starts_with("   "));
        assert!(lines.contains(&"short"));
        // An indented line goes on two further in.
        let i = lines.iter().position(|l| l.contains("error:")).unwrap();
        assert!(lines[i + 1].starts_with("        ") && !lines[i + 1].starts_with("         "));
    }

    #[test]
    fn a_word_longer_than_the_line_stays_whole() {
        let path = "/very/long/path/".repeat(8);
        let got = wrap(&format!("czload: {path}: not found"), 40);
        assert!(got.lines().any(|l| l.contains(&path)), "{got}");
        assert!(got.lines().count() > 1, "{got}");
    }

    #[test]
    fn only_alarming_lines_are_painted_and_only_with_colour() {
        let text = "3 rows\nstopped: HTTP 401\nresults log: x";
        assert_eq!(paint(text, false), text);
        assert_eq!(
            paint(text, true),
            "3 rows\n\x1b[31mstopped:\x1b[0m HTTP 401\nresults log: x"
        );
    }

    #[test]
    fn the_time_is_rfc_3339_utc_to_the_second() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
        assert!(humantime::parse_rfc3339(&t).is_ok(), "{t}");
    }
}
