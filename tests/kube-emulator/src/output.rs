//! Response representations: plain JSON, PartialObjectMetadata and Table.

use crate::registry::ResourceDef;
use crate::selectors::jsonpath;
use serde_json::{Value, json};
use std::borrow::Cow;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    None,
    Metadata,
    Object,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Meta,
    Table(Include),
}

/// Pick the first representation of the Accept header this server can produce.
pub fn negotiate(accept: &str, include: Option<&str>) -> Format {
    let include = match include {
        Some("None") => Include::None,
        Some("Object") => Include::Object,
        _ => Include::Metadata,
    };
    for part in accept.split(',') {
        let params: Vec<&str> = part.split(';').map(|s| s.trim()).collect();
        let media = params.first().copied().unwrap_or_default();
        if media != "application/json" && media != "*/*" && media != "application/*" {
            continue;
        }
        let get = |k: &str| {
            params
                .iter()
                .find_map(|p| p.strip_prefix(&format!("{k}=")))
                .unwrap_or_default()
        };
        match get("as") {
            "" => return Format::Json,
            "Table" if get("g") == "meta.k8s.io" && (get("v") == "v1" || get("v") == "v1beta1") => {
                return Format::Table(include);
            }
            "PartialObjectMetadata" | "PartialObjectMetadataList" if get("g") == "meta.k8s.io" => {
                return Format::Meta;
            }
            _ => continue,
        }
    }
    Format::Json
}

/// The object as served at `version` (conversion strategy None: only apiVersion changes;
/// Events are converted between the core and events.k8s.io shapes).
pub fn at_version<'a>(def: &ResourceDef, version: &str, obj: &'a Value) -> Cow<'a, Value> {
    let want = def.api_version(version);
    if def.is_events_v1() && obj["apiVersion"] == json!("v1") {
        return Cow::Owned(core_to_events(obj, &want));
    }
    if obj["apiVersion"].as_str() == Some(want.as_str()) {
        Cow::Borrowed(obj)
    } else {
        let mut o = obj.clone();
        o["apiVersion"] = Value::String(want);
        Cow::Owned(o)
    }
}

pub fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj["metadata"],
    })
}

/// kube's `duration.HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    format!("{}y", hours / 24 / 365)
}

