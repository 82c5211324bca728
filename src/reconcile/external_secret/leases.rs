//! The lease lifecycle of an ExternalSecret's generated Vault credentials (beyond ESO, which
//! never renews or revokes): runs the work [`crate::generators::lease::plan`] says is due
//! (renew, revoke superseded leases, ask for an early sync), records minted leases in the
//! status, and revokes every lease when the ExternalSecret goes or stops using a generator.
//!
//! The record lives in `status.leases` (so a restart loses none) and, between a write and the
//! cache showing it, in this controller's memory.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};

use super::memory::{Memory, key, memory, update_memory};
use crate::api::generators::{ClusterGenerator, VaultDynamicSecret};
use crate::api::{ExternalSecret, RefreshPolicy, duration};
use crate::generators::lease::{
    self, Action, LeaseRecord, REVOKE_GRACE_ANNOTATION, record_minted, record_renewed,
    record_revoked,
};
use crate::generators::{GeneratorRefKey, Lease, Resolved, Source};
use crate::reconcile::{Shared, refresh};
use crate::vault::{RenewOutcome, StoreClient, VaultError};

/// How long to wait before trying a failed renew or revoke again.
pub(super) const RETRY: Duration = Duration::from_secs(30);

/// What lease work before a sync found.
#[derive(Debug, Default)]
pub(super) struct Tended {
    /// A lease is ending and cannot be renewed far enough: the sync must mint now.
    pub mint_now: bool,
    /// When lease work is next due.
    pub wake_at: Option<Timestamp>,
}

