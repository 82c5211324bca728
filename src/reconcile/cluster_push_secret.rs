//! The ClusterPushSecret controller (ESO's `pkg/controllers/clusterpushsecret`): one PushSecret,
//! owned by the ClusterPushSecret, in every namespace its `namespaceSelectors` pick; removed
//! from namespaces that no longer match or when `pushSecretName` changes. PushSecrets it does
//! not own are never touched.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::events::{Event, EventType};
use super::{Error, refresh};
use crate::api::{
    ClusterPushSecret, ClusterPushSecretNamespaceFailure, ClusterPushSecretStatus, Condition,
    PushSecret, conditions, duration, selector,
};
use crate::metrics::Metrics;

/// ESO's message when a namespace failed.
pub const MSG_NAMESPACES_FAILED: &str = "one or more namespaces failed";
/// Without `refreshTime`, namespaces are looked at again this often (and on every change).
const DEFAULT_REFRESH: Duration = Duration::from_secs(3600);
const FIELD_MANAGER: &str = "vaultgate-clusterpushsecret";

pub(crate) struct CpsShared {
    pub kube: kube::Client,
    pub metrics: Metrics,
    pub events: super::events::Sender,
    pub namespaces: Store<Namespace>,
}

/// The namespaces (sorted) whose labels match any of the selectors (ORed; none: no namespace).
pub fn selected_namespaces<'a>(
    selectors: &[LabelSelector],
    namespaces: impl IntoIterator<Item = (&'a str, &'a BTreeMap<String, String>)>,
) -> Result<Vec<String>, String> {
    let mut out = BTreeSet::new();
    for (name, labels) in namespaces {
        for sel in selectors {
            if selector::selector_matches(sel, labels)? {
                out.insert(name.to_string());
                break;
            }
        }
    }
    Ok(out.into_iter().collect())
}

/// Provisioned namespaces no longer selected.
pub fn removed_namespaces(selected: &[String], provisioned: &[String]) -> Vec<String> {
    provisioned
        .iter()
        .filter(|n| !selected.contains(n))
        .cloned()
        .collect()
}

/// ESO's Ready condition: True without a message, or False saying namespaces failed.
pub fn ready_condition(failed: &BTreeMap<String, String>, now: Timestamp) -> Condition {
    let ok = failed.is_empty();
    Condition {
        type_: "Ready".into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: None,
        message: (!ok).then(|| MSG_NAMESPACES_FAILED.to_string()),
        last_transition_time: Some(Time(now)),
    }
}

/// Whether a PushSecret is controlled by the ClusterPushSecret `name`.
pub fn owned_by(ps: &PushSecret, name: &str) -> bool {
    ps.owner_references().iter().any(|o| {
        o.controller == Some(true)
            && o.api_version == "external-secrets.io/v1alpha1"
            && o.kind == "ClusterPushSecret"
            && o.name == name
    })
}

fn push_name(cps: &ClusterPushSecret) -> String {
    cps.spec
        .push_secret_name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| cps.name_any())
}

pub(crate) async fn reconcile(
    cps: Arc<ClusterPushSecret>,
    sh: Arc<CpsShared>,
) -> Result<Action, Error> {
    let start = Instant::now();
    let name = cps.name_any();
    let out = reconcile_inner(&cps, &sh).await;
    sh.metrics
        .cluster_push_duration
        .with_label_values(&[&name])
        .set(start.elapsed().as_secs_f64() * 1000.0);
    out
}

