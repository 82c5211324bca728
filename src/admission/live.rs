//! Live admission checks against the cluster and Vault, bounded by a time budget and cached
//! briefly so that a burst of applies costs few API and Vault calls.
//!
//! The checker only reports; [`super::handler`] turns findings into denials or warnings
//! according to the live mode.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;

use crate::api::{
    ClusterSecretStore, ExternalSecret, ExternalSecretDataRemoteRef, MetadataPolicy, SecretStore,
    SecretStoreStatus, StoreKind, VaultKvVersion,
};
use crate::vault::{StoreClient, StoreHandle, VaultClients, paths, values};

mod ces;
mod cluster_push;
mod es;
mod generators;
mod push;

/// How long a check result answers identical requests.
pub const RESULT_TTL: Duration = Duration::from_secs(30);
/// How long a store (and its namespace's labels) read from the API server is reused.
pub const STORE_TTL: Duration = Duration::from_secs(5);
/// Cache sizes beyond which expired entries are swept.
const SWEEP_AT: usize = 4096;

/// What the live checks found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// Always deny, whatever the mode (the object can never work as written).
    pub refusals: Vec<String>,
    /// Deny in `enforce`, warn in `warn` (includes "could not check" reasons: never a silent
    /// allow).
    pub problems: Vec<String>,
    /// Only ever warnings (e.g. checks skipped on a dry run).
    pub notes: Vec<String>,
}

/// A result worth remembering: transient failures (timeouts, Vault down) are never cached.
#[derive(Clone)]
struct Cached {
    at: Instant,
    findings: Findings,
}

#[derive(Clone)]
struct StoreEntry {
    at: Instant,
    store: Option<Arc<StoreHandle>>,
    /// For ClusterSecretStores with conditions: whether the namespace may use it.
    allowed: Option<Result<bool, String>>,
    /// The reason and message of the stored store's `Ready=False` condition.
    not_ready: Option<String>,
}

/// A store cache entry and what it is for: the map is keyed by a hash of these, so that the
/// lookup made on every admission allocates nothing.
struct Keyed {
    kind: StoreKind,
    namespace: String,
    name: String,
    entry: StoreEntry,
}

pub struct LiveChecker {
    kube: kube::Client,
    vault: VaultClients,
    budget: Duration,
    results: Mutex<HashMap<u64, Cached>>,
    stores: Arc<Mutex<HashMap<u64, Keyed>>>,
    /// Store reads under way: every admission that misses the cache for the same store at the
    /// same moment (a burst of applies, or the entry's expiry under load) waits for one read.
    reads: Arc<Mutex<StoreReads>>,
}

