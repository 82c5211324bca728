//! Logged-in clients per store identity, their tokens (renewed, re-obtained, revoked) and
//! deduplicated reads.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::{OnceCell, RwLock};
use zeroize::Zeroizing;

use super::auth::{self, AuthKind, LoginToken, Resolver};
use super::evict::{self, EntryState, Limits};
use super::http::{self, Reply, Req, RetryPolicy, Transport};
use super::{StoreHandle, VaultError};
use super::{answers, paths};
use crate::api::{StoreKind, VaultKvVersion};
use crate::metrics::Metrics;

/// How long a finished read answers identical reads of the same store, path and version by
/// default (the webhook's live checks, and syncs asked to see fresh data). ExternalSecrets
/// reading the same data come due at the same instant (see `reconcile::refresh::next_due`), so
/// a short window catches them all; it stays well under the shortest refresh interval people
/// use (1 s) so that each refresh still reads Vault.
pub const READ_SHARE_WINDOW: Duration = Duration::from_millis(500);
/// The longest any caller may let a finished read answer it ([`with_read_reuse`]).
pub const MAX_READ_REUSE: Duration = Duration::from_secs(30);
/// Values kept past [`READ_SHARE_WINDOW`] per store identity, estimated in bytes: reuse saves
/// Vault reads, it must not turn into a cache of every secret.
const READ_REUSE_BUDGET: usize = 4 << 20;

tokio::task_local! {
    static READ_REUSE: Duration;
}

/// Runs `fut` letting its reads be answered by an identical read (same store identity, path
/// and version) that finished up to `max_age` ago — clamped to
/// [`READ_SHARE_WINDOW`]..=[`MAX_READ_REUSE`]. The reconciler uses it so that the
/// ExternalSecrets reading one secret, created or changed seconds apart, cost one Vault read.
pub async fn with_read_reuse<F: std::future::Future>(max_age: Duration, fut: F) -> F::Output {
    READ_REUSE
        .scope(max_age.clamp(READ_SHARE_WINDOW, MAX_READ_REUSE), fut)
        .await
}

fn read_reuse() -> Duration {
    READ_REUSE.try_with(|d| *d).unwrap_or(READ_SHARE_WINDOW)
}
/// A renewal that leaves less than this fraction of the login TTL means the token is near its
/// max TTL: log in again instead of renewing ever more often.
const MIN_RENEW_FRACTION: u32 = 3;
/// Pause between attempts to replace a token that is due for renewal but still valid.
const REFRESH_HOLD: Duration = Duration::from_secs(10);
/// Upper bound of secrets and folders a `find` may list, so a huge mount (or an answer that
/// nests folders without end) cannot exhaust memory or list forever.
const MAX_LISTED: usize = 10_000;

struct Env {
    kube: kube::Client,
    metrics: Metrics,
    logins: AtomicU64,
    /// The HTTP client of every store that trusts the system's roots with no client
    /// certificate (see [`http::client_for`]). Kept here rather than for the whole process:
    /// a client's pooled connections belong to the runtime that opened them.
    http: OnceLock<reqwest::Client>,
}

/// Everything that changes the login identity of a store.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct CacheKey {
    kind: &'static str,
    namespace: Option<String>,
    name: String,
    uid: String,
    resource_version: String,
    /// Only for ClusterSecretStores that resolve references in the ExternalSecret's namespace.
    referent_namespace: Option<String>,
}

impl CacheKey {
    fn same_store(&self, other: &CacheKey) -> bool {
        self.kind == other.kind && self.namespace == other.namespace && self.name == other.name
    }
}

/// One cache entry: the client once logged in, and the last failure, which callers within
/// `LOGIN_FAILURE_WINDOW` share instead of each trying to log in again.
struct Entry {
    client: OnceCell<Arc<StoreClient>>,
    failure: Mutex<Option<(Instant, VaultError)>>,
    last_used: Mutex<Instant>,
}

impl Default for Entry {
    fn default() -> Self {
        Entry {
            client: OnceCell::new(),
            failure: Mutex::new(None),
            last_used: Mutex::new(Instant::now()),
        }
    }
}

impl Entry {
    /// What the eviction decision needs; `slot` is this entry as the cache holds it.
    fn state(slot: &Slot) -> EntryState {
        let client = slot.client.get();
        EntryState {
            last_used: *lock(&slot.last_used),
            logged_in: client.is_some(),
            failed_at: lock(&slot.failure).as_ref().map(|(at, _)| *at),
            // The cache holds one reference to the slot and the slot one to the client; any
            // other is a lookup or a call under way.
            in_use: Arc::strong_count(slot) > 1 || client.is_some_and(|c| Arc::strong_count(c) > 1),
        }
    }
}

type Slot = Arc<Entry>;

