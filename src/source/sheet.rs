//! Spreadsheets: XLSX (and XLSM) and ODS, through the `calamine` crate.
//!
//! In: a file (a zip: opened by seeking in it, so never stdin nor compressed) and the
//! sheet asked for (`--sheet NAME|N`, the first by default). Out: one record a row, a JSON
//! object's text keyed by the header row, mapped as NDJSON lines are. Cells keep their
//! types: numbers are JSON numbers, booleans booleans, dates and times ISO 8601 strings,
//! text strings; an empty cell is what CSV's mapping makes of an empty cell under
//! `--empty` (`""`, left out, or null). A row whose cell holds an error (`#DIV/0!`) or
//! lies outside the header's columns is rejected with the sheet, the cell and why; rows
//! with no value at all are skipped, as CSV's blank lines are. Rows count from 1 after
//! the header; a row's line is its row number in the sheet.
//!
//! calamine reads an XLSX sheet cell by cell from the zip (`worksheet_cells_reader`), so
//! memory holds the workbook's shared strings and the rows in flight, not the sheet; an
//! ODS workbook is parsed whole when opened (calamine has no streaming reader for it).
//! The cells are read on a thread of their own (the cell reader borrows the workbook) and
//! handed over in chunks of rows through a small bounded channel.
//!
//! The retry file is NDJSON: the rows' objects as sent, so reloading it sends the same
//! types (a CSV would turn numbers into text) with the same flags.

use super::{Kind, Open, Opened, ReadError, ReadOptions, Records, Spec};
use crate::error::{Error, Result};
use crate::mapping::{write_json_str, EmptyPolicy};
use calamine::{Data, DataRef, ExcelDateTime, Ods, Reader, Xlsx};
use std::path::Path;
use std::sync::mpsc;

/// XLSX: Excel's workbook (and XLSM, the same with macros, which are not run).
pub const XLSX: Spec = Spec {
    name: "xlsx",
    extensions: &[".xlsx", ".xlsm"],
    ..SHEET
};

/// ODS: the OpenDocument spreadsheet (LibreOffice, Google Sheets' export).
pub const ODS: Spec = Spec {
    name: "ods",
    extensions: &[".ods"],
    open: Open::File(open_ods),
    manifest: "ods",
    ..SHEET
};

/// What both spreadsheet formats are.
const SHEET: Spec = Spec {
    name: "xlsx",
    extensions: &[],
    claims: None,
    kind: Kind::Objects,
    open: Open::File(open_xlsx),
    // A sheet's retry file holds the objects sent, so their types survive.
    retry_format: "ndjson",
    starts: b"PK\x03\x04",
    manifest: "xlsx",
    delimited: false,
    header_row: true,
    json_values: false,
    sheets: true,
};

/// Rows a chunk, and chunks in the channel: what the reading thread may run ahead.
const CHUNK_ROWS: usize = 256;
const CHUNKS: usize = 4;

#[derive(Clone, Copy)]
enum Book {
    Xlsx,
    Ods,
}

fn open_xlsx(path: &Path, sheet: Option<&str>, opts: &ReadOptions) -> Result<Opened> {
    open(Book::Xlsx, path, sheet, opts)
}

fn open_ods(path: &Path, sheet: Option<&str>, opts: &ReadOptions) -> Result<Opened> {
    open(Book::Ods, path, sheet, opts)
}

/// What the reading thread hands over.
enum Msg {
    /// The sheet and its header are read: rows follow.
    Ready,
    Rows(Vec<Row>),
    /// Reading stopped: `line` `None` before the header (the input cannot be used).
    Fail(Option<u64>, String),
}

struct Row {
    /// The row's number in the sheet, from 1.
    line: u64,
    json: Vec<u8>,
    unfit: Option<String>,
}

/// Why the reading thread stopped early.
enum Halt {
    /// The reader is gone (the run stopped, or the preflight is done).
    Gone,
    Fail(Option<u64>, String),
}

