//! The ExternalSecret controller: reads what the pure decisions need, carries out their plans,
//! and reports through status, events and metrics.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::events::{Event, EventType};
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::desired::{self, Cleanup, Inputs, Plan, Skip};
use super::hash::{data_hash, meta_hash, meta_parts};
use super::refresh::{self, Refresh, TargetState};
use super::status::{self, EsOutcome};
use super::{Error, Shared};
use crate::api::duration;
use crate::api::selector;
use crate::api::{
    ANNOTATION_DATA_HASH, ClusterSecretStore, CreationPolicy, DeletionPolicy, ExternalSecret,
    LABEL_MANAGED, SecretStore, SecretStoreSpec, SecretStoreStatus, StoreKind,
};
use crate::vault::{StoreHandle, VaultError, fetch_external_secret};

/// What the controller remembers per ExternalSecret between reconciles (lost on restart, which
/// is fine: everything durable is in the status).
#[derive(Default, Clone)]
pub(crate) struct Memory {
    uid: String,
    /// Consecutive failures, and when the next attempt is allowed.
    failures: u32,
    retry_at: Option<Instant>,
    /// The ExternalSecret and store versions the failures happened with: a change to either
    /// is a reason to try again at once.
    failed_with: String,
    /// The last successful sync, in case the cache has not seen our status write yet.
    synced: Option<(String, Timestamp)>,
    /// The store generation of the last successful sync.
    store_generation: Option<String>,
    /// The target Secret's resourceVersion right after our last write. While the cached
    /// metadata still shows it, nobody has changed the Secret, and a reconcile that finds no
    /// refresh due needs no GET (the Secret's own watch event brings one after every sync).
    valid_rv: Option<String>,
    /// A reconcile already waited once for the cache to show `valid_rv`; the next one reads.
    lag_checked: bool,
    /// A first write found the target already there though the cache (managed Secrets only)
    /// did not show it: read it from then on rather than presume it absent.
    exists_uncached: bool,
}

/// How a reconcile learns the state of the target Secret before deciding whether to sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TargetView {
    /// The cache shows our last write: nobody touched the Secret since.
    Untouched,
    /// Not in the complete cache and never written by us (or deleted since): most likely
    /// absent; the first write is made without force and falls back to a read if refused.
    PresumedAbsent,
    /// We wrote it, but the cache has not shown the write yet: its watch event is on its way
    /// and will bring another reconcile (a requeue or a store change can come first). Decided
    /// as untouched; if nothing is due, looked at again shortly, then read.
    AwaitingCache,
    /// Anything else: GET the Secret.
    Read,
}

/// `cached_rv`: the resourceVersion the Secret metadata cache holds (`None`: not cached);
/// `valid_rv`: the one our last write returned, unless the Secret was deleted since.
fn target_view(
    cached_rv: Option<Option<&str>>,
    valid_rv: Option<&str>,
    lag_checked: bool,
    cache_ready: bool,
    writes_own_secret: bool,
    exists_uncached: bool,
) -> TargetView {
    match (cached_rv, valid_rv) {
        (Some(Some(c)), Some(v)) if c == v => TargetView::Untouched,
        (None, None) if cache_ready && writes_own_secret && !exists_uncached => {
            TargetView::PresumedAbsent
        }
        (None, Some(_)) if cache_ready && !lag_checked => TargetView::AwaitingCache,
        _ => TargetView::Read,
    }
}

/// How long a reconcile that found its own write missing from the cache waits before it
/// reads the Secret instead (normally the write's watch event comes within milliseconds).
const CACHE_LAG_RECHECK: Duration = Duration::from_secs(2);

/// Each ExternalSecret's [`Memory`], by namespace and name.
pub(crate) type MemoryMap = HashMap<(String, String), Memory>;
pub(crate) type Memories = Mutex<MemoryMap>;

fn key(es: &ExternalSecret) -> (String, String) {
    (es.namespace().unwrap_or_default(), es.name_any())
}

/// What of an ExternalSecret can call for a reconcile when it changes: the version a sync is
/// recorded against (generation, labels and annotations, as `syncedResourceVersion`; a
/// `force-sync` annotation changes it), finalizers and deletion. Status is left out: it is
/// ours, and without this every sync's status write brought one more reconcile that found
/// nothing to do.
pub(crate) fn trigger_hash(es: &ExternalSecret) -> Option<u64> {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let m = &es.metadata;
    let mut h = DefaultHasher::new();
    m.generation.hash(&mut h);
    // What `meta_hash` covers (the synced version's part), hashed here directly: a SHA-256 and
    // its hex string for every watch event of every ExternalSecret were most of this check.
    for (tag, entries) in meta_parts(m.labels.as_ref(), m.annotations.as_ref()) {
        tag.hash(&mut h);
        entries.for_each(|e| e.hash(&mut h));
    }
    m.finalizers.hash(&mut h);
    m.deletion_timestamp
        .as_ref()
        .map(|t| t.0.as_nanosecond())
        .hash(&mut h);
    Some(h.finish())
}

/// The store an ExternalSecret points at, as found in the caches.
enum StoreLookup {
    Found {
        handle: StoreHandle,
        /// uid + generation: changes with the spec only.
        generation: String,
        /// Changes with the spec or status.
        version: String,
        status: Option<Box<SecretStoreStatus>>,
    },
    /// Another controller class handles it.
    NotOurs,
    Missing(String),
}

/// Whether a store belongs to this controller (ESO: an empty class is everybody's).
pub fn class_matches(store_class: Option<&str>, ours: &str) -> bool {
    match store_class {
        None | Some("") => true,
        Some(c) => c == ours,
    }
}

async fn lookup_store(es: &ExternalSecret, sh: &Shared) -> Result<StoreLookup, Error> {
    let ns = es.namespace().unwrap_or_default();
    let r = es.spec.secret_store_ref.as_ref();
    let Some(name) = r.and_then(|r| r.name.as_deref()).filter(|n| !n.is_empty()) else {
        return Ok(StoreLookup::Missing(
            "spec.secretStoreRef.name is empty".into(),
        ));
    };
    let kind = r.and_then(|r| r.kind).unwrap_or_default();
    // What a sync needs of the store's metadata: which spec (generation) and which object
    // (resourceVersion) it was, not a copy of the whole of it on every reconcile.
    let versions = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        let uid = meta.uid.as_deref().unwrap_or_default();
        (
            format!("{uid}/{}", meta.generation.unwrap_or(0)),
            format!(
                "{uid}/{}",
                meta.resource_version.as_deref().unwrap_or_default()
            ),
        )
    };
    let from_ss = |s: &SecretStore| {
        let mut h = StoreHandle::from_secret_store(s);
        stable_identity(&mut h, s.meta());
        (h, versions(s.meta()), s.status.clone())
    };
    let from_css = |s: &ClusterSecretStore| {
        let mut h = StoreHandle::from_cluster_store(s);
        stable_identity(&mut h, s.meta());
        (h, versions(s.meta()), s.status.clone())
    };
    let mut found = match kind {
        StoreKind::SecretStore => sh
            .secret_stores
            .get(&ObjectRef::new(name).within(&ns))
            .map(|s| from_ss(&s)),
        StoreKind::ClusterSecretStore => sh
            .cluster_stores
            .get(&ObjectRef::new(name))
            .map(|s| from_css(&s)),
    };
    if found.is_none() {
        // The store's watch may lag behind the ExternalSecret's: ask the API server before
        // reporting the store missing.
        found = match kind {
            StoreKind::SecretStore => Api::<SecretStore>::namespaced(sh.kube.clone(), &ns)
                .get_opt(name)
                .await?
                .map(|s| from_ss(&s)),
            StoreKind::ClusterSecretStore => Api::<ClusterSecretStore>::all(sh.kube.clone())
                .get_opt(name)
                .await?
                .map(|s| from_css(&s)),
        };
    }
    let Some((handle, (generation, version), status)) = found else {
        let shown = match kind {
            StoreKind::SecretStore => format!("SecretStore {ns}/{name}"),
            StoreKind::ClusterSecretStore => format!("ClusterSecretStore {name}"),
        };
        return Ok(StoreLookup::Missing(format!("{shown} not found")));
    };
    if !class_matches(handle.spec.controller.as_deref(), &sh.cfg.controller_class) {
        return Ok(StoreLookup::NotOurs);
    }
    Ok(StoreLookup::Found {
        handle,
        generation,
        version,
        status: status.map(Box::new),
    })
}

