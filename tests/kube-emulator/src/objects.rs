//! Per-kind rules of the built-in resources: defaults, validation and the
//! server-maintained parts (CRD status, namespace phase).

use crate::registry::{ResourceDef, def_from_crd};
use crate::status::{ApiError, ApiResult};
use base64::Engine;
use regex::Regex;
use serde_json::{Map, Value, json};
use std::sync::LazyLock;

pub fn now_ts() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

static DNS1123_SUBDOMAIN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
        .expect("static regex")
});
static DNS1123_LABEL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").expect("static regex"));
static CONFIG_KEY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[-._a-zA-Z0-9]+$").expect("static regex"));

/// The error detail for an invalid object name, as apimachinery words it.
pub fn name_error(def: &ResourceDef, name: &str) -> Option<String> {
    if def.custom {
        // Custom resources are checked by the schema module.
        return None;
    }
    if def.plural == "namespaces" {
        if name.len() > 63 || !DNS1123_LABEL.is_match(name) {
            return Some(format!(
                "Invalid value: \"{name}\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
            ));
        }
        return None;
    }
    if name.len() > 253 || !DNS1123_SUBDOMAIN.is_match(name) {
        return Some(format!(
            "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        ));
    }
    None
}

fn invalid(def: &ResourceDef, name: &str, field: &str, reason: &str, detail: String) -> ApiError {
    ApiError::invalid_field(&def.group, &def.kind, name, field, reason, &detail)
}

fn check_keys(def: &ResourceDef, name: &str, field: &str, m: &Map<String, Value>) -> ApiResult<()> {
    let re = &*CONFIG_KEY;
    for k in m.keys() {
        if k.len() > 253 || !re.is_match(k) {
            return Err(invalid(
                def,
                name,
                &format!("{field}[{k}]"),
                "FieldValueInvalid",
                format!(
                    "Invalid value: \"{k}\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
                ),
            ));
        }
    }
    Ok(())
}

/// ObjectMeta's `labels`, `annotations`, `ownerReferences` and `finalizers` are `omitempty`:
/// the API server stores and returns no field where a write (an apply that removed the last
/// entry, say) left an empty one.
fn drop_empty_metadata(obj: &mut Value) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    for field in ["labels", "annotations", "ownerReferences", "finalizers"] {
        let empty = match meta.get(field) {
            Some(Value::Object(m)) => m.is_empty(),
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Null) => true,
            _ => false,
        };
        if empty {
            meta.remove(field);
        }
    }
}

/// Normalise and validate a built-in object before it is stored.
pub fn prepare(def: &ResourceDef, obj: &mut Value, old: Option<&Value>) -> ApiResult<()> {
    drop_empty_metadata(obj);
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    match (def.group.as_str(), def.plural.as_str()) {
        ("", "secrets") => {
            // stringData is write-only: merged into data, then dropped.
            if let Some(Value::Object(sd)) =
                obj.as_object_mut().and_then(|m| m.remove("stringData"))
            {
                let data = obj
                    .as_object_mut()
                    .expect("object")
                    .entry("data")
                    .or_insert_with(|| json!({}));
                if !data.is_object() {
                    *data = json!({});
                }
                for (k, v) in sd {
                    let s = v.as_str().unwrap_or_default();
                    data[k.as_str()] = json!(base64::engine::general_purpose::STANDARD.encode(s));
                }
            }
            if obj["type"].as_str().unwrap_or_default().is_empty() {
                obj["type"] = json!("Opaque");
            }
            if let Some(m) = obj["data"].as_object() {
                check_keys(def, &name, "data", m)?;
                for v in m.values() {
                    let ok = match v {
                        Value::String(s) => {
                            base64::engine::general_purpose::STANDARD.decode(s).is_ok()
                        }
                        Value::Null => true,
                        _ => false,
                    };
                    if !ok {
                        return Err(ApiError::bad_request(
                            "illegal base64 data at input byte 0".to_string(),
                        ));
                    }
                }
            }
            if let Some(old) = old {
                if old["type"] != obj["type"] {
                    return Err(invalid(
                        def,
                        &name,
                        "type",
                        "FieldValueInvalid",
                        format!(
                            "Invalid value: {:?}: field is immutable",
                            obj["type"].as_str().unwrap_or_default()
                        ),
                    ));
                }
                immutable_data(def, &name, obj, old)?;
            }
        }
        ("", "configmaps") => {
            if let Some(m) = obj["data"].as_object() {
                check_keys(def, &name, "data", m)?;
            }
            if let Some(old) = old {
                immutable_data(def, &name, obj, old)?;
            }
        }
        ("", "namespaces") => {
            if obj["spec"]["finalizers"].is_null() {
                obj["spec"] = json!({"finalizers": ["kubernetes"]});
            }
            let phase = old
                .and_then(|o| o["status"]["phase"].as_str())
                .unwrap_or("Active")
                .to_string();
            obj["status"] = json!({"phase": phase});
            if let Some(md) = obj["metadata"].as_object_mut() {
                let labels = md.entry("labels").or_insert_with(|| json!({}));
                if !labels.is_object() {
                    *labels = json!({});
                }
                labels["kubernetes.io/metadata.name"] = json!(name);
            }
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            let d = def_from_crd(obj)
                .map_err(|(field, reason, detail)| invalid(def, &name, &field, &reason, detail))?;
            if let Some(old) = old
                && (old["spec"]["group"] != obj["spec"]["group"]
                    || old["spec"]["names"]["plural"] != obj["spec"]["names"]["plural"])
            {
                return Err(invalid(
                    def,
                    &name,
                    "spec.group",
                    "FieldValueInvalid",
                    format!(
                        "Invalid value: {}: field is immutable",
                        obj["spec"]["group"]
                    ),
                ));
            }
            set_crd_status(obj, old, &d);
        }
        _ => {}
    }
    Ok(())
}

