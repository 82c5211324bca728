//! The leases of an ExternalSecret as kept in its status (`status.leases`), so that a restart
//! of vaultgate loses none: ids and times only, never credentials. The current lease has no
//! `revokeAfter`; a superseded one has the time it is to be revoked.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::plan::{Current, Superseded, add};
use crate::generators::Lease;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeaseRecord {
    /// Vault's lease id.
    pub id: String,
    /// The generator whose answer carried it, as `Kind/name`.
    pub generator: String,
    /// When it was issued or last renewed: its TTL counts from there.
    pub renew_time: Time,
    pub expire_time: Time,
    pub renewable: bool,
    /// Vault gave a renew less than asked: the lease is at its max TTL.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub max_ttl_reached: bool,
    /// Set once new credentials replaced this lease's in the Secret: revoked at this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke_after: Option<Time>,
}

impl LeaseRecord {
    /// A lease just issued by `generator`'s answer at `now`.
    pub fn issued(generator: &str, lease: &Lease, now: Timestamp) -> LeaseRecord {
        LeaseRecord {
            id: lease.id.clone(),
            generator: generator.to_string(),
            renew_time: Time(now),
            expire_time: Time(add(now, Duration::from_secs(lease.duration_s))),
            renewable: lease.renewable,
            max_ttl_reached: false,
            revoke_after: None,
        }
    }

    pub fn current(&self) -> Option<Current> {
        if self.revoke_after.is_some() {
            return None;
        }
        let ttl = self.expire_time.0.duration_since(self.renew_time.0);
        Some(Current {
            id: self.id.clone(),
            renewed_at: self.renew_time.0,
            ttl: Duration::try_from(ttl).unwrap_or(Duration::ZERO),
            renewable: self.renewable,
            max_ttl_reached: self.max_ttl_reached,
        })
    }

    pub fn superseded(&self) -> Option<Superseded> {
        self.revoke_after.as_ref().map(|t| Superseded {
            id: self.id.clone(),
            revoke_after: t.0,
        })
    }
}

/// After a sync wrote new credentials: every current lease becomes superseded (revoked after
/// `grace`), and the new leases are current. A lease id seen again is kept as it was.
pub fn record_minted(
    records: &[LeaseRecord],
    minted: &[(String, Lease)],
    now: Timestamp,
    grace: Duration,
) -> Vec<LeaseRecord> {
    let mut out: Vec<LeaseRecord> = records
        .iter()
        .filter(|r| !minted.iter().any(|(_, l)| l.id == r.id))
        .cloned()
        .map(|mut r| {
            if r.revoke_after.is_none() {
                r.revoke_after = Some(Time(add(now, grace)));
            }
            r
        })
        .collect();
    out.extend(
        minted
            .iter()
            .map(|(generator, lease)| LeaseRecord::issued(generator, lease, now)),
    );
    out
}

/// The record after a renew of `id` gave `current`.
pub fn record_renewed(records: &[LeaseRecord], current: &Current) -> Vec<LeaseRecord> {
    records
        .iter()
        .map(|r| {
            if r.id != current.id {
                return r.clone();
            }
            LeaseRecord {
                renew_time: Time(current.renewed_at),
                expire_time: Time(current.expires_at()),
                renewable: current.renewable,
                max_ttl_reached: current.max_ttl_reached,
                ..r.clone()
            }
        })
        .collect()
}

/// The record without the lease `id` (revoked).
pub fn record_revoked(records: &[LeaseRecord], id: &str) -> Vec<LeaseRecord> {
    records.iter().filter(|r| r.id != id).cloned().collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn lease(id: &str, ttl: u64) -> Lease {
        Lease {
            id: id.into(),
            duration_s: ttl,
            renewable: true,
        }
    }

    #[test]
    fn serialized_as_ids_and_times() {
        let r = LeaseRecord::issued("VaultDynamicSecret/db", &lease("db/creds/app/a", 60), t(0));
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            json!({
                "id": "db/creds/app/a",
                "generator": "VaultDynamicSecret/db",
                "renewTime": "2027-01-15T08:00:00Z",
                "expireTime": "2027-01-15T08:01:00Z",
                "renewable": true,
            })
        );
        let back: LeaseRecord = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);

        let sup = LeaseRecord {
            max_ttl_reached: true,
            revoke_after: Some(Time(t(120))),
            ..r
        };
        let v = serde_json::to_value(&sup).unwrap();
        assert_eq!(v["maxTtlReached"], true);
        assert_eq!(v["revokeAfter"], "2027-01-15T08:02:00Z");
        assert_eq!(serde_json::from_value::<LeaseRecord>(v).unwrap(), sup);
    }

    #[test]
    fn the_plan_reads_current_and_superseded_leases_back() {
        let r = LeaseRecord::issued("VaultDynamicSecret/db", &lease("a", 90), t(10));
        let c = r.current().unwrap();
        assert_eq!((c.renewed_at, c.ttl), (t(10), Duration::from_secs(90)));
        assert_eq!(r.superseded(), None);

        let recs = record_minted(
            &[r],
            &[("VaultDynamicSecret/db".into(), lease("b", 90))],
            t(50),
            Duration::from_secs(120),
        );
        assert_eq!(recs.len(), 2);
        assert_eq!(
            recs[0].superseded(),
            Some(Superseded {
                id: "a".into(),
                revoke_after: t(170)
            })
        );
        assert_eq!(recs[1].current().unwrap().id, "b");

        // A second mint keeps the first superseded lease's own revoke time.
        let recs = record_minted(
            &recs,
            &[("VaultDynamicSecret/db".into(), lease("c", 90))],
            t(60),
            Duration::from_secs(120),
        );
        let times: Vec<_> = recs
            .iter()
            .map(|r| r.revoke_after.as_ref().map(|t| t.0))
            .collect();
        assert_eq!(times, vec![Some(t(170)), Some(t(180)), None]);

        let renewed = super::super::plan::renewed(
            &recs[2].current().unwrap(),
            Duration::from_secs(90),
            Duration::from_secs(30),
            true,
            t(100),
        );
        let recs = record_renewed(&recs, &renewed);
        assert_eq!(recs[2].expire_time.0, t(130));
        assert!(recs[2].max_ttl_reached);
        let recs = record_revoked(&recs, "a");
        let ids: Vec<_> = recs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, vec!["b", "c"]);
    }
}