/// The Vault client caches logins by store resourceVersion; status writes change that without
/// changing the login identity, so hand it the generation (spec changes only) instead.
pub(crate) fn stable_identity(
    h: &mut StoreHandle,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) {
    h.resource_version = format!("generation-{}", meta.generation.unwrap_or(0));
}

/// The ExternalSecrets that point at a store.
pub(crate) fn users_of_store(
    es: &Store<ExternalSecret>,
    kind: StoreKind,
    namespace: Option<&str>,
    name: &str,
) -> Vec<ObjectRef<ExternalSecret>> {
    es.state()
        .iter()
        .filter(|e| {
            let r = e.spec.secret_store_ref.clone().unwrap_or_default();
            r.kind.unwrap_or_default() == kind
                && r.name.as_deref() == Some(name)
                && (kind == StoreKind::ClusterSecretStore || e.namespace().as_deref() == namespace)
        })
        .map(|e| ObjectRef::from_obj(e.as_ref()))
        .collect()
}

/// Namespace and target Secret name → the ExternalSecrets writing it, kept current from the
/// ExternalSecret watch. An ExternalSecret whose target changes stays listed under its old
/// name too: a stale entry only costs one needless reconcile, a missing one a missed re-sync.
#[derive(Clone, Default)]
pub(crate) struct TargetIndex(Arc<std::sync::RwLock<TargetMaps>>);

/// namespace → name → names, looked up by `&str` without building a key.
type Nested = HashMap<Box<str>, HashMap<Box<str>, Vec<Box<str>>>>;

#[derive(Default)]
struct TargetMaps {
    /// namespace → Secret → the ExternalSecrets writing it (usually one: a small list, where
    /// a set took a few hundred bytes per Secret).
    writers: Nested,
    /// namespace → ExternalSecret → every target it was seen with: a delete finds its entries
    /// directly instead of scanning every Secret of the index (quadratic in a mass delete).
    targets: Nested,
}

/// Adds `value` under `ns`/`key` unless it is there already.
fn add(map: &mut Nested, ns: &str, key: &str, value: &str) {
    let list = map
        .entry(ns.into())
        .or_default()
        .entry(key.into())
        .or_default();
    if !list.iter().any(|v| &**v == value) {
        list.push(value.into());
    }
}

impl TargetIndex {
    pub(crate) fn insert(&self, es: &ExternalSecret) {
        let (ns, name) = (es.namespace().unwrap_or_default(), es.name_any());
        let target = desired::target_name(es);
        let mut maps = self.0.write().unwrap_or_else(|e| e.into_inner());
        add(&mut maps.writers, &ns, &target, &name);
        add(&mut maps.targets, &ns, &name, &target);
    }

    pub(crate) fn remove(&self, es: &ExternalSecret) {
        let (ns, name) = (es.namespace().unwrap_or_default(), es.name_any());
        let mut guard = self.0.write().unwrap_or_else(|e| e.into_inner());
        let maps = &mut *guard;
        let Some(in_ns) = maps.targets.get_mut(ns.as_str()) else {
            return;
        };
        let targets = in_ns.remove(name.as_str()).unwrap_or_default();
        if in_ns.is_empty() {
            maps.targets.remove(ns.as_str());
        }
        let Some(secrets) = maps.writers.get_mut(ns.as_str()) else {
            return;
        };
        for target in targets {
            if let Some(writers) = secrets.get_mut(&target) {
                writers.retain(|w| **w != *name);
                if writers.is_empty() {
                    secrets.remove(&target);
                }
            }
        }
        if secrets.is_empty() {
            maps.writers.remove(ns.as_str());
        }
    }

    fn writers(&self, ns: &str, secret: &str) -> Vec<String> {
        let maps = self.0.read().unwrap_or_else(|e| e.into_inner());
        maps.writers
            .get(ns)
            .and_then(|m| m.get(secret))
            .map(|w| w.iter().map(|n| n.to_string()).collect())
            .unwrap_or_default()
    }

    /// How many namespaces hold entries (both directions): for the tests.
    #[cfg(test)]
    fn namespaces(&self) -> (usize, usize) {
        let maps = self.0.read().unwrap_or_else(|e| e.into_inner());
        (maps.writers.len(), maps.targets.len())
    }
}

/// The ExternalSecrets that write a Secret: its controller, and any whose target it is.
pub(crate) fn writers_of_secret(
    targets: &TargetIndex,
    secret: &PartialObjectMeta<Secret>,
) -> Vec<ObjectRef<ExternalSecret>> {
    let ns = secret.namespace().unwrap_or_default();
    let mut out: Vec<ObjectRef<ExternalSecret>> = targets
        .writers(&ns, &secret.name_any())
        .into_iter()
        .map(|name| ObjectRef::new(&name).within(&ns))
        .collect();
    for o in secret.owner_references() {
        if o.kind == "ExternalSecret" {
            let r = ObjectRef::new(&o.name).within(&ns);
            if !out.contains(&r) {
                out.push(r);
            }
        }
    }
    out
}

/// The writers a Secret's watch event should wake: all but those whose own last write is what
/// the event shows. The reconcile that made that write already decided what comes next, and
/// another would find the Secret as it left it: at 10,000 ExternalSecrets those echoes were
/// half of all reconciles. A writer whose memory shows another version (someone else wrote,
/// or another ExternalSecret merging into the same Secret) is woken, as is any writer when the
/// event carries no version.
fn to_wake(
    writers: Vec<ObjectRef<ExternalSecret>>,
    rv: Option<&str>,
    mem: &MemoryMap,
) -> Vec<ObjectRef<ExternalSecret>> {
    let Some(rv) = rv else {
        return writers;
    };
    writers
        .into_iter()
        .filter(|w| {
            let key = (w.namespace.clone().unwrap_or_default(), w.name.clone());
            mem.get(&key)
                .is_none_or(|m| m.valid_rv.as_deref() != Some(rv))
        })
        .collect()
}

