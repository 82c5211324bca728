//! A HashiCorp Vault HTTP API emulator for tests.
//!
//! [`VaultEmulator::start`] serves an in-memory Vault on an ephemeral
//! 127.0.0.1 port (optionally over TLS with a throwaway CA). It speaks the
//! parts of the HTTP API that secret-syncing clients use: `sys/` (health,
//! mounts, auth, policies, namespaces, leases), KV v1 and v2, the database
//! secrets engine (dynamic credentials under leases), the token store, and
//! the approle, userpass, ldap, kubernetes, jwt and cert auth methods, with
//! ACL policies enforced as Vault does. Tests can also set state directly,
//! inject faults (error statuses, or any raw answer: wrong content types,
//! bodies that are huge, trickled or cut short), and read request counters.
//!
//! The same controls are served under `/_emulator/` for out-of-process users
//! (benchmarks, the sandbox). They are not Vault requests: they are neither
//! logged nor counted, and need no token.
//!
//! | endpoint | body (JSON) | effect |
//! |---|---|---|
//! | `GET counters` | | `{requests, logins, kv_reads, by_endpoint}` ([`VaultEmulator::counters`]) |
//! | `POST counters/reset` | | zeroes the counters and the request log |
//! | `GET requests` | | `{requests: [{method, path, namespace, status}]}`, oldest first |
//! | `POST faults` | `{count, status, path_prefix?, retry_after?}` | the next `count` matching requests fail with `status` ([`VaultEmulator::fail_next_matching`]) |
//! | `POST raw` | see below | the next `count` matching requests get a raw answer ([`VaultEmulator::respond_raw_next_matching`]) |
//! | `DELETE faults` | | drops every pending fault and raw answer |
//! | `POST latency` | `{ms}` | delay before every API response |
//! | `POST sealed` | `{sealed}` | seals or unseals |
//! | `POST clock` | `{advance_s}` | moves the lease clock forward ([`VaultEmulator::advance_lease_clock`]) |
//! | `GET leases` | | `{issued, renewed, revoked, expired, live: [lease ids]}` ([`VaultEmulator::lease_counters`]) |
//! | `POST ldap/<mount>/users/<name>` | `{password, groups?}` | an entry in the LDAP directory |
//!
//! `path_prefix` matches the path after `/v1/` as a prefix in which `*`
//! stands for any run of characters (`auth/*/login`); without it every API
//! request matches. Faults and raw answers share one queue: the oldest
//! matching entry answers.
//!
//! `POST /_emulator/raw` takes `status` (required), `count` (default 1),
//! `path_prefix`, `headers` (an object of strings, sent as given: no
//! `content-type` is added) and `body` (text) or `body_base64`, then at most
//! one of:
//! - `size` (with optional `fill`, one character, default a space, and
//!   `chunked`): `body`, then `fill` up to `size` bytes, generated 64 KiB at
//!   a time and never held in memory; sent with `Content-Length`, or chunked;
//! - `trickle_ms` (with optional `chunk`, default 1, `fill` and `size`):
//!   `body`, then `chunk` fill bytes every `trickle_ms` milliseconds, until
//!   `size` bytes in all were sent, or forever without `size`;
//! - `claimed_length`: `Content-Length: claimed_length` but only `body` is
//!   sent, then the connection is closed.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use vault_emulator::{VaultEmulator, VaultEmulatorConfig};
//!
//! let vault = VaultEmulator::start(VaultEmulatorConfig::default()).await?;
//! vault.kv2_put("secret", "app/db", serde_json::json!({"password": "s3cret"}))?;
//! vault.put_policy("app", r#"path "secret/data/app/*" { capabilities = ["read"] }"#)?;
//! let token = vault.create_token(&["app"], None);
//! // GET {addr}/v1/secret/data/app/db with X-Vault-Token: token
//! # let _ = (vault.addr(), token);
//! vault.fail_next(1, 503, Some(2));
//! assert_eq!(vault.count_kv_reads(), 0);
//! vault.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod auth;
mod database;
mod kv;
mod leases;
mod policy;
mod raw;
mod server;
mod state;
mod sys;
mod tls;
mod token;
mod util;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{Context, anyhow};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use crate::leases::LeaseCounters;
pub use crate::raw::{RawBody, RawResponse};
use crate::server::{FaultAnswer, Metrics, Shared, lock};
use crate::state::{Engine, State, TokenSpec};
use crate::util::Resp;

