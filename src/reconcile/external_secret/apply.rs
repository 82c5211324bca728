//! Carrying out a plan on the target Secret: server-side apply, delete, and taking back our
//! fields.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::error::SyncError;
use super::memory::{key, update_memory};
use super::report::publish;
use super::target_view::valid_target;
use crate::api::{CreationPolicy, ExternalSecret};
use crate::reconcile::Shared;
use crate::reconcile::desired::{self, Plan, Skip};
use crate::reconcile::events::EventType;
use crate::reconcile::status::{self, EsOutcome};

/// What is read of the API server's answer to a Secret apply. The answer is the whole Secret,
/// managedFields and all; kube's typed `patch` would build every entry's field tree, which
/// nothing here reads (in a sync of 10,000 ExternalSecrets, managedFields were the costliest
/// part of every parse).
#[derive(serde::Deserialize)]
pub(super) struct Written {
    metadata: WrittenMeta,
    data: Option<BTreeMap<String, ByteString>>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WrittenMeta {
    resource_version: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
    managed_fields: Option<Vec<FieldManager>>,
}

#[derive(serde::Deserialize)]
pub(super) struct FieldManager {
    manager: Option<String>,
}

/// Server-side applies `body` to Secret `name`; the answer read as [`Written`].
pub(super) async fn apply_secret(
    sh: &Shared,
    secrets: &Api<Secret>,
    name: &str,
    pp: &PatchParams,
    body: &Secret,
) -> Result<Written, kube::Error> {
    let req = kube::core::Request::new(secrets.resource_url())
        .patch(name, pp, &Patch::Apply(body))
        .map_err(kube::Error::BuildRequest)?;
    sh.kube.request(req).await
}

/// What carrying out a plan did.
pub(super) struct Executed {
    pub(super) outcome: EsOutcome,
    /// A write planned as a creation met a Secret that was already there (only an unforced
    /// first write can: it merged into it).
    pub(super) merged_into_existing: bool,
}

impl From<EsOutcome> for Executed {
    fn from(outcome: EsOutcome) -> Self {
        Executed {
            outcome,
            merged_into_existing: false,
        }
    }
}

/// Carries out a plan.
pub(super) async fn execute(
    es: &ExternalSecret,
    sh: &Shared,
    secrets: &Api<Secret>,
    plan: Plan,
    existing: Option<&Secret>,
    force: bool,
) -> Result<Executed, SyncError> {
    let target = desired::target_name(es);
    let manager = desired::field_manager(&es.namespace().unwrap_or_default(), &es.name_any());
    match plan {
        Plan::Skip(Skip::MergeTargetMissing) => Ok(EsOutcome::Missing { secret: target }.into()),
        Plan::Skip(Skip::NothingToDelete) => Ok(EsOutcome::Deleted.into()),
        Plan::Skip(Skip::RetainedEmpty) => Ok(EsOutcome::Retained.into()),
        Plan::Skip(_) => Ok(EsOutcome::Synced.into()),
        Plan::Delete => {
            let rv = existing.and_then(|s| s.resource_version());
            let dp = DeleteParams {
                preconditions: rv.map(|rv| kube::api::Preconditions {
                    resource_version: Some(rv),
                    uid: None,
                }),
                ..Default::default()
            };
            match secrets.delete(&target, &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.is_not_found() => {}
                Err(e) => {
                    return Err(SyncError::kube(
                        format!("could not delete Secret {target:?}"),
                        e,
                    ));
                }
            }
            update_memory(sh, es, |m| m.valid_rv = None);
            publish(
                sh,
                es,
                EventType::Normal,
                status::EVENT_DELETED,
                status::MSG_DELETED,
            );
            Ok(EsOutcome::Deleted.into())
        }
        Plan::Apply(w) => {
            let mut body = w.secret;
            if let Some(rv) = existing.and_then(|s| s.resource_version()) {
                if !w.remove_foreign_keys.is_empty() {
                    // Keys somebody else added to a Secret this ExternalSecret owns whole.
                    let mut ops = vec![
                        json!({"op": "test", "path": "/metadata/resourceVersion", "value": rv}),
                    ];
                    for k in &w.remove_foreign_keys {
                        ops.push(json!({"op": "remove", "path": format!("/data/{}", k.replace('~', "~0").replace('/', "~1"))}));
                    }
                    let patch: json_patch::Patch =
                        serde_json::from_value(json!(ops)).map_err(SyncError::Patch)?;
                    secrets
                        .patch(&target, &PatchParams::default(), &Patch::<()>::Json(patch))
                        .await
                        .map_err(|e| {
                            SyncError::kube(
                                format!("could not remove keys from Secret {target:?}"),
                                e,
                            )
                        })?;
                } else if body.type_.is_none() {
                    // A merge must not create the Secret should it vanish meanwhile.
                    body.metadata.resource_version = Some(rv);
                }
            }
            let mut pp = PatchParams::apply(&manager);
            pp.force = force;
            let written = apply_secret(sh, secrets, &target, &pp, &body)
                .await
                .map_err(|source| SyncError::Write {
                    target: target.clone(),
                    forced: force,
                    source,
                })?;
            // Remembered only when the Secret holds exactly what we wrote (an unforced first
            // write may have merged into a Secret that already had other keys).
            let meta = &written.metadata;
            if valid_target(
                meta.labels.as_ref(),
                meta.annotations.as_ref(),
                written.data.iter().flatten(),
            ) {
                update_memory(sh, es, |m| {
                    m.valid_rv = meta.resource_version.clone();
                    m.lag_checked = false;
                    m.exists_uncached = false;
                });
            }
            // Created by this write: nobody else has fields in it.
            let created = w.creates
                && meta
                    .managed_fields
                    .iter()
                    .flatten()
                    .all(|f| f.manager.as_deref() == Some(manager.as_str()));
            let merged_into_existing = w.creates && !created;
            if merged_into_existing && desired::creation_policy(es) == CreationPolicy::Owner {
                // The caller takes the write back and decides on the Secret as it was.
            } else if created {
                publish(
                    sh,
                    es,
                    EventType::Normal,
                    status::EVENT_CREATED,
                    "Created Secret",
                );
            } else if existing.and_then(|s| s.resource_version()) != meta.resource_version {
                publish(
                    sh,
                    es,
                    EventType::Normal,
                    status::EVENT_UPDATED,
                    "Updated Secret",
                );
            }
            Ok(Executed {
                outcome: EsOutcome::Synced,
                merged_into_existing,
            })
        }
    }
}

/// Applies an empty intent with the ExternalSecret's field manager: the API server drops the
/// keys, labels, annotations and ownerReferences only it applied. A Secret gone meanwhile is
/// fine; `rv`, when given, makes a concurrent change a conflict.
pub(super) async fn remove_our_fields(
    es: &ExternalSecret,
    secrets: &Api<Secret>,
    rv: Option<String>,
) -> Result<(), kube::Error> {
    let (ns, name) = key(es);
    let target = desired::target_name(es);
    let body = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": target,
            "namespace": ns,
            "resourceVersion": rv,
        },
    });
    let mut pp = PatchParams::apply(&desired::field_manager(&ns, &name));
    pp.force = true;
    match secrets.patch(&target, &pp, &Patch::Apply(&body)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}
