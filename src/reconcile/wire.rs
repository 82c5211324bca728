//! Watched objects as their watches decode them: `metadata.managedFields` skipped unread.
//!
//! The API server sends every object with its managedFields (who last wrote which field, as
//! nested maps), and kube's types read them into JSON trees: in a sync of thousands of
//! ExternalSecrets that was nearly all of the cost of decoding the watch events (the
//! ExternalSecret twice per sync, its Secret's metadata once), and the trees were thrown away
//! as soon as the object was cached. Nothing in vaultgate reads them, so the watches decode
//! into these types, which skip the field the way unknown fields are skipped, and hand the
//! cache the usual types.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::Resource;
use kube::core::{NamespaceResourceScope, PartialObjectMeta, PartialObjectMetaExt};
use serde::{Deserialize, Deserializer};

use crate::api::{ExternalSecret, ExternalSecretSpec, ExternalSecretStatus};

/// `ObjectMeta` read without `managedFields`. Every other field is kept (see [`lean_meta`]).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeanMeta {
    annotations: Option<BTreeMap<String, String>>,
    creation_timestamp: Option<Time>,
    deletion_grace_period_seconds: Option<i64>,
    deletion_timestamp: Option<Time>,
    finalizers: Option<Vec<String>>,
    generate_name: Option<String>,
    generation: Option<i64>,
    labels: Option<BTreeMap<String, String>>,
    name: Option<String>,
    namespace: Option<String>,
    owner_references: Option<Vec<OwnerReference>>,
    resource_version: Option<String>,
    self_link: Option<String>,
    uid: Option<String>,
}

fn lean_meta<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    let m = LeanMeta::deserialize(d)?;
    // A struct literal without `..`: a field added to ObjectMeta upstream fails the build here.
    Ok(ObjectMeta {
        annotations: m.annotations,
        creation_timestamp: m.creation_timestamp,
        deletion_grace_period_seconds: m.deletion_grace_period_seconds,
        deletion_timestamp: m.deletion_timestamp,
        finalizers: m.finalizers,
        generate_name: m.generate_name,
        generation: m.generation,
        labels: m.labels,
        managed_fields: None,
        name: m.name,
        namespace: m.namespace,
        owner_references: m.owner_references,
        resource_version: m.resource_version,
        self_link: m.self_link,
        uid: m.uid,
    })
}

