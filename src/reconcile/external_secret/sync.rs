//! One sync of an ExternalSecret, as named steps: check the store, observe the target Secret,
//! decide whether a refresh is due, read Vault and render, then plan and apply.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use super::apply::{execute, remove_our_fields};
use super::entry_stores::usable_entry_stores;
use super::error::SyncError;
use super::fetch::{fetch, render};
use super::generators::{resolve_all, versions as generator_versions};
use super::leases::{self, Tended, sooner};
use super::memory::{Memory, key, update_memory};
use super::store_ref::{StoreLookup, check_namespace_allowed};
use super::target_view::{CACHE_LAG_RECHECK, TargetView, is_valid_target, target_view};
use crate::api::entry_stores::Entry;
use crate::api::{CreationPolicy, ExternalSecret, RefreshPolicy, StoreKind, duration};
use crate::reconcile::Shared;
use crate::reconcile::desired::{self, Inputs};
use crate::reconcile::refresh::{self, Refresh, TargetState};
use crate::reconcile::status::{self, EsOutcome};
use crate::vault::StoreHandle;

pub(super) enum Synced {
    /// Nothing to do now; come back as the action says.
    NotDue(Action),
    Done {
        outcome: EsOutcome,
        next: Action,
        store_generation: Option<String>,
    },
}

/// The stores a sync reads: `secretStoreRef`'s and each entry's own.
pub(super) struct Stores<'a> {
    pub default: &'a StoreLookup,
    pub entries: &'a [(Entry, StoreLookup)],
}

pub(super) async fn sync(
    es: &ExternalSecret,
    sh: &Shared,
    stores: &Stores<'_>,
    version: &str,
    mem: &Memory,
    lease: &Tended,
) -> Result<Synced, SyncError> {
    let ns = es.namespace().unwrap_or_default();
    let interval = refresh_interval(es)?;
    desired::check_supported(es)?;
    let gens = resolve_all(es, sh).await?;
    let (handle, store_generation) = usable_store(sh, stores.default, &ns).await?;
    let (own, own_generations) = usable_entry_stores(sh, stores.entries, &ns).await?;
    let store_generation = if own.is_empty() {
        store_generation
    } else {
        format!("{store_generation}+{own_generations}")
    };
    // A generator's change re-syncs as a store's does: both are what the sync read from.
    let store_generation = &if gens.is_empty() {
        store_generation
    } else {
        format!("{store_generation}|{}", generator_versions(&gens))
    };

    let mut target = Target::observe(es, sh, mem).await?;
    let schedule = Schedule {
        interval,
        seed: refresh_seed(&es.spec),
        now: Timestamp::now(),
    };
    let decision = if lease.mint_now {
        // A lease is ending before the next refresh: new credentials now.
        Refresh::Now(refresh::Reason::Interval)
    } else {
        decide(es, mem, &target, version, store_generation, &schedule)
    };
    tracing::debug!(externalsecret = %format!("{ns}/{}", es.name_any()), ?decision, "refresh decision");
    let reason = match decision {
        Refresh::Never => {
            let wait = sooner(None, lease.wake_at, schedule.now);
            return Ok(not_due(sh, es, target.view, wait));
        }
        Refresh::At(at) => {
            let wait = refresh::until(schedule.now, at);
            let wait = sooner(Some(wait), lease.wake_at, schedule.now);
            return Ok(not_due(sh, es, target.view, wait));
        }
        Refresh::Now(reason) => reason,
    };
    if target.untouched() {
        target.read().await?;
    }

    if target.creation == CreationPolicy::Merge && target.existing.is_none() {
        // Nothing to merge into; no reason to read Vault. Look again after an interval, since
        // an unlabelled Secret appearing is not watched.
        let again = if interval.is_zero() {
            Duration::from_secs(300)
        } else {
            interval + refresh::phase(interval, &schedule.seed) / 10
        };
        return Ok(Synced::Done {
            outcome: EsOutcome::Missing {
                secret: target.name,
            },
            next: Action::requeue(again),
            store_generation: None,
        });
    }
    target.check_controller(es)?;

    let fetched = fetch(es, sh, handle, &own, &gens, &ns, reason, interval).await?;
    // Recorded before the Secret is written, so that a failure from here on leaks no lease.
    leases::record_pending(es, sh, mem, &fetched.leases).await;
    let rendered = render(es, sh, &ns, &fetched.data).await?;
    let plan_for = |existing: Option<&Secret>| {
        desired::desired(&Inputs {
            es,
            data: &fetched.data,
            existing,
            rendered: rendered.as_ref(),
        })
        .map_err(SyncError::from)
    };
    let outcome = apply(es, sh, &mut target, plan_for).await?;
    let lease_wake = leases::after_sync(es, sh, &fetched.leases, &schedule.seed);
    drop(rendered);
    drop(fetched);
    Ok(Synced::Done {
        outcome,
        next: next_after_sync(sh, es, &schedule, lease_wake),
        store_generation: Some(store_generation.clone()),
    })
}

