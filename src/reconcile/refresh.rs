//! When to read Vault again, as a function of data (ESO's `shouldRefresh` and `isSecretValid`,
//! plus jitter so refreshes do not move in lockstep, and per-object error backoff).

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::hash::unit_fraction;
use crate::api::{CreationPolicy, RefreshPolicy};

/// Share of the refresh interval over which refreshes are spread.
const JITTER_SHARE: f64 = 0.1;
/// First retry delay after an error, doubled per consecutive failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Longest retry delay after errors.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// The target Secret as seen by the reconciler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetState {
    Missing,
    /// Exists and its data matches the data-hash annotation.
    Valid,
    /// Exists but its data does not match the annotation (edited by someone else), or the
    /// annotation is gone.
    Tampered,
}

#[derive(Debug, Clone)]
pub struct Input<'a> {
    pub policy: RefreshPolicy,
    /// `spec.refreshInterval`; zero means "sync once".
    pub interval: Duration,
    pub creation: CreationPolicy,
    /// What `syncedResourceVersion` would be if synced now (see [`resource_version`]).
    pub current_version: &'a str,
    pub synced_version: Option<&'a str>,
    pub refresh_time: Option<Timestamp>,
    /// Status of the Ready condition as last written (`None`: none yet).
    pub last_ready: Option<bool>,
    pub target: TargetState,
    /// The store's spec changed since the last sync.
    pub store_changed: bool,
    /// Seed of this object's jitter (its uid).
    pub seed: &'a str,
    pub now: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    NeverSynced,
    SpecChanged,
    LastSyncFailed,
    SecretMissing,
    SecretTampered,
    StoreChanged,
    Interval,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    Now(Reason),
    /// Not yet; due at this time.
    At(Timestamp),
    /// Only a change (spec, Secret) will bring a refresh.
    Never,
}

/// `syncedResourceVersion` as ESO writes it: the generation plus a hash of labels and
/// annotations, so that both spec and metadata changes are seen.
pub fn resource_version(generation: Option<i64>, meta_hash: &str) -> String {
    format!("{}-{meta_hash}", generation.unwrap_or(0))
}

/// Whether a refresh is due, and if not, when it will be.
pub fn decide(i: &Input) -> Refresh {
    let (Some(synced), Some(_)) = (i.synced_version, i.refresh_time) else {
        return Refresh::Now(Reason::NeverSynced);
    };
    let once = i.policy == RefreshPolicy::CreatedOnce;
    if synced != i.current_version && !once {
        return Refresh::Now(Reason::SpecChanged);
    }
    if i.last_ready == Some(false) {
        return Refresh::Now(Reason::LastSyncFailed);
    }
    // An orphaned Secret is the user's to change; with None or Merge, the Secret is not ours to
    // create, so its absence is not a reason to read Vault again.
    let watched = !matches!(
        i.creation,
        CreationPolicy::Orphan | CreationPolicy::None | CreationPolicy::Merge
    );
    match i.target {
        TargetState::Missing if watched => return Refresh::Now(Reason::SecretMissing),
        TargetState::Tampered
            if watched
                || matches!(
                    i.creation,
                    CreationPolicy::Merge | CreationPolicy::CreateOrMerge
                ) =>
        {
            return Refresh::Now(Reason::SecretTampered);
        }
        _ => {}
    }
    if i.store_changed && !once {
        return Refresh::Now(Reason::StoreChanged);
    }
    match i.policy {
        RefreshPolicy::CreatedOnce | RefreshPolicy::OnChange => Refresh::Never,
        RefreshPolicy::Periodic => match next_due(i.interval, i.refresh_time, i.seed) {
            None => Refresh::Never,
            Some(at) if at <= i.now => Refresh::Now(Reason::Interval),
            Some(at) => Refresh::At(at),
        },
    }
}

