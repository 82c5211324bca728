//! The webhook's memory bound: what deciding a review allocates stays within what the budget
//! charges for parsing it, for the costliest reviews the schema admits — every
//! list and map field of every kind, on both endpoints, filled with the smallest elements that
//! parse. Allocations are counted by this binary's own allocator, so it holds one test only.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Map, Value, json};
use vaultgate::admission::LiveMode;
use vaultgate::admission::budget::{parsed_bound, values};
use vaultgate::admission::{AdmissionState, Callers, Endpoint, review};
use vaultgate::metrics::Metrics;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK.fetch_max(now, Ordering::SeqCst);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::SeqCst);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let now = CURRENT.fetch_add(new_size - layout.size(), Ordering::SeqCst)
                    + (new_size - layout.size());
                PEAK.fetch_max(now, Ordering::SeqCst);
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::SeqCst);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The most `f` had allocated at once beyond what was allocated when it started.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = CURRENT.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let out = f();
    (out, PEAK.load(Ordering::SeqCst) - base)
}

/// The smallest instance of a schema that its typed form reads: required fields only, the
/// first value of an enum, empty strings and lists.
fn minimal(schema: &Value) -> Value {
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    if schema["x-kubernetes-int-or-string"] == true {
        return json!(0);
    }
    match schema["type"].as_str() {
        Some("string") => json!(""),
        Some("integer") | Some("number") => json!(0),
        Some("boolean") => json!(false),
        Some("array") => json!([]),
        _ => {
            let mut obj = Map::new();
            for r in schema["required"].as_array().into_iter().flatten() {
                let name = r.as_str().unwrap();
                obj.insert(name.into(), minimal(&schema["properties"][name]));
            }
            Value::Object(obj)
        }
    }
}

/// Where a list or map can grow: its path in the spec (`0` for an element of a list on the
/// way) and the schema of the list or map.
fn growable(schema: &Value, path: Vec<String>, out: &mut Vec<(Vec<String>, Value)>) {
    if schema["type"] == "array" {
        out.push((path.clone(), schema.clone()));
        let mut inner = path;
        inner.push("0".into());
        growable(&schema["items"], inner, out);
        return;
    }
    if schema["additionalProperties"].is_object() {
        out.push((path.clone(), schema.clone()));
    }
    for (name, prop) in schema["properties"].as_object().into_iter().flatten() {
        let mut p = path.clone();
        p.push(name.clone());
        growable(prop, p, out);
    }
}

/// `base` with the list or map at `path` filled to about `bytes` of JSON.
fn filled(
    base: &Value,
    spec_schema: &Value,
    path: &[String],
    schema: &Value,
    bytes: usize,
) -> Value {
    let grown = if schema["type"] == "array" {
        let one = minimal(&schema["items"]);
        let n = bytes / (one.to_string().len() + 1);
        Value::Array(vec![one; n])
    } else {
        let one = minimal(&schema["additionalProperties"]);
        let n = bytes / (one.to_string().len() + 10);
        Value::Object((0..n).map(|i| (format!("{i:x}"), one.clone())).collect())
    };
    let mut obj = base.clone();
    let mut at = &mut obj["spec"];
    let mut sch = spec_schema;
    for (i, seg) in path.iter().enumerate() {
        let last = i + 1 == path.len();
        if seg == "0" {
            sch = &sch["items"];
            if !at.is_array() || at.as_array().unwrap().is_empty() {
                *at = json!([minimal(sch)]);
            }
            at = &mut at[0];
        } else {
            sch = &sch["properties"][seg];
            if !at.is_object() {
                *at = json!({});
            }
            if last {
                at[seg.as_str()] = grown.clone();
                break;
            }
            if at
                .get(seg.as_str())
                .is_none_or(|v| !v.is_object() && !v.is_array())
            {
                at[seg.as_str()] = minimal(sch);
            }
            at = &mut at[seg.as_str()];
        }
    }
    obj
}

