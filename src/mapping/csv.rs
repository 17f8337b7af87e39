//! Records of named fields (CSV; any delimited format) -> ops, and -> retry-file rows.
//!
//! In: the header's column names once, then one `csv::ByteRecord` per row. Out: the op
//! (see [`super::Plan`]), and the row re-encoded for the retry file with its
//! generated ref in a `_czload_ref` column.

use super::json::{is_plain, push_json_str, push_plain, sep, write_typed};
use super::refs::{RefSource, REF_COLUMN};
use super::{
    check_task_size, fixed_part, parse_conv, write_head, ColType, EmptyPolicy, MappingConfig, Plan,
    Reject, RetryRows, Target,
};
use crate::error::{Error, Result};
use crate::shard::{RowShards, Shard};
use crate::source::csv::RowEncoder;
use crate::source::Header;
use csv::ByteRecord;

/// A column a ref reads: its position, and its name for rejections.
#[derive(Debug)]
struct Col {
    index: usize,
    name: String,
}

#[derive(Debug)]
struct CsvCol {
    name: String,
    /// `"name":`, escaped once.
    key: Vec<u8>,
    ty: ColType,
}

/// How every row of one CSV input becomes an op; built from its header.
#[derive(Debug)]
pub struct CsvPlan {
    fixed: Vec<u8>,
    conv_col: Option<(usize, String)>,
    reference: RefSource<Col>,
    /// The `_czload_ref` column of a retry file: its value wins over an auto ref.
    retry_ref: Option<usize>,
    /// Data columns by position; `None` for excluded ones.
    cols: Vec<Option<CsvCol>>,
    n_fields: usize,
    empty: EmptyPolicy,
    max_task_bytes: usize,
    /// `--set`: the constant members every task's data ends with (empty without).
    constants: Vec<u8>,
}

/// Refuses a header with a column that has no name, or two columns of the same name.
fn check_header(header: &[String], file_name: &str) -> Result<()> {
    for (i, h) in header.iter().enumerate() {
        if h.is_empty() {
            return Err(Error::Usage(format!(
                "{file_name}: column {} of the header has no name; name it, or use --no-header",
                i + 1
            )));
        }
        if let Some(j) = header[..i].iter().position(|x| x == h) {
            return Err(Error::Usage(format!(
                "{file_name}: columns {} and {} of the header are both named {h:?}; task parameters must be unique",
                j + 1,
                i + 1
            )));
        }
    }
    Ok(())
}

impl CsvPlan {
    /// Generated refs are `{name}:{row}` (`--ref-prefix`, or the name a resumed run used).
    pub(crate) fn name_refs(&mut self, name: &str) {
        self.reference.rename(name);
    }