/// How to start an emulator. `Default` gives plain HTTP on an ephemeral
/// port, a random root token and a KV v2 engine at `secret/` (as
/// `vault server -dev` has).
#[derive(Debug, Clone)]
pub struct VaultEmulatorConfig {
    /// Serve HTTPS with a self-signed CA and a certificate for
    /// 127.0.0.1/localhost; client certificates are requested, not required.
    pub tls: bool,
    pub root_token: Option<String>,
    /// Defaults to 127.0.0.1:0.
    pub bind: Option<SocketAddr>,
    /// Mount KV v2 at `secret/` in the root namespace.
    pub dev_secret_mount: bool,
}

impl Default for VaultEmulatorConfig {
    fn default() -> Self {
        VaultEmulatorConfig {
            tls: false,
            root_token: None,
            bind: None,
            dev_secret_mount: true,
        }
    }
}

/// One served request, as kept in the bounded request log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    /// The API path after `/v1/`.
    pub path: String,
    /// The `X-Vault-Namespace` header, normalized ("" for root).
    pub namespace: String,
    pub status: u16,
    /// When the answer was sent (tests check the spacing of reads, not only their number).
    pub at: std::time::Instant,
}

struct Inner {
    shared: Arc<Shared>,
    addr: SocketAddr,
    ca_pem: Option<String>,
    down_tx: watch::Sender<bool>,
    shutdown_tx: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// A running emulator; clones share the same server.
#[derive(Clone)]
pub struct VaultEmulator {
    inner: Arc<Inner>,
}

fn resp_err(r: Resp) -> anyhow::Error {
    let msg = r
        .body
        .as_ref()
        .and_then(|b| b.get("errors"))
        .map(|e| e.to_string())
        .unwrap_or_default();
    anyhow!("vault emulator: status {}: {msg}", r.status)
}

fn ok_or_err(r: Resp) -> anyhow::Result<()> {
    if r.status >= 400 {
        Err(resp_err(r))
    } else {
        Ok(())
    }
}

fn norm_ns(ns: &str) -> String {
    let ns = ns.trim().trim_matches('/');
    if ns == "root" {
        String::new()
    } else {
        ns.to_string()
    }
}

fn mount_key(mount: &str) -> String {
    format!("{}/", mount.trim_matches('/'))
}

impl VaultEmulator {
    pub async fn start(cfg: VaultEmulatorConfig) -> anyhow::Result<Self> {
        tls::install_provider();
        let bind = cfg
            .bind
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .with_context(|| format!("binding {bind}"))?;
        let addr = listener.local_addr()?;
        let (acceptor, ca_pem) = if cfg.tls {
            let t = tls::server_tls()?;
            (
                Some(tokio_rustls::TlsAcceptor::from(t.config)),
                Some(t.ca_pem),
            )
        } else {
            (None, None)
        };
        let root_token = cfg
            .root_token
            .clone()
            .unwrap_or_else(|| format!("hvs.{}", util::random_string(24)));
        let shared = Arc::new(Shared {
            state: RwLock::new(State::new(&root_token, cfg.dev_secret_mount)),
            metrics: Metrics::default(),
            faults: Mutex::new(VecDeque::new()),
            has_faults: AtomicBool::new(false),
            latency_ms: AtomicU64::new(0),
            sealed: AtomicBool::new(false),
            root_token,
            tls: cfg.tls,
        });
        let (down_tx, down_rx) = watch::channel(false);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let task = tokio::spawn(server::run(
            Some(listener),
            addr,
            shared.clone(),
            acceptor,
            down_rx,
            shutdown_rx,
        ));
        Ok(VaultEmulator {
            inner: Arc::new(Inner {
                shared,
                addr,
                ca_pem,
                down_tx,
                shutdown_tx,
                task: Mutex::new(Some(task)),
            }),
        })
    }

    /// Base URL, e.g. `http://127.0.0.1:8200` (no trailing slash).
    pub fn addr(&self) -> String {
        let scheme = if self.inner.shared.tls {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.inner.addr)
    }

    pub fn socket_addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// PEM of the CA that signed the server certificate, when serving TLS.
    pub fn ca_pem(&self) -> Option<String> {
        self.inner.ca_pem.clone()
    }

    pub fn root_token(&self) -> String {
        self.inner.shared.root_token.clone()
    }

    // ---- direct state setup -------------------------------------------

    /// Mounts a KV engine (version 1 or 2) at `mount` in the root namespace.
    pub fn enable_kv(&self, mount: &str, version: u8) -> anyhow::Result<()> {
        self.enable_kv_in("", mount, version)
    }

