//! In-memory server state: namespaces with their mounts, auth methods and
//! policies, plus the token store.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::auth::AuthBackend;
use crate::database::DbStore;
use crate::kv::{Kv1Store, Kv2Store};
use crate::leases::Leases;
use crate::policy::{DEFAULT_POLICY, Policy};
use crate::util::{random_string, uuid};

/// Default and maximum token TTL of a Vault server with no tuning (768h).
pub(crate) const DEFAULT_TTL: u64 = 2_764_800;

pub(crate) enum Engine {
    Kv1(Kv1Store),
    Kv2(Kv2Store),
    Database(DbStore),
    /// Built-in mounts (sys, cubbyhole, identity) that are listed but not
    /// served as secrets.
    Builtin,
}

pub(crate) struct Mount {
    pub kind: &'static str,
    pub accessor: String,
    pub uuid: String,
    pub description: String,
    pub engine: Engine,
    pub local: bool,
}

impl Mount {
    pub fn new(kind: &'static str, prefix: &str, description: &str, engine: Engine) -> Mount {
        Mount {
            kind,
            accessor: format!("{prefix}_{}", &uuid()[..8]),
            uuid: uuid(),
            description: description.to_string(),
            engine,
            local: false,
        }
    }

    pub fn options(&self) -> Value {
        match &self.engine {
            Engine::Kv1(_) => json!({ "version": "1" }),
            Engine::Kv2(_) => json!({ "version": "2" }),
            Engine::Database(_) | Engine::Builtin => Value::Null,
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "accessor": self.accessor,
            "config": {
                "default_lease_ttl": 0,
                "force_no_cache": false,
                "max_lease_ttl": 0,
            },
            "description": self.description,
            "external_entropy_access": false,
            "local": self.local,
            "options": self.options(),
            "plugin_version": "",
            "running_plugin_version": "",
            "running_sha256": "",
            "seal_wrap": false,
            "type": self.kind,
            "uuid": self.uuid,
        })
    }
}

pub(crate) struct AuthMount {
    pub kind: &'static str,
    pub accessor: String,
    pub uuid: String,
    pub description: String,
    pub backend: AuthBackend,
}

impl AuthMount {
    pub fn to_json(&self) -> Value {
        json!({
            "accessor": self.accessor,
            "config": {
                "default_lease_ttl": 0,
                "force_no_cache": false,
                "max_lease_ttl": 0,
                "token_type": "default-service",
            },
            "description": self.description,
            "external_entropy_access": false,
            "local": false,
            "options": null,
            "plugin_version": "",
            "running_plugin_version": "",
            "running_sha256": "",
            "seal_wrap": false,
            "type": self.kind,
            "uuid": self.uuid,
        })
    }
}

pub(crate) struct Namespace {
    pub id: String,
    pub custom_metadata: BTreeMap<String, String>,
    /// Mount paths always end in `/`.
    pub mounts: BTreeMap<String, Mount>,
    /// Keyed by the path under `auth/`, ending in `/`.
    pub auths: BTreeMap<String, AuthMount>,
    pub policies: BTreeMap<String, Policy>,
}

impl Namespace {
    pub fn new(with_secret_mount: bool) -> Namespace {
        let mut mounts = BTreeMap::new();
        mounts.insert(
            "cubbyhole/".to_string(),
            Mount::new(
                "cubbyhole",
                "cubbyhole",
                "per-token private secret storage",
                Engine::Builtin,
            ),
        );
        mounts.insert(
            "identity/".to_string(),
            Mount::new("identity", "identity", "identity store", Engine::Builtin),
        );
        mounts.insert(
            "sys/".to_string(),
            Mount::new(
                "system",
                "system",
                "system endpoints used for control, policy and debugging",
                Engine::Builtin,
            ),
        );
        if with_secret_mount {
            mounts.insert(
                "secret/".to_string(),
                Mount::new(
                    "kv",
                    "kv",
                    "key/value secret storage",
                    Engine::Kv2(Kv2Store::default()),
                ),
            );
        }
        let mut auths = BTreeMap::new();
        auths.insert(
            "token/".to_string(),
            AuthMount {
                kind: "token",
                accessor: format!("auth_token_{}", &uuid()[..8]),
                uuid: uuid(),
                description: "token based credentials".into(),
                backend: AuthBackend::Token,
            },
        );
        let mut policies = BTreeMap::new();
        policies.insert(
            "default".to_string(),
            Policy::parse("default", DEFAULT_POLICY).expect("built-in default policy parses"),
        );
        policies.insert(
            "root".to_string(),
            Policy {
                name: "root".into(),
                text: String::new(),
                rules: Vec::new(),
            },
        );
        Namespace {
            id: random_string(5),
            custom_metadata: BTreeMap::new(),
            mounts,
            auths,
            policies,
        }
    }

