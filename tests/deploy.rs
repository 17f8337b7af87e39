//! The Kubernetes manifests in deploy/kubernetes/ keep the promises the README makes of
//! them: every pod runs under a seccomp profile (the "restricted" Pod Security level
//! rejects one without), a pod that loads has a grace period above the request timeout
//! (SIGTERM drains the requests in flight, docs/architecture.md, Exit codes), and an
//! Indexed Job does not spend an index's retries on node drains. Read as text: the
//! manifests are short and flat, and a YAML parser would be a dependency for this alone.

use std::path::Path;

/// `--timeout`'s default (src/cli.rs): the longest a request in flight may still take.
const REQUEST_TIMEOUT_SECS: u64 = 30;

fn manifests() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("deploy/kubernetes")
        .filter_map(|e| {
            let path = e.ok()?.path();
            let name = path.file_name()?.to_str()?.to_owned();
            name.ends_with(".yaml")
                .then(|| (name, std::fs::read_to_string(&path).expect("readable")))
        })
        .collect();
    out.sort();
    out
}

fn value_of<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(key)?.trim().strip_prefix(':'))
        .map(str::trim)
}

#[test]
fn every_pod_is_restricted_drains_in_time_and_survives_node_drains() {
    let all = manifests();
    assert!(
        all.iter().any(|(n, _)| n == "job.yaml"),
        "job.yaml is there"
    );
    let mut problems = Vec::new();
    for (name, text) in &all {
        let is_pod = text.contains("kind: Job") || text.contains("kind: CronJob");
        if !is_pod {
            continue;
        }
        if !text.contains("seccompProfile:") || !text.contains("type: RuntimeDefault") {
            problems.push(format!("{name}: no seccompProfile RuntimeDefault"));
        }
        let loads = text.lines().any(|l| l.trim() == "- load");
        if loads {
            match value_of(text, "terminationGracePeriodSeconds").map(str::parse::<u64>) {
                Some(Ok(n)) if n > REQUEST_TIMEOUT_SECS => {}
                other => problems.push(format!(
                    "{name}: terminationGracePeriodSeconds {other:?}, must exceed --timeout ({REQUEST_TIMEOUT_SECS} s)"
                )),
            }
        }
        if text.contains("completionMode: Indexed")
            && !(text.contains("action: Ignore") && text.contains("type: DisruptionTarget"))
        {
            problems.push(format!(
                "{name}: no podFailurePolicy rule that ignores DisruptionTarget (drains would use up retries)"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Each loading Job fails an index at once on the exit codes a retry cannot change (1 a
/// configuration to fix, 2 rows that did not succeed), and retries an outage
/// (`EXIT_OUTAGE`): the codes are czload's, so a change of them fails here.
#[test]
fn every_job_fails_an_index_on_configuration_errors_and_retries_outages() {
    let mut problems = Vec::new();
    for (name, text) in manifests() {
        if !text.contains("completionMode: Indexed") {
            continue;
        }
        let lines: Vec<&str> = text.lines().collect();
        let codes = lines
            .iter()
            .position(|l| l.trim() == "- action: FailIndex")
            .and_then(|i| {
                lines[i..]
                    .iter()
                    .find_map(|l| l.trim().strip_prefix("values:"))
            })
            .map(|v| {
                v.trim()
                    .trim_matches(|c| c == '[' || c == ']')
                    .split(',')
                    .filter_map(|c| c.trim().parse::<i32>().ok())
                    .collect::<Vec<_>>()
            });
        match codes {
            Some(c) if c.contains(&1) && c.contains(&2) && !c.contains(&czload::EXIT_OUTAGE) => {}
            other => problems.push(format!(
                "{name}: FailIndex exit codes {other:?}, want 1 and 2 and not {}",
                czload::EXIT_OUTAGE
            )),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
