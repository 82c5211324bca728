//! The PushSecret controller: writes keys of a Kubernetes Secret into Vault (ESO's
//! `pkg/controllers/pushsecret`), on `refreshInterval` and at once when the source Secret
//! changes. What to write is decided in [`crate::vault::push_plan`] and [`super::push_desired`];
//! this file reads, calls and writes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use parking_lot::Mutex;
use serde_json::json;

use super::events::{Event, EventType};
use super::external_secret::{class_matches, stable_identity};
use super::hash::meta_hash;
use super::push_desired::{self as pd, Due};
use super::{Error, refresh, status};
use crate::api::{
    ClusterSecretStore, PUSH_SECRET_FINALIZER, PushSecret, PushSecretData,
    PushSecretDeletionPolicy, PushSecretStatus, PushSecretStoreKind, PushSecretUpdatePolicy,
    SecretStore, SyncedPushSecrets, conditions, duration, selector,
};
use crate::metrics::Metrics;
use crate::vault::push_plan::{self, PushInput, PushRefusal};
use crate::vault::{StoreHandle, VaultClients};

/// What every PushSecret reconcile shares.
pub(crate) struct PushShared {
    pub kube: kube::Client,
    pub vault: VaultClients,
    pub metrics: Metrics,
    pub controller_class: String,
    pub events: super::events::Sender,
    pub secret_stores: Store<SecretStore>,
    pub cluster_stores: Store<ClusterSecretStore>,
    memory: Mutex<HashMap<(String, String), Memory>>,
}

#[derive(Default)]
struct Memory {
    failures: u32,
    /// A source Secret changed since the last push.
    source_changed: bool,
}

impl PushShared {
    pub fn new(
        kube: kube::Client,
        vault: VaultClients,
        metrics: Metrics,
        controller_class: String,
        events: super::events::Sender,
        secret_stores: Store<SecretStore>,
        cluster_stores: Store<ClusterSecretStore>,
    ) -> Self {
        PushShared {
            kube,
            vault,
            metrics,
            controller_class,
            events,
            secret_stores,
            cluster_stores,
            memory: Mutex::new(HashMap::new()),
        }
    }
}

fn key(ps: &PushSecret) -> (String, String) {
    (ps.namespace().unwrap_or_default(), ps.name_any())
}

/// A failed step: the message goes to the status and a Warning event.
struct Failure {
    message: String,
    /// What is known pushed despite the failure (kept in the status for later deletion).
    synced: Option<SyncedPushSecrets>,
}

impl Failure {
    fn new(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            synced: None,
        }
    }
}

pub(crate) async fn reconcile(ps: Arc<PushSecret>, sh: Arc<PushShared>) -> Result<Action, Error> {
    let start = Instant::now();
    let (ns, name) = key(&ps);
    let out = reconcile_inner(&ps, &sh).await;
    sh.metrics
        .push_duration
        .with_label_values(&[&name, &ns])
        .set(start.elapsed().as_secs_f64() * 1000.0);
    out
}

