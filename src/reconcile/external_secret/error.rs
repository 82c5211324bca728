//! Why a sync failed. The message is what `kubectl describe` shows (the Ready condition and
//! the UpdateFailed event); the variant decides how the controller retries.

use std::time::Duration;

use crate::api::duration::DurationError;
use crate::generators::GenerateError;
use crate::reconcile::desired::DesiredError;
use crate::template::TemplateError;
use crate::vault::{FetchError, VaultError};

#[derive(Debug, thiserror::Error)]
pub(super) enum SyncError {
    #[error("invalid spec.refreshInterval: {0}")]
    RefreshInterval(#[source] DurationError),
    #[error(transparent)]
    Desired(#[from] DesiredError),
    #[error("could not get store reference: {0}")]
    StoreMissing(String),
    #[error("{store} is not ready: {reason}")]
    StoreNotReady { store: String, reason: String },
    /// A ClusterSecretStore's `conditions` leave this namespace out.
    #[error("{0}")]
    NamespaceNotAllowed(String),
    #[error("ClusterSecretStore {store} has invalid conditions: {reason}")]
    StoreConditions { store: String, reason: String },
    /// A `generatorRef` that names nothing usable.
    #[error("{at}: {message}")]
    GeneratorRef { at: String, message: String },
    /// A generator ran and failed; the Secret is left as it is.
    #[error("generator {generator} ({at}) failed: {source}")]
    Generator {
        generator: String,
        at: String,
        #[source]
        source: Box<GenerateError>,
    },
    #[error("could not get provider client: {0}")]
    Provider(#[source] VaultError),
    #[error("could not get secret data from provider: {0}")]
    Fetch(#[source] FetchError),
    #[error("could not apply template: {0}")]
    Template(#[source] TemplateError),
    #[error("{what}: {source}")]
    TemplateSource {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("template {kind} {namespace}/{name} does not exist")]
    TemplateSourceMissing {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    /// A call to the API server about the target Secret (or its namespace) failed.
    #[error("{what}: {}", kube_msg(.source))]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// The apply of the target Secret was refused; `forced` says whether it took fields over.
    #[error("could not update Secret {target:?}: {}", kube_msg(.source))]
    Write {
        target: String,
        forced: bool,
        #[source]
        source: kube::Error,
    },
    /// What went wrong with an entry's own store (`sourceRef.storeRef`).
    #[error("{at}: {source}")]
    Entry {
        at: String,
        #[source]
        source: Box<SyncError>,
    },
    #[error("internal error building a patch: {0}")]
    Patch(#[source] serde_json::Error),
}

impl SyncError {
    pub(super) fn kube(what: impl Into<String>, source: kube::Error) -> Self {
        SyncError::Kube {
            what: what.into(),
            source,
        }
    }

    /// How long Vault asked us to wait, if it did.
    pub(super) fn retry_after(&self) -> Option<Duration> {
        let vault = match self {
            SyncError::Provider(e) => e,
            SyncError::Fetch(e) => &e.source,
            SyncError::Entry { source, .. } => return source.retry_after(),
            SyncError::Generator { source, .. } => match source.as_ref() {
                GenerateError::Vault(e) => e,
                GenerateError::Spec(_) => return None,
            },
            _ => return None,
        };
        match vault {
            VaultError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }

    /// An unforced write was refused (409/422): the Secret exists and is not (only) ours.
    pub(super) fn unclaimed_conflict(&self) -> bool {
        matches!(self, SyncError::Write { forced: false, source: kube::Error::Api(s), .. }
            if s.code == 409 || s.code == 422)
    }
}

/// An API server error as `kubectl describe` readers want it: the message and the HTTP code.
pub(super) fn kube_msg(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} (HTTP {})", s.message, s.code),
        other => other.to_string(),
    }
}
