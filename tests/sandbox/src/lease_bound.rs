//! The soak's bound on an ExternalSecret's live leases: the current one plus the superseded
//! ones still within their grace, as its `status.leases` records them.
//!
//! The reconciler's order (`src/reconcile/external_secret/leases.rs`) decides what a sample
//! may see beyond that: a sync mints (Vault has the lease, the status does not yet), records
//! the new lease as superseded with `revokeAfter` = now (`record_pending`), writes the Secret,
//! then a status write makes it current and starts the old one's grace. So, reading the status
//! before the live leases, a sample may see one lease not yet in the status (the mint in
//! flight); the pending lease is a superseded one whose grace is zero; and a superseded lease
//! is revoked when the reconciler wakes at its `revokeAfter`, a little later (`lag`).

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use vaultgate::generators::lease::LeaseRecord;

/// One sample of one ExternalSecret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub live: usize,
    /// 1 + the live superseded leases within their grace (+ `lag`) + the mint in flight.
    pub allowed: usize,
    /// Live leases the status does not record (a mint between its Vault call and its status
    /// write, or a lost record).
    pub unrecorded: Vec<String>,
    /// Live leases past their grace by more than the lag, or a second current one.
    pub unjustified: Vec<String>,
    /// The most a live superseded lease is past its `revokeAfter` (zero if none is).
    pub overdue: Duration,
}

impl Sample {
    pub fn within_bound(&self) -> bool {
        self.live <= self.allowed && self.unjustified.is_empty()
    }
}

/// `records` as read from the status before `live` (ids of the live leases) was read at `at`.
/// `lag`: how long after its `revokeAfter` a superseded lease may still be live (`None`: any
/// recorded lease is accounted for, as while faults make revocations fail and retry).
/// `in_flight`: how many unrecorded leases count as mints in flight.
pub fn check(
    records: &[LeaseRecord],
    live: &[String],
    at: Timestamp,
    lag: Option<Duration>,
    in_flight: usize,
) -> Sample {
    let live: BTreeSet<&str> = live.iter().map(String::as_str).collect();
    let mut allowed = 1;
    let mut currents = 0;
    let mut unjustified = vec![];
    let mut overdue = Duration::ZERO;
    for r in records.iter().filter(|r| live.contains(r.id.as_str())) {
        let Some(after) = &r.revoke_after else {
            currents += 1;
            if currents > 1 {
                unjustified.push(r.id.clone());
            }
            continue;
        };
        let past = Duration::try_from(at.duration_since(after.0)).unwrap_or(Duration::ZERO);
        overdue = overdue.max(past);
        if lag.is_none_or(|lag| past < lag) {
            allowed += 1;
        } else {
            unjustified.push(r.id.clone());
        }
    }
    let recorded: BTreeSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
    let unrecorded: Vec<String> = live
        .iter()
        .filter(|id| !recorded.contains(*id))
        .map(|id| id.to_string())
        .collect();
    allowed += unrecorded.len().min(in_flight);
    unjustified.extend(unrecorded.iter().skip(in_flight).cloned());
    Sample {
        live: live.len(),
        allowed,
        unrecorded,
        unjustified,
        overdue,
    }
}

