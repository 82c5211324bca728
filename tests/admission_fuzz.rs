//! Malformed, truncated, deeply nested, huge and wrong-kind AdmissionReviews against `/validate`
//! and `/mutate`. Whatever arrives, the webhook must not panic or hang, and must answer either
//! a 4xx saying what is wrong or a 200 AdmissionReview answering the request's uid, whose denial
//! gives a reason.
//!
//! Most cases go through the router in-process; a smaller number over real HTTPS. The number of
//! generated cases per property can be raised with `PROPTEST_CASES`.

#[path = "support/webhook.rs"]
mod webhook;

use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use vaultgate::admission::budget::MAX_VALUES;
use webhook::{Answer, call, check_answer, denial, es_spec, external_secret, review, store};

const ENDPOINTS: [&str; 2] = ["/validate", "/mutate"];
/// Longest any ordinary (not several-MiB) request may take, in-process, in a debug build.
const QUICK: Duration = Duration::from_secs(1);
/// Longest a request of a few MiB may take.
const HUGE: Duration = Duration::from_secs(3);

fn cases(default: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        // Shrinking replays requests; a failure is already a finding, keep reports fast.
        max_shrink_iters: 256,
        failure_persistence: None,
        ..Config::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A valid AdmissionReview of one of the served kinds.
fn valid_review() -> impl Strategy<Value = Value> {
    let uid = prop_oneof![
        "[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{12}",
        "\\PC{0,24}",
        Just(String::new()),
    ];
    (
        uid,
        prop::sample::select(vec!["v1", "v1beta1"]),
        prop::sample::select(vec!["CREATE", "UPDATE", "DELETE", "CONNECT"]),
        0..4usize,
        "[a-z0-9_-][a-z0-9_.-]{0,9}(/[a-z0-9_-][a-z0-9_.-]{0,9}){0,2}",
    )
        .prop_map(|(uid, version, op, which, key)| {
            let object = match which {
                0 => external_secret(version, es_spec(&format!("app/{key}"))),
                1 => external_secret(
                    version,
                    json!({"secretStoreRef": {"name": "vault"},
                           "dataFrom": [{"find": {"path": format!("app/{key}"), "name": {"regexp": "^db-.*"}}}]}),
                ),
                2 => store(version, "SecretStore"),
                _ => store(version, "ClusterSecretStore"),
            };
            let mut r = review(&uid, op, &object);
            if op == "DELETE" {
                r["request"]["oldObject"] = object;
                r["request"]["object"] = Value::Null;
            }
            r
        })
}

/// Any JSON value, with the field names the webhook reads over-represented.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,16}".prop_map(Value::from),
        "[\\x00-\\x1f/.a]{0,8}".prop_map(Value::from),
    ];
    let names = prop_oneof![
        prop::sample::select(vec![
            "uid",
            "kind",
            "apiVersion",
            "request",
            "object",
            "oldObject",
            "operation",
            "spec",
            "metadata",
            "data",
            "dataFrom",
            "remoteRef",
            "key",
            "property",
            "secretKey",
            "target",
            "template",
            "provider",
            "vault",
            "auth",
            "name",
            "namespace",
            "group",
            "version",
            "subResource",
            "dryRun",
        ])
        .prop_map(str::to_owned),
        "\\PC{0,8}",
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((names.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Every JSON pointer in `v` (the root is "").
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                pointers(x, p, out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                pointers(x, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

#[derive(Debug, Clone)]
enum Edit {
    Remove(Index),
    Replace(Index, Value),
    Null(Index),
    /// Turns a value into another type: a string into a number, an object into a string...
    Retype(Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<Index>().prop_map(Edit::Remove),
        (any::<Index>(), any_json()).prop_map(|(i, v)| Edit::Replace(i, v)),
        any::<Index>().prop_map(Edit::Null),
        any::<Index>().prop_map(Edit::Retype),
    ]
}

fn apply(doc: &mut Value, e: &Edit) {
    let mut all = Vec::new();
    pointers(doc, String::new(), &mut all);
    let (Edit::Remove(i) | Edit::Replace(i, _) | Edit::Null(i) | Edit::Retype(i)) = e;
    let ptr = i.get(&all).clone();
    let new = match e {
        Edit::Remove(_) => None,
        Edit::Replace(_, v) => Some(v.clone()),
        Edit::Null(_) => Some(Value::Null),
        Edit::Retype(_) => Some(match doc.pointer(&ptr) {
            Some(Value::String(_)) => json!(42),
            Some(Value::Object(_) | Value::Array(_)) => json!("x"),
            Some(Value::Number(_) | Value::Bool(_)) => json!("1"),
            _ => json!({}),
        }),
    };
    let Some((parent, last)) = ptr.rsplit_once('/') else {
        // The root itself.
        *doc = new.unwrap_or(Value::Null);
        return;
    };
    let last = last.replace("~1", "/").replace("~0", "~");
    match (doc.pointer_mut(parent), new) {
        (Some(Value::Object(m)), None) => {
            m.remove(&last);
        }
        (Some(Value::Object(m)), Some(v)) => {
            m.insert(last, v);
        }
        (Some(Value::Array(a)), None) => {
            if let Ok(i) = last.parse::<usize>() {
                a.remove(i);
            }
        }
        (Some(Value::Array(a)), Some(v)) => {
            if let Ok(i) = last.parse::<usize>() {
                a[i] = v;
            }
        }
        _ => {}
    }
}

/// Sends `body` to both endpoints in-process and checks each answer; returns them.
async fn both(app: &axum::Router, body: &[u8], bound: Duration) -> Vec<(Answer, Option<Value>)> {
    let mut out = Vec::new();
    for ep in ENDPOINTS {
        let a = call(app, ep, body.to_vec()).await;
        assert!(
            a.took < bound,
            "{ep}: answered in {:?} (over {bound:?}) for {}",
            a.took,
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
        let resp = check_answer(body, &a);
        out.push((a, resp));
    }
    out
}

#[test]
fn valid_reviews_are_answered_for_their_uid() {
    let rt = runtime();
    let app = webhook::app();
    TestRunner::new(cases(64))
        .run(&valid_review(), |r| {
            let body = serde_json::to_vec(&r).unwrap();
            rt.block_on(async {
                for (a, resp) in both(&app, &body, QUICK).await {
                    assert_eq!(a.status, 200, "{}", a.text());
                    // Valid objects, and deletes: never refused.
                    assert_eq!(resp.unwrap()["allowed"], true, "{r}");
                }
            });
            Ok(())
        })
        .unwrap();
}

#[test]
fn truncated_reviews_are_refused_as_malformed() {
    let rt = runtime();
    let app = webhook::app();
    TestRunner::new(cases(256))
        .run(&(valid_review(), any::<Index>()), |(r, cut)| {
            let full = serde_json::to_vec(&r).unwrap();
            // A strict prefix of a JSON object is never JSON.
            let body = &full[..cut.index(full.len())];
            rt.block_on(async {
                for (a, _) in both(&app, body, QUICK).await {
                    assert_eq!(a.status, 400, "cut at {}: {}", body.len(), a.text());
                }
            });
            Ok(())
        })
        .unwrap();
}

#[test]
fn structurally_damaged_reviews() {
    let rt = runtime();
    let app = webhook::app();
    TestRunner::new(cases(256))
        .run(
            &(valid_review(), prop::collection::vec(edit(), 1..4)),
            |(mut r, edits)| {
                for e in &edits {
                    apply(&mut r, e);
                }
                let body = serde_json::to_vec(&r).unwrap();
                rt.block_on(both(&app, &body, QUICK));
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn byte_damaged_reviews() {
    let rt = runtime();
    let app = webhook::app();
    let edits = prop::collection::vec((any::<Index>(), any::<u8>(), 0..3u8), 1..8);
    TestRunner::new(cases(256))
        .run(&(valid_review(), edits), |(r, edits)| {
            let mut body = serde_json::to_vec(&r).unwrap();
            for (at, byte, how) in edits {
                let i = at.index(body.len().max(1));
                match how {
                    0 if i < body.len() => body[i] = byte,
                    1 => body.insert(i.min(body.len()), byte),
                    _ if i < body.len() => {
                        body.remove(i);
                    }
                    _ => {}
                }
            }
            rt.block_on(both(&app, &body, QUICK));
            Ok(())
        })
        .unwrap();
}

#[test]
fn arbitrary_bytes_and_json() {
    let rt = runtime();
    let app = webhook::app();
    TestRunner::new(cases(128))
        .run(&prop::collection::vec(any::<u8>(), 0..512), |body| {
            rt.block_on(both(&app, &body, QUICK));
            Ok(())
        })
        .unwrap();
    // A review-shaped envelope around anything.
    TestRunner::new(cases(128))
        .run(&(any_json(), any_json()), |(request, object)| {
            let mut request = request;
            if let Value::Object(m) = &mut request {
                m.insert("object".into(), object);
            }
            let body = serde_json::to_vec(&json!({
                "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request,
            }))
            .unwrap();
            rt.block_on(both(&app, &body, QUICK));
            Ok(())
        })
        .unwrap();
}

fn nested(depth: usize, open: &str, close: &str, leaf: &str) -> String {
    let mut s = String::with_capacity(depth * (open.len() + close.len()) + leaf.len());
    for _ in 0..depth {
        s.push_str(open);
    }
    s.push_str(leaf);
    for _ in 0..depth {
        s.push_str(close);
    }
    s
}

/// `review` with `object.spec` replaced by the JSON text `spec`.
fn with_raw_spec(spec: &str) -> Vec<u8> {
    let r = review("deep", "CREATE", &external_secret("v1", json!("SPEC")));
    serde_json::to_string(&r)
        .unwrap()
        .replace("\"SPEC\"", spec)
        .into_bytes()
}

#[tokio::test]
async fn deeply_nested_objects() {
    let app = webhook::app();
    for depth in [129, 1_000, 10_000, 100_000] {
        // Deeper than JSON parsing goes (128 levels): refused as malformed.
        let body = with_raw_spec(&nested(depth, "[", "]", "1"));
        for (a, _) in both(&app, &body, QUICK).await {
            assert_eq!(a.status, 400, "depth {depth}");
            assert!(
                a.text().contains("recursion limit exceeded"),
                "{}",
                a.text()
            );
        }
        // Under a field the typed ExternalSecret does not have, validation skips the value
        // without building it (and refuses the spec for what it lacks); mutation, which
        // reads the whole object, cannot.
        let body = with_raw_spec(&nested(depth, "{\"a\":", "}", "1"));
        let answers = both(&app, &body, QUICK).await;
        let msg = denial(answers[0].1.as_ref().unwrap()).expect("refused");
        assert!(msg.contains("either data or dataFrom"), "{msg}");
        assert_eq!(answers[1].0.status, 400);
        assert!(answers[1].0.text().contains("recursion limit exceeded"));
        // The same depth as the whole object, not inside spec.
        let r = review("deep", "CREATE", &json!("OBJ"));
        let body = serde_json::to_string(&r)
            .unwrap()
            .replace("\"OBJ\"", &nested(depth, "[", "]", "null"))
            .into_bytes();
        for (a, _) in both(&app, &body, QUICK).await {
            assert_eq!(a.status, 400, "depth {depth}");
        }
    }
    // Nested, but within what JSON parsing takes: refused as a spec that does not fit.
    let body = with_raw_spec(&format!("{{\"data\": {}}}", nested(100, "[", "]", "1")));
    let answers = both(&app, &body, QUICK).await;
    let v = answers[0].1.as_ref().unwrap();
    let msg = denial(v).expect("validate refuses it");
    assert!(msg.starts_with("spec: "), "{msg}");
    assert_eq!(answers[1].1.as_ref().unwrap()["allowed"], true);
    let body = with_raw_spec(&nested(100, "{\"spec\":", "}", "{}"));
    let answers = both(&app, &body, QUICK).await;
    assert!(denial(answers[0].1.as_ref().unwrap()).is_some());
}

#[tokio::test]
async fn huge_reviews() {
    let app = webhook::app();
    let mib = 1024 * 1024;
    // A valid ExternalSecret carrying 2.5 MiB of annotations: allowed.
    let mut es = external_secret("v1", es_spec("app/db"));
    es["metadata"]["annotations"] = json!({"note": "x".repeat(5 * mib / 2)});
    let body = serde_json::to_vec(&review("big", "CREATE", &es)).unwrap();
    for (a, resp) in both(&app, &body, HUGE).await {
        assert_eq!(a.status, 200);
        assert_eq!(resp.unwrap()["allowed"], true);
    }
    // 2.5 MiB remote key: refused, with a message of a readable size.
    let es = external_secret("v1", es_spec(&format!("/{}", "k".repeat(5 * mib / 2))));
    let body = serde_json::to_vec(&review("bigkey", "CREATE", &es)).unwrap();
    let answers = both(&app, &body, HUGE).await;
    let msg = denial(answers[0].1.as_ref().unwrap()).unwrap();
    assert!(
        msg.contains("spec.data[0].remoteRef.key"),
        "{}",
        msg.chars().take(200).collect::<String>()
    );
    assert!(msg.len() < 1024, "message of {} bytes", msg.len());
    // 25,000 data entries with the same secretKey: refused, and the message stays short.
    let entries: Vec<Value> = (0..25_000)
        .map(|i| json!({"secretKey": "a", "remoteRef": {"key": format!("app/{i}")}}))
        .collect();
    let es = external_secret(
        "v1",
        json!({"secretStoreRef": {"name": "vault"}, "data": entries}),
    );
    let body = serde_json::to_vec(&review("many", "CREATE", &es)).unwrap();
    assert!(body.len() > mib, "{}", body.len());
    let answers = both(&app, &body, HUGE).await;
    let msg = denial(answers[0].1.as_ref().unwrap()).unwrap();
    assert!(
        msg.contains("duplicate secretKey"),
        "{}",
        msg.chars().take(200).collect::<String>()
    );
    assert!(msg.len() < 4096, "message of {} bytes", msg.len());
    // Over the API server's own 3 MiB: refused before it is parsed.
    let mut es = external_secret("v1", es_spec("app/db"));
    es["metadata"]["annotations"] = json!({"note": "x".repeat(7 * mib / 2)});
    let body = serde_json::to_vec(&review("toobig", "CREATE", &es)).unwrap();
    for (a, _) in both(&app, &body, HUGE).await {
        assert_eq!(a.status, 413);
    }
    // Within 3 MiB but more JSON values than the webhook parses: refused before it is parsed.
    let entries = vec![json!({}); MAX_VALUES / 2 + 1];
    let es = external_secret(
        "v1",
        json!({"secretStoreRef": {"name": "vault"}, "dataFrom": entries}),
    );
    let body = serde_json::to_vec(&review("values", "CREATE", &es)).unwrap();
    assert!(body.len() < 3 * mib);
    for (a, _) in both(&app, &body, HUGE).await {
        assert_eq!(a.status, 413);
        assert!(a.text().contains("JSON values"), "{}", a.text());
    }
}

/// Kinds and shapes the webhook does not handle, each with exactly the answer it documents.
#[tokio::test]
async fn wrong_kinds_and_shapes() {
    let app = webhook::app();
    let es = external_secret("v1", es_spec("app/db"));
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "a"},
                     "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "a"},
                    "data": {"remoteRef": "sys/seal"}});

    // Not a kind vaultgate serves: admitted untouched with a warning saying so.
    let not_checked = |r: &Value, warning: &str| {
        assert_eq!(r["allowed"], true, "{r}");
        assert!(r.get("patch").is_none(), "{r}");
        assert_eq!(r["warnings"], json!([warning]), "{r}");
    };
    let mut wrong_version = review("wv", "CREATE", &es);
    wrong_version["request"]["kind"]["version"] = json!("v2");
    let mut wrong_group = review("wg", "CREATE", &es);
    wrong_group["request"]["kind"]["group"] = json!("example.com");
    for (r, warning) in [
        (
            review("pod", "CREATE", &pod),
            "vaultgate does not check /v1 Pod",
        ),
        (
            review("cm", "UPDATE", &cm),
            "vaultgate does not check /v1 ConfigMap",
        ),
        (
            wrong_version,
            "vaultgate does not check external-secrets.io/v2 ExternalSecret",
        ),
        (
            wrong_group,
            "vaultgate does not check example.com/v1 ExternalSecret",
        ),
    ] {
        let body = serde_json::to_vec(&r).unwrap();
        for (_, resp) in both(&app, &body, QUICK).await {
            not_checked(&resp.unwrap(), warning);
        }
    }

    // A SecretStore sent as an ExternalSecret: judged as an ExternalSecret, so refused.
    let mut r = review("ss-as-es", "CREATE", &store("v1", "SecretStore"));
    r["request"]["kind"]["kind"] = json!("ExternalSecret");
    let body = serde_json::to_vec(&r).unwrap();
    let answers = both(&app, &body, QUICK).await;
    let msg = denial(answers[0].1.as_ref().unwrap()).expect("refused");
    assert!(msg.contains("either data or dataFrom"), "{msg}");
    // The object's own apiVersion does not matter; the request's kind does.
    let mut odd = es.clone();
    odd["apiVersion"] = json!("nonsense/v0");
    let mut r = review("odd-api", "CREATE", &es);
    r["request"]["object"] = odd;
    let body = serde_json::to_vec(&r).unwrap();
    for (_, resp) in both(&app, &body, QUICK).await {
        assert_eq!(resp.unwrap()["allowed"], true);
    }
    // An AdmissionReview of another version is answered in that version.
    let mut r = review("beta", "CREATE", &es);
    r["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let body = serde_json::to_vec(&r).unwrap();
    for (a, _) in both(&app, &body, QUICK).await {
        assert_eq!(a.json()["apiVersion"], "admission.k8s.io/v1beta1");
    }

    // Requests without an object.
    let mut no_object = review("noobj", "CREATE", &es);
    no_object["request"]["object"] = Value::Null;
    let body = serde_json::to_vec(&no_object).unwrap();
    let answers = both(&app, &body, QUICK).await;
    assert_eq!(
        denial(answers[0].1.as_ref().unwrap()).as_deref(),
        Some("the request carries no object")
    );
    // Mutation has nothing to default: admitted without a patch.
    assert_eq!(answers[1].1.as_ref().unwrap()["allowed"], true);
    let mut missing = review("noobj2", "UPDATE", &es);
    missing["request"].as_object_mut().unwrap().remove("object");
    let body = serde_json::to_vec(&missing).unwrap();
    let answers = both(&app, &body, QUICK).await;
    assert!(denial(answers[0].1.as_ref().unwrap()).is_some());
    // DELETE carries only the old object, and is never refused.
    let bad = external_secret("v1", json!({"data": [{"remoteRef": {"key": "../../sys"}}]}));
    let mut del = review("del", "DELETE", &bad);
    del["request"]["object"] = Value::Null;
    del["request"]["oldObject"] = bad.clone();
    let body = serde_json::to_vec(&del).unwrap();
    for (_, resp) in both(&app, &body, QUICK).await {
        let resp = resp.unwrap();
        assert_eq!(resp["allowed"], true);
        assert!(resp.get("patch").is_none());
    }
    // A status write is not judged either.
    let mut status = review("status", "UPDATE", &bad);
    status["request"]["subResource"] = json!("status");
    let body = serde_json::to_vec(&status).unwrap();
    for (_, resp) in both(&app, &body, QUICK).await {
        assert_eq!(resp.unwrap()["allowed"], true);
    }
    // Object without a spec: refused by validation, defaulted by mutation.
    let mut r = review("nospec", "CREATE", &es);
    r["request"]["object"]
        .as_object_mut()
        .unwrap()
        .remove("spec");
    let body = serde_json::to_vec(&r).unwrap();
    let answers = both(&app, &body, QUICK).await;
    assert!(denial(answers[0].1.as_ref().unwrap()).is_some());
    assert_eq!(answers[1].1.as_ref().unwrap()["patchType"], "JSONPatch");

    // Envelopes that are not AdmissionReviews: 400 naming the problem.
    let mut no_uid = review("x", "CREATE", &es);
    no_uid["request"].as_object_mut().unwrap().remove("uid");
    let mut bad_op = review("x", "EXPLODE", &es);
    bad_op["request"]["operation"] = json!("EXPLODE");
    let mut no_kind = review("x", "CREATE", &es);
    no_kind["request"].as_object_mut().unwrap().remove("kind");
    for (body, want) in [
        (b"null".to_vec(), "invalid type: null"),
        (b"[]".to_vec(), "invalid type: sequence"),
        (b"\"AdmissionReview\"".to_vec(), "invalid type: string"),
        (b"{}".to_vec(), "missing field"),
        (
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
            "carries no request",
        ),
        (
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}"#
                .to_vec(),
            "carries no request",
        ),
        (
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":[]}"#
                .to_vec(),
            "malformed",
        ),
        (serde_json::to_vec(&no_uid).unwrap(), "missing field `uid`"),
        (
            serde_json::to_vec(&bad_op).unwrap(),
            "unknown variant `EXPLODE`",
        ),
        (
            serde_json::to_vec(&no_kind).unwrap(),
            "missing field `kind`",
        ),
        (vec![0xff, 0xfe, b'{'], "malformed"),
        (b"{\"apiVersion\":\"\xff\"}".to_vec(), "malformed"),
    ] {
        for (a, _) in both(&app, &body, QUICK).await {
            assert_eq!(a.status, 400, "{}", String::from_utf8_lossy(&body));
            assert!(a.text().contains(want), "{want}: {}", a.text());
        }
    }
}

/// A smaller number of the same properties over real HTTPS (HTTP/2 and a fresh connection per
/// client), on one server that must keep serving throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_https() {
    let server = webhook::Server::start(Default::default()).await;
    let client = server.client();
    let mut runner = TestRunner::new(cases(24));
    let mut bodies = Vec::new();
    let strategy = prop_oneof![
        (valid_review(), prop::collection::vec(edit(), 0..3)).prop_map(|(mut r, edits)| {
            for e in &edits {
                apply(&mut r, e);
            }
            serde_json::to_vec(&r).unwrap()
        }),
        (valid_review(), any::<Index>()).prop_map(|(r, cut)| {
            let full = serde_json::to_vec(&r).unwrap();
            full[..cut.index(full.len())].to_vec()
        }),
        prop::collection::vec(any::<u8>(), 0..256),
    ];
    for _ in 0..runner.config().cases {
        let tree = strategy.new_tree(&mut runner).unwrap();
        bodies.push(tree.current());
    }
    bodies.push(with_raw_spec(&nested(10_000, "[", "]", "1")));
    for body in &bodies {
        for ep in ENDPOINTS {
            let a = server.post(&client, ep, body.clone()).await;
            assert!(a.took < QUICK, "{ep}: {:?}", a.took);
            check_answer(body, &a);
        }
    }
    // Still answering valid requests, on a new connection too.
    let es = external_secret("v1", es_spec("app/db"));
    let body = serde_json::to_vec(&review("after", "CREATE", &es)).unwrap();
    let a = server
        .post(&server.client(), "/validate", body.clone())
        .await;
    assert_eq!(check_answer(&body, &a).unwrap()["allowed"], true);
    server.stop().await;
}

/// Only the fields a decision depends on are read. A review whose `userInfo`, `resource`,
/// `requestKind`, `requestResource` or `options` are missing or of another shape is decided
/// exactly as the whole one (the API server always sends them, and a Go webhook's decoder would
/// not refuse their absence either); fields that are read stay strict.
#[tokio::test]
async fn fields_no_decision_reads_are_not_required() {
    let app = webhook::app();
    let mut bad_spec = es_spec("team-a/db");
    bad_spec["refreshInterval"] = json!("soon");
    for (what, spec) in [("valid", es_spec("team-a/db")), ("invalid", bad_spec)] {
        let mut full = review("u-1", "CREATE", &external_secret("v1", spec));
        full["request"]["options"] =
            json!({"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"});
        for ep in ENDPOINTS {
            let want = call(&app, ep, serde_json::to_vec(&full).unwrap()).await;
            assert_eq!(want.status, 200, "{ep} {what}: {}", want.text());
            let want = want.json();
            assert_eq!(
                want["response"]["allowed"],
                what == "valid" || ep == "/mutate",
                "{ep} {what}: {want}"
            );
            for field in [
                "userInfo",
                "resource",
                "requestKind",
                "requestResource",
                "options",
            ] {
                for replacement in [None, Some(json!(42)), Some(json!(["x"]))] {
                    let mut r = full.clone();
                    let req = r["request"].as_object_mut().unwrap();
                    match &replacement {
                        None => req.remove(field),
                        Some(v) => req.insert(field.into(), v.clone()),
                    };
                    let got = call(&app, ep, serde_json::to_vec(&r).unwrap()).await;
                    assert_eq!(
                        got.status,
                        200,
                        "{ep} {what} {field}={replacement:?}: {}",
                        got.text()
                    );
                    assert_eq!(got.json(), want, "{ep} {what} {field}={replacement:?}");
                }
            }
        }
    }
    // What a decision does read is still required, and of its type.
    let full = review(
        "u-2",
        "CREATE",
        &external_secret("v1", es_spec("team-a/db")),
    );
    for (field, replacement) in [
        ("uid", None),
        ("kind", None),
        ("operation", None),
        ("uid", Some(json!(7))),
        ("operation", Some(json!("UPSERT"))),
        ("dryRun", Some(json!("yes"))),
        ("object", Some(json!("x"))),
    ] {
        let mut r = full.clone();
        let req = r["request"].as_object_mut().unwrap();
        match &replacement {
            None => req.remove(field),
            Some(v) => req.insert(field.into(), v.clone()),
        };
        for ep in ENDPOINTS {
            let got = call(&app, ep, serde_json::to_vec(&r).unwrap()).await;
            assert_eq!(
                got.status,
                400,
                "{ep} {field}={replacement:?}: {}",
                got.text()
            );
            assert!(
                got.text().starts_with("malformed AdmissionReview"),
                "{ep} {field}={replacement:?}: {}",
                got.text()
            );
        }
    }
}

/// What the API server adds to an object's metadata before calling webhooks (`managedFields`,
/// the last-applied annotation, uid, timestamps) changes no decision; a metadata field that is
/// read (`name`, `namespace`) of the wrong type is still malformed.
#[tokio::test]
async fn server_side_metadata_changes_no_decision() {
    let app = webhook::app();
    let mut bad_spec = es_spec("team-a/db");
    bad_spec["refreshInterval"] = json!("soon");
    for (what, spec) in [("valid", es_spec("team-a/db")), ("invalid", bad_spec)] {
        let bare = external_secret("v1", spec);
        let mut full = bare.clone();
        let applied = serde_json::to_string(&bare).unwrap();
        full["metadata"] = json!({
            "name": "app", "namespace": "team-a", "uid": "3f0c2a4e-0000-4000-8000-000000000001",
            "resourceVersion": "12", "generation": 1, "creationTimestamp": "2026-11-28T12:00:00Z",
            "labels": {"app": "app"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": applied},
            "managedFields": [{
                "manager": "kubectl-client-side-apply", "operation": "Update",
                "apiVersion": "external-secrets.io/v1", "time": "2026-11-28T12:00:00Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:annotations": {".": {}}}, "f:spec": {".": {}}},
            }],
        });
        let want = call(
            &app,
            "/validate",
            serde_json::to_vec(&review("u-3", "CREATE", &bare)).unwrap(),
        )
        .await;
        let got = call(
            &app,
            "/validate",
            serde_json::to_vec(&review("u-3", "CREATE", &full)).unwrap(),
        )
        .await;
        assert_eq!(
            (got.status, want.status),
            (200, 200),
            "{what}: {}",
            got.text()
        );
        assert_eq!(got.json(), want.json(), "{what}");
        assert_eq!(
            got.json()["response"]["allowed"],
            what == "valid",
            "{what}: {}",
            got.text()
        );
    }
    for (field, v) in [("name", json!(42)), ("namespace", json!(["team-a"]))] {
        let mut es = external_secret("v1", es_spec("team-a/db"));
        es["metadata"][field] = v;
        let a = call(
            &app,
            "/validate",
            serde_json::to_vec(&review("u-4", "CREATE", &es)).unwrap(),
        )
        .await;
        assert_eq!(a.status, 400, "metadata.{field}: {}", a.text());
    }
}