    /// The mount serving `path` (longest prefix) and the rest of the path.
    pub fn mount_for<'a>(&self, path: &'a str) -> Option<(String, &'a str)> {
        let probe = if path.ends_with('/') {
            path.to_string()
        } else {
            format!("{path}/")
        };
        self.mounts
            .keys()
            .filter(|m| probe.starts_with(m.as_str()))
            .max_by_key(|m| m.len())
            .map(|m| {
                let rest = path.get(m.len()..).unwrap_or("");
                (m.clone(), rest)
            })
    }

    /// The auth mount serving `sub` (the path after `auth/`).
    pub fn auth_for<'a>(&self, sub: &'a str) -> Option<(String, &'a str)> {
        let probe = if sub.ends_with('/') {
            sub.to_string()
        } else {
            format!("{sub}/")
        };
        self.auths
            .keys()
            .filter(|m| probe.starts_with(m.as_str()))
            .max_by_key(|m| m.len())
            .map(|m| (m.clone(), sub.get(m.len()..).unwrap_or("")))
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub id: String,
    pub accessor: String,
    pub namespace: String,
    pub policies: Vec<String>,
    pub meta: Option<BTreeMap<String, String>>,
    pub display_name: String,
    pub path: String,
    pub creation_time: u64,
    pub creation_ttl: u64,
    /// Wall-clock expiry; `None` for tokens that never expire (root).
    pub expires_at: Option<SystemTime>,
    pub renewable: bool,
    pub orphan: bool,
    pub parent: Option<String>,
    pub explicit_max_ttl: u64,
    /// Uses left for tokens created with `num_uses`; shared between clones
    /// so a use can be taken under the read lock.
    pub uses_left: Option<Arc<AtomicU64>>,
}

impl Token {
    fn uses_json(&self) -> u64 {
        self.uses_left
            .as_ref()
            .map(|u| u.load(Ordering::SeqCst))
            .unwrap_or(0)
    }

    /// Takes one use; false when a limited token has none left.
    pub fn take_use(&self) -> bool {
        match &self.uses_left {
            None => true,
            Some(u) => u
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok(),
        }
    }

    pub fn exhausted(&self) -> bool {
        self.uses_left
            .as_ref()
            .is_some_and(|u| u.load(Ordering::SeqCst) == 0)
    }

    pub fn is_root(&self) -> bool {
        self.policies.iter().any(|p| p == "root")
    }

    pub fn expired(&self) -> bool {
        matches!(self.expires_at, Some(t) if t <= SystemTime::now())
    }

    pub fn remaining_ttl(&self) -> u64 {
        match self.expires_at {
            None => 0,
            Some(t) => t
                .duration_since(SystemTime::now())
                .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
                .unwrap_or(0),
        }
    }

    /// The `auth` block of a login or token-create response.
    pub fn auth_json(&self, token_policies: &[String]) -> Value {
        json!({
            "client_token": self.id,
            "accessor": self.accessor,
            "policies": self.policies,
            "token_policies": token_policies,
            "identity_policies": null,
            "metadata": self.meta,
            "lease_duration": self.creation_ttl,
            "renewable": self.renewable,
            "entity_id": "",
            "token_type": "service",
            "orphan": self.orphan,
            "mfa_requirement": null,
            "num_uses": self.uses_json(),
        })
    }

