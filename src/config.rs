//! Validated settings. The clap types of `cli.rs` stop here; the rest of the program sees
//! plain data with every flag checked, and every error names the flag.

use crate::error::{Error, Result};
use crate::sign::Secret;
use std::path::Path;

/// The environment variable that carries the secret. It is never a flag, so it never
/// shows in `ps`.
pub const SECRET_ENV: &str = "COREZOID_API_SECRET";

/// The secret from `--secret-file` (refused when other users can read it) or from
/// `COREZOID_API_SECRET`. One trailing newline of the file is dropped, as editors add it.
pub fn read_secret(secret_file: Option<&Path>) -> Result<Option<Secret>> {
    if let Some(path) = secret_file {
        let meta = std::fs::metadata(path)
            .map_err(|e| Error::file(path, format!("--secret-file: {e}")))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(Error::file(
                    path,
                    format!(
                        "--secret-file is readable by other users (mode {:o}); run `chmod 600 {}`",
                        mode & 0o777,
                        path.display()
                    ),
                ));
            }
        }
        if !meta.is_file() {
            return Err(Error::file(path, "--secret-file is not a regular file"));
        }
        let mut bytes =
            std::fs::read(path).map_err(|e| Error::file(path, format!("--secret-file: {e}")))?;
        while matches!(bytes.last(), Some(b'\n' | b'\r')) {
            bytes.pop();
        }
        if bytes.is_empty() {
            return Err(Error::file(path, "--secret-file is empty"));
        }
        return Ok(Some(Secret::new(bytes)));
    }
    match std::env::var_os(SECRET_ENV) {
        Some(v) if !v.is_empty() => {
            use std::os::unix::ffi::OsStringExt;
            Ok(Some(Secret::new(v.into_vec())))
        }
        _ => Ok(None),
    }
}

use crate::cli::{EmptyArg, FormatArg, LoadArgs, OpArg};
use crate::mapping::{ColType, EmptyPolicy, MappingConfig, OpKind, RefMode, Target};
use crate::send::{Rate, SendConfig};
use crate::source::{Format, Input};
use std::path::PathBuf;
use std::time::Duration;

/// Everything `czload load` needs, checked.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub inputs: Vec<Input>,
    pub mapping: MappingConfig,
    /// CSV: whether the first row names the columns.
    pub has_header: bool,
    pub delimiter: u8,
    pub batch_size: usize,
    pub batch_bytes: usize,
    pub linger: Duration,
    pub send: SendConfig,
    /// `None` in a dry run.
    pub results: Option<PathBuf>,
    /// One per input.
    pub retry_files: Vec<PathBuf>,
    pub summary_json: Option<PathBuf>,
    pub resume: bool,
    pub quiet: bool,
    pub dry_run: bool,
    /// Start an in-process sandbox and load into it.
    pub sandbox: bool,
    /// Notes for the user about adjusted settings, printed before the run.
    pub notes: Vec<String>,
}

fn parse_delimiter(s: &str) -> Result<u8> {
    match s {
        "\\t" | "tab" | "\t" => Ok(b'\t'),
        _ if s.len() == 1 && s.is_ascii() => Ok(s.as_bytes()[0]),
        _ => Err(Error::Usage(format!(
            "--delimiter {s:?}: must be one ASCII character (or \\t for tab)"
        ))),
    }
}

fn seconds(flag: &str, v: f64) -> Result<Duration> {
    if v.is_finite() && v > 0.0 && v < 1e9 {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(Error::Usage(format!(
            "{flag} {v}: must be a positive number of seconds"
        )))
    }
}

