//! Leader election on a `coordination.k8s.io/v1` Lease with optimistic concurrency (every write
//! carries the resourceVersion it read), in the manner of client-go's leaderelection:
//! acquire when the Lease is free or expired, renew every few seconds, step down when a renewal
//! is refused or cannot be made in time, release on shutdown.
//!
//! Expiry of another holder is judged by when *this* process last saw the Lease change, not by
//! the holder's timestamps, so clock skew between nodes cannot shorten a lease.
//!
//! Written here rather than taken from a crate: the crates for kube 5 keep reporting leadership
//! while renewals fail, which would allow two writers.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Timing of the election.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a Lease stays valid after a renewal.
    pub lease_duration: Duration,
    /// Renewal period while leading.
    pub renew_every: Duration,
    /// Stop leading when no renewal succeeded for this long (less than `lease_duration`, so
    /// that in-flight work can finish before anybody else may take over).
    pub renew_deadline: Duration,
    /// Period of attempts to acquire while not leading.
    pub retry_every: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(4),
            renew_deadline: Duration::from_secs(10),
            retry_every: Duration::from_secs(2),
        }
    }
}

/// What the last look at the Lease showed.
#[derive(Clone, PartialEq, Eq)]
struct Observed {
    holder: Option<String>,
    renew: Option<String>,
    duration: Option<i32>,
}

pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    /// The Lease record as last seen and when it was seen changing (local monotonic clock).
    observed: std::sync::Mutex<Option<(Observed, Instant)>>,
}

/// Why leading stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The shutdown token was cancelled.
    Shutdown,
    /// Another holder took the Lease, or renewals failed until the deadline.
    Lost,
}

impl LeaderElector {
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timing: Timing,
    ) -> Self {
        LeaderElector {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            timing,
            observed: std::sync::Mutex::new(None),
        }
    }

    /// Waits until this process holds the Lease. `false` if `shutdown` came first.
    pub async fn acquire(&self, shutdown: &CancellationToken) -> bool {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(lease = %self.name, identity = %self.identity, "became leader");
                    return true;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(lease = %self.name, error = %e, "leader election"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(self.timing.retry_every) => {}
            }
        }
    }

    /// Renews while leading. Cancels `soft` when leadership ends (so the caller stops taking
    /// work and drains), and `hard` when the Lease may already be taken by another process (so
    /// the caller abandons whatever is still running). Returns once leadership ended.
    pub async fn keep(
        &self,
        shutdown: &CancellationToken,
        soft: &CancellationToken,
        hard: &CancellationToken,
    ) -> Stopped {
        let mut last_ok = Instant::now();
        let stopped = loop {
            // Never sleep past the deadline: after failed renewals, waiting a whole period
            // would keep leading (and writing) up to `renew_every` longer than promised.
            let wait = self
                .timing
                .renew_every
                .min(self.timing.renew_deadline.saturating_sub(last_ok.elapsed()));
            tokio::select! {
                _ = shutdown.cancelled() => break Stopped::Shutdown,
                _ = soft.cancelled() => break Stopped::Shutdown,
                _ = tokio::time::sleep(wait) => {}
            }
            if last_ok.elapsed() >= self.timing.renew_deadline {
                tracing::warn!(lease = %self.name, "lease not renewed in time, stepping down");
                break Stopped::Lost;
            }
            let started = Instant::now();
            let attempt = tokio::time::timeout(
                self.timing.renew_deadline.saturating_sub(started - last_ok),
                self.try_acquire_or_renew(),
            )
            .await;
            match attempt {
                Ok(Ok(true)) => last_ok = started,
                Ok(Ok(false)) => {
                    tracing::warn!(lease = %self.name, "leadership lost to another holder");
                    break Stopped::Lost;
                }
                Ok(Err(e)) => tracing::warn!(lease = %self.name, error = %e, "renewing the lease"),
                Err(_) => tracing::warn!(lease = %self.name, "renewing the lease timed out"),
            }
            if last_ok.elapsed() >= self.timing.renew_deadline {
                tracing::warn!(lease = %self.name, "lease not renewed in time, stepping down");
                break Stopped::Lost;
            }
        };
        soft.cancel();
        if stopped == Stopped::Lost {
            // Others may take the Lease once it expires, counted from the last renewal.
            let expiry = last_ok + self.timing.lease_duration;
            let hard = hard.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(expiry).await;
                hard.cancel();
            });
        }
        stopped
    }

    /// Gives the Lease up so another replica can take over at once (only if we hold it).
    pub async fn release(&self) {
        let result = async {
            let Some(mut lease) = self.api.get_opt(&self.name).await? else {
                return Ok(());
            };
            let spec = lease.spec.get_or_insert_with(Default::default);
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok(());
            }
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(MicroTime(Timestamp::now()));
            self.api
                .replace(&self.name, &PostParams::default(), &lease)
                .await
                .map(|_| ())
        }
        .await;
        match result {
            Ok(()) => tracing::info!(lease = %self.name, "lease released"),
            Err(e) => tracing::warn!(lease = %self.name, error = %e, "releasing the lease"),
        }
    }

    /// One attempt: `Ok(true)` when this process holds the Lease afterwards.
    async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let duration_secs = self.timing.lease_duration.as_secs().max(1) as i32;
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.is_already_exists() || s.is_conflict() => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        let seen = Observed {
            holder: spec.holder_identity.clone().filter(|h| !h.is_empty()),
            renew: spec.renew_time.as_ref().map(|t| t.0.to_string()),
            duration: spec.lease_duration_seconds,
        };
        let ours = seen.holder.as_deref() == Some(self.identity.as_str());
        if !ours && seen.holder.is_some() && !self.observe_expired(&seen) {
            return Ok(false);
        }
        if !ours {
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.holder_identity = Some(self.identity.clone());
        spec.lease_duration_seconds = Some(duration_secs);
        spec.renew_time = Some(now);
        // `replace` sends the resourceVersion we read: a concurrent writer makes this a 409.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.is_conflict() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether another holder's Lease has gone unrenewed for its duration, measured from the
    /// moment this process first saw the current record.
    fn observe_expired(&self, seen: &Observed) -> bool {
        let mut obs = self.observed.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let since = match obs.as_ref() {
            Some((o, t)) if o == seen => *t,
            _ => {
                *obs = Some((seen.clone(), now));
                now
            }
        };
        let dur = Duration::from_secs(seen.duration.unwrap_or(15).max(1) as u64);
        now.duration_since(since) >= dur
    }
}
