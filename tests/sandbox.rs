//! The sandbox server, proven by what it answered and what it stored.

use crate::common::*;
use czload::sandbox::{RpsMode, RpsShape, SandboxConfig, Stats, Task};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn is_obj_id(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == 24
            && s.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    })
}

#[tokio::test]
async fn a_signed_request_is_applied() {
    let h = Harness::start(config()).await;
    let ops = [
        create("a", Some("order-1"), json!({"sum": 12.5, "who": "ann"})),
        json!({"id": 17, "type": "create", "obj": "task", "conv_id": CONV2, "data": {"x": [1, 2]}}),
    ];
    let r = h.post(&body(&ops)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["request_proc"], "ok");
    let a = r.op("a");
    assert_eq!(a["proc"], "ok");
    assert_eq!(a["obj"], "task");
    assert_eq!(a["ref"], "order-1");
    assert!(is_obj_id(&a["obj_id"]), "{a}");
    // A numeric id comes back as the same number.
    let b = r
        .ops()
        .iter()
        .find(|o| o["id"] == 17)
        .expect("id 17 echoed");
    assert_eq!(b["proc"], "ok");
    assert!(b.get("ref").is_none());

    let s = h.sb.stats();
    assert_eq!((s.requests, s.ops, s.created, s.tasks), (1, 2, 2, 2));
    let tasks = h.sb.tasks();
    assert_eq!(tasks.len(), 2);
    assert_eq!(tasks[0].conv_id, CONV);
    assert_eq!(tasks[0].ref_.as_deref(), Some("order-1"));
    assert_eq!(Some(tasks[0].obj_id.as_str()), a["obj_id"].as_str());
    assert_eq!(
        Value::Object(tasks[0].data.clone()),
        json!({"sum": 12.5, "who": "ann"})
    );
    assert_eq!(tasks[1].conv_id, CONV2);
    assert_eq!(tasks[1].ref_, None);
    assert_ne!(tasks[0].obj_id, tasks[1].obj_id);
}

#[tokio::test]
async fn wrong_secret_login_or_clock_is_refused_and_applies_nothing() {
    let h = Harness::start(config()).await;
    let b = creates("r", 3);
    let cases = [
        (
            Auth {
                secret: Some("not-the-secret"),
                ..Auth::default()
            },
            "wrong signature",
        ),
        (
            Auth {
                login: Some("1002"),
                ..Auth::default()
            },
            "unknown api login 1002",
        ),
        (
            Auth {
                ts: Some(now() - 301),
                ..Auth::default()
            },
            "outside the allowed clock skew of 300 s",
        ),
        (
            Auth {
                ts: Some(now() + 3600),
                ..Auth::default()
            },
            "outside the allowed clock skew",
        ),
    ];
    for (auth, want) in &cases {
        let r = h.post_as(&b, auth).await.expect("an answer");
        assert_eq!(r.status, 401, "{auth:?}: {}", r.text);
        assert_eq!(r.json["request_proc"], "error");
        let d = r.json["description"].as_str().unwrap_or_default();
        assert!(d.contains(want), "{auth:?}: {d}");
        assert!(!r.text.contains(SECRET), "the answer shows the secret");
    }
    let s = h.sb.stats();
    assert_eq!(s.auth_failures, 4);
    assert_eq!((s.ops, s.created, s.tasks), (0, 0, 0));
    assert!(h.sb.tasks().is_empty());

    // Within the skew is fine.
    let r = h
        .post_as(
            &b,
            &Auth {
                ts: Some(now() - 250),
                ..Auth::default()
            },
        )
        .await
        .expect("an answer");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(h.sb.stats().created, 3);
}

#[tokio::test]
async fn a_timestamp_that_is_not_digits_is_refused() {
    let h = Harness::start(config()).await;
    let b = creates("r", 1);
    let url = format!("{}/api/2/json/{LOGIN}/17e8/abc", h.sb.url());
    let r = h.client.post(url).body(b).send().await.expect("an answer");
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("not a Unix time"));
    assert_eq!(h.sb.stats().auth_failures, 1);
}