/// The process's Vault clients, shared by the webhook and the reconciler.
#[derive(Clone)]
pub struct VaultClients {
    env: Arc<Env>,
    cache: Arc<Mutex<HashMap<CacheKey, Slot>>>,
    limits: Limits,
    last_sweep: Arc<Mutex<Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl VaultClients {
    pub fn new(kube: kube::Client, metrics: Metrics) -> Self {
        Self::with_limits(kube, metrics, Limits::default())
    }

    /// With other bounds on the cache than the defaults (see [`Limits`]).
    pub fn with_limits(kube: kube::Client, metrics: Metrics, limits: Limits) -> Self {
        VaultClients {
            env: Arc::new(Env {
                kube,
                metrics,
                logins: AtomicU64::new(0),
                http: OnceLock::new(),
            }),
            cache: Arc::new(Mutex::new(HashMap::new())),
            limits,
            last_sweep: Arc::new(Mutex::new(Instant::now())),
        }
    }

    /// Store identities cached now, logged in or not.
    pub fn cached(&self) -> usize {
        lock(&self.cache).len()
    }

    /// Removes what [`evict::to_evict`] chooses; the caller retires their clients.
    fn sweep(&self, cache: &mut HashMap<CacheKey, Slot>, now: Instant) -> Vec<Slot> {
        *lock(&self.last_sweep) = now;
        let keys: Vec<&CacheKey> = cache.keys().collect();
        let states: Vec<EntryState> = keys.iter().map(|k| Entry::state(&cache[*k])).collect();
        let chosen: Vec<CacheKey> = evict::to_evict(&states, now, self.limits)
            .into_iter()
            .map(|i| keys[i].clone())
            .collect();
        chosen.iter().filter_map(|k| cache.remove(k)).collect()
    }

    /// A logged-in client for `store` as used by an ExternalSecret in `es_namespace`.
    ///
    /// One login per store identity: concurrent callers wait for the same login; a store's
    /// older resourceVersions (or a recreated store's old uid) are evicted and their tokens
    /// revoked.
    pub async fn client(
        &self,
        store: &StoreHandle,
        es_namespace: &str,
    ) -> Result<Arc<StoreClient>, VaultError> {
        let provider = store.spec.provider.vault.as_ref().ok_or_else(|| {
            VaultError::config(format!(
                "{} has no spec.provider.vault: vaultgate only serves the Vault provider",
                store.display()
            ))
        })?;
        let referent =
            store.kind == StoreKind::ClusterSecretStore && auth::has_referent_refs(provider);
        let key = CacheKey {
            kind: store.kind.as_str(),
            namespace: store.namespace.clone(),
            name: store.name.clone(),
            uid: store.uid.clone(),
            resource_version: store.resource_version.clone(),
            referent_namespace: referent.then(|| es_namespace.to_string()),
        };
        let (slot, evicted) = {
            let mut cache = lock(&self.cache);
            let stale: Vec<CacheKey> = cache
                .keys()
                .filter(|k| {
                    k.same_store(&key)
                        && (k.uid != key.uid || k.resource_version != key.resource_version)
                })
                .cloned()
                .collect();
            let mut evicted: Vec<Slot> = stale.iter().filter_map(|k| cache.remove(k)).collect();
            let now = Instant::now();
            let added = !cache.contains_key(&key);
            let slot = cache.entry(key).or_default().clone();
            *lock(&slot.last_used) = now;
            // Only a lookup that adds an entry, or one a while after the last sweep, sweeps:
            // a sweep walks every entry.
            if added || now.duration_since(*lock(&self.last_sweep)) >= evict::SWEEP_EVERY {
                evicted.extend(self.sweep(&mut cache, now));
            }
            (slot, evicted)
        };
        for old in evicted {
            if let Some(c) = old.client.get().cloned() {
                tokio::spawn(async move { c.retire().await });
            }
        }
        let recent_failure = || {
            lock(&slot.failure)
                .as_ref()
                .filter(|(at, _)| at.elapsed() < self.limits.failure_window)
                .map(|(_, e)| e.clone())
        };
        if slot.client.get().is_none()
            && let Some(e) = recent_failure()
        {
            return Err(e);
        }
        let client = slot
            .client
            .get_or_try_init(|| async {
                // Callers queued behind a failed login get its error, not a login each.
                if let Some(e) = recent_failure() {
                    return Err(e);
                }
                let r = StoreClient::connect(self.env.clone(), store.clone(), es_namespace).await;
                if let Err(e) = &r {
                    *lock(&slot.failure) = Some((Instant::now(), e.clone()));
                }
                r
            })
            .await?;
        Ok(client.clone())
    }

    /// Drops every cached client of a store (all versions and namespaces) and revokes their
    /// tokens; for a deleted store.
    pub async fn forget(&self, store: &StoreHandle) {
        let slots: Vec<Slot> = {
            let mut cache = lock(&self.cache);
            let keys: Vec<CacheKey> = cache
                .keys()
                .filter(|k| {
                    k.kind == store.kind.as_str()
                        && k.namespace == store.namespace
                        && k.name == store.name
                })
                .cloned()
                .collect();
            keys.iter().filter_map(|k| cache.remove(k)).collect()
        };
        let clients: Vec<Arc<StoreClient>> = slots
            .iter()
            .filter_map(|s| s.client.get().cloned())
            .collect();
        futures::future::join_all(clients.iter().map(|c| c.retire())).await;
    }

    /// Revokes every token obtained by a login (never a static token) and empties the cache;
    /// for shutdown.
    pub async fn revoke_all(&self) {
        let slots: Vec<Slot> = lock(&self.cache).drain().map(|(_, s)| s).collect();
        let clients: Vec<Arc<StoreClient>> = slots
            .iter()
            .filter_map(|s| s.client.get().cloned())
            .collect();
        futures::future::join_all(clients.iter().map(|c| c.retire())).await;
    }

    /// Login requests sent to Vault so far, successful or not (token auth reads a Secret and
    /// does not count).
    pub fn login_count(&self) -> u64 {
        self.env.logins.load(Ordering::Relaxed)
    }
}

/// The current token of a client. Never printed.
struct TokenState {
    token: Zeroizing<String>,
    generation: u64,
    obtained: Instant,
    ttl: Option<Duration>,
    login_ttl: Option<Duration>,
    renewable: bool,
    from_login: bool,
    /// After a failed renewal and re-login, the still valid token is used without new
    /// attempts until then, so that a broken credential does not cause a login per call.
    hold_until: Option<Instant>,
}

impl TokenState {
    fn from_login(t: LoginToken, generation: u64) -> Self {
        TokenState {
            token: t.token,
            generation,
            obtained: Instant::now(),
            ttl: t.ttl,
            login_ttl: t.ttl,
            renewable: t.renewable,
            from_login: t.from_login,
            hold_until: None,
        }
    }

