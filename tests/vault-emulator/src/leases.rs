//! Secret leases as Vault's expiration manager keeps them: issued by a dynamic engine,
//! renewed (`sys/leases/renew`, capped at the max TTL counted from issue), revoked
//! (`sys/leases/revoke`), looked up (`sys/leases/lookup`), and gone once expired.
//!
//! Leases run on the emulator's lease clock: the wall clock plus an offset a test can
//! advance, so TTLs of hours pass without waiting. Expired leases are dropped when next
//! looked at, as Vault's expiration manager revokes them at their expiry.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::server::{Ctx, Op};
use crate::util::{Resp, parse_duration, random_string, rfc3339, uuid};

/// Default and maximum lease TTL of a mount with no tuning (768h).
pub(crate) const SYSTEM_MAX_TTL: u64 = crate::state::DEFAULT_TTL;

#[derive(Debug, Clone)]
pub(crate) struct LeaseEntry {
    pub id: String,
    pub issue_time: SystemTime,
    pub expire_time: SystemTime,
    pub last_renewal: Option<SystemTime>,
    pub renewable: bool,
    /// What a renew without `increment` gives (the role's `default_ttl`, or the system's).
    pub default_ttl: u64,
    /// The lease never lives past `issue_time + max_ttl`.
    pub max_ttl: u64,
}

/// Counters a test can read: how many leases were issued, renewed, revoked, expired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeaseCounters {
    pub issued: u64,
    pub renewed: u64,
    pub revoked: u64,
    pub expired: u64,
}

#[derive(Default)]
pub(crate) struct Leases {
    /// Keyed by namespace, then lease id: a lease is only visible in its namespace.
    entries: BTreeMap<(String, String), LeaseEntry>,
    pub counters: LeaseCounters,
    offset: Duration,
}

impl Leases {
    /// The lease clock.
    pub fn now(&self) -> SystemTime {
        SystemTime::now() + self.offset
    }

    pub fn advance(&mut self, by: Duration) {
        self.offset += by;
    }

    /// Drops leases whose time is up (Vault revokes them at expiry).
    pub fn sweep(&mut self) {
        let now = self.now();
        let before = self.entries.len();
        self.entries.retain(|_, l| l.expire_time > now);
        self.counters.expired += (before - self.entries.len()) as u64;
    }

    /// Issues a lease under `path` (e.g. `database/creds/app`); returns its id and TTL.
    pub fn issue(
        &mut self,
        ns: &str,
        ns_id: &str,
        path: &str,
        default_ttl: u64,
        max_ttl: u64,
    ) -> (String, u64) {
        let default_ttl = if default_ttl == 0 {
            SYSTEM_MAX_TTL
        } else {
            default_ttl
        };
        let max_ttl = if max_ttl == 0 {
            SYSTEM_MAX_TTL
        } else {
            max_ttl
        };
        let ttl = default_ttl.min(max_ttl);
        let mut id = format!("{path}/{}", random_string(24));
        if !ns.is_empty() {
            // Vault suffixes the ids of namespaced leases with the namespace id.
            id = format!("{id}.{ns_id}");
        }
        let now = self.now();
        self.entries.insert(
            (ns.to_string(), id.clone()),
            LeaseEntry {
                id: id.clone(),
                issue_time: now,
                expire_time: now + Duration::from_secs(ttl),
                last_renewal: None,
                renewable: true,
                default_ttl,
                max_ttl,
            },
        );
        self.counters.issued += 1;
        (id, ttl)
    }

    /// Live leases whose id starts with `prefix` (a role's `database/creds/app/`), in every
    /// namespace.
    pub fn live(&mut self, prefix: &str) -> Vec<String> {
        self.sweep();
        self.entries
            .values()
            .filter(|l| l.id.starts_with(prefix))
            .map(|l| l.id.clone())
            .collect()
    }

    /// Revokes every lease issued under `prefix` in `ns` (an unmounted engine's leases).
    pub fn revoke_prefix(&mut self, ns: &str, prefix: &str) {
        self.sweep();
        let before = self.entries.len();
        self.entries
            .retain(|(n, id), _| !(n == ns && id.starts_with(prefix)));
        self.counters.revoked += (before - self.entries.len()) as u64;
    }

    fn renew(&mut self, ns: &str, id: &str, increment: u64) -> Resp {
        self.sweep();
        let now = self.now();
        let Some(l) = self.entries.get_mut(&(ns.to_string(), id.to_string())) else {
            return Resp::bad_request("lease not found");
        };
        if !l.renewable {
            return Resp::bad_request("lease is not renewable");
        }
        // Vault's CalculateTTL: the increment (or the backend's TTL), capped so that the
        // lease ends no later than issue time + max TTL.
        let wanted = if increment > 0 {
            increment
        } else {
            l.default_ttl
        };
        let max_end = l.issue_time + Duration::from_secs(l.max_ttl);
        // Rounded to the nearest second, as Vault rounds its clock for lease TTLs.
        let left = secs_until(now, max_end);
        let mut warnings = Vec::new();
        let ttl = if wanted > left {
            warnings.push(format!(
                "TTL of \"{}\" exceeded the effective max_ttl of \"{}\"; TTL value is capped accordingly",
                go_duration(wanted),
                go_duration(left)
            ));
            left
        } else {
            wanted
        };
        l.expire_time = now + Duration::from_secs(ttl);
        l.last_renewal = Some(now);
        self.counters.renewed += 1;
        let mut body = json!({
            "request_id": uuid(),
            "lease_id": l.id,
            "renewable": l.renewable,
            "lease_duration": ttl,
            "data": null,
            "wrap_info": null,
            "warnings": null,
            "auth": null,
        });
        if !warnings.is_empty() {
            body["warnings"] = json!(warnings);
        }
        Resp::new(200, Some(body))
    }

