//! Sending: request sizes, concurrency, rate, retries, the server and the credentials.
//! In: `--batch-size`, `--batch-bytes`, `--concurrency`, `--rate`, `--max-attempts`,
//! `--timeout`, `--max-retry-time`, `--url`, `--insecure`, `--api-login`, the secret,
//! `--dry-run`, `--sandbox`, `--max-concurrency`, `--sync`, `--sync-url`, `--sync-timeout`,
//! `--shard` (the rate is the copies' total). Out: a checked `SendConfig` (its `batch_size` is the one the
//! batcher uses too: `--rate` may lower it), and notes for the user.

use super::secret::{read_secret, SECRET_ENV};
use crate::cli::LoadArgs;
use crate::error::{Error, Result};
use crate::mapping::OpKind;
use crate::send::control::learned::{self, LearnedKey};
use crate::send::control::{Start, StartFrom};
use crate::send::{Rate, SendConfig, SyncApi};
use crate::shard::Shard;
use crate::sign::Secret;
use std::time::Duration;

pub(super) fn sending(
    a: &LoadArgs,
    op: OpKind,
    shard: Option<Shard>,
    notes: &mut Vec<String>,
) -> Result<SendConfig> {
    check_sizes(a)?;
    let (rate, batch_size, asked_start) = rate(a, shard, notes)?;
    let url = url(a, notes)?;
    let (login, secret) = credentials(a, notes)?;
    let share = shard.map_or(1.0, |s| 1.0 / f64::from(s.count));
    // A sandbox's URL is new every run, and a dry run learns nothing: neither keeps a limit.
    let learned = (rate == Rate::Auto && !a.dry_run && !a.sandbox)
        .then(learned::state_dir)
        .flatten()
        .map(|dir| {
            let key = LearnedKey {
                url: url.clone(),
                login: login.clone(),
                process: process(a),
            };
            (dir, key)
        });
    let auto_start = match asked_start {
        Some(total) => Some(Start {
            rate: f64::from(total) * share,
            from: StartFrom::Asked,
        }),
        None => learned
            .as_ref()
            .and_then(|(dir, key)| learned::load(dir, key))
            .map(|total| Start {
                rate: total * share,
                from: StartFrom::Learned,
            }),
    };
    let sync = a.sync.then(|| sync(a, op)).transpose()?;
    let mut timeout = seconds("--timeout", a.timeout)?;
    if let Some(s) = &sync {
        // The answer comes only once the slowest reply did (or the Sync API gave up).
        timeout = timeout.max(Duration::from_secs(s.timeout_s + 15));
    }
    Ok(SendConfig {
        base: url,
        login,
        secret,
        concurrency: a.concurrency,
        max_concurrency: a.max_concurrency,
        rate,
        share,
        batch_size,
        auto_start,
        learned,
        timeout,
        max_attempts: a.max_attempts,
        max_retry_time: seconds("--max-retry-time", a.max_retry_time)?,
        insecure: a.insecure,
        op,
        sync,
        // Set by `LoadConfig::from_args`, which knows the mapping's target.
        one_process: false,
        backoff_base: Duration::from_millis(100),
        backoff_cap: Duration::from_secs(30),
    })
}

fn check_sizes(a: &LoadArgs) -> Result<()> {
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
    for (flag, n) in [
        ("--concurrency", a.concurrency.unwrap_or(1)),
        ("--max-concurrency", a.max_concurrency),
    ] {
        if n == 0 || n > 1024 {
            return Err(Error::Usage(format!(
                "{flag} {n}: must be between 1 and 1024"
            )));
        }
    }
    if a.max_attempts == 0 {
        return Err(Error::Usage("--max-attempts must be at least 1".into()));
    }
    Ok(())
}

/// `--rate`, and the batch size it allows: a fixed rate below `--batch-size` lowers it, so
/// that no second holds more than the rate.
///
/// With `--shard i/N` the rate is the total of the N copies: each sends its share.
/// `auto:N` is `auto` starting at N (the copies' total), given back third.
fn rate(
    a: &LoadArgs,
    shard: Option<Shard>,
    notes: &mut Vec<String>,
) -> Result<(Rate, usize, Option<u32>)> {
    let batch_size = a.batch_size;
    if let Some(n) = a.rate.as_deref().and_then(|r| r.strip_prefix("auto:")) {
        let n: u32 = n.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
            Error::Usage(format!(
                "--rate auto:{n}: the start, a positive number of tasks per second"
            ))
        })?;
        return Ok((Rate::Auto, batch_size, Some(n)));
    }
    let rate = match a.rate.as_deref() {
        None | Some("auto") => {
            if let Some(s) = shard {
                notes.push(format!(
                    "--shard {s}: --rate auto finds this copy's share of the server's limit, which the {} copies share",
                    s.count
                ));
            }
            Rate::Auto
        }
        Some("unlimited") => Rate::Unlimited,
        Some(r) => {
            let total: u32 = r.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                Error::Usage(format!(
                    "--rate {r:?}: a positive number of tasks per second, auto, auto:N or unlimited"
                ))
            })?;
            let n = per_copy(total, shard)?;
            if let Some(s) = shard {
                notes.push(format!(
                    "--shard {s}: --rate {total} is the total of the {} copies; this one sends {n} tasks/s",
                    s.count
                ));
            }
            if (n as usize) < batch_size {
                notes.push(format!(
                    "--rate {n} is below --batch-size {batch_size}: sending {n} ops per request so no second holds more than {n} tasks"
                ));
                return Ok((Rate::Fixed(n), n as usize, None));
            }
            Rate::Fixed(n)
        }
    };
    Ok((rate, batch_size, None))
}