    /// Still usable without renewal: static tokens and tokens without TTL always; others
    /// until two thirds of their TTL.
    fn fresh(&self, now: Instant) -> bool {
        if self.hold_until.is_some_and(|h| now < h) && !self.expired(now) {
            return true;
        }
        match self.ttl {
            Some(ttl) if self.from_login && !ttl.is_zero() => {
                now.duration_since(self.obtained) < ttl * 2 / 3
            }
            _ => true,
        }
    }

    fn expired(&self, now: Instant) -> bool {
        match self.ttl {
            Some(ttl) if self.from_login && !ttl.is_zero() => {
                now.duration_since(self.obtained) >= ttl
            }
            _ => false,
        }
    }
}

type ReadResult = Result<Option<Arc<Value>>, VaultError>;

struct ReadSlot {
    cell: OnceCell<ReadResult>,
    done: OnceLock<Instant>,
    /// Estimated size of the value, once read.
    size: OnceLock<usize>,
}

impl ReadSlot {
    fn new() -> Self {
        ReadSlot {
            cell: OnceCell::new(),
            done: OnceLock::new(),
            size: OnceLock::new(),
        }
    }

    /// Joinable: still running, or finished successfully less than `max_age` ago.
    ///
    /// `done` is set inside the read's future, a moment before the cell stores its result; a
    /// slot seen in that moment is still in flight. Taking it for finished-without-a-value sent a
    /// second request for the same path one round trip after the first.
    fn shareable(&self, now: Instant, max_age: Duration) -> bool {
        match self.cell.get() {
            None => true,
            Some(Ok(_)) => self
                .done
                .get()
                .is_some_and(|t| now.duration_since(*t) < max_age),
            Some(Err(_)) => false,
        }
    }
}

/// A rough size of a JSON value in memory, for [`READ_REUSE_BUDGET`].
fn value_size(v: &Value) -> usize {
    match v {
        Value::String(s) => 24 + s.len(),
        Value::Array(a) => 24 + a.iter().map(value_size).sum::<usize>(),
        Value::Object(o) => {
            24 + o
                .iter()
                .map(|(k, v)| 48 + k.len() + value_size(v))
                .sum::<usize>()
        }
        _ => 24,
    }
}

/// Drops reads nobody may reuse any more, then the oldest reused values over the budget.
fn sweep_reads(reads: &mut HashMap<String, Arc<ReadSlot>>, now: Instant) {
    reads.retain(|_, s| s.shareable(now, MAX_READ_REUSE));
    let kept: usize = reads
        .values()
        .filter(|s| !s.shareable(now, READ_SHARE_WINDOW))
        .filter_map(|s| s.size.get())
        .sum();
    if kept <= READ_REUSE_BUDGET {
        return;
    }
    let mut old: Vec<(Instant, String, usize)> = reads
        .iter()
        .filter(|(_, s)| !s.shareable(now, READ_SHARE_WINDOW))
        .filter_map(|(k, s)| Some((*s.done.get()?, k.clone(), *s.size.get()?)))
        .collect();
    old.sort_unstable_by_key(|(t, _, _)| *t);
    let mut over = kept - READ_REUSE_BUDGET;
    for (_, k, size) in old {
        if over == 0 {
            break;
        }
        reads.remove(&k);
        over = over.saturating_sub(size);
    }
}

/// A logged-in Vault client for one store identity.
pub struct StoreClient {
    env: Arc<Env>,
    store: StoreHandle,
    es_namespace: String,
    kind: AuthKind,
    transport: Transport,
    login_namespace: Option<String>,
    kv_version: VaultKvVersion,
    mount: Option<String>,
    state: RwLock<TokenState>,
    refresh: tokio::sync::Mutex<()>,
    retired: AtomicBool,
    reads: Mutex<HashMap<String, Arc<ReadSlot>>>,
}

impl StoreClient {
    async fn connect(
        env: Arc<Env>,
        store: StoreHandle,
        es_namespace: &str,
    ) -> Result<Arc<StoreClient>, VaultError> {
        let p = store
            .spec
            .provider
            .vault
            .as_ref()
            .ok_or_else(|| VaultError::config("spec.provider.vault is not set"))?;
        let kind = auth::auth_kind(p.auth.as_ref())?;
        let resolver = Resolver {
            kube: &env.kube,
            store: &store,
            es_namespace,
        };
        let tls = resolver.tls_material(p).await?;
        let retry = RetryPolicy::from_settings(store.spec.retry_settings.as_ref())?;
        let transport = Transport::new(
            &p.server,
            p.namespace.clone(),
            p.headers.as_ref(),
            p.read_your_writes == Some(true) && p.forward_inconsistent == Some(true),
            http::client_for(&tls, &env.http)?,
            retry,
            env.metrics.clone(),
        )?;
        let login_namespace = p
            .auth
            .as_ref()
            .and_then(|a| a.namespace.clone())
            .filter(|n| !n.is_empty())
            .or_else(|| p.namespace.clone());
        let token = Self::do_login(
            &env,
            &store,
            es_namespace,
            kind,
            &transport,
            login_namespace.as_deref(),
        )
        .await?;
        Ok(Arc::new(StoreClient {
            kv_version: p.version.unwrap_or_default(),
            mount: paths::mount_of(p.path.as_deref()),
            env,
            es_namespace: es_namespace.to_string(),
            kind,
            transport,
            login_namespace,
            state: RwLock::new(TokenState::from_login(token, 0)),
            refresh: tokio::sync::Mutex::new(()),
            retired: AtomicBool::new(false),
            reads: Mutex::new(HashMap::new()),
            store,
        }))
    }

