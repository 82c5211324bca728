//! The ClusterExternalSecret controller: keeps an ExternalSecret in every namespace a
//! ClusterExternalSecret selects, and none where it no longer does. Decisions are in
//! [`super::ces_plan`]; this file reads the caches, writes through the API and reports.
//!
//! What exists is read from the reconciler's ExternalSecret cache, not with a GET per
//! namespace: a reconcile of a thousand namespaces that are already right writes nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::ces_plan::{self, Desired, Existing, Ns};
use super::events::{Event, EventType};
use super::{Error, Shared};
use crate::api::{CES_FINALIZER, ClusterExternalSecret, ExternalSecret};

/// Field manager of the ExternalSecrets written here.
const MANAGER: &str = "vaultgate-clusterexternalsecret";
/// ESO's default `refreshTime` (its `--requeue-interval`).
const DEFAULT_REFRESH: Duration = Duration::from_secs(3600);
/// Writes in flight at once for one ClusterExternalSecret.
const WRITES_IN_FLIGHT: usize = 32;

/// What the controller reads besides its own objects.
pub(crate) struct Ctx {
    pub sh: Arc<Shared>,
    pub external_secrets: Store<ExternalSecret>,
    pub namespaces: Store<Namespace>,
}

fn ces_api(cx: &Ctx) -> Api<ClusterExternalSecret> {
    Api::all(cx.sh.kube.clone())
}

fn es_api(cx: &Ctx, ns: &str) -> Api<ExternalSecret> {
    Api::namespaced(cx.sh.kube.clone(), ns)
}

fn controller_ref(ces: &ClusterExternalSecret) -> OwnerReference {
    OwnerReference {
        api_version: "external-secrets.io/v1".into(),
        kind: "ClusterExternalSecret".into(),
        name: ces.name_any(),
        uid: ces.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The ExternalSecret as written into `ns`.
fn desired_object(d: &Desired<'_>, ns: &str) -> ExternalSecret {
    let mut es = ExternalSecret::new(
        &d.ces.external_secret_name(),
        d.ces.spec.external_secret_spec.clone(),
    );
    es.metadata.namespace = Some(ns.into());
    es.metadata.labels = Some(d.labels.clone()).filter(|l| !l.is_empty());
    es.metadata.annotations = Some(d.annotations.clone()).filter(|a| !a.is_empty());
    es.metadata.owner_references = Some(vec![controller_ref(d.ces)]);
    es
}

fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} (HTTP {})", s.message, s.code),
        other => other.to_string(),
    }
}

async fn apply(cx: &Ctx, d: &Desired<'_>, ns: &str) -> Result<(), String> {
    let es = desired_object(d, ns);
    let pp = PatchParams::apply(MANAGER).force();
    es_api(cx, ns)
        .patch(&es.name_any(), &pp, &Patch::Apply(&es))
        .await
        .map(|_| ())
        .map_err(|e| describe(&e))
}

/// Creates the ExternalSecret; one that appeared since the cache was read is updated if ours
/// and refused if not.
async fn create(cx: &Ctx, d: &Desired<'_>, ns: &str) -> Result<(), String> {
    let es = desired_object(d, ns);
    let pp = PostParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    match es_api(cx, ns).create(&pp, &es).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_already_exists() => {
            let found = es_api(cx, ns)
                .get(&es.name_any())
                .await
                .map_err(|e| describe(&e))?;
            if ces_plan::owned_by(&found, &d.ces.name_any()) {
                apply(cx, d, ns).await
            } else {
                Err(ces_plan::NOT_OURS.into())
            }
        }
        Err(e) => Err(describe(&e)),
    }
}

/// Deletes one of our ExternalSecrets, only if it is still the object the cache saw.
async fn remove(cx: &Ctx, ns: &str, name: &str, uid: Option<String>) -> Result<(), String> {
    let dp = DeleteParams {
        preconditions: uid.map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..Default::default()
    };
    match es_api(cx, ns).delete(name, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() || s.is_conflict() => Ok(()),
        Err(e) => Err(describe(&e)),
    }
}

