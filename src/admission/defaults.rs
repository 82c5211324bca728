//! The mutating webhook's defaults, as pure functions over the raw object.
//!
//! They work on JSON rather than the typed objects because the typed objects already carry
//! serde defaults, so "absent" cannot be told from "set to the default" there. Only absent (or
//! null) fields are set; parents are created when missing.

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
    match kind {
        Kind::ExternalSecret => external_secret(obj),
        Kind::SecretStore | Kind::ClusterSecretStore => store(obj),
    }
}

/// The defaults as a JSON patch against `obj`; `None` when the object is already complete, so
/// that the response carries no patch at all.
pub fn patch(kind: Kind, obj: &Value) -> Option<json_patch::Patch> {
    let mut defaulted = obj.clone();
    if !apply(kind, &mut defaulted) {
        return None;
    }
    let patch = json_patch::diff(obj, &defaulted);
    (!patch.0.is_empty()).then_some(patch)
}

fn external_secret(obj: &mut Value) -> bool {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
    let Some(spec) = child(obj, "spec") else {
        return false;
    };
    let mut changed = set_absent(spec, "refreshInterval", REFRESH_INTERVAL);
    changed |= set_absent(spec, "refreshPolicy", "Periodic");
    if let Some(store_ref) = child(spec, "secretStoreRef") {
        changed |= set_absent(store_ref, "kind", "SecretStore");
    }
    if let Some(target) = child(spec, "target") {
        if let Some(name) = name {
            changed |= set_absent(target, "name", name);
        }
        changed |= set_absent(target, "creationPolicy", "Owner");
        changed |= set_absent(target, "deletionPolicy", "Retain");
    }
    changed
}

fn store(obj: &mut Value) -> bool {
    // Without a Vault provider there is nothing to default: the rules refuse the store.
    let Some(vault) = obj
        .pointer_mut("/spec/provider/vault")
        .filter(|v| v.is_object())
    else {
        return false;
    };
    let mut changed = set_absent(vault, "version", "v2");
    if let Some(auth) = vault.get_mut("auth").filter(|a| a.is_object()) {
        for (method, field, default) in AUTH_MOUNT_DEFAULTS {
            if let Some(m) = auth.get_mut(method).filter(|m| m.is_object()) {
                changed |= set_absent(m, field, default);
            }
        }
    }
    changed
}

/// The object under `key`, created (as `{}`) when absent or null; a created parent always
/// receives at least one default, so its creation shows in the returned change flag. `None` when the field holds
/// something other than an object: the schema refuses that, defaults leave it alone.
fn child<'a>(obj: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    let map = obj.as_object_mut()?;
    let slot = map
        .entry(key.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    slot.is_object().then_some(slot)
}

fn set_absent(obj: &mut Value, key: &str, value: impl Into<String>) -> bool {
    let Some(map) = obj.as_object_mut() else {
        return false;
    };
    match map.get(key) {
        Some(v) if !v.is_null() => false,
        _ => {
            map.insert(key.to_owned(), Value::String(value.into()));
            true
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