    async fn do_login(
        env: &Env,
        store: &StoreHandle,
        es_namespace: &str,
        kind: AuthKind,
        transport: &Transport,
        login_namespace: Option<&str>,
    ) -> Result<LoginToken, VaultError> {
        let resolver = Resolver {
            kube: &env.kube,
            store,
            es_namespace,
        };
        let t = auth::login(
            &resolver,
            kind,
            transport,
            login_namespace,
            &env.metrics,
            &env.logins,
        )
        .await;
        match &t {
            Ok(_) => tracing::debug!(store = %store.display(), method = kind.name(), "Vault login"),
            Err(e) => {
                tracing::warn!(store = %store.display(), method = kind.name(), error = %e, "Vault login failed")
            }
        }
        t
    }

    pub fn kv_version(&self) -> VaultKvVersion {
        self.kv_version
    }

    pub fn mount(&self) -> Option<&str> {
        self.mount.as_deref()
    }

    /// The store this client logged in for.
    pub fn store(&self) -> &StoreHandle {
        &self.store
    }

    /// A usable token, renewing (`auth/token/renew-self`) from two thirds of its TTL or
    /// logging in again when it cannot be renewed.
    async fn token(&self) -> Result<(Zeroizing<String>, u64), VaultError> {
        {
            let st = self.state.read().await;
            if st.fresh(Instant::now()) {
                return Ok((st.token.clone(), st.generation));
            }
        }
        let _guard = self.refresh.lock().await;
        let (token, generation, renewable, expired, login_ttl) = {
            let st = self.state.read().await;
            let now = Instant::now();
            if st.fresh(now) {
                return Ok((st.token.clone(), st.generation));
            }
            (
                st.token.clone(),
                st.generation,
                st.renewable,
                st.expired(now),
                st.login_ttl,
            )
        };
        if renewable && !expired {
            match self.renew(&token).await {
                Ok((ttl, renewable)) if login_ttl.is_none_or(|l| ttl * MIN_RENEW_FRACTION > l) => {
                    let mut st = self.state.write().await;
                    st.obtained = Instant::now();
                    st.ttl = Some(ttl);
                    st.renewable = renewable;
                    return Ok((st.token.clone(), st.generation));
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::info!(store = %self.store.display(), error = %e, "token renewal failed; logging in again");
                }
            }
        }
        match self.replace_token(generation).await {
            Ok(r) => Ok(r),
            // The old token still has up to a third of its TTL: keep working with it.
            Err(e) if !expired => {
                tracing::warn!(store = %self.store.display(), error = %e, "re-login failed; using the current token until it expires");
                self.state.write().await.hold_until = Some(Instant::now() + REFRESH_HOLD);
                Ok((token, generation))
            }
            Err(e) => Err(e),
        }
    }

    /// Logs in again (caller holds `refresh`); revokes the replaced token if it was ours.
    async fn replace_token(&self, generation: u64) -> Result<(Zeroizing<String>, u64), VaultError> {
        if self.retired.load(Ordering::Acquire) {
            return Err(VaultError::Unavailable {
                message: format!(
                    "the client of {} was replaced by a newer version of the store; retry",
                    self.store.display()
                ),
            });
        }
        let t = Self::do_login(
            &self.env,
            &self.store,
            &self.es_namespace,
            self.kind,
            &self.transport,
            self.login_namespace.as_deref(),
        )
        .await?;
        let mut st = self.state.write().await;
        let old = std::mem::replace(&mut *st, TokenState::from_login(t, generation + 1));
        let out = (st.token.clone(), st.generation);
        drop(st);
        if old.from_login && !old.expired(Instant::now()) && old.token != out.0 {
            let _ = self.revoke_token(&old.token).await;
        }
        Ok(out)
    }

    /// After a 403: whether the token itself is dead (revoked or expired), checked with
    /// lookup-self, so that a genuine permission denial does not cause a login.
    async fn token_dead(&self, token: &str) -> Result<bool, VaultError> {
        let reply = self
            .transport
            .send(&Req {
                call: "lookup_self",
                method: Method::GET,
                path: "auth/token/lookup-self",
                query: None,
                token: Some(token),
                namespace: Some(self.login_namespace.as_deref()),
                body: None,
            })
            .await?;
        // Only Vault's own refusal counts; a proxy's error page says nothing about the token.
        Ok(matches!(reply.status, 401 | 403) && reply.body.is_object())
    }

    async fn relogin_after(&self, generation: u64) -> Result<(), VaultError> {
        let _guard = self.refresh.lock().await;
        if self.state.read().await.generation != generation {
            return Ok(());
        }
        self.replace_token(generation).await.map(|_| ())
    }

