//! The Vault client: one login per store identity (renewed, re-done on expiry, revoked on
//! shutdown), deduplicated KV reads with retries, and ESO's rules for turning Vault secrets into
//! Secret data.
//!
//! - One login per store identity (kind, namespace, name, uid, resourceVersion, and the
//!   ExternalSecret's namespace for ClusterSecretStores with referent references); concurrent
//!   callers share it, and share a failed login for 5 s. Tokens are renewed from two thirds of
//!   their TTL, replaced by a login when they cannot be renewed, re-obtained once when Vault
//!   says they are dead, and revoked when the store changes, when the client has been idle
//!   for 30 min (or is the least recently used beyond 4,096 cached identities), or on shutdown
//!   (static tokens never are). A failed login is forgotten after its 5 s.
//! - Identical reads of one store (path and version) in flight at once, or within 1 s of a
//!   successful one, share one Vault request.
//! - 429 (after `Retry-After`, up to 10 s), 5xx other than 501 and connection errors are
//!   retried: by default 3 times from 500 ms doubling to at most 8 s, or as
//!   `retrySettings{maxRetries, retryInterval}` says. Each request, its body included, times
//!   out after 10 s.
//! - Answers are bounded and checked: at most 32 MiB and a million JSON values are read, and
//!   an answer that is not JSON or not of the documented shape is an error naming the path
//!   and what was wrong (`answers.rs`), never taken for a missing secret.
//!
//! HTTP goes through reqwest directly rather than vaultrs: vaultrs 0.8 reads CA bundles from
//! files only, cannot send arbitrary headers (`headers`, `X-Vault-Inconsistent`), has no
//! metadata LIST or `sys/capabilities-self`, and picks up `VAULT_*` environment variables as
//! defaults, which must not leak into per-store clients.

mod answers;
mod auth;

pub use auth::{auth_precedence, has_referent_refs, pod_token_refusal};
mod client;
mod fetch;
mod http;
mod merge;
pub mod paths;
pub mod push_plan;
pub mod values;

use std::sync::Arc;
use std::time::Duration;

use crate::api::{ClusterSecretStore, SecretStore, SecretStoreSpec, StoreKind};

pub use client::{
    LeaseInfo, Limits, MAX_READ_REUSE, READ_SHARE_WINDOW, ReadReuse, RenewOutcome, Renewed,
    StoreClient, VaultClients, with_read_reuse,
};
pub use fetch::{
    EntryClients, FetchError, Fetched, GeneratedEntries, fetch_external_secret,
    fetch_with_generated, find_refusal,
};

/// A store as the Vault client sees it: identity (for the token cache) and spec.
#[derive(Clone, Debug)]
pub struct StoreHandle {
    pub kind: StoreKind,
    pub name: String,
    /// `Some` for a SecretStore, `None` for a ClusterSecretStore.
    pub namespace: Option<String>,
    pub uid: String,
    pub resource_version: String,
    pub spec: Arc<SecretStoreSpec>,
}

impl StoreHandle {
    pub fn from_secret_store(s: &SecretStore) -> Self {
        StoreHandle {
            kind: StoreKind::SecretStore,
            name: s.metadata.name.clone().unwrap_or_default(),
            namespace: Some(s.metadata.namespace.clone().unwrap_or_default()),
            uid: s.metadata.uid.clone().unwrap_or_default(),
            resource_version: s.metadata.resource_version.clone().unwrap_or_default(),
            spec: Arc::new(s.spec.clone()),
        }
    }

    pub fn from_cluster_store(s: &ClusterSecretStore) -> Self {
        StoreHandle {
            kind: StoreKind::ClusterSecretStore,
            name: s.metadata.name.clone().unwrap_or_default(),
            namespace: None,
            uid: s.metadata.uid.clone().unwrap_or_default(),
            resource_version: s.metadata.resource_version.clone().unwrap_or_default(),
            spec: Arc::new(s.spec.store.clone()),
        }
    }

    /// `SecretStore ns/name` or `ClusterSecretStore name`, for messages.
    pub fn display(&self) -> String {
        match &self.namespace {
            Some(ns) if self.kind == StoreKind::SecretStore => {
                format!("{} {}/{}", self.kind.as_str(), ns, self.name)
            }
            _ => format!("{} {}", self.kind.as_str(), self.name),
        }
    }
}

