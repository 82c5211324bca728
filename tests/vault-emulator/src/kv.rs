//! The KV secrets engine, versions 1 and 2.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::server::Op;
use crate::state::{DEFAULT_TTL, Engine};
use crate::util::{Resp, envelope, list_children, now_rfc3339, opt_bool, opt_u64, parse_duration};

#[derive(Default)]
pub(crate) struct Kv1Store {
    pub secrets: BTreeMap<String, Map<String, Value>>,
}

#[derive(Clone)]
pub(crate) struct Version {
    pub data: Option<Map<String, Value>>,
    pub created_time: String,
    pub deletion_time: String,
    pub destroyed: bool,
}

#[derive(Clone, Default)]
pub(crate) struct Kv2Secret {
    pub versions: BTreeMap<u64, Version>,
    pub current_version: u64,
    pub oldest_version: u64,
    pub max_versions: u64,
    pub cas_required: bool,
    pub delete_version_after: u64,
    pub custom_metadata: Option<BTreeMap<String, String>>,
    pub created_time: String,
    pub updated_time: String,
}

impl Version {
    /// Soft-deleted now: a deletion time that has passed.
    pub fn is_deleted(&self) -> bool {
        !self.deletion_time.is_empty()
            && chrono::DateTime::parse_from_rfc3339(&self.deletion_time)
                .map(|t| t <= chrono::Utc::now())
                .unwrap_or(true)
    }
}

pub(crate) struct Kv2Config {
    pub max_versions: u64,
    pub cas_required: bool,
    pub delete_version_after: u64,
}

#[derive(Default)]
pub(crate) struct Kv2Store {
    pub secrets: BTreeMap<String, Kv2Secret>,
    pub config: Option<Kv2Config>,
}

fn fmt_duration(secs: u64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{s}s"));
    out
}

impl Kv2Store {
    fn max_versions(&self, secret: &Kv2Secret) -> u64 {
        let cfg = self.config.as_ref().map(|c| c.max_versions).unwrap_or(0);
        match (secret.max_versions, cfg) {
            (0, 0) => 10,
            (0, c) => c,
            (s, 0) => s,
            (s, c) => s.min(c),
        }
    }

    fn cas_required(&self, secret: Option<&Kv2Secret>) -> bool {
        self.config.as_ref().is_some_and(|c| c.cas_required)
            || secret.is_some_and(|s| s.cas_required)
    }

    /// Writes a new version, enforcing check-and-set; returns the version
    /// metadata Vault answers with.
    pub fn put(
        &mut self,
        path: &str,
        data: Map<String, Value>,
        cas: Option<u64>,
    ) -> Result<Value, Resp> {
        let existing = self.secrets.get(path);
        if self.cas_required(existing) && cas.is_none() {
            return Err(Resp::bad_request(
                "check-and-set parameter required for this call",
            ));
        }
        if let Some(cas) = cas {
            let current = existing.map(|s| s.current_version).unwrap_or(0);
            if cas != current {
                return Err(Resp::bad_request(
                    "check-and-set parameter did not match the current version",
                ));
            }
        }
        let now_t = chrono::Utc::now();
        let now = crate::util::rfc3339(now_t);
        let mut secret = existing.cloned().unwrap_or_else(|| Kv2Secret {
            created_time: now.clone(),
            ..Default::default()
        });
        // With delete_version_after, each version is written with its
        // (future) deletion time already set.
        let dva = match secret.delete_version_after {
            0 => self
                .config
                .as_ref()
                .map(|c| c.delete_version_after)
                .unwrap_or(0),
            d => d,
        };
        let deletion_time = if dva > 0 {
            crate::util::rfc3339(now_t + chrono::Duration::seconds(dva as i64))
        } else {
            String::new()
        };
        let version = secret.current_version + 1;
        secret.current_version = version;
        secret.updated_time = now.clone();
        secret.versions.insert(
            version,
            Version {
                data: Some(data),
                created_time: now.clone(),
                deletion_time: deletion_time.clone(),
                destroyed: false,
            },
        );
        let max = self.max_versions(&secret);
        while secret.versions.len() as u64 > max {
            let oldest = *secret.versions.keys().next().expect("non-empty");
            secret.versions.remove(&oldest);
        }
        secret.oldest_version = if secret.versions.len() as u64 == version {
            0
        } else {
            *secret.versions.keys().next().expect("non-empty")
        };
        let meta = json!({
            "created_time": now,
            "custom_metadata": secret.custom_metadata,
            "deletion_time": deletion_time,
            "destroyed": false,
            "version": version,
        });
        self.secrets.insert(path.to_string(), secret);
        Ok(meta)
    }
}