pub(crate) async fn reconcile(es: Arc<ExternalSecret>, sh: Arc<Shared>) -> Result<Action, Error> {
    let started = Instant::now();
    let (ns, name) = key(&es);
    {
        // A recreated object (same name, new uid) starts with a clean memory.
        let mut mem = sh.es_memory.lock().unwrap_or_else(|p| p.into_inner());
        let m = mem.entry((ns.clone(), name.clone())).or_default();
        let uid = es.uid().unwrap_or_default();
        if m.uid != uid {
            *m = Memory {
                uid,
                ..Default::default()
            };
        }
    }
    if es.metadata.deletion_timestamp.is_some() {
        return cleanup(&es, &sh).await;
    }
    let store = lookup_store(&es, &sh).await?;
    if matches!(store, StoreLookup::NotOurs) {
        return Ok(Action::await_change());
    }
    ensure_finalizer(&es, &sh).await?;

    let version = refresh::resource_version(
        es.metadata.generation,
        &meta_hash(Some(es.labels()), Some(es.annotations())),
    );
    let store_version = match &store {
        StoreLookup::Found { version, .. } => version.clone(),
        _ => String::new(),
    };
    let attempt_key = format!("{version}@{store_version}");
    let mem = memory(&sh, &es);
    if let Some(at) = mem.retry_at
        && mem.failures > 0
        && mem.failed_with == attempt_key
        && at > Instant::now()
    {
        // Backing off after errors, and nothing changed that could fix them.
        return Ok(Action::requeue(at - Instant::now()));
    }

    sh.metrics.es_sync_call(&name, &ns);
    let result = sync(&es, &sh, &store, &version, &mem).await;
    let target = desired::target_name(&es);
    let now = Timestamp::now();
    let action = match result {
        Ok(Synced::NotDue(action)) => action,
        Ok(Synced::Done {
            outcome,
            next,
            store_generation,
        }) => {
            if outcome.is_success() {
                update_memory(&sh, &es, |m| {
                    m.failures = 0;
                    m.retry_at = None;
                    m.synced = Some((version.clone(), now));
                    m.store_generation = store_generation.clone();
                });
            } else {
                update_memory(&sh, &es, |m| {
                    m.failures = 0;
                    m.retry_at = None;
                });
            }
            write_status(&es, &sh, &outcome, &version, &target, now).await?;
            next
        }
        Err(failure) => {
            sh.metrics.es_sync_error(&name, &ns);
            let mut failures = 0;
            update_memory(&sh, &es, |m| {
                m.failures = m.failures.saturating_add(1);
                failures = m.failures;
            });
            let mut delay = refresh::backoff(failures);
            if let Some(after) = failure.retry_after {
                delay = delay.max(after);
            }
            update_memory(&sh, &es, |m| {
                m.retry_at = Some(Instant::now() + delay);
                m.failed_with = attempt_key.clone();
            });
            tracing::warn!(
                externalsecret = %format!("{ns}/{name}"),
                error = %failure.message,
                retry_in = ?delay,
                "sync failed"
            );
            publish(
                &sh,
                &es,
                EventType::Warning,
                status::EVENT_UPDATE_FAILED,
                &failure.message,
            );
            write_status(
                &es,
                &sh,
                &EsOutcome::Failed {
                    message: failure.message,
                },
                &version,
                &target,
                now,
            )
            .await?;
            Action::requeue(delay)
        }
    };
    sh.metrics
        .es_reconcile_duration(&name, &ns, started.elapsed().as_secs_f64() * 1000.0);
    Ok(action)
}

pub(crate) fn error_policy(es: Arc<ExternalSecret>, err: &Error, sh: Arc<Shared>) -> Action {
    let mut failures = 1;
    update_memory(&sh, &es, |m| {
        m.failures = m.failures.saturating_add(1);
        failures = m.failures;
    });
    let delay = refresh::backoff(failures);
    tracing::warn!(
        externalsecret = %format!("{}/{}", es.namespace().unwrap_or_default(), es.name_any()),
        error = %err,
        retry_in = ?delay,
        "reconcile failed"
    );
    Action::requeue(delay)
}

/// A managed Secret was deleted: the writes remembered for it no longer stand, so the
/// ExternalSecrets writing it neither take it for untouched nor wait for the cache to show it.
pub(crate) fn secret_deleted(sh: &Shared, secret: &PartialObjectMeta<Secret>) {
    let ns = secret.namespace().unwrap_or_default();
    let mut mem = sh.es_memory.lock().unwrap_or_else(|p| p.into_inner());
    for es in writers_of_secret(&sh.targets, secret) {
        if let Some(m) = mem.get_mut(&(ns.clone(), es.name)) {
            m.valid_rv = None;
            m.lag_checked = false;
        }
    }
}

/// Forgets an ExternalSecret that is gone: its metrics series and memory.
pub(crate) fn forget(sh: &Shared, es: &ExternalSecret) {
    let (ns, name) = key(es);
    forget_key(sh, ns, name);
}

fn forget_key(sh: &Shared, ns: String, name: String) {
    sh.metrics.forget_es(&name, &ns);
    sh.es_memory
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&(ns, name));
}

fn memory(sh: &Shared, es: &ExternalSecret) -> Memory {
    sh.es_memory
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key(es))
        .cloned()
        .unwrap_or_default()
}

fn update_memory(sh: &Shared, es: &ExternalSecret, f: impl FnOnce(&mut Memory)) {
    let mut mem = sh.es_memory.lock().unwrap_or_else(|p| p.into_inner());
    f(mem.entry(key(es)).or_default());
}

enum Synced {
    /// Nothing to do now; come back as the action says.
    NotDue(Action),
    Done {
        outcome: EsOutcome,
        next: Action,
        store_generation: Option<String>,
    },
}

struct Failure {
    message: String,
    retry_after: Option<Duration>,
    /// An unforced write was refused (409/422): the Secret exists and is not (only) ours.
    unclaimed_conflict: bool,
}

impl Failure {
    fn new(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            retry_after: None,
            unclaimed_conflict: false,
        }
    }
}

fn kube_msg(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} (HTTP {})", s.message, s.code),
        other => other.to_string(),
    }
}