pub(super) fn refresh_interval(es: &ExternalSecret) -> Result<Duration, SyncError> {
    let text = es.spec.refresh_interval.as_deref().unwrap_or("1h0m0s");
    duration::parse(text).map_err(SyncError::RefreshInterval)
}

/// The store to read with, and its generation; refused if its status says it is not Ready, or
/// if a ClusterSecretStore's conditions leave this namespace out. None when no entry reads one.
pub(super) async fn usable_store<'a>(
    sh: &Shared,
    store: &'a StoreLookup,
    ns: &str,
) -> Result<(Option<&'a StoreHandle>, String), SyncError> {
    let (handle, generation, status) = match store {
        StoreLookup::NotNeeded => return Ok((None, String::new())),
        StoreLookup::Found {
            handle,
            generation,
            status,
            ..
        } => (handle, generation, status),
        StoreLookup::Missing(m) => return Err(SyncError::StoreMissing(m.clone())),
        StoreLookup::NotOurs => unreachable!("filtered by the caller"),
    };
    if let Some(c) = status
        .as_ref()
        .and_then(|s| crate::api::conditions::find(&s.conditions, status::READY))
        && !c.is_true()
    {
        return Err(SyncError::StoreNotReady {
            store: handle.display(),
            reason: c.message.as_deref().unwrap_or("no message").to_string(),
        });
    }
    if handle.kind == StoreKind::ClusterSecretStore {
        check_namespace_allowed(sh, &handle.spec, &handle.name, ns).await?;
    }
    Ok((Some(handle), generation.clone()))
}

/// The target Secret as this sync knows it.
pub(super) struct Target {
    name: String,
    api: Api<Secret>,
    creation: CreationPolicy,
    view: TargetView,
    /// Read from the API server; `None` when absent, or not read (see [`Target::untouched`]).
    existing: Option<Secret>,
}

impl Target {
    /// Looks at the Secret through the metadata cache and this ExternalSecret's memory, and
    /// reads it only when neither can tell.
    async fn observe(es: &ExternalSecret, sh: &Shared, mem: &Memory) -> Result<Self, SyncError> {
        let ns = es.namespace().unwrap_or_default();
        let name = desired::target_name(es);
        let creation = desired::creation_policy(es);
        let cached = sh.secret_versions.get(&ns, &name);
        let view = target_view(
            cached.as_deref().map(Some),
            mem.valid_rv.as_deref(),
            mem.lag_checked,
            // Only asked when the Secret is not cached: that absence means something only once
            // the cache has been filled.
            cached.is_none() && sh.secret_versions.is_ready(),
            matches!(creation, CreationPolicy::Owner | CreationPolicy::Orphan),
            mem.exists_uncached,
        );
        let mut target = Target {
            name,
            api: Api::namespaced(sh.kube.clone(), &ns),
            creation,
            view,
            existing: None,
        };
        if !target.untouched() && !target.presumed_absent() {
            target.read().await?;
        }
        Ok(target)
    }

    /// Decided as untouched; the Secret is read only if a sync turns out to be due.
    fn untouched(&self) -> bool {
        matches!(self.view, TargetView::Untouched | TargetView::AwaitingCache)
    }

    /// The first write of a presumed-absent Secret must not take anything over: it is applied
    /// without force, and a refusal (someone else's Secret by that name) falls back to reading
    /// it and deciding as usual.
    fn presumed_absent(&self) -> bool {
        self.view == TargetView::PresumedAbsent
    }

    async fn read(&mut self) -> Result<(), SyncError> {
        self.existing = self.api.get_opt(&self.name).await.map_err(|e| {
            SyncError::kube(format!("could not read target Secret {:?}", self.name), e)
        })?;
        Ok(())
    }

    fn state(&self) -> TargetState {
        match &self.existing {
            None if self.untouched() => TargetState::Valid,
            None => TargetState::Missing,
            Some(s) if is_valid_target(s) => TargetState::Valid,
            Some(_) => TargetState::Tampered,
        }
    }

    fn check_controller(&self, es: &ExternalSecret) -> Result<(), SyncError> {
        if let Some(existing) = &self.existing {
            desired::check_controller(es, existing, self.creation)?;
        }
        Ok(())
    }
}

/// When an ExternalSecret refreshes: its interval, and a phase from what it reads so that
/// ExternalSecrets reading the same data refresh together and share their Vault reads.
pub(super) struct Schedule {
    interval: Duration,
    seed: String,
    now: Timestamp,
}

