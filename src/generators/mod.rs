//! Generators: values made instead of read (ESO's `generators.external-secrets.io`): Password,
//! UUID, SSHKey and VaultDynamicSecret. Each kind's making is a file here; this module holds
//! what they all return and runs the one a reference resolved to.

pub mod lease;
pub mod password;
pub mod sshkey;
pub mod uuid;
pub mod vault_dynamic;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::api::generators::{
    ClusterGeneratorKind, ClusterGeneratorSpec, PasswordSpec, SSHKeySpec, VaultDynamicSecretSpec,
};
use crate::api::{SecretStoreProvider, SecretStoreSpec, StoreKind};
use crate::vault::{StoreHandle, VaultClients, VaultError};

/// What a generator made: Secret keys and, for a leased Vault answer, its lease.
#[derive(Clone, Debug, PartialEq)]
pub struct Generated {
    pub data: BTreeMap<String, Vec<u8>>,
    pub lease: Option<Lease>,
}

/// A Vault lease as the answer gave it (`lease_id`, `lease_duration` seconds, `renewable`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lease {
    pub id: String,
    pub duration_s: u64,
    pub renewable: bool,
}

/// Which generator entry of an ExternalSecret made a lease: `spec.dataFrom[index]` naming
/// `kind` `name` (in the ExternalSecret's namespace, or cluster-wide for ClusterGenerator).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GeneratorRefKey {
    pub index: usize,
    pub kind: String,
    pub name: String,
}

/// The spec of a generator object, whatever its kind.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    Password(PasswordSpec),
    Uuid,
    SshKey(SSHKeySpec),
    VaultDynamic(Box<VaultDynamicSecretSpec>),
}

impl Source {
    /// The spec a ClusterGenerator holds: the one its `kind` names, and no other.
    pub fn from_cluster(spec: &ClusterGeneratorSpec, at: &str) -> Result<Source, String> {
        let g = &spec.generator;
        let given = [
            g.password_spec.is_some(),
            g.uuid_spec.is_some(),
            g.ssh_key_spec.is_some(),
            g.vault_dynamic_secret_spec.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if given != 1 {
            return Err(format!(
                "{at}.generator: set exactly one generator spec ({given} set)"
            ));
        }
        let kind = serde_json::to_value(spec.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let wrong = |field: &str| format!("{at}.generator: kind is {kind} but {field} is not set");
        match spec.kind {
            ClusterGeneratorKind::Password => g
                .password_spec
                .clone()
                .map(Source::Password)
                .ok_or_else(|| wrong("passwordSpec")),
            ClusterGeneratorKind::Uuid => g
                .uuid_spec
                .as_ref()
                .map(|_| Source::Uuid)
                .ok_or_else(|| wrong("uuidSpec")),
            ClusterGeneratorKind::SshKey => g
                .ssh_key_spec
                .clone()
                .map(Source::SshKey)
                .ok_or_else(|| wrong("sshKeySpec")),
            ClusterGeneratorKind::VaultDynamicSecret => g
                .vault_dynamic_secret_spec
                .clone()
                .map(|s| Source::VaultDynamic(Box::new(s)))
                .ok_or_else(|| wrong("vaultDynamicSecretSpec")),
        }
    }
}

/// A generator object found for a reference.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// `Password`, …, or `ClusterGenerator`.
    pub kind: String,
    /// `None` for a ClusterGenerator.
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
    pub generation: i64,
    pub source: Source,
}

impl Resolved {
    /// `Password ns/name` or `ClusterGenerator name`, for messages.
    pub fn display(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }

    /// The login identity of a VaultDynamicSecret as the client cache knows it: a store of
    /// the ExternalSecret's namespace, so that every credential it references is read there
    /// (ESO's rule for generators, a ClusterGenerator's included). Its name has a `/`, which
    /// no store's can have, so it never shares a cache entry with a real store.
    pub fn vault_handle(&self, spec: &VaultDynamicSecretSpec, es_namespace: &str) -> StoreHandle {
        StoreHandle {
            kind: StoreKind::SecretStore,
            name: format!("{}/{}", self.kind, self.name),
            namespace: Some(es_namespace.to_string()),
            uid: self.uid.clone(),
            resource_version: format!("generation-{}", self.generation),
            spec: Arc::new(SecretStoreSpec {
                provider: SecretStoreProvider {
                    vault: Some(spec.provider.clone()),
                },
                retry_settings: spec.retry_settings.clone(),
                ..Default::default()
            }),
        }
    }
}

/// Why a generator made nothing. `Vault` keeps Vault's error, whose kind decides retries.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("{0}")]
    Spec(String),
    #[error("{0}")]
    Vault(#[source] VaultError),
}

/// Runs a generator once. RSA keys are made off the async runtime.
pub async fn generate(
    g: &Resolved,
    vault: &VaultClients,
    es_namespace: &str,
) -> Result<Generated, GenerateError> {
    let made = |data| Generated { data, lease: None };
    match &g.source {
        Source::Password(spec) => {
            let plan =
                password::plan(spec, "spec").map_err(|e| GenerateError::Spec(e.join("; ")))?;
            Ok(made(password::generate(&plan, &mut rand::rng())))
        }
        Source::Uuid => Ok(made(uuid::generate(&mut rand::rng()))),
        Source::SshKey(spec) => {
            let plan = sshkey::plan(spec, "spec").map_err(GenerateError::Spec)?;
            let comment = spec.comment.clone().unwrap_or_default();
            let data = tokio::task::spawn_blocking(move || sshkey::generate(&plan, &comment))
                .await
                .map_err(|e| GenerateError::Spec(format!("SSH key generation stopped: {e}")))?
                .map_err(GenerateError::Spec)?;
            Ok(made(data))
        }
        Source::VaultDynamic(spec) => {
            let call = vault_dynamic::call(spec, "spec").map_err(GenerateError::Spec)?;
            let client = vault
                .client(&g.vault_handle(spec, es_namespace), es_namespace)
                .await
                .map_err(GenerateError::Vault)?;
            let answer = client
                .generate(&spec.path, &call)
                .await
                .map_err(GenerateError::Vault)?;
            vault_dynamic::outcome(spec, answer.as_ref()).map_err(GenerateError::Spec)
        }
    }
}

/// The `dataFrom` entries that name a generator, with their index.
pub fn generator_refs(
    spec: &crate::api::ExternalSecretSpec,
) -> Vec<(usize, &crate::api::GeneratorRef)> {
    spec.data_from
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, df)| {
            df.source_ref
                .as_ref()
                .and_then(|s| s.generator_ref.as_ref())
                .map(|g| (i, g))
        })
        .collect()
}

/// Whether an ExternalSecret reads its `secretStoreRef`: not when every entry is a
/// generator's or names its own store (ESO's generator examples name no store).
pub fn needs_store(spec: &crate::api::ExternalSecretSpec) -> bool {
    use crate::api::entry_stores::{data_from_has_own_source, data_has_own_store};
    let no_entries = spec.data.as_ref().is_none_or(|d| d.is_empty())
        && spec.data_from.as_ref().is_none_or(|d| d.is_empty());
    no_entries
        || spec.data.iter().flatten().any(|d| !data_has_own_store(d))
        || spec
            .data_from
            .iter()
            .flatten()
            .any(|df| !data_from_has_own_source(df))
}

/// The name a generator reference's kind has in manifests (`Password`, `SSHKey`, …).
pub fn kind_name(kind: crate::api::GeneratorKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn es_spec(v: serde_json::Value) -> crate::api::ExternalSecretSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_store_is_needed_unless_every_entry_has_its_own_source() {
        let generator = json!({"sourceRef": {"generatorRef": {"kind": "Password", "name": "pw"}}});
        let extract = json!({"extract": {"key": "app"}});
        let own_store =
            json!({"extract": {"key": "app"}, "sourceRef": {"storeRef": {"name": "b"}}});
        let own_data = json!({"secretKey": "a", "remoteRef": {"key": "k"},
                              "sourceRef": {"storeRef": {"name": "b"}}});
        for (spec, needs) in [
            (json!({"dataFrom": [generator]}), false),
            (json!({"dataFrom": [generator, generator]}), false),
            (json!({"dataFrom": [generator, extract]}), true),
            (
                json!({"dataFrom": [generator], "data": [{"secretKey": "a", "remoteRef": {"key": "k"}}]}),
                true,
            ),
            (json!({"dataFrom": []}), true),
            (json!({}), true),
            (json!({"dataFrom": [generator, own_store.clone()]}), false),
            (json!({"data": [own_data.clone()]}), false),
            (
                json!({"data": [own_data, {"secretKey": "b", "remoteRef": {"key": "k"}}]}),
                true,
            ),
            (json!({"dataFrom": [own_store, extract]}), true),
        ] {
            assert_eq!(needs_store(&es_spec(spec.clone())), needs, "{spec}");
        }
    }

    #[test]
    fn a_cluster_generator_holds_the_spec_its_kind_names() {
        let cg =
            |v: serde_json::Value| -> ClusterGeneratorSpec { serde_json::from_value(v).unwrap() };
        assert_eq!(
            Source::from_cluster(
                &cg(json!({"kind": "UUID", "generator": {"uuidSpec": {}}})),
                "spec"
            ),
            Ok(Source::Uuid)
        );
        assert!(matches!(
            Source::from_cluster(
                &cg(json!({"kind": "Password", "generator": {"passwordSpec": {"length": 8}}})),
                "spec"
            ),
            Ok(Source::Password(p)) if p.length == 8
        ));
        assert_eq!(
            Source::from_cluster(
                &cg(json!({"kind": "Password", "generator": {"uuidSpec": {}}})),
                "spec"
            ),
            Err("spec.generator: kind is Password but passwordSpec is not set".to_string())
        );
        assert_eq!(
            Source::from_cluster(
                &cg(json!({"kind": "UUID", "generator": {"uuidSpec": {}, "sshKeySpec": {}}})),
                "spec"
            ),
            Err("spec.generator: set exactly one generator spec (2 set)".to_string())
        );
    }
}