    /// `header` is the list of column names; `file_name` seeds auto refs.
    pub fn new(cfg: &MappingConfig, header: &[String], file_name: &str) -> Result<CsvPlan> {
        let find = |name: &str, flag: &str| -> Result<usize> {
            header.iter().position(|h| h == name).ok_or_else(|| {
                Error::Usage(format!(
                    "{flag}: no column named {name:?} in the header of {file_name} (columns: {})",
                    header.join(", ")
                ))
            })
        };
        check_header(header, file_name)?;
        for (name, _) in &cfg.types {
            find(name, "--type")?;
        }
        for name in &cfg.exclude {
            find(name, "--exclude")?;
        }
        for (old, _) in &cfg.edits.rename {
            find(old, "--rename")?;
        }
        let retry_ref = header.iter().position(|h| h == REF_COLUMN);
        let mut reference = RefSource::new(&cfg.ref_mode, file_name, |name, flag| {
            Ok(Col {
                index: find(name, flag)?,
                name: name.to_string(),
            })
        })?;
        let (conv, conv_col) = match &cfg.target {
            Target::Conv(c) => (Some(*c), None),
            Target::Column(c) => (None, Some((find(c, "--conv-id-column")?, c.clone()))),
            Target::Alias(_) => (None, None),
        };
        let cols: Vec<Option<CsvCol>> = header
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let excluded = cfg.exclude.contains(name)
                    || cfg.edits.replaced(name)
                    || Some(i) == retry_ref
                    || conv_col.as_ref().is_some_and(|(c, _)| *c == i);
                (!excluded).then(|| data_col(cfg, name))
            })
            .collect();
        let names: Vec<&str> = cols.iter().flatten().map(|c| c.name.as_str()).collect();
        let key = |n: &str| cfg.edits.renamed(n).to_string();
        for (i, a) in names.iter().enumerate() {
            if let Some(b) = names[..i].iter().find(|b| key(b) == key(a)) {
                return Err(Error::Usage(format!(
                    "--rename: columns {b:?} and {a:?} of {file_name} would both be named {:?} in the task; rename one of them too, or --exclude one",
                    key(a)
                )));
            }
        }
        if let RefSource::Field(col) = &mut reference {
            // A `--ref-column` cell is named as a data column, "ref" when it is not one.
            col.name = cols[col.index]
                .as_ref()
                .map_or("ref", |c| c.name.as_str())
                .to_string();
        }
        Ok(CsvPlan {
            fixed: fixed_part(cfg, conv),
            conv_col,
            reference,
            retry_ref,
            cols,
            n_fields: header.len(),
            empty: cfg.empty,
            max_task_bytes: cfg.max_task_bytes,
            constants: cfg.edits.constants(),
        })
    }

    /// The data keys every row of this header gives (renamed; `--set` keys included):
    /// what the header alone says a task carries, for `czload check` of no rows.
    pub fn data_keys(&self, edits: &super::Edits) -> Vec<String> {
        let cols = self.cols.iter().flatten();
        cols.map(|c| edits.renamed(&c.name).to_string())
            .chain(edits.set.iter().map(|(k, _, _)| k.clone()))
            .collect()
    }

    /// Whether refs are generated (so a retry file must carry them).
    pub fn auto_ref(&self) -> bool {
        self.reference.is_auto()
    }

    /// Refuses a row whose field count is not the header's.
    fn check_fields(&self, rec: &ByteRecord) -> std::result::Result<(), Reject> {
        if rec.len() == self.n_fields {
            return Ok(());
        }
        // A quote that is never closed swallows the line ends after it.
        let hint = if rec.len() < self.n_fields && rec.iter().any(|f| f.contains(&b'\n')) {
            " (a quoted field runs on across lines: is a closing quote missing?)"
        } else {
            ""
        };
        Err(Reject(format!(
            "row has {} fields, the header has {}{hint}",
            rec.len(),
            self.n_fields
        )))
    }

    /// The task data: `{` the data columns `}`.
    fn write_data(&self, rec: &ByteRecord, buf: &mut Vec<u8>) -> std::result::Result<(), Reject> {
        buf.push(b'{');
        let mut first = true;
        for (col, field) in self.cols.iter().zip(rec.iter()) {
            let Some(col) = col else { continue };
            if col.ty == ColType::String && !field.is_empty() && is_plain(field) {
                // The common cell: no UTF-8 check or escaping needed (see `is_plain`).
                sep(buf, &mut first);
                buf.extend_from_slice(&col.key);
                push_plain(buf, field);
                continue;
            }
            let text = std::str::from_utf8(field).map_err(|e| {
                Reject::col(
                    &col.name,
                    format!("not valid UTF-8 (byte {} of the cell)", e.valid_up_to() + 1),
                )
            })?;
            if text.is_empty() {
                match (self.empty, col.ty) {
                    (EmptyPolicy::Omit, _) => continue,
                    (EmptyPolicy::Keep, ColType::String) => {}
                    (EmptyPolicy::Keep, _) => continue,
                    (EmptyPolicy::Null, _) => {
                        sep(buf, &mut first);
                        buf.extend_from_slice(&col.key);
                        buf.extend_from_slice(b"null");
                        continue;
                    }
                }
            }
            sep(buf, &mut first);
            buf.extend_from_slice(&col.key);
            write_typed(buf, text, col.ty).map_err(|msg| Reject::col(&col.name, msg))?;
        }
        if !self.constants.is_empty() {
            sep(buf, &mut first);
            buf.extend_from_slice(&self.constants);
        }
        buf.push(b'}');
        Ok(())
    }
}

