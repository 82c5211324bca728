//! What the target Secret should be, as a function of data: the ExternalSecret, the values read
//! from Vault and the Secret as it is now. No I/O here; the reconciler carries out the [`Plan`].

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

mod error;
mod ownership;
#[cfg(test)]
mod tests;

pub use error::DesiredError;
pub use ownership::*;

use super::hash::{LAST_APPLIED, data_hash};
use crate::api::{
    ANNOTATION_DATA_HASH, CreationPolicy, DeletionPolicy, ExternalSecret, LABEL_MANAGED,
};

/// The finalizer ESO uses to clean up the target Secret (deletionPolicy Delete / Merge).
pub const FINALIZER: &str = "externalsecrets.external-secrets.io/externalsecret-cleanup";

/// What to do with the target Secret after a successful read from Vault.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Server-side apply `Write::secret` with the ExternalSecret's field manager.
    Apply(Box<Write>),
    /// Write nothing.
    Skip(Skip),
    /// Delete the Secret: deletionPolicy Delete and the provider returned no data.
    Delete,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    /// The apply body: everything this ExternalSecret wants to own on the Secret.
    pub secret: Secret,
    /// Hash of the Secret's data once written (also in the annotation).
    pub hash: String,
    /// No Secret exists yet.
    pub creates: bool,
    /// Keys of the existing Secret that must go although another manager wrote them: the
    /// ExternalSecret owns the whole Secret (Owner/Orphan), so it holds exactly the provider data.
    pub remove_foreign_keys: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// creationPolicy None.
    CreationPolicyNone,
    /// creationPolicy Merge and no Secret to merge into (Ready True / SecretMissing).
    MergeTargetMissing,
    /// The target is immutable and already written.
    Immutable,
    /// The Secret already is what it should be.
    UpToDate,
    /// deletionPolicy Delete, the provider has no data, and there is no Secret to delete.
    NothingToDelete,
    /// deletionPolicy Retain and the provider has no data: the Secret is left as it is.
    RetainedEmpty,
}

/// What to do with the Secret when its ExternalSecret is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleanup {
    Nothing,
    DeleteSecret,
    /// Apply an empty intent with the ExternalSecret's field manager: the API server removes the
    /// keys, labels and annotations only this ExternalSecret wrote.
    RemoveOurFields,
}

pub fn creation_policy(es: &ExternalSecret) -> CreationPolicy {
    es.spec
        .target
        .as_ref()
        .and_then(|t| t.creation_policy)
        .unwrap_or_default()
}

pub fn deletion_policy(es: &ExternalSecret) -> DeletionPolicy {
    es.spec
        .target
        .as_ref()
        .and_then(|t| t.deletion_policy)
        .unwrap_or_default()
}

/// The Secret's name: `spec.target.name`, or the ExternalSecret's own name.
pub fn target_name(es: &ExternalSecret) -> String {
    es.spec
        .target
        .as_ref()
        .and_then(|t| t.name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| es.name_any())
}

fn immutable(es: &ExternalSecret) -> bool {
    es.spec
        .target
        .as_ref()
        .and_then(|t| t.immutable)
        .unwrap_or(false)
}

/// Whether deleting the ExternalSecret has something to clean up, so that a finalizer is needed.
pub fn needs_finalizer(es: &ExternalSecret) -> bool {
    deletion_policy(es) != DeletionPolicy::Retain && creation_policy(es) != CreationPolicy::None
}

/// Refuses what this reconciler does not do yet, before anything is read from Vault.
pub fn check_supported(es: &ExternalSecret) -> Result<(), DesiredError> {
    let Some(target) = es.spec.target.as_ref() else {
        return Ok(());
    };
    if target.manifest.is_some() {
        return Err(DesiredError::ManifestUnsupported);
    }
    Ok(())
}

/// The inputs of one sync decision.
pub struct Inputs<'a> {
    pub es: &'a ExternalSecret,
    /// The values read from Vault, by Secret key.
    pub data: &'a BTreeMap<String, Vec<u8>>,
    /// The target Secret as read from the API server, if it exists.
    pub existing: Option<&'a Secret>,
    /// `target.template` rendered over `data`: what the Secret holds instead of the raw values.
    pub rendered: Option<&'a crate::template::Rendered>,
}

