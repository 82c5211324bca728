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
