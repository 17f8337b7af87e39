//! The learned start: the limit `--rate auto` found, kept per (URL, API login, process) in
//! the user's state directory, so that a nightly run starts where the last one ended
//! instead of climbing from a few requests a second.
//!
//! In: the key and, at the end of a run, the license rate found (the copy's rate divided by
//! its share, so that a run with another `--shard` count starts at its own share). Out: that
//! rate at the next run's start. The directory is `$XDG_STATE_HOME/czload` or
//! `~/.local/state/czload`; one small JSON file per key, named by a hash of the key. The
//! secret is never part of the key or the file. A file is written whole or not at all: a
//! temporary file made with `create_new` beside it, then renamed over it, so a copy that
//! reads it while another writes sees the old or the new one, never a mix.

use sha1::{Digest, Sha1};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Which license a limit belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct LearnedKey {
    pub url: String,
    pub login: String,
    /// `--conv-id N`, or how the process is chosen otherwise.
    pub process: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Kept {
    url: String,
    login: String,
    process: String,
    /// The license rate found, tasks/s, for all copies together.
    limit: f64,
}

/// `$XDG_STATE_HOME/czload`, or `~/.local/state/czload`; `None` without either.
pub fn state_dir() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let base = xdg.or_else(|| {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .map(|h| h.join(".local").join("state"))
    })?;
    Some(base.join("czload"))
}

fn file(dir: &Path, key: &LearnedKey) -> PathBuf {
    let mut h = Sha1::new();
    for part in [&key.url, &key.login, &key.process] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    dir.join("rate")
        .join(format!("{}.json", hex::encode(h.finalize())))
}

/// The license rate kept for `key`, if any (a damaged or foreign file is no start).
pub fn load(dir: &Path, key: &LearnedKey) -> Option<f64> {
    let bytes = std::fs::read(file(dir, key)).ok()?;
    let k: Kept = serde_json::from_slice(&bytes).ok()?;
    let same = k.url == key.url && k.login == key.login && k.process == key.process;
    (same && k.limit.is_finite() && k.limit >= 1.0).then_some(k.limit)
}

/// Keeps `limit` (tasks/s, all copies) for `key`, atomically.
pub fn save(dir: &Path, key: &LearnedKey, limit: f64) -> std::io::Result<()> {
    let path = file(dir, key);
    let parent = path.parent().expect("a file in a folder");
    std::fs::create_dir_all(parent)?;
    let body = serde_json::to_vec(&Kept {
        url: key.url.clone(),
        login: key.login.clone(),
        process: key.process.clone(),
        limit: limit.round(),
    })
    .map_err(std::io::Error::other)?;
    let tmp = parent.join(format!(
        ".{}.{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("rate"),
        std::process::id(),
        rand::random::<u32>()
    ));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_is_kept_per_key_and_replaced_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = |p: &str| LearnedKey {
            url: "https://api.example".into(),
            login: "123".into(),
            process: p.into(),
        };
        assert_eq!(load(dir.path(), &key("555")), None);
        save(dir.path(), &key("555"), 2_000.4).expect("saved");
        save(dir.path(), &key("556"), 700.0).expect("saved");
        assert_eq!(load(dir.path(), &key("555")), Some(2_000.0));
        save(dir.path(), &key("555"), 1_500.0).expect("saved");
        assert_eq!(load(dir.path(), &key("555")), Some(1_500.0));
        assert_eq!(load(dir.path(), &key("556")), Some(700.0));
        // Only the two files: no temporary one is left behind.
        let files = std::fs::read_dir(dir.path().join("rate"))
            .expect("dir")
            .count();
        assert_eq!(files, 2);
        // A damaged file is no start.
        std::fs::write(file(dir.path(), &key("555")), b"{not json").expect("write");
        assert_eq!(load(dir.path(), &key("555")), None);
    }
}
