//! The soak's generator ExternalSecrets: one VaultDynamicSecret on `database/creds/<role>` per
//! ExternalSecret (so that a role's live leases are that ExternalSecret's), with TTLs that make
//! the reconciler rotate, renew and mint early within a few minutes; and a sampler that checks,
//! once a second through every phase, that the live leases never exceed the current one plus
//! the superseded ones within their grace ([`vaultgate_sandbox::lease_bound`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use serde_json::{Value, json};
use vault_emulator::{LeaseCounters, VaultEmulator};
use vaultgate::api::ExternalSecret;
use vaultgate_sandbox::lease_bound;

use crate::{PHASE_DONE, PHASE_FAULTS, PHASE_RECOVERY};

/// Database roles, one per ExternalSecret `gen-<role>`: (role, default TTL, max TTL) in
/// seconds. `rotate` outlives the refresh (rotated each refresh only); `renew` ends before the
/// next refresh and is renewed; `early` hits its max TTL before the next refresh, so new
/// credentials are minted early.
const ROLES: [(&str, u64, u64); 3] = [("rotate", 300, 0), ("renew", 20, 90), ("early", 15, 20)];
const NAMESPACE: &str = "ns-0";
const REFRESH: &str = "30s";
const GRACE: &str = "10s";
/// How long after its `revokeAfter` a superseded lease may still be live: the reconciler is
/// woken at that time through its queue, and status times have whole seconds.
const REVOKE_LAG: Duration = Duration::from_secs(5);
/// vaultgate retries a failed revoke after this long: while faults last and for this long
/// after, a recorded lease past its grace is accounted for (the retry is due).
const REVOKE_RETRY: Duration = Duration::from_secs(30);
/// A lease minted but missing from the status for longer than this is lost.
const UNRECORDED_LIMIT: Duration = Duration::from_secs(30);

pub fn names() -> impl Iterator<Item = String> {
    ROLES.iter().map(|(r, _, _)| format!("gen-{r}"))
}

fn prefix(role: &str) -> String {
    format!("database/creds/soak-{role}/")
}

