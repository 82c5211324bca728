//! When to read Vault again, as a function of data (ESO's `shouldRefresh` and `isSecretValid`,
//! plus a per-data phase so refreshes spread over the interval, and per-object error backoff).

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::hash::unit_fraction;
use super::sync_window;
use crate::api::{CreationPolicy, RefreshPolicy, SyncWindows};

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
    /// `spec.syncWindows`: when scheduled refreshes may run.
    pub windows: Option<&'a SyncWindows>,
    /// Seed of this object's refresh phase: what it reads (store and remote references).
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
            Some(at) if at > i.now => Refresh::At(at),
            // Due: now, or when the sync windows next allow it.
            Some(_) => match i.windows.map(|w| sync_window::next_allowed(w, i.now)) {
                None => Refresh::Now(Reason::Interval),
                Some(Some(at)) if at <= i.now => Refresh::Now(Reason::Interval),
                Some(Some(at)) => Refresh::At(at),
                Some(None) => Refresh::Never,
            },
        },
    }
}

/// When a Periodic refresh is due after a sync at `refresh_time`: the first instant after it that
/// falls on this object's phase of the interval grid (wall-clock time modulo the interval), so
/// never more than one interval later. `None` for interval zero ("sync once").
///
/// The seed is what the object reads (its store and remote references), not its identity:
/// ExternalSecrets reading the same Vault data share a phase, come due together and share one
/// Vault read; different data is spread over the whole interval, so a restart or a thousand
/// objects created together do not refresh in lockstep (ESO issue 4231).
pub fn next_due(
    interval: Duration,
    refresh_time: Option<Timestamp>,
    seed: &str,
) -> Option<Timestamp> {
    if interval.is_zero() {
        return None;
    }
    let base = refresh_time?.as_nanosecond();
    let period = i128::try_from(interval.as_nanos())
        .unwrap_or(i128::MAX)
        .max(1);
    let phase = i128::try_from(phase(interval, seed).as_nanos()).unwrap_or(0);
    let next = ((base - phase).div_euclid(period) + 1)
        .saturating_mul(period)
        .saturating_add(phase);
    Some(Timestamp::from_nanosecond(next).unwrap_or(Timestamp::MAX))
}

/// The object's offset within the interval grid: deterministic, in `[0, interval)`.
pub fn phase(interval: Duration, seed: &str) -> Duration {
    interval
        .mul_f64(unit_fraction(seed))
        .min(interval.saturating_sub(Duration::from_nanos(1)))
}

/// Delay before retrying after `failures` consecutive errors (1 → 5 s, doubling, at most 5 min).
pub fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    BACKOFF_BASE.saturating_mul(1u32 << exp).min(BACKOFF_MAX)
}

/// Which earlier Vault reads of the same data (same store identity, path, version) may serve
/// this sync. A change the user made (spec or annotations, e.g. ESO's `force-sync`
/// annotation, or the store) asks for what Vault holds now: only reads that started after the
/// sync did — a read finished a moment before may predate a Vault write the user just made.
/// Otherwise — a first sync, a scheduled refresh, a missing or edited Secret — a read up to a
/// twentieth of the refresh interval old (at most 3 min; 3 min when the interval is 0, "sync
/// once") is as good: it is what the other ExternalSecrets on that data just got. That turns 10
/// ExternalSecrets on one path, created minutes apart, into one read.
pub fn read_reuse(reason: Reason, interval: Duration) -> ReadAge {
    let cap = crate::vault::MAX_READ_REUSE;
    let fresh = crate::vault::READ_SHARE_WINDOW;
    match reason {
        Reason::SpecChanged | Reason::StoreChanged => ReadAge::SinceSyncStart,
        Reason::NeverSynced
        | Reason::LastSyncFailed
        | Reason::SecretMissing
        | Reason::SecretTampered
        | Reason::Interval => ReadAge::Within(if interval.is_zero() {
            cap
        } else {
            (interval / 20).clamp(fresh, cap)
        }),
    }
}

