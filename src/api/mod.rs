//! The `external-secrets.io` API types vaultgate serves: ESO's ExternalSecret, SecretStore and
//! ClusterSecretStore (Vault provider), in `v1` (stored) and `v1beta1` (same schema); PushSecret and
//! ClusterPushSecret in `v1alpha1`; the generators in
//! `generators.external-secrets.io/v1alpha1` (`generators`).

pub mod cluster_external_secret;
pub mod cluster_push_secret;
pub mod conditions;
pub mod duration;
pub mod entry_stores;
pub mod external_secret;
pub mod generators;
pub mod push_secret;
pub mod refs;
pub mod selector;
pub mod store;

pub use cluster_external_secret::*;
pub use cluster_push_secret::*;
pub use conditions::Condition;
pub use external_secret::*;
pub use push_secret::*;
pub use refs::*;
pub use store::*;

/// The API group.
pub const GROUP: &str = "external-secrets.io";
/// Versions served, the first one stored.
pub const VERSIONS: [&str; 2] = ["v1", "v1beta1"];
/// Label vaultgate (and ESO) puts on every Secret it manages.
pub const LABEL_MANAGED: &str = "reconcile.external-secrets.io/managed";
/// Annotation with a hash of the data vaultgate wrote.
pub const ANNOTATION_DATA_HASH: &str = "reconcile.external-secrets.io/data-hash";