async fn reconcile_inner(ps: &PushSecret, sh: &PushShared) -> Result<Action, Error> {
    let (ns, name) = key(ps);
    let delete_policy = ps.spec.deletion_policy == Some(PushSecretDeletionPolicy::Delete);
    let has_finalizer = ps.finalizers().iter().any(|f| f == PUSH_SECRET_FINALIZER);
    let old = ps
        .status
        .as_ref()
        .and_then(|s| s.synced_push_secrets.clone())
        .unwrap_or_default();

    if ps.meta().deletion_timestamp.is_some() {
        if !has_finalizer {
            return Ok(Action::await_change());
        }
        if delete_policy
            && let Err(left) = delete_entries(sh, ps, &old, &SyncedPushSecrets::new()).await
        {
            let f = Failure {
                message: format!("Failed to Delete Secrets from Provider: {}", left.message),
                synced: left.synced,
            };
            return failed(sh, ps, f).await;
        }
        set_finalizer(sh, ps, false).await?;
        return Ok(Action::await_change());
    }
    // The finalizer is there only while a deletion has something to do.
    if delete_policy != has_finalizer {
        set_finalizer(sh, ps, delete_policy).await?;
        if delete_policy {
            // The patch's watch event brings the next reconcile.
            return Ok(Action::await_change());
        }
    }

    let interval = match duration::parse(ps.spec.refresh_interval.as_deref().unwrap_or("1h")) {
        Ok(d) => d,
        Err(e) => return failed(sh, ps, Failure::new(format!("spec.refreshInterval: {e}"))).await,
    };
    let version = refresh::resource_version(
        ps.meta().generation,
        &meta_hash(Some(ps.labels()), Some(ps.annotations())),
    );
    let st = ps.status.as_ref();
    let source_changed = {
        let mut mem = sh.memory.lock();
        let m = mem.entry((ns.clone(), name.clone())).or_default();
        std::mem::take(&mut m.source_changed)
    };
    let now = Timestamp::now();
    match pd::due(
        st.and_then(|s| s.synced_resource_version.as_deref()),
        &version,
        st.and_then(|s| s.refresh_time.as_ref()).map(|t| t.0),
        interval,
    ) {
        Due::Now => {}
        _ if source_changed => {}
        // A refresh time already past is due now (the stored time has whole seconds, so the
        // requeue after a push always wakes a little after it).
        Due::At(t) if t <= now => {}
        Due::At(t) => {
            let wait = t.duration_since(now).unsigned_abs();
            return Ok(Action::requeue(wait.max(Duration::from_secs(1))));
        }
        Due::Never => return Ok(Action::await_change()),
    }

    match push(sh, ps, &old).await {
        Ok(synced) => {
            if delete_policy && let Err(left) = delete_entries(sh, ps, &old, &synced).await {
                let f = Failure {
                    message: format!("Failed to Delete Secrets from Provider: {}", left.message),
                    synced: left.synced,
                };
                return failed(sh, ps, f).await;
            }
            sh.memory
                .lock()
                .entry((ns.clone(), name.clone()))
                .or_default()
                .failures = 0;
            let msg = if ps.spec.update_policy == Some(PushSecretUpdatePolicy::IfNotExists) {
                pd::MSG_SYNCED_IF_NOT_EXISTS
            } else {
                pd::MSG_SYNCED
            };
            let mut new = ps.status.clone().unwrap_or_default();
            conditions::set(
                &mut new.conditions,
                status::ready(true, pd::REASON_SYNCED, msg, now),
            );
            new.synced_push_secrets = Some(synced);
            new.refresh_time = Some(Time(now));
            new.synced_resource_version = Some(version);
            write_status(sh, ps, &new).await?;
            sh.metrics.set_push_condition(&name, &ns, true);
            publish(sh, ps, EventType::Normal, pd::REASON_SYNCED, msg);
            Ok(if interval.is_zero() {
                Action::await_change()
            } else {
                Action::requeue(interval)
            })
        }
        Err(f) => failed(sh, ps, f).await,
    }
}

/// Marks the PushSecret Errored (keeping what is known pushed) and retries with backoff.
async fn failed(sh: &PushShared, ps: &PushSecret, f: Failure) -> Result<Action, Error> {
    let (ns, name) = key(ps);
    let mut new = ps.status.clone().unwrap_or_default();
    conditions::set(
        &mut new.conditions,
        status::ready(false, pd::REASON_ERRORED, &f.message, Timestamp::now()),
    );
    if let Some(s) = f.synced {
        new.synced_push_secrets = Some(s);
    }
    write_status(sh, ps, &new).await?;
    sh.metrics.set_push_condition(&name, &ns, false);
    publish(sh, ps, EventType::Warning, pd::REASON_ERRORED, &f.message);
    let failures = {
        let mut mem = sh.memory.lock();
        let m = mem.entry((ns, name)).or_default();
        m.failures = m.failures.saturating_add(1);
        m.failures
    };
    Ok(Action::requeue(refresh::backoff(failures)))
}

