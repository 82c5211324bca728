//! The ExternalSecret controller: reads what the pure decisions need, carries out their plans,
//! and reports through status, events and metrics. A reconcile looks up the store, keeps the
//! finalizer, then runs [`sync::sync`]; `run` wires the watches.

mod apply;
mod cleanup;
mod entry_stores;
mod error;
mod fetch;
mod generators;
mod leases;
mod memory;
mod report;
mod store_ref;
mod sync;
mod target_index;
mod target_view;
mod triggers;

use std::sync::Arc;
use std::time::Instant;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use self::cleanup::{cleanup, ensure_finalizer};
use self::entry_stores::lookup_entry_stores;
use self::memory::{
    back_off, count_failure, forget_key, key, memory, record_success, renew_if_recreated,
};
use self::report::{publish, write_status};
use self::store_ref::{StoreLookup, lookup_store};
use self::sync::{Stores, Synced, sync};
use self::target_index::to_wake;
use super::desired;
use super::events::EventType;
use super::hash::meta_hash;
use super::refresh;
use super::status::{self, EsOutcome};
use super::{Error, Shared};
use crate::api::{ClusterSecretStore, ExternalSecret, SecretStore, StoreKind};

use self::generators::users_of_generator;
pub(crate) use self::generators::{
    GeneratorStores, GeneratorStreams, LookupError as GeneratorLookupError, WatchStream,
    lookup as lookup_generator,
};
pub(crate) use self::memory::{Memories, forget};
pub use self::store_ref::class_matches;
pub(crate) use self::store_ref::{stable_identity, users_of_store};
pub(crate) use self::target_index::{TargetIndex, secret_deleted, writers_of_secret};
pub(crate) use self::triggers::trigger_hash;

pub(crate) async fn reconcile(es: Arc<ExternalSecret>, sh: Arc<Shared>) -> Result<Action, Error> {
    let started = Instant::now();
    let (ns, name) = key(&es);
    sh.refreshes.started(&(ns.clone(), name.clone()));
    renew_if_recreated(&sh, &es);
    if es.metadata.deletion_timestamp.is_some() {
        return cleanup(&es, &sh).await;
    }
    let store = lookup_store(&es, &sh).await?;
    let entry_stores = lookup_entry_stores(&es, &sh).await?;
    if matches!(store, StoreLookup::NotOurs) || entry_stores::any_not_ours(&entry_stores) {
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
    let attempt_key = format!(
        "{version}@{store_version}@{}@{}",
        entry_stores::versions(&entry_stores),
        generators::cached_versions(&es, &sh)
    );
    let mem = memory(&sh, &es);
    // Lease work runs even while syncs back off: a lease must not end unnoticed.
    let tended = leases::tend(&es, &sh, &mem, &sync::refresh_seed(&es.spec)).await;
    let mem = memory(&sh, &es);
    if let Some(f) = mem.failing.as_deref()
        && let Some(at) = f.retry_at
        && f.with == attempt_key
        && at > Instant::now()
        && !tended.mint_now
    {
        // Backing off after errors, and nothing changed that could fix them.
        let wait = leases::sooner(Some(at - Instant::now()), tended.wake_at, Timestamp::now());
        return Ok(Action::requeue(wait.unwrap_or_default()));
    }

    sh.metrics.es_sync_call(&name, &ns);
    let stores = Stores {
        default: &store,
        entries: &entry_stores,
    };
    let result = sync(&es, &sh, &stores, &version, &mem, &tended).await;
    let target = desired::target_name(&es);
    let now = Timestamp::now();
    let action = match result {
        Ok(Synced::NotDue(action)) => action,
        Ok(Synced::Done {
            outcome,
            next,
            store_generation,
        }) => {
            let synced = outcome.is_success().then(|| (version.clone(), now));
            record_success(&sh, &es, synced, store_generation);
            write_status(&es, &sh, &outcome, &version, &target, now).await?;
            next
        }
        Err(failure) => {
            sh.metrics.es_sync_error(&name, &ns);
            let delay = back_off(&sh, &es, &failure, attempt_key);
            let message = failure.to_string();
            tracing::warn!(
                externalsecret = %format!("{ns}/{name}"),
                error = %message,
                retry_in = ?delay,
                "sync failed"
            );
            publish(
                &sh,
                &es,
                EventType::Warning,
                status::EVENT_UPDATE_FAILED,
                &message,
            );
            let outcome = EsOutcome::Failed { message };
            write_status(&es, &sh, &outcome, &version, &target, now).await?;
            // Lease work due before the retry (a superseded lease's revocation) is not put off.
            let wake = leases::next_wake(&es, &sh, &sync::refresh_seed(&es.spec));
            Action::requeue(leases::sooner(Some(delay), wake, Timestamp::now()).unwrap_or(delay))
        }
    };
    sh.metrics
        .es_reconcile_duration(&name, &ns, started.elapsed().as_secs_f64() * 1000.0);
    Ok(action)
}

pub(crate) fn error_policy(es: Arc<ExternalSecret>, err: &Error, sh: Arc<Shared>) -> Action {
    let delay = refresh::backoff(count_failure(&sh, &es));
    tracing::warn!(
        externalsecret = %format!("{}/{}", es.namespace().unwrap_or_default(), es.name_any()),
        error = %err,
        retry_in = ?delay,
        "reconcile failed"
    );
    let wake = leases::next_wake(&es, &sh, &sync::refresh_seed(&es.spec));
    Action::requeue(leases::sooner(Some(delay), wake, Timestamp::now()).unwrap_or(delay))
}

/// Maps a generator's watch event to the ExternalSecrets naming it.
fn gen_users<K: kube::Resource>(
    es_reader: &Store<ExternalSecret>,
    kind: &'static str,
) -> impl Fn(K) -> Vec<ObjectRef<ExternalSecret>> + Send + Sync + 'static {
    let reader = es_reader.clone();
    move |g: K| {
        let m = g.meta();
        users_of_generator(
            &reader,
            kind,
            m.namespace.as_deref(),
            m.name.as_deref().unwrap_or_default(),
        )
    }
}