/// When a Periodic refresh is due after a sync at `refresh_time`: the interval plus this object's
/// offset of up to a tenth of the interval. `None` for interval zero ("sync once").
pub fn next_due(
    interval: Duration,
    refresh_time: Option<Timestamp>,
    seed: &str,
) -> Option<Timestamp> {
    if interval.is_zero() {
        return None;
    }
    let base = refresh_time?;
    let delay = interval + jitter(interval, seed);
    let delay = SignedDuration::try_from(delay).unwrap_or(SignedDuration::MAX);
    Some(base.checked_add(delay).unwrap_or(Timestamp::MAX))
}

/// This object's refresh offset: deterministic, in `[0, interval / 10)`.
pub fn jitter(interval: Duration, seed: &str) -> Duration {
    interval.mul_f64(JITTER_SHARE * unit_fraction(seed))
}

/// Delay before retrying after `failures` consecutive errors (1 → 5 s, doubling, at most 5 min).
pub fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    BACKOFF_BASE.saturating_mul(1u32 << exp).min(BACKOFF_MAX)
}

/// Time until `at`, never negative.
pub fn until(now: Timestamp, at: Timestamp) -> Duration {
    let d = at.duration_since(now);
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    fn base() -> Input<'static> {
        Input {
            policy: RefreshPolicy::Periodic,
            interval: Duration::from_secs(3600),
            creation: CreationPolicy::Owner,
            current_version: "1-abc",
            synced_version: Some("1-abc"),
            refresh_time: Some(ts(1_000_000)),
            last_ready: Some(true),
            target: TargetState::Valid,
            store_changed: false,
            seed: "uid-1",
            now: ts(1_000_010),
        }
    }

    #[test]
    fn decision_table() {
        use CreationPolicy as C;
        use Refresh::*;
        use RefreshPolicy as P;
        let j = jitter(Duration::from_secs(3600), "uid-1");
        let due = ts(1_000_000 + 3600) + SignedDuration::try_from(j).unwrap();
        type Case = (&'static str, fn(&mut Input<'static>), Refresh);
        let cases: Vec<Case> = vec![
            ("synced and fresh", |_| {}, At(ts(0))),
            (
                "never synced",
                |i| i.synced_version = None,
                Now(Reason::NeverSynced),
            ),
            (
                "no refresh time",
                |i| i.refresh_time = None,
                Now(Reason::NeverSynced),
            ),
            (
                "spec changed",
                |i| i.current_version = "2-abc",
                Now(Reason::SpecChanged),
            ),
            (
                "labels changed",
                |i| i.current_version = "1-def",
                Now(Reason::SpecChanged),
            ),
            (
                "interval passed",
                |i| i.now = ts(1_000_000 + 3600 + 400),
                Now(Reason::Interval),
            ),
            (
                "interval passed, within jitter",
                |i| i.now = ts(1_000_000 + 3600),
                At(ts(0)),
            ),
            (
                "secret deleted",
                |i| i.target = TargetState::Missing,
                Now(Reason::SecretMissing),
            ),
            (
                "secret tampered",
                |i| i.target = TargetState::Tampered,
                Now(Reason::SecretTampered),
            ),
            (
                "orphan: deletion ignored",
                |i| {
                    i.creation = C::Orphan;
                    i.target = TargetState::Missing;
                },
                At(ts(0)),
            ),
            (
                "orphan: tampering ignored",
                |i| {
                    i.creation = C::Orphan;
                    i.target = TargetState::Tampered;
                },
                At(ts(0)),
            ),
            (
                "merge: missing target is not ours to recreate",
                |i| {
                    i.creation = C::Merge;
                    i.target = TargetState::Missing;
                },
                At(ts(0)),
            ),
            (
                "merge: tampered hash re-merges",
                |i| {
                    i.creation = C::Merge;
                    i.target = TargetState::Tampered;
                },
                Now(Reason::SecretTampered),
            ),
            (
                "none: target not checked",
                |i| {
                    i.creation = C::None;
                    i.target = TargetState::Missing;
                },
                At(ts(0)),
            ),
            (
                "last sync failed",
                |i| i.last_ready = Some(false),
                Now(Reason::LastSyncFailed),
            ),
            (
                "store changed",
                |i| i.store_changed = true,
                Now(Reason::StoreChanged),
            ),
            (
                "interval 0: once",
                |i| {
                    i.interval = Duration::ZERO;
                    i.now = ts(9_000_000);
                },
                Never,
            ),
            (
                "interval 0: spec change still syncs",
                |i| {
                    i.interval = Duration::ZERO;
                    i.current_version = "2-abc";
                },
                Now(Reason::SpecChanged),
            ),
            (
                "CreatedOnce: never again",
                |i| {
                    i.policy = P::CreatedOnce;
                    i.now = ts(9_000_000);
                },
                Never,
            ),
            (
                "CreatedOnce: spec change ignored",
                |i| {
                    i.policy = P::CreatedOnce;
                    i.current_version = "2-abc";
                },
                Never,
            ),
            (
                "CreatedOnce: store change ignored",
                |i| {
                    i.policy = P::CreatedOnce;
                    i.store_changed = true;
                },
                Never,
            ),
            (
                "CreatedOnce: first sync",
                |i| {
                    i.policy = P::CreatedOnce;
                    i.synced_version = None;
                },
                Now(Reason::NeverSynced),
            ),
            (
                "CreatedOnce: deleted secret comes back",
                |i| {
                    i.policy = P::CreatedOnce;
                    i.target = TargetState::Missing;
                },
                Now(Reason::SecretMissing),
            ),
            (
                "OnChange: time alone does nothing",
                |i| {
                    i.policy = P::OnChange;
                    i.now = ts(9_000_000);
                },
                Never,
            ),
            (
                "OnChange: spec change",
                |i| {
                    i.policy = P::OnChange;
                    i.current_version = "2-abc";
                },
                Now(Reason::SpecChanged),
            ),
        ];
        for (name, f, want) in cases {
            let mut i = base();
            f(&mut i);
            let got = decide(&i);
            let want = match want {
                At(_) => At(due),
                w => w,
            };
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn jitter_is_deterministic_bounded_and_spread() {
        let iv = Duration::from_secs(3600);
        assert_eq!(jitter(iv, "a"), jitter(iv, "a"));
        let offsets: Vec<Duration> = (0..1000).map(|n| jitter(iv, &format!("uid-{n}"))).collect();
        assert!(offsets.iter().all(|d| *d < Duration::from_secs(360)));
        // 1,000 objects synced at the same moment come due over many different seconds.
        let distinct: std::collections::BTreeSet<u64> =
            offsets.iter().map(|d| d.as_secs()).collect();
        assert!(distinct.len() > 300, "{}", distinct.len());
        assert!(jitter(Duration::from_secs(1), "a") < Duration::from_millis(100));
    }

    #[test]
    fn next_due_after_a_sync() {
        let iv = Duration::from_secs(60);
        let at = next_due(iv, Some(ts(100)), "x").unwrap();
        assert!(at >= ts(160) && at < ts(166));
        assert_eq!(next_due(Duration::ZERO, Some(ts(100)), "x"), None);
        assert_eq!(next_due(iv, None, "x"), None);
        assert_eq!(until(ts(100), ts(90)), Duration::ZERO);
        assert_eq!(until(ts(100), ts(130)), Duration::from_secs(30));
    }

    #[test]
    fn backoff_doubles_to_five_minutes() {
        let got: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(got, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(backoff(0).as_secs(), 5);
        assert_eq!(backoff(u32::MAX).as_secs(), 300);
    }

    #[test]
    fn resource_version_combines_generation_and_meta() {
        assert_eq!(resource_version(Some(3), "ab"), "3-ab");
        assert_eq!(resource_version(None, "ab"), "0-ab");
    }
}