    pub fn enable_kv_in(&self, namespace: &str, mount: &str, version: u8) -> anyhow::Result<()> {
        let body =
            serde_json::json!({ "type": "kv", "options": { "version": version.to_string() } });
        let mut st = self.inner.shared.write();
        ok_or_err(sys::enable_mount(
            &mut st,
            &norm_ns(namespace),
            mount,
            &body,
        ))
    }

    /// Writes a new KV v2 version; returns its version number.
    pub fn kv2_put(&self, mount: &str, path: &str, data: Value) -> anyhow::Result<u64> {
        self.kv2_put_in("", mount, path, data)
    }

    pub fn kv2_put_in(
        &self,
        namespace: &str,
        mount: &str,
        path: &str,
        data: Value,
    ) -> anyhow::Result<u64> {
        let Value::Object(data) = data else {
            anyhow::bail!("KV data must be a JSON object");
        };
        self.with_kv2(namespace, mount, |store| {
            let meta = store
                .put(path.trim_matches('/'), data, None)
                .map_err(resp_err)?;
            Ok(meta["version"].as_u64().unwrap_or(0))
        })
    }

    /// Writes a KV v1 secret.
    pub fn kv1_put(&self, mount: &str, path: &str, data: Value) -> anyhow::Result<()> {
        self.kv1_put_in("", mount, path, data)
    }

    pub fn kv1_put_in(
        &self,
        namespace: &str,
        mount: &str,
        path: &str,
        data: Value,
    ) -> anyhow::Result<()> {
        let Value::Object(data) = data else {
            anyhow::bail!("KV data must be a JSON object");
        };
        let mut st = self.inner.shared.write();
        let ns = st
            .ns_mut(&norm_ns(namespace))
            .ok_or_else(|| anyhow!("no namespace {namespace:?}"))?;
        match ns.mounts.get_mut(&mount_key(mount)).map(|m| &mut m.engine) {
            Some(Engine::Kv1(store)) => {
                store
                    .secrets
                    .insert(path.trim_matches('/').to_string(), data);
                Ok(())
            }
            _ => Err(anyhow!("no KV v1 mount at {mount:?}")),
        }
    }

    /// Sets a KV v2 secret's custom metadata (creating the metadata entry
    /// if needed).
    pub fn kv2_set_custom_metadata(
        &self,
        mount: &str,
        path: &str,
        metadata: BTreeMap<String, String>,
    ) -> anyhow::Result<()> {
        let v = serde_json::to_value(&metadata)?;
        let meta = kv::custom_metadata(&v).map_err(|e| anyhow!(e))?;
        self.with_kv2("", mount, |store| {
            let secret = store
                .secrets
                .entry(path.trim_matches('/').to_string())
                .or_insert_with(|| {
                    let now = util::now_rfc3339();
                    kv::Kv2Secret {
                        created_time: now.clone(),
                        updated_time: now,
                        ..Default::default()
                    }
                });
            secret.custom_metadata = Some(meta);
            Ok(())
        })
    }

    /// Soft-deletes the given versions of a KV v2 secret.
    pub fn kv2_delete_versions(
        &self,
        mount: &str,
        path: &str,
        versions: &[u64],
    ) -> anyhow::Result<()> {
        self.with_kv2("", mount, |store| {
            let s = store
                .secrets
                .get_mut(path.trim_matches('/'))
                .ok_or_else(|| anyhow!("no secret at {path:?}"))?;
            for n in versions {
                if let Some(v) = s.versions.get_mut(n)
                    && !v.is_deleted()
                {
                    v.deletion_time = util::now_rfc3339();
                }
            }
            Ok(())
        })
    }

    /// Soft-deletes the latest version of a KV v2 secret (`DELETE <mount>/data/<path>`).
    pub fn kv2_delete_latest(&self, mount: &str, path: &str) -> anyhow::Result<()> {
        self.with_kv2("", mount, |store| {
            let s = store
                .secrets
                .get_mut(path.trim_matches('/'))
                .ok_or_else(|| anyhow!("no secret at {path:?}"))?;
            let n = s.current_version;
            if let Some(v) = s.versions.get_mut(&n)
                && !v.is_deleted()
                && !v.destroyed
            {
                v.deletion_time = util::now_rfc3339();
            }
            Ok(())
        })
    }