/// Pushes every entry to every store; the map of what was pushed.
async fn push(
    sh: &PushShared,
    ps: &PushSecret,
    old: &SyncedPushSecrets,
) -> Result<SyncedPushSecrets, Failure> {
    let (ns, _) = key(ps);
    let sources = source_secrets(sh, ps).await?;
    let stores = resolve_stores(sh, ps).await?;
    let entries = ps.spec.data.as_deref().unwrap_or_default();
    let if_not_exists = ps.spec.update_policy == Some(PushSecretUpdatePolicy::IfNotExists);
    let mut synced = SyncedPushSecrets::new();
    for (source, data) in &sources {
        let data = render(sh, ps, &ns, data).await.map_err(|e| {
            Failure::new(format!("could not render spec.template with {source}: {e}"))
        })?;
        for (store_key, handle) in &stores {
            let client = sh.vault.client(handle, &ns).await.map_err(|e| Failure {
                message: format!("could not get secrets client for store {store_key}: {e}"),
                synced: Some(merged(&synced, old)),
            })?;
            let cas_required = cas_required(handle);
            for entry in entries {
                let target = entry.match_.remote_ref.status_key();
                let fail = |e: String| Failure {
                    message: format!(
                        "set secret failed: could not write remote ref {target} to target secretstore {}: {e}",
                        store_key.split_once('/').map_or("", |s| s.1)
                    ),
                    synced: Some(merged(&synced, old)),
                };
                let value = pd::entry_value(&data, entry).map_err(&fail)?;
                let metadata = push_plan::parse_push_metadata(entry.metadata.as_ref())
                    .map_err(|e| fail(format!("data[].metadata: {e}")))?;
                let remote_key = &entry.match_.remote_ref.remote_key;
                let remote = client
                    .read_for_push(remote_key)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                let input = PushInput {
                    version: client.kv_version(),
                    value: &value,
                    property: entry.match_.remote_ref.property.as_deref(),
                    cas_required,
                    if_not_exists,
                    metadata: metadata.as_ref(),
                };
                let plan = push_plan::plan_push(input, &remote).map_err(|e| match e {
                    PushRefusal::NotManaged => fail(format!(
                        "secret {remote_key:?} is not managed by external-secrets: it exists in Vault without custom_metadata managed-by=external-secrets, and is never overwritten"
                    )),
                    PushRefusal::Invalid(m) => fail(m),
                })?;
                client
                    .apply_push(remote_key, &plan)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                synced
                    .entry(store_key.clone())
                    .or_default()
                    .insert(target, entry.clone());
            }
        }
    }
    Ok(synced)
}