/// Decides what the target Secret should become.
pub fn desired(inp: &Inputs) -> Result<Plan, DesiredError> {
    check_supported(inp.es)?;
    let es = inp.es;
    let creation = creation_policy(es);
    let name = target_name(es);
    if creation == CreationPolicy::None {
        return Ok(Plan::Skip(Skip::CreationPolicyNone));
    }
    if let Some(existing) = inp.existing {
        check_controller(es, existing, creation)?;
    }
    if inp.data.is_empty() {
        match deletion_policy(es) {
            // ESO returns early: a folder renamed or a store pointed elsewhere must not empty
            // the Secret.
            DeletionPolicy::Retain => return Ok(Plan::Skip(Skip::RetainedEmpty)),
            DeletionPolicy::Delete => return empty_with_delete(es, creation, inp.existing, name),
            // ESO: the keys this ExternalSecret wrote are removed, as below.
            DeletionPolicy::Merge => {}
        }
    }
    // From here on the Secret's data is the rendered template's, when there is one.
    let data: &BTreeMap<String, Vec<u8>> = inp.rendered.map(|r| &r.data).unwrap_or(inp.data);
    let merge = match (creation, inp.existing) {
        (CreationPolicy::Merge, None) => return Ok(Plan::Skip(Skip::MergeTargetMissing)),
        (CreationPolicy::Merge | CreationPolicy::CreateOrMerge, Some(_)) => true,
        _ => false,
    };
    let manager = field_manager(&es.namespace().unwrap_or_default(), &es.name_any());
    let owned = inp
        .existing
        .map(|s| OwnedFields::of(s, &manager))
        .unwrap_or_default();

    // The data the Secret will hold once written.
    let final_data: BTreeMap<String, Vec<u8>> = match (merge, inp.existing) {
        (true, Some(existing)) => {
            let mut d = secret_data(existing);
            // Keys only this ExternalSecret wrote and no longer produces are removed by the apply.
            d.retain(|k, _| !owned.data.contains(k) || data.contains_key(k));
            d.extend(data.iter().map(|(k, v)| (k.clone(), v.clone())));
            d
        }
        _ => data.clone(),
    };
    let hash = data_hash(&final_data);

    if let Some(existing) = inp.existing
        && existing.immutable == Some(true)
    {
        if immutable(es) {
            return Ok(Plan::Skip(Skip::Immutable));
        }
        if data_hash(&secret_data(existing)) != hash {
            return Err(DesiredError::ImmutableDiffers { secret: name });
        }
    }

    let template = es.spec.target.as_ref().and_then(|t| t.template.as_ref());
    let wanted_type = inp
        .rendered
        .and_then(|r| r.type_.clone())
        .or_else(|| template.and_then(|t| t.type_.clone()))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "Opaque".into());
    if !merge && let Some(existing) = inp.existing {
        let have = existing.type_.clone().unwrap_or_else(|| "Opaque".into());
        if have != wanted_type {
            return Err(DesiredError::TypeChange {
                secret: name,
                existing: have,
                wanted: wanted_type,
            });
        }
    }

    let mut labels: BTreeMap<String, String> = es.labels().clone();
    let mut annotations: BTreeMap<String, String> = es.annotations().clone();
    annotations.remove(LAST_APPLIED);
    match inp.rendered {
        // Rendered: template.metadata and templateFrom targets, already evaluated.
        Some(r) => {
            labels.extend(r.labels.clone());
            annotations.extend(r.annotations.clone());
        }
        None => {
            if let Some(meta) = template.and_then(|t| t.metadata.as_ref()) {
                labels.extend(meta.labels.clone().unwrap_or_default());
                annotations.extend(meta.annotations.clone().unwrap_or_default());
            }
        }
    }
    labels.insert(LABEL_MANAGED.into(), "true".into());
    annotations.insert(ANNOTATION_DATA_HASH.into(), hash.clone());

    let owner_references = (creation == CreationPolicy::Owner).then(|| vec![owner_ref(es)]);
    // ESO puts the template's finalizers on the Secret; applied, they are ours to withdraw.
    let finalizers = template
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.finalizers.clone())
        .filter(|f| !f.is_empty());
    let body = Secret {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: es.namespace(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references,
            finalizers,
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.clone(), ByteString(v.clone())))
                .collect(),
        ),
        // A merge leaves the type to whoever created the Secret.
        type_: (!merge).then_some(wanted_type),
        immutable: immutable(es).then_some(true),
        ..Default::default()
    };

    let remove_foreign_keys = match (merge, inp.existing) {
        (false, Some(existing)) => secret_data(existing)
            .into_keys()
            .filter(|k| !data.contains_key(k))
            .collect(),
        _ => vec![],
    };

    if let Some(existing) = inp.existing
        && remove_foreign_keys.is_empty()
        && up_to_date(&body, existing, &owned, &final_data)
    {
        return Ok(Plan::Skip(Skip::UpToDate));
    }
    Ok(Plan::Apply(Box::new(Write {
        secret: body,
        hash,
        creates: inp.existing.is_none(),
        remove_foreign_keys,
    })))
}