fn review_of(object: &Value, kind: &str, namespaced: bool) -> Vec<u8> {
    let mut request = json!({
        "uid": "u", "operation": "CREATE",
        "kind": {"group": "external-secrets.io", "version": "v1", "kind": kind},
        "object": object, "oldObject": null,
    });
    if namespaced {
        request["namespace"] = json!("team-a");
    }
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request,
    }))
    .unwrap()
}

#[test]
fn deciding_a_review_allocates_within_its_charge() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let state = AdmissionState::new(
        Metrics::new(),
        LiveMode::Off,
        Duration::from_secs(2),
        Callers::Anyone,
        None,
        None,
    );
    let crds: Vec<Value> =
        serde_yaml_ng::Deserializer::from_str(&vaultgate::crd::render_all().unwrap())
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
    let server = "https://vault:8200";
    let bases = [
        (
            "ExternalSecret",
            json!({"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
                   "metadata": {"name": "app", "namespace": "team-a"},
                   "spec": {"secretStoreRef": {"name": "vault"}, "target": {"name": "app"},
                            "data": [{"secretKey": "a", "remoteRef": {"key": "app/db"}}]}}),
        ),
        (
            "SecretStore",
            json!({"apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
                   "metadata": {"name": "vault", "namespace": "team-a"},
                   "spec": {"provider": {"vault": {"server": server, "path": "secret",
                            "auth": {"tokenSecretRef": {"name": "t", "key": "token"}}}}}}),
        ),
        (
            "ClusterSecretStore",
            json!({"apiVersion": "external-secrets.io/v1", "kind": "ClusterSecretStore",
                   "metadata": {"name": "vault"},
                   "spec": {"provider": {"vault": {"server": server, "path": "secret",
                            "auth": {"tokenSecretRef": {"name": "t", "key": "token",
                                                        "namespace": "x"}}}}}}),
        ),
    ];
    let mut checked = 0;
    let mut worst = (0.0f64, String::new());
    for (kind, base) in &bases {
        let crd = crds
            .iter()
            .find(|c| c["spec"]["names"]["kind"] == *kind)
            .unwrap();
        let version = crd["spec"]["versions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "v1")
            .unwrap();
        let spec_schema = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let mut places = Vec::new();
        growable(spec_schema, vec![], &mut places);
        assert!(places.len() > 10, "{kind}: {} places", places.len());
        // And the metadata the API server sends: labels, and managed fields whose `fieldsV1`
        // is a free-form tree.
        let n = 8_000;
        let keys =
            |v: Value| -> Value { (0..n).map(|i| (format!("f:{i:x}"), v.clone())).collect() };
        let mut labelled = base.clone();
        labelled["metadata"]["labels"] = keys(json!(""));
        let mut managed = base.clone();
        managed["metadata"]["managedFields"] = json!([{
            "manager": "m", "operation": "Update", "fieldsType": "FieldsV1",
            "fieldsV1": keys(json!({"f:x": {}})),
        }]);
        let mut objects: Vec<(String, Value)> = vec![
            ("metadata.labels".into(), labelled),
            ("metadata.managedFields".into(), managed),
        ];
        for (path, schema) in &places {
            let object = filled(base, spec_schema, path, schema, 256 << 10);
            objects.push((format!("spec.{}", path.join(".")), object));
        }
        for (path, object) in &objects {
            let body = review_of(object, kind, *kind != "ClusterSecretStore");
            let charge = parsed_bound(body.len(), values(&body));
            for endpoint in [Endpoint::Validate, Endpoint::Mutate] {
                let (answer, peak) = peak_of(|| rt.block_on(review(&state, endpoint, &body)));
                drop(answer);
                let at = format!("{kind} {path} {endpoint:?}");
                assert!(
                    peak <= charge,
                    "{at}: allocated {peak} bytes at most, charged {charge} ({} values)",
                    values(&body)
                );
                let ratio = peak as f64 / values(&body) as f64;
                if std::env::var_os("SHOW").is_some() {
                    eprintln!("{ratio:7.1} {at}");
                }
                if ratio > worst.0 {
                    worst = (ratio, at);
                }
                checked += 1;
            }
        }
    }
    eprintln!(
        "{checked} reviews; the most per value: {:.0} bytes ({})",
        worst.0, worst.1
    );
}