/// Makes a wire type the same resource as the type it is read for: same URLs, same kind, and
/// (for a Secret's metadata) the same metadata-only `Accept` header.
macro_rules! stands_for {
    ($wire:ty, $object:ty, metadata_only = $meta_only:expr) => {
        impl Resource for $wire {
            type DynamicType = ();
            type Scope = NamespaceResourceScope;

            fn kind(dt: &()) -> Cow<'_, str> {
                <$object>::kind(dt)
            }
            fn group(dt: &()) -> Cow<'_, str> {
                <$object>::group(dt)
            }
            fn version(dt: &()) -> Cow<'_, str> {
                <$object>::version(dt)
            }
            fn plural(dt: &()) -> Cow<'_, str> {
                <$object>::plural(dt)
            }
            fn metadata_api() -> bool {
                $meta_only
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

/// An ExternalSecret as its watch reads it.
#[derive(Deserialize, Clone, Debug)]
pub(crate) struct WatchedExternalSecret {
    #[serde(deserialize_with = "lean_meta")]
    metadata: ObjectMeta,
    spec: ExternalSecretSpec,
    #[serde(default)]
    status: Option<ExternalSecretStatus>,
}

stands_for!(WatchedExternalSecret, ExternalSecret, metadata_only = false);

impl From<WatchedExternalSecret> for ExternalSecret {
    fn from(w: WatchedExternalSecret) -> Self {
        ExternalSecret {
            metadata: w.metadata,
            spec: w.spec,
            status: w.status,
        }
    }
}

/// A Secret's metadata as its (metadata-only) watch reads it.
#[derive(Deserialize, Clone, Debug)]
pub(crate) struct WatchedSecretMeta {
    #[serde(deserialize_with = "lean_meta")]
    metadata: ObjectMeta,
}

stands_for!(WatchedSecretMeta, Secret, metadata_only = true);

impl From<WatchedSecretMeta> for PartialObjectMeta<Secret> {
    fn from(w: WatchedSecretMeta) -> Self {
        w.metadata.into_response_partial()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every field of ObjectMeta set, managedFields included.
    fn full_meta() -> serde_json::Value {
        json!({
            "annotations": {"a": "1"},
            "creationTimestamp": "2026-11-29T10:00:00Z",
            "deletionGracePeriodSeconds": 30,
            "deletionTimestamp": "2026-11-29T11:00:00Z",
            "finalizers": ["external-secrets.io/externalsecret-cleanup"],
            "generateName": "app-",
            "generation": 3,
            "labels": {"l": "2"},
            "managedFields": [{
                "apiVersion": "external-secrets.io/v1",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {"f:data": {}, ".": {}}},
                "manager": "kubectl",
                "operation": "Apply",
                "time": "2026-11-29T10:00:00Z"
            }],
            "name": "app",
            "namespace": "team",
            "ownerReferences": [{
                "apiVersion": "external-secrets.io/v1",
                "kind": "ExternalSecret",
                "name": "app",
                "uid": "u-1",
                "controller": true
            }],
            "resourceVersion": "42",
            "selfLink": "/apis/x",
            "uid": "u-2"
        })
    }

    #[test]
    fn metadata_is_read_as_kube_reads_it_less_the_managed_fields() {
        let meta = full_meta();
        let mut want: ObjectMeta = serde_json::from_value(meta.clone()).unwrap();
        assert!(
            want.managed_fields.is_some(),
            "the fixture carries managedFields"
        );
        want.managed_fields = None;
        let es = json!({
            "apiVersion": "external-secrets.io/v1",
            "kind": "ExternalSecret",
            "metadata": meta,
            "spec": {"secretStoreRef": {"name": "vault"}, "data": [
                {"secretKey": "k", "remoteRef": {"key": "a/b"}}
            ]},
            "status": {"refreshTime": "2026-11-29T10:00:00Z", "conditions": []}
        });
        let got: ExternalSecret = serde_json::from_value::<WatchedExternalSecret>(es.clone())
            .unwrap()
            .into();
        let mut direct: ExternalSecret = serde_json::from_value(es).unwrap();
        direct.metadata.managed_fields = None;
        assert_eq!(got.metadata, want);
        assert_eq!(got, direct);

        let partial = json!({
            "apiVersion": "meta.k8s.io/v1",
            "kind": "PartialObjectMetadata",
            "metadata": full_meta(),
        });
        let got: PartialObjectMeta<Secret> = serde_json::from_value::<WatchedSecretMeta>(partial)
            .unwrap()
            .into();
        assert_eq!(got.metadata, want);
    }

    #[test]
    fn absent_and_null_fields_read_as_kube_reads_them() {
        for meta in [
            json!({}),
            json!({"name": "x", "labels": null, "managedFields": null}),
        ] {
            let want: ObjectMeta = serde_json::from_value(meta.clone()).unwrap();
            let got: WatchedSecretMeta =
                serde_json::from_value(json!({ "metadata": meta })).unwrap();
            assert_eq!(got.metadata, want, "{meta}");
        }
        // An ExternalSecret without a spec is refused, as the derived type refuses it.
        let bad = json!({"metadata": {"name": "x"}});
        assert!(serde_json::from_value::<ExternalSecret>(bad.clone()).is_err());
        assert!(serde_json::from_value::<WatchedExternalSecret>(bad).is_err());
    }

    #[test]
    fn the_watches_ask_for_what_the_cached_types_ask_for() {
        assert_eq!(
            WatchedExternalSecret::url_path(&(), Some("ns")),
            ExternalSecret::url_path(&(), Some("ns"))
        );
        assert_eq!(
            WatchedSecretMeta::url_path(&(), None),
            PartialObjectMeta::<Secret>::url_path(&(), None)
        );
        assert!(!WatchedExternalSecret::metadata_api());
        assert_eq!(
            WatchedSecretMeta::metadata_api(),
            PartialObjectMeta::<Secret>::metadata_api()
        );
        assert_eq!(
            WatchedExternalSecret::api_version(&()),
            ExternalSecret::api_version(&())
        );
    }
}
