//! Field ownership (`metadata.managedFields`, FieldsV1) and server-side apply.
//!
//! Field sets are sets of leaf paths. Maps are granular (each key owned alone)
//! unless the schema says `x-kubernetes-map-type: atomic`; lists are atomic unless
//! they are associative (`x-kubernetes-list-type: map` with keys, or a known
//! built-in merge key such as ownerReferences by uid) or sets.

use serde_json::{Map, Value, json};
use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PE {
    Field(String),
    /// Canonical JSON of the key fields of an associative list item.
    Key(String),
    /// Canonical JSON of a set item.
    Value(String),
    /// The associative list item itself.
    Dot,
}

pub type Path = Vec<PE>;
pub type FieldSet = BTreeSet<Path>;

#[derive(Debug, Clone)]
enum ListType {
    Atomic,
    Map(Vec<String>),
    Set,
}

/// Where shapes come from: a CRD schema, or the built-in table.
#[derive(Clone, Copy)]
pub struct Shape<'a> {
    pub schema: Option<&'a Value>,
}

fn builtin_list(fpath: &[String]) -> ListType {
    let p: Vec<&str> = fpath.iter().map(|s| s.as_str()).collect();
    match p.as_slice() {
        ["metadata", "ownerReferences"] => ListType::Map(vec!["uid".into()]),
        ["metadata", "finalizers"] => ListType::Set,
        ["webhooks"] => ListType::Map(vec!["name".into()]),
        ["secrets"] | ["imagePullSecrets"] => ListType::Map(vec!["name".into()]),
        ["spec", "versions"] => ListType::Map(vec!["name".into()]),
        _ => ListType::Atomic,
    }
}

fn child_schema<'a>(s: Option<&'a Value>, field: &str) -> Option<&'a Value> {
    let s = s?;
    s.get("properties")
        .and_then(|p| p.get(field))
        .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()))
}

fn list_type(shape: Shape, s: Option<&Value>, fpath: &[String]) -> ListType {
    if fpath.first().map(|s| s.as_str()) == Some("metadata") || shape.schema.is_none() {
        return builtin_list(fpath);
    }
    match s.and_then(|s| s["x-kubernetes-list-type"].as_str()) {
        Some("map") => ListType::Map(
            s.and_then(|s| s["x-kubernetes-list-map-keys"].as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|k| k.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
        ),
        Some("set") => ListType::Set,
        _ => ListType::Atomic,
    }
}

fn map_atomic(s: Option<&Value>) -> bool {
    s.is_some_and(|s| {
        s["x-kubernetes-map-type"] == json!("atomic")
            || (s["type"] == json!("object")
                && s.get("properties").is_none()
                && s.get("additionalProperties").is_none()
                && s["x-kubernetes-preserve-unknown-fields"] != json!(true))
    })
}

fn key_of(item: &Value, keys: &[String]) -> String {
    let mut m = Map::new();
    for k in keys {
        if let Some(v) = item.get(k) {
            m.insert(k.clone(), v.clone());
        }
    }
    Value::Object(m).to_string()
}

fn walk(
    v: &Value,
    shape: Shape,
    s: Option<&Value>,
    path: &mut Path,
    fpath: &mut Vec<String>,
    out: &mut FieldSet,
) {
    match v {
        Value::Object(m) if !map_atomic(s) || fpath.is_empty() => {
            if m.is_empty() && !path.is_empty() {
                out.insert(path.clone());
            }
            for (k, child) in m {
                path.push(PE::Field(k.clone()));
                fpath.push(k.clone());
                let cs = if fpath.len() == 1 && k == "metadata" {
                    None
                } else {
                    child_schema(s, k)
                };
                walk(child, shape, cs, path, fpath, out);
                fpath.pop();
                path.pop();
            }
        }
        Value::Array(items) => match list_type(shape, s, fpath) {
            ListType::Map(keys) if !keys.is_empty() => {
                let is = s.and_then(|s| s.get("items"));
                for item in items {
                    path.push(PE::Key(key_of(item, &keys)));
                    path.push(PE::Dot);
                    out.insert(path.clone());
                    path.pop();
                    if let Value::Object(m) = item {
                        for (k, child) in m {
                            path.push(PE::Field(k.clone()));
                            fpath.push(k.clone());
                            walk(child, shape, child_schema(is, k), path, fpath, out);
                            fpath.pop();
                            path.pop();
                        }
                    }
                    path.pop();
                }
            }
            ListType::Set => {
                for item in items {
                    path.push(PE::Value(item.to_string()));
                    out.insert(path.clone());
                    path.pop();
                }
            }
            _ => {
                out.insert(path.clone());
            }
        },
        _ => {
            out.insert(path.clone());
        }
    }
}

/// Paths never tracked: identity and server-set metadata.
fn ignored(p: &Path) -> bool {
    match p.first() {
        Some(PE::Field(f)) if f == "apiVersion" || f == "kind" => true,
        Some(PE::Field(f)) if f == "metadata" => matches!(p.get(1), Some(PE::Field(m)) if matches!(
            m.as_str(),
            "name" | "namespace" | "uid" | "resourceVersion" | "generation" | "creationTimestamp"
                | "deletionTimestamp" | "deletionGracePeriodSeconds" | "managedFields" | "selfLink"
        )),
        _ => false,
    }
}

/// Which top-level part a write may touch: everything but status, only status, or all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    All,
    MainOnly,
    StatusOnly,
}

