//! `ClusterGenerator`: one generator spec for the whole cluster. The credentials a
//! VaultDynamicSecret spec references are read in the namespace of the ExternalSecret using it.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{PasswordSpec, SSHKeySpec, UUIDSpec, VaultDynamicSecretSpec};

/// The generator kinds a ClusterGenerator can hold here.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ClusterGeneratorKind {
    Password,
    #[serde(rename = "UUID")]
    Uuid,
    #[serde(rename = "SSHKey")]
    SshKey,
    VaultDynamicSecret,
}

/// Exactly one spec, the one `kind` names.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GeneratorSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_spec: Option<PasswordSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "uuidSpec")]
    pub uuid_spec: Option<UUIDSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "sshKeySpec")]
    pub ssh_key_spec: Option<SSHKeySpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_dynamic_secret_spec: Option<VaultDynamicSecretSpec>,
}

/// A generator usable from every namespace.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "generators.external-secrets.io",
    version = "v1alpha1",
    kind = "ClusterGenerator",
    category = "external-secrets",
    category = "external-secrets-generators",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterGeneratorSpec {
    pub kind: ClusterGeneratorKind,
    #[schemars(extend("maxProperties" = 1, "minProperties" = 1))]
    pub generator: GeneratorSpec,
}