    /// Deletes a KV v2 secret with all its versions and metadata (`DELETE <mount>/metadata/<path>`).
    pub fn kv2_delete_all(&self, mount: &str, path: &str) -> anyhow::Result<()> {
        self.with_kv2("", mount, |store| {
            store
                .secrets
                .remove(path.trim_matches('/'))
                .map(|_| ())
                .ok_or_else(|| anyhow!("no secret at {path:?}"))
        })
    }

    fn with_kv2<T>(
        &self,
        namespace: &str,
        mount: &str,
        f: impl FnOnce(&mut kv::Kv2Store) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let mut st = self.inner.shared.write();
        let ns = st
            .ns_mut(&norm_ns(namespace))
            .ok_or_else(|| anyhow!("no namespace {namespace:?}"))?;
        match ns.mounts.get_mut(&mount_key(mount)).map(|m| &mut m.engine) {
            Some(Engine::Kv2(store)) => f(store),
            _ => Err(anyhow!("no KV v2 mount at {mount:?}")),
        }
    }

    /// Creates or replaces an ACL policy (HCL or JSON) in the root namespace.
    pub fn put_policy(&self, name: &str, policy: &str) -> anyhow::Result<()> {
        self.put_policy_in("", name, policy)
    }

    pub fn put_policy_in(&self, namespace: &str, name: &str, policy: &str) -> anyhow::Result<()> {
        let mut st = self.inner.shared.write();
        ok_or_err(sys::put_policy(
            &mut st,
            &norm_ns(namespace),
            &name.to_lowercase(),
            policy,
        ))
    }

    /// Enables an auth method (`approle`, `userpass`, `ldap`, `kubernetes`,
    /// `jwt`, `oidc`, `cert`) at `path` in the root namespace.
    pub fn enable_auth(&self, path: &str, kind: &str) -> anyhow::Result<()> {
        self.enable_auth_in("", path, kind)
    }

    pub fn enable_auth_in(&self, namespace: &str, path: &str, kind: &str) -> anyhow::Result<()> {
        let mut st = self.inner.shared.write();
        ok_or_err(sys::enable_auth(
            &mut st,
            &norm_ns(namespace),
            path,
            kind,
            "",
        ))
    }

    /// Creates a namespace (nested names like `a/b` need `a` first).
    pub fn create_namespace(&self, name: &str) -> anyhow::Result<()> {
        let name = norm_ns(name);
        if name.is_empty() {
            anyhow::bail!("namespace name must not be empty");
        }
        sys::valid_namespace_name(name.rsplit('/').next().unwrap_or_default())
            .map_err(|e| anyhow!(e))?;
        let mut st = self.inner.shared.write();
        if let Some((parent, _)) = name.rsplit_once('/')
            && !st.namespaces.contains_key(parent)
        {
            anyhow::bail!("parent namespace {parent:?} does not exist");
        }
        st.namespaces
            .entry(name)
            .or_insert_with(|| state::Namespace::new(false));
        Ok(())
    }

    /// Issues a token with these policies (plus `default`) in the root
    /// namespace; `ttl` of `None` gives Vault's default 768h.
    pub fn create_token(&self, policies: &[&str], ttl: Option<Duration>) -> String {
        self.create_token_in("", policies, ttl)
            .expect("root namespace exists")
    }

    pub fn create_token_in(
        &self,
        namespace: &str,
        policies: &[&str],
        ttl: Option<Duration>,
    ) -> anyhow::Result<String> {
        let ns = norm_ns(namespace);
        let mut st = self.inner.shared.write();
        if st.ns(&ns).is_none() {
            anyhow::bail!("no namespace {namespace:?}");
        }
        let t = st.issue_token(
            &ns,
            TokenSpec {
                policies: policies.iter().map(|p| p.to_string()).collect(),
                no_default_policy: false,
                ttl: ttl.map(|d| d.as_secs().max(1)).unwrap_or(0),
                explicit_max_ttl: 0,
                renewable: true,
                display_name: "token".into(),
                meta: None,
                path: "auth/token/create".into(),
                parent: None,
                num_uses: 0,
            },
        );
        Ok(t.id)
    }

    /// Adds (or updates) an entry in the directory behind the LDAP auth
    /// method mounted at `mount`, with its password and directory groups.
    pub fn ldap_set_password(
        &self,
        mount: &str,
        username: &str,
        password: &str,
    ) -> anyhow::Result<()> {
        self.ldap_set_user(mount, username, password, &[])
    }

    pub fn ldap_set_user(
        &self,
        mount: &str,
        username: &str,
        password: &str,
        groups: &[&str],
    ) -> anyhow::Result<()> {
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        self.inner
            .shared
            .ldap_set_user(mount, username, password, &groups)
            .map_err(|e| anyhow!(e))
    }

