//! A cold burst at the door (`admission_burst_*`): 1,000 ExternalSecrets created at once through
//! the API server emulator, which calls vaultgate's webhooks for each as kube-apiserver does,
//! against a vaultgate that has just started (its live-check and store caches and its Vault
//! tokens all empty).
//!
//! - vaultgate runs as deployed for admission (`vaultgate run --webhook-only`, its own CA
//!   injected into deploy/'s webhook configurations, which the API server follows to it), with
//!   the live checks enforced, so that a check that could not finish shows as a refused create;
//!   no controller runs, so every Vault and API request of the burst is the webhook's;
//! - the shape: 10 AppRole ClusterSecretStores, 100 namespaces of ten ExternalSecrets, 100 Vault
//!   paths; each namespace uses one store, each path is read through one store, by ten
//!   ExternalSecrets in ten namespaces (so no two have the same live check), created namespace
//!   after namespace, which spreads the ten readers of a path over the whole burst;
//! - the load: 32 clients creating at once (several `kubectl apply` runs, or a GitOps tool),
//!   each POSTing its next ExternalSecret as soon as the last one is answered.
//!
//! Figures: the latency of each webhook call from the emulator sending the AdmissionReview to
//! its answer, the wall time of the burst, and what vaultgate asked of Vault (from the Vault
//! emulator's request log) and of the API server (its audit log) during the burst; in three
//! rounds (`BENCH_BURST_ROUNDS`), each on fresh emulators and a fresh vaultgate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};
use vault_emulator::RequestRecord;
use vaultgate::api::ExternalSecret;
use vaultgate_sandbox::process::{Emulators, approle_load_manifests, cpu_seconds, wait_ready};
use vaultgate_sandbox::{SERVICE_ACCOUNT, free_local_addr, route_webhooks};

use super::bench_fresh::percentile;
use super::{median, spawn};

/// ExternalSecrets at full scale.
pub const BURST: usize = 1000;
/// Clients creating at once.
pub const CLIENTS: usize = 32;
const STORES: usize = 10;
const NAMESPACES: usize = 100;
const PATHS: usize = 100;
/// ExternalSecrets per namespace at full scale, each reading another path.
const PER_NAMESPACE: usize = PATHS / STORES;
/// vaultgate's namespace and webhook Service in deploy/.
const POD_NAMESPACE: &str = "vaultgate-system";
const SERVICE: &str = "vaultgate-webhook";

/// Where the `j`th ExternalSecret created lives and what it reads: (namespace, store, path),
/// indices. Ten per namespace, created namespace after namespace (as a GitOps tool applies one
/// application after another); the namespace decides the store, each path is read through one
/// store only, by ten ExternalSecrets in ten namespaces, whose creates are spread over the whole
/// burst (one in each tenth of it at full scale).
fn placement(j: usize) -> (usize, usize, usize) {
    let ns = (j / PER_NAMESPACE) % NAMESPACES;
    let store = ns % STORES;
    let path = store + STORES * (j % PER_NAMESPACE);
    (ns, store, path)
}

/// What one round measured.
struct Round {
    wall: f64,
    p50: f64,
    p99: f64,
    max: f64,
    validate_p99: f64,
    mutate_p99: f64,
    cpu_us_per_es: f64,
    vault: VaultTally,
    api_requests: usize,
}

