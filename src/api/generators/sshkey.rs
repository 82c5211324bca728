//! `SSHKey` (ESO `generators/v1/sshkey`): an SSH key pair as `privateKey` (OpenSSH PEM) and
//! `publicKey` (authorized_keys line).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SshKeyType {
    #[default]
    Rsa,
    Ecdsa,
    Ed25519,
}

fn default_key_type() -> Option<SshKeyType> {
    Some(SshKeyType::Rsa)
}

/// An SSH key pair.
#[derive(
    CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema,
)]
#[kube(
    group = "generators.external-secrets.io",
    version = "v1alpha1",
    kind = "SSHKey",
    plural = "sshkeys",
    namespaced,
    category = "external-secrets",
    category = "external-secrets-generators",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct SSHKeySpec {
    /// rsa (default), ecdsa or ed25519.
    #[serde(default = "default_key_type", skip_serializing_if = "Option::is_none")]
    #[schemars(default = "default_key_type")]
    pub key_type: Option<SshKeyType>,
    /// RSA: bits (default 2048); ECDSA: 256 (default), 384 or 521; ignored for ed25519.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 256, max = 8192))]
    pub key_size: Option<u32>,
    /// Comment of the key, in both halves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}