/// What [`read_reuse`] allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadAge {
    /// Reads in flight or finished up to this long ago.
    Within(Duration),
    /// Only reads started since the sync began.
    SinceSyncStart,
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
            windows: None,
            seed: "uid-1",
            now: ts(1_000_000),
        }
    }

    #[test]
    fn decision_table() {
        use CreationPolicy as C;
        use Refresh::*;
        use RefreshPolicy as P;
        let due = next_due(Duration::from_secs(3600), Some(ts(1_000_000)), "uid-1").unwrap();
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
                "a whole interval passed: due whatever the phase",
                |i| i.now = ts(1_000_000 + 3600),
                Now(Reason::Interval),
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
    fn refreshes_fall_on_a_phase_at_most_one_interval_after_the_sync() {
        let iv = Duration::from_secs(3600);
        assert_eq!(phase(iv, "a"), phase(iv, "a"));
        for n in 0..200 {
            let seed = format!("data-{n}");
            for synced in [0, 1, 1_799, 3_599, 3_600, 1_000_123] {
                let at = next_due(iv, Some(ts(synced)), &seed).unwrap();
                assert!(
                    at > ts(synced) && at <= ts(synced + 3600),
                    "{seed} {synced}: {at}"
                );
                let offset = at.as_second().rem_euclid(3600);
                assert_eq!(
                    offset,
                    phase(iv, &seed).as_secs() as i64,
                    "{seed}: on its phase"
                );
            }
        }
        // Objects reading the same data, synced at different moments, come due together.
        let a = next_due(iv, Some(ts(1_000_000)), "same").unwrap();
        let b = next_due(iv, Some(ts(1_000_000 + 17)), "same").unwrap();
        let c = next_due(Duration::from_secs(3600), Some(a), "same").unwrap();
        assert!(a == b || (b.as_second() - a.as_second()) == 3600, "{a} {b}");
        assert_eq!(c.as_second() - a.as_second(), 3600);
        // Different data is spread over the whole interval.
        let phases: std::collections::BTreeSet<u64> = (0..1000)
            .map(|n| phase(iv, &format!("data-{n}")).as_secs() / 60)
            .collect();
        assert!(
            phases.len() > 55,
            "1,000 objects use {} of 60 minutes",
            phases.len()
        );
        assert!(phase(Duration::from_secs(1), "a") < Duration::from_secs(1));
    }

    #[test]
    fn sync_windows_gate_only_scheduled_refreshes() {
        use crate::api::{SyncWindow, SyncWindowKind};
        // 2026-06-01T12:00:00Z; the window opens daily at 22:00 for 2 hours.
        let noon = ts(1_780_315_200);
        let evening = ts(1_780_351_200);
        let nightly = SyncWindows {
            kind: SyncWindowKind::Allow,
            windows: vec![SyncWindow {
                schedule: "0 22 * * *".into(),
                duration: "2h".into(),
            }],
        };
        let due = |now, windows, synced: Option<&'static str>| {
            decide(&Input {
                now,
                refresh_time: Some(ts(1_000_000)),
                synced_version: synced,
                windows,
                ..base()
            })
        };
        assert_eq!(
            due(noon, None, Some("1-abc")),
            Refresh::Now(Reason::Interval)
        );
        assert_eq!(
            due(noon, Some(&nightly), Some("1-abc")),
            Refresh::At(evening)
        );
        assert_eq!(
            due(evening, Some(&nightly), Some("1-abc")),
            Refresh::Now(Reason::Interval)
        );
        // A spec change is not a scheduled refresh: it syncs outside the window too.
        assert_eq!(
            due(noon, Some(&nightly), Some("0-old")),
            Refresh::Now(Reason::SpecChanged)
        );
    }

    #[test]
    fn backoff_doubles_to_five_minutes() {
        let got: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(got, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(backoff(0).as_secs(), 5);
        assert_eq!(backoff(u32::MAX).as_secs(), 300);
    }

    #[test]
    fn read_reuse_follows_the_reason_and_interval() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        let cases = [
            (Reason::NeverSynced, s(3600), ReadAge::Within(s(180))),
            (Reason::NeverSynced, s(86400), ReadAge::Within(s(180))),
            (Reason::Interval, s(3600), ReadAge::Within(s(180))),
            (Reason::Interval, s(600), ReadAge::Within(s(30))),
            (Reason::Interval, s(60), ReadAge::Within(s(3))),
            (Reason::Interval, s(1), ReadAge::Within(ms(500))),
            (Reason::SecretMissing, s(300), ReadAge::Within(s(15))),
            (Reason::SecretTampered, s(0), ReadAge::Within(s(180))),
            (Reason::LastSyncFailed, s(20), ReadAge::Within(s(1))),
            (Reason::NeverSynced, s(0), ReadAge::Within(s(180))),
            (Reason::SpecChanged, s(3600), ReadAge::SinceSyncStart),
            (Reason::StoreChanged, s(3600), ReadAge::SinceSyncStart),
            (Reason::SpecChanged, s(0), ReadAge::SinceSyncStart),
        ];
        for (reason, interval, want) in cases {
            assert_eq!(
                read_reuse(reason, interval),
                want,
                "{reason:?} {interval:?}"
            );
        }
    }

    #[test]
    fn resource_version_combines_generation_and_meta() {
        assert_eq!(resource_version(Some(3), "ab"), "3-ab");
        assert_eq!(resource_version(None, "ab"), "0-ab");
    }
}