/// `rounds` bursts of `n`, each on fresh emulators and a fresh vaultgate. Times and CPU are the
/// rounds' medians (a busy moment of this shared machine then spoils a round, not the figure),
/// with the worst round's p99 beside them; requests are the highest of the rounds, as a limit
/// must hold in every one.
pub async fn burst_benchmark(
    bin: &Path,
    work: &Path,
    n: usize,
    clients: usize,
    rounds: usize,
    results: &mut BTreeMap<String, f64>,
) -> anyhow::Result<()> {
    let mut all = Vec::new();
    for round in 1..=rounds {
        all.push(burst_round(bin, work, n, clients, round).await?);
    }
    let med = |f: fn(&Round) -> f64| median(all.iter().map(f).collect());
    let max = |f: fn(&Round) -> f64| all.iter().map(f).fold(f64::NAN, f64::max);
    let used: BTreeSet<usize> = (0..n).map(|j| placement(j).2).collect();
    let stores: BTreeSet<usize> = (0..n).map(|j| placement(j).1).collect();
    results.extend([
        ("admission_burst_p50_ms".to_string(), med(|r| r.p50)),
        ("admission_burst_p99_ms".into(), med(|r| r.p99)),
        ("admission_burst_p99_max_ms".into(), max(|r| r.p99)),
        ("admission_burst_max_ms".into(), med(|r| r.max)),
        (
            "admission_burst_validate_p99_ms".into(),
            med(|r| r.validate_p99),
        ),
        (
            "admission_burst_mutate_p99_ms".into(),
            med(|r| r.mutate_p99),
        ),
        ("admission_burst_seconds".into(), med(|r| r.wall)),
        (
            "admission_burst_cpu_us_per_es".into(),
            med(|r| r.cpu_us_per_es),
        ),
        ("admission_burst_es".into(), n as f64),
        ("admission_burst_rounds".into(), all.len() as f64),
        (
            "admission_burst_vault_requests".into(),
            max(|r| r.vault.total() as f64),
        ),
        (
            "admission_burst_vault_logins".into(),
            max(|r| r.vault.logins as f64),
        ),
        (
            "admission_burst_vault_reads".into(),
            max(|r| r.vault.reads as f64),
        ),
        (
            "admission_burst_vault_capabilities".into(),
            max(|r| r.vault.capabilities as f64),
        ),
        (
            "admission_burst_vault_limit".into(),
            (stores.len() + used.len()) as f64,
        ),
        (
            "admission_burst_api_requests".into(),
            max(|r| r.api_requests as f64),
        ),
    ]);
    Ok(())
}