#[tokio::test]
async fn uppercase_signature_and_the_v1_path_are_accepted() {
    let h = Harness::start(config()).await;
    let up = Auth {
        uppercase: true,
        ..Auth::default()
    };
    let r = h.post_as(&creates("up", 2), &up).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
    let v1 = Auth {
        v1: true,
        ..Auth::default()
    };
    let r = h.post_as(&creates("v1", 2), &v1).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(h.sb.stats().created, 4);
}

#[tokio::test]
async fn a_duplicate_ref_is_refused_within_a_process_only() {
    let h = Harness::start(config()).await;
    let ops = [
        create("1", Some("dup"), json!({"v": 1})),
        create("2", Some("dup"), json!({"v": 2})),
    ];
    let r = h.post(&body(&ops)).await;
    let procs: HashSet<&str> = r.ops().iter().filter_map(|o| o["proc"].as_str()).collect();
    assert_eq!(procs, HashSet::from(["ok", "not_unical_ref"]), "{}", r.text);

    // Again in a later request: refused; in another process: fine.
    let mut other = create("4", Some("dup"), json!({}));
    other["conv_id"] = json!(CONV2);
    let r = h
        .post(&body(&[create("3", Some("dup"), json!({"v": 3})), other]))
        .await;
    let dup = r.op("3");
    assert_eq!(dup["proc"], "not_unical_ref");
    assert_eq!(dup["description"], "not unical reference");
    assert_eq!(dup["ref"], "dup");
    assert_eq!(r.op("4")["proc"], "ok");

    let s = h.sb.stats();
    assert_eq!((s.created, s.duplicate_refs, s.tasks), (2, 2, 2));
    let tasks = h.sb.tasks();
    assert_eq!(tasks.len(), 2);
    assert_eq!(tasks[0].data["v"], 1, "the first create wins");
}

#[tokio::test]
async fn modify_and_show_work_by_ref_and_by_obj_id() {
    let h = Harness::start(config()).await;
    let r = h
        .post(&body(&[create("c", Some("t1"), json!({"a": 1, "b": 1}))]))
        .await;
    let obj_id = r.op("c")["obj_id"].as_str().expect("obj_id").to_string();

    let modify = |id: &str, by: Value, data: Value| {
        let mut op =
            json!({"id": id, "type": "modify", "obj": "task", "conv_id": CONV, "data": data});
        for (k, v) in by.as_object().unwrap() {
            op[k] = v.clone();
        }
        op
    };
    let show = |id: &str, by: Value| {
        let mut op = json!({"id": id, "type": "show", "obj": "task", "conv_id": CONV});
        for (k, v) in by.as_object().unwrap() {
            op[k] = v.clone();
        }
        op
    };

    let r = h
        .post(&body(&[modify(
            "m1",
            json!({"ref": "t1"}),
            json!({"b": 2, "c": 3}),
        )]))
        .await;
    assert_eq!(r.op("m1")["proc"], "ok", "{}", r.text);
    assert_eq!(r.op("m1")["obj_id"], obj_id.as_str());
    let r = h
        .post(&body(&[modify(
            "m2",
            json!({"obj_id": obj_id.to_uppercase()}),
            json!({"a": "nine"}),
        )]))
        .await;
    assert_eq!(r.op("m2")["proc"], "ok", "{}", r.text);

    let want = json!({"a": "nine", "b": 2, "c": 3});
    let r = h
        .post(&body(&[
            show("s1", json!({"ref": "t1"})),
            show("s2", json!({"obj_id": obj_id})),
            show("s3", json!({"ref": "nope"})),
            show("s4", json!({"obj_id": "0123456789abcdef01234567"})),
            modify("m3", json!({"ref": "nope"}), json!({"x": 1})),
            modify("m4", json!({"obj_id": "not-hex"}), json!({"x": 1})),
        ]))
        .await;
    assert_eq!(r.op("s1")["proc"], "ok");
    assert_eq!(r.op("s1")["data"], want);
    assert_eq!(r.op("s2")["data"], want);
    for id in ["s3", "s4", "m3", "m4"] {
        assert_eq!(r.op(id)["proc"], "not_found_task", "{id}: {}", r.text);
    }

    assert_eq!(Value::Object(h.sb.tasks()[0].data.clone()), want);
    let s = h.sb.stats();
    assert_eq!(
        (s.created, s.modified, s.shown, s.op_errors, s.tasks),
        (1, 2, 2, 4, 1)
    );
}