async fn sync(
    es: &ExternalSecret,
    sh: &Shared,
    store: &StoreLookup,
    version: &str,
    mem: &Memory,
) -> Result<Synced, Failure> {
    let ns = es.namespace().unwrap_or_default();
    let interval_text = es
        .spec
        .refresh_interval
        .clone()
        .unwrap_or_else(|| "1h0m0s".into());
    let interval = duration::parse(&interval_text)
        .map_err(|e| Failure::new(format!("invalid spec.refreshInterval: {e}")))?;
    desired::check_supported(es).map_err(|e| Failure::new(e.to_string()))?;
    let (handle, store_generation) = match store {
        StoreLookup::Found {
            handle,
            generation,
            status,
            ..
        } => {
            if let Some(c) = status
                .as_ref()
                .and_then(|s| crate::api::conditions::find(&s.conditions, status::READY))
                && !c.is_true()
            {
                return Err(Failure::new(format!(
                    "{} is not ready: {}",
                    handle.display(),
                    c.message.as_deref().unwrap_or("no message")
                )));
            }
            if handle.kind == StoreKind::ClusterSecretStore {
                check_namespace_allowed(sh, &handle.spec, &handle.name, &ns).await?;
            }
            (handle, generation)
        }
        StoreLookup::Missing(m) => {
            return Err(Failure::new(format!("could not get store reference: {m}")));
        }
        StoreLookup::NotOurs => unreachable!("filtered by the caller"),
    };

    let target = desired::target_name(es);
    let secrets: Api<Secret> = Api::namespaced(sh.kube.clone(), &ns);
    let creation = desired::creation_policy(es);
    let cached = sh.secret_meta.get(&ObjectRef::new(&target).within(&ns));
    let view = target_view(
        cached
            .as_ref()
            .map(|m| m.metadata.resource_version.as_deref()),
        mem.valid_rv.as_deref(),
        mem.lag_checked,
        // Only asked when the Secret is not cached: that absence means something only once
        // the cache has been filled.
        cached.is_none()
            && sh
                .secret_meta
                .wait_until_ready()
                .now_or_never()
                .is_some_and(|r| r.is_ok()),
        matches!(creation, CreationPolicy::Owner | CreationPolicy::Orphan),
        mem.exists_uncached,
    );
    // Decided as untouched; the Secret is read only if a sync turns out to be due.
    let untouched = matches!(view, TargetView::Untouched | TargetView::AwaitingCache);
    // The first write of a presumed-absent Secret must not take anything over: it is applied
    // without force, and a refusal (someone else's Secret by that name) falls back to reading
    // it and deciding as usual.
    let presumed_absent = view == TargetView::PresumedAbsent;
    let read_target = || async {
        secrets.get_opt(&target).await.map_err(|e| {
            Failure::new(format!(
                "could not read target Secret {target:?}: {}",
                kube_msg(&e)
            ))
        })
    };
    let mut existing = if untouched || presumed_absent {
        None
    } else {
        read_target().await?
    };

    let now = Timestamp::now();
    // Whichever is newer: the status as cached, or our own last success (the cache may lag).
    let st = es.status.clone().unwrap_or_default();
    let mut synced_version = st.synced_resource_version.clone();
    let mut refresh_time = st.refresh_time.as_ref().map(|t| t.0);
    if let Some((v, t)) = &mem.synced
        && refresh_time.is_none_or(|r| r < *t)
    {
        synced_version = Some(v.clone());
        refresh_time = Some(*t);
    }
    let mut last_ready = status::ready_status(&st.conditions);
    if mem
        .synced
        .as_ref()
        .is_some_and(|(_, t)| refresh_time == Some(*t))
        && mem.failures == 0
    {
        last_ready = Some(true);
    }
    let target_state = match &existing {
        None if untouched => TargetState::Valid,
        None => TargetState::Missing,
        Some(s) => {
            if is_valid_target(s) {
                TargetState::Valid
            } else {
                TargetState::Tampered
            }
        }
    };
    // ExternalSecrets reading the same data refresh together, so their Vault reads are shared.
    let seed = refresh_seed(&es.spec);
    let input = refresh::Input {
        policy: es.spec.refresh_policy.unwrap_or_default(),
        interval,
        creation,
        current_version: version,
        synced_version: synced_version.as_deref(),
        refresh_time,
        last_ready,
        target: target_state,
        store_changed: mem
            .store_generation
            .as_ref()
            .is_some_and(|g| g != store_generation),
        seed: &seed,
        now,
    };
    let decision = refresh::decide(&input);
    tracing::debug!(externalsecret = %format!("{ns}/{}", es.name_any()), ?decision, "refresh decision");
    let next_after_sync = || match refresh::next_due(interval, Some(now), &seed) {
        Some(at)
            if es.spec.refresh_policy.unwrap_or_default()
                == crate::api::RefreshPolicy::Periodic =>
        {
            Action::requeue(refresh::until(Timestamp::now(), at))
        }
        _ => Action::await_change(),
    };
    let not_due = |wait: Option<Duration>| {
        if view != TargetView::AwaitingCache {
            return Ok(Synced::NotDue(
                wait.map_or_else(Action::await_change, Action::requeue),
            ));
        }
        // Look again once the write's watch event should have come; that look reads the
        // Secret if the cache still does not show it.
        update_memory(sh, es, |m| m.lag_checked = true);
        let wait = wait.map_or(CACHE_LAG_RECHECK, |w| w.min(CACHE_LAG_RECHECK));
        Ok(Synced::NotDue(Action::requeue(wait)))
    };
    let reason = match decision {
        Refresh::Never => return not_due(None),
        Refresh::At(at) => return not_due(Some(refresh::until(now, at))),
        Refresh::Now(reason) => reason,
    };
    if untouched {
        existing = read_target().await?;
    }

    if creation == CreationPolicy::Merge && existing.is_none() {
        // Nothing to merge into; no reason to read Vault. Look again after an interval, since
        // an unlabelled Secret appearing is not watched.
        let again = if interval.is_zero() {
            Duration::from_secs(300)
        } else {
            interval + refresh::phase(interval, &seed) / 10
        };
        return Ok(Synced::Done {
            outcome: EsOutcome::Missing { secret: target },
            next: Action::requeue(again),
            store_generation: None,
        });
    }

    if let Some(existing) = &existing {
        desired::check_controller(es, existing, creation)
            .map_err(|e| Failure::new(e.to_string()))?;
    }
    let client = sh.vault.client(handle, &ns).await.map_err(|e| Failure {
        retry_after: retry_after(&e),
        ..Failure::new(format!("could not get provider client: {e}"))
    })?;
    let skip_missing = matches!(
        desired::deletion_policy(es),
        DeletionPolicy::Delete | DeletionPolicy::Merge
    );
    let fetched = crate::vault::with_read_reuse(
        refresh::read_reuse(reason, interval),
        fetch_external_secret(&client, &es.spec, skip_missing),
    )
    .await
    .map_err(|e| Failure {
        retry_after: retry_after(&e.source),
        ..Failure::new(format!("could not get secret data from provider: {e}"))
    })?;
    for key in &fetched.missing {
        publish(
            sh,
            es,
            EventType::Warning,
            status::EVENT_MISSING_PROVIDER_SECRET,
            &format!(
                "secret {key:?} does not exist in the provider; its entry was skipped (deletionPolicy {:?})",
                desired::deletion_policy(es)
            ),
        );
    }
    if fetched.data.is_empty() && desired::deletion_policy(es) == DeletionPolicy::Retain {
        publish(
            sh,
            es,
            EventType::Warning,
            status::EVENT_PROVIDER_DATA_EMPTY,
            &retained_note(&fetched.empty),
        );
    }
    let rendered = match es.spec.target.as_ref().and_then(|t| t.template.as_ref()) {
        Some(tpl) => {
            let sources = template_sources(sh, &ns, tpl).await?;
            Some(
                crate::template::render_target(tpl, &fetched.data, &sources)
                    .map_err(|e| Failure::new(format!("could not apply template: {e}")))?,
            )
        }
        None => None,
    };
    let plan_for = |existing: Option<&Secret>| {
        desired::desired(&Inputs {
            es,
            data: &fetched.data,
            existing,
            rendered: rendered.as_ref(),
        })
        .map_err(|e| Failure::new(e.to_string()))
    };
    let outcome = if presumed_absent {
        let first = execute(es, sh, &secrets, plan_for(None)?, None, false).await;
        let found = match &first {
            Err(f) => f.unclaimed_conflict,
            Ok(done) => done.merged_into_existing,
        };
        if found {
            // The Secret was there, unlabelled: read it from now on.
            update_memory(sh, es, |m| m.exists_uncached = true);
        }
        match first {
            Err(f) if f.unclaimed_conflict => {
                existing = read_target().await?;
                if let Some(existing) = &existing {
                    desired::check_controller(es, existing, creation)
                        .map_err(|e| Failure::new(e.to_string()))?;
                }
                let plan = plan_for(existing.as_ref())?;
                execute(es, sh, &secrets, plan, existing.as_ref(), true)
                    .await?
                    .outcome
            }
            // With creationPolicy Owner, the write made this ExternalSecret the controller of
            // a Secret that may not be taken over: take back what it added (the keys, labels,
            // annotations and ownerReference only it holds), then decide on the Secret as read.
            Ok(done) if done.merged_into_existing && creation == CreationPolicy::Owner => {
                remove_our_fields(es, &secrets, None).await.map_err(|e| {
                    Failure::new(format!(
                        "could not take back a write to Secret {target:?}: {}",
                        kube_msg(&e)
                    ))
                })?;
                existing = read_target().await?;
                if let Some(existing) = &existing {
                    desired::check_controller(es, existing, creation)
                        .map_err(|e| Failure::new(e.to_string()))?;
                }
                let plan = plan_for(existing.as_ref())?;
                execute(es, sh, &secrets, plan, existing.as_ref(), true)
                    .await?
                    .outcome
            }
            r => r?.outcome,
        }
    } else {
        let plan = plan_for(existing.as_ref())?;
        execute(es, sh, &secrets, plan, existing.as_ref(), true)
            .await?
            .outcome
    };
    drop(rendered);
    drop(fetched);
    Ok(Synced::Done {
        outcome,
        next: next_after_sync(),
        store_generation: Some(store_generation.clone()),
    })
}