/// A store read shared by its waiters; `None` when it took longer than the live budget.
type StoreRead = Shared<BoxFuture<'static, Option<Result<StoreEntry, Arc<kube::Error>>>>>;
/// The reads under way, with when each began.
type StoreReads = HashMap<(&'static str, String, String), (Instant, StoreRead)>;

impl LiveChecker {
    pub fn new(kube: kube::Client, vault: VaultClients, budget: Duration) -> Self {
        LiveChecker {
            kube,
            vault,
            budget,
            results: Mutex::new(HashMap::new()),
            stores: Arc::default(),
            reads: Arc::default(),
        }
    }

    /// The findings remembered under `key`, if still fresh at `now` (the clock is read once
    /// per admission, not once per cache).
    fn cached(&self, key: u64, now: Instant) -> Option<Findings> {
        let results = self.results.lock();
        let c = results.get(&key)?;
        (now.saturating_duration_since(c.at) < RESULT_TTL).then(|| c.findings.clone())
    }

    fn remember(&self, key: u64, findings: &Findings) {
        let mut results = self.results.lock();
        if results.len() >= SWEEP_AT {
            results.retain(|_, c| c.at.elapsed() < RESULT_TTL);
        }
        results.insert(
            key,
            Cached {
                at: Instant::now(),
                findings: findings.clone(),
            },
        );
    }

    /// A store: its auth references resolve, the login works, the token is usable
    /// (lookup-self) and the mount exists with the declared KV version. Only for a store whose
    /// spec comes from a trusted source: it reads the credentials the spec names and sends them
    /// to the server it names.
    pub async fn store(&self, mut handle: StoreHandle, dry_run: bool) -> Findings {
        let mut f = Findings::default();
        let shown = handle.display();
        let Some(provider) = handle.spec.provider.vault.as_ref() else {
            return f;
        };
        if dry_run {
            f.notes.push(format!(
                "dry run: the Vault login of {shown} was not checked (it would log in to Vault)"
            ));
            return f;
        }
        if handle.kind == StoreKind::ClusterSecretStore && crate::vault::has_referent_refs(provider)
        {
            f.notes.push(format!(
                "{shown} resolves its credentials in each ExternalSecret's namespace: its Vault login is checked when an ExternalSecret uses it"
            ));
            return f;
        }
        let spec_hash = {
            let mut h = key_hasher();
            serde_json::to_vec(&*handle.spec)
                .unwrap_or_default()
                .hash(&mut h);
            h.finish()
        };
        let key = {
            let mut h = key_hasher();
            "store".hash(&mut h);
            (
                handle.kind.as_str(),
                &handle.namespace,
                &handle.name,
                spec_hash,
            )
                .hash(&mut h);
            h.finish()
        };
        if let Some(cached) = self.cached(key, Instant::now()) {
            return cached;
        }
        // The object under admission is not stored yet: its resourceVersion may still be the
        // previous one, whose cached client logged in with the previous spec. Key the login by
        // the spec being admitted instead.
        handle.resource_version = format!("admission-{spec_hash:016x}");
        let es_ns = handle.namespace.clone().unwrap_or_default();
        let budget = self.budget;
        let checked = tokio::time::timeout(
            budget,
            Box::pin(async {
                let client = self.vault.client(&handle, &es_ns).await?;
                client.lookup_self().await?;
                client.check_mount().await
            }),
        )
        .await;
        match checked {
            Err(_) => f.problems.push(format!(
                "Vault did not answer within {budget:?}: the login of {shown} was not checked"
            )),
            Ok(Ok(())) => self.remember(key, &f),
            Ok(Err(e)) => {
                f.problems.push(format!("{shown}: {e}"));
                if !e.is_transient() {
                    self.remember(key, &f);
                }
            }
        }
        f
    }

    /// The store as read less than [`STORE_TTL`] ago. Keyed by the ExternalSecret's namespace
    /// for both kinds: a SecretStore lives there, and a ClusterSecretStore's condition verdict
    /// depends on it.
    fn cached_store(
        &self,
        kind: StoreKind,
        ns: &str,
        name: &str,
        now: Instant,
    ) -> Option<StoreEntry> {
        let key = store_key(kind, ns, name);
        let stores = self.stores.lock();
        let k = stores.get(&key)?;
        let fresh = now.saturating_duration_since(k.entry.at) < STORE_TTL;
        (k.kind == kind && k.namespace == ns && k.name == name && fresh).then(|| k.entry.clone())
    }

    /// The read of a store from the API server, shared with any admission already waiting for
    /// it. It is bounded by the live budget itself: a read that hangs must not hold back the
    /// admissions that come after its waiters gave up. A read older than the budget is not
    /// joined: left unfinished when all its waiters gave up, it would answer "timed out" to the
    /// next admission without having asked again.
    fn store_read(&self, kind: StoreKind, ns: &str, name: &str) -> StoreRead {
        let key = (kind.as_str(), ns.to_string(), name.to_string());
        let mut reads = self.reads.lock();
        if let Some((began, r)) = reads.get(&key)
            && began.elapsed() < self.budget
        {
            return r.clone();
        }
        let began = Instant::now();
        let (kube, stores, all, budget) = (
            self.kube.clone(),
            self.stores.clone(),
            self.reads.clone(),
            self.budget,
        );
        let (ns, name) = (key.1.clone(), key.2.clone());
        let done = key.clone();
        let read = async move {
            let r = tokio::time::timeout(budget, read_store(&kube, &stores, kind, &ns, &name))
                .await
                .ok()
                .map(|r| r.map_err(Arc::new));
            let mut all = all.lock();
            // Only if it is still this read's entry: a newer read may have replaced it.
            if all.get(&done).is_some_and(|(b, _)| *b == began) {
                all.remove(&done);
            }
            r
        }
        .boxed()
        .shared();
        reads.insert(key, (began, read.clone()));
        read
    }
}

/// Reads the store (and its namespace's labels, for conditions) from the API server and
/// remembers it.
async fn read_store(
    kube: &kube::Client,
    stores: &Mutex<HashMap<u64, Keyed>>,
    kind: StoreKind,
    ns: &str,
    name: &str,
) -> Result<StoreEntry, kube::Error> {
    let (store, allowed, not_ready) = match kind {
        StoreKind::SecretStore => {
            let api: Api<SecretStore> = Api::namespaced(kube.clone(), ns);
            match api.get_opt(name).await? {
                None => (None, None, None),
                Some(s) => (
                    Some(Arc::new(StoreHandle::from_secret_store(&s))),
                    None,
                    not_ready(s.status.as_ref()),
                ),
            }
        }
        StoreKind::ClusterSecretStore => {
            let api: Api<ClusterSecretStore> = Api::all(kube.clone());
            match api.get_opt(name).await? {
                None => (None, None, None),
                Some(s) => {
                    let conditions = s.spec.store.conditions.as_deref();
                    let allowed = match conditions {
                        Some(c) if !c.is_empty() => {
                            let nsapi: Api<Namespace> = Api::all(kube.clone());
                            let labels = nsapi
                                .get_opt(ns)
                                .await?
                                .and_then(|n| n.metadata.labels)
                                .unwrap_or_default();
                            Some(crate::api::selector::namespace_allowed(
                                Some(c),
                                ns,
                                &labels,
                            ))
                        }
                        _ => None,
                    };
                    (
                        Some(Arc::new(StoreHandle::from_cluster_store(&s))),
                        allowed,
                        not_ready(s.status.as_ref()),
                    )
                }
            }
        }
    };
    let entry = StoreEntry {
        at: Instant::now(),
        store,
        allowed,
        not_ready,
    };
    // A missing store is not remembered: it may be applied a moment later in the same
    // `kubectl apply -f`.
    if entry.store.is_some() {
        let mut stores = stores.lock();
        if stores.len() >= SWEEP_AT {
            stores.retain(|_, k| k.entry.at.elapsed() < STORE_TTL);
        }
        stores.insert(
            store_key(kind, ns, name),
            Keyed {
                kind,
                namespace: ns.to_string(),
                name: name.to_string(),
                entry: entry.clone(),
            },
        );
    }
    Ok(entry)
}

/// `reason: message` of a stored store's `Ready=False` condition; `None` while it is ready or
/// not yet checked by the store reconciler.
fn not_ready(status: Option<&SecretStoreStatus>) -> Option<String> {
    let ready = crate::api::conditions::find(&status?.conditions, "Ready")?;
    if ready.status != "False" {
        return None;
    }
    let reason = ready.reason.as_deref().unwrap_or("NotReady");
    Some(match ready.message.as_deref().filter(|m| !m.is_empty()) {
        Some(m) => format!("{reason}: {m}"),
        None => reason.to_string(),
    })
}

/// What a store review from an unauthenticated caller gets instead of a login: the body names
/// the server and the credentials, so vaultgate uses neither; the store reconciler checks the
/// login once the API server has stored the object.
pub fn login_checked_once_stored(store: &StoreHandle) -> Findings {
    let command = match &store.namespace {
        Some(ns) if store.kind == StoreKind::SecretStore => {
            format!("kubectl get secretstore -n {ns} {}", store.name)
        }
        _ => format!("kubectl get clustersecretstore {}", store.name),
    };
    Findings {
        notes: vec![format!(
            "the Vault login of {} is checked once it is stored: `{command}` shows whether it is Ready",
            store.display()
        )],
        ..Findings::default()
    }
}

/// The store cache's key. Two stores whose names hash alike take turns in one slot: the entry
/// records whose it is.
fn store_key(kind: StoreKind, ns: &str, name: &str) -> u64 {
    let mut h = key_hasher();
    (kind.as_str(), ns, name).hash(&mut h);
    h.finish()
}

/// The hasher of the caches' keys. A remembered verdict is found by its key's hash alone, so the
/// hash is seeded at random for each process: an ExternalSecret whose key collides with
/// another's cannot be prepared in advance (std's `DefaultHasher::new()` has fixed keys).
/// foldhash rather than SipHash: a key is hashed on every admission, and SipHash cost a third of
/// the cached live check.
fn key_hasher() -> impl Hasher {
    static KEYS: OnceLock<foldhash::quality::RandomState> = OnceLock::new();
    KEYS.get_or_init(Default::default).build_hasher()
}

/// Hashes what the Vault checks of an ExternalSecret depend on (its remote references, in
/// order, since findings name their index), without serialising anything.
fn hash_refs(es: &ExternalSecret, h: &mut impl Hasher) {
    fn one(r: &ExternalSecretDataRemoteRef, h: &mut impl Hasher) {
        (&r.key, &r.property, &r.version).hash(h);
        (r.metadata_policy == Some(MetadataPolicy::Fetch)).hash(h);
    }
    for d in es.spec.data.iter().flatten() {
        0u8.hash(h);
        one(&d.remote_ref, h);
    }
    for d in es.spec.data_from.iter().flatten() {
        1u8.hash(h);
        if let Some(e) = &d.extract {
            2u8.hash(h);
            one(e, h);
        }
        if let Some(f) = &d.find {
            3u8.hash(h);
            f.path.hash(h);
        }
    }
}

/// `Some((problem, transient))` when the reference cannot be read as written.
async fn check_read(
    client: &StoreClient,
    at: &str,
    r: &ExternalSecretDataRemoteRef,
    extract: bool,
) -> Option<(String, bool)> {
    let fetch = r.metadata_policy == Some(MetadataPolicy::Fetch);
    let path = if fetch {
        paths::metadata_path(client.mount(), &r.key)
    } else {
        paths::data_path(client.mount(), client.kv_version(), &r.key)
    };
    let read = if fetch {
        client
            .read_metadata(&r.key)
            .await
            .map(|m| m.map(|m| Arc::new(values::metadata_value(&m))))
    } else {
        client.read_secret(&r.key, r.version.as_deref()).await
    };
    let secret = match read {
        Ok(Some(s)) => s,
        Ok(None) => {
            let version = r
                .version
                .as_deref()
                .map(|v| format!(" (version {v})"))
                .unwrap_or_default();
            return Some((
                format!(
                    "{at}.key: secret {:?}{version} does not exist in Vault (path {path:?})",
                    r.key
                ),
                false,
            ));
        }
        Err(e) => return Some((format!("{at}.key: {e}"), e.is_transient())),
    };
    let property = r.property.as_deref().unwrap_or("");
    let selected = match values::select_value(&secret, property) {
        Ok(v) => v,
        Err(e) => return Some((format!("{at}.property: {e} ({path:?})"), false)),
    };
    if extract && !selected.is_object() {
        return Some((
            format!(
                "{at}: {} in {path:?} is not a JSON object, so it cannot be extracted into keys",
                if property.is_empty() {
                    "the secret".to_string()
                } else {
                    format!("property {property:?}")
                }
            ),
            false,
        ));
    }
    None
}

/// `find` lists the folder: the identity needs `list` on its metadata path.
async fn check_list(client: &StoreClient, at: &str, folder: &str) -> Option<(String, bool)> {
    let Some(mount) = client.mount() else {
        return Some((
            format!("{at}: find needs spec.provider.vault.path (the KV mount) on the store"),
            false,
        ));
    };
    let path = match client.kv_version() {
        VaultKvVersion::V2 => paths::list_path(mount, folder),
        VaultKvVersion::V1 => {
            let f = folder.trim_matches('/');
            if f.is_empty() {
                format!("{mount}/")
            } else {
                format!("{mount}/{f}/")
            }
        }
    };
    match client.capabilities(std::slice::from_ref(&path)).await {
        Ok(caps) => {
            let granted = caps
                .get(&path)
                .is_some_and(|c| c.iter().any(|c| c == "list" || c == "root"));
            (!granted).then(|| {
                (
                    format!(
                        "{at}: the store's Vault identity may not list {path:?} (capabilities: {})",
                        caps.get(&path)
                            .map(|c| c.join(", "))
                            .unwrap_or_else(|| "none".into())
                    ),
                    false,
                )
            })
        }
        Err(e) => Some((format!("{at}: {e}"), e.is_transient())),
    }
}

impl std::fmt::Debug for LiveChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveChecker")
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store read whose waiters all gave up is joined while it may still answer within the
    /// budget, and replaced after: joined then, it would report a timeout without asking again.
    #[tokio::test]
    async fn abandoned_store_reads_are_not_joined_past_the_budget() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (kube, held) = kube_emulator::silent_api_server().await;
        let vault = VaultClients::new(kube.clone(), crate::metrics::Metrics::new());
        let budget = Duration::from_millis(200);
        let checker = LiveChecker::new(kube, vault, budget);
        let kind = StoreKind::SecretStore;

        let first = checker.store_read(kind, "team-a", "vault");
        // Its only waiter gives up early: the read is left unfinished.
        let waited = tokio::time::timeout(Duration::from_millis(20), first.clone()).await;
        assert!(waited.is_err());
        let again = checker.store_read(kind, "team-a", "vault");
        assert!(again.ptr_eq(&first), "joined within the budget");
        let other = checker.store_read(kind, "team-b", "vault");
        assert!(!other.ptr_eq(&first), "another store has its own read");

        tokio::time::sleep(budget + Duration::from_millis(50)).await;
        let later = checker.store_read(kind, "team-a", "vault");
        assert!(!later.ptr_eq(&first), "a new read past the budget");
        // The old read, finishing now (its own time is up), leaves the new read's entry alone.
        assert!(first.await.is_none());
        let joined = checker.store_read(kind, "team-a", "vault");
        assert!(
            joined.ptr_eq(&later),
            "the new read is still the one to join"
        );
        // The new read answers for itself: at the budget, with a timeout (None).
        let started = Instant::now();
        assert!(later.await.is_none());
        assert!(started.elapsed() >= budget - Duration::from_millis(20));
        held.abort();
    }
}
