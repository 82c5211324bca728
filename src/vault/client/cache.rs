//! The clients of every store identity: one login each, shared by concurrent callers, with
//! stale versions, idle and surplus entries evicted (what goes is decided in `evict.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::OnceCell;

use super::evict::{self, EntryState, Limits};
use super::{Env, StoreClient};
use crate::api::StoreKind;
use crate::metrics::Metrics;
use crate::vault::auth;
use crate::vault::{StoreHandle, VaultError};

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
            last_used: *slot.last_used.lock(),
            logged_in: client.is_some(),
            failed_at: slot.failure.lock().as_ref().map(|(at, _)| *at),
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
        self.cache.lock().len()
    }

    /// Removes what [`evict::to_evict`] chooses; the caller retires their clients.
    fn sweep(&self, cache: &mut HashMap<CacheKey, Slot>, now: Instant) -> Vec<Slot> {
        *self.last_sweep.lock() = now;
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
            let mut cache = self.cache.lock();
            let added = !cache.contains_key(&key);
            // Adding a version of a store evicts its others, so a store's entries share one
            // version: only a key not yet cached can find stale ones. Looking for them on every
            // call walked every store identity once per reconcile.
            let stale: Vec<CacheKey> = if added {
                cache
                    .keys()
                    .filter(|k| {
                        k.same_store(&key)
                            && (k.uid != key.uid || k.resource_version != key.resource_version)
                    })
                    .cloned()
                    .collect()
            } else {
                Vec::new()
            };
            let mut evicted: Vec<Slot> = stale.iter().filter_map(|k| cache.remove(k)).collect();
            let now = Instant::now();
            let slot = cache.entry(key).or_default().clone();
            *slot.last_used.lock() = now;
            // Only a lookup that adds an entry, or one a while after the last sweep, sweeps:
            // a sweep walks every entry.
            if added || now.duration_since(*self.last_sweep.lock()) >= evict::SWEEP_EVERY {
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
            slot.failure
                .lock()
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
                    *slot.failure.lock() = Some((Instant::now(), e.clone()));
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
            let mut cache = self.cache.lock();
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
        let slots: Vec<Slot> = self.cache.lock().drain().map(|(_, s)| s).collect();
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