/// Errors of Vault calls. Messages name the Vault path and status and never carry a secret
/// value, token, password or JWT.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VaultError {
    #[error("secret {path:?} does not exist in Vault (HTTP 404 or deleted version)")]
    NotFound { path: String },
    /// KV v2 answered with a version that was deleted or destroyed: ESO's missing secret, said
    /// as what it is.
    #[error("{}", version_deleted(.path, .version.as_deref(), .deleted_at.as_deref(), *.destroyed))]
    VersionDeleted {
        path: String,
        /// The version asked for; `None`: the latest.
        version: Option<String>,
        deleted_at: Option<String>,
        destroyed: bool,
    },
    /// A `find` whose folder lists nothing: ESO's missing secret, never an empty result.
    #[error(
        "nothing is listed under {path:?} in Vault (HTTP 404: the folder does not exist or is empty)"
    )]
    NothingListed { path: String },
    #[error(
        "Vault denied {call} on {path:?} (HTTP 403 permission denied): grant the store's Vault \
         role a policy allowing it"
    )]
    PermissionDenied { path: String, call: String },
    #[error("Vault login with auth method {method} failed: {message}")]
    Auth { method: String, message: String },
    #[error("invalid store configuration: {message}")]
    Config { message: String },
    #[error("Vault unavailable: {message}")]
    Unavailable { message: String },
    #[error("Vault rate limit reached (HTTP 429){}", retry_hint(.retry_after))]
    RateLimited { retry_after: Option<Duration> },
    #[error("not supported: {what}")]
    Unsupported { what: String },
    /// A check's own call failed (e.g. `sys/capabilities-self`): nothing is known about the
    /// paths it was to check, so it is never a finding about them.
    #[error("could not check {what} ({reason})")]
    CouldNotCheck { what: String, reason: String },
    #[error("{message}")]
    Invalid { message: String },
    /// Vault's answer could not be used: not JSON, too large, or not of the documented shape.
    /// Says nothing about the manifest, so it counts as transient.
    #[error("{message}")]
    BadAnswer { message: String },
}

fn version_deleted(
    path: &str,
    version: Option<&str>,
    deleted_at: Option<&str>,
    destroyed: bool,
) -> String {
    let which = match version {
        Some(v) => format!("version {v} of {path:?}"),
        None => format!("the latest version of {path:?}"),
    };
    match (destroyed, deleted_at) {
        (true, _) => format!("{which} was destroyed in Vault"),
        (false, Some(at)) => format!("{which} was deleted in Vault at {at}"),
        (false, None) => format!("{which} was deleted in Vault"),
    }
}

fn retry_hint(d: &Option<Duration>) -> String {
    match d {
        Some(d) => format!(", retry after {}s", d.as_secs().max(1)),
        None => String::new(),
    }
}

impl VaultError {
    /// Worth retrying later without any change: network trouble, 5xx, rate limits.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            VaultError::Unavailable { .. }
                | VaultError::RateLimited { .. }
                | VaultError::BadAnswer { .. }
                | VaultError::CouldNotCheck { .. }
        )
    }

    /// Vault says there is nothing at the path (the secret, or a `find` folder): skipped under
    /// deletionPolicy Delete/Merge, an error under Retain.
    pub fn is_missing(&self) -> bool {
        matches!(
            self,
            VaultError::NotFound { .. }
                | VaultError::NothingListed { .. }
                | VaultError::VersionDeleted { .. }
        )
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        VaultError::Config {
            message: message.into(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        VaultError::Invalid {
            message: message.into(),
        }
    }

    pub(crate) fn bad_answer(message: impl Into<String>) -> Self {
        VaultError::BadAnswer {
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_kind_and_namespace() {
        let mut ss = SecretStore::new("vault", SecretStoreSpec::default());
        ss.metadata.namespace = Some("team-a".into());
        assert_eq!(
            StoreHandle::from_secret_store(&ss).display(),
            "SecretStore team-a/vault"
        );
        let css = ClusterSecretStore::new("shared", Default::default());
        let h = StoreHandle::from_cluster_store(&css);
        assert_eq!(h.display(), "ClusterSecretStore shared");
        assert_eq!(h.namespace, None);
    }

    #[test]
    fn transient_errors() {
        let cases = [
            (
                VaultError::Unavailable {
                    message: "x".into(),
                },
                true,
            ),
            (VaultError::RateLimited { retry_after: None }, true),
            (VaultError::NotFound { path: "p".into() }, false),
            (VaultError::NothingListed { path: "p/".into() }, false),
            (VaultError::bad_answer("x"), true),
            (
                VaultError::CouldNotCheck {
                    what: "capabilities".into(),
                    reason: "HTTP 404".into(),
                },
                true,
            ),
            (VaultError::config("x"), false),
            (
                VaultError::PermissionDenied {
                    path: "p".into(),
                    call: "read".into(),
                },
                false,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.is_transient(), want, "{e}");
        }
        let deleted =
            |version: Option<&str>, at: Option<&str>, destroyed| VaultError::VersionDeleted {
                path: "secret/data/app".into(),
                version: version.map(String::from),
                deleted_at: at.map(String::from),
                destroyed,
            };
        let at = "2026-01-02T03:04:05Z";
        for (e, want) in [
            (
                deleted(None, Some(at), false),
                "the latest version of \"secret/data/app\" was deleted in Vault at 2026-01-02T03:04:05Z",
            ),
            (
                deleted(Some("3"), Some(at), false),
                "version 3 of \"secret/data/app\" was deleted in Vault at 2026-01-02T03:04:05Z",
            ),
            (
                deleted(None, Some(at), true),
                "the latest version of \"secret/data/app\" was destroyed in Vault",
            ),
            (
                deleted(None, None, false),
                "the latest version of \"secret/data/app\" was deleted in Vault",
            ),
        ] {
            assert!(e.is_missing() && !e.is_transient(), "{e}");
            assert_eq!(e.to_string(), want);
        }
        assert_eq!(
            VaultError::RateLimited {
                retry_after: Some(Duration::from_secs(3))
            }
            .to_string(),
            "Vault rate limit reached (HTTP 429), retry after 3s"
        );
    }
}
