//! The sandbox answers task show, modify and delete, aliases and the loose forms of the
//! API reference as docs/protocol.md writes them down (Task show, modify and delete): the
//! shapes `czload verify` and `czload undo` read, tried against the sandbox's own words
//! for what a real server leaves unknown.

use crate::common::*;
use czload::sandbox::SandboxConfig;
use serde_json::{json, Value};

fn op(id: &str, kind: &str, fields: Value) -> Value {
    let mut o = json!({"id": id, "type": kind, "obj": "task", "conv_id": CONV});
    for (k, v) in fields.as_object().expect("an object") {
        o[k] = v.clone();
    }
    o
}

fn is_hex24(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[tokio::test]
async fn show_gives_every_field_of_the_reference_and_delete_needs_the_right_node() {
    let h = Harness::start(config()).await;
    let r = h
        .post(&body(&[create("c", Some("order-1"), json!({"sum": 12.5}))]))
        .await;
    let obj_id = r.op("c")["obj_id"].clone();
    assert!(is_hex24(&obj_id), "{}", r.text);

    let r = h
        .post(&body(&[op("s", "show", json!({"ref": "order-1"}))]))
        .await;
    let s = r.op("s");
    assert_eq!(s["proc"], "ok", "{s}");
    for field in [
        "obj_id",
        "ref",
        "status",
        "node_id",
        "node_prev_id",
        "task_id",
        "user_id",
        "create_time",
        "change_time",
        "data",
    ] {
        assert!(!s[field].is_null(), "show lacks {field}: {s}");
    }
    assert_eq!(s["obj_id"], obj_id);
    assert_eq!(s["data"], json!({"sum": 12.5}));
    assert!(
        is_hex24(&s["node_id"]) && s["node_id"] != s["node_prev_id"],
        "{s}"
    );
    assert!(s["create_time"].as_u64().unwrap() >= now() - 60, "{s}");
    let node = s["node_id"].clone();

    // There is no delete by ref, a delete without node_id is refused naming it, and a
    // task in another node is not deleted.
    let wrong_node = "0123456789abcdef01234567";
    let r = h
        .post(&body(&[
            op("by-ref", "delete", json!({"ref": "order-1"})),
            op("no-node", "delete", json!({"obj_id": obj_id})),
            op(
                "wrong",
                "delete",
                json!({"obj_id": obj_id, "node_id": wrong_node}),
            ),
        ]))
        .await;
    assert_eq!(r.op("by-ref")["key"], "obj_id", "{}", r.text);
    assert_eq!(r.op("no-node")["key"], "node_id", "{}", r.text);
    assert_eq!(r.op("wrong")["proc"], "error", "{}", r.text);
    assert_eq!(r.op("wrong")["key"], "node_id", "{}", r.text);
    assert_eq!(h.sb.tasks().len(), 1, "nothing deleted yet");

    let del = op("d", "delete", json!({"obj_id": obj_id, "node_id": node}));
    let r = h.post(&body(std::slice::from_ref(&del))).await;
    assert_eq!(r.op("d")["proc"], "ok", "{}", r.text);
    assert_eq!(r.op("d")["obj_id"], obj_id);
    assert!(h.sb.tasks().is_empty());
    // Gone: a second delete and a show find nothing, and the ref is free again.
    let r = h
        .post(&body(&[del, op("s2", "show", json!({"ref": "order-1"}))]))
        .await;
    assert_eq!(r.op("d")["proc"], "not_found_task", "{}", r.text);
    assert_eq!(r.op("s2")["proc"], "not_found_task", "{}", r.text);
    let r = h
        .post(&body(&[create("again", Some("order-1"), json!({}))]))
        .await;
    assert_eq!(r.op("again")["proc"], "ok", "{}", r.text);
    let st = h.sb.stats();
    assert_eq!((st.deleted, st.tasks), (1, 1), "{st:?}");
    assert_eq!(
        st.ops,
        st.created + st.modified + st.shown + st.deleted + st.op_errors,
        "{st:?}"
    );
}

#[tokio::test]
async fn the_loose_forms_of_the_reference_are_taken() {
    let h = Harness::start(config()).await;
    let mut no_id = create("x", None, json!({"a": 1}));
    no_id.as_object_mut().unwrap().remove("id");
    let mut numeric = create("num", None, json!({"n": 1}));
    numeric["ref"] = json!(17);
    let mut null_ref = create("null", None, json!({}));
    null_ref["ref"] = Value::Null;
    let mut null_company = create("nc", Some("nc"), json!({}));
    null_company["company_id"] = Value::Null;
    let r = h
        .post(&body(&[
            no_id,
            numeric,
            null_ref,
            null_company,
            create("arr", Some("arr"), json!([])),
        ]))
        .await;
    // An op sent without an id is answered "id": "".
    assert!(
        r.ops().iter().any(|a| a["id"] == "" && a["proc"] == "ok"),
        "{}",
        r.text
    );
    for id in ["num", "null", "nc", "arr"] {
        assert_eq!(r.op(id)["proc"], "ok", "{id}: {}", r.text);
    }
    let arr = r.op("arr")["obj_id"].clone();
    // A numeric ref names its task; a modify by obj_id with `data: []` answers its ref.
    let r = h
        .post(&body(&[
            op("show-num", "show", json!({"ref": 17})),
            op("m", "modify", json!({"obj_id": arr, "data": []})),
        ]))
        .await;
    assert_eq!(r.op("show-num")["proc"], "ok", "{}", r.text);
    assert_eq!(r.op("show-num")["data"], json!({"n": 1}));
    assert_eq!(r.op("m")["proc"], "ok", "{}", r.text);
    assert_eq!(r.op("m")["ref"], "arr", "{}", r.text);
    let tasks = h.sb.tasks();
    assert_eq!(tasks.len(), 5);
    assert!(tasks.iter().any(|t| t.ref_.as_deref() == Some("17")));
    assert_eq!(tasks.iter().filter(|t| t.ref_.is_none()).count(), 2);
}

#[tokio::test]
async fn obj_alias_with_company_id_stands_for_the_process() {
    let h = Harness::start(SandboxConfig {
        aliases: vec![("orders-prod".into(), CONV2)],
        ..config()
    })
    .await;
    let by_alias = |id: &str, alias: &str, company: Option<&str>| {
        let mut o = create(id, Some(id), json!({}));
        o.as_object_mut().unwrap().remove("conv_id");
        o["obj_alias"] = json!(alias);
        if let Some(c) = company {
            o["company_id"] = json!(c);
        }
        o
    };
    let r = h
        .post(&body(&[
            by_alias("ok", "orders-prod", Some("i1")),
            by_alias("no-company", "orders-prod", None),
            by_alias("unknown", "orders-dev", Some("i1")),
        ]))
        .await;
    assert_eq!(r.op("ok")["proc"], "ok", "{}", r.text);
    assert_eq!(r.op("no-company")["key"], "company_id", "{}", r.text);
    assert_eq!(r.op("unknown")["key"], "obj_alias", "{}", r.text);
    let tasks = h.sb.tasks();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].conv_id, CONV2);
}

#[tokio::test]
async fn lose_every_answers_ok_and_keeps_nothing() {
    let h = Harness::start(SandboxConfig {
        lose_every: 4,
        ..config()
    })
    .await;
    let r = h.post(&creates("l", 20)).await;
    assert!(r.ops().iter().all(|a| a["proc"] == "ok"), "{}", r.text);
    let kept: Vec<String> = h.sb.tasks().into_iter().filter_map(|t| t.ref_).collect();
    assert_eq!(kept.len(), 15);
    for lost in ["l-3", "l-7", "l-11", "l-15", "l-19"] {
        assert!(!kept.iter().any(|k| k == lost), "{lost} kept");
    }
    let st = h.sb.stats();
    assert_eq!((st.created, st.lost, st.tasks), (20, 5, 15), "{st:?}");
}
