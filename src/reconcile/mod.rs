//! The reconciler: keeps each ExternalSecret's target Secret in sync with Vault, each
//! SecretStore / ClusterSecretStore's status with what Vault says about its credentials, and
//! pushes each PushSecret's Secret into Vault.
//!
//! The decisions are plain functions ([`desired`], [`refresh`], [`hash`], [`status`]); the
//! controllers around them only read, call and write.

pub mod ces_plan;
mod changes;
mod cluster_external_secret;
pub mod cluster_push_secret;
pub mod desired;
mod events;
mod external_secret;
pub mod hash;
pub mod leader;
pub mod push_desired;
mod push_generator;
mod push_secret;
pub mod refresh;
mod refresh_queue;
mod secret_versions;
pub mod status;
mod store;
pub mod sync_window;
mod wire;

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

pub use external_secret::class_matches;
pub use store::{is_referent, refresh_interval};

use crate::api::{
    ClusterExternalSecret, ClusterPushSecret, ClusterSecretStore, ExternalSecret, LABEL_MANAGED,
    PushSecret, SecretStore,
};
use crate::metrics::Metrics;
use crate::vault::VaultClients;

/// How the reconciler runs (from the command line).
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Only ExternalSecrets and SecretStores in this namespace (ClusterSecretStores are still
    /// read cluster-wide).
    pub namespace: Option<String>,
    /// Only stores whose `spec.controller` is empty or equal to this.
    pub controller_class: String,
    pub leader_elect: bool,
    pub lease_name: String,
    pub lease_namespace: String,
    /// This replica's name in the Lease and in events.
    pub identity: String,
    /// ExternalSecrets reconciled at once.
    pub concurrency: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// What every reconcile shares.
pub(crate) struct Shared {
    kube: kube::Client,
    vault: VaultClients,
    metrics: Metrics,
    cfg: ControllerConfig,
    /// Events go out through a queue written in the background (see [`events::deliver`]).
    events: events::Sender,
    secret_stores: Store<SecretStore>,
    cluster_stores: Store<ClusterSecretStore>,
    /// The resourceVersions of the Secrets we manage.
    secret_versions: Arc<secret_versions::SecretVersions>,
    es_memory: external_secret::Memories,
    /// Which ExternalSecrets write which Secret.
    targets: external_secret::TargetIndex,
    store_failures: store::StoreFailures,
    generators: external_secret::GeneratorStores,
    /// Scheduled refreshes, handed to the controller as it has room (see [`refresh_queue`]).
    refreshes: Arc<refresh_queue::RefreshQueue>,
}

/// Runs until `shutdown` is cancelled; returns after in-flight work finished and the Lease is
/// released.
pub async fn run(
    kube: kube::Client,
    vault: VaultClients,
    metrics: Metrics,
    cfg: ControllerConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if !cfg.leader_elect {
        let never = CancellationToken::new();
        run_controllers(&kube, &vault, &metrics, &cfg, shutdown.clone(), never).await;
        return Ok(());
    }
    let elector = leader::LeaderElector::new(
        kube.clone(),
        &cfg.lease_namespace,
        &cfg.lease_name,
        &cfg.identity,
        leader::Timing::default(),
    );
    loop {
        if !elector.acquire(&shutdown).await {
            return Ok(());
        }
        let soft = shutdown.child_token();
        let hard = CancellationToken::new();
        let controllers = async {
            run_controllers(&kube, &vault, &metrics, &cfg, soft.clone(), hard.clone()).await;
            // Should the controllers end on their own, stop renewing too.
            soft.cancel();
        };
        let (stopped, ()) = tokio::join!(elector.keep(&shutdown, &soft, &hard), controllers);
        if stopped == leader::Stopped::Shutdown || shutdown.is_cancelled() {
            elector.release().await;
            return Ok(());
        }
        tracing::warn!("leadership lost; waiting to be elected again");
    }
}

/// Drives a kube-runtime controller until `stop`, then until its in-flight reconciles finish.
///
/// kube-runtime holds a controller's reconciles until its cache has the first list, and its
/// graceful shutdown stops the watch that would bring that list: stopped before the list arrived
/// (an API server slow or unreachable at start, a list refused by RBAC) the controller would wait
/// forever, and the pod would sit in Terminating until killed. No reconcile can have started by
/// then, so the controller is dropped instead.
pub(crate) async fn until_stopped<K>(
    controller: impl std::future::Future<Output = ()>,
    reader: &Store<K>,
    stop: &CancellationToken,
) where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    use futures::FutureExt;
    let mut controller = std::pin::pin!(controller);
    tokio::select! {
        () = &mut controller => return,
        () = stop.cancelled() => {}
    }
    if reader.wait_until_ready().now_or_never().is_none() {
        tracing::debug!("stopped before the first list: no reconcile to wait for");
        return;
    }
    controller.await
}