fn age(ts: &Value) -> Value {
    match ts
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
    {
        Some(t) => json!(human_duration(
            (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds()
        )),
        None => json!("<unknown>"),
    }
}

fn col(name: &str, type_: &str, format: &str, description: &str, priority: i64) -> Value {
    json!({"name": name, "type": type_, "format": format, "description": description, "priority": priority})
}

const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.";

type Cell = fn(&Value) -> Value;

fn builtin_columns(def: &ResourceDef) -> Vec<(Value, Cell)> {
    let name: (Value, Cell) = (col("Name", "string", "name", NAME_DESC, 0), |o| {
        o["metadata"]["name"].clone()
    });
    let created: (Value, Cell) = (col("Age", "string", "", AGE_DESC, 0), |o| {
        age(&o["metadata"]["creationTimestamp"])
    });
    match (def.group.as_str(), def.plural.as_str()) {
        ("", "secrets") => vec![
            name,
            (
                col("Type", "string", "", "The type of the secret", 0),
                |o| json!(o["type"].as_str().unwrap_or("Opaque")),
            ),
            (
                col(
                    "Data",
                    "string",
                    "",
                    "The number of entries in the secret",
                    0,
                ),
                |o| json!(o["data"].as_object().map(|m| m.len()).unwrap_or(0)),
            ),
            created,
        ],
        ("", "configmaps") => vec![
            name,
            (
                col(
                    "Data",
                    "string",
                    "",
                    "The number of entries in the configmap",
                    0,
                ),
                |o| {
                    json!(
                        o["data"].as_object().map(|m| m.len()).unwrap_or(0)
                            + o["binaryData"].as_object().map(|m| m.len()).unwrap_or(0)
                    )
                },
            ),
            created,
        ],
        ("", "namespaces") => vec![
            name,
            (
                col("Status", "string", "", "The status of the namespace", 0),
                |o| json!(o["status"]["phase"].as_str().unwrap_or("Active")),
            ),
            created,
        ],
        ("", "events") => vec![
            (
                col("Last Seen", "string", "", "Time of the last occurrence", 0),
                |o| {
                    let t = if o["lastTimestamp"].is_string() {
                        &o["lastTimestamp"]
                    } else {
                        &o["eventTime"]
                    };
                    age(t)
                },
            ),
            (col("Type", "string", "", "Type of this event", 0), |o| {
                o["type"].clone()
            }),
            (
                col("Reason", "string", "", "Why the action was taken", 0),
                |o| o["reason"].clone(),
            ),
            (
                col("Object", "string", "", "The object this event is about", 0),
                |o| {
                    json!(format!(
                        "{}/{}",
                        o["involvedObject"]["kind"]
                            .as_str()
                            .unwrap_or_default()
                            .to_lowercase(),
                        o["involvedObject"]["name"].as_str().unwrap_or_default()
                    ))
                },
            ),
            (
                col(
                    "Message",
                    "string",
                    "",
                    "A description of the status of this operation",
                    0,
                ),
                |o| o["message"].clone(),
            ),
        ],
        _ => vec![name, created],
    }
}

fn cell_for(type_: &str, v: Option<&Value>) -> Value {
    match (type_, v) {
        (_, None) | (_, Some(Value::Null)) => Value::Null,
        ("date", Some(v)) => age(v),
        ("string", Some(Value::String(s))) => json!(s),
        ("string", Some(v)) => json!(v.to_string()),
        (_, Some(v)) => v.clone(),
    }
}

/// A meta.k8s.io/v1 Table of `objs`.
pub fn table(
    def: &ResourceDef,
    version: &str,
    objs: &[Cow<'_, Value>],
    include: Include,
    rv: Option<u64>,
) -> Value {
    let printer = def.printer_columns.get(version).filter(|c| !c.is_empty());
    let mut defs = vec![];
    let mut rows = vec![];
    if let Some(cols) = printer {
        defs.push(col("Name", "string", "name", NAME_DESC, 0));
        for c in cols {
            defs.push(col(
                &c.name,
                &c.type_,
                &c.format,
                &c.description,
                c.priority,
            ));
        }
        for o in objs {
            let mut cells = vec![o["metadata"]["name"].clone()];
            for c in cols {
                cells.push(cell_for(&c.type_, jsonpath(o, &c.json_path)));
            }
            rows.push(row(o, cells, include));
        }
    } else {
        let cols = builtin_columns(def);
        defs = cols.iter().map(|(d, _)| d.clone()).collect();
        for o in objs {
            let cells = cols.iter().map(|(_, f)| f(o)).collect();
            rows.push(row(o, cells, include));
        }
    }
    let mut md = json!({});
    if let Some(rv) = rv {
        md["resourceVersion"] = json!(rv.to_string());
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": md,
        "columnDefinitions": defs,
        "rows": rows,
    })
}

fn row(o: &Value, cells: Vec<Value>, include: Include) -> Value {
    let mut r = json!({"cells": cells});
    match include {
        Include::None => {}
        Include::Metadata => r["object"] = partial_metadata(o),
        Include::Object => r["object"] = o.clone(),
    }
    r
}

/// One object in the negotiated representation.
pub fn render_one(def: &ResourceDef, version: &str, obj: &Value, fmt: Format) -> Value {
    let o = at_version(def, version, obj);
    match fmt {
        Format::Json => o.into_owned(),
        Format::Meta => partial_metadata(&o),
        Format::Table(inc) => table(def, version, &[o], inc, None),
    }
}

/// A list body, serialized item by item without copying stored objects.
pub fn render_list(
    def: &ResourceDef,
    version: &str,
    items: &[Arc<Value>],
    rv: u64,
    cont: Option<String>,
    remaining: Option<usize>,
    fmt: Format,
) -> Vec<u8> {
    let mut md = json!({"resourceVersion": rv.to_string()});
    if let Some(c) = &cont {
        md["continue"] = json!(c);
    }
    if let Some(r) = remaining {
        md["remainingItemCount"] = json!(r);
    }
    match fmt {
        Format::Table(inc) => {
            let objs: Vec<Cow<'_, Value>> =
                items.iter().map(|o| at_version(def, version, o)).collect();
            let mut t = table(def, version, &objs, inc, Some(rv));
            t["metadata"] = md;
            serde_json::to_vec(&t).unwrap_or_default()
        }
        Format::Json | Format::Meta => {
            let (kind, api_version) = if fmt == Format::Meta {
                (
                    "PartialObjectMetadataList".to_string(),
                    "meta.k8s.io/v1".to_string(),
                )
            } else {
                (def.list_kind.clone(), def.api_version(version))
            };
            let mut out = Vec::with_capacity(64 + items.len() * 512);
            out.extend_from_slice(b"{\"kind\":");
            let _ = serde_json::to_writer(&mut out, &kind);
            out.extend_from_slice(b",\"apiVersion\":");
            let _ = serde_json::to_writer(&mut out, &api_version);
            out.extend_from_slice(b",\"metadata\":");
            let _ = serde_json::to_writer(&mut out, &md);
            out.extend_from_slice(b",\"items\":[");
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                if fmt == Format::Meta {
                    let _ = serde_json::to_writer(&mut out, &partial_metadata(it));
                } else {
                    let _ = serde_json::to_writer(&mut out, at_version(def, version, it).as_ref());
                }
            }
            out.extend_from_slice(b"]}");
            out
        }
    }
}