/// A watch's errors, logged here and kept out of the controller: kube-runtime splits its input
/// into errors and requests, and while an error waited at the head of that input the requests
/// behind it (the refresh queue's among them) were not taken until something else woke the
/// controller. The watcher retries on its own either way.
fn watch_errors_logged<K: Send + 'static>(
    s: impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static {
    s.filter_map(|r| async move {
        match r {
            Ok(o) => Some(Ok(o)),
            Err(e) => {
                tracing::debug!(error = %e, "externalsecret controller watch");
                None
            }
        }
    })
}

/// Runs the ExternalSecret controller until `stop` is cancelled (in-flight reconciles finish).
// One stream per watched kind: bundling them would only move the list elsewhere.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    sh: Arc<Shared>,
    es_reader: Store<ExternalSecret>,
    es_stream: impl Stream<Item = Result<ExternalSecret, watcher::Error>> + Send + 'static,
    secret_stream: impl Stream<Item = Result<PartialObjectMeta<Secret>, watcher::Error>>
    + Send
    + 'static,
    ss_stream: impl Stream<Item = Result<SecretStore, watcher::Error>> + Send + 'static,
    css_stream: impl Stream<Item = Result<ClusterSecretStore, watcher::Error>> + Send + 'static,
    gen_streams: GeneratorStreams,
    stop: tokio_util::sync::CancellationToken,
) {
    use kube::runtime::Controller;
    let after = sh.clone();
    let for_secrets = es_reader.clone();
    let for_ss = es_reader.clone();
    let for_css = es_reader.clone();
    let scheduled = sh
        .refreshes
        .clone()
        .stream()
        .map(|(ns, name)| ObjectRef::<ExternalSecret>::new(&name).within(&ns));
    let controller = Controller::for_stream(watch_errors_logged(es_stream), es_reader.clone())
        .with_config(kube::runtime::controller::Config::default().concurrency(sh.cfg.concurrency))
        .reconcile_on(scheduled)
        .watches_stream(watch_errors_logged(secret_stream), {
            let sh = sh.clone();
            move |s| {
                let exists = |r: &ObjectRef<ExternalSecret>| for_secrets.get(r).is_some();
                let writers = writers_of_secret(&sh.targets, &s, exists);
                let mem = sh.es_memory.lock().unwrap_or_else(|p| p.into_inner());
                to_wake(writers, s.metadata.resource_version.as_deref(), &mem)
            }
        })
        .watches_stream(watch_errors_logged(ss_stream), move |s| {
            users_of_store(
                &for_ss,
                StoreKind::SecretStore,
                s.namespace().as_deref(),
                &s.name_any(),
            )
        })
        .watches_stream(watch_errors_logged(css_stream), move |s| {
            users_of_store(&for_css, StoreKind::ClusterSecretStore, None, &s.name_any())
        })
        .watches_stream(
            watch_errors_logged(gen_streams.passwords),
            gen_users(&es_reader, "Password"),
        )
        .watches_stream(
            watch_errors_logged(gen_streams.uuids),
            gen_users(&es_reader, "UUID"),
        )
        .watches_stream(
            watch_errors_logged(gen_streams.sshkeys),
            gen_users(&es_reader, "SSHKey"),
        )
        .watches_stream(
            watch_errors_logged(gen_streams.vault),
            gen_users(&es_reader, "VaultDynamicSecret"),
        )
        .watches_stream(
            watch_errors_logged(gen_streams.cluster),
            gen_users(&es_reader, "ClusterGenerator"),
        )
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
