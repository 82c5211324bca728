//! `PushSecret` (ESO `external-secrets.io/v1alpha1`): keys of a Kubernetes Secret written into
//! Vault. Every field of ESO 2.9's schema.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::conditions::Condition;
use super::external_secret::{
    ExternalSecretTemplate, GeneratorRef, RewriteRegexp, RewriteTransform,
};

/// The finalizer a PushSecret carries while it may have to delete what it pushed (ESO's name).
pub const PUSH_SECRET_FINALIZER: &str = "pushsecret.externalsecrets.io/finalizer";

fn default_refresh_interval() -> Option<String> {
    Some("1h0m0s".into())
}
fn default_update_policy() -> Option<PushSecretUpdatePolicy> {
    Some(PushSecretUpdatePolicy::Replace)
}
fn default_deletion_policy() -> Option<PushSecretDeletionPolicy> {
    Some(PushSecretDeletionPolicy::None)
}
fn default_conversion() -> Option<PushSecretConversionStrategy> {
    Some(PushSecretConversionStrategy::None)
}
fn default_store_kind() -> Option<PushSecretStoreKind> {
    Some(PushSecretStoreKind::SecretStore)
}

/// What to push from which Secret into which stores.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "external-secrets.io",
    version = "v1alpha1",
    kind = "PushSecret",
    namespaced,
    status = "PushSecretStatus",
    shortname = "ps",
    category = "external-secrets",
    derive = "Default",
    derive = "PartialEq",
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Last Sync", type_ = "date", json_path = ".status.refreshTime")
)]
#[serde(rename_all = "camelCase")]
pub struct PushSecretSpec {
    /// Go duration between pushes; default `1h0m0s`.
    #[serde(
        default = "default_refresh_interval",
        skip_serializing_if = "Option::is_none"
    )]
    pub refresh_interval: Option<String>,
    /// The stores to push to, by name or label selector.
    #[serde(default)]
    pub secret_store_refs: Vec<PushSecretStoreRef>,
    /// `Replace` (default) or `IfNotExists`.
    #[serde(
        default = "default_update_policy",
        skip_serializing_if = "Option::is_none"
    )]
    pub update_policy: Option<PushSecretUpdatePolicy>,
    /// `None` (default) or `Delete`: remove what was pushed when it is no longer pushed.
    #[serde(
        default = "default_deletion_policy",
        skip_serializing_if = "Option::is_none"
    )]
    pub deletion_policy: Option<PushSecretDeletionPolicy>,
    /// The source: a Secret, or a generator.
    #[serde(default)]
    pub selector: PushSecretSelector,
    /// Keys to push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Vec<PushSecretData>>,
    /// Bulk pushes (ESO 2.9); accepted for compatibility, refused by admission as not
    /// supported yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_to: Option<Vec<PushSecretDataTo>>,
    /// Renders the source Secret's data before it is pushed (the ExternalSecret engine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<ExternalSecretTemplate>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PushSecretStoreKind {
    #[default]
    SecretStore,
    ClusterSecretStore,
}

impl PushSecretStoreKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PushSecretStoreKind::SecretStore => "SecretStore",
            PushSecretStoreKind::ClusterSecretStore => "ClusterSecretStore",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushSecretStoreRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    #[serde(
        default = "default_store_kind",
        skip_serializing_if = "Option::is_none"
    )]
    pub kind: Option<PushSecretStoreKind>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PushSecretUpdatePolicy {
    #[default]
    Replace,
    IfNotExists,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PushSecretDeletionPolicy {
    Delete,
    #[default]
    None,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PushSecretConversionStrategy {
    #[default]
    None,
    ReverseUnicode,
}

/// `spec.selector`: exactly one of `secret` and `generatorRef`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushSecretSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<PushSecretSecret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_ref: Option<GeneratorRef>,
}

/// The source Secret, in the PushSecret's namespace: by name or by label selector.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushSecretSecret {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

#[derive(
    Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct PushSecretRemoteRef {
    /// The Vault secret (path under the store's mount).
    pub remote_key: String,
    /// A key inside it; without one the whole value is the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<String>,
}

impl PushSecretRemoteRef {
    pub fn property(&self) -> &str {
        self.property.as_deref().unwrap_or_default()
    }

    /// The key of this target in `status.syncedPushSecrets` (ESO: `remoteKey/property`).
    pub fn status_key(&self) -> String {
        match self.property() {
            "" => self.remote_key.clone(),
            p => format!("{}/{p}", self.remote_key),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushSecretMatch {
    /// The key of the source Secret; without it the whole Secret is pushed as a JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
    pub remote_ref: PushSecretRemoteRef,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushSecretData {
    #[serde(rename = "match")]
    pub match_: PushSecretMatch,
    /// Provider specific; for Vault a `PushSecretMetadata` envelope with
    /// `spec.customMetadata` and `spec.mergePolicy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_json")]
    pub metadata: Option<Value>,
    #[serde(
        default = "default_conversion",
        skip_serializing_if = "Option::is_none"
    )]
    pub conversion_strategy: Option<PushSecretConversionStrategy>,
}

/// `spec.dataTo[]` (ESO 2.9).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushSecretDataTo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_ref: Option<PushSecretStoreRef>,
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_: Option<PushSecretDataToMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<Vec<PushSecretRewrite>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_json")]
    pub metadata: Option<Value>,
    #[serde(
        default = "default_conversion",
        skip_serializing_if = "Option::is_none"
    )]
    pub conversion_strategy: Option<PushSecretConversionStrategy>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushSecretDataToMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regexp: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushSecretRewrite {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regexp: Option<RewriteRegexp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<RewriteTransform>,
}

/// What was pushed, per store (`SecretStore/name`) and target (`remoteKey[/property]`).
pub type SyncedPushSecrets = BTreeMap<String, BTreeMap<String, PushSecretData>>;

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushSecretStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_time: Option<Time>,
    /// `metadata.generation` (as a string, as ESO) of the spec last pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_resource_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_push_secrets: Option<SyncedPushSecrets>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Any JSON, kept as written (`x-kubernetes-preserve-unknown-fields`).
pub(crate) fn any_json(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "x-kubernetes-preserve-unknown-fields": true })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_esos() {
        let ps: PushSecretSpec = serde_json::from_value(serde_json::json!({
            "secretStoreRefs": [{"name": "vault"}],
            "selector": {"secret": {"name": "src"}},
            "data": [{"match": {"secretKey": "k", "remoteRef": {"remoteKey": "app/k"}}}]
        }))
        .unwrap();
        assert_eq!(ps.refresh_interval.as_deref(), Some("1h0m0s"));
        assert_eq!(ps.update_policy, Some(PushSecretUpdatePolicy::Replace));
        assert_eq!(ps.deletion_policy, Some(PushSecretDeletionPolicy::None));
        assert_eq!(
            ps.secret_store_refs[0].kind,
            Some(PushSecretStoreKind::SecretStore)
        );
        let d = &ps.data.unwrap()[0];
        assert_eq!(
            d.conversion_strategy,
            Some(PushSecretConversionStrategy::None)
        );
        assert_eq!(d.match_.remote_ref.status_key(), "app/k");
    }

    #[test]
    fn status_keys_name_the_property() {
        let r = PushSecretRemoteRef {
            remote_key: "app/db".into(),
            property: Some("password".into()),
        };
        assert_eq!(r.status_key(), "app/db/password");
    }
}