fn immutable_data(def: &ResourceDef, name: &str, obj: &Value, old: &Value) -> ApiResult<()> {
    if old["immutable"] == json!(true) {
        if obj["data"] != old["data"] || obj["binaryData"] != old["binaryData"] {
            return Err(invalid(
                def,
                name,
                "data",
                "FieldValueForbidden",
                "Forbidden: field is immutable when `immutable` is set".into(),
            ));
        }
        if obj["immutable"] != json!(true) {
            return Err(invalid(
                def,
                name,
                "immutable",
                "FieldValueForbidden",
                "Forbidden: field is immutable when `immutable` is set".into(),
            ));
        }
    }
    Ok(())
}

/// The status the apiextensions controllers would converge to.
fn set_crd_status(obj: &mut Value, old: Option<&Value>, d: &ResourceDef) {
    let now = now_ts();
    let mut stored: Vec<String> = old
        .and_then(|o| o["status"]["storedVersions"].as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if !stored.contains(&d.storage_version) {
        stored.push(d.storage_version.clone());
    }
    let mut accepted = json!({"plural": d.plural, "singular": d.singular, "kind": d.kind, "listKind": d.list_kind});
    if !d.short_names.is_empty() {
        accepted["shortNames"] = json!(d.short_names);
    }
    if !d.categories.is_empty() {
        accepted["categories"] = json!(d.categories);
    }
    let old_time = |t: &str| {
        old.and_then(|o| o["status"]["conditions"].as_array())
            .and_then(|cs| cs.iter().find(|c| c["type"] == json!(t)))
            .and_then(|c| c["lastTransitionTime"].as_str().map(String::from))
            .unwrap_or_else(|| now.clone())
    };
    obj["status"] = json!({
        "acceptedNames": accepted,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": old_time("NamesAccepted")},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": old_time("Established")},
        ],
        "storedVersions": stored,
    });
}

/// Whether the resource keeps `metadata.generation`.
pub fn tracks_generation(def: &ResourceDef) -> bool {
    def.custom || def.group == "apiextensions.k8s.io" || def.group == "admissionregistration.k8s.io"
}

/// The object without metadata (and without status when status is a subresource),
/// for deciding whether the generation moves.
pub fn spec_part(def: &ResourceDef, obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("apiVersion");
        m.remove("kind");
        if def.status_subresource {
            m.remove("status");
        }
    }
    o
}

/// The object compared for no-op detection: version and ownership times ignored.
pub fn comparable(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(md) = o["metadata"].as_object_mut() {
        md.remove("resourceVersion");
        if let Some(Value::Array(mf)) = md.get_mut("managedFields") {
            for e in mf {
                if let Some(e) = e.as_object_mut() {
                    e.remove("time");
                }
            }
        }
    }
    o
}
