//! The stores entries name for themselves (`sourceRef.storeRef`): looked up like
//! `secretStoreRef`, each checked (ours, Ready, a ClusterSecretStore's namespace conditions)
//! with its entry's field path in the error.

use kube::ResourceExt;

use super::error::SyncError;
use super::store_ref::{StoreLookup, lookup_ref};
use super::sync::usable_store;
use crate::api::ExternalSecret;
use crate::api::entry_stores::{Entry, entry_store_refs};
use crate::reconcile::{Error, Shared};
use crate::vault::StoreHandle;

/// Each entry's own store, looked up, in read order.
pub(super) async fn lookup_entry_stores(
    es: &ExternalSecret,
    sh: &Shared,
) -> Result<Vec<(Entry, StoreLookup)>, Error> {
    let ns = es.namespace().unwrap_or_default();
    let mut out = Vec::new();
    for (entry, r) in entry_store_refs(&es.spec) {
        let lookup = match r.name.as_deref().filter(|n| !n.is_empty()) {
            Some(name) => lookup_ref(sh, &ns, r.kind.unwrap_or_default(), name).await?,
            None => StoreLookup::Missing(format!("{}.name is empty", entry.store_field())),
        };
        out.push((entry, lookup));
    }
    Ok(out)
}

/// As ESO: an ExternalSecret any of whose stores belongs to another controller is left to it.
pub(super) fn any_not_ours(entries: &[(Entry, StoreLookup)]) -> bool {
    entries
        .iter()
        .any(|(_, l)| matches!(l, StoreLookup::NotOurs))
}

/// The entries' stores' versions (spec or status), for the retry key.
pub(super) fn versions(entries: &[(Entry, StoreLookup)]) -> String {
    entries
        .iter()
        .map(|(_, l)| match l {
            StoreLookup::Found { version, .. } => version.as_str(),
            _ => "",
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Every entry's store, usable from namespace `ns`, and their generations joined (a change of
/// any re-syncs, as one of `secretStoreRef` does).
pub(super) async fn usable_entry_stores<'a>(
    sh: &Shared,
    entries: &'a [(Entry, StoreLookup)],
    ns: &str,
) -> Result<(Vec<(Entry, &'a StoreHandle)>, String), SyncError> {
    let mut handles = Vec::new();
    let mut generations = Vec::new();
    for (entry, lookup) in entries {
        let (handle, generation) =
            usable_store(sh, lookup, ns)
                .await
                .map_err(|e| SyncError::Entry {
                    at: entry.store_field(),
                    source: Box::new(e),
                })?;
        if let Some(h) = handle {
            handles.push((*entry, h));
        }
        generations.push(generation);
    }
    Ok((handles, generations.join(",")))
}
