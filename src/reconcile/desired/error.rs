//! Why a sync cannot produce a Secret.

use crate::api::CreationPolicy;

/// Why a sync cannot produce a Secret. Messages are for `kubectl describe`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DesiredError {
    #[error("spec.target.manifest is not supported: vaultgate writes Secrets only")]
    ManifestUnsupported,
    #[error("target Secret {secret:?} is controlled by {owner}; refusing to write it")]
    ControlledByOther { secret: String, owner: String },
    #[error(
        "target Secret {secret:?} has type {existing:?} but {wanted:?} is asked for; Kubernetes cannot change a Secret's type, delete the Secret to have it recreated"
    )]
    TypeChange {
        secret: String,
        existing: String,
        wanted: String,
    },
    #[error(
        "target Secret {secret:?} is immutable and its data differs from the provider's; delete the Secret to have it recreated"
    )]
    ImmutableDiffers { secret: String },
    /// ESO's safeguard: only a Secret the ExternalSecret owns may be deleted for empty data.
    #[error(
        "could not delete secret: unable to delete secret {secret:?}: creationPolicy={creation:?} is not Owner"
    )]
    DeleteNeedsOwner {
        secret: String,
        creation: CreationPolicy,
    },
    #[error(
        "could not delete secret: target Secret {secret:?} is not controlled by this ExternalSecret (no controller ownerReference to it); it is left as it is"
    )]
    DeleteNotControlled { secret: String },
    #[error(
        "target Secret {secret:?} already exists with data this ExternalSecret did not write; with creationPolicy Owner it would be deleted together with the ExternalSecret, so it is not taken over: delete or rename it, or use creationPolicy Merge or Orphan"
    )]
    WouldAdopt { secret: String },
}