fn copy_fields(from: &Value, pairs: &[(&str, &str)], out: &mut serde_json::Map<String, Value>) {
    for (src, dst) in pairs {
        if let Some(v) = from.get(*src).filter(|v| !v.is_null()) {
            out.insert(dst.to_string(), v.clone());
        }
    }
}

/// A stored core/v1 Event in the events.k8s.io/v1 shape.
pub fn core_to_events(obj: &Value, api_version: &str) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!("Event"));
    copy_fields(
        obj,
        &[
            ("metadata", "metadata"),
            ("eventTime", "eventTime"),
            ("series", "series"),
            ("reportingComponent", "reportingController"),
            ("reportingInstance", "reportingInstance"),
            ("action", "action"),
            ("reason", "reason"),
            ("involvedObject", "regarding"),
            ("related", "related"),
            ("message", "note"),
            ("type", "type"),
            ("source", "deprecatedSource"),
            ("firstTimestamp", "deprecatedFirstTimestamp"),
            ("lastTimestamp", "deprecatedLastTimestamp"),
            ("count", "deprecatedCount"),
        ],
        &mut out,
    );
    Value::Object(out)
}

/// An events.k8s.io/v1 Event in the stored core/v1 shape.
pub fn events_to_core(obj: &Value) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("apiVersion".into(), json!("v1"));
    out.insert("kind".into(), json!("Event"));
    copy_fields(
        obj,
        &[
            ("metadata", "metadata"),
            ("eventTime", "eventTime"),
            ("series", "series"),
            ("reportingController", "reportingComponent"),
            ("reportingInstance", "reportingInstance"),
            ("action", "action"),
            ("reason", "reason"),
            ("regarding", "involvedObject"),
            ("related", "related"),
            ("note", "message"),
            ("type", "type"),
            ("deprecatedSource", "source"),
            ("deprecatedFirstTimestamp", "firstTimestamp"),
            ("deprecatedLastTimestamp", "lastTimestamp"),
            ("deprecatedCount", "count"),
        ],
        &mut out,
    );
    if !out.contains_key("source")
        && let Some(c) = obj.get("reportingController")
    {
        out.insert("source".into(), json!({"component": c}));
    }
    Value::Object(out)
}