    /// One authenticated call; on 403 with a dead token, logs in again once and retries.
    async fn call(&self, req: Req<'_>) -> Result<Reply, VaultError> {
        let (token, generation) = self.token().await?;
        let reply = self
            .transport
            .send(&Req {
                token: Some(&token),
                ..clone_req(&req)
            })
            .await?;
        if !matches!(reply.status, 401 | 403) || !self.token_dead(&token).await? {
            return Ok(reply);
        }
        tracing::info!(store = %self.store.display(), "Vault token no longer valid; logging in again");
        self.relogin_after(generation).await?;
        let (token, _) = self.token().await?;
        let reply = self
            .transport
            .send(&Req {
                token: Some(&token),
                ..req
            })
            .await?;
        if matches!(reply.status, 401 | 403) && self.token_dead(&token).await? {
            // Only a static token can still be dead here: the Secret holds a stale one.
            let advice = if self.kind == AuthKind::Token {
                "put a valid token into the Secret referenced by tokenSecretRef"
            } else {
                "check the auth method's token policies and TTLs"
            };
            return Err(VaultError::Auth {
                method: self.kind.name().into(),
                message: format!(
                    "the Vault token is revoked or expired (auth/token/lookup-self answered \
                     HTTP 403): {advice}"
                ),
            });
        }
        Ok(reply)
    }

    fn status_error(&self, call: &str, method: &Method, path: &str, reply: &Reply) -> VaultError {
        match reply.status {
            // Not Vault's error body: whatever answered, the status proves nothing about the
            // secret or the policy.
            s if reply.not_json.is_some() => {
                VaultError::bad_answer(format!("{method} {path}: HTTP {s}{}", reply.detail()))
            }
            404 => VaultError::NotFound {
                path: path.to_string(),
            },
            401 | 403 => VaultError::PermissionDenied {
                path: path.to_string(),
                call: call.to_string(),
            },
            s => VaultError::invalid(format!(
                "{method} {path}: Vault answered HTTP {s}{}",
                reply.detail()
            )),
        }
    }

    /// `auth/token/lookup-self` data (how ESO validates a store).
    pub async fn lookup_self(&self) -> Result<Value, VaultError> {
        let path = "auth/token/lookup-self";
        let reply = self
            .call(Req {
                call: "lookup_self",
                method: Method::GET,
                path,
                query: None,
                token: None,
                namespace: Some(self.login_namespace.as_deref()),
                body: None,
            })
            .await?;
        if !(200..300).contains(&reply.status) {
            return Err(self.status_error("lookup-self", &Method::GET, path, &reply));
        }
        answers::data_object(&reply.body)
            .map(|d| Value::Object(d.clone()))
            .map_err(|e| VaultError::bad_answer(format!("GET {path}: {e}")))
    }

    /// The store's mount exists and is a KV engine of the declared version.
    pub async fn check_mount(&self) -> Result<(), VaultError> {
        let Some(mount) = self.mount.as_deref() else {
            // Without `path` each key carries its own mount; nothing single to check.
            return Ok(());
        };
        let mut denied = None;
        let mut info = None;
        for path in [
            format!("sys/internal/ui/mounts/{mount}"),
            format!("sys/mounts/{mount}"),
        ] {
            let reply = self
                .call(Req {
                    call: "mount",
                    method: Method::GET,
                    path: &path,
                    query: None,
                    token: None,
                    namespace: None,
                    body: None,
                })
                .await?;
            match reply.status {
                200..=299 => {
                    info = Some((reply.body, path));
                    break;
                }
                401 | 403 if reply.not_json.is_none() => denied = Some(path),
                404 | 400 if reply.not_json.is_none() => {}
                _ => return Err(self.status_error("mount", &Method::GET, &path, &reply)),
            }
        }
        let Some((body, path)) = info else {
            return Err(match denied {
                Some(path) => VaultError::PermissionDenied {
                    path,
                    call: "read mount".into(),
                },
                None => VaultError::config(format!(
                    "no secrets engine is mounted at {mount:?} (spec.provider.vault.path)"
                )),
            });
        };
        let (engine, version) = answers::mount_info(&body)
            .map_err(|e| VaultError::bad_answer(format!("GET {path}: {e}")))?;
        check_mount_info(mount, &engine, &version, self.kv_version)
    }

    /// Deduplicated GET: identical concurrent reads share one Vault request, and so do reads
    /// within [`READ_SHARE_WINDOW`] of a successful one (or the longer age the caller allows,
    /// see [`with_read_reuse`]). `extract` takes what the caller needs from the answer once,
    /// for every sharer; an answer of the wrong shape is an error, and errors are not reused.
    async fn shared_get(
        &self,
        call: &'static str,
        path: String,
        query: Option<String>,
        extract: impl FnOnce(&Value) -> Result<Value, VaultError>,
    ) -> ReadResult {
        let key = format!("{call} {path}?{}", query.as_deref().unwrap_or(""));
        let max_age = read_reuse();
        let slot = {
            let now = Instant::now();
            let mut reads = lock(&self.reads);
            match reads.get(&key) {
                Some(s) if s.shareable(now, max_age) => s.clone(),
                _ => {
                    // Only a read that adds an entry sweeps: a sweep walks every entry, and
                    // made every read's cost grow with the number of paths the store reads.
                    // Memory still stays within the budget, which only grows on an insert.
                    sweep_reads(&mut reads, now);
                    let s = Arc::new(ReadSlot::new());
                    reads.insert(key, s.clone());
                    s
                }
            }
        };
        slot.cell
            .get_or_init(|| async {
                let r = match self.get_json(call, &path, query.as_deref()).await {
                    Ok(Some(body)) => extract(&body).map(|v| Some(Arc::new(v))),
                    other => other,
                };
                if let Ok(Some(v)) = &r {
                    let _ = slot.size.set(value_size(v));
                }
                let _ = slot.done.set(Instant::now());
                r
            })
            .await
            .clone()
    }