/// ESO's `mergeSecretState`: the new map, plus what the old one has besides.
fn merged(new: &SyncedPushSecrets, old: &SyncedPushSecrets) -> SyncedPushSecrets {
    let mut out = new.clone();
    for (store, entries) in old {
        let to = out.entry(store.clone()).or_default();
        for (k, v) in entries {
            to.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    out
}

fn cas_required(handle: &StoreHandle) -> bool {
    handle
        .spec
        .provider
        .vault
        .as_ref()
        .and_then(|v| v.check_and_set.as_ref())
        .and_then(|c| c.required)
        == Some(true)
}

/// Removes what `old` pushed and `new` no longer does (deletionPolicy Delete), where Vault
/// still holds it as ours. On failure, the status map of what is still pushed.
async fn delete_entries(
    sh: &PushShared,
    ps: &PushSecret,
    old: &SyncedPushSecrets,
    new: &SyncedPushSecrets,
) -> Result<(), Failure> {
    let (ns, _) = key(ps);
    let mut left = merged(new, old);
    let mut by_store: BTreeMap<String, Vec<(String, PushSecretData)>> = BTreeMap::new();
    for (store, k, data) in pd::removed(old, new) {
        by_store.entry(store).or_default().push((k, data));
    }
    for (store_key, entries) in by_store {
        let handle = store_by_key(sh, &ns, &store_key)
            .await
            .map_err(|m| Failure {
                message: m,
                synced: Some(left.clone()),
            })?;
        let client = sh.vault.client(&handle, &ns).await.map_err(|e| Failure {
            message: format!("could not get secrets client for store {store_key}: {e}"),
            synced: Some(left.clone()),
        })?;
        for (k, data) in entries {
            let r = &data.match_.remote_ref;
            let result = async {
                let remote = client.read_for_push(&r.remote_key).await?;
                let plan = push_plan::plan_delete(
                    client.kv_version(),
                    &remote,
                    r.property.as_deref(),
                    cas_required(&handle),
                );
                client.apply_delete(&r.remote_key, &plan).await
            }
            .await;
            if let Err(e) = result {
                return Err(Failure {
                    message: format!("could not delete secret {}: {e}", r.remote_key),
                    synced: Some(left),
                });
            }
            if let Some(m) = left.get_mut(&store_key) {
                m.remove(&k);
                if m.is_empty() {
                    left.remove(&store_key);
                }
            }
        }
    }
    Ok(())
}

/// The source Secrets' data: the one named, or every one the label selector matches.
async fn source_secrets(
    sh: &PushShared,
    ps: &PushSecret,
) -> Result<Vec<(String, BTreeMap<String, Vec<u8>>)>, Failure> {
    let (ns, _) = key(ps);
    let api: Api<Secret> = Api::namespaced(sh.kube.clone(), &ns);
    let data = |s: Secret| -> BTreeMap<String, Vec<u8>> {
        s.data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect()
    };
    let sel = &ps.spec.selector;
    if let Some(g) = &sel.generator_ref {
        return super::push_generator::generated(&sh.kube, &sh.vault, &ns, g)
            .await
            .map(|made| vec![made])
            .map_err(Failure::new);
    }
    let Some(secret) = &sel.secret else {
        return Err(Failure::new("spec.selector.secret is not set"));
    };
    if let Some(name) = secret.name.as_deref().filter(|n| !n.is_empty()) {
        return match api.get_opt(name).await {
            Ok(Some(s)) => Ok(vec![(format!("Secret {ns}/{name}"), data(s))]),
            Ok(None) => Err(Failure::new(format!(
                "{}: Secret {ns}/{name} not found",
                pd::MSG_NO_SOURCE
            ))),
            Err(e) => Err(Failure::new(format!("{}: {e}", pd::MSG_NO_SOURCE))),
        };
    }
    let Some(ls) = &secret.selector else {
        return Err(Failure::new(
            "spec.selector.secret needs a name or a selector",
        ));
    };
    let text = label_selector_text(ls).map_err(Failure::new)?;
    let list = api
        .list(&ListParams::default().labels(&text))
        .await
        .map_err(|e| Failure::new(format!("{}: {e}", pd::MSG_NO_SOURCE)))?;
    Ok(list
        .items
        .into_iter()
        .map(|s| (format!("Secret {ns}/{}", s.name_any()), data(s)))
        .collect())
}

/// A label selector as the API's query text.
fn label_selector_text(
    ls: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
) -> Result<String, String> {
    let mut parts: Vec<String> = ls
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in ls.match_expressions.iter().flatten() {
        let vals = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({vals})", e.key),
            "NotIn" => format!("{} notin ({vals})", e.key),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            other => return Err(format!("unknown label selector operator {other:?}")),
        });
    }
    Ok(parts.join(","))
}

