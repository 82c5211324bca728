//! The `sys/` backend: health, mounts, auth methods, policies, namespaces.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::{Map, Value, json};

use crate::auth::AuthBackend;
use crate::database::DbStore;
use crate::kv::{Kv1Store, Kv2Store};
use crate::policy::{self, Policy};
use crate::server::{Ctx, Op, Shared};
use crate::state::{AuthMount, Engine, Mount, Namespace, State, Token};
use crate::util::{Resp, envelope, opt_str, uuid};

pub(crate) const VERSION: &str = "1.17.2";

pub(crate) fn health(shared: &Arc<Shared>, ctx: &Ctx) -> Resp {
    if ctx.op != Op::Read {
        return Resp::unsupported_op();
    }
    let sealed = shared.sealed.load(Ordering::Relaxed);
    let code = |key: &str, default: u16| -> u16 {
        ctx.query
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let status = if sealed {
        code("sealedcode", 503)
    } else {
        code("activecode", 200)
    };
    Resp::new(
        status,
        Some(json!({
            "initialized": true,
            "sealed": sealed,
            "standby": false,
            "performance_standby": false,
            "replication_performance_mode": "disabled",
            "replication_dr_mode": "disabled",
            "server_time_utc": chrono::Utc::now().timestamp(),
            "version": VERSION,
            "enterprise": false,
            "cluster_name": "vault-cluster-emulator",
            "cluster_id": "6d5f7b0e-0000-4000-8000-000000000000",
            "echo_duration_ms": 0,
            "clock_skew_ms": 0,
        })),
    )
}

pub(crate) fn seal_status(shared: &Arc<Shared>) -> Resp {
    Resp::new(
        200,
        Some(json!({
            "type": "shamir",
            "initialized": true,
            "sealed": shared.sealed.load(Ordering::Relaxed),
            "t": 1,
            "n": 1,
            "progress": 0,
            "nonce": "",
            "version": VERSION,
            "build_date": "2024-08-01T00:00:00Z",
            "migration": false,
            "cluster_name": "vault-cluster-emulator",
            "recovery_seal": false,
            "storage_type": "inmem",
        })),
    )
}

pub(crate) fn leader(ctx: &Ctx) -> Resp {
    if ctx.op != Op::Read {
        return Resp::unsupported_op();
    }
    Resp::new(
        200,
        Some(json!({
            "ha_enabled": false,
            "is_self": false,
            "active_time": "0001-01-01T00:00:00Z",
            "leader_address": "",
            "leader_cluster_address": "",
            "performance_standby": false,
            "performance_standby_last_remote_wal": 0,
        })),
    )
}

/// Vault answers the listing endpoints with the map both at the top level
/// and under `data`.
fn top_level_and_data(map: Map<String, Value>) -> Resp {
    let mut body = envelope(Some(Value::Object(map.clone())), None, 0, false);
    if let Value::Object(b) = &mut body {
        for (k, v) in map {
            b.insert(k, v);
        }
    }
    Resp::new(200, Some(body))
}

fn norm_mount(p: &str) -> String {
    let p = p.trim_matches('/');
    format!("{p}/")
}

fn policy_name(path: &str) -> Option<&str> {
    path.strip_prefix("sys/policies/acl/")
        .or_else(|| path.strip_prefix("sys/policy/"))
        .map(|n| n.trim_end_matches('/'))
        .filter(|n| !n.is_empty())
}

pub(crate) fn read(st: &State, _shared: &Arc<Shared>, ctx: &Ctx, token: &Token) -> Resp {
    let ns = st.ns(&ctx.ns).expect("namespace checked");
    let path = ctx.path.trim_end_matches('/');
    match (path, ctx.op) {
        ("sys/mounts", Op::Read) => {
            let map = ns
                .mounts
                .iter()
                .map(|(k, m)| (k.clone(), m.to_json()))
                .collect();
            top_level_and_data(map)
        }
        ("sys/auth", Op::Read) => {
            let map = ns
                .auths
                .iter()
                .map(|(k, m)| (k.clone(), m.to_json()))
                .collect();
            top_level_and_data(map)
        }
        ("sys/policy", Op::Read) => {
            let names: Vec<&String> = ns.policies.keys().collect();
            let mut m = Map::new();
            m.insert("policies".into(), json!(names));
            m.insert("keys".into(), json!(names));
            top_level_and_data(m)
        }
        ("sys/policies/acl", Op::List) => {
            let names: Vec<&String> = ns.policies.keys().filter(|n| *n != "root").collect();
            Resp::data(json!({ "keys": names }))
        }
        ("sys/namespaces", Op::List) => {
            let prefix = if ctx.ns.is_empty() {
                String::new()
            } else {
                format!("{}/", ctx.ns)
            };
            let mut keys = Vec::new();
            let mut info = Map::new();
            let mut names: Vec<&String> = st.namespaces.keys().collect();
            names.sort();
            for name in names {
                if let Some(child) = name.strip_prefix(&prefix)
                    && !child.is_empty()
                    && !child.contains('/')
                {
                    keys.push(format!("{child}/"));
                    info.insert(format!("{child}/"), ns_json(name, &st.namespaces[name]));
                }
            }
            if keys.is_empty() {
                return Resp::not_found();
            }
            Resp::data(json!({ "keys": keys, "key_info": info }))
        }
        _ => {
            if let Some(mount) = path.strip_prefix("sys/mounts/")
                && ctx.op == Op::Read
            {
                if let Some(m) = mount.strip_suffix("/tune") {
                    return match ns.mounts.get(&norm_mount(m)) {
                        Some(m) => Resp::data(tune_json(m)),
                        None => Resp::bad_request(format!(
                            "cannot fetch sysview for path \"{}\"",
                            norm_mount(m)
                        )),
                    };
                }
                return match ns.mounts.get(&norm_mount(mount)) {
                    Some(m) => Resp::data(m.to_json()),
                    None => Resp::bad_request(format!(
                        "No secret engine mount at {}",
                        norm_mount(mount)
                    )),
                };
            }
            if let Some(mount) = path.strip_prefix("sys/auth/")
                && ctx.op == Op::Read
            {
                return match ns.auths.get(&norm_mount(mount)) {
                    Some(m) => Resp::data(m.to_json()),
                    None => Resp::bad_request(format!("No auth engine at {}", norm_mount(mount))),
                };
            }
            if let Some(name) = policy_name(&ctx.path)
                && ctx.op == Op::Read
            {
                let name = name.to_lowercase();
                let Some(p) = ns.policies.get(&name) else {
                    return Resp::not_found();
                };
                if ctx.path.starts_with("sys/policy/") {
                    let mut m = Map::new();
                    m.insert("name".into(), json!(p.name));
                    m.insert("rules".into(), json!(p.text));
                    return top_level_and_data(m);
                }
                return Resp::data(json!({ "name": p.name, "policy": p.text }));
            }
            if let Some(name) = path.strip_prefix("sys/namespaces/")
                && ctx.op == Op::Read
            {
                let full = child_ns(&ctx.ns, name);
                return match st.namespaces.get(&full) {
                    Some(n) => Resp::data(ns_json(&full, n)),
                    None => Resp::not_found(),
                };
            }
            if let Some(p) = ctx.path.strip_prefix("sys/internal/ui/mounts/")
                && ctx.op == Op::Read
            {
                // Vault answers a missing mount and a mount the token cannot
                // use alike, so the endpoint does not reveal mounts.
                let preflight = || {
                    Resp::err(
                        403,
                        format!(
                            "preflight capability check returned 403, please ensure client's policies grant access to path \"{}/\"",
                            p.trim_end_matches('/')
                        ),
                    )
                };
                return match ns.mount_for(p) {
                    Some((m, _)) if st.has_mount_access(token, &ctx.ns, &m) => {
                        let mount = &ns.mounts[&m];
                        let mut data = mount.to_json();
                        data["path"] = json!(m);
                        Resp::data(data)
                    }
                    _ => preflight(),
                };
            }
            if matches!(ctx.op, Op::Read | Op::List) && known_sys(path) {
                return Resp::unsupported_op();
            }
            Resp::no_route(&ctx.path)
        }
    }
}

fn known_sys(path: &str) -> bool {
    [
        "sys/mounts",
        "sys/auth",
        "sys/policy",
        "sys/policies/acl",
        "sys/namespaces",
        "sys/capabilities-self",
        "sys/leases",
    ]
    .iter()
    .any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

fn child_ns(parent: &str, name: &str) -> String {
    let name = name.trim_matches('/');
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

pub(crate) fn valid_namespace_name(name: &str) -> Result<(), String> {
    let name = name.trim_matches('/');
    if name.is_empty() || name.contains('/') {
        return Err(format!("invalid namespace name {name:?}"));
    }
    if matches!(
        name,
        "root" | "sys" | "audit" | "auth" | "cubbyhole" | "identity"
    ) {
        return Err(format!(
            "{name:?} is a reserved path and cannot be used as a namespace name"
        ));
    }
    Ok(())
}

fn ns_json(full: &str, n: &Namespace) -> Value {
    json!({
        "id": n.id,
        "path": format!("{full}/"),
        "custom_metadata": n.custom_metadata,
    })
}

pub(crate) fn write(st: &mut State, _shared: &Arc<Shared>, ctx: &Ctx, token: &Token) -> Resp {
    let path = ctx.path.trim_end_matches('/');
    if let Some(mount) = path.strip_prefix("sys/mounts/") {
        if let Some(m) = mount.strip_suffix("/tune") {
            return match ctx.op {
                Op::Write => tune(st, &ctx.ns, m, &ctx.body),
                _ => Resp::unsupported_op(),
            };
        }
        return match ctx.op {
            Op::Write => enable_mount(st, &ctx.ns, mount, &ctx.body),
            Op::Delete => {
                let key = norm_mount(mount);
                let ns = st.ns_mut(&ctx.ns).expect("checked");
                if matches!(key.as_str(), "sys/" | "cubbyhole/" | "identity/") {
                    return Resp::bad_request(format!("cannot unmount \"{key}\""));
                }
                ns.mounts.remove(&key);
                // Unmounting revokes every lease the engine issued.
                st.leases.revoke_prefix(&ctx.ns, &key);
                Resp::no_content()
            }
            _ => Resp::unsupported_op(),
        };
    }
    if let Some(mount) = path.strip_prefix("sys/auth/") {
        return match ctx.op {
            Op::Write => {
                let kind = opt_str(&ctx.body, "type").unwrap_or_default();
                let description = opt_str(&ctx.body, "description").unwrap_or_default();
                enable_auth(st, &ctx.ns, mount, &kind, &description)
            }
            Op::Delete => {
                let key = norm_mount(mount);
                if key == "token/" {
                    return Resp::bad_request("token credential backend cannot be disabled");
                }
                let removed = st
                    .ns_mut(&ctx.ns)
                    .expect("checked")
                    .auths
                    .remove(&key)
                    .is_some();
                if removed {
                    // Disabling an auth method revokes the tokens it issued.
                    let prefix = format!("auth/{key}");
                    let ids: Vec<String> = st
                        .tokens
                        .values()
                        .filter(|t| t.namespace == ctx.ns && t.path.starts_with(&prefix))
                        .map(|t| t.id.clone())
                        .collect();
                    for id in ids {
                        st.revoke_tree(&id);
                    }
                }
                Resp::no_content()
            }
            _ => Resp::unsupported_op(),
        };
    }
    if let Some(name) = policy_name(&ctx.path) {
        let name = name.to_lowercase();
        return match ctx.op {
            Op::Write => {
                let text = opt_str(&ctx.body, "policy")
                    .or_else(|| opt_str(&ctx.body, "rules"))
                    .unwrap_or_default();
                put_policy(st, &ctx.ns, &name, &text)
            }
            Op::Delete => {
                if name == "root" || name == "default" {
                    return Resp::bad_request(format!("cannot delete \"{name}\" policy"));
                }
                st.ns_mut(&ctx.ns).expect("checked").policies.remove(&name);
                Resp::no_content()
            }
            _ => Resp::unsupported_op(),
        };
    }
    if let Some(name) = path.strip_prefix("sys/namespaces/") {
        let full = child_ns(&ctx.ns, name);
        return match ctx.op {
            Op::Write => {
                if let Err(e) = valid_namespace_name(name) {
                    return Resp::bad_request(e);
                }
                if st.namespaces.contains_key(&full) {
                    let n = &st.namespaces[&full];
                    return Resp::data(ns_json(&full, n));
                }
                let mut n = Namespace::new(false);
                if let Some(Value::Object(m)) = ctx.body.get("custom_metadata") {
                    for (k, v) in m {
                        if let Some(s) = v.as_str() {
                            n.custom_metadata.insert(k.clone(), s.to_string());
                        }
                    }
                }
                let out = ns_json(&full, &n);
                st.namespaces.insert(full, n);
                Resp::data(out)
            }
            Op::Delete => {
                let prefix = format!("{full}/");
                st.namespaces
                    .retain(|k, _| k != &full && !k.starts_with(&prefix));
                let ids: Vec<String> = st
                    .tokens
                    .values()
                    .filter(|t| t.namespace == full || t.namespace.starts_with(&prefix))
                    .map(|t| t.id.clone())
                    .collect();
                for id in ids {
                    st.revoke_tree(&id);
                }
                Resp::no_content()
            }
            _ => Resp::unsupported_op(),
        };
    }
    if crate::leases::is_lease_path(path) {
        return crate::leases::write(&mut st.leases, ctx);
    }
    if path == "sys/capabilities-self" && ctx.op == Op::Write {
        let mut paths = crate::util::string_list(ctx.body.get("paths")).unwrap_or_default();
        if let Some(p) = opt_str(&ctx.body, "path") {
            paths.push(p);
        }
        if paths.is_empty() {
            return Resp::bad_request("paths must be supplied");
        }
        let mut data = Map::new();
        let mut all: Vec<&str> = Vec::new();
        for p in &paths {
            let caps = st.capabilities(token, &ctx.ns, p);
            let names = if token.is_root() {
                vec!["root"]
            } else if caps == 0 {
                vec!["deny"]
            } else {
                policy::cap_names(caps)
            };
            all.extend(names.iter().copied());
            data.insert(p.clone(), json!(names));
        }
        all.sort();
        all.dedup();
        data.insert("capabilities".into(), json!(all));
        return top_level_and_data(data);
    }
    if known_sys(path) {
        return Resp::unsupported_op();
    }
    Resp::no_route(&ctx.path)
}

fn tune_json(m: &Mount) -> Value {
    json!({
        "default_lease_ttl": crate::state::DEFAULT_TTL,
        "max_lease_ttl": crate::state::DEFAULT_TTL,
        "force_no_cache": false,
        "description": m.description,
        "options": m.options(),
    })
}

/// Mount tuning: the description, and the KV version (upgrading a v1 mount
/// to v2 keeps each secret as its version 1, as Vault's upgrade does).
fn tune(st: &mut State, ns: &str, mount: &str, body: &Value) -> Resp {
    let key = norm_mount(mount);
    let Some(m) = st.ns_mut(ns).and_then(|n| n.mounts.get_mut(&key)) else {
        return Resp::bad_request(format!("cannot fetch sysview for path \"{key}\""));
    };
    let version = body.get("options").and_then(|o| opt_str(o, "version"));
    match (version.as_deref(), &mut m.engine) {
        (None, _) | (Some("1"), Engine::Kv1(_)) | (Some("2"), Engine::Kv2(_)) => {}
        (Some("2"), Engine::Kv1(v1)) => {
            let mut v2 = Kv2Store::default();
            for (path, data) in std::mem::take(&mut v1.secrets) {
                if let Err(e) = v2.put(&path, data, None) {
                    return e;
                }
            }
            m.engine = Engine::Kv2(v2);
        }
        (Some("1"), Engine::Kv2(_)) => {
            return Resp::bad_request("cannot downgrade mount from KV version 2 to version 1");
        }
        (Some(v), _) => return Resp::bad_request(format!("invalid KV version \"{v}\"")),
    }
    if let Some(d) = opt_str(body, "description") {
        m.description = d;
    }
    Resp::no_content()
}

pub(crate) fn enable_mount(st: &mut State, ns: &str, mount: &str, body: &Value) -> Resp {
    let key = norm_mount(mount);
    if key == "/" {
        return Resp::bad_request("path cannot be empty");
    }
    let kind = opt_str(body, "type").unwrap_or_default();
    let version = body
        .get("options")
        .and_then(|o| opt_str(o, "version"))
        .unwrap_or_default();
    let description = opt_str(body, "description").unwrap_or_default();
    let (engine, kind) = match (kind.as_str(), version.as_str()) {
        ("kv" | "generic", "" | "1") => (Engine::Kv1(Kv1Store::default()), "kv"),
        ("kv" | "generic", "2") | ("kv-v2", "" | "2") => (Engine::Kv2(Kv2Store::default()), "kv"),
        ("database", _) => (Engine::Database(DbStore::default()), "database"),
        ("kv" | "kv-v2" | "generic", v) => {
            return Resp::bad_request(format!("invalid KV version \"{v}\""));
        }
        ("", _) => return Resp::bad_request("plugin not found in the catalog: "),
        (other, _) => {
            return Resp::bad_request(format!("plugin not found in the catalog: {other}"));
        }
    };
    let Some(n) = st.ns_mut(ns) else {
        return Resp::no_route(&format!("sys/mounts/{mount}"));
    };
    if matches!(key.as_str(), "sys/" | "auth/" | "cubbyhole/" | "identity/") {
        return Resp::bad_request(format!("cannot mount \"{key}\": reserved path"));
    }
    if n.mounts
        .keys()
        .any(|m| key.starts_with(m.as_str()) || m.starts_with(&key))
    {
        return Resp::bad_request(format!("path is already in use at {key}"));
    }
    let mut m = Mount::new(kind, kind, &description, engine);
    m.uuid = uuid();
    n.mounts.insert(key, m);
    Resp::no_content()
}

pub(crate) fn enable_auth(
    st: &mut State,
    ns: &str,
    mount: &str,
    kind: &str,
    description: &str,
) -> Resp {
    let key = norm_mount(mount);
    if key == "/" {
        return Resp::bad_request("path cannot be empty");
    }
    let Some((kind, backend)) = AuthBackend::new(kind) else {
        if kind.is_empty() {
            return Resp::bad_request("plugin not found in the catalog: ");
        }
        return Resp::bad_request(format!("plugin not found in the catalog: {kind}"));
    };
    let Some(n) = st.ns_mut(ns) else {
        return Resp::no_route(&format!("sys/auth/{mount}"));
    };
    if n.auths
        .keys()
        .any(|m| key.starts_with(m.as_str()) || m.starts_with(&key))
    {
        return Resp::bad_request(format!("path is already in use at auth/{key}"));
    }
    n.auths.insert(
        key,
        AuthMount {
            kind,
            accessor: format!("auth_{kind}_{}", &uuid()[..8]),
            uuid: uuid(),
            description: description.to_string(),
            backend,
        },
    );
    Resp::no_content()
}

pub(crate) fn put_policy(st: &mut State, ns: &str, name: &str, text: &str) -> Resp {
    if name == "root" {
        return Resp::bad_request("cannot update \"root\" policy");
    }
    if text.trim().is_empty() {
        return Resp::bad_request("'policy' parameter not supplied or empty");
    }
    let policy = match Policy::parse(name, text) {
        Ok(p) => p,
        Err(e) => return Resp::bad_request(format!("failed to parse policy: {e}")),
    };
    let Some(n) = st.ns_mut(ns) else {
        return Resp::no_route(&format!("sys/policies/acl/{name}"));
    };
    n.policies.insert(name.to_string(), policy);
    Resp::no_content()
}