fn version_meta(secret: &Kv2Secret, n: u64, v: &Version) -> Value {
    json!({
        "created_time": v.created_time,
        "custom_metadata": secret.custom_metadata,
        "deletion_time": v.deletion_time,
        "destroyed": v.destroyed,
        "version": n,
    })
}

fn metadata_json(secret: &Kv2Secret, store: &Kv2Store) -> Value {
    let versions: Map<String, Value> = secret
        .versions
        .iter()
        .map(|(n, v)| {
            (
                n.to_string(),
                json!({
                    "created_time": v.created_time,
                    "deletion_time": v.deletion_time,
                    "destroyed": v.destroyed,
                }),
            )
        })
        .collect();
    let _ = store;
    json!({
        "cas_required": secret.cas_required,
        "created_time": secret.created_time,
        "current_version": secret.current_version,
        "custom_metadata": secret.custom_metadata,
        "delete_version_after": fmt_duration(secret.delete_version_after),
        "max_versions": secret.max_versions,
        "oldest_version": secret.oldest_version,
        "updated_time": secret.updated_time,
        "versions": versions,
    })
}

/// Whether a KV write at `rest` would update (rather than create) data; the
/// ACL needs `update` then and `create` otherwise.
pub(crate) fn exists(engine: &Engine, rest: &str) -> bool {
    match engine {
        Engine::Kv1(s) => s.secrets.contains_key(rest),
        Engine::Kv2(s) => {
            let (section, path) = split_v2(rest);
            match section {
                "data" | "metadata" => s.secrets.contains_key(path),
                "config" => true,
                _ => true,
            }
        }
        Engine::Database(s) => s.exists(rest),
        Engine::Builtin => true,
    }
}

/// Whether this request counts as a KV read for the counters.
pub(crate) fn is_kv_read(engine: &Engine, rest: &str, op: Op) -> bool {
    if op != Op::Read {
        return false;
    }
    match engine {
        Engine::Kv1(_) => true,
        Engine::Kv2(_) => matches!(split_v2(rest).0, "data" | "metadata"),
        Engine::Database(_) | Engine::Builtin => false,
    }
}

fn split_v2(rest: &str) -> (&str, &str) {
    match rest.split_once('/') {
        Some((a, b)) => (a, b),
        None => (rest, ""),
    }
}

fn list_resp(keys: Vec<String>) -> Resp {
    if keys.is_empty() {
        return Resp::not_found();
    }
    Resp::data(json!({ "keys": keys }))
}

fn body_object(body: &Value) -> Result<Map<String, Value>, Resp> {
    match body {
        Value::Object(m) => Ok(m.clone()),
        Value::Null => Ok(Map::new()),
        _ => Err(Resp::bad_request(
            "failed to parse JSON input: body must be an object",
        )),
    }
}

fn versions_param(body: &Value) -> Result<Vec<u64>, Resp> {
    let v = body.get("versions");
    let list: Vec<u64> = match v {
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.parse().ok(),
                _ => None,
            })
            .collect::<Option<Vec<u64>>>()
            .ok_or_else(|| {
                Resp::bad_request("error converting input versions: expected integers")
            })?,
        Some(Value::String(s)) => s
            .split(',')
            .map(|p| p.trim().parse().ok())
            .collect::<Option<Vec<u64>>>()
            .ok_or_else(|| {
                Resp::bad_request("error converting input versions: expected integers")
            })?,
        _ => Vec::new(),
    };
    if list.is_empty() {
        return Err(Resp::bad_request("no version number provided"));
    }
    Ok(list)
}