fn in_scope(p: &Path, scope: Scope) -> bool {
    let is_status = matches!(p.first(), Some(PE::Field(f)) if f == "status");
    match scope {
        Scope::All => true,
        Scope::MainOnly => !is_status,
        Scope::StatusOnly => is_status,
    }
}

pub fn field_set(v: &Value, shape: Shape, scope: Scope) -> FieldSet {
    let mut out = FieldSet::new();
    walk(v, shape, shape.schema, &mut vec![], &mut vec![], &mut out);
    out.retain(|p| !ignored(p) && in_scope(p, scope));
    out
}

pub fn value_at<'a>(v: &'a Value, p: &[PE]) -> Option<&'a Value> {
    let mut cur = v;
    let mut i = 0;
    while i < p.len() {
        match &p[i] {
            PE::Field(f) => cur = cur.get(f)?,
            PE::Key(k) => {
                let want: Map<String, Value> = serde_json::from_str(k).ok()?;
                cur = cur
                    .as_array()?
                    .iter()
                    .find(|it| want.iter().all(|(wk, wv)| it.get(wk) == Some(wv)))?;
            }
            PE::Value(x) => {
                let want: Value = serde_json::from_str(x).ok()?;
                cur = cur.as_array()?.iter().find(|it| **it == want)?;
            }
            PE::Dot => {}
        }
        i += 1;
    }
    Some(cur)
}

fn remove_at(v: &mut Value, p: &[PE]) {
    let Some((last, parent)) = p.split_last() else {
        return;
    };
    match last {
        PE::Dot => {
            // Remove the list item named by the Key before the Dot.
            if let Some((PE::Key(k), list_path)) = parent.split_last()
                && let Some(Value::Array(items)) = value_at_mut(v, list_path)
                && let Ok(want) = serde_json::from_str::<Map<String, Value>>(k)
            {
                items.retain(|it| !want.iter().all(|(wk, wv)| it.get(wk) == Some(wv)));
            }
        }
        PE::Field(f) => {
            if let Some(Value::Object(m)) = value_at_mut(v, parent) {
                m.remove(f);
            }
        }
        PE::Value(x) => {
            if let (Some(Value::Array(items)), Ok(want)) =
                (value_at_mut(v, parent), serde_json::from_str::<Value>(x))
            {
                items.retain(|it| *it != want);
            }
        }
        PE::Key(_) => {}
    }
}

