//! The store an ExternalSecret points at: found in the caches (or asked for), whether it is
//! ours, and whether a ClusterSecretStore serves this namespace.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};

use super::error::SyncError;
use crate::api::entry_stores::entry_store_refs;
use crate::api::selector;
use crate::api::{
    ClusterSecretStore, ExternalSecret, ExternalSecretSpec, SecretStore, SecretStoreRef,
    SecretStoreSpec, SecretStoreStatus, StoreKind,
};
use crate::reconcile::{Error, Shared};
use crate::vault::StoreHandle;

/// The store an ExternalSecret points at, as found in the caches.
pub(super) enum StoreLookup {
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
    /// Every entry names a generator: no store is read, whatever `secretStoreRef` says.
    NotNeeded,
    Missing(String),
}

/// Whether a store belongs to this controller (ESO: an empty class is everybody's).
pub fn class_matches(store_class: Option<&str>, ours: &str) -> bool {
    match store_class {
        None | Some("") => true,
        Some(c) => c == ours,
    }
}

pub(super) async fn lookup_store(es: &ExternalSecret, sh: &Shared) -> Result<StoreLookup, Error> {
    let ns = es.namespace().unwrap_or_default();
    if !crate::generators::needs_store(&es.spec) {
        return Ok(StoreLookup::NotNeeded);
    }
    let r = es.spec.secret_store_ref.as_ref();
    let Some(name) = r.and_then(|r| r.name.as_deref()).filter(|n| !n.is_empty()) else {
        return Ok(StoreLookup::Missing(
            "spec.secretStoreRef.name is empty".into(),
        ));
    };
    let kind = r.and_then(|r| r.kind).unwrap_or_default();
    lookup_ref(sh, &ns, kind, name).await
}

/// The store of this kind and name, as seen from namespace `ns`.
pub(super) async fn lookup_ref(
    sh: &Shared,
    ns: &str,
    kind: StoreKind,
    name: &str,
) -> Result<StoreLookup, Error> {
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
            .get(&ObjectRef::new(name).within(ns))
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
            StoreKind::SecretStore => Api::<SecretStore>::namespaced(sh.kube.clone(), ns)
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

/// The ExternalSecrets that point at a store, through `secretStoreRef` or an entry's own
/// `sourceRef.storeRef`.
pub(crate) fn users_of_store(
    es: &Store<ExternalSecret>,
    kind: StoreKind,
    namespace: Option<&str>,
    name: &str,
) -> Vec<ObjectRef<ExternalSecret>> {
    es.state()
        .iter()
        .filter(|e| kind == StoreKind::ClusterSecretStore || e.namespace().as_deref() == namespace)
        .filter(|e| uses_store(&e.spec, kind, name))
        .map(|e| ObjectRef::from_obj(e.as_ref()))
        .collect()
}

/// Whether a spec reads (or would read) the store of this kind and name.
pub(crate) fn uses_store(spec: &ExternalSecretSpec, kind: StoreKind, name: &str) -> bool {
    let same =
        |r: &SecretStoreRef| r.kind.unwrap_or_default() == kind && r.name.as_deref() == Some(name);
    spec.secret_store_ref.as_ref().is_some_and(same)
        || entry_store_refs(spec).into_iter().any(|(_, r)| same(r))
}

pub(super) async fn check_namespace_allowed(
    sh: &Shared,
    spec: &SecretStoreSpec,
    store: &str,
    ns: &str,
) -> Result<(), SyncError> {
    let Some(conds) = spec.conditions.as_deref().filter(|c| !c.is_empty()) else {
        return Ok(());
    };
    let labels: BTreeMap<String, String> = if conds.iter().any(|c| c.namespace_selector.is_some()) {
        let api: Api<Namespace> = Api::all(sh.kube.clone());
        match api.get_opt(ns).await {
            Ok(Some(n)) => n.labels().clone(),
            Ok(None) => BTreeMap::new(),
            Err(e) => {
                return Err(SyncError::kube(
                    format!(
                        "could not read namespace {ns:?} to evaluate ClusterSecretStore {store} conditions"
                    ),
                    e,
                ));
            }
        }
    } else {
        BTreeMap::new()
    };
    match selector::namespace_allowed(Some(conds), ns, &labels) {
        Ok(true) => Ok(()),
        Ok(false) => Err(SyncError::NamespaceNotAllowed(selector::denied_message(
            store, ns,
        ))),
        Err(e) => Err(SyncError::StoreConditions {
            store: store.to_string(),
            reason: e.to_string(),
        }),
    }
}