#[tokio::test]
async fn an_unknown_process_is_refused_and_a_numeric_string_conv_id_accepted() {
    let h = Harness::start(config()).await;
    let mut unknown = create("u", None, json!({}));
    unknown["conv_id"] = json!(999);
    let mut as_string = create("s", None, json!({}));
    as_string["conv_id"] = json!("555");
    let r = h.post(&body(&[unknown, as_string])).await;
    assert_eq!(
        r.json["request_proc"], "ok",
        "a failed op does not fail the package"
    );
    assert_eq!(r.op("u")["proc"], "error");
    assert_eq!(
        r.op("u")["description"],
        "Object conv with id 999 does not exist"
    );
    assert_eq!(r.op("s")["proc"], "ok");
    assert_eq!(h.sb.tasks().len(), 1);
}

#[tokio::test]
async fn invalid_ops_get_a_per_op_error_naming_the_field() {
    let h = Harness::start(SandboxConfig {
        max_task_bytes: 100,
        ..config()
    })
    .await;
    let long_ok = "x".repeat(255);
    let too_long = "y".repeat(256);
    let mut bad_obj = create("obj", None, json!({}));
    bad_obj["obj"] = json!("folder");
    let mut bad_type = create("type", None, json!({}));
    bad_type["type"] = json!("archive");
    let mut company = create("company", None, json!({}));
    company["company_id"] = json!("");
    let mut company_ok = create("company_ok", None, json!({}));
    company_ok["company_id"] = json!("i12345");
    let ops = [
        create("empty", Some(""), json!({})),
        create("long", Some(&too_long), json!({})),
        create("long_ok", Some(&long_ok), json!({})),
        create("notobj", None, json!("just a string")),
        create("big", None, json!({"blob": "z".repeat(200)})),
        bad_obj,
        bad_type,
        company,
        company_ok,
        json!(42),
    ];
    let r = h.post(&body(&ops)).await;
    assert_eq!(r.ops().len(), 10);
    for (id, key) in [
        ("empty", "ref"),
        ("long", "ref"),
        ("notobj", "data"),
        ("big", "data"),
        ("type", "type"),
        ("company", "company_id"),
    ] {
        let a = r.op(id);
        assert_eq!(a["proc"], "error", "{id}: {a}");
        assert_eq!(a["key"], key, "{id}: {a}");
        assert!(a["description"].is_string(), "{id}: {a}");
    }
    assert!(r.op("big")["description"]
        .as_str()
        .unwrap()
        .contains("task size overflow limit"));
    assert_eq!(r.op("obj")["description"], "bad object");
    assert_eq!(r.op("long_ok")["proc"], "ok");
    assert_eq!(r.op("company_ok")["proc"], "ok");
    assert_eq!(h.sb.tasks().len(), 2);
    let s = h.sb.stats();
    assert_eq!((s.ops, s.created, s.op_errors), (10, 2, 8));
}

#[tokio::test]
async fn a_body_that_is_not_an_ops_object_is_a_format_error() {
    let h = Harness::start(config()).await;
    for b in ["not json", r#"{"x":1}"#, r#"[{"ops":[]}]"#, r#"{"ops":{}}"#] {
        let r = h.post(b).await;
        assert_eq!(r.status, 200, "{b}");
        assert_eq!(r.json["request_proc"], "format_error", "{b}: {}", r.text);
        assert_eq!(r.json["ops"], json!([]));
        assert!(r.json["description"].is_string());
    }
    let s = h.sb.stats();
    assert_eq!((s.format_errors, s.ops, s.tasks), (4, 0, 0));
}

