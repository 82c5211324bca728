//! What to do about an ExternalSecret's leases between syncs, as a function of data.
//!
//! Rules (beyond ESO, which never renews or revokes):
//! - a lease that would end before the next refresh (with a third of its TTL to spare) is
//!   renewed at two thirds of its TTL, for long enough to outlive that refresh;
//! - one that cannot be renewed that far (not renewable, or its max TTL reached) gets new
//!   credentials minted early, at two thirds of what is left; one already over is replaced now;
//! - a superseded lease is revoked once its revoke-after time has come.

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// The most a superseded lease is kept alive for pods still using its credentials.
pub const MAX_REVOKE_GRACE: Duration = Duration::from_secs(600);
/// The annotation that sets the grace (a Go duration) instead of the default.
pub const REVOKE_GRACE_ANNOTATION: &str = "vaultgate.io/lease-revoke-grace";

/// The lease whose credentials the Secret holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Current {
    pub id: String,
    /// When it was issued or last renewed: its TTL counts from there.
    pub renewed_at: Timestamp,
    pub ttl: Duration,
    pub renewable: bool,
    /// A renew came back shorter than asked: Vault will not extend it further.
    pub max_ttl_reached: bool,
}

impl Current {
    pub fn expires_at(&self) -> Timestamp {
        add(self.renewed_at, self.ttl)
    }

    /// Two thirds into its TTL: when to renew it, or to replace it if it cannot be renewed.
    fn act_at(&self) -> Timestamp {
        add(self.renewed_at, self.ttl * 2 / 3)
    }

    /// How long it must outlive the next refresh, so a late sync still finds it alive.
    fn slack(&self) -> Duration {
        (self.ttl / 3).min(MAX_REVOKE_GRACE)
    }
}

/// A lease whose credentials were replaced in the Secret, kept until `revoke_after`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Superseded {
    pub id: String,
    pub revoke_after: Timestamp,
}

#[derive(Clone, Debug)]
pub struct Input<'a> {
    pub current: Option<&'a Current>,
    pub superseded: &'a [Superseded],
    pub now: Timestamp,
    /// When the next full sync (which mints new credentials) is due; `None`: never (a
    /// refreshInterval of zero, or CreatedOnce), so the lease must live on.
    pub next_refresh: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Renew {
        id: String,
        increment: Duration,
    },
    Revoke(String),
    /// Run a full sync now: the generator mints new credentials.
    MintEarly,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// When lease work is next due (`None`: nothing is pending).
    pub wake_at: Option<Timestamp>,
}

pub fn plan(i: &Input) -> Plan {
    let mut p = Plan::default();
    let wake = |t: Timestamp, p: &mut Plan| {
        p.wake_at = Some(p.wake_at.map_or(t, |w| w.min(t)));
    };
    for s in i.superseded {
        if s.revoke_after <= i.now {
            p.actions.push(Action::Revoke(s.id.clone()));
        } else {
            wake(s.revoke_after, &mut p);
        }
    }
    let Some(c) = i.current else { return p };
    if c.expires_at() <= i.now {
        p.actions.push(Action::MintEarly);
        return p;
    }
    let covered = i
        .next_refresh
        .is_some_and(|r| c.expires_at() >= add(r, c.slack()));
    if covered {
        return p;
    }
    let act_at = c.act_at();
    if act_at > i.now {
        wake(act_at, &mut p);
        return p;
    }
    if c.renewable && !c.max_ttl_reached {
        p.actions.push(Action::Renew {
            id: c.id.clone(),
            increment: renew_increment(c, i.now, i.next_refresh),
        });
    } else {
        p.actions.push(Action::MintEarly);
    }
    p
}

/// Enough to outlive the next refresh by the slack; without a next refresh, the lease's TTL.
fn renew_increment(c: &Current, now: Timestamp, next_refresh: Option<Timestamp>) -> Duration {
    match next_refresh {
        Some(r) => until(now, r) + c.slack(),
        None => c.ttl,
    }
    .max(Duration::from_secs(1))
}

/// The lease after a renew that asked for `asked` and got `got` at `now`.
pub fn renewed(
    c: &Current,
    asked: Duration,
    got: Duration,
    renewable: bool,
    now: Timestamp,
) -> Current {
    Current {
        id: c.id.clone(),
        renewed_at: now,
        ttl: got,
        renewable,
        max_ttl_reached: got < asked,
    }
}

/// How long a superseded lease stays alive: the annotation's duration if set, else twice the
/// refreshInterval (the most without one); at most [`MAX_REVOKE_GRACE`] either way.
pub fn revoke_grace(
    refresh_interval: Duration,
    annotation: Option<&str>,
) -> Result<Duration, String> {
    let grace = match annotation {
        Some(v) => crate::api::duration::parse(v.trim())
            .map_err(|e| format!("annotation {REVOKE_GRACE_ANNOTATION}: {e}"))?,
        // Syncing once (no interval): no rotation period to go by, so the longest grace.
        None if refresh_interval.is_zero() => MAX_REVOKE_GRACE,
        None => refresh_interval * 2,
    };
    Ok(grace.min(MAX_REVOKE_GRACE))
}