/// Read-only operations (GET and LIST), served under the shared lock.
pub(crate) fn read(
    engine: &Engine,
    path: &str,
    rest: &str,
    op: Op,
    query: &BTreeMap<String, String>,
) -> Resp {
    match engine {
        Engine::Kv1(store) => match op {
            Op::Read => match store.secrets.get(rest) {
                Some(data) if !rest.is_empty() => Resp::new(
                    200,
                    Some(envelope(
                        Some(Value::Object(data.clone())),
                        None,
                        DEFAULT_TTL,
                        false,
                    )),
                ),
                _ => Resp::not_found(),
            },
            Op::List => {
                let prefix = if rest.is_empty() || rest.ends_with('/') {
                    rest.to_string()
                } else {
                    format!("{rest}/")
                };
                list_resp(list_children(store.secrets.keys(), &prefix))
            }
            _ => Resp::unsupported_op(),
        },
        Engine::Kv2(store) => {
            let (section, sub) = split_v2(rest);
            match (section, op) {
                ("data", Op::Read) => {
                    let Some(secret) = store.secrets.get(sub) else {
                        return Resp::not_found();
                    };
                    let version = match query.get("version").map(|v| v.parse::<u64>()) {
                        None => 0,
                        Some(Ok(v)) => v,
                        Some(Err(_)) => {
                            return Resp::bad_request(
                                "error converting input version: invalid syntax",
                            );
                        }
                    };
                    let n = if version == 0 {
                        secret.current_version
                    } else {
                        version
                    };
                    let Some(v) = secret.versions.get(&n) else {
                        return Resp::not_found();
                    };
                    let meta = version_meta(secret, n, v);
                    if v.destroyed || v.is_deleted() {
                        // Vault returns the metadata with a null payload, as a 404.
                        return Resp::new(
                            404,
                            Some(envelope(
                                Some(json!({ "data": null, "metadata": meta })),
                                None,
                                0,
                                false,
                            )),
                        );
                    }
                    Resp::data(json!({ "data": v.data, "metadata": meta }))
                }
                ("metadata", Op::Read) => match store.secrets.get(sub) {
                    Some(secret) if !sub.is_empty() => Resp::data(metadata_json(secret, store)),
                    _ => Resp::not_found(),
                },
                ("metadata", Op::List) => {
                    let prefix = if sub.is_empty() || sub.ends_with('/') {
                        sub.to_string()
                    } else {
                        format!("{sub}/")
                    };
                    list_resp(list_children(store.secrets.keys(), &prefix))
                }
                ("config", Op::Read) if sub.is_empty() => {
                    let cfg = store.config.as_ref();
                    Resp::data(json!({
                        "cas_required": cfg.is_some_and(|c| c.cas_required),
                        "delete_version_after": fmt_duration(cfg.map(|c| c.delete_version_after).unwrap_or(0)),
                        "max_versions": cfg.map(|c| c.max_versions).unwrap_or(0),
                    }))
                }
                ("subkeys", Op::Read) => {
                    let Some(secret) = store.secrets.get(sub) else {
                        return Resp::not_found();
                    };
                    let n = secret.current_version;
                    match secret.versions.get(&n) {
                        Some(v) if v.data.is_some() && !v.is_deleted() => {
                            fn strip(v: &Value) -> Value {
                                match v {
                                    Value::Object(m) => Value::Object(
                                        m.iter().map(|(k, v)| (k.clone(), strip(v))).collect(),
                                    ),
                                    _ => Value::Null,
                                }
                            }
                            Resp::data(json!({
                                "subkeys": strip(&Value::Object(v.data.clone().unwrap_or_default())),
                                "metadata": version_meta(secret, n, v),
                            }))
                        }
                        _ => Resp::not_found(),
                    }
                }
                (
                    "data" | "metadata" | "config" | "subkeys" | "delete" | "undelete" | "destroy",
                    _,
                ) => Resp::unsupported_op(),
                _ => invalid_v2_path(op),
            }
        }
        Engine::Database(_) | Engine::Builtin => Resp::no_route(path),
    }
}