/// Starts the reading thread and waits until it has found the sheet and read its header,
/// so that a missing sheet or a bad header stops the run before any row is sent.
fn open(book: Book, path: &Path, sheet: Option<&str>, opts: &ReadOptions) -> Result<Opened> {
    let (tx, rx) = mpsc::sync_channel(CHUNKS);
    let (file, want, opts_) = (path.to_path_buf(), sheet.map(str::to_string), *opts);
    std::thread::Builder::new()
        .name("czload-sheet".into())
        .spawn(move || {
            let mut rows = RowBuilder::new(opts_, tx.clone());
            let res = match book {
                Book::Xlsx => read_xlsx(&file, want.as_deref(), &mut rows),
                Book::Ods => read_ods(&file, want.as_deref(), &mut rows),
            };
            if let Err(Halt::Fail(line, message)) = res.and_then(|()| rows.finish()) {
                let _ = tx.send(Msg::Fail(line, message));
            }
        })
        .map_err(|e| Error::file(path, format!("cannot start reading it: {e}")))?;
    match rx.recv() {
        Ok(Msg::Ready) => Ok(Opened::Objects(Box::new(SheetSource {
            rx,
            chunk: Vec::new().into_iter(),
            cur: None,
            row: 0,
            done: false,
            max_row: opts.max_row,
        }))),
        Ok(Msg::Fail(_, message)) => Err(Error::file(path, message)),
        Ok(Msg::Rows(_)) | Err(_) => Err(Error::file(path, "the sheet could not be read")),
    }
}

fn read_xlsx(path: &Path, want: Option<&str>, rows: &mut RowBuilder) -> Result<(), Halt> {
    let mut book: Xlsx<_> = calamine::open_workbook(path)
        .map_err(|e| Halt::Fail(None, format!("cannot read it as XLSX: {e}")))?;
    let name = pick(&book.sheet_names(), want)?;
    rows.sheet = name.clone();
    let mut cells = book
        .worksheet_cells_reader(&name)
        .map_err(|e| Halt::Fail(None, format!("sheet {name:?}: {e}")))?;
    loop {
        let cell = match cells.next_cell() {
            Ok(Some(c)) => c,
            Ok(None) => return Ok(()),
            Err(e) => return Err(rows.fail(e)),
        };
        let (r, c) = cell.get_position();
        rows.cell(r, c, Val::of_ref(cell.get_value()))?;
    }
}

fn read_ods(path: &Path, want: Option<&str>, rows: &mut RowBuilder) -> Result<(), Halt> {
    let mut book: Ods<_> = calamine::open_workbook(path)
        .map_err(|e| Halt::Fail(None, format!("cannot read it as ODS: {e}")))?;
    let name = pick(&book.sheet_names(), want)?;
    rows.sheet = name.clone();
    let range = book
        .worksheet_range(&name)
        .map_err(|e| Halt::Fail(None, format!("sheet {name:?}: {e}")))?;
    // The range is a copy: the workbook's own goes now.
    drop(book);
    let (r0, c0) = range.start().unwrap_or((0, 0));
    for (r, c, v) in range.used_cells() {
        rows.cell(r0 + r as u32, c0 + c as u32, Val::of(v))?;
    }
    Ok(())
}

/// The sheet `--sheet` names (by name first, else by position from 1), or the first.
fn pick(names: &[String], want: Option<&str>) -> Result<String, Halt> {
    let listed = || {
        let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
        quoted.join(", ")
    };
    let Some(want) = want else {
        return names
            .first()
            .cloned()
            .ok_or_else(|| Halt::Fail(None, "the workbook has no sheets".into()));
    };
    if let Some(n) = names.iter().find(|n| *n == want) {
        return Ok(n.clone());
    }
    match want.trim().parse::<usize>() {
        Ok(i) if (1..=names.len()).contains(&i) => Ok(names[i - 1].clone()),
        Ok(_) => Err(Halt::Fail(
            None,
            format!(
                "--sheet {want}: there are {} sheets ({}); give a name, or a position from 1",
                names.len(),
                listed()
            ),
        )),
        Err(_) => Err(Halt::Fail(
            None,
            format!(
                "--sheet {want:?}: no sheet of that name; its sheets are {} (by name, or by position from 1)",
                listed()
            ),
        )),
    }
}