/// `t` plus `d` (for tests and callers building times).
pub fn plus(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn t(s: u64) -> Timestamp {
        plus(
            Timestamp::from_second(1_800_000_000).unwrap(),
            Duration::from_secs(s),
        )
    }

    fn rec(id: &str, revoke_after: Option<u64>) -> LeaseRecord {
        LeaseRecord {
            id: id.into(),
            generator: "VaultDynamicSecret/db".into(),
            renew_time: Time(t(0)),
            expire_time: Time(t(600)),
            renewable: true,
            max_ttl_reached: false,
            revoke_after: revoke_after.map(|s| Time(t(s))),
        }
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    const LAG: Option<Duration> = Some(Duration::from_secs(5));

    #[test]
    fn bound_per_case() {
        struct Case {
            name: &'static str,
            records: Vec<LeaseRecord>,
            live: Vec<String>,
            at: u64,
            lag: Option<Duration>,
            allowed: usize,
            ok: bool,
        }
        let cases = [
            Case {
                name: "the current lease alone",
                records: vec![rec("a", None)],
                live: ids(&["a"]),
                at: 100,
                lag: LAG,
                allowed: 1,
                ok: true,
            },
            Case {
                name: "a superseded lease within its grace",
                records: vec![rec("a", Some(110)), rec("b", None)],
                live: ids(&["a", "b"]),
                at: 100,
                lag: LAG,
                allowed: 2,
                ok: true,
            },
            Case {
                name: "its grace over, the revocation not yet run",
                records: vec![rec("a", Some(98)), rec("b", None)],
                live: ids(&["a", "b"]),
                at: 100,
                lag: LAG,
                allowed: 2,
                ok: true,
            },
            Case {
                name: "its grace over by more than the lag: a leak",
                records: vec![rec("a", Some(90)), rec("b", None)],
                live: ids(&["a", "b"]),
                at: 100,
                lag: LAG,
                allowed: 1,
                ok: false,
            },
            Case {
                name: "past the grace while faults make revokes retry",
                records: vec![rec("a", Some(50)), rec("b", None)],
                live: ids(&["a", "b"]),
                at: 100,
                lag: None,
                allowed: 2,
                ok: true,
            },
            Case {
                name: "a mint in flight, not yet in the status",
                records: vec![rec("a", None)],
                live: ids(&["a", "n"]),
                at: 100,
                lag: LAG,
                allowed: 2,
                ok: true,
            },
            Case {
                name: "two unrecorded leases: one is lost",
                records: vec![rec("a", None)],
                live: ids(&["a", "n", "m"]),
                at: 100,
                lag: LAG,
                allowed: 2,
                ok: false,
            },
            Case {
                name: "recorded pending (superseded now) beside the old current",
                records: vec![rec("a", None), rec("n", Some(100))],
                live: ids(&["a", "n"]),
                at: 100,
                lag: LAG,
                allowed: 2,
                ok: true,
            },
            Case {
                name: "a revoked record leaves no room for another lease",
                records: vec![rec("a", Some(110)), rec("b", None)],
                live: ids(&["b", "x", "y"]),
                at: 100,
                lag: LAG,
                allowed: 2,
                ok: false,
            },
            Case {
                name: "two current leases of one generator",
                records: vec![rec("a", None), rec("b", None)],
                live: ids(&["a", "b"]),
                at: 100,
                lag: LAG,
                allowed: 1,
                ok: false,
            },
        ];
        for c in cases {
            let s = check(&c.records, &c.live, t(c.at), c.lag, 1);
            assert_eq!(s.allowed, c.allowed, "{}: {s:?}", c.name);
            assert_eq!(s.within_bound(), c.ok, "{}: {s:?}", c.name);
        }
    }

    #[test]
    fn overdue_is_how_far_past_the_grace_a_live_lease_is() {
        let recs = [rec("a", Some(97)), rec("b", Some(120)), rec("c", None)];
        let s = check(&recs, &ids(&["a", "b", "c"]), t(100), LAG, 1);
        assert_eq!(s.overdue, Duration::from_secs(3));
        assert_eq!((s.live, s.allowed), (3, 3));
        // A revoked lease is not live: not overdue either.
        let s = check(&recs, &ids(&["b", "c"]), t(100), LAG, 1);
        assert_eq!(s.overdue, Duration::ZERO);
    }

    #[test]
    fn no_mint_in_flight_allowed_means_every_lease_is_recorded() {
        let s = check(&[rec("a", None)], &ids(&["a", "n"]), t(100), LAG, 0);
        assert!(!s.within_bound());
        assert_eq!(s.unrecorded, ids(&["n"]));
    }
}