    /// The `data` of token lookups.
    pub fn lookup_json(&self) -> Value {
        let expire_time = self.expires_at.map(|t| crate::util::rfc3339(t.into()));
        let issue_time =
            crate::util::rfc3339((UNIX_EPOCH + Duration::from_secs(self.creation_time)).into());
        json!({
            "accessor": self.accessor,
            "creation_time": self.creation_time,
            "creation_ttl": self.creation_ttl,
            "display_name": self.display_name,
            "entity_id": "",
            "expire_time": expire_time,
            "explicit_max_ttl": self.explicit_max_ttl,
            "id": self.id,
            "issue_time": issue_time,
            "meta": self.meta,
            "num_uses": self.uses_json(),
            "orphan": self.orphan,
            "path": self.path,
            "policies": self.policies,
            "renewable": self.renewable,
            "ttl": self.remaining_ttl(),
            "type": "service",
            "namespace_path": if self.namespace.is_empty() { String::new() } else { format!("{}/", self.namespace) },
        })
    }
}

/// What a successful login or token creation asks for.
pub(crate) struct TokenSpec {
    pub policies: Vec<String>,
    pub no_default_policy: bool,
    pub ttl: u64,
    pub explicit_max_ttl: u64,
    pub renewable: bool,
    pub display_name: String,
    pub meta: Option<BTreeMap<String, String>>,
    pub path: String,
    pub parent: Option<String>,
    pub num_uses: u64,
}

pub(crate) struct State {
    pub namespaces: HashMap<String, Namespace>,
    pub tokens: HashMap<String, Token>,
    pub accessors: HashMap<String, String>,
    pub leases: Leases,
}

impl State {
    pub fn new(root_token: &str, with_secret_mount: bool) -> State {
        let mut s = State {
            namespaces: HashMap::new(),
            tokens: HashMap::new(),
            accessors: HashMap::new(),
            leases: Leases::default(),
        };
        s.namespaces
            .insert(String::new(), Namespace::new(with_secret_mount));
        let accessor = random_string(24);
        s.accessors.insert(accessor.clone(), root_token.to_string());
        s.tokens.insert(
            root_token.to_string(),
            Token {
                id: root_token.to_string(),
                accessor,
                namespace: String::new(),
                policies: vec!["root".into()],
                meta: None,
                display_name: "root".into(),
                path: "auth/token/root".into(),
                creation_time: now_secs(),
                creation_ttl: 0,
                expires_at: None,
                renewable: false,
                orphan: true,
                parent: None,
                explicit_max_ttl: 0,
                uses_left: None,
            },
        );
        s
    }

    pub fn ns(&self, ns: &str) -> Option<&Namespace> {
        self.namespaces.get(ns)
    }

    pub fn ns_mut(&mut self, ns: &str) -> Option<&mut Namespace> {
        self.namespaces.get_mut(ns)
    }

    /// A live token usable in namespace `ns`: tokens are confined to their
    /// own namespace and its children.
    pub fn token(&self, id: &str, ns: &str) -> Option<&Token> {
        let t = self.tokens.get(id)?;
        if t.expired() {
            return None;
        }
        let visible = t.namespace == ns
            || t.namespace.is_empty()
            || ns.starts_with(&format!("{}/", t.namespace));
        visible.then_some(t)
    }

    pub fn issue_token(&mut self, ns: &str, spec: TokenSpec) -> Token {
        let mut policies: Vec<String> = spec.policies.clone();
        if !spec.no_default_policy && !policies.iter().any(|p| p == "root") {
            policies.push("default".into());
        }
        policies.sort();
        policies.dedup();
        let ttl = if policies.iter().any(|p| p == "root") && spec.ttl == 0 {
            0
        } else if spec.ttl == 0 {
            DEFAULT_TTL
        } else {
            spec.ttl.min(if spec.explicit_max_ttl > 0 {
                spec.explicit_max_ttl
            } else {
                u64::MAX
            })
        };
        let mut id = format!("hvs.{}", random_string(24));
        if !ns.is_empty() {
            // Vault suffixes namespaced tokens with the namespace id.
            let ns_id = self
                .namespaces
                .get(ns)
                .map(|n| n.id.clone())
                .unwrap_or_default();
            id = format!("{id}.{ns_id}");
        }
        let accessor = random_string(24);
        let token = Token {
            id: id.clone(),
            accessor: accessor.clone(),
            namespace: ns.to_string(),
            policies,
            meta: spec.meta,
            display_name: spec.display_name,
            path: spec.path,
            creation_time: now_secs(),
            creation_ttl: ttl,
            expires_at: (ttl > 0).then(|| SystemTime::now() + Duration::from_secs(ttl)),
            renewable: spec.renewable && ttl > 0,
            orphan: spec.parent.is_none(),
            parent: spec.parent,
            explicit_max_ttl: spec.explicit_max_ttl,
            uses_left: (spec.num_uses > 0).then(|| Arc::new(AtomicU64::new(spec.num_uses))),
        };
        self.accessors.insert(accessor, id.clone());
        self.tokens.insert(id, token.clone());
        token
    }