/// A cell's value, borrowed from either reader's form of it.
enum Val<'a> {
    Int(i64),
    Float(f64),
    Str(&'a str),
    Bool(bool),
    Date(ExcelDateTime),
    /// Already ISO 8601 (ODS dates, times and durations).
    Iso(&'a str),
    Error(String),
    Empty,
}

impl<'a> Val<'a> {
    fn of(d: &'a Data) -> Val<'a> {
        match d {
            Data::Int(i) => Val::Int(*i),
            Data::Float(f) => Val::Float(*f),
            Data::String(s) => Val::Str(s),
            Data::Bool(b) => Val::Bool(*b),
            Data::DateTime(t) => Val::Date(*t),
            Data::DateTimeIso(s) | Data::DurationIso(s) => Val::Iso(s),
            Data::Error(e) => Val::Error(e.to_string()),
            Data::Empty => Val::Empty,
        }
    }

    fn of_ref(d: &'a DataRef<'_>) -> Val<'a> {
        match d {
            DataRef::Int(i) => Val::Int(*i),
            DataRef::Float(f) => Val::Float(*f),
            DataRef::String(s) => Val::Str(s),
            DataRef::SharedString(s) => Val::Str(s),
            DataRef::Bool(b) => Val::Bool(*b),
            DataRef::DateTime(t) => Val::Date(*t),
            DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => Val::Iso(s),
            DataRef::Error(e) => Val::Error(e.to_string()),
            DataRef::Empty => Val::Empty,
        }
    }

    /// An owned copy, for the first row (kept until the header is settled).
    fn to_data(&self) -> Data {
        match self {
            Val::Int(i) => Data::Int(*i),
            Val::Float(f) => Data::Float(*f),
            Val::Str(s) => Data::String(s.to_string()),
            Val::Bool(b) => Data::Bool(*b),
            Val::Date(t) => Data::DateTime(*t),
            Val::Iso(s) => Data::DateTimeIso(s.to_string()),
            Val::Error(_) => Data::Error(calamine::CellErrorType::Value),
            Val::Empty => Data::Empty,
        }
    }

    /// The value as JSON. Excel keeps every number as a float: a whole one is written
    /// as an integer (`3`, not `3.0`).
    fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Val::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
            Val::Float(f) => write_number(*f, out),
            Val::Str(s) | Val::Iso(s) => write_str(s, out),
            Val::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Val::Date(t) => write_str(&iso(t), out),
            Val::Error(_) | Val::Empty => out.extend_from_slice(b"null"),
        }
    }

    /// The value as a header cell's text.
    fn text(&self) -> String {
        match self {
            Val::Str(s) | Val::Iso(s) => s.trim().to_string(),
            Val::Date(t) => iso(t),
            Val::Error(e) => e.clone(),
            Val::Empty => String::new(),
            _ => {
                let mut v = Vec::new();
                self.write_json(&mut v);
                String::from_utf8(v).expect("JSON numbers and booleans are ASCII")
            }
        }
    }
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    write_json_str(out, s).expect("a Vec never fails");
}