/// The event of a sync whose provider data came back empty under deletionPolicy Retain: which
/// entries had nothing.
fn retained_note(empty: &[String]) -> String {
    let what = if empty.is_empty() {
        "spec.data and spec.dataFrom".to_string()
    } else {
        empty.join("; ")
    };
    format!(
        "the provider returned no data ({what}); the Secret was left as it is (deletionPolicy Retain)"
    )
}

/// Labelled as ours, and its data is what its data-hash annotation says we wrote.
fn is_valid_target(s: &Secret) -> bool {
    valid_target(
        s.metadata.labels.as_ref(),
        s.metadata.annotations.as_ref(),
        s.data.iter().flatten(),
    )
}

fn valid_target<'a>(
    labels: Option<&BTreeMap<String, String>>,
    annotations: Option<&BTreeMap<String, String>>,
    data: impl Iterator<Item = (&'a String, &'a ByteString)>,
) -> bool {
    let annotated = annotations.and_then(|a| a.get(ANNOTATION_DATA_HASH));
    let labelled = labels
        .and_then(|l| l.get(LABEL_MANAGED))
        .is_some_and(|v| v == "true");
    labelled && annotated == Some(&data_hash(data.map(|(k, v)| (k, &v.0))))
}

/// What is read of the API server's answer to a Secret apply. The answer is the whole Secret,
/// managedFields and all; kube's typed `patch` would build every entry's field tree, which
/// nothing here reads (in a sync of 10,000 ExternalSecrets, managedFields were the costliest
/// part of every parse).
#[derive(serde::Deserialize)]
struct Written {
    metadata: WrittenMeta,
    data: Option<BTreeMap<String, ByteString>>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct WrittenMeta {
    resource_version: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
    managed_fields: Option<Vec<FieldManager>>,
}

#[derive(serde::Deserialize)]
struct FieldManager {
    manager: Option<String>,
}

/// Server-side applies `body` to Secret `name`; the answer read as [`Written`].
async fn apply_secret(
    sh: &Shared,
    secrets: &Api<Secret>,
    name: &str,
    pp: &PatchParams,
    body: &Secret,
) -> Result<Written, kube::Error> {
    let req = kube::core::Request::new(secrets.resource_url())
        .patch(name, pp, &Patch::Apply(body))
        .map_err(kube::Error::BuildRequest)?;
    sh.kube.request(req).await
}

fn retry_after(e: &VaultError) -> Option<Duration> {
    match e {
        VaultError::RateLimited { retry_after } => *retry_after,
        _ => None,
    }
}

async fn check_namespace_allowed(
    sh: &Shared,
    spec: &SecretStoreSpec,
    store: &str,
    ns: &str,
) -> Result<(), Failure> {
    let Some(conds) = spec.conditions.as_deref().filter(|c| !c.is_empty()) else {
        return Ok(());
    };
    let labels: BTreeMap<String, String> = if conds.iter().any(|c| c.namespace_selector.is_some()) {
        let api: Api<Namespace> = Api::all(sh.kube.clone());
        match api.get_opt(ns).await {
            Ok(Some(n)) => n.labels().clone(),
            Ok(None) => BTreeMap::new(),
            Err(e) => {
                return Err(Failure::new(format!(
                    "could not read namespace {ns:?} to evaluate ClusterSecretStore {store} conditions: {}",
                    kube_msg(&e)
                )));
            }
        }
    } else {
        BTreeMap::new()
    };
    match selector::namespace_allowed(Some(conds), ns, &labels) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Failure::new(selector::denied_message(store, ns))),
        Err(e) => Err(Failure::new(format!(
            "ClusterSecretStore {store} has invalid conditions: {e}"
        ))),
    }
}

/// What carrying out a plan did.
struct Executed {
    outcome: EsOutcome,
    /// A write planned as a creation met a Secret that was already there (only an unforced
    /// first write can: it merged into it).
    merged_into_existing: bool,
}

impl From<EsOutcome> for Executed {
    fn from(outcome: EsOutcome) -> Self {
        Executed {
            outcome,
            merged_into_existing: false,
        }
    }
}