/// Whether a URL points at this machine (plain HTTP is fine there).
fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = if let Some(h) = host.strip_prefix('[') {
        h.split(']').next().unwrap_or("")
    } else {
        host.split(':').next().unwrap_or("")
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl LoadConfig {
    pub fn from_args(a: &LoadArgs) -> Result<LoadConfig> {
        let mut notes = Vec::new();
        let format = a.format.map(|f| match f {
            FormatArg::Csv => Format::Csv,
            FormatArg::Ndjson => Format::Ndjson,
        });
        if a.inputs.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
            return Err(Error::Usage("stdin (`-`) can be given only once".into()));
        }
        let inputs = a
            .inputs
            .iter()
            .enumerate()
            .map(|(i, p)| Input::resolve(i as u32, p, format))
            .collect::<Result<Vec<_>>>()?;

        let mut types = Vec::new();
        for t in &a.types {
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
            types.push((col.to_string(), ty));
        }
        let target = match (&a.conv_id, &a.conv_id_column) {
            (Some(c), _) if *c == 0 => {
                return Err(Error::Usage(
                    "--conv-id 0: a process id is a positive number".into(),
                ))
            }
            (Some(c), _) => Target::Conv(*c),
            (None, Some(col)) => Target::Column(col.clone()),
            (None, None) => {
                return Err(Error::Usage(
                    "which process? pass --conv-id N (or --conv-id-column COL)".into(),
                ))
            }
        };
        let op = match a.op {
            OpArg::Create => OpKind::Create,
            OpArg::Modify => OpKind::Modify,
        };
        let ref_mode = if a.no_ref {
            RefMode::None
        } else if let Some(c) = &a.ref_column {
            RefMode::Column(c.clone())
        } else if let Some(t) = &a.ref_template {
            crate::mapping::parse_template(t)
                .map_err(|e| Error::Usage(format!("--ref-template: {e}")))?;
            RefMode::Template(t.clone())
        } else {
            RefMode::Auto
        };
        if ref_mode == RefMode::Auto {
            // Generated refs are `{file name}:{row}`: two inputs of the same name would give
            // the same refs, and the second one's rows would come back `exists`, unloaded.
            for (i, a) in inputs.iter().enumerate() {
                if let Some(b) = inputs[..i].iter().find(|b| b.file_name() == a.file_name()) {
                    return Err(Error::Usage(format!(
                        "inputs {} and {} have the same file name, so their generated refs ({}:ROW) would collide; rename one, or pass --ref-column or --ref-template",
                        b.display(),
                        a.display(),
                        a.file_name()
                    )));
                }
            }
            if op == OpKind::Create && inputs.iter().any(|i| i.path.is_none()) {
                notes.push(
                    "warning: rows read from stdin get the refs stdin:1, stdin:2, ...; another stdin load into the same process would find them taken and load nothing (exists): pass --ref-column or --ref-template for stdin".into(),
                );
            }
        }
        if op == OpKind::Modify && matches!(ref_mode, RefMode::None | RefMode::Auto) {
            return Err(Error::Usage(
                "--op modify finds each task by its ref: pass --ref-column COL or --ref-template"
                    .into(),
            ));
        }
        if let Some(c) = &a.company_id {
            if c.is_empty() {
                return Err(Error::Usage(
                    "--company-id is empty; leave it out instead".into(),
                ));
            }
        }
        if a.data_field.is_some() && inputs.iter().any(|i| i.format == Format::Csv) {
            return Err(Error::Usage(
                "--data-field applies to NDJSON input only".into(),
            ));
        }
        let empty = match a.empty {
            EmptyArg::Keep => EmptyPolicy::Keep,
            EmptyArg::Omit => EmptyPolicy::Omit,
            EmptyArg::Null => EmptyPolicy::Null,
        };
        if a.max_task_bytes == 0 {
            return Err(Error::Usage("--max-task-bytes must be positive".into()));
        }
        let mapping = MappingConfig {
            op,
            target,
            company_id: a.company_id.clone(),
            ref_mode,
            types,
            exclude: a.exclude.clone(),
            empty,
            data_field: a.data_field.clone(),
            max_task_bytes: a.max_task_bytes,
        };

        if a.batch_size == 0 || a.batch_size > 100_000 {
            return Err(Error::Usage(format!(
                "--batch-size {}: must be between 1 and 100000",
                a.batch_size
            )));
        }
        // Offsets inside a body are 32-bit; no server takes bodies anywhere near that.
        if !(1024..=256 << 20).contains(&a.batch_bytes) {
            return Err(Error::Usage(format!(
                "--batch-bytes {}: must be between 1024 and 268435456 (256 MiB)",
                a.batch_bytes
            )));
        }
        if a.concurrency == 0 || a.concurrency > 1024 {
            return Err(Error::Usage(format!(
                "--concurrency {}: must be between 1 and 1024",
                a.concurrency
            )));
        }
        if a.max_attempts == 0 {
            return Err(Error::Usage("--max-attempts must be at least 1".into()));
        }
        let mut batch_size = a.batch_size;
        let rate = match a.rate.as_deref() {
            None => Rate::Unlimited,
            Some("auto") => Rate::Auto,
            Some(r) => {
                let n: u32 = r.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                    Error::Usage(format!(
                        "--rate {r:?}: a positive number of tasks per second, or auto"
                    ))
                })?;
                if (n as usize) < batch_size {
                    notes.push(format!(
                        "--rate {n} is below --batch-size {batch_size}: sending {n} ops per request so no second holds more than {n} tasks"
                    ));
                    batch_size = n as usize;
                }
                Rate::Fixed(n)
            }
        };

        let url = a.url.trim_end_matches('/').to_string();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Error::Usage(format!(
                "--url {url:?}: must start with https:// (or http:// for a local test server)"
            )));
        }
        if url.starts_with("http://") && !is_loopback_url(&url) && !a.sandbox {
            notes.push(format!(
                "warning: --url {url} is plain HTTP: anyone on the path can read the rows and replay a signed request within the clock window; use https:// for real traffic"
            ));
        }

        let secret = read_secret(a.secret_file.as_deref())?;
        let (login, secret) = if a.sandbox {
            // Replaced by the sandbox's own generated credentials.
            (String::new(), Secret::new(Vec::new()))
        } else if a.dry_run {
            let login = a.api_login.clone().unwrap_or_else(|| "LOGIN".into());
            let secret = secret.unwrap_or_else(|| {
                notes.push(format!(
                    "dry run without {SECRET_ENV}: requests are signed with a placeholder secret"
                ));
                Secret::new("placeholder")
            });
            (login, secret)
        } else {
            let login = a.api_login.clone().filter(|l| !l.is_empty()).ok_or_else(|| {
                Error::Usage(
                    "no API login: pass --api-login N or set COREZOID_API_LOGIN (or try --sandbox)".into(),
                )
            })?;
            let secret = secret.ok_or_else(|| {
                Error::Usage(format!(
                    "no API secret: set {SECRET_ENV} or pass --secret-file FILE (or try --sandbox)"
                ))
            })?;
            (login, secret)
        };
        if login.contains('/') {
            return Err(Error::Usage(format!(
                "--api-login {login:?}: must not contain '/'"
            )));
        }

        let first = &inputs[0];
        let results = (!a.dry_run).then(|| {
            a.results
                .clone()
                .unwrap_or_else(|| first.dir().join(format!("{}.results.ndjson", first.stem())))
        });
        let retry_files = match &a.retry_file {
            Some(p) if inputs.len() > 1 => {
                return Err(Error::Usage(format!(
                    "--retry-file {}: with several inputs each gets its own retry file beside it; leave the flag out",
                    p.display()
                )))
            }
            Some(p) => vec![p.clone()],
            None => inputs
                .iter()
                .map(|i| i.dir().join(format!("{}.retry.{}", i.stem(), i.format.ext())))
                .collect(),
        };
        // Two inputs of the same name in different places would share output names.
        for (i, r) in retry_files.iter().enumerate() {
            if retry_files[..i].contains(r) {
                return Err(Error::Usage(format!(
                    "inputs {} and {} would both write the retry file {}; rename one",
                    retry_files[..i].iter().position(|x| x == r).unwrap_or(0) + 1,
                    i + 1,
                    r.display()
                )));
            }
        }
        // An output that is also an input would be truncated before it is read.
        let same = |a: &std::path::Path, b: &std::path::Path| {
            a == b
                || matches!((std::fs::canonicalize(a), std::fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y)
        };
        for r in &retry_files {
            if let Some(inp) = inputs
                .iter()
                .find(|i| i.path.as_deref().is_some_and(|p| same(p, r)))
            {
                return Err(Error::Usage(format!(
                    "--retry-file {}: is the input {}; the retry file of this run must be another file",
                    r.display(),
                    inp.display()
                )));
            }
        }
        if let Some(r) = &results {
            for inp in &inputs {
                if inp.path.as_deref().is_some_and(|p| same(p, r)) || retry_files.contains(r) {
                    return Err(Error::Usage(format!(
                        "--results {}: would overwrite an input or a retry file",
                        r.display()
                    )));
                }
            }
        }

        // The run goes on from the first row; said now, with the other notes.
        if let Some(r) = results
            .as_ref()
            .filter(|r| a.resume && inputs.iter().all(|i| i.path.is_some()) && !r.exists())
        {
            notes.push(format!(
                "--resume: no results log at {} yet; starting from the first row",
                r.display()
            ));
        }

        Ok(LoadConfig {
            inputs,
            mapping,
            has_header: !a.no_header,
            delimiter: parse_delimiter(&a.delimiter)?,
            batch_size,
            batch_bytes: a.batch_bytes,
            linger: Duration::from_millis(a.linger_ms.max(1)),
            send: SendConfig {
                base: url,
                login,
                secret,
                concurrency: a.concurrency,
                rate,
                batch_size,
                timeout: seconds("--timeout", a.timeout)?,
                max_attempts: a.max_attempts,
                max_retry_time: seconds("--max-retry-time", a.max_retry_time)?,
                insecure: a.insecure,
                is_create: op == OpKind::Create,
                backoff_base: Duration::from_millis(100),
                backoff_cap: Duration::from_secs(30),
            },
            results,
            retry_files,
            summary_json: a.summary_json.clone(),
            resume: a.resume,
            quiet: a.quiet,
            dry_run: a.dry_run,
            sandbox: a.sandbox,
            notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls() {
        for u in [
            "http://127.0.0.1:8080",
            "http://localhost/x",
            "http://[::1]:9/",
            "http://127.9.9.9",
        ] {
            assert!(is_loopback_url(u), "{u}");
        }
        for u in [
            "http://10.0.0.1",
            "http://example.com",
            "http://127.0.0.1.evil.com/",
        ] {
            assert!(!is_loopback_url(u), "{u}");
        }
    }

    #[test]
    fn delimiters() {
        assert_eq!(parse_delimiter(";").unwrap(), b';');
        assert_eq!(parse_delimiter("\\t").unwrap(), b'\t');
        assert!(parse_delimiter(";;").is_err());
        assert!(parse_delimiter("é").is_err());
    }
}
