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