async fn reconcile_inner(cps: &ClusterPushSecret, sh: &CpsShared) -> Result<Action, Error> {
    if cps.meta().deletion_timestamp.is_some() {
        // The PushSecrets go with it: they are owned.
        return Ok(Action::await_change());
    }
    let name = cps.name_any();
    let ps_name = push_name(cps);
    let refresh = cps
        .spec
        .refresh_time
        .as_deref()
        .and_then(|t| duration::parse(t).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_REFRESH);
    let old = cps.status.clone().unwrap_or_default();
    let mut failed: BTreeMap<String, String> = BTreeMap::new();

    // pushSecretName changed: the PushSecrets of the old name go.
    if let Some(prev) = old.push_secret_name.as_deref().filter(|p| *p != ps_name) {
        for ns in &old.provisioned_namespaces {
            if let Err(e) = delete_owned(sh, ns, prev, &name).await {
                failed.insert(ns.clone(), e);
            }
        }
        if !failed.is_empty() {
            return finish(
                sh,
                cps,
                &ps_name,
                old.provisioned_namespaces.clone(),
                failed,
                "failed to delete push secret",
            )
            .await
            .map(|()| Action::requeue(refresh::backoff(1)));
        }
    }

    let all = sh.namespaces.state();
    let selectors = cps.spec.namespace_selectors.clone().unwrap_or_default();
    let selected = match selected_namespaces(
        &selectors,
        all.iter()
            .map(|n| (n.metadata.name.as_deref().unwrap_or_default(), n.labels())),
    ) {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("failed to get target Namespaces: spec.namespaceSelectors: {e}");
            finish(
                sh,
                cps,
                &ps_name,
                old.provisioned_namespaces.clone(),
                failed,
                &msg,
            )
            .await?;
            return Ok(Action::requeue(refresh));
        }
    };
    for ns in removed_namespaces(&selected, &old.provisioned_namespaces) {
        if let Err(e) = delete_owned(sh, &ns, &ps_name, &name).await {
            failed.insert(ns, e);
        }
    }
    let mut provisioned = vec![];
    for ns in &selected {
        match apply_push_secret(sh, cps, ns, &ps_name).await {
            Ok(()) => provisioned.push(ns.clone()),
            Err(e) => {
                failed.insert(ns.clone(), e);
            }
        }
    }
    finish(sh, cps, &ps_name, provisioned, failed, "").await?;
    Ok(Action::requeue(refresh))
}

