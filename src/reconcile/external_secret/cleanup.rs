//! The finalizer: kept while the ExternalSecret lives, and on deletion its Secret cleaned up
//! per deletionPolicy before it is let go.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::apply::remove_our_fields;
use super::leases;
use super::memory::{forget, key, memory};
use super::report::publish;
use crate::api::ExternalSecret;
use crate::reconcile::desired::{self, Cleanup};
use crate::reconcile::events::EventType;
use crate::reconcile::status;
use crate::reconcile::{Error, Shared};

pub(super) async fn ensure_finalizer(es: &ExternalSecret, sh: &Shared) -> Result<(), Error> {
    // Leases are revoked on deletion, whatever the deletionPolicy.
    let want = desired::needs_finalizer(es) || leases::may_hold_leases(es, &memory(sh, es));
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

pub(super) async fn patch_finalizers(
    es: &ExternalSecret,
    sh: &Shared,
    new: Vec<String>,
) -> Result<(), Error> {
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

/// The ExternalSecret is being deleted: clean up its Secret per deletionPolicy, then let it go.
pub(super) async fn cleanup(es: &ExternalSecret, sh: &Shared) -> Result<Action, Error> {
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
    if let Err(e) = leases::revoke_all(es, sh, &memory(sh, es)).await {
        // Vault unreachable: keep the finalizer and try again.
        tracing::warn!(error = %e, "leases not revoked yet");
        return Ok(Action::requeue(leases::RETRY));
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