/// Whether a refresh is due, from the status (or our own last success, should the cache lag).
pub(super) fn decide(
    es: &ExternalSecret,
    mem: &Memory,
    target: &Target,
    version: &str,
    store_generation: &str,
    schedule: &Schedule,
) -> Refresh {
    let st = es.status.clone().unwrap_or_default();
    let mut synced_version = st.synced_resource_version.clone();
    let mut refresh_time = st.refresh_time.as_ref().map(|t| t.0);
    if let Some((v, t)) = &mem.synced
        && refresh_time.is_none_or(|r| r < *t)
    {
        synced_version = Some(v.clone());
        refresh_time = Some(*t);
    }
    let mut last_ready = status::ready_status(&st.conditions);
    if mem
        .synced
        .as_ref()
        .is_some_and(|(_, t)| refresh_time == Some(*t))
        && mem.failing.is_none()
    {
        last_ready = Some(true);
    }
    refresh::decide(&refresh::Input {
        policy: es.spec.refresh_policy.unwrap_or_default(),
        interval: schedule.interval,
        creation: target.creation,
        current_version: version,
        synced_version: synced_version.as_deref(),
        refresh_time,
        last_ready,
        target: target.state(),
        store_changed: mem
            .store_generation
            .as_ref()
            .is_some_and(|g| g != store_generation),
        windows: es.spec.sync_windows.as_ref(),
        seed: &schedule.seed,
        now: schedule.now,
    })
}

/// Nothing due: come back when it is. A write the cache has not shown yet is looked at again
/// once its watch event should have come; that look reads the Secret if it still has not.
pub(super) fn not_due(
    sh: &Shared,
    es: &ExternalSecret,
    view: TargetView,
    wait: Option<Duration>,
) -> Synced {
    if view != TargetView::AwaitingCache {
        return Synced::NotDue(match wait {
            Some(wait) => refresh_later(sh, es, wait),
            None => Action::await_change(),
        });
    }
    update_memory(sh, es, |m| m.lag_checked = true);
    let wait = wait.map_or(CACHE_LAG_RECHECK, |w| w.min(CACHE_LAG_RECHECK));
    Synced::NotDue(Action::requeue(wait))
}

/// After a sync: the next refresh, or the lease work due before it, through the refresh queue.
pub(super) fn next_after_sync(
    sh: &Shared,
    es: &ExternalSecret,
    schedule: &Schedule,
    lease_wake: Option<Timestamp>,
) -> Action {
    let now = Timestamp::now();
    let due = match refresh::next_due(schedule.interval, Some(schedule.now), &schedule.seed) {
        Some(at) if es.spec.refresh_policy.unwrap_or_default() == RefreshPolicy::Periodic => {
            Some(refresh::until(now, at))
        }
        _ => None,
    };
    match sooner(due, lease_wake, now) {
        Some(wait) => refresh_later(sh, es, wait),
        None => Action::await_change(),
    }
}

/// A scheduled refresh goes to the refresh queue, which keeps the controller's queue free for
/// what changed.
fn refresh_later(sh: &Shared, es: &ExternalSecret, wait: Duration) -> Action {
    sh.refreshes.schedule(key(es), Instant::now() + wait);
    Action::await_change()
}

/// Plans and writes the Secret. A Secret presumed absent gets an unforced first write; if it
/// turns out to exist after all, it is read and decided on as any other.
pub(super) async fn apply(
    es: &ExternalSecret,
    sh: &Shared,
    target: &mut Target,
    plan_for: impl Fn(Option<&Secret>) -> Result<desired::Plan, SyncError>,
) -> Result<EsOutcome, SyncError> {
    if !target.presumed_absent() {
        let plan = plan_for(target.existing.as_ref())?;
        let done = execute(es, sh, &target.api, plan, target.existing.as_ref(), true).await?;
        return Ok(done.outcome);
    }
    let first = execute(es, sh, &target.api, plan_for(None)?, None, false).await;
    let found = match &first {
        Err(e) => e.unclaimed_conflict(),
        Ok(done) => done.merged_into_existing,
    };
    if found {
        // The Secret was there, unlabelled: read it from now on.
        update_memory(sh, es, |m| m.exists_uncached = true);
    }
    match first {
        Err(e) if e.unclaimed_conflict() => {}
        // With creationPolicy Owner, the write made this ExternalSecret the controller of a
        // Secret that may not be taken over: take back what it added (the keys, labels,
        // annotations and ownerReference only it holds), then decide on the Secret as read.
        Ok(done) if done.merged_into_existing && target.creation == CreationPolicy::Owner => {
            remove_our_fields(es, &target.api, None)
                .await
                .map_err(|e| {
                    SyncError::kube(
                        format!("could not take back a write to Secret {:?}", target.name),
                        e,
                    )
                })?;
        }
        done => return Ok(done?.outcome),
    }
    target.read().await?;
    target.check_controller(es)?;
    let plan = plan_for(target.existing.as_ref())?;
    let done = execute(es, sh, &target.api, plan, target.existing.as_ref(), true).await?;
    Ok(done.outcome)
}

/// What an ExternalSecret reads: its store and remote references (see `refresh::next_due`).
pub(super) fn refresh_seed(spec: &crate::api::ExternalSecretSpec) -> String {
    serde_json::json!([
        spec.secret_store_ref,
        spec.data
            .as_ref()
            .map(|d| d.iter().map(|e| &e.remote_ref).collect::<Vec<_>>()),
        spec.data_from
    ])
    .to_string()
}