fn write_number(f: f64, out: &mut Vec<u8>) {
    if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
        out.extend_from_slice(itoa::Buffer::new().format(f as i64).as_bytes());
    } else if f.is_finite() {
        out.extend_from_slice(ryu::Buffer::new().format_finite(f).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// An Excel date, time or duration as ISO 8601: `2024-03-01`, `13:45:00`,
/// `2024-03-01T13:45:00.250`, `PT36H30M0S`. A value under one day is a time of day.
fn iso(t: &ExcelDateTime) -> String {
    if t.is_duration() {
        let ms = (t.as_f64() * 86_400_000.0).round() as i64;
        let (neg, ms) = (ms < 0, ms.abs());
        let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
        let sign = if neg { "-" } else { "" };
        return match frac {
            0 => format!("{sign}PT{h}H{m}M{s}S"),
            f => format!("{sign}PT{h}H{m}M{s}.{f:03}S"),
        };
    }
    let (y, mo, d, h, mi, s, ms) = t.to_ymd_hms_milli();
    let time = match ms {
        0 => format!("{h:02}:{mi:02}:{s:02}"),
        ms => format!("{h:02}:{mi:02}:{s:02}.{ms:03}"),
    };
    let v = t.as_f64();
    if (0.0..1.0).contains(&v) {
        time
    } else if (h, mi, s, ms) == (0, 0, 0, 0) {
        format!("{y:04}-{mo:02}-{d:02}")
    } else {
        format!("{y:04}-{mo:02}-{d:02}T{time}")
    }
}

/// A column's letters, as the spreadsheet shows them: 0 is A, 26 is AA.
fn col_name(mut c: u32) -> String {
    let mut s = Vec::new();
    loop {
        s.push(b'A' + (c % 26) as u8);
        if c < 26 {
            break;
        }
        c = c / 26 - 1;
    }
    s.reverse();
    String::from_utf8(s).expect("ASCII")
}

/// The header's columns: the first, and each one's key (`"name":`, escaped once).
struct Cols {
    first: u32,
    keys: Vec<Vec<u8>>,
}

/// Builds rows from the cells, in the order the sheet holds them (row by row, column by
/// column), and hands them over in chunks.
struct RowBuilder {
    sheet: String,
    opts: ReadOptions,
    tx: mpsc::SyncSender<Msg>,
    cols: Option<Cols>,
    /// The first row with a value, kept until it ends (the header, or with `--no-header`
    /// the row that gives the columns).
    first: Vec<(u32, Data)>,
    /// The row being built (0-based), its object so far and the next column to write.
    cur: Option<u32>,
    json: Vec<u8>,
    next_col: u32,
    unfit: Option<String>,
    chunk: Vec<Row>,
}

impl RowBuilder {
    fn new(opts: ReadOptions, tx: mpsc::SyncSender<Msg>) -> RowBuilder {
        RowBuilder {
            sheet: String::new(),
            opts,
            tx,
            cols: None,
            first: Vec::new(),
            cur: None,
            json: Vec::new(),
            next_col: 0,
            unfit: None,
            chunk: Vec::with_capacity(CHUNK_ROWS),
        }
    }

    /// A read error at the row being read.
    fn fail(&self, e: impl std::fmt::Display) -> Halt {
        let line = self.cur.map_or(1, |r| r as u64 + 1);
        Halt::Fail(
            self.cols.as_ref().map(|_| line),
            format!("sheet {:?}, row {line}: {e}", self.sheet),
        )
    }

    fn cell(&mut self, r: u32, c: u32, v: Val<'_>) -> Result<(), Halt> {
        if matches!(v, Val::Empty) {
            return Ok(());
        }
        if self.cur != Some(r) {
            self.end_row()?;
            self.cur = Some(r);
            if self.cols.is_some() {
                self.json.clear();
                self.json.push(b'{');
                self.next_col = self.cols.as_ref().map_or(0, |c| c.first);
                self.unfit = None;
            }
        }
        if self.cols.is_none() {
            self.first.push((c, v.to_data()));
            return Ok(());
        }
        self.value(r, c, &v);
        Ok(())
    }

    /// Writes one value of the row being built, after the empty cells before it.
    fn value(&mut self, r: u32, c: u32, v: &Val<'_>) {
        let cols = self.cols.as_ref().expect("settled");
        let last = cols.first + cols.keys.len() as u32 - 1;
        let at = || format!("sheet {:?}, cell {}{}", self.sheet, col_name(c), r + 1);
        if c < cols.first || c > last {
            self.unfit.get_or_insert_with(|| {
                format!(
                    "{}: a value outside the header's columns ({} to {})",
                    at(),
                    col_name(cols.first),
                    col_name(last)
                )
            });
            return;
        }
        if let Val::Error(e) = v {
            self.unfit
                .get_or_insert_with(|| format!("{} holds the error {e}", at()));
        }
        self.fill_to(c);
        self.key(c);
        v.write_json(&mut self.json);
        self.next_col = c + 1;
    }

    /// The empty cells from `next_col` up to `c` (excluded), as CSV maps an empty cell.
    fn fill_to(&mut self, c: u32) {
        while self.next_col < c {
            let at = self.next_col;
            self.next_col += 1;
            match self.opts.empty {
                EmptyPolicy::Omit => continue,
                EmptyPolicy::Keep => {
                    self.key(at);
                    self.json.extend_from_slice(b"\"\"");
                }
                EmptyPolicy::Null => {
                    self.key(at);
                    self.json.extend_from_slice(b"null");
                }
            }
        }
    }

    fn key(&mut self, c: u32) {
        let cols = self.cols.as_ref().expect("settled");
        if self.json.len() > 1 {
            self.json.push(b',');
        }
        self.json
            .extend_from_slice(&cols.keys[(c - cols.first) as usize]);
    }

    /// Ends the row being built: the first one settles the columns.
    fn end_row(&mut self) -> Result<(), Halt> {
        let Some(r) = self.cur else { return Ok(()) };
        if self.cols.is_none() {
            return self.settle(r);
        }
        let cols = self.cols.as_ref().expect("settled");
        self.fill_to(cols.first + cols.keys.len() as u32);
        self.json.push(b'}');
        self.chunk.push(Row {
            line: r as u64 + 1,
            json: std::mem::take(&mut self.json),
            unfit: self.unfit.take(),
        });
        if self.chunk.len() >= CHUNK_ROWS {
            self.send_chunk()?;
        }
        Ok(())
    }

    /// The columns, from the first row with a value: its names (the header), or
    /// key1..keyN with `--no-header` (the row is then data, written now).
    fn settle(&mut self, r: u32) -> Result<(), Halt> {
        let first = std::mem::take(&mut self.first);
        let (c0, c1) = (first[0].0, first[first.len() - 1].0);
        let mut names: Vec<String> = (1..=c1 - c0 + 1).map(|i| format!("key{i}")).collect();
        if self.opts.has_header {
            names.iter_mut().for_each(String::clear);
            for (c, d) in &first {
                names[(c - c0) as usize] = Val::of(d).text();
            }
            self.check_header(r, c0, &names)?;
        }
        let keys = names
            .iter()
            .map(|n| {
                let mut k = Vec::with_capacity(n.len() + 3);
                write_str(n, &mut k);
                k.push(b':');
                k
            })
            .collect();
        self.cols = Some(Cols { first: c0, keys });
        self.tx.send(Msg::Ready).map_err(|_| Halt::Gone)?;
        if !self.opts.has_header {
            self.json.clear();
            self.json.push(b'{');
            self.next_col = c0;
            for (c, d) in &first {
                self.value(r, *c, &Val::of(d));
            }
            self.end_row()?;
        }
        Ok(())
    }

    /// Refuses a header cell without a name, or two columns of one name.
    fn check_header(&self, r: u32, c0: u32, names: &[String]) -> Result<(), Halt> {
        let cell = |i: usize| format!("{}{}", col_name(c0 + i as u32), r + 1);
        for (i, n) in names.iter().enumerate() {
            if n.is_empty() {
                return Err(Halt::Fail(None, format!(
                    "sheet {:?}, cell {}: the header row has no name for this column; name it, or use --no-header",
                    self.sheet, cell(i)
                )));
            }
            if let Some(j) = names[..i].iter().position(|x| x == n) {
                return Err(Halt::Fail(None, format!(
                    "sheet {:?}: cells {} and {} of the header are both named {n:?}; task parameters must be unique",
                    self.sheet, cell(j), cell(i)
                )));
            }
        }
        Ok(())
    }

    fn send_chunk(&mut self) -> Result<(), Halt> {
        let rows = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK_ROWS));
        self.tx.send(Msg::Rows(rows)).map_err(|_| Halt::Gone)
    }

    /// After the last cell: the last row, and a sheet with no row at all is refused.
    fn finish(&mut self) -> Result<(), Halt> {
        self.end_row()?;
        if self.cols.is_none() {
            return Err(Halt::Fail(
                None,
                format!("sheet {:?} is empty: there is no header row", self.sheet),
            ));
        }
        self.send_chunk()
    }
}