/// Applies `spec.template` (the ExternalSecret engine) to the source data.
async fn render(
    sh: &PushShared,
    ps: &PushSecret,
    ns: &str,
    data: &BTreeMap<String, Vec<u8>>,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let Some(tpl) = &ps.spec.template else {
        return Ok(data.clone());
    };
    let sources = template_sources(sh, ns, tpl).await?;
    crate::template::render_target(tpl, data, &sources)
        .map(|r| r.data)
        .map_err(|e| e.to_string())
}

/// The ConfigMaps and Secrets `templateFrom` names, from the PushSecret's own namespace.
async fn template_sources(
    sh: &PushShared,
    ns: &str,
    tpl: &crate::api::ExternalSecretTemplate,
) -> Result<crate::template::TemplateSources, String> {
    use k8s_openapi::api::core::v1::ConfigMap;
    let (config_maps, secrets) = crate::template::source_names(tpl);
    let mut sources = crate::template::TemplateSources::default();
    let cms: Api<ConfigMap> = Api::namespaced(sh.kube.clone(), ns);
    for name in config_maps {
        let cm = cms
            .get_opt(&name)
            .await
            .map_err(|e| format!("could not read template ConfigMap {ns}/{name}: {e}"))?
            .ok_or_else(|| format!("template ConfigMap {ns}/{name} does not exist"))?;
        sources
            .config_maps
            .insert(name, cm.data.unwrap_or_default());
    }
    let api: Api<Secret> = Api::namespaced(sh.kube.clone(), ns);
    for name in secrets {
        let s = api
            .get_opt(&name)
            .await
            .map_err(|e| format!("could not read template Secret {ns}/{name}: {e}"))?
            .ok_or_else(|| format!("template Secret {ns}/{name} does not exist"))?;
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

/// The stores `secretStoreRefs` names or selects, ours (controller class), usable from the
/// PushSecret's namespace; keyed as in `status.syncedPushSecrets`.
async fn resolve_stores(
    sh: &PushShared,
    ps: &PushSecret,
) -> Result<Vec<(String, StoreHandle)>, Failure> {
    let (ns, _) = key(ps);
    let mut out: Vec<(String, StoreHandle)> = vec![];
    let mut seen = HashSet::new();
    for (i, r) in ps.spec.secret_store_refs.iter().enumerate() {
        let kind = r.kind.unwrap_or_default();
        let handles = if let Some(name) = r.name.as_deref().filter(|n| !n.is_empty()) {
            vec![
                store_by_key(sh, &ns, &pd::store_key(kind, name))
                    .await
                    .map_err(Failure::new)?,
            ]
        } else if let Some(ls) = &r.label_selector {
            let matches = |labels: &BTreeMap<String, String>| {
                selector::selector_matches(ls, labels).map_err(|e| {
                    Failure::new(format!("spec.secretStoreRefs[{i}].labelSelector: {e}"))
                })
            };
            let mut hs = vec![];
            match kind {
                PushSecretStoreKind::SecretStore => {
                    for s in sh.secret_stores.state() {
                        if s.namespace().as_deref() == Some(&ns) && matches(s.labels())? {
                            hs.push(handle_of_ss(&s));
                        }
                    }
                }
                PushSecretStoreKind::ClusterSecretStore => {
                    for s in sh.cluster_stores.state() {
                        if matches(s.labels())? {
                            hs.push(handle_of_css(&s));
                        }
                    }
                }
            }
            hs
        } else {
            return Err(Failure::new(format!(
                "spec.secretStoreRefs[{i}] needs a name or a labelSelector"
            )));
        };
        for h in handles {
            if !class_matches(h.spec.controller.as_deref(), &sh.controller_class) {
                continue;
            }
            let k = pd::store_key(kind, &h.name);
            if seen.insert(k.clone()) {
                if kind == PushSecretStoreKind::ClusterSecretStore {
                    namespace_allowed(sh, &h, &ns).await?;
                }
                out.push((k, h));
            }
        }
    }
    Ok(out)
}

fn handle_of_ss(s: &SecretStore) -> StoreHandle {
    let mut h = StoreHandle::from_secret_store(s);
    stable_identity(&mut h, s.meta());
    h
}

fn handle_of_css(s: &ClusterSecretStore) -> StoreHandle {
    let mut h = StoreHandle::from_cluster_store(s);
    stable_identity(&mut h, s.meta());
    h
}

/// A store by its status key, from the cache or (the watch may lag) the API server.
async fn store_by_key(sh: &PushShared, ns: &str, store_key: &str) -> Result<StoreHandle, String> {
    let Some((kind, name)) = pd::parse_store_key(store_key) else {
        return Err(format!("unknown store {store_key:?}"));
    };
    let not_found = || match kind {
        PushSecretStoreKind::SecretStore => {
            format!("could not get SecretStore {name:?}, SecretStore {ns}/{name} not found")
        }
        PushSecretStoreKind::ClusterSecretStore => {
            format!(
                "could not get ClusterSecretStore {name:?}, ClusterSecretStore {name} not found"
            )
        }
    };
    let found = match kind {
        PushSecretStoreKind::SecretStore => {
            match sh.secret_stores.get(&ObjectRef::new(name).within(ns)) {
                Some(s) => Some(handle_of_ss(&s)),
                None => Api::<SecretStore>::namespaced(sh.kube.clone(), ns)
                    .get_opt(name)
                    .await
                    .map_err(|e| format!("could not get SecretStore {name:?}, {e}"))?
                    .map(|s| handle_of_ss(&s)),
            }
        }
        PushSecretStoreKind::ClusterSecretStore => {
            match sh.cluster_stores.get(&ObjectRef::new(name)) {
                Some(s) => Some(handle_of_css(&s)),
                None => Api::<ClusterSecretStore>::all(sh.kube.clone())
                    .get_opt(name)
                    .await
                    .map_err(|e| format!("could not get ClusterSecretStore {name:?}, {e}"))?
                    .map(|s| handle_of_css(&s)),
            }
        }
    };
    found.ok_or_else(not_found)
}

/// A ClusterSecretStore's `conditions` allow the namespace.
async fn namespace_allowed(sh: &PushShared, h: &StoreHandle, ns: &str) -> Result<(), Failure> {
    let Some(conds) = h.spec.conditions.as_deref().filter(|c| !c.is_empty()) else {
        return Ok(());
    };
    let labels = if conds.iter().any(|c| c.namespace_selector.is_some()) {
        Api::<Namespace>::all(sh.kube.clone())
            .get_opt(ns)
            .await
            .map_err(|e| Failure::new(format!("could not read namespace {ns:?}: {e}")))?
            .map(|n| n.labels().clone())
            .unwrap_or_default()
    } else {
        BTreeMap::new()
    };
    match selector::namespace_allowed(Some(conds), ns, &labels) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Failure::new(selector::denied_message(&h.name, ns))),
        Err(e) => Err(Failure::new(format!(
            "ClusterSecretStore {} has invalid conditions: {e}",
            h.name
        ))),
    }
}

