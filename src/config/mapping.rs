//! Mapping: how a row becomes an op (with `--op raw`, each line is one as written). In: `--op`, `--conv-id`/`--conv-id-column`, the ref
//! flags, `--type`, `--exclude`, `--empty`, `--data-field`, `--company-id`,
//! `--max-task-bytes`, `--set`, `--rename`, and the inputs (their names make the generated refs). Out: a
//! checked `MappingConfig`, and notes for the user.

use crate::cli::{EmptyArg, LoadArgs};
use crate::error::{Error, Result};
use crate::mapping::{ColType, Edits, EmptyPolicy, MappingConfig, OpKind, RefMode, Target};
use crate::source::Input;

pub(super) fn mapping(
    a: &LoadArgs,
    inputs: &[Input],
    notes: &mut Vec<String>,
) -> Result<MappingConfig> {
    let mut types = types(&a.types)?;
    if a.decimal_comma {
        decimal_comma(&mut types)?;
    }
    let op = a.op;
    if op.rows_are_ops {
        return raw(a, op, inputs);
    }
    let target = target(a)?;
    let ref_mode = ref_mode(a)?;
    if ref_mode == RefMode::Auto {
        check_generated_refs(a, inputs, op, notes)?;
    }
    if op.needs_ref && matches!(ref_mode, RefMode::None | RefMode::Auto) {
        return Err(Error::Usage(format!(
            "--op {} finds each task by its ref: pass --ref-column COL or --ref-template",
            op.name
        )));
    }
    if a.company_id.as_ref().is_some_and(String::is_empty) {
        return Err(Error::Usage(
            "--company-id is empty; leave it out instead".into(),
        ));
    }
    if a.data_field.is_some() && inputs.iter().any(|i| !i.format.json_values()) {
        return Err(Error::Usage(
            "--data-field applies to NDJSON and JSON array input only".into(),
        ));
    }
    let empty = match a.empty {
        EmptyArg::Keep => EmptyPolicy::Keep,
        EmptyArg::Omit => EmptyPolicy::Omit,
        EmptyArg::Null => EmptyPolicy::Null,
    };
    let edits = Edits::parse(&a.set, &a.rename).map_err(Error::Usage)?;
    if a.data_field.is_some() && !edits.rename.is_empty() {
        return Err(Error::Usage(
            "--rename renames top-level fields, which --data-field leaves out of the task; rename inside the data field before loading".into(),
        ));
    }
    if a.max_task_bytes == 0 {
        return Err(Error::Usage("--max-task-bytes must be positive".into()));
    }
    Ok(MappingConfig {
        op,
        target,
        company_id: a.company_id.clone(),
        ref_mode,
        types,
        exclude: a.exclude.clone(),
        empty,
        data_field: a.data_field.clone(),
        max_task_bytes: a.max_task_bytes,
        edits,
    })
}

/// `--op raw`: each line is sent as written, so the flags that shape an op do not apply;
/// refs are the ops' own `ref` fields.
fn raw(a: &LoadArgs, op: OpKind, inputs: &[Input]) -> Result<MappingConfig> {
    if let Some(i) = inputs.iter().find(|i| !i.format.json_values()) {
        return Err(Error::Usage(format!(
            "--op raw reads whole ops from NDJSON or a JSON array; {} is {}",
            i.display(),
            i.format.name().to_uppercase()
        )));
    }
    let given = [
        ("--conv-id-column", a.conv_id_column.is_some()),
        ("--alias", a.alias.is_some()),
        ("--company-id", a.company_id.is_some()),
        ("--ref-column", a.ref_column.is_some()),
        ("--ref-template", a.ref_template.is_some()),
        ("--no-ref", a.no_ref),
        ("--ref-prefix", !a.ref_prefix.is_empty()),
        ("--type", !a.types.is_empty()),
        ("--decimal-comma", a.decimal_comma),
        ("--exclude", !a.exclude.is_empty()),
        ("--set", !a.set.is_empty()),
        ("--rename", !a.rename.is_empty()),
        ("--data-field", a.data_field.is_some()),
    ];
    if let Some((flag, _)) = given.iter().find(|(_, on)| *on) {
        return Err(Error::Usage(format!(
            "--op raw sends each line as written: {flag} does not apply; put what it would set in the ops themselves"
        )));
    }
    if a.sandbox && a.conv_id.is_none() {
        return Err(Error::Usage(
            "--sandbox with --op raw: pass --conv-id N for the process the sandbox has (the ops name it in their conv_id)".into(),
        ));
    }
    if a.max_task_bytes == 0 {
        return Err(Error::Usage("--max-task-bytes must be positive".into()));
    }
    Ok(MappingConfig {
        op,
        // The ops name their processes; --conv-id only names the sandbox's.
        target: match a.conv_id {
            Some(c) if c > 0 => Target::Conv(c),
            _ => Target::Column("conv_id".into()),
        },
        company_id: None,
        ref_mode: RefMode::Column("ref".into()),
        types: Vec::new(),
        exclude: Vec::new(),
        empty: EmptyPolicy::Keep,
        data_field: None,
        max_task_bytes: a.max_task_bytes,
        edits: Edits::default(),
    })
}

/// `--decimal-comma`: the `number` columns read `12,50` as 12.5.
fn decimal_comma(types: &mut [(String, ColType)]) -> Result<()> {
    let mut any = false;
    for (_, ty) in types.iter_mut().filter(|(_, t)| *t == ColType::Number) {
        *ty = ColType::NumberComma;
        any = true;
    }
    if !any {
        return Err(Error::Usage(
            "--decimal-comma reads the number columns, and there is none: add --type COL:number for each".into(),
        ));
    }
    Ok(())
}