/// Every ExternalSecret this ClusterExternalSecret controls, with its uid, and what stands
/// under the current name in each namespace.
struct Seen {
    ours: Vec<(String, String)>,
    uids: HashMap<(String, String), Option<String>>,
    by_ns: HashMap<String, Existing>,
}

fn seen(cx: &Ctx, ces: &ClusterExternalSecret, d: &Desired<'_>) -> Seen {
    let (ces_name, es_name) = (ces.name_any(), ces.external_secret_name());
    let mut s = Seen {
        ours: vec![],
        uids: HashMap::new(),
        by_ns: HashMap::new(),
    };
    for es in cx.external_secrets.state() {
        let ns = es.namespace().unwrap_or_default();
        let name = es.name_any();
        let ours = ces_plan::owned_by(&es, &ces_name);
        if ours {
            s.ours.push((ns.clone(), name.clone()));
            s.uids.insert((ns.clone(), name.clone()), es.uid());
        }
        if name == es_name {
            let state = match (ours, d.is_met_by(&es)) {
                (false, _) => Existing::NotOurs,
                (true, true) => Existing::OursUpToDate,
                (true, false) => Existing::OursStale,
            };
            s.by_ns.insert(ns, state);
        }
    }
    s
}

/// Runs `f` over `items` with a bounded number in flight; the failures, by namespace.
async fn each<'a, F, Fut>(items: Vec<(String, String)>, f: F) -> BTreeMap<String, String>
where
    F: Fn(String, String) -> Fut,
    Fut: std::future::Future<Output = (String, Result<(), String>)> + 'a,
{
    futures::stream::iter(items)
        .map(|(a, b)| f(a, b))
        .buffer_unordered(WRITES_IN_FLIGHT)
        .filter_map(|(ns, r)| async move { r.err().map(|e| (ns, e)) })
        .collect()
        .await
}