/// Database roles, an AppRole login allowed to read them and to renew and revoke leases, and a
/// generator and ExternalSecret per role.
pub async fn setup(vault: &VaultEmulator, client: &kube::Client) -> anyhow::Result<()> {
    for (role, ttl, max) in ROLES {
        vault.put_database_role(
            "database",
            &format!("soak-{role}"),
            Duration::from_secs(ttl),
            Duration::from_secs(max),
        )?;
    }
    vault.put_policy(
        "soak-gen",
        "path \"database/creds/soak-*\" { capabilities = [\"read\"] }\n\
         path \"sys/leases/renew\" { capabilities = [\"update\"] }\n\
         path \"sys/leases/revoke\" { capabilities = [\"update\"] }",
    )?;
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str| {
        http.request(
            method,
            format!("{}/v1/auth/approle/role/soak-gen{path}", vault.addr()),
        )
        .header("X-Vault-Token", vault.root_token())
    };
    call(reqwest::Method::POST, "")
        .json(&json!({"token_policies": ["soak-gen"], "token_ttl": "1h"}))
        .send()
        .await?
        .error_for_status()?;
    let read = |method, path: &'static str| {
        let req = call(method, path);
        async move { req.send().await?.error_for_status()?.json::<Value>().await }
    };
    let role_id = read(reqwest::Method::GET, "/role-id").await?;
    let secret_id = read(reqwest::Method::POST, "/secret-id").await?;
    let mut docs = format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: gen-approle, namespace: {NAMESPACE}}}\nstringData: {{secret-id: \"{}\"}}\n",
        secret_id["data"]["secret_id"]
            .as_str()
            .context("secret_id")?
    );
    for (role, _, _) in ROLES {
        docs.push_str(&format!(
            r#"---
apiVersion: generators.external-secrets.io/v1alpha1
kind: VaultDynamicSecret
metadata: {{name: gen-{role}, namespace: {NAMESPACE}}}
spec:
  path: database/creds/soak-{role}
  provider:
    server: "{server}"
    auth:
      appRole:
        roleId: "{role_id}"
        secretRef: {{name: gen-approle, key: secret-id}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata:
  name: gen-{role}
  namespace: {NAMESPACE}
  annotations: {{vaultgate.io/lease-revoke-grace: {GRACE}}}
spec:
  refreshInterval: {REFRESH}
  target: {{name: gen-{role}}}
  dataFrom:
    - sourceRef:
        generatorRef: {{apiVersion: generators.external-secrets.io/v1alpha1, kind: VaultDynamicSecret, name: gen-{role}}}
"#,
            server = vault.addr(),
            role_id = role_id["data"]["role_id"].as_str().context("role_id")?,
        ));
    }
    vaultgate_sandbox::apply_all(client, &docs).await
}

#[derive(Default)]
struct PerEs {
    max_live: usize,
    max_allowed: usize,
    /// Distinct leases seen live.
    seen: BTreeSet<String>,
    /// Unrecorded live leases, since when.
    unrecorded: BTreeMap<String, Instant>,
}

#[derive(Default)]
pub struct Tally {
    per: BTreeMap<String, PerEs>,
    samples: u64,
    violations: Vec<String>,
    violation_count: u64,
    max_overdue: Duration,
    /// The same outside the fault windows: how late revocations run when nothing fails.
    max_overdue_healthy: Duration,
}

impl Tally {
    fn violation(&mut self, v: String) {
        self.violation_count += 1;
        if self.violations.len() < 10 {
            self.violations.push(v);
        }
    }
}

/// Samples every generator ExternalSecret once a second until the phase is done.
pub fn spawn_sampler(
    vault: VaultEmulator,
    client: kube::Client,
    phase: Arc<AtomicU8>,
) -> tokio::task::JoinHandle<Tally> {
    let api: Api<ExternalSecret> = Api::namespaced(client, NAMESPACE);
    tokio::spawn(async move {
        let mut t = Tally::default();
        let mut recovery: Option<Instant> = None;
        loop {
            let p = phase.load(Ordering::SeqCst);
            if p == PHASE_DONE {
                break;
            }
            if p == PHASE_RECOVERY && recovery.is_none() {
                recovery = Some(Instant::now());
            }
            // While faults last (and a retry after), revocations and status writes may fail:
            // what the status records is accounted for, and a lease may miss from it for a while.
            let faulty = p == PHASE_FAULTS
                || recovery.is_some_and(|r| r.elapsed() < REVOKE_RETRY + REVOKE_LAG);
            let (lag, in_flight) = if faulty {
                (None, usize::MAX)
            } else {
                (Some(REVOKE_LAG), 1)
            };
            for (role, _, _) in ROLES {
                let name = format!("gen-{role}");
                // Errors are the injected API faults: skip this one.
                let Ok(Some(es)) = api.get_opt(&name).await else {
                    continue;
                };
                let records = es.status.and_then(|s| s.leases).unwrap_or_default();
                let at = Timestamp::now();
                let live = vault.live_leases(&prefix(role));
                let s = lease_bound::check(&records, &live, at, lag, in_flight);
                t.samples += 1;
                t.max_overdue = t.max_overdue.max(s.overdue);
                if !faulty {
                    t.max_overdue_healthy = t.max_overdue_healthy.max(s.overdue);
                }
                if !s.within_bound() {
                    t.violation(format!(
                        "{NAMESPACE}/{name}: {} live leases > {} allowed (unaccounted {:?})",
                        s.live, s.allowed, s.unjustified
                    ));
                }
                let now = Instant::now();
                let per = t.per.entry(name.clone()).or_default();
                per.max_live = per.max_live.max(s.live);
                per.max_allowed = per.max_allowed.max(s.allowed);
                per.seen.extend(live);
                per.unrecorded.retain(|id, _| s.unrecorded.contains(id));
                let mut lost = vec![];
                for id in &s.unrecorded {
                    let since = *per.unrecorded.entry(id.clone()).or_insert(now);
                    if now.duration_since(since) > UNRECORDED_LIMIT {
                        lost.push(id.clone());
                    }
                }
                for id in lost {
                    t.violation(format!(
                        "{NAMESPACE}/{name}: lease {id} live for over {}s without a status record",
                        UNRECORDED_LIMIT.as_secs()
                    ));
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        t
    })
}

/// The figures for the results, and the failures.
pub fn results(t: &Tally, vault: LeaseCounters) -> (Value, Vec<String>) {
    let mut failures = vec![];
    if t.violation_count > 0 {
        failures.push(format!(
            "{} lease samples over the bound, e.g. {:?}",
            t.violation_count, t.violations
        ));
    }
    for name in names() {
        if t.per.get(&name).is_none_or(|p| p.seen.is_empty()) {
            failures.push(format!("{NAMESPACE}/{name} never held a lease"));
        }
    }
    let per: BTreeMap<&String, Value> = t
        .per
        .iter()
        .map(|(n, p)| {
            (
                n,
                json!({"max_live": p.max_live, "max_allowed": p.max_allowed, "leases_seen": p.seen.len()}),
            )
        })
        .collect();
    let figures = json!({
        "refresh_interval": REFRESH,
        "revoke_grace": GRACE,
        "samples": t.samples,
        "violations": t.violation_count,
        "max_seconds_past_grace": t.max_overdue.as_secs_f64(),
        "max_seconds_past_grace_without_faults": t.max_overdue_healthy.as_secs_f64(),
        "per_externalsecret": per,
        "vault_issued": vault.issued,
        "vault_renewed": vault.renewed,
        "vault_revoked": vault.revoked,
        "vault_expired": vault.expired,
    });
    (figures, failures)
}

/// One line for the console.
pub fn summary(t: &Tally, vault: LeaseCounters) -> String {
    let per: Vec<String> = t
        .per
        .iter()
        .map(|(n, p)| format!("{n} max {} live ({} seen)", p.max_live, p.seen.len()))
        .collect();
    format!(
        "generator leases: {}; {} samples, {} over the bound; at most {:.1} s past grace ({:.1} s without faults); Vault: {} issued, {} renewed, {} revoked, {} expired",
        per.join(", "),
        t.samples,
        t.violation_count,
        t.max_overdue.as_secs_f64(),
        t.max_overdue_healthy.as_secs_f64(),
        vault.issued,
        vault.renewed,
        vault.revoked,
        vault.expired
    )
}