#[tokio::test]
async fn answers_are_shuffled_with_every_id_echoed_unless_ordered() {
    let ids: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    let answer_ids = |r: &Reply| -> Vec<String> {
        r.ops()
            .iter()
            .map(|o| o["id"].as_str().expect("id echoed").to_string())
            .collect()
    };

    let h = Harness::start(config()).await;
    let r = h.post(&creates("s", 100)).await;
    let got = answer_ids(&r);
    assert_ne!(got, ids, "100 answers in request order: not shuffled");
    let mut sorted = got.clone();
    sorted.sort_by_key(|s| s.parse::<u32>().unwrap());
    assert_eq!(sorted, ids, "every id once");
    // Each answer still belongs to its op.
    for o in r.ops() {
        assert_eq!(o["ref"], format!("s-{}", o["id"].as_str().unwrap()));
    }

    let h = Harness::start(SandboxConfig {
        ordered: true,
        ..config()
    })
    .await;
    let r = h.post(&creates("o", 100)).await;
    assert_eq!(answer_ids(&r), ids);
}

#[tokio::test]
async fn the_same_seed_gives_the_same_shuffle() {
    let mut orders = Vec::new();
    for _ in 0..2 {
        let h = Harness::start(config()).await;
        let r = h.post(&creates("seed", 30)).await;
        orders.push(r.text.clone());
        let obj_ids: Vec<String> = h.sb.tasks().into_iter().map(|t| t.obj_id).collect();
        orders.push(obj_ids.join(","));
    }
    assert_eq!(orders[0], orders[2]);
    assert_eq!(orders[1], orders[3]);
}

/// Runs `f` in a fresh second window, retrying if it spilled into the next second.
async fn within_one_second<F, Fut>(mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut last = String::new();
    for _ in 0..3 {
        at_second_start().await;
        let before = now();
        let outcome = f().await;
        if now() == before {
            if let Err(e) = outcome {
                panic!("{e}");
            }
            return;
        }
        last = format!("crossed a second boundary ({outcome:?})");
    }
    panic!("{last}");
}

#[tokio::test]
async fn rps_in_request_mode_refuses_the_whole_request_with_429() {
    within_one_second(|| async {
        let h = Harness::start(SandboxConfig {
            rps: Some(50),
            ..config()
        })
        .await;
        let mut statuses = Vec::new();
        let mut retry_after = None;
        for i in 0..3 {
            let r = h.post(&creates(&format!("b{i}"), 20)).await;
            statuses.push(r.status);
            if r.status == 429 {
                retry_after = r.headers.get("retry-after").cloned();
                if r.json["description"] != "RPS limit reached" {
                    return Err(format!("429 without the description: {}", r.text));
                }
            }
        }
        let s: Stats = h.sb.stats();
        let stored = h.sb.tasks().len();
        if statuses != [200, 200, 429]
            || retry_after.as_ref().map(|v| v.to_str().unwrap_or("")) != Some("1")
            || (s.throttled_requests, s.throttled_ops, s.created) != (1, 20, 40)
            || stored != 40
        {
            return Err(format!(
                "{statuses:?} {retry_after:?} {s:?} stored {stored}"
            ));
        }
        Ok(())
    })
    .await;

    // A request larger than the limit never fits.
    let h = Harness::start(SandboxConfig {
        rps: Some(50),
        ..config()
    })
    .await;
    let r = h.post(&creates("big", 100)).await;
    assert_eq!(r.status, 429);
    assert!(h.sb.tasks().is_empty());
}