async fn patch_finalizers(
    cx: &Ctx,
    ces: &ClusterExternalSecret,
    finalizers: Vec<String>,
) -> Result<(), Error> {
    // The resourceVersion makes the list replacement safe against a concurrent change.
    let body =
        json!({"metadata": {"finalizers": finalizers, "resourceVersion": ces.resource_version()}});
    match ces_api(cx)
        .patch(
            &ces.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&body),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The ClusterExternalSecret is being deleted: its ExternalSecrets go first, then the finalizer.
async fn finalize(ces: &ClusterExternalSecret, cx: &Ctx) -> Result<Action, Error> {
    let _ = cx.external_secrets.wait_until_ready().await;
    let d = Desired::of(ces);
    let s = seen(cx, ces, &d);
    let failures = each(s.ours.clone(), |ns, name| {
        let uid = s.uids.get(&(ns.clone(), name.clone())).cloned().flatten();
        async move {
            let r = remove(cx, &ns, &name, uid).await;
            (ns, r)
        }
    })
    .await;
    if !failures.is_empty() {
        tracing::warn!(ces = %ces.name_any(), failed = failures.len(), "could not delete every ExternalSecret; retrying");
        return Ok(Action::requeue(super::refresh::BACKOFF_BASE));
    }
    // Forgotten before the finalizer goes: the object can vanish the moment it does, and a
    // scrape then must not still show its series.
    cx.sh.metrics.forget_ces(&ces.name_any());
    if ces.finalizers().iter().any(|f| f == CES_FINALIZER) {
        let rest: Vec<String> = ces
            .finalizers()
            .iter()
            .filter(|f| *f != CES_FINALIZER)
            .cloned()
            .collect();
        patch_finalizers(cx, ces, rest).await?;
    }
    Ok(Action::await_change())
}

pub(crate) async fn reconcile(
    ces: Arc<ClusterExternalSecret>,
    cx: Arc<Ctx>,
) -> Result<Action, Error> {
    let start = Instant::now();
    let name = ces.name_any();
    if ces.metadata.deletion_timestamp.is_some() {
        return finalize(&ces, &cx).await;
    }
    if !ces.finalizers().iter().any(|f| f == CES_FINALIZER) {
        let mut all = ces.finalizers().to_vec();
        all.push(CES_FINALIZER.into());
        patch_finalizers(&cx, &ces, all).await?;
        // The patched object comes back through the watch and is reconciled then.
        return Ok(Action::await_change());
    }
    let refresh = match ces.spec.refresh_time.as_deref() {
        None => Ok(DEFAULT_REFRESH),
        Some(t) => crate::api::duration::parse(t).map_err(|e| format!("spec.refreshTime: {e}")),
    };
    // Planned on caches that hold the first list, or everything would look absent.
    let _ = cx.external_secrets.wait_until_ready().await;
    let _ = cx.namespaces.wait_until_ready().await;
    let d = Desired::of(&ces);
    let s = seen(&cx, &ces, &d);
    let nss = cx.namespaces.state();
    let planned = ces_plan::plan(
        &ces,
        nss.iter().map(|n| Ns {
            name: n.metadata.name.as_deref().unwrap_or_default(),
            labels: n.metadata.labels.as_ref(),
            terminating: n.metadata.deletion_timestamp.is_some(),
        }),
        |ns| s.by_ns.get(ns).copied().unwrap_or(Existing::Absent),
        &s.ours,
    );
    let now = Timestamp::now();
    let new = match planned {
        Err(e) => ces_plan::status_unselectable(&ces, &e, now),
        Ok(p) => {
            let d = &d;
            let writes: Vec<(String, String)> = p
                .create
                .iter()
                .map(|ns| (ns.clone(), "create".to_string()))
                .chain(p.update.iter().map(|ns| (ns.clone(), "update".to_string())))
                .collect();
            let mut failures = each(writes, |ns, op| {
                let cx = &cx;
                async move {
                    let r = if op == "create" {
                        create(cx, d, &ns).await
                    } else {
                        apply(cx, d, &ns).await
                    };
                    (ns, r)
                }
            })
            .await;
            let removals = each(p.remove.clone(), |ns, es| {
                let uid = s.uids.get(&(ns.clone(), es.clone())).cloned().flatten();
                let cx = &cx;
                async move {
                    let r = remove(cx, &ns, &es, uid).await;
                    (ns, r)
                }
            })
            .await;
            failures.extend(p.refused);
            for (ns, e) in removals {
                failures.entry(ns).or_insert(e);
            }
            let mut st = ces_plan::status(&ces, &p.selected, &failures, now);
            if let Err(e) = &refresh {
                st.failed_namespaces.clear();
                crate::api::conditions::set(
                    &mut st.conditions,
                    crate::api::Condition {
                        type_: "Ready".into(),
                        status: "False".into(),
                        reason: Some("InvalidRefreshTime".into()),
                        message: Some(e.clone()),
                        last_transition_time: Some(
                            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now),
                        ),
                    },
                );
            }
            st
        }
    };
    report(&ces, &cx, &new).await?;
    cx.sh
        .metrics
        .ces_reconcile_duration(&name, start.elapsed().as_secs_f64() * 1000.0);
    Ok(match refresh {
        Ok(d) if d.is_zero() => Action::await_change(),
        Ok(d) => Action::requeue(d),
        Err(_) => Action::await_change(),
    })
}

/// Writes the status when it says something new, with a Warning event when the failures
/// change, and sets the condition metric.
async fn report(
    ces: &ClusterExternalSecret,
    cx: &Ctx,
    new: &crate::api::ClusterExternalSecretStatus,
) -> Result<(), Error> {
    let ready = crate::api::conditions::find(&new.conditions, "Ready").is_some_and(|c| c.is_true());
    cx.sh.metrics.set_ces_ready(&ces.name_any(), ready);
    let old = ces.status.as_ref();
    if !ces_plan::differs(old, new) {
        return Ok(());
    }
    ces_api(cx)
        .patch_status(
            &ces.name_any(),
            &PatchParams::default(),
            &Patch::Merge(status_patch(new)),
        )
        .await?;
    let old_failed = old.map(|o| o.failed_namespaces.clone()).unwrap_or_default();
    if !ready && old_failed != new.failed_namespaces {
        let cond = crate::api::conditions::find(&new.conditions, "Ready");
        let ev = Event {
            type_: EventType::Warning,
            reason: cond.and_then(|c| c.reason.clone()).unwrap_or_default(),
            note: cond.and_then(|c| c.message.clone()),
            action: "Provision".into(),
            secondary: None,
        };
        cx.sh.events.send(ev, ces.object_ref(&()));
    }
    Ok(())
}