impl Plan for CsvPlan {
    type Record = ByteRecord;

    fn write_op(
        &self,
        rec: &ByteRecord,
        id: u64,
        row: u64,
        buf: &mut Vec<u8>,
        ref_out: &mut String,
    ) -> std::result::Result<(), Reject> {
        self.write_ref(rec, row, ref_out)?;
        let conv = match &self.conv_col {
            Some((i, name)) => Some(cell_conv(&rec[*i], name)?),
            None => None,
        };
        write_head(buf, id, &self.fixed, conv, ref_out);
        let data_start = buf.len();
        self.write_data(rec, buf)?;
        check_task_size(buf.len() - data_start, self.max_task_bytes)?;
        buf.push(b'}');
        Ok(())
    }

    fn write_ref(
        &self,
        rec: &ByteRecord,
        row: u64,
        ref_out: &mut String,
    ) -> std::result::Result<(), Reject> {
        ref_out.clear();
        self.check_fields(rec)?;
        let carried = self.retry_ref.map(|i| &rec[i]).filter(|r| !r.is_empty());
        let carried = carried.map(|r| {
            move |out: &mut String| {
                out.push_str(
                    std::str::from_utf8(r)
                        .map_err(|_| Reject::col(REF_COLUMN, "not valid UTF-8"))?,
                );
                Ok(())
            }
        });
        let field = |col: &Col, _flag: &'static str, out: &mut String| {
            out.push_str(
                std::str::from_utf8(&rec[col.index])
                    .map_err(|_| Reject::col(&col.name, "not valid UTF-8"))?,
            );
            Ok(())
        };
        self.reference.build(row, carried, field, ref_out)
    }

    fn row_shards(&self, shard: Shard) -> Option<RowShards> {
        // `write_ref`: a record without the header's field count has no ref; a retry
        // file's `_czload_ref` column wins over a generated ref.
        match (&self.reference, self.retry_ref) {
            (RefSource::Auto(prefix), None) => {
                Some(RowShards::new(shard, Some(prefix), self.n_fields))
            }
            (RefSource::None, _) => Some(RowShards::new(shard, None, self.n_fields)),
            _ => None,
        }
    }
}

/// A data column: its name, its key pre-escaped, its type (`--type`, the last one wins).
fn data_col(cfg: &MappingConfig, name: &str) -> CsvCol {
    let ty = cfg
        .types
        .iter()
        .rev()
        .find(|(n, _)| n == name)
        .map_or(ColType::String, |(_, t)| *t);
    let mut key = Vec::with_capacity(name.len() + 3);
    // The column is named by its input name everywhere but in the task (`--rename`).
    push_json_str(&mut key, cfg.edits.renamed(name));
    key.push(b':');
    CsvCol {
        name: name.to_string(),
        key,
        ty,
    }
}

/// The process id in a `--conv-id-column` cell.
fn cell_conv(cell: &[u8], name: &str) -> std::result::Result<u64, Reject> {
    std::str::from_utf8(cell)
        .ok()
        .and_then(parse_conv)
        .ok_or_else(|| {
            Reject::col(
                name,
                format!("{:?} is not a process id", String::from_utf8_lossy(cell)),
            )
        })
}

/// A CSV input's rows as the retry file holds them: as csv would write them, with their
/// generated ref as one more column when refs are generated.
pub struct CsvRetry {
    header: Header,
    enc: RowEncoder,
    /// The generated ref goes into a `_czload_ref` column added at the end.
    add_ref_col: bool,
    /// A file that has the column (a retry file) but leaves a row's cell empty gets a
    /// generated ref for that row: it must go into the cell, or loading the retry file
    /// would send the row under another ref.
    fill_cell: Option<usize>,
}