/// Writes the status (and an event and the metric when something failed).
async fn finish(
    sh: &CpsShared,
    cps: &ClusterPushSecret,
    ps_name: &str,
    provisioned: Vec<String>,
    failed: BTreeMap<String, String>,
    error: &str,
) -> Result<(), Error> {
    let now = Timestamp::now();
    let mut st: ClusterPushSecretStatus = cps.status.clone().unwrap_or_default();
    let cond = if error.is_empty() {
        ready_condition(&failed, now)
    } else {
        Condition {
            type_: "Ready".into(),
            status: "False".into(),
            reason: Some("Errored".into()),
            message: Some(error.into()),
            last_transition_time: Some(Time(now)),
        }
    };
    let ready = cond.is_true();
    if let Some(msg) = cond.message.clone().filter(|_| !ready) {
        let ev = Event {
            type_: EventType::Warning,
            reason: "Errored".into(),
            note: Some(crate::text::clip(&msg, 1000)),
            action: "Provision".into(),
            secondary: None,
        };
        sh.events.send(ev, cps.object_ref(&()));
    }
    conditions::set(&mut st.conditions, cond);
    st.push_secret_name = Some(ps_name.to_string());
    st.provisioned_namespaces = provisioned;
    st.failed_namespaces = failed
        .into_iter()
        .map(|(namespace, reason)| ClusterPushSecretNamespaceFailure {
            namespace,
            reason: Some(reason),
        })
        .collect();
    sh.metrics
        .set_cluster_push_condition(&cps.name_any(), ready);
    if cps.status.as_ref() == Some(&st) {
        return Ok(());
    }
    let api: Api<ClusterPushSecret> = Api::all(sh.kube.clone());
    let patch: json_patch::Patch =
        serde_json::from_value(json!([{"op": "add", "path": "/status", "value": st}]))
            .expect("well-formed patch");
    match api
        .patch_status(
            &cps.name_any(),
            &PatchParams::default(),
            &Patch::<()>::Json(patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Creates or updates the PushSecret in `ns` (server-side apply), unless someone else owns
/// one of that name.
async fn apply_push_secret(
    sh: &CpsShared,
    cps: &ClusterPushSecret,
    ns: &str,
    ps_name: &str,
) -> Result<(), String> {
    let api: Api<PushSecret> = Api::namespaced(sh.kube.clone(), ns);
    let existing = api
        .get_opt(ps_name)
        .await
        .map_err(|e| format!("could not get existing PushSecret: {e}"))?;
    if let Some(ps) = &existing
        && !owned_by(ps, &cps.name_any())
    {
        return Err("push secret already exists in namespace".into());
    }
    let meta = cps.spec.push_secret_metadata.clone().unwrap_or_default();
    let owner = OwnerReference {
        api_version: "external-secrets.io/v1alpha1".into(),
        kind: "ClusterPushSecret".into(),
        name: cps.name_any(),
        uid: cps.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    };
    let body = json!({
        "apiVersion": "external-secrets.io/v1alpha1",
        "kind": "PushSecret",
        "metadata": {
            "name": ps_name,
            "namespace": ns,
            "labels": meta.labels.unwrap_or_default(),
            "annotations": meta.annotations.unwrap_or_default(),
            "ownerReferences": [owner],
        },
        "spec": cps.spec.push_secret_spec,
    });
    api.patch(
        ps_name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map(|_| ())
    .map_err(|e| format!("could not create or update push secret: {e}"))
}

/// Deletes the PushSecret `name` in `ns` if the ClusterPushSecret `owner` controls it.
async fn delete_owned(sh: &CpsShared, ns: &str, name: &str, owner: &str) -> Result<(), String> {
    let api: Api<PushSecret> = Api::namespaced(sh.kube.clone(), ns);
    match api.get_opt(name).await {
        Ok(Some(ps)) if owned_by(&ps, owner) => {
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                Err(e) => Err(format!(
                    "push secret in non matching namespace could not be deleted: {e}"
                )),
            }
        }
        Ok(_) => Ok(()),
        Err(e) => Err(format!("could not get existing PushSecret: {e}")),
    }
}

pub(crate) fn error_policy(cps: Arc<ClusterPushSecret>, err: &Error, _: Arc<CpsShared>) -> Action {
    tracing::warn!(clusterpushsecret = %cps.name_any(), error = %err, "reconcile failed");
    Action::requeue(refresh::backoff(3))
}

pub(crate) async fn run(
    sh: Arc<CpsShared>,
    reader: Store<ClusterPushSecret>,
    stream: impl Stream<Item = Result<ClusterPushSecret, watcher::Error>> + Send + 'static,
    namespaces: impl Stream<Item = Result<Namespace, watcher::Error>> + Send + 'static,
    stop: tokio_util::sync::CancellationToken,
) {
    use kube::runtime::Controller;
    let all = reader.clone();
    let controller = Controller::for_stream(stream, reader.clone())
        // A namespace appearing, going or relabelled: every ClusterPushSecret looks again.
        .watches_stream(namespaces, move |_| {
            all.state()
                .iter()
                .map(|c| ObjectRef::from_obj(&**c))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(stop.clone().cancelled_owned())
        .run(|c, sh| Box::pin(reconcile(c, sh)), error_policy, sh)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "clusterpushsecret controller");
            }
        });
    super::until_stopped(controller, &reader, &stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(k: &str, v: &str) -> LabelSelector {
        LabelSelector {
            match_labels: Some([(k.to_string(), v.to_string())].into()),
            match_expressions: None,
        }
    }

    #[test]
    fn namespaces_are_selected_by_any_selector() {
        let a: BTreeMap<String, String> = [("team".to_string(), "a".to_string())].into();
        let b: BTreeMap<String, String> = [("team".to_string(), "b".to_string())].into();
        let none = BTreeMap::new();
        let nss = [("ns-b", &b), ("ns-a", &a), ("plain", &none)];
        assert_eq!(
            selected_namespaces(&[sel("team", "a"), sel("team", "b")], nss).unwrap(),
            ["ns-a", "ns-b"]
        );
        assert_eq!(
            selected_namespaces(&[sel("team", "a")], nss).unwrap(),
            ["ns-a"]
        );
        assert!(selected_namespaces(&[], nss).unwrap().is_empty());
    }

    #[test]
    fn removed_namespaces_are_those_no_longer_selected() {
        let selected = vec!["a".to_string()];
        let provisioned = vec!["a".to_string(), "b".to_string()];
        assert_eq!(removed_namespaces(&selected, &provisioned), ["b"]);
    }

    #[test]
    fn ready_is_esos() {
        let now = Timestamp::now();
        let ok = ready_condition(&BTreeMap::new(), now);
        assert_eq!((ok.status.as_str(), ok.message), ("True", None));
        let failed: BTreeMap<String, String> = [("x".to_string(), "e".to_string())].into();
        let bad = ready_condition(&failed, now);
        assert_eq!(bad.status, "False");
        assert_eq!(bad.message.as_deref(), Some(MSG_NAMESPACES_FAILED));
    }

    #[test]
    fn ownership_needs_the_controller_reference() {
        let mut ps = PushSecret::new("p", Default::default());
        assert!(!owned_by(&ps, "c"));
        ps.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "external-secrets.io/v1alpha1".into(),
            kind: "ClusterPushSecret".into(),
            name: "c".into(),
            uid: "u".into(),
            controller: Some(true),
            block_owner_deletion: None,
        }]);
        assert!(owned_by(&ps, "c"));
        assert!(!owned_by(&ps, "other"));
    }
}