/// Carries out a plan.
async fn execute(
    es: &ExternalSecret,
    sh: &Shared,
    secrets: &Api<Secret>,
    plan: Plan,
    existing: Option<&Secret>,
    force: bool,
) -> Result<Executed, Failure> {
    let target = desired::target_name(es);
    let manager = desired::field_manager(&es.namespace().unwrap_or_default(), &es.name_any());
    match plan {
        Plan::Skip(Skip::MergeTargetMissing) => Ok(EsOutcome::Missing { secret: target }.into()),
        Plan::Skip(Skip::NothingToDelete) => Ok(EsOutcome::Deleted.into()),
        Plan::Skip(Skip::RetainedEmpty) => Ok(EsOutcome::Retained.into()),
        Plan::Skip(_) => Ok(EsOutcome::Synced.into()),
        Plan::Delete => {
            let rv = existing.and_then(|s| s.resource_version());
            let dp = DeleteParams {
                preconditions: rv.map(|rv| kube::api::Preconditions {
                    resource_version: Some(rv),
                    uid: None,
                }),
                ..Default::default()
            };
            match secrets.delete(&target, &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.is_not_found() => {}
                Err(e) => {
                    return Err(Failure::new(format!(
                        "could not delete Secret {target:?}: {}",
                        kube_msg(&e)
                    )));
                }
            }
            update_memory(sh, es, |m| m.valid_rv = None);
            publish(
                sh,
                es,
                EventType::Normal,
                status::EVENT_DELETED,
                status::MSG_DELETED,
            );
            Ok(EsOutcome::Deleted.into())
        }
        Plan::Apply(w) => {
            let mut body = w.secret;
            if let Some(rv) = existing.and_then(|s| s.resource_version()) {
                if !w.remove_foreign_keys.is_empty() {
                    // Keys somebody else added to a Secret this ExternalSecret owns whole.
                    let mut ops = vec![
                        json!({"op": "test", "path": "/metadata/resourceVersion", "value": rv}),
                    ];
                    for k in &w.remove_foreign_keys {
                        ops.push(json!({"op": "remove", "path": format!("/data/{}", k.replace('~', "~0").replace('/', "~1"))}));
                    }
                    let patch: json_patch::Patch =
                        serde_json::from_value(json!(ops)).map_err(|e| {
                            Failure::new(format!("internal error building a patch: {e}"))
                        })?;
                    secrets
                        .patch(&target, &PatchParams::default(), &Patch::<()>::Json(patch))
                        .await
                        .map_err(|e| {
                            Failure::new(format!(
                                "could not remove keys from Secret {target:?}: {}",
                                kube_msg(&e)
                            ))
                        })?;
                } else if body.type_.is_none() {
                    // A merge must not create the Secret should it vanish meanwhile.
                    body.metadata.resource_version = Some(rv);
                }
            }
            let mut pp = PatchParams::apply(&manager);
            pp.force = force;
            let written = apply_secret(sh, secrets, &target, &pp, &body)
                .await
                .map_err(|e| {
                    let refused =
                        matches!(&e, kube::Error::Api(s) if s.code == 409 || s.code == 422);
                    Failure {
                        unclaimed_conflict: !force && refused,
                        ..Failure::new(format!(
                            "could not update Secret {target:?}: {}",
                            kube_msg(&e)
                        ))
                    }
                })?;
            // Remembered only when the Secret holds exactly what we wrote (an unforced first
            // write may have merged into a Secret that already had other keys).
            let meta = &written.metadata;
            if valid_target(
                meta.labels.as_ref(),
                meta.annotations.as_ref(),
                written.data.iter().flatten(),
            ) {
                update_memory(sh, es, |m| {
                    m.valid_rv = meta.resource_version.clone();
                    m.lag_checked = false;
                    m.exists_uncached = false;
                });
            }
            // Created by this write: nobody else has fields in it.
            let created = w.creates
                && meta
                    .managed_fields
                    .iter()
                    .flatten()
                    .all(|f| f.manager.as_deref() == Some(manager.as_str()));
            let merged_into_existing = w.creates && !created;
            if merged_into_existing && desired::creation_policy(es) == CreationPolicy::Owner {
                // The caller takes the write back and decides on the Secret as it was.
            } else if created {
                publish(
                    sh,
                    es,
                    EventType::Normal,
                    status::EVENT_CREATED,
                    "Created Secret",
                );
            } else if existing.and_then(|s| s.resource_version()) != meta.resource_version {
                publish(
                    sh,
                    es,
                    EventType::Normal,
                    status::EVENT_UPDATED,
                    "Updated Secret",
                );
            }
            Ok(Executed {
                outcome: EsOutcome::Synced,
                merged_into_existing,
            })
        }
    }
}

async fn write_status(
    es: &ExternalSecret,
    sh: &Shared,
    outcome: &EsOutcome,
    version: &str,
    target: &str,
    now: Timestamp,
) -> Result<(), Error> {
    let (ns, name) = key(es);
    let new = status::external_secret_status(es.status.as_ref(), outcome, version, target, now);
    let ready = status::ready_status(&new.conditions);
    sh.metrics.set_es_condition(
        &name,
        &ns,
        status::READY,
        match ready {
            Some(true) => "True",
            Some(false) => "False",
            None => "Unknown",
        },
    );
    if !status::differs(es.status.as_ref(), &new) {
        return Ok(());
    }
    // Written straight from the status: through `json!` it was first copied into a JSON tree.
    #[derive(serde::Serialize)]
    struct StatusPatch<'a> {
        status: &'a crate::api::ExternalSecretStatus,
    }
    // The answer is the whole ExternalSecret again, managedFields and all, and nothing reads
    // it: skipped, not built into an object as kube's typed `patch_status` would (in a sync
    // of 10,000 ExternalSecrets, managedFields were the costliest part of every parse).
    let req = kube::core::Request::new(ExternalSecret::url_path(&(), Some(&ns)))
        .patch_subresource(
            "status",
            &name,
            &PatchParams::default(),
            &Patch::Merge(StatusPatch { status: &new }),
        )
        .map_err(kube::Error::BuildRequest)?;
    sh.kube.request::<serde::de::IgnoredAny>(req).await?;
    Ok(())
}

/// Queues an event about `es` (written in the background).
fn publish(sh: &Shared, es: &ExternalSecret, type_: EventType, reason: &str, note: &str) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(crate::text::clip(note, 1000)),
        action: "Sync".into(),
        secondary: None,
    };
    sh.events.send(ev, es.object_ref(&()));
}

async fn ensure_finalizer(es: &ExternalSecret, sh: &Shared) -> Result<(), Error> {
    let want = desired::needs_finalizer(es);
    let finalizers = es.finalizers();
    let has = finalizers.iter().any(|f| f == desired::FINALIZER);
    if want == has {
        return Ok(());
    }
    let mut new: Vec<String> = finalizers
        .iter()
        .filter(|f| *f != desired::FINALIZER)
        .cloned()
        .collect();
    if want {
        new.push(desired::FINALIZER.into());
    }
    patch_finalizers(es, sh, new).await
}

async fn patch_finalizers(es: &ExternalSecret, sh: &Shared, new: Vec<String>) -> Result<(), Error> {
    let (ns, name) = key(es);
    let api: Api<ExternalSecret> = Api::namespaced(sh.kube.clone(), &ns);
    // The test makes a concurrent change to the list a conflict rather than a lost update.
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": es.resource_version()},
        {"op": "add", "path": "/metadata/finalizers", "value": new},
    ]))
    .expect("well-formed patch");
    api.patch(&name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await?;
    Ok(())
}

