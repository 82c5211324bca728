//! The mutating webhook's defaults, as pure functions over the raw object.
//!
//! They work on JSON rather than the typed objects because the typed objects already carry
//! serde defaults, so "absent" cannot be told from "set to the default" there. Only absent (or
//! null) fields are set; parents are created when missing.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use serde_json::{Map, Value};

use super::Kind;

/// ESO's default refresh interval, in Go's `Duration.String` form.
pub const REFRESH_INTERVAL: &str = "1h0m0s";

/// Each Vault auth method with its mount path field and default mount path.
pub const AUTH_MOUNT_DEFAULTS: [(&str, &str, &str); 6] = [
    ("appRole", "path", "approle"),
    ("kubernetes", "mountPath", "kubernetes"),
    ("ldap", "path", "ldap"),
    ("userPass", "path", "userpass"),
    ("jwt", "path", "jwt"),
    ("cert", "path", "cert"),
];

/// Sets the defaults of `kind` on `obj` in place; returns whether anything changed.
pub fn apply(kind: Kind, obj: &mut Value) -> bool {
    match patch(kind, obj) {
        None => false,
        // The patch was computed against this very object: every path exists or is an add
        // at a member of an existing object, so it always applies.
        Some(p) => json_patch::patch(obj, &p).is_ok(),
    }
}

/// The defaults as a JSON patch against `obj`; `None` when the object is already complete, so
/// that the response carries no patch at all.
pub fn patch(kind: Kind, obj: &Value) -> Option<Patch> {
    let name = obj.pointer("/metadata/name").and_then(Value::as_str);
    patch_parts(kind, name, obj)
}

/// [`patch`] for an object given as its name and the rest of it (`spec` at the top), as a
/// `DynamicObject` holds it; computed without copying the object.
pub fn patch_parts(kind: Kind, name: Option<&str>, obj: &Value) -> Option<Patch> {
    let mut ops = Vec::new();
    match kind {
        Kind::ExternalSecret => external_secret(name.filter(|n| !n.is_empty()), obj, &mut ops),
        Kind::SecretStore | Kind::ClusterSecretStore => store(obj, &mut ops),
    }
    (!ops.is_empty()).then_some(Patch(ops))
}

/// A field is absent when missing or null (an explicit null is how clients clear a field).
fn absent(obj: &Value, key: &str) -> bool {
    obj.get(key).is_none_or(Value::is_null)
}

fn add(ops: &mut Vec<PatchOperation>, path: &[&str], value: Value) {
    ops.push(PatchOperation::Add(AddOperation {
        path: PointerBuf::from_tokens(path.iter().copied()),
        value,
    }));
}

/// Adds each absent `(field, default)` of the object at `path`, or the whole object with all
/// of them when the object itself is absent.
fn fill(ops: &mut Vec<PatchOperation>, parent: &Value, path: &[&str], fields: &[(&str, Value)]) {
    let key = path.last().expect("a non-empty path");
    match parent.get(*key).filter(|v| !v.is_null()) {
        None => {
            let obj: Map<String, Value> = fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            add(ops, path, Value::Object(obj));
        }
        // Something other than an object: the schema refuses it, defaults leave it alone.
        Some(o) if !o.is_object() => {}
        Some(o) => {
            for (k, v) in fields {
                if absent(o, k) {
                    let mut p = path.to_vec();
                    p.push(k);
                    add(ops, &p, v.clone());
                }
            }
        }
    }
}

fn external_secret(name: Option<&str>, obj: &Value, ops: &mut Vec<PatchOperation>) {
    let mut target = Vec::with_capacity(3);
    if let Some(n) = name {
        target.push(("name", Value::from(n)));
    }
    target.push(("creationPolicy", Value::from("Owner")));
    target.push(("deletionPolicy", Value::from("Retain")));
    let Some(spec) = obj.get("spec").filter(|s| !s.is_null()) else {
        let spec = serde_json::json!({
            "refreshInterval": REFRESH_INTERVAL,
            "refreshPolicy": "Periodic",
            "secretStoreRef": {"kind": "SecretStore"},
            "target": target.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<Map<_, _>>(),
        });
        add(ops, &["spec"], spec);
        return;
    };
    if !spec.is_object() {
        return;
    }
    for (k, v) in [
        ("refreshInterval", REFRESH_INTERVAL),
        ("refreshPolicy", "Periodic"),
    ] {
        if absent(spec, k) {
            add(ops, &["spec", k], Value::from(v));
        }
    }
    fill(
        ops,
        spec,
        &["spec", "secretStoreRef"],
        &[("kind", Value::from("SecretStore"))],
    );
    fill(ops, spec, &["spec", "target"], &target);
}

