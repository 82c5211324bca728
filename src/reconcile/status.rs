//! Status conditions with ESO's reasons and messages, built from outcomes (no I/O).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::api::conditions::{self, Condition};
use crate::api::{ExternalSecretStatus, SecretBinding, SecretStoreStatus};

pub const READY: &str = "Ready";

/// ExternalSecret reasons (ESO).
pub const REASON_SYNCED: &str = "SecretSynced";
pub const REASON_SYNC_ERROR: &str = "SecretSyncedError";
pub const REASON_DELETED: &str = "SecretDeleted";
pub const REASON_MISSING: &str = "SecretMissing";

/// Store reasons (ESO).
pub const REASON_VALID: &str = "Valid";
pub const REASON_INVALID_CONFIG: &str = "InvalidProviderConfig";
pub const REASON_VALIDATION_UNKNOWN: &str = "ValidationUnknown";

/// Event reasons (ESO).
pub const EVENT_CREATED: &str = "Created";
pub const EVENT_UPDATED: &str = "Updated";
pub const EVENT_DELETED: &str = "Deleted";
pub const EVENT_UPDATE_FAILED: &str = "UpdateFailed";
pub const EVENT_MISSING_PROVIDER_SECRET: &str = "MissingProviderSecret";
/// Not ESO's: the provider answered with no data and the Secret was left as it is.
pub const EVENT_PROVIDER_DATA_EMPTY: &str = "ProviderDataEmpty";

pub const MSG_SYNCED: &str = "secret synced";
pub const MSG_DELETED: &str = "secret deleted due to DeletionPolicy=Delete";
pub const MSG_RETAINED: &str = "secret retained due to DeletionPolicy=Retain";
pub const MSG_STORE_VALID: &str = "store validated";

/// How one sync of an ExternalSecret ended, as far as its status is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EsOutcome {
    /// Written, up to date, or nothing to write (creationPolicy None / immutable).
    Synced,
    /// deletionPolicy Retain and the provider had no data: the Secret was left as it is.
    Retained,
    /// deletionPolicy Delete and the provider had no data: the Secret was deleted.
    Deleted,
    /// creationPolicy Merge and the Secret does not exist.
    Missing { secret: String },
    /// Failed; the message names the step.
    Failed { message: String },
}

impl EsOutcome {
    /// A sync that read the provider and did what the policies say: it counts as a refresh.
    pub fn is_success(&self) -> bool {
        matches!(
            self,
            EsOutcome::Synced | EsOutcome::Retained | EsOutcome::Deleted
        )
    }
}

pub fn ready(status: bool, reason: &str, message: &str, now: Timestamp) -> Condition {
    Condition {
        type_: READY.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_transition_time: Some(Time(now)),
    }
}

/// The ExternalSecret's new status. A failure keeps `refreshTime` and `syncedResourceVersion`
/// of the last success, so that the next attempt still sees the refresh as due.
pub fn external_secret_status(
    old: Option<&ExternalSecretStatus>,
    outcome: &EsOutcome,
    version: &str,
    target: &str,
    now: Timestamp,
) -> ExternalSecretStatus {
    let mut st = old.cloned().unwrap_or_default();
    let cond = match outcome {
        EsOutcome::Synced => ready(true, REASON_SYNCED, MSG_SYNCED, now),
        EsOutcome::Retained => ready(true, REASON_SYNCED, MSG_RETAINED, now),
        EsOutcome::Deleted => ready(true, REASON_DELETED, MSG_DELETED, now),
        EsOutcome::Missing { secret } => ready(
            true,
            REASON_MISSING,
            &format!(
                "the desired secret {secret} was not found: with creationPolicy=Merge the secret won't be created"
            ),
            now,
        ),
        EsOutcome::Failed { message } => ready(false, REASON_SYNC_ERROR, message, now),
    };
    conditions::set(&mut st.conditions, cond);
    if outcome.is_success() {
        st.refresh_time = Some(Time(now));
        st.synced_resource_version = Some(version.to_string());
    }
    st.binding = Some(SecretBinding {
        name: target.to_string(),
    });
    st
}

/// The Ready condition's status (`None` without one).
pub fn ready_status(conds: &[Condition]) -> Option<bool> {
    conditions::find(conds, READY).map(Condition::is_true)
}

/// Store validation result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOutcome {
    Valid,
    /// Credentials are resolved in each ExternalSecret's namespace: checked at sync time.
    Referent,
    ClientFailed(String),
    ValidationFailed(String),
}