/// A reflected watch: the cache reader and the stream of touched objects that feeds it, with
/// `on_delete` called for objects that went away. Nothing reads who last wrote which field of
/// these objects, and at 10,000 ExternalSecrets those entries were a third of the cache: they
/// are dropped before the object is cached.
fn reflected<K>(
    api: Api<K>,
    wc: watcher::Config,
    on_delete: impl Fn(&K) + Send + 'static,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    reflected_with(
        api,
        wc,
        |mut o: K| {
            o.meta_mut().managed_fields = None;
            o
        },
        |_| {},
        on_delete,
    )
}

/// [`reflected`], with the watch reading `W` (see [`wire`]) and `keep` making of each what the
/// cache keeps, and `on_apply` called for every object added or changed.
fn reflected_with<W, K>(
    api: Api<W>,
    wc: watcher::Config,
    mut keep: impl FnMut(W) -> K + Send + 'static,
    on_apply: impl Fn(&K) + Send + 'static,
    on_delete: impl Fn(&K) + Send + 'static,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    W: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K: Resource<DynamicType = ()> + Clone + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, wc)
        .default_backoff()
        .map_ok(move |ev| map_event(ev, &mut keep))
        .reflect(writer)
        .inspect(move |ev| match ev {
            Ok(watcher::Event::Delete(obj)) => on_delete(obj),
            Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => on_apply(obj),
            _ => {}
        })
        .touched_objects();
    (reader, stream)
}

/// A watch event with its object (if any) made into another type.
fn map_event<W, K>(ev: watcher::Event<W>, mut f: impl FnMut(W) -> K) -> watcher::Event<K> {
    use watcher::Event;
    match ev {
        Event::Apply(o) => Event::Apply(f(o)),
        Event::Delete(o) => Event::Delete(f(o)),
        Event::Init => Event::Init,
        Event::InitApply(o) => Event::InitApply(f(o)),
        Event::InitDone => Event::InitDone,
    }
}

/// An ExternalSecret as cached: without its managedFields (the watch does not read them: see
/// [`wire`]), and with its lists no longer than they are. Read from a stream, a list has no
/// known length and grows to room for four: `data`'s one entry took 800 bytes and the one
/// condition 500, a third of the cached object.
pub(crate) fn slim_external_secret(es: &mut ExternalSecret) {
    fn fit<T>(list: &mut Option<Vec<T>>) {
        if let Some(l) = list {
            l.shrink_to_fit();
        }
    }
    fit(&mut es.metadata.finalizers);
    fit(&mut es.metadata.owner_references);
    fit(&mut es.spec.data);
    fit(&mut es.spec.data_from);
    if let Some(st) = &mut es.status {
        st.conditions.shrink_to_fit();
    }
}