pub(crate) fn add(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

fn until(now: Timestamp, at: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn lease(renewed_at: i64, ttl_s: u64, renewable: bool, max: bool) -> Current {
        Current {
            id: "db/creds/app/a".into(),
            renewed_at: t(renewed_at),
            ttl: Duration::from_secs(ttl_s),
            renewable,
            max_ttl_reached: max,
        }
    }

    fn renew(inc_s: u64) -> Action {
        Action::Renew {
            id: "db/creds/app/a".into(),
            increment: Duration::from_secs(inc_s),
        }
    }

    /// What, the lease, now, next refresh, the actions, the wake-up.
    type Case = (
        &'static str,
        Current,
        i64,
        Option<i64>,
        Vec<Action>,
        Option<i64>,
    );

    #[test]
    fn current_lease_rules() {
        // (lease, now, next refresh, actions, wake)
        let cases: Vec<Case> = vec![
            (
                "outlives the next refresh with slack: nothing to do",
                lease(0, 3600, true, false),
                100,
                Some(1800),
                vec![],
                None,
            ),
            (
                "ends before the refresh, not yet two thirds in: wake then",
                lease(0, 60, true, false),
                10,
                Some(3600),
                vec![],
                Some(40),
            ),
            (
                "ends before the refresh, two thirds in: renew past the refresh",
                lease(0, 60, true, false),
                40,
                Some(3600),
                vec![renew(3560 + 20)],
                None,
            ),
            (
                "ends just at the refresh (no slack): renewed",
                lease(0, 60, true, false),
                45,
                Some(60),
                vec![renew(15 + 20)],
                None,
            ),
            (
                "max TTL reached: mint early at two thirds of what was left",
                lease(100, 30, true, true),
                119,
                Some(3600),
                vec![],
                Some(120),
            ),
            (
                "max TTL reached and two thirds of it gone: mint now",
                lease(100, 30, true, true),
                120,
                Some(3600),
                vec![Action::MintEarly],
                None,
            ),
            (
                "not renewable: mint early",
                lease(0, 60, false, false),
                41,
                Some(3600),
                vec![Action::MintEarly],
                None,
            ),
            (
                "already over: mint now",
                lease(0, 60, true, false),
                61,
                Some(3600),
                vec![Action::MintEarly],
                None,
            ),
            (
                "no next refresh: kept alive by its own TTL",
                lease(0, 60, true, false),
                40,
                None,
                vec![renew(60)],
                None,
            ),
            (
                "no next refresh, max TTL reached: mint early",
                lease(0, 60, true, true),
                40,
                None,
                vec![Action::MintEarly],
                None,
            ),
        ];
        for (what, c, now, next, actions, wake) in cases {
            let p = plan(&Input {
                current: Some(&c),
                superseded: &[],
                now: t(now),
                next_refresh: next.map(t),
            });
            assert_eq!(p.actions, actions, "{what}");
            assert_eq!(p.wake_at, wake.map(t), "{what}");
        }
    }

    #[test]
    fn superseded_leases_are_revoked_when_due_and_wake_the_plan() {
        let sup = [
            Superseded {
                id: "old-1".into(),
                revoke_after: t(100),
            },
            Superseded {
                id: "old-2".into(),
                revoke_after: t(200),
            },
        ];
        let c = lease(0, 3600, true, false);
        let p = plan(&Input {
            current: Some(&c),
            superseded: &sup,
            now: t(150),
            next_refresh: Some(t(1800)),
        });
        assert_eq!(p.actions, vec![Action::Revoke("old-1".into())]);
        assert_eq!(p.wake_at, Some(t(200)));
        // The earliest of the lease's own time and a revoke wins.
        let c = lease(0, 300, true, false);
        let p = plan(&Input {
            current: Some(&c),
            superseded: &sup,
            now: t(150),
            next_refresh: Some(t(1800)),
        });
        assert_eq!(p.wake_at, Some(t(200)));
        let p = plan(&Input {
            current: None,
            superseded: &sup,
            now: t(250),
            next_refresh: None,
        });
        assert_eq!(
            p.actions,
            vec![
                Action::Revoke("old-1".into()),
                Action::Revoke("old-2".into())
            ]
        );
        assert_eq!(p.wake_at, None);
    }

    #[test]
    fn a_short_renew_marks_the_max_ttl() {
        let c = lease(0, 60, true, false);
        let full = renewed(&c, MIN, MIN, true, t(40));
        assert_eq!((full.renewed_at, full.max_ttl_reached), (t(40), false));
        assert_eq!(full.expires_at(), t(100));
        let short = renewed(&c, MIN, Duration::from_secs(20), true, t(40));
        assert!(short.max_ttl_reached);
        assert_eq!(short.expires_at(), t(60));
    }

    #[test]
    fn revoke_grace_defaults_and_overrides() {
        let cases = [
            (MIN, None, Ok(2 * MIN)),
            (Duration::from_secs(3600), None, Ok(MAX_REVOKE_GRACE)),
            (MIN, Some("30s"), Ok(Duration::from_secs(30))),
            (MIN, Some("0"), Ok(Duration::ZERO)),
            (MIN, Some("1h"), Ok(MAX_REVOKE_GRACE)),
            (Duration::ZERO, None, Ok(MAX_REVOKE_GRACE)),
        ];
        for (interval, ann, want) in cases {
            assert_eq!(revoke_grace(interval, ann), want, "{interval:?} {ann:?}");
        }
        let err = revoke_grace(MIN, Some("soon")).unwrap_err();
        assert!(err.contains(REVOKE_GRACE_ANNOTATION), "{err}");
    }
}