/// `--type COL:TYPE`, each.
fn types(flags: &[String]) -> Result<Vec<(String, ColType)>> {
    flags
        .iter()
        .map(|t| {
            let (col, ty) = t.rsplit_once(':').ok_or_else(|| {
                Error::Usage(format!(
                    "--type {t:?}: expected COL:TYPE, e.g. --type amount:number"
                ))
            })?;
            let ty = ColType::parse(ty).ok_or_else(|| {
                Error::Usage(format!(
                    "--type {t:?}: unknown type {ty:?}; use string, number, integer, bool or json"
                ))
            })?;
            Ok((col.to_string(), ty))
        })
        .collect()
}

/// Which process: `--conv-id N`, `--conv-id-column COL` or `--alias NAME`.
fn target(a: &LoadArgs) -> Result<Target> {
    if let Some(alias) = &a.alias {
        let other = [
            ("--conv-id", a.conv_id.is_some()),
            ("--conv-id-column", a.conv_id_column.is_some()),
        ];
        if let Some((flag, _)) = other.iter().find(|(_, on)| *on) {
            return Err(Error::Usage(format!(
                "--alias and {flag} both name the process: give one (--alias NAME --company-id ID addresses it by its alias, --conv-id N by its id)"
            )));
        }
        if alias.trim().is_empty() {
            return Err(Error::Usage(
                "--alias is empty: give the process's alias".into(),
            ));
        }
        if a.company_id.is_none() {
            return Err(Error::Usage(format!(
                "--alias {alias} needs --company-id: an alias names a process within a company (the ops carry obj_alias and company_id in place of conv_id)"
            )));
        }
        return Ok(Target::Alias(alias.clone()));
    }
    match (&a.conv_id, &a.conv_id_column) {
        (Some(0), _) => Err(Error::Usage(
            "--conv-id 0: a process id is a positive number".into(),
        )),
        (Some(c), _) => Ok(Target::Conv(*c)),
        (None, Some(col)) => Ok(Target::Column(col.clone())),
        (None, None) => Err(Error::Usage(
            "which process? pass --conv-id N (or --conv-id-column COL)".into(),
        )),
    }
}

/// Where refs come from: none, a column, a template, or generated (`{file}:{row}`).
fn ref_mode(a: &LoadArgs) -> Result<RefMode> {
    Ok(if a.no_ref {
        RefMode::None
    } else if let Some(c) = &a.ref_column {
        RefMode::Column(c.clone())
    } else if let Some(t) = &a.ref_template {
        crate::mapping::parse_template(t)
            .map_err(|e| Error::Usage(format!("--ref-template: {e}")))?;
        RefMode::Template(t.clone())
    } else {
        RefMode::Auto
    })
}

/// The name each input's generated refs start with (`{name}:{row}`): its file name, or
/// `--ref-prefix` (one per input, in order). A resume may put the first run's in their
/// place (`pipeline.rs`).
pub(super) fn ref_names(a: &LoadArgs, inputs: &[Input]) -> Result<Vec<String>> {
    if a.ref_prefix.is_empty() {
        return Ok(inputs.iter().map(Input::file_name).collect());
    }
    if a.no_ref || a.ref_column.is_some() || a.ref_template.is_some() {
        return Err(Error::Usage(
            "--ref-prefix names generated refs (NAME:ROW); it does not go with --ref-column, --ref-template or --no-ref".into(),
        ));
    }
    if a.ref_prefix.len() != inputs.len() {
        return Err(Error::Usage(format!(
            "--ref-prefix is given {} times for {} inputs: give it once per input, in the order of the inputs",
            a.ref_prefix.len(),
            inputs.len()
        )));
    }
    if let Some(p) = a.ref_prefix.iter().find(|p| p.is_empty()) {
        return Err(Error::Usage(format!(
            "--ref-prefix {p:?}: a name is needed, e.g. --ref-prefix orders.csv"
        )));
    }
    Ok(a.ref_prefix.clone())
}

/// Generated refs are `{name}:{row}` (the file name, or `--ref-prefix`): two inputs of
/// the same name would give the same refs, and the second one's rows would come back
/// `exists`, unloaded.
fn check_generated_refs(
    a: &LoadArgs,
    inputs: &[Input],
    op: OpKind,
    notes: &mut Vec<String>,
) -> Result<()> {
    let names = ref_names(a, inputs)?;
    for (i, x) in inputs.iter().enumerate() {
        if let Some(k) = names[..i].iter().position(|n| *n == names[i]) {
            let why = if a.ref_prefix.is_empty() {
                "have the same file name"
            } else {
                "are given the same --ref-prefix"
            };
            return Err(Error::Usage(format!(
                "inputs {} and {} {why}, so their generated refs ({}:ROW) would collide; rename one, or pass --ref-prefix once per input, or --ref-column or --ref-template",
                inputs[k].display(),
                x.display(),
                names[i]
            )));
        }
    }
    if op.duplicate_ref_is_exists
        && inputs.iter().any(|i| i.path.is_none())
        && a.ref_prefix.is_empty()
    {
        notes.push(
            "warning: rows read from stdin get the refs stdin:1, stdin:2, ...; another stdin load into the same process would find them taken and load nothing (exists): pass --ref-prefix, --ref-column or --ref-template for stdin".into(),
        );
    }
    Ok(())
}
