//! Who may write or delete a target Secret: controller ownerReferences, adoption, and the
//! fields each field manager applied.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};

use super::error::DesiredError;
use crate::api::{CreationPolicy, ExternalSecret};
use crate::reconcile::hash::data_hash;

/// Kubernetes refuses field manager names longer than this.
const MAX_FIELD_MANAGER: usize = 128;

/// The server-side-apply field manager of one ExternalSecret. Distinct per ExternalSecret so that
/// two of them merging into one Secret each own (and remove) only their own keys.
pub fn field_manager(namespace: &str, name: &str) -> String {
    let full = format!("vaultgate/{namespace}/{name}");
    if full.len() <= MAX_FIELD_MANAGER {
        return full;
    }
    // Keep it readable and unique: a prefix plus a hash of the whole name.
    let digest = data_hash([(&full, b"".as_slice())]);
    format!(
        "{}-{}",
        crate::text::prefix(&full, MAX_FIELD_MANAGER - 17),
        &digest[..16]
    )
}

/// The controller ownerReference ESO puts on Secrets with creationPolicy Owner.
pub fn owner_ref(es: &ExternalSecret) -> OwnerReference {
    OwnerReference {
        api_version: ExternalSecret::api_version(&()).into_owned(),
        kind: ExternalSecret::kind(&()).into_owned(),
        name: es.name_any(),
        uid: es.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether the Secret's controller ownerReference is this ExternalSecret (Kubernetes'
/// `IsControlledBy`: by uid). The shared managed label proves nothing: any ExternalSecret, ESO,
/// or a person can set it.
pub fn is_controlled_by(es: &ExternalSecret, s: &Secret) -> bool {
    controller_of(s).is_some_and(|o| {
        o.kind == "ExternalSecret" && es.metadata.uid.as_ref().is_some_and(|u| *u == o.uid)
    })
}

fn controller_of(s: &Secret) -> Option<&OwnerReference> {
    s.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
}

/// A Secret controlled by another ExternalSecret is never written; with creationPolicy Owner, no
/// other controller at all is accepted (Kubernetes allows only one), and a Secret nobody
/// controls is taken over only if [`adoptable`].
pub fn check_controller(
    es: &ExternalSecret,
    existing: &Secret,
    creation: CreationPolicy,
) -> Result<(), DesiredError> {
    let Some(c) = controller_of(existing) else {
        if creation == CreationPolicy::Owner && !adoptable(es, existing) {
            return Err(DesiredError::WouldAdopt {
                secret: existing.name_any(),
            });
        }
        return Ok(());
    };
    let ours = c.kind == "ExternalSecret" && Some(&c.uid) == es.metadata.uid.as_ref();
    let other_es = c.kind == "ExternalSecret" && !ours;
    if other_es || (creation == CreationPolicy::Owner && !ours) {
        return Err(DesiredError::ControlledByOther {
            secret: existing.name_any(),
            owner: format!("{} {:?}", c.kind, c.name),
        });
    }
    Ok(())
}

/// Whether creationPolicy Owner may make this ExternalSecret the controller of a Secret nobody
/// controls (Kubernetes then deletes the Secret with it): only when the Secret holds no data, or
/// already carries this ExternalSecret's marks (fields applied by its field manager, as after an
/// Orphan sync; fields written by ESO for an ExternalSecret of this name; an ownerReference to
/// it).
pub fn adoptable(es: &ExternalSecret, existing: &Secret) -> bool {
    if existing.data.as_ref().is_none_or(|d| d.is_empty()) {
        return true;
    }
    let name = es.name_any();
    let ours = field_manager(&es.namespace().unwrap_or_default(), &name);
    let eso = format!("{ESO_FIELD_OWNER_PREFIX}{name}");
    let by_manager = existing
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|f| f.manager.as_deref())
        .any(|m| m == ours || m == eso);
    let referenced = existing
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "ExternalSecret" && es.metadata.uid.as_ref() == Some(&o.uid));
    by_manager || referenced
}

/// ESO's field owner for the Secrets of an ExternalSecret (followed by its name).
const ESO_FIELD_OWNER_PREFIX: &str = "externalsecrets.external-secrets.io/";

/// The fields of a Secret one field manager applied, read from `managedFields`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OwnedFields {
    /// Whether the manager has an Apply entry at all (without one, nothing can be concluded).
    pub known: bool,
    pub data: BTreeSet<String>,
    pub labels: BTreeSet<String>,
    pub annotations: BTreeSet<String>,
    pub owner_uids: BTreeSet<String>,
    pub finalizers: BTreeSet<String>,
}

impl OwnedFields {
    pub fn of(s: &Secret, manager: &str) -> Self {
        let mut out = OwnedFields::default();
        for entry in s.metadata.managed_fields.iter().flatten() {
            if entry.manager.as_deref() != Some(manager)
                || entry.operation.as_deref() != Some("Apply")
                || entry.subresource.as_deref().is_some_and(|s| !s.is_empty())
            {
                continue;
            }
            out.known = true;
            let Some(fields) = entry.fields_v1.as_ref().map(|f| &f.0) else {
                continue;
            };
            let keys = |v: Option<&serde_json::Value>| -> BTreeSet<String> {
                v.and_then(|v| v.as_object())
                    .into_iter()
                    .flatten()
                    .filter_map(|(k, _)| k.strip_prefix("f:").map(String::from))
                    .collect()
            };
            out.data.extend(keys(fields.get("f:data")));
            let meta = fields.get("f:metadata");
            out.labels
                .extend(keys(meta.and_then(|m| m.get("f:labels"))));
            out.annotations
                .extend(keys(meta.and_then(|m| m.get("f:annotations"))));
            // A set of strings: keys look like `v:"example.com/keep"`.
            for (k, _) in meta
                .and_then(|m| m.get("f:finalizers"))
                .and_then(|v| v.as_object())
                .into_iter()
                .flatten()
            {
                if let Some(json) = k.strip_prefix("v:")
                    && let Ok(name) = serde_json::from_str::<String>(json)
                {
                    out.finalizers.insert(name);
                }
            }
            for (k, _) in meta
                .and_then(|m| m.get("f:ownerReferences"))
                .and_then(|v| v.as_object())
                .into_iter()
                .flatten()
            {
                // Keys look like `k:{"uid":"…"}`.
                if let Some(json) = k.strip_prefix("k:")
                    && let Ok(v) = serde_json::from_str::<serde_json::Value>(json)
                    && let Some(uid) = v.get("uid").and_then(|u| u.as_str())
                {
                    out.owner_uids.insert(uid.to_string());
                }
            }
        }
        out
    }
}
