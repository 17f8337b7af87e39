//! `czload check` and `load --check` against a sandbox that declares parameters: a misfit
//! named with the flags that fix it (exit 2, nothing created), a fit passed (exit 0), a
//! process that does not exist (exit 1, the server's words), and a process without
//! declared parameters (a note).

use crate::common::{self, s, CONV, LOGIN, SECRET};
use czload::sandbox::{Param, Sandbox, SandboxConfig};
use std::process::Stdio;

async fn sandbox_with(params: &[&str]) -> Sandbox {
    Sandbox::start(SandboxConfig {
        params: params.iter().map(|p| Param::parse(p).unwrap()).collect(),
        ..common::config()
    })
    .await
    .expect("sandbox starts")
}

/// `czload SUB --url URL --api-login LOGIN ARGS` with the test secret.
async fn czload(sub: &str, url: &str, args: &[&str]) -> common::Out {
    let mut cmd = crate::common::czload();
    cmd.arg(sub)
        .args(["--url", url, "--api-login", LOGIN, "--quiet"])
        .args(args)
        .env("COREZOID_API_SECRET", SECRET)
        .env_remove("COREZOID_API_LOGIN")
        .env_remove("COREZOID_URL")
        .stdin(Stdio::null());
    tokio::task::spawn_blocking(move || common::Out::from(cmd.output().expect("czload runs")))
        .await
        .unwrap()
}

const PARAMS: &[&str] = &[
    "order_id:string:required",
    "amount:number:required",
    "paid:boolean",
    "customer:string:required",
];

fn orders(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("orders.csv");
    std::fs::write(
        &p,
        "order_id,amount,paid,cust,note\nA-1,12.5,true,ann,x\nA-2,7,false,bob,y\n",
    )
    .unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misfit_is_named_with_its_fixing_flags_and_nothing_is_created() {
    let sb = sandbox_with(PARAMS).await;
    let dir = tempfile::tempdir().unwrap();
    let input = orders(dir.path());
    let out = czload("check", &sb.url(), &[s(&input), "--conv-id", "555"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    for want in [
        "--type amount:number",
        "--type paid:bool",
        "required parameter \"customer\" is supplied by no column or field",
        "--rename COL:customer",
        "warning: \"note\" is not a declared parameter",
        "--exclude note",
    ] {
        assert!(
            out.stdout.contains(want),
            "{want:?} missing:\n{}",
            out.stdout
        );
    }
    // order_id is a string column mapped as a string: no complaint about it.
    assert!(
        !out.stdout.contains("\"order_id\" is declared"),
        "{}",
        out.stdout
    );

    // load --check stops before the first task.
    let out = czload(
        "load",
        &sb.url(),
        &[s(&input), "--conv-id", "555", "--check"],
    )
    .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("nothing was loaded (--check)"),
        "{}",
        out.stderr
    );
    assert_eq!(sb.stats().created, 0);
    assert!(sb.tasks().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flags_it_names_make_the_mapping_fit_and_load_check_then_loads() {
    let sb = sandbox_with(PARAMS).await;
    let dir = tempfile::tempdir().unwrap();
    let input = orders(dir.path());
    let flags = [
        s(&input),
        "--conv-id",
        "555",
        "--type",
        "amount:number",
        "--type",
        "paid:bool",
        "--rename",
        "cust:customer",
        "--exclude",
        "note",
    ];
    let out = czload("check", &sb.url(), &flags).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("the mapping fits"), "{}", out.stdout);
    assert!(!out.stdout.contains("problem:") && !out.stdout.contains("warning:"));
    assert_eq!(sb.stats().created, 0, "check creates nothing");

    let out = czload("load", &sb.url(), &[&flags[..], &["--check"]].concat()).await;
    assert_eq!(out.code, 0, "{out:?}");
    let tasks = sb.tasks();
    assert_eq!(tasks.len(), 2);
    assert!(tasks
        .iter()
        .any(|t| t.data["customer"] == "ann" && t.data["amount"] == 12.5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_that_no_flag_makes_a_number_is_named_by_row() {
    let sb = sandbox_with(&["amount:number"]).await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("a.csv");
    std::fs::write(&input, "amount\n1.5\nabc\n").unwrap();
    let out = czload("check", &sb.url(), &[s(&input), "--conv-id", "555"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stdout
            .contains("row 2 holds \"abc\", which is no number"),
        "{}",
        out.stdout
    );
    // Typed, the same row is one load would reject: still a misfit.
    let out = czload(
        "check",
        &sb.url(),
        &[s(&input), "--conv-id", "555", "--type", "amount:number"],
    )
    .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stdout.contains("row 2 would be rejected"),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_values_are_compared_as_typed_and_undeclared_fields_warned() {
    let sb = sandbox_with(&["amount:number:required", "tags:array"]).await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("a.ndjson");
    std::fs::write(&input, "{\"amount\":3,\"tags\":\"a,b\",\"x\":1}\n").unwrap();
    let out = czload("check", &sb.url(), &[s(&input), "--conv-id", "555"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stdout.contains("parameter \"tags\" is declared array"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("warning: \"x\""), "{}", out.stdout);
    assert!(!out.stdout.contains("\"amount\" is"), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_such_process_or_bad_auth_cannot_be_checked_and_no_params_pass_with_a_note() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = orders(dir.path());
    let out = czload("check", &sb.url(), &[s(&input), "--conv-id", "999"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("Object conv with id 999 does not exist"),
        "{}",
        out.stderr
    );

    let out = czload(
        "check",
        &sb.url(),
        &[s(&input), "--conv-id", &CONV.to_string()],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("note: process 555 declares no parameters"),
        "{}",
        out.stdout
    );

    let mut cmd = crate::common::czload();
    cmd.args([
        "check",
        s(&input),
        "--conv-id",
        "555",
        "--url",
        &sb.url(),
        "--api-login",
        LOGIN,
    ])
    .env("COREZOID_API_SECRET", "wrong-secret");
    let out = common::Out::from(cmd.output().unwrap());
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("cannot check process 555"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("wrong-secret"));
}