/// Mutating operations, served under the exclusive lock.
pub(crate) fn write(engine: &mut Engine, path: &str, rest: &str, op: Op, body: &Value) -> Resp {
    match engine {
        Engine::Kv1(store) => match op {
            Op::Write => {
                if rest.is_empty() || rest.ends_with('/') {
                    return Resp::unsupported_op();
                }
                match body_object(body) {
                    Ok(data) if data.is_empty() => Resp::bad_request("missing data fields"),
                    Ok(data) => {
                        store.secrets.insert(rest.to_string(), data);
                        Resp::no_content()
                    }
                    Err(e) => e,
                }
            }
            Op::Delete => {
                store.secrets.remove(rest);
                Resp::no_content()
            }
            _ => Resp::unsupported_op(),
        },
        Engine::Kv2(store) => {
            let (section, sub) = split_v2(rest);
            match (section, op) {
                ("data", Op::Write) => {
                    if sub.is_empty() {
                        return Resp::unsupported_op();
                    }
                    let data = match body.get("data") {
                        Some(Value::Object(m)) => m.clone(),
                        Some(Value::Null) | None => return Resp::bad_request("no data provided"),
                        Some(_) => return Resp::bad_request("data must be a JSON object"),
                    };
                    let cas = match body.get("options").map(|o| opt_u64(o, "cas")) {
                        None => None,
                        Some(Ok(c)) => c,
                        Some(Err(e)) => return Resp::bad_request(e),
                    };
                    match store.put(sub, data, cas) {
                        Ok(meta) => Resp::data(meta),
                        Err(e) => e,
                    }
                }
                ("data", Op::Patch) => {
                    let Some(secret) = store.secrets.get(sub) else {
                        return Resp::not_found();
                    };
                    let Some(current) = secret
                        .versions
                        .get(&secret.current_version)
                        .and_then(|v| v.data.clone())
                    else {
                        return Resp::not_found();
                    };
                    let Some(Value::Object(patch)) = body.get("data") else {
                        return Resp::bad_request("no data provided");
                    };
                    let mut merged = Value::Object(current);
                    merge_patch(&mut merged, &Value::Object(patch.clone()));
                    let cas = body
                        .get("options")
                        .and_then(|o| opt_u64(o, "cas").ok().flatten());
                    let Value::Object(m) = merged else {
                        unreachable!("merge keeps objects")
                    };
                    match store.put(sub, m, cas) {
                        Ok(meta) => Resp::data(meta),
                        Err(e) => e,
                    }
                }
                ("data", Op::Delete) => {
                    if let Some(secret) = store.secrets.get_mut(sub) {
                        let n = secret.current_version;
                        if let Some(v) = secret.versions.get_mut(&n)
                            && !v.is_deleted()
                            && !v.destroyed
                        {
                            v.deletion_time = now_rfc3339();
                        }
                    }
                    Resp::no_content()
                }
                ("delete" | "undelete" | "destroy", Op::Write) => {
                    let versions = match versions_param(body) {
                        Ok(v) => v,
                        Err(e) => return e,
                    };
                    if let Some(secret) = store.secrets.get_mut(sub) {
                        let now = now_rfc3339();
                        for n in versions {
                            let Some(v) = secret.versions.get_mut(&n) else {
                                continue;
                            };
                            match section {
                                "delete" if !v.is_deleted() && !v.destroyed => {
                                    v.deletion_time = now.clone();
                                }
                                "undelete" if !v.destroyed => v.deletion_time.clear(),
                                "destroy" => {
                                    v.destroyed = true;
                                    v.data = None;
                                }
                                _ => {}
                            }
                        }
                    }
                    Resp::no_content()
                }
                ("metadata", Op::Write) => {
                    if sub.is_empty() {
                        return Resp::unsupported_op();
                    }
                    let max_versions = match opt_u64(body, "max_versions") {
                        Ok(v) => v,
                        Err(e) => return Resp::bad_request(e),
                    };
                    let cas_required = match opt_bool(body, "cas_required") {
                        Ok(v) => v,
                        Err(e) => return Resp::bad_request(e),
                    };
                    let dva = match body.get("delete_version_after") {
                        None => None,
                        Some(v) => match parse_duration(v) {
                            Ok(d) => Some(d),
                            Err(e) => return Resp::bad_request(e),
                        },
                    };
                    let custom = match body.get("custom_metadata") {
                        None | Some(Value::Null) => None,
                        Some(v) => match custom_metadata(v) {
                            Ok(m) => Some(m),
                            Err(e) => return Resp::bad_request(e),
                        },
                    };
                    let now = now_rfc3339();
                    let secret =
                        store
                            .secrets
                            .entry(sub.to_string())
                            .or_insert_with(|| Kv2Secret {
                                created_time: now.clone(),
                                updated_time: now.clone(),
                                ..Default::default()
                            });
                    if let Some(m) = max_versions {
                        secret.max_versions = m;
                    }
                    if let Some(c) = cas_required {
                        secret.cas_required = c;
                    }
                    if let Some(d) = dva {
                        secret.delete_version_after = d;
                    }
                    if let Some(c) = custom {
                        secret.custom_metadata = Some(c);
                    }
                    secret.updated_time = now;
                    Resp::no_content()
                }
                ("metadata", Op::Patch) => {
                    let Some(secret) = store.secrets.get_mut(sub) else {
                        return Resp::not_found();
                    };
                    if let Ok(Some(m)) = opt_u64(body, "max_versions") {
                        secret.max_versions = m;
                    }
                    if let Ok(Some(c)) = opt_bool(body, "cas_required") {
                        secret.cas_required = c;
                    }
                    if let Some(v) = body.get("custom_metadata") {
                        let mut cur = secret.custom_metadata.clone().unwrap_or_default();
                        if let Some(obj) = v.as_object() {
                            for (k, val) in obj {
                                match val {
                                    Value::Null => {
                                        cur.remove(k);
                                    }
                                    Value::String(s) => {
                                        cur.insert(k.clone(), s.clone());
                                    }
                                    _ => {
                                        return Resp::bad_request(
                                            "custom_metadata values must be strings",
                                        );
                                    }
                                }
                            }
                        }
                        secret.custom_metadata = Some(cur);
                    }
                    secret.updated_time = now_rfc3339();
                    Resp::no_content()
                }
                ("metadata", Op::Delete) => {
                    store.secrets.remove(sub);
                    Resp::no_content()
                }
                ("config", Op::Write) if sub.is_empty() => {
                    let max_versions = match opt_u64(body, "max_versions") {
                        Ok(v) => v,
                        Err(e) => return Resp::bad_request(e),
                    };
                    let cas_required = match opt_bool(body, "cas_required") {
                        Ok(v) => v,
                        Err(e) => return Resp::bad_request(e),
                    };
                    let dva = match body.get("delete_version_after").map(parse_duration) {
                        None => None,
                        Some(Ok(d)) => Some(d),
                        Some(Err(e)) => return Resp::bad_request(e),
                    };
                    let cfg = store.config.get_or_insert(Kv2Config {
                        max_versions: 0,
                        cas_required: false,
                        delete_version_after: 0,
                    });
                    if let Some(m) = max_versions {
                        cfg.max_versions = m;
                    }
                    if let Some(c) = cas_required {
                        cfg.cas_required = c;
                    }
                    if let Some(d) = dva {
                        cfg.delete_version_after = d;
                    }
                    Resp::no_content()
                }
                (
                    "data" | "metadata" | "config" | "subkeys" | "delete" | "undelete" | "destroy",
                    _,
                ) => Resp::unsupported_op(),
                _ => invalid_v2_path(op),
            }
        }
        Engine::Database(_) | Engine::Builtin => Resp::no_route(path),
    }
}

