//! References from ESO objects to Kubernetes objects (`esmeta` in ESO's Go source).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A key of a Secret: ESO's `SecretKeySelector`.
///
/// `namespace` is only honoured on a ClusterSecretStore; on a SecretStore it must be empty or the
/// store's own namespace (enforced by admission).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeySelector {
    /// Name of the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: Option<String>,
    /// Namespace of the Secret; only for ClusterSecretStores (referent when empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: Option<String>,
    /// Key inside the Secret's data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: Option<String>,
}

/// A ServiceAccount to request a token for: ESO's `ServiceAccountSelector`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountSelector {
    /// Name of the ServiceAccount.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
    /// Namespace of the ServiceAccount; only for ClusterSecretStores (referent when empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: Option<String>,
    /// Audiences of the requested token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audiences: Option<Vec<String>>,
}

impl SecretKeySelector {
    /// The reference as `namespace/name[key]` for messages (never the value).
    pub fn describe(&self, default_ns: &str) -> String {
        format!(
            "{}/{}[{}]",
            self.namespace.as_deref().unwrap_or(default_ns),
            self.name.as_deref().unwrap_or(""),
            self.key.as_deref().unwrap_or("")
        )
    }
}