async fn set_finalizer(sh: &PushShared, ps: &PushSecret, want: bool) -> Result<(), Error> {
    let (ns, name) = key(ps);
    let mut new: Vec<String> = ps
        .finalizers()
        .iter()
        .filter(|f| *f != PUSH_SECRET_FINALIZER)
        .cloned()
        .collect();
    if want {
        new.push(PUSH_SECRET_FINALIZER.into());
    }
    let api: Api<PushSecret> = Api::namespaced(sh.kube.clone(), &ns);
    // The test makes a concurrent change to the list a conflict rather than a lost update.
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": ps.resource_version()},
        {"op": "add", "path": "/metadata/finalizers", "value": new},
    ]))
    .expect("well-formed patch");
    match api
        .patch(&name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
    {
        Ok(_) => Ok(()),
        // Gone already: nothing left to hold.
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn write_status(
    sh: &PushShared,
    ps: &PushSecret,
    new: &PushSecretStatus,
) -> Result<(), Error> {
    if !status::differs(ps.status.as_ref(), new) {
        return Ok(());
    }
    let (ns, name) = key(ps);
    let api: Api<PushSecret> = Api::namespaced(sh.kube.clone(), &ns);
    // Replaced as a whole: a merge patch would keep entries of syncedPushSecrets that are gone.
    let patch: json_patch::Patch =
        serde_json::from_value(json!([{"op": "add", "path": "/status", "value": new}]))
            .expect("well-formed patch");
    match api
        .patch_status(&name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn publish(sh: &PushShared, ps: &PushSecret, type_: EventType, reason: &str, note: &str) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(crate::text::clip(note, 1000)),
        action: "Push".into(),
        secondary: None,
    };
    sh.events.send(ev, ps.object_ref(&()));
}

pub(crate) fn error_policy(ps: Arc<PushSecret>, err: &Error, sh: Arc<PushShared>) -> Action {
    let (ns, name) = key(&ps);
    let failures = {
        let mut mem = sh.memory.lock();
        let m = mem.entry((ns.clone(), name.clone())).or_default();
        m.failures = m.failures.saturating_add(1);
        m.failures
    };
    let delay = refresh::backoff(failures);
    tracing::warn!(pushsecret = %format!("{ns}/{name}"), error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// The PushSecrets whose source is this Secret (by name or label selector); each is marked so
/// that its next reconcile pushes even when no refresh is due.
fn pushers_of(
    sh: &PushShared,
    reader: &Store<PushSecret>,
    s: &PartialObjectMeta<Secret>,
) -> Vec<ObjectRef<PushSecret>> {
    let ns = s.namespace();
    let name = s.name_any();
    let labels = s.labels();
    let mut out = vec![];
    for ps in reader.state() {
        if ps.namespace() != ns {
            continue;
        }
        let Some(src) = &ps.spec.selector.secret else {
            continue;
        };
        let hit = match (&src.name, &src.selector) {
            (Some(n), _) if !n.is_empty() => *n == name,
            (_, Some(sel)) => selector::selector_matches(sel, labels).unwrap_or(false),
            _ => false,
        };
        if hit {
            out.push(ObjectRef::from_obj(&*ps));
        }
    }
    let mut mem = sh.memory.lock();
    for r in &out {
        mem.entry((r.namespace.clone().unwrap_or_default(), r.name.clone()))
            .or_default()
            .source_changed = true;
    }
    out
}

/// Forgets a deleted PushSecret's memory and metric series.
pub(crate) fn forget(sh: &PushShared, ps: &PushSecret) {
    let (ns, name) = key(ps);
    sh.memory.lock().remove(&(ns.clone(), name.clone()));
    sh.metrics.forget_push(&name, &ns);
}

pub(crate) async fn run(
    sh: Arc<PushShared>,
    reader: Store<PushSecret>,
    stream: impl Stream<Item = Result<PushSecret, watcher::Error>> + Send + 'static,
    secrets: impl Stream<Item = Result<PartialObjectMeta<Secret>, watcher::Error>> + Send + 'static,
    concurrency: u16,
    stop: tokio_util::sync::CancellationToken,
) {
    use kube::runtime::Controller;
    let for_secrets = (sh.clone(), reader.clone());
    let controller = Controller::for_stream(stream, reader.clone())
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .watches_stream(secrets, move |s| {
            pushers_of(&for_secrets.0, &for_secrets.1, &s)
        })
        .graceful_shutdown_on(stop.clone().cancelled_owned())
        .run(|ps, sh| Box::pin(reconcile(ps, sh)), error_policy, sh)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "pushsecret controller");
            }
        });
    super::until_stopped(controller, &reader, &stop).await;
}