fn scoped<K>(client: &kube::Client, ns: Option<&str>) -> Api<K>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the controllers until `soft` is cancelled (then they finish what is in flight),
/// or until `hard` is cancelled (then whatever still runs is abandoned).
async fn run_controllers(
    kube: &kube::Client,
    vault: &VaultClients,
    metrics: &Metrics,
    cfg: &ControllerConfig,
    soft: CancellationToken,
    hard: CancellationToken,
) {
    let ns = cfg.namespace.as_deref();
    let shared_cell: Arc<std::sync::OnceLock<Arc<Shared>>> = Arc::default();
    let on_es_delete = {
        let cell = shared_cell.clone();
        move |es: &ExternalSecret| {
            if let Some(sh) = cell.get() {
                external_secret::forget(sh, es);
            }
        }
    };
    let on_ss_delete = {
        let cell = shared_cell.clone();
        move |s: &SecretStore| {
            if let Some(sh) = cell.get() {
                store::forget(sh, s);
            }
        }
    };
    let on_css_delete = {
        let cell = shared_cell.clone();
        move |s: &ClusterSecretStore| {
            if let Some(sh) = cell.get() {
                store::forget(sh, s);
            }
        }
    };
    let wc = watcher::Config::default;
    // ClusterExternalSecrets are cluster-wide: their controller runs only when the reconciler
    // is. It hears of deleted ExternalSecrets that one of them controlled, to put them back.
    let ces_enabled = ns.is_none();
    let (es_deleted_tx, es_deleted_rx) = futures::channel::mpsc::unbounded::<ExternalSecret>();
    let on_es_delete = move |es: &ExternalSecret| {
        on_es_delete(es);
        if ces_enabled && cluster_external_secret::controlled_by_a_ces(es) {
            let _ = es_deleted_tx.unbounded_send(es.clone());
        }
    };
    // Which ExternalSecrets write which Secret, so that a Secret event finds them without
    // scanning every ExternalSecret (that made a 10k-object sync quadratic).
    let targets = external_secret::TargetIndex::default();
    let (es_reader, es_stream) = {
        let (on_apply, on_delete) = (targets.clone(), targets.clone());
        reflected_with(
            scoped::<wire::WatchedExternalSecret>(kube, ns),
            wc(),
            |w| {
                let mut es = ExternalSecret::from(w);
                slim_external_secret(&mut es);
                es
            },
            move |es| on_apply.insert(es),
            move |es| {
                on_delete.remove(es);
                on_es_delete(es);
            },
        )
    };
    // Our own status writes come back as watch events; they change nothing a reconcile
    // decides on (the cache keeps the new status for the next one), so they do not trigger.
    let es_stream = changes::changed_only(es_stream, external_secret::trigger_hash);
    // The ExternalSecret controller's own view of the stores (read during syncs; store changes
    // re-trigger the ExternalSecrets that use them).
    let (ss_reader, ss_trigger) = reflected(scoped::<SecretStore>(kube, ns), wc(), |_| {});
    let (css_reader, css_trigger) =
        reflected(Api::<ClusterSecretStore>::all(kube.clone()), wc(), |_| {});
    // The generators ExternalSecrets name: read during syncs; a change re-syncs their users.
    // Only changes of the spec (generation) trigger.
    fn gen_watch<K>(api: Api<K>) -> (Store<K>, external_secret::WatchStream<K>)
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let (reader, stream) = reflected(api, watcher::Config::default(), |_| {});
        let stream = changes::changed_only(stream, kube::runtime::predicates::generation);
        (reader, stream.boxed())
    }
    let (passwords, passwords_s) = gen_watch(scoped(kube, ns));
    let (uuids, uuids_s) = gen_watch(scoped(kube, ns));
    let (sshkeys, sshkeys_s) = gen_watch(scoped(kube, ns));
    let (vds, vds_s) = gen_watch(scoped(kube, ns));
    let (cgs, cgs_s) = gen_watch(Api::all(kube.clone()));
    let generators = external_secret::GeneratorStores {
        passwords,
        uuids,
        sshkeys,
        vault: vds,
        cluster: cgs,
    };
    let gen_streams = external_secret::GeneratorStreams {
        passwords: passwords_s,
        uuids: uuids_s,
        sshkeys: sshkeys_s,
        vault: vds_s,
        cluster: cgs_s,
    };
    // The store controllers' watches.
    let (ss_ctrl_reader, ss_ctrl_stream) =
        reflected(scoped::<SecretStore>(kube, ns), wc(), on_ss_delete);
    let (css_ctrl_reader, css_ctrl_stream) = reflected(
        Api::<ClusterSecretStore>::all(kube.clone()),
        wc(),
        on_css_delete,
    );
    // Only Secrets we manage, and of them only the resourceVersion is kept (see
    // [`secret_versions`]): memory does not grow with every Secret in the cluster. Data is read
    // with a GET when an ExternalSecret needs a sync; the cached resourceVersion tells a
    // reconcile that nobody touched the Secret since our last write.
    let secret_versions = Arc::new(secret_versions::SecretVersions::default());
    let secrets = {
        let (versions, cell) = (secret_versions.clone(), shared_cell.clone());
        watcher(
            scoped::<wire::WatchedSecretMeta>(kube, ns),
            wc().labels(&format!("{LABEL_MANAGED}=true")),
        )
        .default_backoff()
        .map_ok(|ev| map_event(ev, PartialObjectMeta::from))
        .inspect(move |ev| {
            let Ok(ev) = ev else { return };
            versions.apply(ev);
            if let (watcher::Event::Delete(s), Some(sh)) = (ev, cell.get()) {
                external_secret::secret_deleted(sh, s);
            }
        })
        .touched_objects()
    };

    let recorder = events::Recorder::new(kube.clone(), "vaultgate", Some(&cfg.identity));
    let (events_tx, events_rx) = events::queue();

    // PushSecrets, and the metadata of every Secret (a source Secret's change pushes at once).
    let push_cell: Arc<std::sync::OnceLock<Arc<push_secret::PushShared>>> = Arc::default();
    let (ps_reader, ps_stream) = {
        let cell = push_cell.clone();
        reflected(scoped::<PushSecret>(kube, ns), wc(), move |ps| {
            if let Some(sh) = cell.get() {
                push_secret::forget(sh, ps);
            }
        })
    };
    let source_secrets = watcher(scoped::<wire::WatchedSecretMeta>(kube, ns), wc())
        .default_backoff()
        .touched_objects()
        .map_ok(PartialObjectMeta::<Secret>::from);
    let push_sh = Arc::new(push_secret::PushShared::new(
        kube.clone(),
        vault.clone(),
        metrics.clone(),
        cfg.controller_class.clone(),
        events_tx.clone(),
        ss_reader.clone(),
        css_reader.clone(),
    ));
    let _ = push_cell.set(push_sh.clone());
    // ClusterPushSecrets and the namespaces they select (cluster-wide only: a controller
    // limited to one namespace does not create PushSecrets in others).
    let cluster_push = ns.is_none().then(|| {
        let (nss_reader, nss_stream) = reflected(Api::<Namespace>::all(kube.clone()), wc(), |_| {});
        let (cps_reader, cps_stream) =
            reflected(Api::<ClusterPushSecret>::all(kube.clone()), wc(), |_| {});
        let sh = Arc::new(cluster_push_secret::CpsShared {
            kube: kube.clone(),
            metrics: metrics.clone(),
            events: events_tx.clone(),
            namespaces: nss_reader,
        });
        cluster_push_secret::run(sh, cps_reader, cps_stream, nss_stream, soft.clone())
    });
    let sh = Arc::new(Shared {
        kube: kube.clone(),
        vault: vault.clone(),
        metrics: metrics.clone(),
        cfg: cfg.clone(),
        events: events_tx,
        secret_stores: ss_reader,
        cluster_stores: css_reader,
        secret_versions,
        es_memory: Mutex::new(HashMap::new()),
        targets,
        store_failures: Mutex::new(HashMap::new()),
        generators,
        refreshes: refresh_queue::RefreshQueue::new(
            usize::from(cfg.concurrency),
            metrics.refresh_lag.clone(),
        ),
    });
    let _ = shared_cell.set(sh.clone());
    let ces_controller = {
        let es_reader = es_reader.clone();
        let kube = kube.clone();
        let soft = soft.clone();
        let sh = sh.clone();
        async move {
            if !ces_enabled {
                return;
            }
            let (ns_reader, ns_stream) = reflected(
                Api::<k8s_openapi::api::core::v1::Namespace>::all(kube.clone()),
                wc(),
                |_| {},
            );
            let (ces_reader, ces_stream) = reflected(
                Api::<ClusterExternalSecret>::all(kube.clone()),
                wc(),
                |_| {},
            );
            let cx = Arc::new(cluster_external_secret::Ctx {
                sh,
                external_secrets: es_reader,
                namespaces: ns_reader,
            });
            let es_deleted = es_deleted_rx.map(Ok::<_, watcher::Error>);
            cluster_external_secret::run(cx, ces_reader, ces_stream, ns_stream, es_deleted, soft)
                .await;
        }
    };

    // Each controller in a task of its own: joined in one task, a wake-up of any of them
    // polled all of them (their watches, queues and shutdown signals).
    let mut controllers = tokio::task::JoinSet::new();
    controllers.spawn(external_secret::run(
        sh.clone(),
        es_reader,
        es_stream,
        secrets,
        ss_trigger,
        css_trigger,
        gen_streams,
        soft.clone(),
    ));
    controllers.spawn(store::run(
        sh.clone(),
        ss_ctrl_reader,
        ss_ctrl_stream,
        soft.clone(),
    ));
    controllers.spawn(store::run(
        sh.clone(),
        css_ctrl_reader,
        css_ctrl_stream,
        soft.clone(),
    ));
    controllers.spawn(push_secret::run(
        push_sh,
        ps_reader,
        ps_stream,
        source_secrets,
        cfg.concurrency,
        soft.clone(),
    ));
    if let Some(c) = cluster_push {
        controllers.spawn(c);
    }
    controllers.spawn(ces_controller);
    // Events still queued when the controllers stop are written before returning.
    let controllers_done = CancellationToken::new();
    let all = async {
        tokio::join!(
            async {
                while let Some(done) = controllers.join_next().await {
                    // A controller that panicked panics here, as when they shared one task.
                    if let Err(e) = done
                        && e.is_panic()
                    {
                        std::panic::resume_unwind(e.into_panic());
                    }
                }
                controllers_done.cancel();
            },
            events::deliver(&recorder, events_rx, controllers_done.clone()),
        );
    };
    tokio::select! {
        _ = all => {}
        _ = hard.cancelled() => tracing::warn!("abandoning in-flight reconciles: the lease may be held by another replica"),
    }
    // Abandoned ones are gone, their reconciles with them, before another election.
    controllers.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_external_secret_keeps_its_content_in_lists_that_fit() {
        let json = serde_json::json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": {"name": "app", "namespace": "team", "finalizers": ["f"],
                "managedFields": [{"manager": "m", "operation": "Update"}]},
            "spec": {
                "secretStoreRef": {"kind": "SecretStore", "name": "vault"},
                "data": [{"secretKey": "k", "remoteRef": {"key": "a/b", "property": "p"}}],
                "dataFrom": [{"extract": {"key": "a/c"}}]
            },
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "SecretSynced"}]}
        });
        // Read from text, as a watch reads it: the lists have room to spare.
        let w: wire::WatchedExternalSecret = serde_json::from_str(&json.to_string()).unwrap();
        let mut es = ExternalSecret::from(w);
        assert!(es.spec.data.as_ref().unwrap().capacity() > 1);
        let before = serde_json::to_value(&es).unwrap();
        slim_external_secret(&mut es);
        let spec = &es.spec;
        assert_eq!(spec.data.as_ref().unwrap().capacity(), 1);
        assert_eq!(spec.data_from.as_ref().unwrap().capacity(), 1);
        assert_eq!(es.status.as_ref().unwrap().conditions.capacity(), 1);
        assert_eq!(es.metadata.finalizers.as_ref().unwrap().capacity(), 1);
        assert!(es.metadata.managed_fields.is_none());
        // Everything else is as read.
        assert_eq!(serde_json::to_value(&es).unwrap(), before);
    }
}
