//! `VaultDynamicSecret` (ESO `generators/v1/vault`): one Vault call whose answer becomes the
//! Secret's keys, logged in with the same provider block a store has.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::{RetrySettings, VaultProvider};

/// Which part of Vault's answer becomes the Secret's keys.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum VaultDynamicSecretResultType {
    /// The answer's `data`.
    #[default]
    Data,
    /// The answer's `auth` (a login's token).
    Auth,
    /// The whole answer.
    Raw,
}

fn default_result_type() -> Option<VaultDynamicSecretResultType> {
    Some(VaultDynamicSecretResultType::Data)
}

/// A Vault path called on every sync (e.g. `database/creds/<role>`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "generators.external-secrets.io",
    version = "v1alpha1",
    kind = "VaultDynamicSecret",
    namespaced,
    category = "external-secrets",
    category = "external-secrets-generators",
    derive = "Default",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct VaultDynamicSecretSpec {
    /// Controller class: only the vaultgate of that class uses this generator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
    /// GET (default), LIST, DELETE, or a write (POST, PUT) with `parameters`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The body of a write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::push_secret::any_json")]
    pub parameters: Option<Value>,
    /// Query parameters of a GET.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get_parameters: Option<BTreeMap<String, Vec<String>>>,
    #[serde(
        default = "default_result_type",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(default = "default_result_type")]
    pub result_type: Option<VaultDynamicSecretResultType>,
    /// An answer without content is no error (and gives no keys).
    #[serde(default)]
    pub allow_empty_response: bool,
    /// The Vault provider, as in a SecretStore.
    pub provider: VaultProvider,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_settings: Option<RetrySettings>,
    /// The full Vault path (with its mount), e.g. `database/creds/app`.
    pub path: String,
}