/// What a KV v2 mount answers for paths outside its API (for example a
/// v1-style `secret/foo`): a 404 whose only content is a warning.
fn invalid_v2_path(op: Op) -> Resp {
    let cmd = match op {
        Op::Read => "get",
        Op::List => "list",
        Op::Delete => "delete",
        Op::Write | Op::Patch => "put",
    };
    let mut body = envelope(None, None, 0, false);
    body["warnings"] = json!([format!(
        "Invalid path for a versioned K/V secrets engine. See the API docs for the appropriate API endpoints to use. If using the Vault CLI, use 'vault kv {cmd}' for this operation."
    )]);
    Resp::new(404, Some(body))
}

fn merge_patch(target: &mut Value, patch: &Value) {
    if let (Value::Object(t), Value::Object(p)) = (&mut *target, patch) {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else if v.is_object() && t.get(k).is_some_and(Value::is_object) {
                merge_patch(t.get_mut(k).expect("checked"), v);
            } else {
                t.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Validates custom metadata with Vault's limits.
pub(crate) fn custom_metadata(v: &Value) -> Result<BTreeMap<String, String>, String> {
    let Value::Object(m) = v else {
        return Err("custom_metadata must be a map of strings".into());
    };
    if m.len() > 64 {
        return Err(format!(
            "1 error occurred:\n\t* custom_metadata can only contain up to 64 keys, got {}\n\n",
            m.len()
        ));
    }
    let mut out = BTreeMap::new();
    for (k, val) in m {
        let Value::String(s) = val else {
            return Err("custom_metadata must be a map of strings".into());
        };
        if k.len() > 128 {
            return Err(format!(
                "custom_metadata key {k:?} length exceeds 128 characters"
            ));
        }
        if s.len() > 512 {
            return Err(format!(
                "custom_metadata value for {k:?} exceeds 512 characters"
            ));
        }
        out.insert(k.clone(), s.clone());
    }
    Ok(out)
}