async fn burst_round(
    bin: &Path,
    work: &Path,
    n: usize,
    clients: usize,
    round: usize,
) -> anyhow::Result<Round> {
    let mut env = Emulators::start(work, &format!("burst-{round}")).await?;
    let client = env.kube.client().await;
    env.vault.put_policy(
        "bench",
        "path \"secret/data/bench/*\" { capabilities = [\"read\"] }",
    )?;
    for p in 0..PATHS {
        env.vault.kv2_put(
            "secret",
            &format!("bench/p{p}"),
            json!({"value": format!("value-{p}")}),
        )?;
    }
    // The stores go in before the webhooks exist: admitting them would warm the caches.
    let docs = approle_load_manifests(&env.vault, "bench", "bench", STORES, NAMESPACES).await?;
    vaultgate_sandbox::apply_all(&client, &docs).await?;

    let (webhook, metrics) = (free_local_addr(), free_local_addr());
    route_webhooks(&env.kube, POD_NAMESPACE, SERVICE, webhook).await?;
    let user = env.use_service_account(POD_NAMESPACE, SERVICE_ACCOUNT)?;
    let vg = spawn(
        bin,
        &env,
        &[
            "--webhook-only",
            "--webhook-addr",
            &webhook.to_string(),
            "--admission-live",
            "enforce",
        ],
        metrics,
    )?;
    wait_ready(metrics, Duration::from_secs(30)).await?;
    wait_for_ca_bundles(&env, Duration::from_secs(30)).await?;

    env.vault.reset_counters();
    env.kube.clear_audit();
    env.kube.clear_webhook_calls();
    let refused = AtomicUsize::new(0);
    let first_refusal = std::sync::Mutex::new(None::<String>);
    let me = std::process::id();
    let cpu_before = (cpu_seconds(vg.pid())?, cpu_seconds(me)?);
    let start = Instant::now();
    futures::stream::iter(0..n)
        .for_each_concurrent(clients, |i| {
            let (client, refused, first_refusal) = (client.clone(), &refused, &first_refusal);
            async move {
                if let Err(e) = create(client, i).await {
                    refused.fetch_add(1, Ordering::Relaxed);
                    first_refusal
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_or_insert_with(|| format!("{e:#}"));
                }
            }
        })
        .await;
    let wall = start.elapsed().as_secs_f64();
    // CPU of the burst: vaultgate's, and this process's (the API server and Vault emulators
    // and the clients).
    let vg_cpu = cpu_seconds(vg.pid())? - cpu_before.0;
    let bench_cpu = cpu_seconds(me)? - cpu_before.1;
    let calls = env.kube.webhook_calls();
    let vault = VaultTally::of(&env.vault.requests(), "secret");
    let api = api_breakdown(env.kube.audit().iter(), &user);
    vg.terminate();
    env.shutdown().await;

    let refused = refused.into_inner();
    if refused > 0 {
        bail!(
            "{refused} of {n} ExternalSecrets were refused in the burst; the first: {}",
            first_refusal
                .into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .unwrap_or_default()
        );
    }
    let es_calls: Vec<_> = calls
        .iter()
        .filter(|c| c.resource == "externalsecrets")
        .collect();
    let unanswered = es_calls.iter().filter(|c| !c.answered).count();
    if es_calls.len() != 2 * n || unanswered > 0 {
        bail!(
            "{} webhook calls for {n} ExternalSecrets (one /mutate and one /validate each), {unanswered} unanswered",
            es_calls.len()
        );
    }
    let ms = |mutating: Option<bool>| -> Vec<f64> {
        es_calls
            .iter()
            .filter(|c| mutating.is_none_or(|m| c.mutating == m))
            .map(|c| c.duration.as_secs_f64() * 1000.0)
            .collect()
    };
    let (all, validate, mutate) = (ms(None), ms(Some(false)), ms(Some(true)));
    // Where in the burst the slow calls were: the cold start, or throughout.
    let tenths: Vec<String> = tenths(&es_calls, start)
        .iter()
        .map(|t| format!("{:.0}", percentile(t, 0.99)))
        .collect();
    let used: BTreeSet<usize> = (0..n).map(|i| placement(i).2).collect();
    let stores: BTreeSet<usize> = (0..n).map(|i| placement(i).1).collect();
    let limit = stores.len() + used.len();
    eprintln!(
        "   round {round}: {n} ExternalSecrets from {clients} clients in {wall:.2}s; webhook calls p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (validate p99 {:.1} ms, mutate p99 {:.1} ms)",
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        percentile(&all, 1.0),
        percentile(&validate, 0.99),
        percentile(&mutate, 0.99),
    );
    eprintln!(
        "      CPU: vaultgate {:.0} µs per ExternalSecret, the emulators and clients {:.0} µs",
        vg_cpu * 1e6 / n as f64,
        bench_cpu * 1e6 / n as f64
    );
    eprintln!(
        "      p99 of the calls sent in each tenth of the burst, ms: {}",
        tenths.join(" ")
    );
    eprintln!(
        "      Vault: {} requests ({} logins, {} reads of {} distinct paths, {} capabilities, {} other{}); target at most {limit} ({} stores + {} paths)",
        vault.total(),
        vault.logins,
        vault.reads,
        vault.paths_read.len(),
        vault.capabilities,
        vault.other.values().sum::<usize>(),
        if vault.other.is_empty() {
            String::new()
        } else {
            format!(": {}", join(&vault.other))
        },
        stores.len(),
        used.len(),
    );
    eprintln!(
        "      API requests of the webhook: {} ({})",
        api.values().sum::<usize>(),
        join(&api)
    );
    Ok(Round {
        wall,
        p50: percentile(&all, 0.5),
        p99: percentile(&all, 0.99),
        max: percentile(&all, 1.0),
        validate_p99: percentile(&validate, 0.99),
        mutate_p99: percentile(&mutate, 0.99),
        cpu_us_per_es: vg_cpu * 1e6 / n as f64,
        api_requests: api.values().sum(),
        vault,
    })
}

