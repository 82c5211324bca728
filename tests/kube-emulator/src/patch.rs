//! JSON patch, JSON merge patch and strategic merge patch for built-in kinds.

use crate::status::ApiError;
use serde_json::{Map, Value};

/// How a list field of a built-in kind merges under a strategic merge patch.
enum ListStrategy {
    Replace,
    MergeByKey(&'static str),
    MergePrimitive,
}

fn list_strategy(path: &[String]) -> ListStrategy {
    let p: Vec<&str> = path.iter().map(|s| s.as_str()).collect();
    match p.as_slice() {
        ["metadata", "ownerReferences"] => ListStrategy::MergeByKey("uid"),
        ["metadata", "finalizers"] => ListStrategy::MergePrimitive,
        ["webhooks"] => ListStrategy::MergeByKey("name"),
        ["secrets"] => ListStrategy::MergeByKey("name"),
        ["imagePullSecrets"] => ListStrategy::MergeByKey("name"),
        _ => ListStrategy::Replace,
    }
}

pub fn json_patch(target: &Value, patch_body: &[u8]) -> Result<Value, ApiError> {
    let ops: Vec<Value> = serde_json::from_slice(patch_body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    let mut doc = target.clone();
    for op in ops {
        // As in kube-apiserver's JSON patch library, testing for null passes when the
        // path is absent (kube_runtime::finalizer relies on this).
        if op["op"] == "test"
            && op["value"].is_null()
            && op["path"]
                .as_str()
                .is_some_and(|p| doc.pointer(p).is_none())
        {
            continue;
        }
        let p: json_patch::Patch = serde_json::from_value(Value::Array(vec![op]))
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
        json_patch::patch(&mut doc, &p).map_err(|e| {
            // kube-apiserver reports failed JSON patch operations as 422.
            ApiError::new(
                422,
                "Invalid",
                format!("the server rejected our request due to an error in our request: {e}"),
            )
        })?;
    }
    Ok(doc)
}

pub fn merge_patch(target: &Value, patch_body: &[u8]) -> Result<Value, ApiError> {
    let p: Value = serde_json::from_slice(patch_body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    if !p.is_object() {
        return Err(ApiError::bad_request(
            "json: cannot unmarshal into Go value of type map[string]interface {}",
        ));
    }
    let mut doc = target.clone();
    json_patch::merge(&mut doc, &p);
    Ok(doc)
}

pub fn strategic_merge_patch(target: &Value, patch_body: &[u8]) -> Result<Value, ApiError> {
    let p: Value = serde_json::from_slice(patch_body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    let Value::Object(p) = p else {
        return Err(ApiError::bad_request(
            "json: cannot unmarshal into Go value of type map[string]interface {}",
        ));
    };
    let mut doc = target.clone();
    if !doc.is_object() {
        doc = Value::Object(Map::new());
    }
    merge_map(&mut doc, &p, &mut vec![])?;
    Ok(doc)
}

fn merge_map(
    target: &mut Value,
    patch: &Map<String, Value>,
    path: &mut Vec<String>,
) -> Result<(), ApiError> {
    match patch.get("$patch").and_then(|v| v.as_str()) {
        Some("replace") => {
            let mut m = patch.clone();
            m.remove("$patch");
            *target = Value::Object(m);
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Null;
            return Ok(());
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Unknown patch type: {other}"
            )));
        }
        None => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let retain: Option<Vec<String>> = patch.get("$retainKeys").and_then(|v| {
        v.as_array().map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
    });
    for (k, v) in patch {
        if k == "$retainKeys" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(del)) = (target.get_mut(field), v.as_array()) {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        let t = target.as_object_mut().expect("made an object above");
        if v.is_null() {
            t.remove(k);
            continue;
        }
        path.push(k.clone());
        match v {
            Value::Object(pm) => {
                let entry = t.entry(k.clone()).or_insert(Value::Null);
                merge_map(entry, pm, path)?;
                if entry.is_null() {
                    t.remove(k);
                }
            }
            Value::Array(items) => {
                let merged = match (list_strategy(path), t.get(k)) {
                    (ListStrategy::MergeByKey(key), Some(Value::Array(cur))) => {
                        merge_keyed_list(cur.clone(), items, key, path)?
                    }
                    (ListStrategy::MergeByKey(_), _) => items
                        .iter()
                        .filter(|i| i.get("$patch").is_none())
                        .cloned()
                        .collect(),
                    (ListStrategy::MergePrimitive, Some(Value::Array(cur))) => {
                        let mut out = cur.clone();
                        for i in items {
                            if !out.contains(i) {
                                out.push(i.clone());
                            }
                        }
                        out
                    }
                    _ => items.clone(),
                };
                t.insert(k.clone(), Value::Array(merged));
            }
            other => {
                t.insert(k.clone(), other.clone());
            }
        }
        path.pop();
    }
    if let (Some(keys), Some(t)) = (retain, target.as_object_mut()) {
        t.retain(|k, _| keys.contains(k));
    }
    Ok(())
}

fn merge_keyed_list(
    mut cur: Vec<Value>,
    items: &[Value],
    key: &str,
    path: &mut Vec<String>,
) -> Result<Vec<Value>, ApiError> {
    for item in items {
        let Some(obj) = item.as_object() else {
            return Err(ApiError::bad_request(format!(
                "unable to find api field in struct for the merge key {key:?}"
            )));
        };
        let Some(kv) = obj.get(key) else {
            return Err(ApiError::bad_request(format!(
                "map: {} does not contain declared merge key: {key}",
                Value::Object(obj.clone())
            )));
        };
        let pos = cur.iter().position(|c| c.get(key) == Some(kv));
        if obj.get("$patch").and_then(|v| v.as_str()) == Some("delete") {
            if let Some(p) = pos {
                cur.remove(p);
            }
            continue;
        }
        match pos {
            Some(p) => merge_map(&mut cur[p], obj, path)?,
            None => {
                let mut fresh = Value::Object(Map::new());
                merge_map(&mut fresh, obj, path)?;
                cur.push(fresh);
            }
        }
    }
    Ok(cur)
}