    /// GET returning the body, `None` on 404.
    async fn get_json(&self, call: &str, path: &str, query: Option<&str>) -> ReadResult {
        let reply = self
            .call(Req {
                call,
                method: Method::GET,
                path,
                query,
                token: None,
                namespace: None,
                body: None,
            })
            .await?;
        match reply.status {
            200..=299 => Ok(Some(Arc::new(reply.body))),
            // KV v2 answers a deleted or destroyed version with 404 and its metadata.
            _ if reply.is_vault_not_found() && answers::deleted_version(&reply.body).is_some() => {
                Ok(Some(Arc::new(reply.body)))
            }
            _ if reply.is_vault_not_found() => Ok(None),
            _ => Err(self.status_error(call, &Method::GET, path, &reply)),
        }
    }

    /// The secret's data map (KV v2: the inner `data`), `None` when it does not exist or the
    /// version is deleted. Deduplicated.
    pub async fn read_secret(
        &self,
        key: &str,
        version: Option<&str>,
    ) -> Result<Option<Arc<Value>>, VaultError> {
        paths::check_key(key).map_err(VaultError::invalid)?;
        let version = version.filter(|v| !v.is_empty());
        if let Some(v) = version {
            paths::check_version(v).map_err(VaultError::invalid)?;
            if self.kv_version == VaultKvVersion::V1 {
                return Err(VaultError::Unsupported {
                    what: format!("reading version {v} of {key:?}: KV v1 has no versions"),
                });
            }
        }
        let path = paths::data_path(self.mount.as_deref(), self.kv_version, key);
        self.read_data_at(path, version.map(|v| format!("version={v}")))
            .await
    }

    /// A secret `list_recursive` returned: its path is relative to the mount as is, so a
    /// folder named like the mount is not taken for the mount.
    pub(crate) async fn read_listed(&self, rel: &str) -> ReadResult {
        paths::check_key(rel).map_err(VaultError::invalid)?;
        let mount = self.listing_mount()?;
        let path = match self.kv_version {
            VaultKvVersion::V2 => format!("{mount}/data/{rel}"),
            VaultKvVersion::V1 => format!("{mount}/{rel}"),
        };
        self.read_data_at(path, None).await
    }

    /// Metadata of a secret `list_recursive` returned.
    pub(crate) async fn read_listed_metadata(&self, rel: &str) -> ReadResult {
        paths::check_key(rel).map_err(VaultError::invalid)?;
        let mount = self.listing_mount()?;
        self.read_metadata_at(format!("{mount}/metadata/{rel}"))
            .await
    }

    fn listing_mount(&self) -> Result<&str, VaultError> {
        self.mount.as_deref().ok_or_else(|| {
            VaultError::config("listing secrets needs spec.provider.vault.path (the KV mount)")
        })
    }

    async fn read_data_at(&self, path: String, query: Option<String>) -> ReadResult {
        let v2 = self.kv_version == VaultKvVersion::V2;
        let version = query
            .as_deref()
            .and_then(|q| q.strip_prefix("version="))
            .map(String::from);
        let shown = path.clone();
        // A version without data reads as `None`, like a missing secret, unless Vault says it
        // was deleted or destroyed: then the error says so.
        let got = self
            .shared_get("read", path, query, |body| {
                match answers::kv_data(body, v2)
                    .map_err(|e| VaultError::bad_answer(format!("GET {shown}: {e}")))?
                {
                    Some(d) => Ok(d.clone()),
                    None => match answers::deleted_version(body) {
                        Some(d) => Err(VaultError::VersionDeleted {
                            path: shown,
                            version,
                            deleted_at: d.deleted_at,
                            destroyed: d.destroyed,
                        }),
                        None => Ok(Value::Null),
                    },
                }
            })
            .await?;
        Ok(got.filter(|v| !v.is_null()))
    }

    /// KV v2 metadata (`created_time`, `current_version`, `custom_metadata`, `versions`, …),
    /// `None` when the secret does not exist. Deduplicated.
    pub async fn read_metadata(&self, key: &str) -> Result<Option<Arc<Value>>, VaultError> {
        paths::check_key(key).map_err(VaultError::invalid)?;
        if self.kv_version == VaultKvVersion::V1 {
            return Err(VaultError::Unsupported {
                what: format!("metadata of {key:?}: KV v1 keeps no metadata (use version v2)"),
            });
        }
        self.read_metadata_at(paths::metadata_path(self.mount.as_deref(), key))
            .await
    }

    async fn read_metadata_at(&self, path: String) -> ReadResult {
        let shown = path.clone();
        self.shared_get("read_metadata", path, None, |body| {
            answers::kv_metadata(body)
                .cloned()
                .map_err(|e| VaultError::bad_answer(format!("GET {shown}: {e}")))
        })
        .await
    }

