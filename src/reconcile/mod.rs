//! The reconciler: keeps each ExternalSecret's target Secret in sync with Vault, and each
//! SecretStore / ClusterSecretStore's status with what Vault says about its credentials.
//!
//! The decisions are plain functions ([`desired`], [`refresh`], [`hash`], [`status`]); the
//! controllers around them only read, call and write.

pub mod desired;
mod events;
mod external_secret;
pub mod hash;
pub mod leader;
pub mod refresh;
pub mod status;
mod store;

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

pub use external_secret::class_matches;
pub use store::{is_referent, refresh_interval};

use crate::api::{ClusterSecretStore, ExternalSecret, LABEL_MANAGED, SecretStore};
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
    /// Metadata of the Secrets we manage.
    secret_meta: Store<PartialObjectMeta<Secret>>,
    es_memory: external_secret::Memories,
    /// Which ExternalSecrets write which Secret.
    targets: external_secret::TargetIndex,
    store_failures: store::StoreFailures,
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
/// `on_delete` called for objects that went away.
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
    reflected_with(api, wc, |_| {}, on_delete)
}

/// [`reflected`], also calling `on_apply` for every object added or changed.
fn reflected_with<K>(
    api: Api<K>,
    wc: watcher::Config,
    on_apply: impl Fn(&K) + Send + 'static,
    on_delete: impl Fn(&K) + Send + 'static,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, wc)
        .default_backoff()
        // Nothing reads who last wrote which field of these objects, and at 10,000
        // ExternalSecrets those entries were a third of the cache.
        .modify(|o| o.meta_mut().managed_fields = None)
        .reflect(writer)
        .inspect(move |ev| match ev {
            Ok(watcher::Event::Delete(obj)) => on_delete(obj),
            Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => on_apply(obj),
            _ => {}
        })
        .touched_objects();
    (reader, stream)
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

/// Runs the three controllers until `soft` is cancelled (then they finish what is in flight),
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
    // Which ExternalSecrets write which Secret, so that a Secret event finds them without
    // scanning every ExternalSecret (that made a 10k-object sync quadratic).
    let targets = external_secret::TargetIndex::default();
    let (es_reader, es_stream) = {
        let (on_apply, on_delete) = (targets.clone(), targets.clone());
        reflected_with(
            scoped::<ExternalSecret>(kube, ns),
            wc(),
            move |es| on_apply.insert(es),
            move |es| {
                on_delete.remove(es);
                on_es_delete(es);
            },
        )
    };
    // Our own status writes come back as watch events; they change nothing a reconcile
    // decides on (the cache keeps the new status for the next one), so they do not trigger.
    let es_stream = es_stream.predicate_filter(
        external_secret::trigger_hash,
        kube::runtime::PredicateConfig::default(),
    );
    // The ExternalSecret controller's own view of the stores (read during syncs; store changes
    // re-trigger the ExternalSecrets that use them).
    let (ss_reader, ss_trigger) = reflected(scoped::<SecretStore>(kube, ns), wc(), |_| {});
    let (css_reader, css_trigger) =
        reflected(Api::<ClusterSecretStore>::all(kube.clone()), wc(), |_| {});
    // The store controllers' watches.
    let (ss_ctrl_reader, ss_ctrl_stream) =
        reflected(scoped::<SecretStore>(kube, ns), wc(), on_ss_delete);
    let (css_ctrl_reader, css_ctrl_stream) = reflected(
        Api::<ClusterSecretStore>::all(kube.clone()),
        wc(),
        on_css_delete,
    );
    // Only Secrets we manage, and only their metadata: memory does not grow with every Secret
    // in the cluster. Data is read with a GET when an ExternalSecret needs a sync; the cached
    // resourceVersion tells a reconcile that nobody touched the Secret since our last write.
    let on_secret_delete = {
        let cell = shared_cell.clone();
        move |s: &PartialObjectMeta<Secret>| {
            if let Some(sh) = cell.get() {
                external_secret::secret_deleted(sh, s);
            }
        }
    };
    let (secret_meta, secrets) = reflected(
        scoped::<PartialObjectMeta<Secret>>(kube, ns),
        wc().labels(&format!("{LABEL_MANAGED}=true")),
        on_secret_delete,
    );

    let recorder = events::Recorder::new(kube.clone(), "vaultgate", Some(&cfg.identity));
    let (events_tx, events_rx) = events::queue();
    let sh = Arc::new(Shared {
        kube: kube.clone(),
        vault: vault.clone(),
        metrics: metrics.clone(),
        cfg: cfg.clone(),
        events: events_tx,
        secret_stores: ss_reader,
        cluster_stores: css_reader,
        secret_meta,
        es_memory: Mutex::new(HashMap::new()),
        targets,
        store_failures: Mutex::new(HashMap::new()),
    });
    let _ = shared_cell.set(sh.clone());

    // Boxed: the controllers' futures are large, and nested inline they overflowed the stack
    // of a debug build's test threads.
    let all = Box::pin(async {
        tokio::join!(
            external_secret::run(
                sh.clone(),
                es_reader,
                es_stream,
                secrets,
                ss_trigger,
                css_trigger,
                soft.clone(),
            ),
            store::run(sh.clone(), ss_ctrl_reader, ss_ctrl_stream, soft.clone()),
            store::run(sh.clone(), css_ctrl_reader, css_ctrl_stream, soft.clone()),
        );
    });
    // Events still queued when the controllers stop are written before returning.
    let controllers_done = CancellationToken::new();
    let all = async {
        tokio::join!(
            async {
                all.await;
                controllers_done.cancel();
            },
            events::deliver(&recorder, events_rx, controllers_done.clone()),
        );
    };
    tokio::select! {
        _ = all => {}
        _ = hard.cancelled() => tracing::warn!("abandoning in-flight reconciles: the lease may be held by another replica"),
    }
}
