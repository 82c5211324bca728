//! `UUID` (ESO `generators/v1/uuid`): a random (version 4) UUID under the key `uuid`.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A random UUID; the spec has no fields.
#[derive(
    CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema,
)]
#[kube(
    group = "generators.external-secrets.io",
    version = "v1alpha1",
    kind = "UUID",
    plural = "uuids",
    namespaced,
    category = "external-secrets",
    category = "external-secrets-generators",
    derive = "PartialEq"
)]
pub struct UUIDSpec {}