/// The earlier of a wait and a lease wake-up (as a wait from `now`).
pub(super) fn sooner(
    wait: Option<Duration>,
    wake: Option<Timestamp>,
    now: Timestamp,
) -> Option<Duration> {
    let wake = wake.map(|w| refresh::until(now, w));
    match (wait, wake) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The lease records as last written: our memory if it has them (the cache may lag behind our
/// write), else the status.
pub(super) fn records(es: &ExternalSecret, mem: &Memory) -> Vec<LeaseRecord> {
    mem.leases
        .clone()
        .or_else(|| es.status.as_ref().and_then(|s| s.leases.clone()))
        .unwrap_or_default()
}

/// `Kind/name` of a generator reference, as records name it.
pub(super) fn generator_name(kind: &str, name: &str) -> String {
    format!("{kind}/{name}")
}

/// The generators the spec still references, as records name them.
fn referenced(es: &ExternalSecret) -> Vec<String> {
    es.spec
        .data_from
        .iter()
        .flatten()
        .filter_map(|d| d.source_ref.as_ref()?.generator_ref.as_ref())
        .filter_map(|g| {
            let kind = serde_json::to_value(g.kind).ok()?;
            Some(generator_name(kind.as_str()?, &g.name))
        })
        .collect()
}

/// Whether the ExternalSecret holds leases, or may get some at its next sync: the finalizer
/// must be there before the first lease is minted, or a deletion could miss it.
pub(super) fn may_hold_leases(es: &ExternalSecret, mem: &Memory) -> bool {
    !records(es, mem).is_empty()
        || referenced(es)
            .iter()
            .any(|g| g.starts_with("VaultDynamicSecret/") || g.starts_with("ClusterGenerator/"))
}

/// When the next full sync is due (`None`: only a change brings one).
fn next_refresh(
    es: &ExternalSecret,
    mem: &Memory,
    interval: Duration,
    seed: &str,
) -> Option<Timestamp> {
    if es.spec.refresh_policy.unwrap_or_default() != RefreshPolicy::Periodic {
        return None;
    }
    let status_time = es
        .status
        .as_ref()
        .and_then(|s| s.refresh_time.as_ref())
        .map(|t| t.0);
    let last = match (&mem.synced, status_time) {
        (Some((_, m)), Some(s)) => Some((*m).max(s)),
        (Some((_, m)), None) => Some(*m),
        (None, s) => s,
    };
    refresh::next_due(interval, last, seed)
}

/// The grace of superseded leases for this ExternalSecret (an invalid annotation falls back to
/// the default, with a warning: it must not stop revocation).
fn grace(es: &ExternalSecret, interval: Duration) -> Duration {
    let ann = es
        .annotations()
        .get(REVOKE_GRACE_ANNOTATION)
        .map(String::as_str);
    lease::revoke_grace(interval, ann).unwrap_or_else(|e| {
        tracing::warn!(externalsecret = %es_name(es), error = %e, "using the default lease revoke grace");
        lease::revoke_grace(interval, None).unwrap_or(lease::MAX_REVOKE_GRACE)
    })
}

fn es_name(es: &ExternalSecret) -> String {
    let (ns, name) = key(es);
    format!("{ns}/{name}")
}

fn interval_of(es: &ExternalSecret) -> Duration {
    let text = es.spec.refresh_interval.as_deref().unwrap_or("1h0m0s");
    duration::parse(text).unwrap_or(Duration::from_secs(3600))
}

/// Runs the lease work that is due before a sync: revokes superseded leases whose grace is
/// over, and those of generators the spec no longer uses, renews a current lease that would
/// end before the next refresh, and says whether a sync must mint new credentials now.
pub(super) async fn tend(es: &ExternalSecret, sh: &Shared, mem: &Memory, seed: &str) -> Tended {
    let mut recs = records(es, mem);
    if recs.is_empty() {
        return Tended::default();
    }
    let before = recs.clone();
    let now = Timestamp::now();
    let interval = interval_of(es);
    let used = referenced(es);
    // Leases of a generator the spec no longer names go as superseded ones do.
    for r in recs.iter_mut() {
        if r.revoke_after.is_none() && !used.contains(&r.generator) {
            r.revoke_after = Some(Time(lease::plan::add(now, grace(es, interval))));
        }
    }
    // A superseded lease past its expiry is gone from Vault already.
    recs.retain(|r| r.revoke_after.is_none() || r.expire_time.0 > now);

    let next = next_refresh(es, mem, interval, seed);
    let mut out = Tended::default();
    let superseded: Vec<_> = recs.iter().filter_map(LeaseRecord::superseded).collect();
    let mut plans = vec![lease::plan(&lease::Input {
        current: None,
        superseded: &superseded,
        now,
        next_refresh: next,
    })];
    for c in recs.iter().filter_map(LeaseRecord::current) {
        plans.push(lease::plan(&lease::Input {
            current: Some(&c),
            superseded: &[],
            now,
            next_refresh: next,
        }));
    }
    let wake = |t: Timestamp, out: &mut Tended| {
        out.wake_at = Some(out.wake_at.map_or(t, |w| w.min(t)));
    };
    for p in plans {
        if let Some(t) = p.wake_at {
            wake(t, &mut out);
        }
        for action in p.actions {
            match action {
                Action::MintEarly => out.mint_now = true,
                Action::Revoke(id) => {
                    let gen_name = generator_of(&recs, &id);
                    match revoke(es, sh, &gen_name, &id).await {
                        Ok(()) => recs = record_revoked(&recs, &id),
                        Err(()) => wake(lease::plan::add(now, RETRY), &mut out),
                    }
                }
                Action::Renew { id, increment } => {
                    let gen_name = generator_of(&recs, &id);
                    let Some(cur) = recs
                        .iter()
                        .find(|r| r.id == id)
                        .and_then(LeaseRecord::current)
                    else {
                        continue;
                    };
                    match renew(es, sh, &gen_name, &id, increment).await {
                        Ok(RenewOutcome::Renewed(r)) => {
                            let got = Duration::from_secs(r.duration_s);
                            let c =
                                lease::renewed(&cur, increment, got, r.renewable, Timestamp::now());
                            recs = record_renewed(&recs, &c);
                            // The renewed lease's own next step.
                            let again = lease::plan(&lease::Input {
                                current: Some(&c),
                                superseded: &[],
                                now: Timestamp::now(),
                                next_refresh: next,
                            });
                            if again.actions.contains(&Action::MintEarly) {
                                out.mint_now = true;
                            }
                            if let Some(t) = again.wake_at {
                                wake(t, &mut out);
                            }
                        }
                        Ok(RenewOutcome::Ended(why)) => {
                            tracing::info!(externalsecret = %es_name(es), lease = %id, reason = %why, "lease cannot be renewed; minting new credentials");
                            sh.metrics.lease_events("failed", 1);
                            out.mint_now = true;
                        }
                        Err(()) => wake(lease::plan::add(now, RETRY), &mut out),
                    }
                }
            }
        }
    }
    if recs != before {
        save(es, sh, recs).await;
    }
    out
}

fn generator_of(recs: &[LeaseRecord], id: &str) -> String {
    recs.iter()
        .find(|r| r.id == id)
        .map(|r| r.generator.clone())
        .unwrap_or_default()
}

/// Before the Secret is written: new leases are recorded as due for revocation now, so that a
/// failed write or a crash leaves none unrecorded; [`after_sync`] makes them current.
pub(super) async fn record_pending(
    es: &ExternalSecret,
    sh: &Shared,
    mem: &Memory,
    minted: &[(GeneratorRefKey, Lease)],
) {
    if minted.is_empty() {
        return;
    }
    sh.metrics.lease_events("issued", minted.len());
    let now = Timestamp::now();
    let mut recs = records(es, mem);
    for (g, l) in minted {
        let mut r = LeaseRecord::issued(&generator_name(&g.kind, &g.name), l, now);
        r.revoke_after = Some(Time(now));
        recs.push(r);
    }
    save(es, sh, recs).await;
}

/// After the Secret holds the new credentials: they are current, the leases they replace are
/// superseded (revoked after the grace). Records it (in memory; the status write carries it)
/// and returns when lease work is next due.
pub(super) fn after_sync(
    es: &ExternalSecret,
    sh: &Shared,
    minted: &[(GeneratorRefKey, Lease)],
    seed: &str,
) -> Option<Timestamp> {
    let old = records(es, &memory(sh, es));
    if minted.is_empty() && old.is_empty() {
        return None;
    }
    let now = Timestamp::now();
    let interval = interval_of(es);
    let named: Vec<(String, Lease)> = minted
        .iter()
        .map(|(g, l)| (generator_name(&g.kind, &g.name), l.clone()))
        .collect();
    let recs = record_minted(&old, &named, now, grace(es, interval));
    update_memory(sh, es, |m| m.leases = Some(recs.clone()));
    // This sync was the last refresh.
    let next = (es.spec.refresh_policy.unwrap_or_default() == RefreshPolicy::Periodic)
        .then(|| refresh::next_due(interval, Some(now), seed))
        .flatten();
    wake_of(&recs, now, next)
}

/// When lease work is next due for the leases recorded now: a failed sync's retry must not put
/// off a revocation or renewal due sooner.
pub(super) fn next_wake(es: &ExternalSecret, sh: &Shared, seed: &str) -> Option<Timestamp> {
    let mem = memory(sh, es);
    let recs = records(es, &mem);
    if recs.is_empty() {
        return None;
    }
    let now = Timestamp::now();
    let next = next_refresh(es, &mem, interval_of(es), seed);
    // A revoke or renew already due (the lease of a sync that failed, a retry) is due now; an
    // early mint is not: it would sync again without the backoff.
    let superseded: Vec<_> = recs.iter().filter_map(LeaseRecord::superseded).collect();
    let mut inputs = vec![lease::Input {
        current: None,
        superseded: &superseded,
        now,
        next_refresh: next,
    }];
    let currents: Vec<_> = recs.iter().filter_map(LeaseRecord::current).collect();
    inputs.extend(currents.iter().map(|c| lease::Input {
        current: Some(c),
        superseded: &[],
        now,
        next_refresh: next,
    }));
    let due = inputs.iter().any(|i| {
        lease::plan(i)
            .actions
            .iter()
            .any(|a| !matches!(a, Action::MintEarly))
    });
    if due {
        return Some(now);
    }
    wake_of(&recs, now, next)
}

/// When the plan next wants lease work done for these records.
fn wake_of(recs: &[LeaseRecord], now: Timestamp, next: Option<Timestamp>) -> Option<Timestamp> {
    let superseded: Vec<_> = recs.iter().filter_map(LeaseRecord::superseded).collect();
    let mut wake = lease::plan(&lease::Input {
        current: None,
        superseded: &superseded,
        now,
        next_refresh: next,
    })
    .wake_at;
    for c in recs.iter().filter_map(LeaseRecord::current) {
        let p = lease::plan(&lease::Input {
            current: Some(&c),
            superseded: &[],
            now,
            next_refresh: next,
        });
        wake = match (wake, p.wake_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    wake
}

/// On deletion: revokes every lease. Vault unreachable is an error (the finalizer stays and
/// the deletion is retried); a lease that cannot be revoked for good (its generator is gone,
/// the policy refuses) is left to its TTL, with a warning.
pub(super) async fn revoke_all(
    es: &ExternalSecret,
    sh: &Shared,
    mem: &Memory,
) -> Result<(), VaultError> {
    let recs = records(es, mem);
    let mut left = recs.clone();
    let mut transient = None;
    for r in &recs {
        match client_for(es, sh, &r.generator).await {
            Ok(c) => match c.revoke_lease(&r.id).await {
                Ok(()) => {
                    sh.metrics.lease_events("revoked", 1);
                    left = record_revoked(&left, &r.id);
                }
                Err(e) => {
                    sh.metrics.lease_events("failed", 1);
                    tracing::warn!(externalsecret = %es_name(es), lease = %r.id, error = %e, "could not revoke lease");
                    if e.is_transient() {
                        transient = Some(e);
                    } else {
                        left = record_revoked(&left, &r.id);
                    }
                }
            },
            Err(e) => {
                sh.metrics.lease_events("failed", 1);
                tracing::warn!(externalsecret = %es_name(es), lease = %r.id, error = %e, "lease left to expire: no client to revoke it");
                if e.is_transient() {
                    transient = Some(e);
                } else {
                    left = record_revoked(&left, &r.id);
                }
            }
        }
    }
    if left != recs {
        save(es, sh, left).await;
    }
    transient.map_or(Ok(()), Err)
}

async fn revoke(es: &ExternalSecret, sh: &Shared, generator: &str, id: &str) -> Result<(), ()> {
    let done = match client_for(es, sh, generator).await {
        Ok(c) => c.revoke_lease(id).await,
        Err(e) => Err(e),
    };
    match done {
        Ok(()) => {
            sh.metrics.lease_events("revoked", 1);
            Ok(())
        }
        Err(e) => {
            sh.metrics.lease_events("failed", 1);
            tracing::warn!(externalsecret = %es_name(es), lease = %id, error = %e, "could not revoke lease");
            Err(())
        }
    }
}

async fn renew(
    es: &ExternalSecret,
    sh: &Shared,
    generator: &str,
    id: &str,
    increment: Duration,
) -> Result<RenewOutcome, ()> {
    let done = match client_for(es, sh, generator).await {
        Ok(c) => c.renew_lease(id, increment.as_secs()).await,
        Err(e) => Err(e),
    };
    match done {
        Ok(o) => {
            if matches!(o, RenewOutcome::Renewed(_)) {
                sh.metrics.lease_events("renewed", 1);
            }
            Ok(o)
        }
        Err(e) => {
            sh.metrics.lease_events("failed", 1);
            tracing::warn!(externalsecret = %es_name(es), lease = %id, error = %e, "could not renew lease");
            Err(())
        }
    }
}

/// The Vault client of the generator that issued a lease: the same login its credentials were
/// made with.
async fn client_for(
    es: &ExternalSecret,
    sh: &Shared,
    generator: &str,
) -> Result<std::sync::Arc<StoreClient>, VaultError> {
    let ns = es.namespace().unwrap_or_default();
    let (kind, name) = generator.split_once('/').unwrap_or(("", generator));
    let gone = || VaultError::config(format!("generator {generator} no longer exists"));
    let resolved = match kind {
        "VaultDynamicSecret" => {
            let api: Api<VaultDynamicSecret> = Api::namespaced(sh.kube.clone(), &ns);
            let g = api
                .get_opt(name)
                .await
                .map_err(|e| VaultError::Unavailable {
                    message: format!("reading {generator}: {e}"),
                })?
                .ok_or_else(gone)?;
            Resolved {
                kind: kind.into(),
                namespace: Some(ns.clone()),
                name: name.into(),
                uid: g.uid().unwrap_or_default(),
                generation: g.meta().generation.unwrap_or(0),
                source: Source::VaultDynamic(Box::new(g.spec)),
            }
        }
        "ClusterGenerator" => {
            let api: Api<ClusterGenerator> = Api::all(sh.kube.clone());
            let g = api
                .get_opt(name)
                .await
                .map_err(|e| VaultError::Unavailable {
                    message: format!("reading {generator}: {e}"),
                })?
                .ok_or_else(gone)?;
            Resolved {
                kind: kind.into(),
                namespace: None,
                name: name.into(),
                uid: g.uid().unwrap_or_default(),
                generation: g.meta().generation.unwrap_or(0),
                source: Source::from_cluster(&g.spec, "spec").map_err(VaultError::config)?,
            }
        }
        _ => return Err(gone()),
    };
    let Source::VaultDynamic(spec) = &resolved.source else {
        return Err(VaultError::config(format!(
            "generator {generator} is not a VaultDynamicSecret"
        )));
    };
    sh.vault
        .client(&resolved.vault_handle(spec, &ns), &ns)
        .await
}

/// Writes the record to memory and to the status (a merge patch of `status.leases` alone).
pub(super) async fn save(es: &ExternalSecret, sh: &Shared, recs: Vec<LeaseRecord>) {
    update_memory(sh, es, |m| m.leases = Some(recs.clone()));
    let (ns, name) = key(es);
    #[derive(serde::Serialize)]
    struct Leases<'a> {
        leases: &'a [LeaseRecord],
    }
    #[derive(serde::Serialize)]
    struct StatusPatch<'a> {
        status: Leases<'a>,
    }
    let req = kube::core::Request::new(ExternalSecret::url_path(&(), Some(&ns))).patch_subresource(
        "status",
        &name,
        &PatchParams::default(),
        &Patch::Merge(StatusPatch {
            status: Leases { leases: &recs },
        }),
    );
    let done = match req {
        Ok(req) => sh
            .kube
            .request::<serde::de::IgnoredAny>(req)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = done {
        // Memory still has it; the next status write carries it.
        tracing::warn!(externalsecret = %es_name(es), error = %e, "could not record leases in the status");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_names_follow_the_reference_kind() {
        let es: ExternalSecret = serde_json::from_value(serde_json::json!({
            "apiVersion": "external-secrets.io/v1",
            "kind": "ExternalSecret",
            "metadata": {"name": "es", "namespace": "ns"},
            "spec": {"dataFrom": [
                {"sourceRef": {"generatorRef": {"kind": "VaultDynamicSecret", "name": "db"}}},
                {"sourceRef": {"generatorRef": {"kind": "ClusterGenerator", "name": "shared"}}},
                {"extract": {"key": "app"}}
            ]}
        }))
        .unwrap();
        assert_eq!(
            referenced(&es),
            vec!["VaultDynamicSecret/db", "ClusterGenerator/shared"]
        );
    }
}