    // ---- dynamic secrets and leases ---------------------------------------

    /// Mounts the database secrets engine at `mount` in the root namespace.
    pub fn enable_database(&self, mount: &str) -> anyhow::Result<()> {
        let body = serde_json::json!({ "type": "database" });
        let mut st = self.inner.shared.write();
        ok_or_err(sys::enable_mount(&mut st, "", mount, &body))
    }

    /// A dynamic role `role` on the database engine at `mount` (mounted if needed), served by
    /// a connection named `db` that allows every role; TTLs as `default_ttl` and `max_ttl`
    /// (zero: the system's 768h).
    pub fn put_database_role(
        &self,
        mount: &str,
        role: &str,
        default_ttl: Duration,
        max_ttl: Duration,
    ) -> anyhow::Result<()> {
        let key = mount_key(mount);
        let mounted = self
            .inner
            .shared
            .read()
            .ns("")
            .is_some_and(|n| n.mounts.contains_key(&key));
        if !mounted {
            self.enable_database(mount)?;
        }
        let mut st = self.inner.shared.write();
        let ns = st.ns_mut("").expect("root namespace");
        let Some(Engine::Database(db)) = ns.mounts.get_mut(&key).map(|m| &mut m.engine) else {
            anyhow::bail!("no database engine at {mount:?}");
        };
        if !db.configs.contains_key("db") {
            ok_or_err(db.handle(
                "",
                "config/db",
                server::Op::Write,
                &serde_json::json!({
                    "plugin_name": "postgresql-database-plugin",
                    "connection_url": "postgresql://{{username}}:{{password}}@db:5432/app",
                    "allowed_roles": "*",
                }),
            ))?;
        }
        ok_or_err(db.handle(
            "",
            &format!("roles/{role}"),
            server::Op::Write,
            &serde_json::json!({
                "db_name": "db",
                "creation_statements": ["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"],
                "default_ttl": default_ttl.as_secs(),
                "max_ttl": max_ttl.as_secs(),
            }),
        ))
    }

    /// Moves the lease clock forward: leases age (and expire) as if `by` had passed. Tokens
    /// keep the wall clock.
    pub fn advance_lease_clock(&self, by: Duration) {
        self.inner.shared.write().leases.advance(by);
    }

    /// Leases issued, renewed, revoked and expired since the start.
    pub fn lease_counters(&self) -> LeaseCounters {
        let mut st = self.inner.shared.write();
        st.leases.sweep();
        st.leases.counters
    }

    /// Ids of the live leases whose id starts with `prefix`, e.g. `database/creds/app/` for one
    /// role's (in every namespace).
    pub fn live_leases(&self, prefix: &str) -> Vec<String> {
        self.inner.shared.write().leases.live(prefix)
    }

    // ---- faults ---------------------------------------------------------

    /// The next `n` API requests fail with `status` and a Vault-style error
    /// body, with a `Retry-After` header when given.
    pub fn fail_next(&self, n: usize, status: u16, retry_after: Option<u64>) {
        self.push_fault(None, n, status, retry_after);
    }

    /// Like [`fail_next`](Self::fail_next) for requests whose path (after
    /// `/v1/`) starts with `path_prefix`, in which `*` stands for any run of
    /// characters (`auth/*/login`).
    pub fn fail_next_matching(
        &self,
        path_prefix: &str,
        n: usize,
        status: u16,
        retry_after: Option<u64>,
    ) {
        self.push_fault(
            Some(path_prefix.trim_start_matches('/').to_string()),
            n,
            status,
            retry_after,
        );
    }

    fn push_fault(&self, prefix: Option<String>, n: usize, status: u16, retry_after: Option<u64>) {
        self.inner.shared.push_fault(
            prefix,
            n,
            FaultAnswer::Status {
                status,
                retry_after,
            },
        );
    }

    /// The next `n` API requests get `response` as is, whatever Vault would
    /// have answered. Shares its queue with [`fail_next`](Self::fail_next):
    /// the oldest matching entry answers first, and
    /// [`clear_faults`](Self::clear_faults) drops both.
    pub fn respond_raw_next(&self, n: usize, response: RawResponse) {
        self.inner
            .shared
            .push_fault(None, n, FaultAnswer::Raw(Arc::new(response)));
    }

