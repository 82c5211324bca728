//! The `generators.external-secrets.io/v1alpha1` kinds vaultgate serves: `Password`, `UUID`,
//! `SSHKey`, `VaultDynamicSecret` (namespaced) and `ClusterGenerator` (cluster-scoped, holding
//! one of those four specs). Every field of ESO 2.9's schemas.

pub mod cluster;
pub mod password;
pub mod sshkey;
pub mod uuid;
pub mod vault_dynamic;

pub use cluster::*;
pub use password::*;
pub use sshkey::*;
pub use uuid::*;
pub use vault_dynamic::*;

/// The API group of the generators.
pub const GROUP: &str = "generators.external-secrets.io";
/// The one version served.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of the generators.
pub const API_VERSION: &str = "generators.external-secrets.io/v1alpha1";