/// The rows of a sheet, as the reading thread hands them over.
struct SheetSource {
    rx: mpsc::Receiver<Msg>,
    chunk: std::vec::IntoIter<Row>,
    cur: Option<Row>,
    row: u64,
    done: bool,
    max_row: u64,
}

impl Records for SheetSource {
    type Record = [u8];

    fn advance(&mut self) -> std::result::Result<Option<(u64, u64)>, ReadError> {
        loop {
            if let Some(r) = self.chunk.next() {
                self.row += 1;
                let line = r.line;
                self.cur = Some(r);
                return Ok(Some((self.row, line)));
            }
            if self.done {
                return Ok(None);
            }
            match self.rx.recv() {
                Ok(Msg::Rows(rows)) => self.chunk = rows.into_iter(),
                Ok(Msg::Ready) => {}
                Ok(Msg::Fail(line, message)) => {
                    self.done = true;
                    return Err(ReadError {
                        line: line.unwrap_or(0),
                        message,
                    });
                }
                Err(_) => self.done = true,
            }
        }
    }

    fn record(&self) -> &[u8] {
        self.cur.as_ref().map_or(&[], |r| &r.json)
    }

    fn too_long(&self) -> Option<u64> {
        let len = self.cur.as_ref()?.json.len() as u64;
        (len > self.max_row).then_some(len)
    }