    /// Like [`respond_raw_next`](Self::respond_raw_next) for requests whose
    /// path matches `path_prefix` as in
    /// [`fail_next_matching`](Self::fail_next_matching).
    ///
    /// ```no_run
    /// # async fn demo(vault: vault_emulator::VaultEmulator) {
    /// use vault_emulator::RawResponse;
    /// // A proxy's error page instead of the secret, twice.
    /// vault.respond_raw_next_matching(
    ///     "secret/data/app",
    ///     2,
    ///     RawResponse::new(200)
    ///         .header("content-type", "text/html")
    ///         .body("<html>Bad gateway</html>"),
    /// );
    /// // 1 GiB of spaces after an opening brace, generated as it is sent.
    /// vault.respond_raw_next_matching("secret/*", 1, RawResponse::new(200).generated("{", b' ', 1 << 30));
    /// # }
    /// ```
    pub fn respond_raw_next_matching(&self, path_prefix: &str, n: usize, response: RawResponse) {
        self.inner.shared.push_fault(
            Some(path_prefix.trim_start_matches('/').to_string()),
            n,
            FaultAnswer::Raw(Arc::new(response)),
        );
    }

    pub fn clear_faults(&self) {
        self.inner.shared.clear_faults();
    }

    /// Delay added before every API response.
    pub fn set_latency(&self, d: Duration) {
        self.inner
            .shared
            .latency_ms
            .store(d.as_millis() as u64, Ordering::Relaxed);
    }

    /// While down the listener is closed (connections are refused) and
    /// open connections are dropped; coming back up rebinds the same port.
    pub fn set_down(&self, down: bool) {
        let _ = self.inner.down_tx.send(down);
    }

    /// While sealed, `sys/health` answers 503 and every other call
    /// `503 {"errors":["Vault is sealed"]}`.
    pub fn set_sealed(&self, sealed: bool) {
        self.inner.shared.sealed.store(sealed, Ordering::Relaxed);
    }

    /// Revokes every token except the root token.
    pub fn revoke_all_tokens(&self) {
        let root = self.root_token();
        let mut st = self.inner.shared.write();
        st.tokens.retain(|id, _| *id == root);
        let keep: Vec<String> = st.tokens.values().map(|t| t.accessor.clone()).collect();
        st.accessors.retain(|a, _| keep.contains(a));
    }

    /// Revokes one token (and its children); false when it did not exist.
    pub fn revoke_token(&self, token: &str) -> bool {
        let mut st = self.inner.shared.write();
        let existed = st.tokens.contains_key(token);
        st.revoke_tree(token);
        existed
    }

    /// Number of live (unexpired) tokens, root included.
    pub fn live_tokens(&self) -> usize {
        self.inner
            .shared
            .read()
            .tokens
            .values()
            .filter(|t| !t.expired())
            .count()
    }

    // ---- counters -------------------------------------------------------

    /// The most recent requests (a bounded log), oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.inner.shared.metrics.log)
            .iter()
            .cloned()
            .collect()
    }

    pub fn count_requests(&self) -> usize {
        self.inner.shared.metrics.total.load(Ordering::Relaxed) as usize
    }

    /// Login calls (`auth/<mount>/login*`), successful or not.
    pub fn count_logins(&self) -> usize {
        self.inner.shared.metrics.logins.load(Ordering::Relaxed) as usize
    }

    /// Authorized GETs of KV data: v1 secrets and v2 `data/` and
    /// `metadata/` reads (LIST excluded).
    pub fn count_kv_reads(&self) -> usize {
        self.inner.shared.metrics.kv_reads.load(Ordering::Relaxed) as usize
    }

    /// Per-endpoint counts keyed by `"METHOD path-class"`.
    pub fn counters(&self) -> Value {
        self.inner.shared.metrics.to_json()
    }

    pub fn reset_counters(&self) {
        self.inner.shared.metrics.reset();
    }

    /// Headers (lowercase names) of the last request to `path` (after
    /// `/v1/`).
    pub fn last_headers(&self, path: &str) -> Option<Vec<(String, String)>> {
        lock(&self.inner.shared.metrics.last_headers)
            .get(path.trim_start_matches('/'))
            .cloned()
    }

    /// Value of header `name` in the last request to `path`.
    pub fn last_header(&self, path: &str, name: &str) -> Option<String> {
        let name = name.to_ascii_lowercase();
        self.last_headers(path)?
            .into_iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// Stops the server and waits for its accept loop to end.
    pub async fn shutdown(self) {
        let _ = self.inner.shutdown_tx.send(true);
        let task = lock(&self.inner.task).take();
        if let Some(t) = task {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}