fn value_at_mut<'a>(v: &'a mut Value, p: &[PE]) -> Option<&'a mut Value> {
    let mut cur = v;
    for e in p {
        match e {
            PE::Field(f) => cur = cur.get_mut(f)?,
            PE::Key(k) => {
                let want: Map<String, Value> = serde_json::from_str(k).ok()?;
                cur = cur
                    .as_array_mut()?
                    .iter_mut()
                    .find(|it| want.iter().all(|(wk, wv)| it.get(wk) == Some(wv)))?;
            }
            PE::Value(x) => {
                let want: Value = serde_json::from_str(x).ok()?;
                cur = cur.as_array_mut()?.iter_mut().find(|it| **it == want)?;
            }
            PE::Dot => {}
        }
    }
    Some(cur)
}

/// Merge an apply configuration into the live object.
fn merge(live: &mut Value, cfg: &Value, shape: Shape, s: Option<&Value>, fpath: &mut Vec<String>) {
    match cfg {
        Value::Object(cm) if !map_atomic(s) || fpath.is_empty() => {
            if !live.is_object() {
                *live = Value::Object(Map::new());
            }
            for (k, cv) in cm {
                if cv.is_null() {
                    continue;
                }
                fpath.push(k.clone());
                let cs = if fpath.len() == 1 && k == "metadata" {
                    None
                } else {
                    child_schema(s, k)
                };
                let lm = live.as_object_mut().expect("object");
                let slot = lm.entry(k.clone()).or_insert(Value::Null);
                merge(slot, cv, shape, cs, fpath);
                fpath.pop();
            }
        }
        Value::Array(items) => match list_type(shape, s, fpath) {
            ListType::Map(keys) if !keys.is_empty() => {
                if !live.is_array() {
                    *live = Value::Array(vec![]);
                }
                let is = s.and_then(|s| s.get("items"));
                let la = live.as_array_mut().expect("array");
                for item in items {
                    let pos = la
                        .iter()
                        .position(|l| keys.iter().all(|k| l.get(k) == item.get(k)));
                    match pos {
                        Some(p) => merge(&mut la[p], item, shape, is, fpath),
                        None => la.push(item.clone()),
                    }
                }
            }
            ListType::Set => {
                if !live.is_array() {
                    *live = Value::Array(vec![]);
                }
                let la = live.as_array_mut().expect("array");
                for item in items {
                    if !la.contains(item) {
                        la.push(item.clone());
                    }
                }
            }
            _ => *live = cfg.clone(),
        },
        other => *live = other.clone(),
    }
}

/// One `managedFields` entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: String,
    pub fields: FieldSet,
}

fn encode_pe(e: &PE) -> String {
    match e {
        PE::Field(f) => format!("f:{f}"),
        PE::Key(k) => format!("k:{k}"),
        PE::Value(v) => format!("v:{v}"),
        PE::Dot => ".".into(),
    }
}

fn decode_pe(s: &str) -> Option<PE> {
    if s == "." {
        return Some(PE::Dot);
    }
    let (t, rest) = s.split_at_checked(2)?;
    match t {
        "f:" => Some(PE::Field(rest.into())),
        "k:" => Some(PE::Key(
            serde_json::from_str::<Value>(rest).ok()?.to_string(),
        )),
        "v:" => Some(PE::Value(
            serde_json::from_str::<Value>(rest).ok()?.to_string(),
        )),
        _ => None,
    }
}

pub fn encode_fields(fs: &FieldSet) -> Value {
    let mut root = Map::new();
    for p in fs {
        let mut cur = &mut root;
        for e in p {
            cur = cur
                .entry(encode_pe(e))
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .expect("object");
        }
    }
    Value::Object(root)
}

fn decode_into(v: &Value, path: &mut Path, out: &mut FieldSet) {
    if let Value::Object(m) = v {
        if m.is_empty() && !path.is_empty() {
            out.insert(path.clone());
        }
        for (k, child) in m {
            if let Some(e) = decode_pe(k) {
                path.push(e);
                decode_into(child, path, out);
                path.pop();
            }
        }
    }
}

pub fn decode_fields(v: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    decode_into(v, &mut vec![], &mut out);
    out
}