/// The status as a merge patch: a list that became empty is sent as null, or the merge would
/// keep the old one (the type leaves empty lists out).
fn status_patch(new: &crate::api::ClusterExternalSecretStatus) -> serde_json::Value {
    let mut status = json!(new);
    for key in [
        "externalSecretName",
        "failedNamespaces",
        "provisionedNamespaces",
        "conditions",
    ] {
        if status.get(key).is_none() {
            status[key] = serde_json::Value::Null;
        }
    }
    json!({ "status": status })
}

pub(crate) fn error_policy(ces: Arc<ClusterExternalSecret>, err: &Error, _cx: Arc<Ctx>) -> Action {
    tracing::warn!(ces = %ces.name_any(), error = %err, "clusterexternalsecret reconcile failed");
    Action::requeue(super::refresh::BACKOFF_BASE)
}

/// The ClusterExternalSecrets a namespace event concerns: those that select it now, and those
/// whose status lists it (it may have stopped matching, or be gone).
fn concerned(
    ces_reader: &Store<ClusterExternalSecret>,
    ns: &Namespace,
) -> Vec<ObjectRef<ClusterExternalSecret>> {
    let name = ns.name_any();
    let view = Ns {
        name: &name,
        labels: ns.metadata.labels.as_ref(),
        terminating: false,
    };
    ces_reader
        .state()
        .iter()
        .filter(|c| {
            let listed = c.status.as_ref().is_some_and(|s| {
                s.provisioned_namespaces.contains(&name)
                    || s.failed_namespaces.iter().any(|f| f.namespace == name)
            });
            // An invalid selector is reconciled too, to report it.
            listed || ces_plan::selects(c, &view).unwrap_or(true)
        })
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect()
}

/// Whether a ClusterExternalSecret controls this ExternalSecret.
pub(crate) fn controlled_by_a_ces(es: &ExternalSecret) -> bool {
    controller_of(es).is_some()
}

/// The ClusterExternalSecret that controlled a deleted ExternalSecret (to put it back).
fn controller_of(es: &ExternalSecret) -> Option<ObjectRef<ClusterExternalSecret>> {
    es.owner_references()
        .iter()
        .find(|o| ces_plan::is_ces_controller(o))
        .map(|o| ObjectRef::new(&o.name))
}

/// Runs the ClusterExternalSecret controller until `stop` is cancelled.
pub(crate) async fn run(
    cx: Arc<Ctx>,
    ces_reader: Store<ClusterExternalSecret>,
    ces_stream: impl Stream<Item = Result<ClusterExternalSecret, watcher::Error>> + Send + 'static,
    ns_stream: impl Stream<Item = Result<Namespace, watcher::Error>> + Send + 'static,
    es_deleted: impl Stream<Item = Result<ExternalSecret, watcher::Error>> + Send + 'static,
    stop: tokio_util::sync::CancellationToken,
) {
    use kube::runtime::Controller;
    let for_ns = ces_reader.clone();
    let controller = Controller::for_stream(ces_stream, ces_reader.clone())
        .watches_stream(ns_stream, move |ns| concerned(&for_ns, &ns))
        .watches_stream(es_deleted, |es| controller_of(&es))
        .graceful_shutdown_on(stop.clone().cancelled_owned())
        .run(|c, cx| Box::pin(reconcile(c, cx)), error_policy, cx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "clusterexternalsecret controller");
            }
        });
    super::until_stopped(controller, &ces_reader, &stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_patch_clears_lists_that_became_empty() {
        let st = crate::api::ClusterExternalSecretStatus {
            external_secret_name: Some("pull".into()),
            provisioned_namespaces: vec!["a".into()],
            ..Default::default()
        };
        assert_eq!(
            status_patch(&st),
            json!({"status": {"externalSecretName": "pull", "provisionedNamespaces": ["a"],
                              "failedNamespaces": null, "conditions": null}})
        );
    }
}