fn store(obj: &Value, ops: &mut Vec<PatchOperation>) {
    // Without a Vault provider there is nothing to default: the rules refuse the store.
    let Some(vault) = obj
        .pointer("/spec/provider/vault")
        .filter(|v| v.is_object())
    else {
        return;
    };
    if absent(vault, "version") {
        add(
            ops,
            &["spec", "provider", "vault", "version"],
            Value::from("v2"),
        );
    }
    let Some(auth) = vault.get("auth").filter(|a| a.is_object()) else {
        return;
    };
    for (method, field, default) in AUTH_MOUNT_DEFAULTS {
        if let Some(m) = auth.get(method).filter(|m| m.is_object())
            && absent(m, field)
        {
            add(
                ops,
                &["spec", "provider", "vault", "auth", method, field],
                Value::from(default),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    const VERSIONS: [&str; 2] = ["v1", "v1beta1"];

    fn es(version: &str, spec: Value) -> Value {
        json!({
            "apiVersion": format!("external-secrets.io/{version}"),
            "kind": "ExternalSecret",
            "metadata": {"name": "app", "namespace": "team-a"},
            "spec": spec,
        })
    }

    fn store(version: &str, kind: &str, vault: Value) -> Value {
        json!({
            "apiVersion": format!("external-secrets.io/{version}"),
            "kind": kind,
            "metadata": {"name": "vault"},
            "spec": {"provider": {"vault": vault}},
        })
    }

    /// The object after applying the returned patch (unchanged when there is none).
    fn patched(kind: Kind, obj: &Value) -> Value {
        let mut out = obj.clone();
        if let Some(p) = patch(kind, obj) {
            assert!(!p.0.is_empty());
            json_patch::patch(&mut out, &p).expect("the patch applies");
        }
        out
    }

    #[test]
    fn external_secret_defaults() {
        let full_spec = json!({
            "secretStoreRef": {"name": "vault", "kind": "SecretStore"},
            "refreshInterval": "1h0m0s",
            "refreshPolicy": "Periodic",
            "target": {"name": "app", "creationPolicy": "Owner", "deletionPolicy": "Retain"},
            "data": [{"secretKey": "a", "remoteRef": {"key": "x"}}],
        });
        // (case, spec given, spec expected)
        let cases = [
            (
                "everything absent",
                json!({"secretStoreRef": {"name": "vault"}, "data": []}),
                json!({
                    "secretStoreRef": {"name": "vault", "kind": "SecretStore"},
                    "refreshInterval": "1h0m0s",
                    "refreshPolicy": "Periodic",
                    "target": {"name": "app", "creationPolicy": "Owner", "deletionPolicy": "Retain"},
                    "data": [],
                }),
            ),
            (
                "set values are kept",
                json!({
                    "secretStoreRef": {"name": "css", "kind": "ClusterSecretStore"},
                    "refreshInterval": "0",
                    "refreshPolicy": "CreatedOnce",
                    "target": {"name": "other", "creationPolicy": "Merge", "deletionPolicy": "Delete"},
                }),
                json!({
                    "secretStoreRef": {"name": "css", "kind": "ClusterSecretStore"},
                    "refreshInterval": "0",
                    "refreshPolicy": "CreatedOnce",
                    "target": {"name": "other", "creationPolicy": "Merge", "deletionPolicy": "Delete"},
                }),
            ),
            (
                "partial target",
                json!({"secretStoreRef": {"name": "v", "kind": "SecretStore"}, "refreshInterval": "5m",
                       "refreshPolicy": "OnChange", "target": {"creationPolicy": "Orphan"}}),
                json!({"secretStoreRef": {"name": "v", "kind": "SecretStore"}, "refreshInterval": "5m",
                       "refreshPolicy": "OnChange",
                       "target": {"name": "app", "creationPolicy": "Orphan", "deletionPolicy": "Retain"}}),
            ),
            (
                "nulls count as absent",
                json!({"secretStoreRef": null, "refreshInterval": null, "target": {"name": null}}),
                json!({"secretStoreRef": {"kind": "SecretStore"}, "refreshInterval": "1h0m0s",
                       "refreshPolicy": "Periodic",
                       "target": {"name": "app", "creationPolicy": "Owner", "deletionPolicy": "Retain"}}),
            ),
            ("complete", full_spec.clone(), full_spec.clone()),
        ];
        for v in VERSIONS {
            for (name, given, want) in &cases {
                let obj = es(v, given.clone());
                let out = patched(Kind::ExternalSecret, &obj);
                assert_eq!(out["spec"], *want, "{v} {name}");
                assert_eq!(out["metadata"], obj["metadata"], "{v} {name}");
            }
            // A complete object gets no patch at all (not an empty one).
            assert!(patch(Kind::ExternalSecret, &es(v, full_spec.clone())).is_none());
            // No spec at all: created with its defaults.
            let mut bare = es(v, Value::Null);
            bare.as_object_mut().unwrap().remove("spec");
            let out = patched(Kind::ExternalSecret, &bare);
            assert_eq!(out["spec"]["refreshInterval"], "1h0m0s", "{v}");
            assert_eq!(out["spec"]["target"]["name"], "app", "{v}");
        }
    }

    #[test]
    fn external_secret_without_a_name_gets_no_target_name() {
        let mut obj = es("v1", json!({"secretStoreRef": {"name": "v"}}));
        obj["metadata"] = json!({"generateName": "app-"});
        let out = patched(Kind::ExternalSecret, &obj);
        assert!(out["spec"]["target"].get("name").is_none(), "{out}");
        assert_eq!(out["spec"]["target"]["creationPolicy"], "Owner");
    }

    #[test]
    fn store_defaults() {
        let server = json!("https://vault:8200");
        for v in VERSIONS {
            for kind in [Kind::SecretStore, Kind::ClusterSecretStore] {
                for (method, field, default) in AUTH_MOUNT_DEFAULTS {
                    let obj = store(
                        v,
                        kind.as_str(),
                        json!({"server": server, "auth": {method: {"role": "r"}}}),
                    );
                    let out = patched(kind, &obj);
                    let vault = &out["spec"]["provider"]["vault"];
                    assert_eq!(vault["version"], "v2", "{v} {kind:?} {method}");
                    assert_eq!(
                        vault["auth"][method][field], default,
                        "{v} {kind:?} {method}"
                    );
                    assert_eq!(vault["auth"][method]["role"], "r");
                    // Applying the defaults again changes nothing.
                    assert!(patch(kind, &out).is_none(), "{v} {kind:?} {method}");
                }
                // Set values are kept; a complete store gets no patch.
                let obj = store(
                    v,
                    kind.as_str(),
                    json!({"server": server, "version": "v1",
                           "auth": {"kubernetes": {"mountPath": "k8s-prod", "role": "r"}}}),
                );
                assert!(patch(kind, &obj).is_none(), "{v} {kind:?}");
                // Token auth has no mount: only the version.
                let obj = store(
                    v,
                    kind.as_str(),
                    json!({"server": server, "auth": {"tokenSecretRef": {"name": "t", "key": "k"}}}),
                );
                let p = patch(kind, &obj).expect("version default");
                assert_eq!(
                    serde_json::to_value(&p).unwrap(),
                    json!([{"op": "add", "path": "/spec/provider/vault/version", "value": "v2"}])
                );
                // Without a Vault provider there is nothing to default.
                let mut other = store(v, kind.as_str(), Value::Null);
                other["spec"]["provider"] = json!({"aws": {}});
                assert!(patch(kind, &other).is_none());
            }
        }
    }
}
