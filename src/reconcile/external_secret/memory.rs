//! What the controller remembers per ExternalSecret between reconciles (lost on restart, which
//! is fine: everything durable is in the status).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::error::SyncError;
use crate::api::ExternalSecret;
use crate::reconcile::{Shared, refresh};

/// What the controller remembers per ExternalSecret between reconciles (lost on restart, which
/// is fine: everything durable is in the status).
#[derive(Default, Clone)]
pub(crate) struct Memory {
    pub(super) uid: String,
    /// Set while syncs fail (boxed: most ExternalSecrets never carry one).
    pub(super) failing: Option<Box<Failing>>,
    /// The last successful sync, in case the cache has not seen our status write yet.
    pub(super) synced: Option<(String, Timestamp)>,
    /// The store generation of the last successful sync.
    pub(super) store_generation: Option<String>,
    /// The target Secret's resourceVersion right after our last write. While the cached
    /// metadata still shows it, nobody has changed the Secret, and a reconcile that finds no
    /// refresh due needs no GET (the Secret's own watch event brings one after every sync).
    pub(super) valid_rv: Option<String>,
    /// A reconcile already waited once for the cache to show `valid_rv`; the next one reads.
    pub(super) lag_checked: bool,
    /// A first write found the target already there though the cache (managed Secrets only)
    /// did not show it: read it from then on rather than presume it absent.
    pub(super) exists_uncached: bool,
    /// The lease record as last written, in case the cache has not seen the status write yet.
    pub(super) leases: Option<Vec<crate::generators::lease::LeaseRecord>>,
}

/// Consecutive failed syncs of an ExternalSecret.
#[derive(Default, Clone)]
pub(crate) struct Failing {
    pub(super) count: u32,
    /// When the next attempt is allowed.
    pub(super) retry_at: Option<Instant>,
    /// The ExternalSecret and store versions the failures happened with: a change to either
    /// is a reason to try again at once.
    pub(super) with: String,
}

/// Each ExternalSecret's [`Memory`], by namespace and name.
pub(crate) type MemoryMap = HashMap<(String, String), Memory>;
pub(crate) type Memories = Mutex<MemoryMap>;

pub(super) fn key(es: &ExternalSecret) -> (String, String) {
    (es.namespace().unwrap_or_default(), es.name_any())
}

/// Forgets an ExternalSecret that is gone: its metrics series and memory.
pub(crate) fn forget(sh: &Shared, es: &ExternalSecret) {
    let (ns, name) = key(es);
    forget_key(sh, ns, name);
}

pub(super) fn forget_key(sh: &Shared, ns: String, name: String) {
    sh.metrics.forget_es(&name, &ns);
    sh.refreshes.forget(&(ns.clone(), name.clone()));
    sh.es_memory
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&(ns, name));
}

pub(super) fn memory(sh: &Shared, es: &ExternalSecret) -> Memory {
    sh.es_memory
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key(es))
        .cloned()
        .unwrap_or_default()
}

pub(super) fn update_memory(sh: &Shared, es: &ExternalSecret, f: impl FnOnce(&mut Memory)) {
    let mut mem = sh.es_memory.lock().unwrap_or_else(|p| p.into_inner());
    f(mem.entry(key(es)).or_default());
}

/// A recreated object (same name, new uid) starts with a clean memory.
pub(super) fn renew_if_recreated(sh: &Shared, es: &ExternalSecret) {
    let uid = es.uid().unwrap_or_default();
    update_memory(sh, es, |m| {
        if m.uid != uid {
            *m = Memory {
                uid,
                ..Default::default()
            };
        }
    });
}

/// A sync that ended without an error: the failures are over. `synced` is the version and
/// time of a successful one, kept in case the cache has not seen the status write yet.
pub(super) fn record_success(
    sh: &Shared,
    es: &ExternalSecret,
    synced: Option<(String, Timestamp)>,
    store_generation: Option<String>,
) {
    update_memory(sh, es, |m| {
        m.failing = None;
        if synced.is_some() {
            m.synced = synced;
            m.store_generation = store_generation;
        }
    });
}

/// Counts one more consecutive failure; returns how many there are now.
pub(super) fn count_failure(sh: &Shared, es: &ExternalSecret) -> u32 {
    let mut failures = 0;
    update_memory(sh, es, |m| {
        let f = m.failing.get_or_insert_default();
        f.count = f.count.saturating_add(1);
        failures = f.count;
    });
    failures
}

/// Records a failed sync and when to try again: backing off, at least as long as Vault asked,
/// unless `attempt_key` (the ExternalSecret's and store's versions) changes meanwhile.
pub(super) fn back_off(
    sh: &Shared,
    es: &ExternalSecret,
    failure: &SyncError,
    attempt_key: String,
) -> Duration {
    let mut delay = refresh::backoff(count_failure(sh, es));
    if let Some(after) = failure.retry_after() {
        delay = delay.max(after);
    }
    update_memory(sh, es, |m| {
        let f = m.failing.get_or_insert_default();
        f.retry_at = Some(Instant::now() + delay);
        f.with = attempt_key;
    });
    delay
}