/// Applies an empty intent with the ExternalSecret's field manager: the API server drops the
/// keys, labels, annotations and ownerReferences only it applied. A Secret gone meanwhile is
/// fine; `rv`, when given, makes a concurrent change a conflict.
async fn remove_our_fields(
    es: &ExternalSecret,
    secrets: &Api<Secret>,
    rv: Option<String>,
) -> Result<(), kube::Error> {
    let (ns, name) = key(es);
    let target = desired::target_name(es);
    let body = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": target,
            "namespace": ns,
            "resourceVersion": rv,
        },
    });
    let mut pp = PatchParams::apply(&desired::field_manager(&ns, &name));
    pp.force = true;
    match secrets.patch(&target, &pp, &Patch::Apply(&body)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

/// The ExternalSecret is being deleted: clean up its Secret per deletionPolicy, then let it go.
async fn cleanup(es: &ExternalSecret, sh: &Shared) -> Result<Action, Error> {
    if !es.finalizers().iter().any(|f| f == desired::FINALIZER) {
        return Ok(Action::await_change());
    }
    let (ns, _) = key(es);
    let target = desired::target_name(es);
    let secrets: Api<Secret> = Api::namespaced(sh.kube.clone(), &ns);
    let existing = secrets.get_opt(&target).await?;
    match desired::on_delete(es, existing.as_ref()) {
        Cleanup::Nothing => {}
        Cleanup::DeleteSecret => {
            let dp = DeleteParams {
                preconditions: existing.as_ref().map(|s| kube::api::Preconditions {
                    uid: s.uid(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match secrets.delete(&target, &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
            publish(
                sh,
                es,
                EventType::Normal,
                status::EVENT_DELETED,
                "Deleted Secret (deletionPolicy Delete)",
            );
        }
        Cleanup::RemoveOurFields => {
            let rv = existing.as_ref().and_then(|s| s.resource_version());
            remove_our_fields(es, &secrets, rv).await?;
            publish(
                sh,
                es,
                EventType::Normal,
                status::EVENT_DELETED,
                "Removed this ExternalSecret's keys from the Secret (deletionPolicy Merge)",
            );
        }
    }
    let rest: Vec<String> = es
        .finalizers()
        .iter()
        .filter(|f| *f != desired::FINALIZER)
        .cloned()
        .collect();
    patch_finalizers(es, sh, rest).await?;
    forget(sh, es);
    Ok(Action::await_change())
}

/// Runs the ExternalSecret controller until `stop` is cancelled (in-flight reconciles finish).
pub(crate) async fn run(
    sh: Arc<Shared>,
    es_reader: Store<ExternalSecret>,
    es_stream: impl Stream<Item = Result<ExternalSecret, watcher::Error>> + Send + 'static,
    secret_stream: impl Stream<Item = Result<PartialObjectMeta<Secret>, watcher::Error>>
    + Send
    + 'static,
    ss_stream: impl Stream<Item = Result<SecretStore, watcher::Error>> + Send + 'static,
    css_stream: impl Stream<Item = Result<ClusterSecretStore, watcher::Error>> + Send + 'static,
    stop: tokio_util::sync::CancellationToken,
) {
    use kube::runtime::Controller;
    let after = sh.clone();
    let for_ss = es_reader.clone();
    let for_css = es_reader.clone();
    let controller = Controller::for_stream(es_stream, es_reader.clone())
        .with_config(kube::runtime::controller::Config::default().concurrency(sh.cfg.concurrency))
        .watches_stream(secret_stream, {
            let sh = sh.clone();
            move |s| {
                let writers = writers_of_secret(&sh.targets, &s);
                let mem = sh.es_memory.lock().unwrap_or_else(|p| p.into_inner());
                to_wake(writers, s.metadata.resource_version.as_deref(), &mem)
            }
        })
        .watches_stream(ss_stream, move |s| {
            users_of_store(
                &for_ss,
                StoreKind::SecretStore,
                s.namespace().as_deref(),
                &s.name_any(),
            )
        })
        .watches_stream(css_stream, move |s| {
            users_of_store(&for_css, StoreKind::ClusterSecretStore, None, &s.name_any())
        })
        .graceful_shutdown_on(stop.clone().cancelled_owned())
        // Boxed: a reconcile's future is about eleven kilobytes, and kube-runtime and tokio move
        // it five or six times between creating and finishing it (into the span, into the
        // task, the task's output in and out), some 70 KB copied per ExternalSecret. Boxed, they
        // move a pointer.
        .run(|es, sh| Box::pin(reconcile(es, sh)), error_policy, sh)
        .for_each(|r| {
            let (sh, reader) = (&after, &es_reader);
            async move {
                // A reconcile under way when its ExternalSecret was deleted records its metrics
                // and memory after the delete cleared them: cleared again once the object is
                // gone from the cache, or its series would stay for good.
                let done = match &r {
                    Ok((o, _)) => Some((&o.namespace, &o.name)),
                    Err(kube::runtime::controller::Error::ReconcilerFailed(_, o)) => {
                        Some((&o.namespace, &o.name))
                    }
                    Err(_) => None,
                };
                if let Some((ns, name)) = done {
                    let mut o = ObjectRef::<ExternalSecret>::new(name);
                    o.namespace = ns.clone();
                    if reader.get(&o).is_none() {
                        forget_key(sh, o.namespace.unwrap_or_default(), o.name);
                    }
                }
                if let Err(e) = r {
                    tracing::debug!(error = %e, "externalsecret controller");
                }
            }
        });
    super::until_stopped(controller, &es_reader, &stop).await;
}

/// What an ExternalSecret reads: its store and remote references (see `refresh::next_due`).
fn refresh_seed(spec: &crate::api::ExternalSecretSpec) -> String {
    serde_json::json!([
        spec.secret_store_ref,
        spec.data
            .as_ref()
            .map(|d| d.iter().map(|e| &e.remote_ref).collect::<Vec<_>>()),
        spec.data_from
    ])
    .to_string()
}

/// The ConfigMaps and Secrets a template's `templateFrom` names, read from the ExternalSecret's
/// own namespace (never another).
async fn template_sources(
    sh: &Shared,
    ns: &str,
    tpl: &crate::api::ExternalSecretTemplate,
) -> Result<crate::template::TemplateSources, Failure> {
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    let (config_maps, secrets) = crate::template::source_names(tpl);
    let mut sources = crate::template::TemplateSources::default();
    let cms: kube::Api<ConfigMap> = kube::Api::namespaced(sh.kube.clone(), ns);
    for name in config_maps {
        let cm = cms
            .get_opt(&name)
            .await
            .map_err(|e| {
                Failure::new(format!(
                    "could not read template ConfigMap {ns}/{name}: {e}"
                ))
            })?
            .ok_or_else(|| {
                Failure::new(format!("template ConfigMap {ns}/{name} does not exist"))
            })?;
        sources
            .config_maps
            .insert(name, cm.data.unwrap_or_default());
    }
    let api: kube::Api<Secret> = kube::Api::namespaced(sh.kube.clone(), ns);
    for name in secrets {
        let s = api
            .get_opt(&name)
            .await
            .map_err(|e| Failure::new(format!("could not read template Secret {ns}/{name}: {e}")))?
            .ok_or_else(|| Failure::new(format!("template Secret {ns}/{name} does not exist")))?;
        let data = s
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        sources.secrets.insert(name, data);
    }
    Ok(sources)
}

#[cfg(test)]
mod target_index_tests {
    use super::*;

    fn es(ns: &str, name: &str, target: Option<&str>) -> ExternalSecret {
        let mut e = ExternalSecret::new(name, Default::default());
        e.metadata.namespace = Some(ns.into());
        e.spec.target = Some(crate::api::ExternalSecretTarget {
            name: target.map(String::from),
            ..Default::default()
        });
        e
    }

    fn secret(ns: &str, name: &str) -> PartialObjectMeta<Secret> {
        let mut s = PartialObjectMeta::<Secret>::default();
        s.metadata.namespace = Some(ns.into());
        s.metadata.name = Some(name.into());
        s
    }

    #[test]
    fn secrets_map_to_the_external_secrets_that_write_them() {
        let idx = TargetIndex::default();
        idx.insert(&es("a", "app", None));
        idx.insert(&es("a", "merge-1", Some("shared")));
        idx.insert(&es("a", "merge-2", Some("shared")));
        idx.insert(&es("b", "app", None));
        let names = |s: &PartialObjectMeta<Secret>| {
            let mut v: Vec<String> = writers_of_secret(&idx, s)
                .into_iter()
                .map(|r| r.name)
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(&secret("a", "app")), ["app"]);
        assert_eq!(names(&secret("a", "shared")), ["merge-1", "merge-2"]);
        assert!(
            names(&secret("c", "app")).is_empty(),
            "other namespaces do not match"
        );
        idx.remove(&es("a", "merge-1", Some("shared")));
        assert_eq!(names(&secret("a", "shared")), ["merge-2"]);
        // The controller's ownerReference counts even without an index entry.
        let mut owned = secret("a", "orphan-name");
        owned.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                kind: "ExternalSecret".into(),
                name: "owner".into(),
                api_version: "external-secrets.io/v1".into(),
                uid: "u".into(),
                ..Default::default()
            },
        ]);
        assert_eq!(names(&owned), ["owner"]);
    }

    #[test]
    fn a_secret_event_wakes_the_writers_it_is_news_to() {
        let mem: MemoryMap = [
            // Wrote version 5 last: the event of version 5 is its own write.
            ("wrote-5", Some("5")),
            // Merges into the same Secret and last saw version 3.
            ("wrote-3", Some("3")),
            // Deleted since, or never confirmed: no version remembered.
            ("unknown", None),
        ]
        .into_iter()
        .map(|(name, rv)| {
            let m = Memory {
                valid_rv: rv.map(Into::into),
                ..Default::default()
            };
            (("a".to_string(), name.to_string()), m)
        })
        .collect();
        let all = || {
            ["wrote-5", "wrote-3", "unknown", "never-reconciled"]
                .map(|n| ObjectRef::<ExternalSecret>::new(n).within("a"))
                .to_vec()
        };
        let names =
            |v: Vec<ObjectRef<ExternalSecret>>| v.into_iter().map(|r| r.name).collect::<Vec<_>>();
        let cases: [(Option<&str>, &[&str]); 4] = [
            (Some("5"), &["wrote-3", "unknown", "never-reconciled"]),
            (Some("3"), &["wrote-5", "unknown", "never-reconciled"]),
            (
                Some("9"),
                &["wrote-5", "wrote-3", "unknown", "never-reconciled"],
            ),
            (None, &["wrote-5", "wrote-3", "unknown", "never-reconciled"]),
        ];
        for (rv, want) in cases {
            assert_eq!(
                names(to_wake(all(), rv, &mem)),
                want,
                "event version {rv:?}"
            );
        }
        // The same name in another namespace is another ExternalSecret.
        let other = vec![ObjectRef::<ExternalSecret>::new("wrote-5").within("b")];
        assert_eq!(names(to_wake(other, Some("5"), &mem)), ["wrote-5"]);
    }

    #[test]
    fn a_deleted_external_secret_leaves_no_entry_behind() {
        let idx = TargetIndex::default();
        // Inserted twice (every watch event), then with a new target: both names are kept.
        idx.insert(&es("a", "app", None));
        idx.insert(&es("a", "app", None));
        idx.insert(&es("a", "app", Some("renamed")));
        idx.insert(&es("a", "other", Some("renamed")));
        let names = |ns: &str, secret: &str| {
            let mut v = idx.writers(ns, secret);
            v.sort();
            v
        };
        assert_eq!(names("a", "app"), ["app"]);
        assert_eq!(names("a", "renamed"), ["app", "other"]);
        // The delete carries the latest spec; the old target goes too.
        idx.remove(&es("a", "app", Some("renamed")));
        assert!(names("a", "app").is_empty());
        assert_eq!(names("a", "renamed"), ["other"]);
        idx.remove(&es("a", "other", Some("renamed")));
        assert!(names("a", "renamed").is_empty());
        assert_eq!(idx.namespaces(), (0, 0), "empty namespaces are dropped");
        // Removing what was never there changes nothing.
        idx.insert(&es("b", "kept", None));
        idx.remove(&es("b", "never", None));
        idx.remove(&es("c", "never", None));
        assert_eq!(names("b", "kept"), ["kept"]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn how_the_target_is_looked_at() {
        use TargetView::*;
        // (cached rv, our last write's rv, already waited for the cache, cache ready,
        //  owner/orphan), view; then the same with the target known to exist uncached
        let cases = [
            (Some(Some("7")), Some("7"), false, true, true, Untouched),
            (Some(Some("7")), Some("7"), true, true, true, Untouched),
            // Someone wrote after us.
            (Some(Some("8")), Some("7"), false, true, true, Read),
            // Cached but never written by us (adopted, or written before a restart).
            (Some(Some("8")), None, false, true, true, Read),
            (Some(None), Some("7"), false, true, true, Read),
            (None, None, false, true, true, PresumedAbsent),
            (None, None, false, false, true, Read),
            // Merge and None: the Secret is not ours to create.
            (None, None, false, true, false, Read),
            // Our write's watch event has not arrived yet: wait once, then read.
            (None, Some("7"), false, true, true, AwaitingCache),
            (None, Some("7"), true, true, true, Read),
            (None, Some("7"), false, false, true, Read),
        ];
        for (cached, valid, checked, ready, own, want) in cases {
            assert_eq!(
                target_view(cached, valid, checked, ready, own, false),
                want,
                "{cached:?} {valid:?} {checked} {ready} {own}"
            );
            // A target found to exist though the cache does not show it is read, never
            // presumed absent again.
            let known = if want == PresumedAbsent { Read } else { want };
            assert_eq!(
                target_view(cached, valid, checked, ready, own, true),
                known,
                "{cached:?} {valid:?} {checked} {ready} {own} (exists uncached)"
            );
        }
    }

    #[test]
    fn what_changes_trigger_a_reconcile() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        let base = {
            let mut e = ExternalSecret::new("app", Default::default());
            e.metadata.namespace = Some("ns".into());
            e.metadata.generation = Some(1);
            e.metadata.resource_version = Some("10".into());
            e.metadata.labels = Some([("team".to_string(), "a".to_string())].into());
            e
        };
        type Change = fn(&mut ExternalSecret);
        // (what changed, whether it triggers)
        let cases: [(&str, Change, bool); 11] = [
            ("nothing", |_| {}, false),
            (
                "status (our own write) and the resourceVersion with it",
                |e| {
                    e.metadata.resource_version = Some("11".into());
                    e.status = Some(crate::api::ExternalSecretStatus {
                        synced_resource_version: Some("1".into()),
                        ..Default::default()
                    });
                },
                false,
            ),
            (
                "managedFields",
                |e| e.metadata.managed_fields = Some(vec![Default::default()]),
                false,
            ),
            (
                "spec (generation)",
                |e| e.metadata.generation = Some(2),
                true,
            ),
            (
                "a label",
                |e| e.metadata.labels = Some([("team".to_string(), "b".to_string())].into()),
                true,
            ),
            (
                "force-sync annotation",
                |e| {
                    e.metadata.annotations =
                        Some([("force-sync".to_string(), "1".to_string())].into())
                },
                true,
            ),
            (
                "a finalizer",
                |e| e.metadata.finalizers = Some(vec![desired::FINALIZER.into()]),
                true,
            ),
            (
                "deletion",
                |e| e.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH)),
                true,
            ),
            ("labels emptied", |e| e.metadata.labels = None, true),
            (
                "a label moved to the annotations",
                |e| e.metadata.annotations = e.metadata.labels.take(),
                true,
            ),
            (
                "only kubectl's last-applied annotation (not part of the synced version)",
                |e| {
                    e.metadata.annotations = Some(
                        [(
                            crate::reconcile::hash::LAST_APPLIED.to_string(),
                            "{}".to_string(),
                        )]
                        .into(),
                    )
                },
                false,
            ),
        ];
        let before = trigger_hash(&base);
        assert!(before.is_some());
        for (what, change, triggers) in cases {
            let mut e = base.clone();
            change(&mut e);
            assert_eq!(trigger_hash(&e) != before, triggers, "{what}");
        }
    }
}