pub fn read_entries(obj: &Value) -> Vec<Entry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| Entry {
                    manager: e["manager"].as_str().unwrap_or_default().into(),
                    operation: e["operation"].as_str().unwrap_or_default().into(),
                    api_version: e["apiVersion"].as_str().unwrap_or_default().into(),
                    time: e["time"].as_str().unwrap_or_default().into(),
                    subresource: e["subresource"].as_str().unwrap_or_default().into(),
                    fields: decode_fields(&e["fieldsV1"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn write_entries(obj: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut m = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": encode_fields(&e.fields),
            });
            if !e.subresource.is_empty() {
                m["subresource"] = json!(e.subresource);
            }
            m
        })
        .collect();
    if let Some(md) = obj.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        if list.is_empty() {
            md.remove("managedFields");
        } else {
            md.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// Path text as kube-apiserver prints it in conflicts: `.data.key`, `.webhooks[name="x"].rules`.
pub fn path_string(p: &Path) -> String {
    let mut s = String::new();
    for e in p {
        match e {
            PE::Field(f) => {
                s.push('.');
                s.push_str(f);
            }
            PE::Key(k) => {
                let m: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
                let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
                s.push_str(&format!("[{}]", parts.join(",")));
            }
            PE::Value(v) => s.push_str(&format!("[={v}]")),
            PE::Dot => {}
        }
    }
    s
}

/// Record an update (create, PUT, non-apply PATCH) by `manager`: changed fields move to it.
#[allow(clippy::too_many_arguments)]
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    base_entries: Vec<Entry>,
    manager: &str,
    api_version: &str,
    subresource: &str,
    shape: Shape,
    now: &str,
) {
    let scope = Scope::All;
    let old_set = old.map(|o| field_set(o, shape, scope)).unwrap_or_default();
    let new_set = field_set(new, shape, scope);
    let changed: FieldSet = new_set
        .iter()
        .filter(|p| !old_set.contains(*p) || old.and_then(|o| value_at(o, p)) != value_at(new, p))
        .cloned()
        .collect();
    let removed: FieldSet = old_set.difference(&new_set).cloned().collect();
    let mut entries = base_entries;
    if changed.is_empty() && removed.is_empty() {
        write_entries(new, &entries);
        return;
    }
    for e in entries.iter_mut() {
        e.fields
            .retain(|p| !changed.contains(p) && !removed.contains(p));
    }
    match entries
        .iter_mut()
        .find(|e| e.manager == manager && e.operation == "Update" && e.subresource == subresource)
    {
        Some(e) => {
            e.fields.extend(changed);
            e.time = now.into();
            e.api_version = api_version.into();
        }
        None => entries.push(Entry {
            manager: manager.into(),
            operation: "Update".into(),
            api_version: api_version.into(),
            time: now.into(),
            subresource: subresource.into(),
            fields: changed,
        }),
    }
    entries.retain(|e| !e.fields.is_empty());
    write_entries(new, &entries);
}

/// A conflict: the other manager's printed identity and the path.
pub struct Conflict {
    pub manager: String,
    pub path: String,
}

fn print_manager(e: &Entry) -> String {
    let mut s = format!("{:?}", e.manager);
    if !e.subresource.is_empty() {
        s = format!("{s} with subresource {:?}", e.subresource);
    }
    if e.operation == "Update" {
        if e.time.is_empty() {
            s = format!("{s} using {}", e.api_version);
        } else {
            s = format!("{s} using {} at {}", e.api_version, e.time);
        }
    }
    s
}

