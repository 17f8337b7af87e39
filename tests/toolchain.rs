//! The toolchain the project claims is the one its lock file needs: `rust-version` in
//! Cargo.toml is at least every locked crate's own `rust-version`, and the Dockerfile builds
//! on that version. A lock file update that pulls in a crate needing a newer Rust fails
//! here, not in a user's `docker build` (round 2 shipped `rust:1.85` with crates that need
//! 1.88).

use std::process::Command;

/// `1.88` or `1.88.0` as (1, 88, 0), for comparison.
fn version(v: &str) -> (u64, u64, u64) {
    let mut parts = v.trim().split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

fn host() -> String {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc -vV");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .expect("rustc -vV names the host")
}

/// The locked packages built for this machine, from `cargo metadata` (offline: the test
/// build has just fetched them; `--filter-platform` leaves out other platforms' crates,
/// which were never downloaded).
fn metadata() -> serde_json::Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

#[test]
fn rust_version_covers_every_locked_crate_and_the_dockerfile_uses_it() {
    let meta = metadata();
    let packages = meta["packages"].as_array().expect("packages");
    let ours = packages
        .iter()
        .find(|p| p["name"] == "czload")
        .and_then(|p| p["rust_version"].as_str())
        .expect("Cargo.toml declares rust-version");
    let too_new: Vec<String> = packages
        .iter()
        .filter_map(|p| {
            let needs = p["rust_version"].as_str()?;
            (version(needs) > version(ours)).then(|| {
                format!(
                    "{} {} needs {needs}",
                    p["name"].as_str().unwrap_or("?"),
                    p["version"].as_str().unwrap_or("?")
                )
            })
        })
        .collect();
    assert!(
        too_new.is_empty(),
        "rust-version = {ours} in Cargo.toml, but locked crates need more:\n{}",
        too_new.join("\n")
    );
    // A packaged crate that states no rust-version proves nothing either way; there are
    // few, and the build on the Dockerfile's image is their test.

    let dockerfile = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile"))
        .expect("Dockerfile");
    let image = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("FROM rust:"))
        .expect("the Dockerfile builds FROM rust:VERSION");
    let image_version = image.split(['-', ' ']).next().unwrap_or_default();
    let (a, b, _) = version(ours);
    let (c, d, _) = version(image_version);
    assert_eq!(
        (a, b),
        (c, d),
        "the Dockerfile builds on rust:{image_version}, Cargo.toml says rust-version = {ours}"
    );
}
