//! What a sync tells: the status subresource, the Ready metric, and events.

use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use kube::api::{Patch, PatchParams};

use super::memory::{key, memory};
use crate::api::ExternalSecret;
use crate::reconcile::events::{Event, EventType};
use crate::reconcile::status::{self, EsOutcome};
use crate::reconcile::{Error, Shared};

pub(super) async fn write_status(
    es: &ExternalSecret,
    sh: &Shared,
    outcome: &EsOutcome,
    version: &str,
    target: &str,
    now: Timestamp,
) -> Result<(), Error> {
    let (ns, name) = key(es);
    let mut new = status::external_secret_status(es.status.as_ref(), outcome, version, target, now);
    // The lease record as last written, which the cached object may not show yet.
    if let Some(leases) = memory(sh, es).leases {
        new.leases = Some(leases);
    }
    let ready = status::ready_status(&new.conditions);
    sh.metrics.set_es_condition(
        &name,
        &ns,
        status::READY,
        match ready {
            Some(true) => "True",
            Some(false) => "False",
            None => "Unknown",
        },
    );
    if !status::status_write_needed(es.status.as_ref(), &new, now) {
        return Ok(());
    }
    // Written straight from the status: through `json!` it was first copied into a JSON tree.
    #[derive(serde::Serialize)]
    struct StatusPatch<'a> {
        status: &'a crate::api::ExternalSecretStatus,
    }
    // The answer is the whole ExternalSecret again, managedFields and all, and nothing reads
    // it: skipped, not built into an object as kube's typed `patch_status` would (in a sync
    // of 10,000 ExternalSecrets, managedFields were the costliest part of every parse).
    let req = kube::core::Request::new(ExternalSecret::url_path(&(), Some(&ns)))
        .patch_subresource(
            "status",
            &name,
            &PatchParams::default(),
            &Patch::Merge(StatusPatch { status: &new }),
        )
        .map_err(kube::Error::BuildRequest)?;
    sh.kube.request::<serde::de::IgnoredAny>(req).await?;
    Ok(())
}

/// Queues an event about `es` (written in the background).
pub(super) fn publish(
    sh: &Shared,
    es: &ExternalSecret,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(crate::text::clip(note, 1000)),
        action: "Sync".into(),
        secondary: None,
    };
    sh.events.send(ev, es.object_ref(&()));
}