    /// Revokes a token and, as Vault does, every token created under it
    /// (its children are not orphaned).
    pub fn revoke_tree(&mut self, id: &str) {
        let mut stack = vec![id.to_string()];
        while let Some(cur) = stack.pop() {
            if let Some(t) = self.tokens.remove(&cur) {
                self.accessors.remove(&t.accessor);
            }
            let children: Vec<String> = self
                .tokens
                .values()
                .filter(|t| t.parent.as_deref() == Some(cur.as_str()))
                .map(|t| t.id.clone())
                .collect();
            stack.extend(children);
        }
    }

    /// Drops expired tokens so the store stays bounded in long benchmarks.
    pub fn sweep_expired(&mut self) {
        let expired: Vec<String> = self
            .tokens
            .values()
            .filter(|t| t.expired())
            .map(|t| t.id.clone())
            .collect();
        for id in expired {
            if let Some(t) = self.tokens.remove(&id) {
                self.accessors.remove(&t.accessor);
            }
        }
    }

    /// Whether any of the token's policies grants something under `mount`
    /// (a path ending in `/`), as Vault's UI mount lookup requires.
    pub fn has_mount_access(&self, token: &Token, ns: &str, mount: &str) -> bool {
        if token.is_root() {
            return true;
        }
        let Some(home) = self.namespaces.get(&token.namespace) else {
            return false;
        };
        let mount = if token.namespace == ns {
            mount.to_string()
        } else {
            let rel_ns = ns
                .strip_prefix(&token.namespace)
                .unwrap_or(ns)
                .trim_start_matches('/');
            format!("{rel_ns}/{mount}")
        };
        let mount_segs = mount.trim_end_matches('/').split('/').count();
        token
            .policies
            .iter()
            .filter_map(|p| home.policies.get(p))
            .flat_map(|p| p.rules.iter())
            .filter(|r| r.caps & crate::policy::DENY == 0 && r.caps != 0)
            .any(|r| {
                let pat = r.pattern.trim_end_matches('*');
                if r.pattern.starts_with(&mount) {
                    return true;
                }
                if !pat.contains('+') {
                    return r.pattern.ends_with('*') && mount.starts_with(pat);
                }
                // Compare the mount's segments with the pattern's leading ones.
                let psegs: Vec<&str> = r.pattern.split('/').collect();
                let msegs: Vec<&str> = mount.trim_end_matches('/').split('/').collect();
                psegs.len() > mount_segs
                    && msegs.iter().zip(&psegs).all(|(m, p)| *p == "+" || p == m)
            })
    }

    /// The capability bits a token holds on `path` in namespace `ns`.
    pub fn capabilities(&self, token: &Token, ns: &str, path: &str) -> u16 {
        if token.is_root() {
            return crate::policy::CREATE
                | crate::policy::READ
                | crate::policy::UPDATE
                | crate::policy::DELETE
                | crate::policy::LIST
                | crate::policy::SUDO
                | crate::policy::PATCH;
        }
        // A token's policies live in the namespace it was created in; a
        // token used in a child namespace sees the path relative to its own.
        let Some(home) = self.namespaces.get(&token.namespace) else {
            return 0;
        };
        let rel_path = if token.namespace == ns {
            path.to_string()
        } else {
            let rel_ns = ns
                .strip_prefix(&token.namespace)
                .unwrap_or(ns)
                .trim_start_matches('/');
            format!("{rel_ns}/{path}")
        };
        let pols = token.policies.iter().filter_map(|p| home.policies.get(p));
        crate::policy::capabilities(pols, &rel_path)
    }
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