impl CsvRetry {
    pub fn new(plan: &CsvPlan, header: Header) -> CsvRetry {
        let ref_cell = header.names.iter().position(|h| h == REF_COLUMN);
        CsvRetry {
            add_ref_col: plan.auto_ref() && ref_cell.is_none(),
            fill_cell: ref_cell.filter(|_| plan.auto_ref()),
            enc: RowEncoder::new(header.delimiter),
            header,
        }
    }
}

impl RetryRows for CsvRetry {
    type Record = ByteRecord;

    fn header(&mut self) -> Option<Vec<u8>> {
        let ref_col = self.add_ref_col.then_some(REF_COLUMN.as_bytes());
        let mut v = Vec::new();
        match &self.header.record {
            Some(h) => self.enc.write(&mut v, h, ref_col),
            // Without a header, the generated-ref column could not be told from data: the
            // retry file gets a header line (key1, ..., _czload_ref), and is loaded without
            // --no-header (the summary says so).
            None if self.add_ref_col => {
                let names: ByteRecord = self.header.names.iter().map(|h| h.as_bytes()).collect();
                self.enc.write(&mut v, &names, ref_col)
            }
            None => return None,
        }
        Some(v)
    }

    fn write(&mut self, rec: &ByteRecord, _row: u64, reference: &str, out: &mut Vec<u8>) {
        match self.fill_cell {
            Some(i) if rec.get(i).is_some_and(<[u8]>::is_empty) => {
                let filled: ByteRecord = rec
                    .iter()
                    .enumerate()
                    .map(|(j, f)| if j == i { reference.as_bytes() } else { f })
                    .collect();
                self.enc.write(out, &filled, None)
            }
            _ => self
                .enc
                .write(out, rec, self.add_ref_col.then_some(reference.as_bytes())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::tests::{cfg, cfg_no_types};

    #[test]
    fn the_ref_alone_is_the_ref_of_the_op() {
        // `--shard` places a row by `write_ref`: it must be the ref `write_op` sends,
        // the one a retry file carries included.
        use crate::mapping::{MappingConfig, RefMode};
        let header: Vec<String> = ["k", "_czload_ref"].map(String::from).to_vec();
        let tpl = MappingConfig {
            ref_mode: RefMode::Template("o-{k}".into()),
            ..cfg_no_types()
        };
        let rows = [["a", ""], ["b", "old.csv:9"], ["", ""], ["c"; 2]];
        for c in [cfg_no_types(), tpl] {
            let plan = CsvPlan::new(&c, &header, "f.csv").unwrap();
            for row in rows {
                let rec = csv::ByteRecord::from(row.to_vec());
                let (mut buf, mut sent, mut alone) = (Vec::new(), String::new(), String::new());
                let op = plan.write_op(&rec, 1, 4, &mut buf, &mut sent);
                let r = plan.write_ref(&rec, 4, &mut alone);
                assert_eq!(op.is_ok(), r.is_ok(), "{row:?}");
                assert_eq!(alone, sent, "{row:?} {:?}", c.ref_mode);
            }
        }
    }

    #[test]
    fn the_shard_by_row_number_is_the_shard_by_the_ref() {
        // `--shard` passes over other copies' rows by `row_shards`, and places the others
        // by `write_ref` (`read::Rows::in_shard`: by the ref if one is built, else by
        // the row number): the two must agree on every row, or a row is lost or doubled.
        use crate::mapping::{MappingConfig, RefMode};
        let header: Vec<String> = ["k", "v"].map(String::from).to_vec();
        let names = [
            "f.csv".to_string(),
            // Refs over 255 characters cannot be built: from row 100000, and 10000.
            format!("{}.csv", "a".repeat(245)),
            "é".repeat(250),
        ];
        let mut rows: Vec<u64> = (1..=3000).collect();
        for p in 1..=19 {
            let ten = 10u64.pow(p);
            rows.extend([ten - 1, ten, ten + 1]);
        }
        rows.push(u64::MAX);
        for (mode, name) in [RefMode::Auto, RefMode::None]
            .into_iter()
            .flat_map(|m| names.iter().map(move |n| (m.clone(), n)))
        {
            let c = MappingConfig {
                ref_mode: mode.clone(),
                ..cfg_no_types()
            };
            let plan = CsvPlan::new(&c, &header, name).unwrap();
            for (index, count) in [(0, 1), (0, 3), (2, 3), (5, 8), (0, 7)] {
                let shard = Shard { index, count };
                let by_row = plan.row_shards(shard).expect("refs from row numbers");
                for &row in &rows {
                    for fields in [1, 2, 3] {
                        let rec = csv::ByteRecord::from(vec!["x"; fields]);
                        let mut r = String::new();
                        let built = plan.write_ref(&rec, row, &mut r).is_ok();
                        let of = if built && !r.is_empty() {
                            shard.of_ref(r.as_bytes())
                        } else {
                            shard.of_row(row)
                        };
                        assert_eq!(
                            by_row.keeps(row, fields),
                            of == index,
                            "{mode:?} {name} {shard} row {row} fields {fields}"
                        );
                    }
                }
            }
        }
        // A ref that reads the record: no shard by row number.
        let tpl = MappingConfig {
            ref_mode: RefMode::Template("o-{k}".into()),
            ..cfg_no_types()
        };
        let column = MappingConfig {
            ref_mode: RefMode::Column("k".into()),
            ..cfg_no_types()
        };
        let one = Shard { index: 0, count: 2 };
        for c in [tpl, column] {
            assert!(CsvPlan::new(&c, &header, "f.csv")
                .unwrap()
                .row_shards(one)
                .is_none());
        }
        // A retry file carries its refs in a column.
        let retry: Vec<String> = ["k", "_czload_ref"].map(String::from).to_vec();
        let plan = CsvPlan::new(&cfg_no_types(), &retry, "f.csv").unwrap();
        assert!(plan.row_shards(one).is_none());
    }

    #[test]
    fn csv_op_is_the_same_json_whether_cells_take_the_fast_path_or_not() {
        let header: Vec<String> = ["name", "note", "n"].map(String::from).to_vec();
        let plan = CsvPlan::new(&cfg(), &header, "f.csv").unwrap();
        let cells = [
            ["Customer 000017", "plain text of some length", "7"],
            ["say \"hi\"", "tab\tand ünï", "-3"],
            ["", "x", ""],
        ];
        for (i, row) in cells.iter().enumerate() {
            let rec = csv::ByteRecord::from(row.to_vec());
            let (mut buf, mut r) = (Vec::new(), String::new());
            plan.write_op(&rec, 9, i as u64 + 1, &mut buf, &mut r)
                .unwrap();
            let got: serde_json::Value = serde_json::from_slice(&buf).unwrap();
            let mut data = serde_json::Map::new();
            data.insert("name".into(), row[0].into());
            data.insert("note".into(), row[1].into());
            if !row[2].is_empty() {
                data.insert("n".into(), row[2].parse::<i64>().unwrap().into());
            }
            let want = serde_json::json!({
                "id": "9", "type": "create", "obj": "task", "conv_id": 555,
                "ref": format!("f.csv:{}", i + 1), "data": data,
            });
            assert_eq!(got, want);
        }
    }

    #[test]
    fn invalid_utf8_in_a_cell_is_still_rejected() {
        let header: Vec<String> = ["name"].map(String::from).to_vec();
        let plan = CsvPlan::new(&cfg_no_types(), &header, "f.csv").unwrap();
        let rec = csv::ByteRecord::from(vec![&b"ab\xffcd"[..]]);
        let err = plan
            .write_op(&rec, 1, 1, &mut Vec::new(), &mut String::new())
            .unwrap_err();
        assert!(err.0.contains("not valid UTF-8"), "{}", err.0);
    }
}