pub fn store_status(
    old: Option<&SecretStoreStatus>,
    outcome: &StoreOutcome,
    now: Timestamp,
) -> SecretStoreStatus {
    let mut st = old.cloned().unwrap_or_default();
    let cond = match outcome {
        StoreOutcome::Valid => ready(true, REASON_VALID, MSG_STORE_VALID, now),
        StoreOutcome::Referent => ready(
            true,
            REASON_VALIDATION_UNKNOWN,
            "store accepted: its credentials are resolved in each ExternalSecret's namespace and checked when it syncs",
            now,
        ),
        StoreOutcome::ClientFailed(e) => ready(
            false,
            REASON_INVALID_CONFIG,
            &format!("unable to create client: {e}"),
            now,
        ),
        StoreOutcome::ValidationFailed(e) => ready(
            false,
            REASON_INVALID_CONFIG,
            &format!("unable to validate store: {e}"),
            now,
        ),
    };
    conditions::set(&mut st.conditions, cond);
    st.capabilities = Some("ReadWrite".into());
    st
}

/// Whether two statuses differ in anything but condition timestamps (which `conditions::set`
/// keeps while the status holds) — to skip writes that would change nothing.
pub fn differs<T: serde::Serialize>(a: Option<&T>, b: &T) -> bool {
    match a {
        None => true,
        Some(a) => serde_json::to_value(a).ok() != serde_json::to_value(b).ok(),
    }
}

/// How far `refreshTime` may lag behind refreshes that changed nothing else.
pub const REFRESH_TIME_LAG: std::time::Duration = std::time::Duration::from_secs(300);