#[tokio::test]
async fn rps_in_op_mode_refuses_each_op_beyond_the_limit() {
    within_one_second(|| async {
        let h = Harness::start(SandboxConfig {
            rps: Some(50),
            rps_mode: RpsMode::Op,
            ordered: true,
            ..config()
        })
        .await;
        let r = h.post(&creates("op", 100)).await;
        let ok = r.ops().iter().filter(|o| o["proc"] == "ok").count();
        let limited: Vec<&Value> = r
            .ops()
            .iter()
            .filter(|o| o["description"] == "RPS limit reached")
            .collect();
        let s = h.sb.stats();
        let stored = h.sb.tasks().len();
        if r.status != 200
            || ok != 50
            || limited.len() != 50
            || limited.iter().any(|o| o["proc"] != "error")
            || (s.throttled_ops, s.created, s.throttled_requests) != (50, 50, 0)
            || stored != 50
        {
            return Err(format!("ok {ok}, limited {}, {s:?}", limited.len()));
        }
        // The refused ones are the later ones, so a retry can resend exactly those.
        if r.ops()[..50].iter().any(|o| o["proc"] != "ok") {
            return Err("an early op was refused".into());
        }
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn every_rps_shape_refuses_the_excess_in_both_modes() {
    for shape in [RpsShape::Window, RpsShape::Bucket, RpsShape::Sliding] {
        for mode in [RpsMode::Request, RpsMode::Op] {
            within_one_second(|| async {
                let h = Harness::start(SandboxConfig {
                    rps: Some(50),
                    rps_mode: mode,
                    rps_shape: shape,
                    ordered: true,
                    ..config()
                })
                .await;
                let first = h.post(&creates("s1", 40)).await;
                let second = h.post(&creates("s2", 20)).await;
                let ok = |r: &Reply| r.ops().iter().filter(|o| o["proc"] == "ok").count();
                let s = h.sb.stats();
                let got = match mode {
                    RpsMode::Request => (first.status, ok(&first), second.status, 0),
                    RpsMode::Op => (first.status, ok(&first), second.status, ok(&second)),
                };
                let want = match mode {
                    RpsMode::Request => (200, 40, 429, 0),
                    // The bucket may have refilled an op or two between the requests.
                    RpsMode::Op => (200, 40, 200, got.3.clamp(10, 12)),
                };
                if got != want || s.throttled_ops != 60 - s.created {
                    return Err(format!("{shape:?} {mode:?}: {got:?}, {s:?}"));
                }
                Ok(())
            })
            .await;
        }
    }
}

/// Sends `n` one-op creates (unique refs) one after another over fresh connections;
/// returns the answers, `Err` for a request that got no answer.
async fn one_op_requests(h: &Harness, n: usize) -> Vec<Result<Reply, reqwest::Error>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let b = body(&[create(
            &i.to_string(),
            Some(&format!("f-{i}")),
            json!({"i": i}),
        )]);
        out.push(h.post_as(&b, &Auth::default()).await);
    }
    out
}

#[tokio::test]
async fn fail_before_answers_503_at_its_rate_and_applies_nothing() {
    let h = Harness::start_with(
        SandboxConfig {
            fail_before: 0.3,
            ..config()
        },
        false,
    )
    .await;
    let replies = one_op_requests(&h, 200).await;
    let failed = replies
        .iter()
        .filter(|r| r.as_ref().map(|r| r.status).ok() == Some(503))
        .count();
    assert!((30..=90).contains(&failed), "{failed} of 200 at p=0.3");
    assert!(replies.iter().all(|r| r.is_ok()));
    let s = h.sb.stats();
    assert_eq!(s.faults_fail_before, failed as u64);
    assert_eq!(h.sb.tasks().len(), 200 - failed, "a 503 applied nothing");
}

#[tokio::test]
async fn fail_after_answers_502_html_at_its_rate_after_applying() {
    let h = Harness::start_with(
        SandboxConfig {
            fail_after: 0.3,
            ..config()
        },
        false,
    )
    .await;
    let replies = one_op_requests(&h, 200).await;
    let mut failed = 0;
    for r in &replies {
        let r = r.as_ref().expect("an answer");
        if r.status == 502 {
            failed += 1;
            assert!(r.text.contains("502 Bad Gateway"), "{}", r.text);
            assert_eq!(r.headers["content-type"], "text/html");
        } else {
            assert_eq!(r.status, 200);
        }
    }
    assert!((30..=90).contains(&failed), "{failed} of 200 at p=0.3");
    assert_eq!(h.sb.stats().faults_fail_after, failed as u64);
    assert_eq!(h.sb.tasks().len(), 200, "every request was applied");
}

#[tokio::test]
async fn drop_after_closes_the_connection_at_its_rate_after_applying() {
    let h = Harness::start_with(
        SandboxConfig {
            drop_after: 0.3,
            ..config()
        },
        false,
    )
    .await;
    let replies = one_op_requests(&h, 200).await;
    let mut dropped = 0;
    for r in &replies {
        match r {
            Ok(r) => assert_eq!(r.status, 200, "{}", r.text),
            Err(e) => {
                dropped += 1;
                assert!(e.status().is_none(), "a dropped request has no status: {e}");
                assert!(!e.is_timeout(), "closed at once, not timed out: {e}");
            }
        }
    }
    assert!((30..=90).contains(&dropped), "{dropped} of 200 at p=0.3");
    assert_eq!(h.sb.stats().faults_drop_after, dropped as u64);
    assert_eq!(h.sb.tasks().len(), 200, "every request was applied");
}

#[tokio::test]
async fn delay_makes_each_request_wait() {
    let h = Harness::start(SandboxConfig {
        delay_ms: 150,
        ..config()
    })
    .await;
    let t = Instant::now();
    let r = h.post(&creates("d", 1)).await;
    assert_eq!(r.status, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn the_stats_and_tasks_endpoints_tell_the_truth() {
    let h = Harness::start(config()).await;
    h.post(&creates("e", 7)).await;
    h.post(&creates("e", 2)).await; // two duplicates
    h.post(&body(&[json!({"id": "m", "type": "modify", "obj": "task", "conv_id": CONV, "ref": "e-3", "data": {"paid": true}})]))
        .await;
    h.post_as(
        &creates("x", 1),
        &Auth {
            secret: Some("bad"),
            ..Auth::default()
        },
    )
    .await
    .unwrap();

    let stats: Stats =
        serde_json::from_str(&h.get("/__sandbox/stats").await.text().await.unwrap()).unwrap();
    assert_eq!(stats, h.sb.stats());
    assert_eq!(
        (
            stats.requests,
            stats.ops,
            stats.created,
            stats.modified,
            stats.duplicate_refs,
            stats.auth_failures,
            stats.tasks
        ),
        (4, 10, 7, 1, 2, 1, 7)
    );
    assert_eq!(
        stats.ops,
        stats.created + stats.modified + stats.shown + stats.op_errors
    );

    let resp = h.get("/__sandbox/tasks").await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let served: Vec<Task> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a task line"))
        .collect();
    assert_eq!(served, h.sb.tasks());
    assert_eq!(served.len(), 7);
    let refs: HashSet<_> = served.iter().filter_map(|t| t.ref_.clone()).collect();
    assert_eq!(refs.len(), 7);
    assert_eq!(served[3].data["paid"], true);

    let mut dumped = Vec::new();
    h.sb.write_tasks_ndjson(&mut dumped).unwrap();
    assert_eq!(String::from_utf8(dumped).unwrap(), text);
}

#[tokio::test]
async fn unknown_routes_are_404() {
    let h = Harness::start(config()).await;
    assert_eq!(h.get("/").await.status(), 404);
    assert_eq!(h.get("/api/2/json/1001/1/abc").await.status(), 404);
    let r = h
        .client
        .post(format!("{}/api/2/json/1001/1700000000", h.sb.url()))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(h.sb.stats().requests, 0);
}

#[tokio::test]
async fn an_oversize_body_gets_413_and_applies_nothing() {
    let h = Harness::start(SandboxConfig {
        max_body_bytes: 1000,
        ..config()
    })
    .await;
    let big = creates("big", 40);
    assert!(big.len() > 1000);
    let r = h.post(&big).await;
    assert_eq!(r.status, 413, "{}", r.text);

    // Chunked, so no Content-Length to refuse it early: the read limit catches it.
    let addr = h.sb.addr();
    let got = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let path = format!("/api/2/json/{LOGIN}/{}/{}", now(), "0".repeat(40));
        let mut req =
            format!("POST {path} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n");
        for _ in 0..3 {
            req.push_str(&format!("{:x}\r\n{}\r\n", 600, "a".repeat(600)));
        }
        req.push_str("0\r\n\r\n");
        let _ = s.write_all(req.as_bytes());
        let mut buf = [0u8; 12];
        let _ = s.read_exact(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
    .await
    .unwrap();
    assert_eq!(got, "HTTP/1.1 413");
    let s = h.sb.stats();
    assert_eq!((s.too_large, s.tasks, s.auth_failures), (2, 0, 0));
}

#[tokio::test]
async fn garbage_half_sent_requests_and_many_connections_do_not_stop_it() {
    let h = Harness::start(config()).await;
    let addr = h.sb.addr();
    let held = tokio::task::spawn_blocking(move || {
        let mut held = Vec::new();
        // Garbage: hyper answers 400 or closes; either way only that connection ends.
        let mut g = std::net::TcpStream::connect(addr).unwrap();
        g.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = g.write_all(b"\x00\xff\x16\x03\x01 this is not http\r\n\r\n");
        let mut sink = Vec::new();
        let _ = g.read_to_end(&mut sink);
        // Half-sent: headers promise 100 bytes, 10 arrive; the connection stays open.
        let mut half = std::net::TcpStream::connect(addr).unwrap();
        let path = format!("/api/2/json/{LOGIN}/{}/{}", now(), "0".repeat(40));
        let _ = half.write_all(
            format!("POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{{\"ops\":[")
                .as_bytes(),
        );
        held.push(half);
        // Headers cut in the middle.
        let mut cut = std::net::TcpStream::connect(addr).unwrap();
        let _ = cut.write_all(b"POST /api/2/json/1001/17");
        held.push(cut);
        // Many idle connections.
        for _ in 0..200 {
            if let Ok(c) = std::net::TcpStream::connect(addr) {
                held.push(c);
            }
        }
        held
    })
    .await
    .unwrap();
    let r = h.post(&creates("alive", 3)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(h.sb.tasks().len(), 3);
    drop(held);
    let r = h.post(&creates("still", 1)).await;
    assert_eq!(r.status, 200);
    assert_eq!(h.sb.stats().tasks, 4);
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let h = Harness::start(config()).await;
    let url = h.sb.url();
    h.sb.shutdown().await;
    let r = client(true)
        .get(format!("{url}/__sandbox/stats"))
        .send()
        .await;
    assert!(r.is_err(), "still answering after shutdown");
}

#[tokio::test]
async fn the_sandbox_command_serves_and_dumps_its_tasks() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("tasks.ndjson");
    /// Kills the child if the test fails half way, so no server outlives it.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Reap(
        crate::common::czload()
            .args([
                "sandbox",
                "--listen",
                "127.0.0.1:0",
                "--conv",
                "555",
                // One worker thread, as benches/e2e.sh runs it: it must still serve.
                "--threads",
                "1",
                "--dump",
            ])
            .arg(&dump)
            .env("COREZOID_API_SECRET", SECRET)
            .env("COREZOID_API_LOGIN", LOGIN)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("czload runs"),
    );
    let mut stderr = std::io::BufReader::new(child.0.stderr.take().unwrap());
    let mut first = String::new();
    while !first.contains("listening on") {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            panic!("czload sandbox ended without an address: {first}");
        }
        first.push_str(&line);
    }
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_string();

    let r = post_to(&client(true), &url, &creates("cmd", 2), &Auth::default())
        .await
        .expect("the command answers");
    assert_eq!(r.status, 200, "{}", r.text);

    let pid = child.0.id().to_string();
    let killed = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(killed.success());
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status:?}: {rest}");
    let all = format!("{first}{rest}");
    assert!(!all.contains(SECRET), "the secret was printed");
    assert!(all.contains("--api-login 1001"), "{all}");

    let lines: Vec<Task> = std::fs::read_to_string(&dump)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0].ref_.as_deref(), Some("cmd-0"));
}

#[test]
fn the_sandbox_command_refuses_bad_settings_naming_the_flag() {
    let run = |args: &[&str], secret: bool| {
        let mut c = crate::common::czload();
        c.arg("sandbox")
            .args(["--listen", "127.0.0.1:0", "--conv", "1"])
            .args(args);
        c.env_remove("COREZOID_API_SECRET");
        if secret {
            c.env("COREZOID_API_SECRET", SECRET);
        }
        let out = c.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&[], false);
    assert_eq!(code, Some(1));
    assert!(err.contains("COREZOID_API_SECRET"), "{err}");
    let (code, err) = run(&["--fail-before", "1.5"], true);
    assert_eq!(code, Some(1));
    assert!(err.contains("--fail-before"), "{err}");
    let (code, err) = run(&["--rps-mode", "sometimes"], true);
    assert_eq!(code, Some(1), "{err}");
    let (code, err) = run(&["--rps-shape", "sliding", "--rps", "2000000"], true);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--rps-shape sliding"), "{err}");
    let (code, err) = run(&["--threads", "0"], true);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--threads"), "{err}");
}