    /// Every secret under `path` (recursive LIST), relative to the mount, sorted.
    pub async fn list_recursive(&self, path: &str) -> Result<Vec<String>, VaultError> {
        let mount = self.listing_mount()?;
        let folder = path.trim_matches('/');
        if !folder.is_empty() {
            paths::check_key(folder).map_err(VaultError::invalid)?;
        }
        let mut out = Vec::new();
        let mut pending = vec![if folder.is_empty() {
            String::new()
        } else {
            format!("{folder}/")
        }];
        let mut listed_folders = 0usize;
        while let Some(prefix) = pending.pop() {
            listed_folders += 1;
            let list_path = match self.kv_version {
                VaultKvVersion::V2 => paths::list_path(mount, &prefix),
                VaultKvVersion::V1 => format!("{mount}/{prefix}"),
            };
            let reply = self
                .call(Req {
                    call: "list",
                    method: Method::GET,
                    path: &list_path,
                    query: Some("list=true"),
                    token: None,
                    namespace: None,
                    body: None,
                })
                .await?;
            match reply.status {
                200..=299 => {}
                // The folder asked for is gone (deleted, renamed, another mount): as ESO, a
                // missing secret, so that deletionPolicy Retain keeps the Secret.
                _ if reply.is_vault_not_found() && listed_folders == 1 => {
                    return Err(VaultError::NothingListed { path: list_path });
                }
                // A subfolder emptied while listing.
                _ if reply.is_vault_not_found() => continue,
                _ => return Err(self.status_error("list", &Method::GET, &list_path, &reply)),
            }
            let keys = answers::list_keys(&reply.body)
                .map_err(|e| VaultError::bad_answer(format!("GET {list_path}?list=true: {e}")))?;
            for k in keys {
                let full = format!("{prefix}{k}");
                if k.ends_with('/') {
                    pending.push(full);
                } else {
                    out.push(full);
                }
                if out.len() + pending.len() + listed_folders > MAX_LISTED {
                    return Err(VaultError::invalid(format!(
                        "more than {MAX_LISTED} secrets under {mount}/{folder}: narrow find.path"
                    )));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// `sys/capabilities-self` for each path (full Vault paths, e.g. `secret/data/app`).
    pub async fn capabilities(
        &self,
        paths: &[String],
    ) -> Result<BTreeMap<String, Vec<String>>, VaultError> {
        let path = "sys/capabilities-self";
        let body = json!({ "paths": paths });
        let reply = self
            .call(Req {
                call: "capabilities",
                method: Method::POST,
                path,
                query: None,
                token: None,
                namespace: None,
                body: Some(&body),
            })
            .await?;
        // A failure of this call says nothing about the paths asked about: never a NotFound
        // or a denial of them.
        let failed = |reason: String| VaultError::CouldNotCheck {
            what: "capabilities".into(),
            reason,
        };
        if !(200..300).contains(&reply.status) {
            return Err(failed(format!(
                "POST {path}: Vault answered HTTP {}{}",
                reply.status,
                reply.detail()
            )));
        }
        let mut out = BTreeMap::new();
        for p in paths {
            let caps = answers::capabilities(&reply.body, p, paths.len() == 1)
                .map_err(|e| failed(format!("POST {path}: {e}")))?;
            out.insert(p.clone(), caps);
        }
        Ok(out)
    }

    async fn renew(&self, token: &str) -> Result<(Duration, bool), VaultError> {
        let body = json!({});
        let reply = self
            .transport
            .send(&Req {
                call: "renew_self",
                method: Method::POST,
                path: "auth/token/renew-self",
                query: None,
                token: Some(token),
                namespace: Some(self.login_namespace.as_deref()),
                body: Some(&body),
            })
            .await?;
        let t = auth::login_reply(self.kind, "auth/token/renew-self", reply)?;
        Ok((t.ttl.unwrap_or_default(), t.renewable))
    }

    async fn revoke_token(&self, token: &str) -> Result<(), VaultError> {
        let reply = self
            .transport
            .send(&Req {
                call: "revoke_self",
                method: Method::POST,
                path: "auth/token/revoke-self",
                query: None,
                token: Some(token),
                namespace: Some(self.login_namespace.as_deref()),
                body: None,
            })
            .await?;
        if (200..300).contains(&reply.status) {
            Ok(())
        } else {
            Err(self.status_error(
                "revoke-self",
                &Method::POST,
                "auth/token/revoke-self",
                &reply,
            ))
        }
    }

    /// Revokes the client's token if it came from a login, and refuses further logins.
    async fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        let _guard = self.refresh.lock().await;
        let st = self.state.read().await;
        if st.from_login
            && !st.expired(Instant::now())
            && let Err(e) = self.revoke_token(&st.token).await
        {
            tracing::info!(store = %self.store.display(), error = %e, "revoking the Vault token failed");
        }
    }
}

fn clone_req<'a>(r: &Req<'a>) -> Req<'a> {
    Req {
        call: r.call,
        method: r.method.clone(),
        path: r.path,
        query: r.query,
        token: r.token,
        namespace: r.namespace,
        body: r.body,
    }
}

/// A mount's engine type and options version against the store's declared KV version.
pub(crate) fn check_mount_info(
    mount: &str,
    engine: &str,
    options_version: &str,
    declared: VaultKvVersion,
) -> Result<(), VaultError> {
    if engine != "kv" && engine != "generic" {
        return Err(VaultError::config(format!(
            "the secrets engine at {mount:?} is {engine:?}, not a KV engine"
        )));
    }
    let actual = if engine == "kv" && options_version == "2" {
        VaultKvVersion::V2
    } else {
        VaultKvVersion::V1
    };
    if actual != declared {
        return Err(VaultError::config(format!(
            "the KV engine at {mount:?} is version {}, but the store declares version {}: set \
             spec.provider.vault.version to {}",
            actual.as_str(),
            declared.as_str(),
            actual.as_str()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_drop_expired_reads_then_the_oldest_over_the_budget() {
        let now = Instant::now();
        let slot = |ago: Duration, size: usize, result: ReadResult| {
            let s = ReadSlot::new();
            s.done.set(now - ago).unwrap();
            s.size.set(size).unwrap();
            s.cell.set(result).unwrap();
            Arc::new(s)
        };
        let ok = || Ok(Some(Arc::new(Value::Null)));
        let secs = Duration::from_secs;
        let mb = 1 << 20;
        /// A read in the cache: key, age, estimated size, and whether it succeeded.
        type Entry = (&'static str, Duration, usize, bool);
        // (the cache, the keys left after a sweep)
        let cases: [(&[Entry], &[&str]); 4] = [
            (
                &[("a", secs(1), mb, true), ("b", secs(2), mb, true)],
                &["a", "b"],
            ),
            // Past the longest reuse, or failed: gone whatever the budget.
            (
                &[
                    ("a", secs(1), 10, true),
                    ("old", secs(31), 10, true),
                    ("bad", secs(0), 10, false),
                ],
                &["a"],
            ),
            // 6 MiB kept against a budget of 4: the oldest goes, which brings it down to 4.
            (
                &[
                    ("new", secs(1), 2 * mb, true),
                    ("mid", secs(5), 2 * mb, true),
                    ("oldest", secs(9), 2 * mb, true),
                ],
                &["mid", "new"],
            ),
            // Within the share window, a read is not yet "kept": it does not count.
            (
                &[
                    ("now", Duration::ZERO, 8 * mb, true),
                    ("a", secs(3), mb, true),
                ],
                &["a", "now"],
            ),
        ];
        for (entries, left) in cases {
            let mut reads: HashMap<String, Arc<ReadSlot>> = entries
                .iter()
                .map(|(k, ago, size, good)| {
                    let r = if *good {
                        ok()
                    } else {
                        Err(VaultError::bad_answer("x"))
                    };
                    (k.to_string(), slot(*ago, *size, r))
                })
                .collect();
            sweep_reads(&mut reads, now);
            let mut keys: Vec<&str> = reads.keys().map(String::as_str).collect();
            keys.sort();
            assert_eq!(keys, left, "{entries:?}");
        }
    }

    #[test]
    fn read_slots_are_joined_until_they_age_or_fail() {
        let now = Instant::now();
        let age = Duration::from_secs(1);
        let slot = |done: Option<Duration>, result: Option<ReadResult>| {
            let s = ReadSlot::new();
            if let Some(ago) = done {
                s.done.set(now - ago).unwrap();
            }
            if let Some(r) = result {
                s.cell.set(r).unwrap();
            }
            s
        };
        let ok = || Some(Ok(Some(Arc::new(Value::Null))));
        let err = || Some(Err(VaultError::bad_answer("x")));
        let cases = [
            ("in flight", slot(None, None), true),
            // The moment between the read's end and its result being stored.
            ("finishing", slot(Some(Duration::ZERO), None), true),
            ("fresh", slot(Some(Duration::from_millis(900)), ok()), true),
            (
                "fresh, not found",
                slot(Some(Duration::ZERO), Some(Ok(None))),
                true,
            ),
            (
                "too old",
                slot(Some(Duration::from_millis(1000)), ok()),
                false,
            ),
            ("failed", slot(Some(Duration::ZERO), err()), false),
        ];
        for (what, s, want) in cases {
            assert_eq!(s.shareable(now, age), want, "{what}");
        }
    }

    #[test]
    fn mount_checks() {
        use VaultKvVersion::{V1, V2};
        let cases = [
            ("kv", "2", V2, true),
            ("kv", "1", V1, true),
            ("kv", "", V1, true),
            ("generic", "", V1, true),
            ("kv", "2", V1, false),
            ("kv", "1", V2, false),
            ("transit", "", V2, false),
        ];
        for (engine, v, declared, ok) in cases {
            assert_eq!(
                check_mount_info("secret", engine, v, declared).is_ok(),
                ok,
                "{engine} {v} {declared:?}"
            );
        }
    }

    #[test]
    fn token_freshness() {
        // Ahead of the real clock, so that subtracting ages cannot underflow.
        let now = Instant::now() + Duration::from_secs(20_000);
        let st = |ttl: Option<u64>, from_login: bool, age: u64| TokenState {
            token: Zeroizing::new("t".into()),
            generation: 0,
            obtained: now - Duration::from_secs(age),
            ttl: ttl.map(Duration::from_secs),
            login_ttl: ttl.map(Duration::from_secs),
            renewable: true,
            from_login,
            hold_until: None,
        };
        assert!(st(Some(300), true, 100).fresh(now));
        assert!(!st(Some(300), true, 200).fresh(now));
        assert!(!st(Some(300), true, 200).expired(now));
        assert!(st(Some(300), true, 300).expired(now));
        assert!(st(Some(0), true, 10_000).fresh(now));
        assert!(st(None, false, 10_000).fresh(now));
        assert!(st(Some(300), false, 10_000).fresh(now));
        let mut held = st(Some(300), true, 250);
        held.hold_until = Some(now + Duration::from_secs(5));
        assert!(held.fresh(now));
        let mut held_expired = st(Some(300), true, 301);
        held_expired.hold_until = Some(now + Duration::from_secs(5));
        assert!(!held_expired.fresh(now));
    }
}