/// Creates ExternalSecret `i` (a POST, as `kubectl apply` sends for an object that does not
/// exist yet); the API server answers once both webhooks have.
async fn create(client: kube::Client, i: usize) -> anyhow::Result<()> {
    let (ns, store, path) = placement(i);
    let ns = format!("ns-{ns}");
    let es: ExternalSecret = serde_json::from_value(json!({
        "apiVersion": "external-secrets.io/v1",
        "kind": "ExternalSecret",
        "metadata": {"name": format!("burst-{i}"), "namespace": ns},
        "spec": {
            "refreshInterval": "1h",
            "secretStoreRef": {"kind": "ClusterSecretStore", "name": format!("store-{store}")},
            "target": {"name": format!("burst-{i}")},
            "data": [{"secretKey": "value", "remoteRef": {"key": format!("bench/p{path}"), "property": "value"}}]
        }
    }))?;
    Api::<ExternalSecret>::namespaced(client, &ns)
        .create(&PostParams::default(), &es)
        .await
        .with_context(|| format!("creating {ns}/burst-{i}"))?;
    Ok(())
}

/// Waits until vaultgate has put its CA into both webhook configurations: before that the API
/// server cannot call it (the validating one fails closed).
async fn wait_for_ca_bundles(env: &Emulators, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    let injected = |plural: &str| {
        env.kube.objects(plural).iter().any(|c| {
            c["webhooks"]
                .as_array()
                .is_some_and(|w| w.iter().all(has_ca))
        })
    };
    while !(injected("validatingwebhookconfigurations")
        && injected("mutatingwebhookconfigurations"))
    {
        if Instant::now() > deadline {
            bail!(
                "vaultgate did not inject its CA into the webhook configurations within {limit:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

fn has_ca(webhook: &Value) -> bool {
    webhook["clientConfig"]["caBundle"]
        .as_str()
        .is_some_and(|b| !b.is_empty())
}

/// The durations (ms) of the calls sent in each tenth of the time from `start` to the last
/// call's sending.
fn tenths(calls: &[&kube_emulator::admission::WebhookCall], start: Instant) -> Vec<Vec<f64>> {
    let span = calls
        .iter()
        .map(|c| c.sent.saturating_duration_since(start))
        .max()
        .unwrap_or_default()
        .as_secs_f64();
    let mut out = vec![Vec::new(); 10];
    for c in calls {
        let at = c.sent.saturating_duration_since(start).as_secs_f64();
        let i = if span > 0.0 {
            (at / span * 10.0) as usize
        } else {
            0
        };
        out[i.min(9)].push(c.duration.as_secs_f64() * 1000.0);
    }
    out
}

/// What Vault was asked, by kind of request.
#[derive(Debug, Default, PartialEq, Eq)]
struct VaultTally {
    /// `auth/<mount>/login…`
    logins: usize,
    /// GETs of KV data or metadata under the mount (a LIST is "other").
    reads: usize,
    paths_read: BTreeSet<String>,
    /// `sys/capabilities-self` and friends.
    capabilities: usize,
    /// Anything else, by method and path.
    other: BTreeMap<String, usize>,
}

impl VaultTally {
    fn of(log: &[RequestRecord], mount: &str) -> VaultTally {
        let mut t = VaultTally::default();
        let kv = [format!("{mount}/data/"), format!("{mount}/metadata/")];
        for r in log {
            let path = r.path.split('?').next().unwrap_or_default();
            let login = path.starts_with("auth/")
                && path
                    .split('/')
                    .nth(2)
                    .is_some_and(|seg| seg.starts_with("login"));
            if login {
                t.logins += 1;
            } else if r.method == "GET" && kv.iter().any(|p| path.starts_with(p.as_str())) {
                t.reads += 1;
                t.paths_read.insert(path.to_string());
            } else if path.starts_with("sys/capabilities") {
                t.capabilities += 1;
            } else {
                *t.other.entry(format!("{} {path}", r.method)).or_default() += 1;
            }
        }
        t
    }

    fn total(&self) -> usize {
        self.logins + self.reads + self.capabilities + self.other.values().sum::<usize>()
    }
}

/// `verb resource[/sub]` → count of the requests `user` made, from the audit log.
fn api_breakdown<'a>(
    audit: impl Iterator<Item = &'a kube_emulator::AuditRecord>,
    user: &str,
) -> BTreeMap<String, usize> {
    let mut by = BTreeMap::new();
    for r in audit.filter(|r| r.user == user) {
        let what = match (r.resource.as_str(), r.subresource.as_str()) {
            ("", _) => format!("{} {}", r.verb, r.uri),
            (res, "") => format!("{} {res}", r.verb),
            (res, sub) => format!("{} {res}/{sub}", r.verb),
        };
        *by.entry(what).or_default() += 1;
    }
    by
}

fn join(counts: &BTreeMap<String, usize>) -> String {
    counts
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_path_is_read_through_one_store_by_ten_namespaces_across_the_burst() {
        let mut store_of_path: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
        let mut namespaces_of_path: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
        let mut creates_of_path: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let mut stores_of_ns: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
        for j in 0..BURST {
            let (ns, store, path) = placement(j);
            store_of_path.entry(path).or_default().insert(store);
            namespaces_of_path.entry(path).or_default().insert(ns);
            creates_of_path.entry(path).or_default().push(j);
            stores_of_ns.entry(ns).or_default().insert(store);
        }
        assert_eq!(store_of_path.len(), PATHS);
        assert!(store_of_path.values().all(|s| s.len() == 1));
        assert!(namespaces_of_path.values().all(|n| n.len() == 10));
        assert_eq!(stores_of_ns.len(), NAMESPACES);
        assert!(stores_of_ns.values().all(|s| s.len() == 1));
        // A path's ten creates are a tenth of the burst apart.
        for creates in creates_of_path.values() {
            assert!(
                creates.windows(2).all(|w| w[1] - w[0] == BURST / 10),
                "{creates:?}"
            );
        }
        // No two ExternalSecrets in one namespace read the same path: no two have the same
        // live check.
        let pairs: BTreeSet<(usize, usize)> = (0..BURST)
            .map(|j| (placement(j).0, placement(j).2))
            .collect();
        assert_eq!(pairs.len(), BURST);
        // A smaller burst still reads every path once.
        let paths: BTreeSet<usize> = (0..100).map(|j| placement(j).2).collect();
        assert_eq!(paths.len(), PATHS);
    }

    #[test]
    fn calls_fall_into_the_tenth_of_the_burst_they_were_sent_in() {
        let start = Instant::now();
        let call = |sent_ms: u64, took_ms: u64| kube_emulator::admission::WebhookCall {
            webhook: "v".into(),
            mutating: false,
            operation: kube_emulator::admission::Operation::Create,
            resource: "externalsecrets".into(),
            sent: start + Duration::from_millis(sent_ms),
            duration: Duration::from_millis(took_ms),
            answered: true,
        };
        /// Calls as (sent, took) in ms, and the durations in each tenth.
        type Case<'a> = (&'a [(u64, u64)], [&'a [f64]; 10]);
        let cases: [Case; 4] = [
            (&[], [&[]; 10]),
            // The span ends with the last call sent: a lone call is in the last tenth, unless
            // it was sent at the start (no span at all).
            (
                &[(5, 7)],
                [&[], &[], &[], &[], &[], &[], &[], &[], &[], &[7.0]],
            ),
            (
                &[(0, 7)],
                [&[7.0], &[], &[], &[], &[], &[], &[], &[], &[], &[]],
            ),
            // Sent over one second: 0 and 99 ms in the first tenth, 100 in the second, the
            // last call (at the end of the span) in the last.
            (
                &[(0, 1), (99, 2), (100, 3), (550, 4), (1000, 5)],
                [
                    &[1.0, 2.0],
                    &[3.0],
                    &[],
                    &[],
                    &[],
                    &[4.0],
                    &[],
                    &[],
                    &[],
                    &[5.0],
                ],
            ),
        ];
        for (sent, want) in cases {
            let calls: Vec<_> = sent.iter().map(|(s, t)| call(*s, *t)).collect();
            let refs: Vec<&_> = calls.iter().collect();
            assert_eq!(tenths(&refs, start), want, "{sent:?}");
        }
    }

    fn rec(method: &str, path: &str) -> RequestRecord {
        RequestRecord {
            method: method.into(),
            path: path.into(),
            namespace: String::new(),
            status: 200,
            at: Instant::now(),
        }
    }

    #[test]
    fn vault_requests_are_tallied_by_kind() {
        /// The log as (method, path); logins, reads, distinct paths, capabilities; the others.
        type Case<'a> = (
            &'a [(&'a str, &'a str)],
            usize,
            usize,
            usize,
            usize,
            &'a [&'a str],
        );
        let cases: [Case; 5] = [
            (&[], 0, 0, 0, 0, &[]),
            (
                &[
                    ("POST", "auth/approle/login"),
                    ("POST", "auth/userpass/login/app"),
                    ("GET", "secret/data/bench/p1"),
                    ("GET", "secret/data/bench/p1"),
                    ("GET", "secret/metadata/bench/p2"),
                ],
                2,
                3,
                2,
                0,
                &[],
            ),
            // A LIST is not a read; another mount's GET is not this mount's read.
            (
                &[
                    ("LIST", "secret/metadata/bench/"),
                    ("GET", "other/data/x"),
                    ("GET", "secret/data/bench/p1?version=2"),
                ],
                0,
                1,
                1,
                0,
                &["GET other/data/x", "LIST secret/metadata/bench/"],
            ),
            (
                &[
                    ("POST", "sys/capabilities-self"),
                    ("GET", "auth/token/lookup-self"),
                ],
                0,
                0,
                0,
                1,
                &["GET auth/token/lookup-self"],
            ),
            // "login" must be the method's endpoint, not a mount named so.
            (
                &[("GET", "auth/login/role/x"), ("POST", "auth/jwt/login")],
                1,
                0,
                0,
                0,
                &["GET auth/login/role/x"],
            ),
        ];
        for (log, logins, reads, paths, caps, other) in cases {
            let log: Vec<RequestRecord> = log.iter().map(|(m, p)| rec(m, p)).collect();
            let t = VaultTally::of(&log, "secret");
            assert_eq!(
                (t.logins, t.reads, t.paths_read.len(), t.capabilities),
                (logins, reads, paths, caps),
                "{log:?}"
            );
            let others: Vec<&str> = t.other.keys().map(String::as_str).collect();
            assert_eq!(others, other, "{log:?}");
            assert_eq!(t.total(), log.len());
        }
    }

    #[test]
    fn the_api_breakdown_counts_one_user() {
        let rec = |user: &str, verb: &str, resource: &str, sub: &str, uri: &str| {
            kube_emulator::AuditRecord {
                user: user.into(),
                verb: verb.into(),
                api_group: String::new(),
                resource: resource.into(),
                subresource: sub.into(),
                namespace: String::new(),
                name: String::new(),
                code: 200,
                uri: uri.into(),
            }
        };
        let vg = "system:serviceaccount:vaultgate-system:vaultgate";
        let audit = [
            rec(vg, "get", "clustersecretstores", "", ""),
            rec(vg, "get", "clustersecretstores", "", ""),
            rec(vg, "get", "secrets", "", ""),
            rec(vg, "create", "serviceaccounts", "token", ""),
            rec(vg, "get", "", "", "/version"),
            rec("admin", "create", "externalsecrets", "", ""),
        ];
        let by = api_breakdown(audit.iter(), vg);
        assert_eq!(
            join(&by),
            "create serviceaccounts/token 1, get /version 1, get clustersecretstores 2, get secrets 1"
        );
    }
}
