//! The API secret: from `--secret-file` or the environment, never from a flag. In: the
//! file's path, if given. Out: the `Secret`, or none.

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
        return read_file(path).map(Some);
    }
    match std::env::var_os(SECRET_ENV) {
        Some(v) if !v.is_empty() => {
            use std::os::unix::ffi::OsStringExt;
            Ok(Some(Secret::new(v.into_vec())))
        }
        _ => Ok(None),
    }
}

/// A `--secret-file` that cannot be found is not named: the value may be the secret itself,
/// typed where its file's path belongs (docs/architecture.md, Secrets).
fn unnamed(e: &std::io::Error) -> Error {
    Error::Usage(format!(
        "--secret-file: cannot open the file given ({}); the value is not shown, as it may be the secret itself: --secret-file takes the path of a file that holds the secret (or set {SECRET_ENV})",
        match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".into(),
            std::io::ErrorKind::PermissionDenied => "permission denied".into(),
            k => k.to_string(),
        }
    ))
}

fn read_file(path: &Path) -> Result<Secret> {
    let meta = std::fs::metadata(path).map_err(|e| unnamed(&e))?;
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
    Ok(Secret::new(bytes))
}