    fn unfit(&self) -> Option<&str> {
        self.cur.as_ref()?.unfit.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_named_as_the_sheet_shows_them() {
        assert_eq!(col_name(0), "A");
        assert_eq!(col_name(25), "Z");
        assert_eq!(col_name(26), "AA");
        assert_eq!(col_name(27), "AB");
        assert_eq!(col_name(701), "ZZ");
        assert_eq!(col_name(702), "AAA");
    }

    #[test]
    fn dates_and_times_are_iso_8601() {
        use calamine::ExcelDateTimeType::{DateTime, TimeDelta};
        let at = |v| iso(&ExcelDateTime::new(v, DateTime, false));
        assert_eq!(at(45352.0), "2024-03-01");
        assert_eq!(at(45352.5), "2024-03-01T12:00:00");
        assert_eq!(at(0.75), "18:00:00");
        assert_eq!(
            at(45352.0 + 0.25 + 0.5 / 86400.0),
            "2024-03-01T06:00:00.500"
        );
        let dur = |v| iso(&ExcelDateTime::new(v, TimeDelta, false));
        assert_eq!(dur(1.5 + 1.0 / 48.0), "PT36H30M0S");
    }

    #[test]
    fn whole_numbers_are_integers() {
        let json = |f| {
            let mut v = Vec::new();
            write_number(f, &mut v);
            String::from_utf8(v).unwrap()
        };
        assert_eq!(json(3.0), "3");
        assert_eq!(json(-12.0), "-12");
        assert_eq!(json(2.5), "2.5");
        assert_eq!(json(1e20), "1e20");
    }

    #[test]
    fn a_sheet_is_picked_by_name_then_position() {
        let names: Vec<String> = ["Orders", "2", "Notes"].map(String::from).to_vec();
        let ok = |w| match pick(&names, w) {
            Ok(n) => n,
            Err(_) => panic!("{w:?}"),
        };
        assert_eq!(ok(None), "Orders");
        assert_eq!(ok(Some("Notes")), "Notes");
        assert_eq!(ok(Some("2")), "2");
        assert_eq!(ok(Some("3")), "Notes");
        for (w, want) in [
            (
                "4",
                "--sheet 4: there are 3 sheets (\"Orders\", \"2\", \"Notes\")",
            ),
            (
                "Other",
                "--sheet \"Other\": no sheet of that name; its sheets are \"Orders\"",
            ),
        ] {
            match pick(&names, Some(w)) {
                Err(Halt::Fail(None, m)) => assert!(m.starts_with(want), "{m}"),
                _ => panic!("{w}"),
            }
        }
    }
}