/// Whether the ExternalSecret's status must be written. A refresh that changed nothing but
/// `refreshTime` writes it only once the written time is [`REFRESH_TIME_LAG`] old: with short
/// intervals, a status write per refresh was most of what 10,000 ExternalSecrets cost the API
/// server. Intervals of five minutes and more still write every refresh, as ESO does.
pub fn status_write_needed(
    old: Option<&ExternalSecretStatus>,
    new: &ExternalSecretStatus,
    now: Timestamp,
) -> bool {
    let Some(old) = old else { return true };
    // Anything but refreshTime changed: write. (One comparison, the times aligned.)
    let mut same_time = new.clone();
    same_time.refresh_time = old.refresh_time.clone();
    if differs(Some(old), &same_time) {
        return true;
    }
    match (&old.refresh_time, &new.refresh_time) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(was), Some(is)) => {
            is != was
                && std::time::Duration::try_from(now.duration_since(was.0))
                    .is_ok_and(|lag| lag >= REFRESH_TIME_LAG)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_refreshes_coalesce_refresh_time() {
        let synced = external_secret_status(None, &EsOutcome::Synced, "1-ab", "target", ts(100));
        let again = |at| {
            external_secret_status(Some(&synced), &EsOutcome::Synced, "1-ab", "target", ts(at))
        };
        // (what, new status, now, write)
        let cases = [
            ("first status", None, again(105), 105, true),
            (
                "refresh 5 s later, nothing else",
                Some(&synced),
                again(105),
                105,
                false,
            ),
            ("refresh 299 s later", Some(&synced), again(399), 399, false),
            ("refresh 300 s later", Some(&synced), again(400), 400, true),
            ("same time again", Some(&synced), synced.clone(), 100, false),
            (
                "a new version",
                Some(&synced),
                external_secret_status(
                    Some(&synced),
                    &EsOutcome::Synced,
                    "2-ab",
                    "target",
                    ts(105),
                ),
                105,
                true,
            ),
            (
                "a failure",
                Some(&synced),
                external_secret_status(
                    Some(&synced),
                    &EsOutcome::Failed {
                        message: "boom".into(),
                    },
                    "1-ab",
                    "target",
                    ts(105),
                ),
                105,
                true,
            ),
        ];
        for (what, old, new, now, want) in cases {
            assert_eq!(status_write_needed(old, &new, ts(now)), want, "{what}");
        }
    }

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn external_secret_outcomes() {
        let st = external_secret_status(None, &EsOutcome::Synced, "1-ab", "target", ts(100));
        let c = &st.conditions[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref()),
            ("True", Some("SecretSynced"))
        );
        assert_eq!(c.message.as_deref(), Some("secret synced"));
        assert_eq!(st.refresh_time, Some(Time(ts(100))));
        assert_eq!(st.synced_resource_version.as_deref(), Some("1-ab"));
        assert_eq!(st.binding.as_ref().unwrap().name, "target");

        // A failure keeps the last success's refresh time and version.
        let failed = external_secret_status(
            Some(&st),
            &EsOutcome::Failed {
                message: "could not get secret data from provider: boom".into(),
            },
            "2-ab",
            "target",
            ts(200),
        );
        let c = &failed.conditions[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref()),
            ("False", Some("SecretSyncedError"))
        );
        assert_eq!(c.last_transition_time, Some(Time(ts(200))));
        assert_eq!(failed.refresh_time, Some(Time(ts(100))));
        assert_eq!(failed.synced_resource_version.as_deref(), Some("1-ab"));
        assert_eq!(ready_status(&failed.conditions), Some(false));

        let missing = external_secret_status(
            None,
            &EsOutcome::Missing { secret: "s".into() },
            "1-ab",
            "s",
            ts(1),
        );
        assert_eq!(
            missing.conditions[0].reason.as_deref(),
            Some("SecretMissing")
        );
        assert_eq!(missing.conditions[0].status, "True");
        assert_eq!(missing.refresh_time, None);

        let deleted = external_secret_status(None, &EsOutcome::Deleted, "1-ab", "s", ts(1));
        assert_eq!(
            deleted.conditions[0].reason.as_deref(),
            Some("SecretDeleted")
        );
        assert!(deleted.refresh_time.is_some());
        assert_eq!(
            deleted.conditions[0].message.as_deref(),
            Some("secret deleted due to DeletionPolicy=Delete")
        );
        assert_eq!(ready_status(&[]), None);

        // Empty provider data under Retain: Ready, as ESO words it, and a refresh.
        let retained =
            external_secret_status(Some(&st), &EsOutcome::Retained, "2-ab", "s", ts(300));
        let c = &retained.conditions[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref(), c.message.as_deref()),
            (
                "True",
                Some("SecretSynced"),
                Some("secret retained due to DeletionPolicy=Retain")
            )
        );
        assert_eq!(retained.refresh_time, Some(Time(ts(300))));
    }

    #[test]
    fn unchanged_status_is_not_rewritten() {
        let a = external_secret_status(None, &EsOutcome::Synced, "1-ab", "t", ts(100));
        // Same outcome later: the transition time is kept, but the refresh time moves on.
        let b = external_secret_status(Some(&a), &EsOutcome::Synced, "1-ab", "t", ts(200));
        assert_eq!(b.conditions[0].last_transition_time, Some(Time(ts(100))));
        assert!(differs(Some(&a), &b));
        let m1 = external_secret_status(
            None,
            &EsOutcome::Missing { secret: "t".into() },
            "1",
            "t",
            ts(1),
        );
        let m2 = external_secret_status(
            Some(&m1),
            &EsOutcome::Missing { secret: "t".into() },
            "1",
            "t",
            ts(9),
        );
        assert!(!differs(Some(&m1), &m2));
        assert!(differs(None, &m2));
    }

    #[test]
    fn store_outcomes() {
        let v = store_status(None, &StoreOutcome::Valid, ts(1));
        assert_eq!(v.conditions[0].reason.as_deref(), Some("Valid"));
        assert_eq!(v.conditions[0].message.as_deref(), Some("store validated"));
        assert_eq!(v.capabilities.as_deref(), Some("ReadWrite"));
        let f = store_status(
            Some(&v),
            &StoreOutcome::ClientFailed("login failed".into()),
            ts(2),
        );
        assert_eq!(f.conditions.len(), 1);
        assert_eq!(f.conditions[0].status, "False");
        assert_eq!(
            f.conditions[0].reason.as_deref(),
            Some("InvalidProviderConfig")
        );
        assert_eq!(
            f.conditions[0].message.as_deref(),
            Some("unable to create client: login failed")
        );
        let g = store_status(None, &StoreOutcome::ValidationFailed("403".into()), ts(2));
        assert_eq!(
            g.conditions[0].message.as_deref(),
            Some("unable to validate store: 403")
        );
        let r = store_status(None, &StoreOutcome::Referent, ts(2));
        assert_eq!(r.conditions[0].status, "True");
        assert_eq!(r.conditions[0].reason.as_deref(), Some("ValidationUnknown"));
    }
}
