//! Generators: values made instead of read (ESO's `generators.external-secrets.io`): Password,
//! UUID, SSHKey and VaultDynamicSecret. Each kind's making is a file here; this module holds
//! what they all return.

use std::collections::BTreeMap;

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

pub mod lease;
pub mod password;
pub mod sshkey;
pub mod uuid;