/// deletionPolicy Delete and no provider data: the Secret goes, if this ExternalSecret owns it.
fn empty_with_delete(
    es: &ExternalSecret,
    creation: CreationPolicy,
    existing: Option<&Secret>,
    name: String,
) -> Result<Plan, DesiredError> {
    if creation != CreationPolicy::Owner {
        return Err(DesiredError::DeleteNeedsOwner {
            secret: name,
            creation,
        });
    }
    match existing {
        None => Ok(Plan::Skip(Skip::NothingToDelete)),
        Some(s) if is_controlled_by(es, s) => Ok(Plan::Delete),
        Some(_) => Err(DesiredError::DeleteNotControlled { secret: name }),
    }
}

/// What to do with the target Secret when the ExternalSecret goes away.
pub fn on_delete(es: &ExternalSecret, existing: Option<&Secret>) -> Cleanup {
    let Some(existing) = existing else {
        return Cleanup::Nothing;
    };
    match (deletion_policy(es), creation_policy(es)) {
        (DeletionPolicy::Retain, _) | (_, CreationPolicy::None) => Cleanup::Nothing,
        // Never delete a Secret the ExternalSecret only merged into.
        (DeletionPolicy::Delete, CreationPolicy::Merge) | (DeletionPolicy::Merge, _) => {
            Cleanup::RemoveOurFields
        }
        (DeletionPolicy::Delete, _) if is_controlled_by(es, existing) => Cleanup::DeleteSecret,
        (DeletionPolicy::Delete, _) => Cleanup::Nothing,
    }
}

/// The Secret's data as plain bytes.
pub fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    s.data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect()
}

/// Whether applying `body` would change nothing. Conservative: without managedFields for our
/// manager we cannot see what a new apply would remove, so we apply.
fn up_to_date(
    body: &Secret,
    existing: &Secret,
    owned: &OwnedFields,
    final_data: &BTreeMap<String, Vec<u8>>,
) -> bool {
    if !owned.known {
        return false;
    }
    if secret_data(existing) != *final_data {
        return false;
    }
    let subset = |want: &Option<BTreeMap<String, String>>,
                  have: &Option<BTreeMap<String, String>>| {
        want.iter()
            .flatten()
            .all(|(k, v)| have.as_ref().and_then(|h| h.get(k)) == Some(v))
    };
    let want_labels = &body.metadata.labels;
    let want_annotations = &body.metadata.annotations;
    if !subset(want_labels, &existing.metadata.labels)
        || !subset(want_annotations, &existing.metadata.annotations)
    {
        return false;
    }
    // Something we applied before and no longer want: the apply would remove it.
    let wanted = |m: &Option<BTreeMap<String, String>>, k: &String| {
        m.as_ref().is_some_and(|m| m.contains_key(k))
    };
    if owned.labels.iter().any(|k| !wanted(want_labels, k))
        || owned
            .annotations
            .iter()
            .any(|k| !wanted(want_annotations, k))
    {
        return false;
    }
    let want_finalizers: BTreeSet<&String> = body.metadata.finalizers.iter().flatten().collect();
    let have_finalizers: BTreeSet<&String> =
        existing.metadata.finalizers.iter().flatten().collect();
    if !want_finalizers.is_subset(&have_finalizers)
        || owned
            .finalizers
            .iter()
            .any(|f| !want_finalizers.contains(f))
    {
        return false;
    }
    let want_owner: BTreeSet<String> = body
        .metadata
        .owner_references
        .iter()
        .flatten()
        .map(|o| o.uid.clone())
        .collect();
    let have_owner: BTreeSet<String> = existing
        .metadata
        .owner_references
        .iter()
        .flatten()
        .map(|o| o.uid.clone())
        .collect();
    if !want_owner.is_subset(&have_owner)
        || owned.owner_uids.iter().any(|u| !want_owner.contains(u))
    {
        return false;
    }
    if body.immutable.is_some() && existing.immutable != body.immutable {
        return false;
    }
    true
}