    fn revoke(&mut self, ns: &str, id: &str) -> Resp {
        self.sweep();
        // Revoking a lease that is not there (expired, revoked) succeeds, as in Vault.
        if self
            .entries
            .remove(&(ns.to_string(), id.to_string()))
            .is_some()
        {
            self.counters.revoked += 1;
        }
        Resp::no_content()
    }

    fn lookup(&mut self, ns: &str, id: &str) -> Resp {
        self.sweep();
        let now = self.now();
        let Some(l) = self.entries.get(&(ns.to_string(), id.to_string())) else {
            return Resp::bad_request("invalid lease");
        };
        let ttl = secs_until(now, l.expire_time);
        Resp::data(json!({
            "id": l.id,
            "issue_time": rfc3339(l.issue_time.into()),
            "expire_time": rfc3339(l.expire_time.into()),
            "last_renewal": l.last_renewal.map(|t| rfc3339(t.into())),
            "renewable": l.renewable,
            "ttl": ttl,
        }))
    }
}

fn secs_until(now: SystemTime, then: SystemTime) -> u64 {
    then.duration_since(now)
        .map(|d| (d + Duration::from_millis(500)).as_secs())
        .unwrap_or(0)
}

/// Go's `time.Duration` string, as Vault's warnings print it (`1h0m0s`, `2m30s`, `45s`).
fn go_duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

/// Whether `path` is one of the lease endpoints served here.
pub(crate) fn is_lease_path(path: &str) -> bool {
    ["renew", "revoke", "lookup"]
        .iter()
        .any(|op| lease_op(path) == Some(op))
}

fn lease_op(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("sys/leases/")?;
    Some(rest.split('/').next().unwrap_or(rest))
}

/// `sys/leases/{renew,revoke,lookup}`: the id in the body, or (renew, revoke) after the path.
pub(crate) fn write(leases: &mut Leases, ctx: &Ctx) -> Resp {
    if ctx.op != Op::Write {
        return Resp::unsupported_op();
    }
    let op = lease_op(&ctx.path).unwrap_or_default();
    let in_path = ctx
        .path
        .strip_prefix(&format!("sys/leases/{op}/"))
        .filter(|s| !s.is_empty() && op != "lookup");
    let id = match ctx.body.get("lease_id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::String(_)) | None => match in_path {
            Some(p) => p.to_string(),
            None => return Resp::bad_request("lease_id must be specified"),
        },
        Some(other) => {
            return Resp::bad_request(format!(
                "1 error occurred:\n\t* 'lease_id' expected type 'string', got unconvertible type '{}', value: '{other}'\n\n",
                json_type(other)
            ));
        }
    };
    match op {
        "renew" => {
            let increment = match parse_duration(ctx.body.get("increment").unwrap_or(&Value::Null))
            {
                Ok(i) => i,
                Err(e) => return Resp::bad_request(e),
            };
            leases.renew(&ctx.ns, &id, increment)
        }
        "revoke" => leases.revoke(&ctx.ns, &id),
        "lookup" => leases.lookup(&ctx.ns, &id),
        _ => Resp::no_route(&ctx.path),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "bool",
        Value::Number(_) => "float64",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
        _ => "string",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(45), "45s");
        assert_eq!(go_duration(150), "2m30s");
        assert_eq!(go_duration(3600), "1h0m0s");
    }

    #[test]
    fn renew_is_capped_at_the_max_ttl_from_issue() {
        let mut l = Leases::default();
        let (id, ttl) = l.issue("", "", "database/creds/app", 60, 100);
        assert_eq!(ttl, 60);
        l.advance(Duration::from_secs(50));
        let r = l.renew("", &id, 60);
        assert_eq!(r.body.as_ref().unwrap()["lease_duration"], 50);
        assert!(
            r.body.unwrap()["warnings"][0]
                .as_str()
                .unwrap()
                .contains("max_ttl")
        );
        l.advance(Duration::from_secs(51));
        assert_eq!(l.renew("", &id, 60).status, 400);
        assert_eq!(l.counters.expired, 1);
    }

    #[test]
    fn a_lease_is_only_seen_in_its_namespace() {
        let mut l = Leases::default();
        let (id, _) = l.issue("team", "Ab1cD", "database/creds/app", 60, 0);
        assert!(id.ends_with(".Ab1cD"));
        assert_eq!(l.lookup("", &id).status, 400);
        assert_eq!(l.lookup("team", &id).status, 200);
    }
}