/// The process a limit is kept for: `--conv-id N`, or how the ops choose theirs.
fn process(a: &LoadArgs) -> String {
    match (a.conv_id, &a.conv_id_column) {
        (Some(id), _) => id.to_string(),
        (None, Some(col)) => format!("column:{col}"),
        (None, None) => "ops".into(),
    }
}

/// This copy's part of a total rate: rounded down, so the copies together stay within it.
fn per_copy(total: u32, shard: Option<Shard>) -> Result<u32> {
    let Some(s) = shard else { return Ok(total) };
    match total / s.count {
        0 => Err(Error::Usage(format!(
            "--rate {total} with --shard {s}: the rate is the total of the {} copies, less than one task per second each; raise --rate or run fewer copies",
            s.count
        ))),
        n => Ok(n),
    }
}

/// `--url`, without its trailing slash; plain HTTP only with a warning, but for this
/// machine.
fn url(a: &LoadArgs, notes: &mut Vec<String>) -> Result<String> {
    let url = a.url.trim_end_matches('/').to_string();
    if has_userinfo(&url) {
        return Err(Error::Usage(
            "--url holds a user name or password (user:password@host; the value is not shown): requests are signed with the secret, which belongs in COREZOID_API_SECRET or --secret-file; give --url as https://host".into(),
        ));
    }
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
    Ok(url)
}

/// Whether a URL's authority holds `user[:password]@`.
fn has_userinfo(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority.contains('@')
}

/// The public API and its Sync API (docs/protocol.md, Request and Sync API).
const PUBLIC_API: &str = "https://api.corezoid.com";
const PUBLIC_SYNC: &str = "https://sync-api.corezoid.com";

/// `--sync`, `--sync-url`, `--sync-timeout`: task creates through the Sync API.
fn sync(a: &LoadArgs, op: OpKind) -> Result<SyncApi> {
    if !op.sync {
        return Err(Error::Usage(format!(
            "--sync creates tasks and waits for their replies: it cannot take --op {}",
            op.as_str()
        )));
    }
    let url = match a.sync_url.as_deref() {
        Some(u) if has_userinfo(u) => {
            return Err(Error::Usage(
                "--sync-url holds a user name or password (user:password@host; the value is not shown): give it as https://host".into(),
            ))
        }
        Some(u) => u.trim_end_matches('/').to_string(),
        // The public Sync API serves the public API's accounts only: an on-premise
        // install's tasks and signed requests must not go there unasked.
        None if a.url.trim_end_matches('/') == PUBLIC_API || a.sandbox => PUBLIC_SYNC.into(),
        None => {
            return Err(Error::Usage(format!(
                "--sync with --url {}: pass --sync-url URL, the Sync API of that install (the default, {PUBLIC_SYNC}, serves only {PUBLIC_API})",
                a.url.trim_end_matches('/')
            )))
        }
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(Error::Usage(format!(
            "--sync-url {url:?}: must start with https:// (or http:// for a local test server)"
        )));
    }
    if !(1..=3600).contains(&a.sync_timeout) {
        return Err(Error::Usage(format!(
            "--sync-timeout {}: whole seconds from 1 to 3600 (on-premise installs wait at most 60)",
            a.sync_timeout
        )));
    }
    Ok(SyncApi {
        url,
        timeout_s: a.sync_timeout,
    })
}

/// The login and secret: required for a real load, placeholders in a dry run, replaced
/// by the sandbox's own with `--sandbox`.
fn credentials(a: &LoadArgs, notes: &mut Vec<String>) -> Result<(String, Secret)> {
    let secret = read_secret(a.secret_file.as_deref())?;
    let (login, secret) = if a.sandbox {
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
        let login = a
            .api_login
            .clone()
            .filter(|l| !l.is_empty())
            .ok_or_else(|| {
                Error::Usage(
                    "no API login: pass --api-login N or set COREZOID_API_LOGIN (or try --sandbox)"
                        .into(),
                )
            })?;
        let secret = secret.ok_or_else(|| {
            Error::Usage(format!(
                "no API secret: set {SECRET_ENV} or pass --secret-file FILE (or try --sandbox)"
            ))
        })?;
        (login, secret)
    };
    // The login goes into every URL: neither message shows it, as it may be the secret
    // typed in the wrong place.
    if !a.sandbox && login.as_bytes() == secret.expose() {
        return Err(Error::Usage(
            "--api-login is the API secret itself (not shown): pass the numeric id of the API key as --api-login, and keep the secret in COREZOID_API_SECRET or --secret-file".into(),
        ));
    }
    if login.contains('/') {
        return Err(Error::Usage(
            "--api-login must not contain '/' (the value is not shown): it is the numeric id of the API key".into(),
        ));
    }
    Ok((login, secret))
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
}