/// kube-apiserver's apply conflict message.
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    if conflicts.len() == 1 {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            conflicts[0].manager, conflicts[0].path
        );
    }
    let mut by: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for c in conflicts {
        by.entry(&c.manager).or_default().push(&c.path);
    }
    let mut lines = vec![];
    for (m, paths) in by {
        lines.push(format!("conflicts with {m}:"));
        for p in paths {
            lines.push(format!("- {p}"));
        }
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// Server-side apply of `cfg` by `manager` onto `live` (empty object when absent).
#[allow(clippy::too_many_arguments)]
pub fn apply(
    live: &Value,
    cfg: &Value,
    manager: &str,
    force: bool,
    api_version: &str,
    subresource: &str,
    scope: Scope,
    shape: Shape,
    now: &str,
) -> Result<Value, Vec<Conflict>> {
    let mut entries = read_entries(live);
    let cfg_set = field_set(cfg, shape, scope);
    let mine =
        |e: &Entry| e.manager == manager && e.operation == "Apply" && e.subresource == subresource;
    let prev: FieldSet = entries
        .iter()
        .find(|e| mine(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();

    let mut conflicts = vec![];
    for e in entries.iter().filter(|e| !mine(e)) {
        for p in cfg_set.intersection(&e.fields) {
            if p.last() == Some(&PE::Dot) {
                continue;
            }
            if value_at(live, p) != value_at(cfg, p) {
                conflicts.push(Conflict {
                    manager: print_manager(e),
                    path: path_string(p),
                });
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    if force {
        for e in entries.iter_mut().filter(|e| !mine(e)) {
            e.fields.retain(|p| {
                !(cfg_set.contains(p)
                    && p.last() != Some(&PE::Dot)
                    && value_at(live, p) != value_at(cfg, p))
            });
        }
    }

    let mut out = live.clone();
    let others: FieldSet = entries
        .iter()
        .filter(|e| !mine(e))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    // Fields this manager applied before but no longer does, and nobody else owns, go away.
    let mut gone: Vec<&Path> = prev
        .difference(&cfg_set)
        .filter(|p| !others.contains(*p))
        .filter(|p| {
            // An item stays while others own something inside it.
            if p.last() == Some(&PE::Dot) {
                let item = &p[..p.len() - 1];
                !others.iter().any(|o| o.starts_with(item))
            } else {
                true
            }
        })
        .collect();
    // Whole items first (their key fields are needed to find them), then deepest fields first.
    gone.sort_by_key(|p| (p.last() != Some(&PE::Dot), std::cmp::Reverse(p.len())));
    for p in gone {
        let is_key_field = match (p.last(), p.len().checked_sub(2).map(|i| &p[i])) {
            (Some(PE::Field(f)), Some(PE::Key(k))) => {
                serde_json::from_str::<Map<String, Value>>(k).is_ok_and(|m| m.contains_key(f))
            }
            _ => false,
        };
        if !is_key_field {
            remove_at(&mut out, p);
        }
    }
    let mut cfg_scoped = cfg.clone();
    if let Some(m) = cfg_scoped.as_object_mut() {
        match scope {
            Scope::MainOnly => {
                m.remove("status");
            }
            Scope::StatusOnly => {
                m.retain(|k, _| {
                    k == "status" || k == "apiVersion" || k == "kind" || k == "metadata"
                });
                if let Some(md) = m.get_mut("metadata").and_then(|v| v.as_object_mut()) {
                    md.retain(|k, _| k == "name" || k == "namespace");
                }
            }
            Scope::All => {}
        }
        if let Some(md) = m.get_mut("metadata").and_then(|v| v.as_object_mut()) {
            md.remove("managedFields");
            md.remove("resourceVersion");
            md.remove("uid");
            md.remove("creationTimestamp");
            md.remove("generation");
        }
    }
    merge(&mut out, &cfg_scoped, shape, shape.schema, &mut vec![]);

    match entries.iter_mut().find(|e| mine(e)) {
        Some(e) => {
            e.fields = cfg_set;
            e.time = now.into();
            e.api_version = api_version.into();
        }
        None => entries.push(Entry {
            manager: manager.into(),
            operation: "Apply".into(),
            api_version: api_version.into(),
            time: now.into(),
            subresource: subresource.into(),
            fields: cfg_set,
        }),
    }
    entries.retain(|e| !e.fields.is_empty());
    write_entries(&mut out, &entries);
    Ok(out)
}
