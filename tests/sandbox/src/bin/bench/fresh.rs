//! Fresh ExternalSecrets under refresh load, and what an unchanged refresh costs, in one run of
//! one vaultgate on fresh emulators:
//!
//! - idle: new ExternalSecrets created at a fixed rate with nothing else to do; from each create
//!   call returning to a watch showing its Secret with the value (`fresh_p50_ms_idle`,
//!   `fresh_p99_ms_idle`);
//! - load: many ExternalSecrets refreshing every 5 s; once all are synced and the refreshes
//!   run, a window where nothing in Vault changes gives the API writes and the controller CPU
//!   per refresh (`api_writes_per_noop_refresh`, `refresh_cpu_us_per_es`); then the same number
//!   of new ExternalSecrets at the same rate (`fresh_p99_ms_under_refresh`), while the gaps
//!   between Vault reads of each path give the longest refresh lag (`refresh_lag_max_s`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use vault_emulator::RequestRecord;
use vaultgate::api::ExternalSecret;
use vaultgate_sandbox::free_local_addr;
use vaultgate_sandbox::process::{
    Emulators, approle_load_manifests, cpu_seconds, metric_sum, scrape, wait_ready,
};

use super::spawn;

const STORES: usize = 10;
const NAMESPACES: usize = 100;
/// ExternalSecrets of the load sharing each Vault path, as in the sync benchmark (10,000 on
/// 1,000 paths).
const PER_PATH: usize = 10;
/// New ExternalSecrets per second in both fresh phases.
const RATE: f64 = 50.0;
/// After the load has synced: refreshes run this long before the measured window (the last
/// status patches and events of the first sync land in it)...
const SETTLE: Duration = Duration::from_secs(5);
/// ... and the window of unchanged refreshes.
const WINDOW: Duration = Duration::from_secs(10);
/// How often the Vault emulator's request log is read for the refresh lag. The log keeps the
/// last 10,000 requests; at the offered 2,000 refreshes/s at most that many reads arrive per
/// poll, and a poll that finds the log overrun says so.
const LOG_POLL: Duration = Duration::from_secs(1);
const LOG_CAPACITY: usize = 10_000;
const MANAGED: &str = "reconcile.external-secrets.io/managed=true";

/// `load` ExternalSecrets refreshing every `refresh` (10,000 every 5 s at full scale), `fresh`
/// new ones in each fresh phase (500).
pub async fn fresh_benchmark(
    bin: &Path,
    work: &Path,
    load: usize,
    fresh: usize,
    refresh: Duration,
    results: &mut BTreeMap<String, f64>,
) -> anyhow::Result<()> {
    let paths = load.div_ceil(PER_PATH).max(1);
    let env = Emulators::start(work, "fresh").await?;
    let client = env.kube.client().await;
    env.vault.put_policy(
        "bench",
        "path \"secret/data/bench/*\" { capabilities = [\"read\"] }",
    )?;
    for p in 0..paths {
        env.vault.kv2_put(
            "secret",
            &format!("bench/p{p}"),
            json!({"value": format!("value-{p}")}),
        )?;
    }
    // Each fresh ExternalSecret reads its own path, holding its own name.
    for phase in ["idle", "load"] {
        for j in 0..fresh {
            let name = format!("fresh-{phase}-{j}");
            env.vault
                .kv2_put("secret", &format!("bench/{name}"), json!({"value": name}))?;
        }
    }
    let docs = approle_load_manifests(&env.vault, "bench", "bench", STORES, NAMESPACES).await?;
    vaultgate_sandbox::apply_all(&client, &docs).await?;

    let seen = Arc::new(Mutex::new(Seen::default()));
    let (tick_tx, tick) = watch::channel(0u64);
    let watching = tokio::spawn(watch_secrets(client.clone(), paths, seen.clone(), tick_tx));

    let metrics = free_local_addr();
    let vg = spawn(bin, &env, &["--controller-only"], metrics)?;
    wait_ready(metrics, Duration::from_secs(20)).await?;

    // 1. Idle.
    let idle = fresh_phase(&client, "idle", fresh, &seen, tick.clone()).await?;
    let (idle_p50, idle_p99) = (percentile(&idle, 0.5), percentile(&idle, 0.99));
    eprintln!(
        "   idle: {fresh} new ExternalSecrets at {RATE}/s, create to Secret p50 {idle_p50:.0} ms, p99 {idle_p99:.0} ms, max {:.0} ms",
        percentile(&idle, 1.0)
    );

    // 2. The load, refreshing every `refresh`.
    let start = Instant::now();
    create_load(&client, load, paths, refresh).await?;
    let created = start.elapsed().as_secs_f64();
    wait_for(&seen, tick.clone(), Duration::from_secs(900), |s| {
        s.load >= load
    })
    .await
    .map_err(|_| anyhow::anyhow!("{load} ExternalSecrets not synced within 15 minutes"))?;
    eprintln!(
        "   load: {load} ExternalSecrets (refreshInterval {}s, {paths} paths) synced in {:.2}s (creates {created:.2}s)",
        refresh.as_secs(),
        start.elapsed().as_secs_f64()
    );
    let stop_tracking = CancellationToken::new();
    let lag = tokio::spawn(track_reads(env.vault.clone(), paths, stop_tracking.clone()));

    // 3. A window of unchanged refreshes: API writes, controller CPU and refreshes in it.
    tokio::time::sleep(SETTLE).await;
    let calls_before = sync_calls(metrics).await?;
    let reads_before = env.vault.count_kv_reads();
    let cpu_before = cpu_seconds(vg.pid())?;
    env.kube.clear_audit();
    let window_start = Instant::now();
    tokio::time::sleep(WINDOW).await;
    let audit = env.kube.audit();
    let cpu = cpu_seconds(vg.pid())? - cpu_before;
    let reads = env.vault.count_kv_reads() - reads_before;
    let window = window_start.elapsed().as_secs_f64();
    let refreshes = sync_calls(metrics).await? - calls_before;
    let writes = count_writes(audit.iter().map(|r| (r.verb.as_str(), r.resource.as_str())));
    let offered = load as f64 * window / refresh.as_secs_f64();
    eprintln!(
        "   window of {window:.1}s: {refreshes:.0} refreshes ({:.0}/s, {:.2} of those due; {reads} Vault reads, x{PER_PATH} = {}), {} API writes and {} events, controller CPU {cpu:.2}s",
        refreshes / window,
        refreshes / offered,
        reads * PER_PATH,
        writes.writes,
        writes.events
    );
    let breakdown = audit_breakdown(&audit);
    if !breakdown.is_empty() {
        eprintln!("      writes in the window: {breakdown}");
    }

    // 4. New ExternalSecrets under the refresh load.
    let loaded = fresh_phase(&client, "load", fresh, &seen, tick.clone()).await?;
    let (load_p50, load_p99) = (percentile(&loaded, 0.5), percentile(&loaded, 0.99));
    stop_tracking.cancel();
    let lag = lag.await?;
    let lag_s = lag.max_lag(Instant::now(), refresh).as_secs_f64();
    eprintln!(
        "   under refresh: {fresh} new ExternalSecrets at {RATE}/s, create to Secret p50 {load_p50:.0} ms, p99 {load_p99:.0} ms, max {:.0} ms; longest refresh lag {lag_s:.2}s{}",
        percentile(&loaded, 1.0),
        if lag.overrun {
            " (the Vault request log overran between polls: a lower bound)"
        } else {
            ""
        }
    );
    watching.abort();
    vg.terminate();
    env.shutdown().await;

    let per = |x: f64| {
        if refreshes > 0.0 {
            x / refreshes
        } else {
            f64::NAN
        }
    };
    results.extend([
        ("fresh_p50_ms_idle".to_string(), idle_p50),
        ("fresh_p99_ms_idle".to_string(), idle_p99),
        ("fresh_p50_ms_under_refresh".to_string(), load_p50),
        ("fresh_p99_ms_under_refresh".to_string(), load_p99),
        (
            "fresh_p99_under_refresh_vs_idle".to_string(),
            load_p99 / idle_p99,
        ),
        ("refresh_lag_max_s".to_string(), lag_s),
        (
            "api_writes_per_noop_refresh".to_string(),
            per(writes.writes as f64),
        ),
        (
            "api_events_per_noop_refresh".to_string(),
            per(writes.events as f64),
        ),
        ("refresh_cpu_us_per_es".to_string(), per(cpu * 1e6)),
        ("refreshes_per_s_under_load".to_string(), refreshes / window),
        ("refreshes_done_vs_due".to_string(), refreshes / offered),
        ("fresh_load_es".to_string(), load as f64),
    ]);
    Ok(())
}

/// What the Secret watch has seen: when each Secret first held its expected value.
#[derive(Default)]
struct Seen {
    at: HashMap<String, Instant>,
    /// Of those, the load's (`es-*`).
    load: usize,
}

/// Watches managed Secrets (one watch, as a client would) and records when each first holds
/// its expected value; `tick` changes after each new one.
async fn watch_secrets(
    client: kube::Client,
    paths: usize,
    seen: Arc<Mutex<Seen>>,
    tick: watch::Sender<u64>,
) {
    let api = Api::<Secret>::all(client);
    let stream = watcher(api, watcher::Config::default().labels(MANAGED))
        .default_backoff()
        .applied_objects();
    futures::pin_mut!(stream);
    while let Some(item) = stream.next().await {
        let Ok(secret) = item else { continue };
        let now = Instant::now();
        let Some(name) = secret.metadata.name.as_deref() else {
            continue;
        };
        let Some(want) = expected_value(name, paths) else {
            continue;
        };
        let holds = secret
            .data
            .as_ref()
            .and_then(|d| d.get("value"))
            .is_some_and(|v| v.0 == want.as_bytes());
        if !holds {
            continue;
        }
        let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
        if !s.at.contains_key(name) {
            s.at.insert(name.to_string(), now);
            if name.starts_with("es-") {
                s.load += 1;
            }
            drop(s);
            tick.send_modify(|t| *t += 1);
        }
    }
}

/// The value a benchmark Secret must hold: `es-i` the value of its shared path, `fresh-*`
/// its own name.
fn expected_value(name: &str, paths: usize) -> Option<String> {
    if let Some(i) = name.strip_prefix("es-") {
        let i: usize = i.parse().ok()?;
        return Some(format!("value-{}", i % paths));
    }
    name.starts_with("fresh-").then(|| name.to_string())
}

/// Waits (on the watch's ticks) until `done` holds; Err on timeout.
async fn wait_for(
    seen: &Mutex<Seen>,
    mut tick: watch::Receiver<u64>,
    limit: Duration,
    done: impl Fn(&Seen) -> bool,
) -> Result<(), ()> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        tick.borrow_and_update();
        if done(&seen.lock().unwrap_or_else(|e| e.into_inner())) {
            return Ok(());
        }
        match tokio::time::timeout_at(deadline, tick.changed()).await {
            Ok(Ok(())) => {}
            _ => return Err(()),
        }
    }
}

/// Creates `n` ExternalSecrets `fresh-{phase}-{j}` at [`RATE`] per second (each create its own
/// task, so a slow answer does not hold the next), and returns each one's time in ms from its
/// create call returning to the watch seeing its Secret with the value.
async fn fresh_phase(
    client: &kube::Client,
    phase: &str,
    n: usize,
    seen: &Arc<Mutex<Seen>>,
    tick: watch::Receiver<u64>,
) -> anyhow::Result<Vec<f64>> {
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for j in 0..n {
        tokio::time::sleep_until(start + Duration::from_secs_f64(j as f64 / RATE)).await;
        let client = client.clone();
        let name = format!("fresh-{phase}-{j}");
        tasks.spawn(async move {
            let ns = format!("ns-{}", j % NAMESPACES);
            let es = external_secret(&name, &ns, j % STORES, &format!("bench/{name}"), "1h")?;
            Api::<ExternalSecret>::namespaced(client, &ns)
                .create(&PostParams::default(), &es)
                .await?;
            anyhow::Ok((name, Instant::now()))
        });
    }
    let mut created = Vec::with_capacity(n);
    while let Some(r) = tasks.join_next().await {
        created.push(r??);
    }
    let prefix = format!("fresh-{phase}-");
    wait_for(seen, tick, Duration::from_secs(300), |s| {
        s.at.keys().filter(|k| k.starts_with(&prefix)).count() >= n
    })
    .await
    .map_err(|_| {
        anyhow::anyhow!("{n} new ExternalSecrets ({phase}) not synced within 5 minutes")
    })?;
    let s = seen.lock().unwrap_or_else(|e| e.into_inner());
    Ok(created
        .iter()
        .map(|(name, at)| s.at[name].saturating_duration_since(*at).as_secs_f64() * 1000.0)
        .collect())
}

/// The load: `es-{i}` in `ns-{i % 100}` on `store-{i % 10}`, reading `bench/p{i % paths}`
/// every `refresh`; created 64 at a time.
async fn create_load(
    client: &kube::Client,
    n: usize,
    paths: usize,
    refresh: Duration,
) -> anyhow::Result<()> {
    let refresh = &format!("{}s", refresh.as_secs());
    futures::stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            async move {
                let ns = format!("ns-{}", i % NAMESPACES);
                let es = external_secret(
                    &format!("es-{i}"),
                    &ns,
                    i % STORES,
                    &format!("bench/p{}", i % paths),
                    refresh,
                )?;
                Api::<ExternalSecret>::namespaced(client, &ns)
                    .create(&PostParams::default(), &es)
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(64)
        .try_collect()
        .await
}

fn external_secret(
    name: &str,
    ns: &str,
    store: usize,
    key: &str,
    refresh: &str,
) -> anyhow::Result<ExternalSecret> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "external-secrets.io/v1",
        "kind": "ExternalSecret",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "refreshInterval": refresh,
            "secretStoreRef": {"kind": "ClusterSecretStore", "name": format!("store-{store}")},
            "target": {"name": name},
            "data": [{"secretKey": "value", "remoteRef": {"key": key, "property": "value"}}]
        }
    }))?)
}

/// `externalsecret_sync_calls_total`, summed over the ExternalSecrets.
async fn sync_calls(metrics: std::net::SocketAddr) -> anyhow::Result<f64> {
    let text = scrape(metrics).await?;
    Ok(metric_sum(&text, "externalsecret_sync_calls_total").unwrap_or(0.0))
}

/// The `p` quantile (nearest rank) of `v`; NaN when empty.
pub(super) fn percentile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = (p * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Writes {
    /// Writes to the API server (create, update, patch, delete; status included).
    writes: usize,
    /// Of the writes, those to Events, counted apart.
    events: usize,
}

/// Sorts audited `(verb, resource)` pairs into writes and Event writes; reads and watches
/// are neither.
fn count_writes<'a>(records: impl Iterator<Item = (&'a str, &'a str)>) -> Writes {
    let mut w = Writes::default();
    for (verb, resource) in records {
        if !matches!(
            verb,
            "create" | "update" | "patch" | "delete" | "deletecollection"
        ) {
            continue;
        }
        if resource == "events" {
            w.events += 1;
        } else {
            w.writes += 1;
        }
    }
    w
}

/// `verb resource[/sub] count` of the writes in an audit log, for the printout.
fn audit_breakdown(audit: &[kube_emulator::AuditRecord]) -> String {
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for r in audit {
        if count_writes(std::iter::once((r.verb.as_str(), r.resource.as_str())))
            == Writes::default()
        {
            continue;
        }
        let what = match r.subresource.as_str() {
            "" => format!("{} {}", r.verb, r.resource),
            sub => format!("{} {}/{sub}", r.verb, r.resource),
        };
        *by.entry(what).or_default() += 1;
    }
    by.iter()
        .map(|(what, c)| format!("{what} {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads the Vault emulator's request log every [`LOG_POLL`] until `stop`, keeping the gaps
/// between reads of each load path (`bench/p*`).
async fn track_reads(
    vault: vault_emulator::VaultEmulator,
    paths: usize,
    stop: CancellationToken,
) -> ReadGaps {
    let mut gaps = ReadGaps::new(Instant::now(), paths);
    loop {
        gaps.add(&vault.requests());
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(LOG_POLL) => {}
        }
    }
    gaps.add(&vault.requests());
    gaps
}

/// Gaps between successive reads of each load path. A refresh due an interval after the last
/// one that runs `lag` late leaves a gap of the interval + `lag` (a lower bound when ExternalSecrets share a
/// path: another one's read can fall in the gap).
#[derive(Debug)]
struct ReadGaps {
    /// Last read of each path, from when tracking started (every path had just been read).
    last: HashMap<String, Instant>,
    longest: Duration,
    /// The newest record already taken.
    until: Option<Instant>,
    /// Some reads fell out of the bounded log between two polls.
    overrun: bool,
}

impl ReadGaps {
    fn new(start: Instant, paths: usize) -> ReadGaps {
        ReadGaps {
            last: (0..paths)
                .map(|p| (format!("secret/data/bench/p{p}"), start))
                .collect(),
            longest: Duration::ZERO,
            until: None,
            overrun: false,
        }
    }

    /// Takes the records newer than the last poll's.
    fn add(&mut self, log: &[RequestRecord]) {
        if let (Some(until), Some(first)) = (self.until, log.first())
            && first.at > until
            && log.len() >= LOG_CAPACITY
        {
            self.overrun = true;
        }
        for r in log {
            if self.until.is_some_and(|u| r.at <= u) || r.method != "GET" || r.status != 200 {
                continue;
            }
            if let Some(last) = self.last.get_mut(&r.path) {
                self.longest = self.longest.max(r.at.saturating_duration_since(*last));
                *last = r.at;
            }
        }
        if let Some(last) = log.last() {
            self.until = Some(last.at);
        }
    }

    /// The longest lag: the longest gap (counting each path's time since its last read up to
    /// `now`) beyond the refresh interval.
    fn max_lag(&self, now: Instant, interval: Duration) -> Duration {
        let open = self
            .last
            .values()
            .map(|at| now.saturating_duration_since(*at))
            .max()
            .unwrap_or_default();
        self.longest.max(open).saturating_sub(interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &str, at: Instant) -> RequestRecord {
        RequestRecord {
            method: "GET".into(),
            path: path.into(),
            namespace: String::new(),
            status: 200,
            at,
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert_eq!(percentile(&[7.0, 3.0], 0.5), 3.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn writes_are_counted_by_verb_with_events_apart() {
        let audit = [
            ("patch", "secrets"),
            ("patch", "externalsecrets"),
            ("update", "leases"),
            ("create", "events"),
            ("patch", "events"),
            ("get", "secrets"),
            ("list", "externalsecrets"),
            ("watch", "secrets"),
            ("delete", "secrets"),
        ];
        assert_eq!(
            count_writes(audit.into_iter()),
            Writes {
                writes: 4,
                events: 2
            }
        );
    }

    #[test]
    fn expected_values_follow_the_names() {
        assert_eq!(
            expected_value("es-1234", 1000).as_deref(),
            Some("value-234")
        );
        assert_eq!(
            expected_value("fresh-idle-3", 1000).as_deref(),
            Some("fresh-idle-3")
        );
        assert_eq!(expected_value("es-x", 1000), None);
        assert_eq!(expected_value("other", 1000), None);
    }

    #[test]
    fn the_lag_is_the_longest_gap_beyond_the_interval() {
        let t0 = Instant::now();
        let s = |secs: f64| t0 + Duration::from_secs_f64(secs);
        let mut g = ReadGaps::new(t0, 2);
        g.add(&[
            read("secret/data/bench/p0", s(4.0)),
            read("secret/data/bench/p1", s(4.5)),
            read("secret/data/bench/other", s(4.6)),
        ]);
        // A later poll sees the same records again, and new ones: each counted once.
        g.add(&[
            read("secret/data/bench/p0", s(4.0)),
            read("secret/data/bench/p1", s(4.5)),
            read("secret/data/bench/other", s(4.6)),
            read("secret/data/bench/p0", s(11.0)),
            read("secret/data/bench/p1", s(9.5)),
        ]);
        assert!(!g.overrun);
        // p0: 4.0 to 11.0, 7 s apart: 2 s late.
        let lag = g.max_lag(s(12.0), Duration::from_secs(5));
        assert!((lag.as_secs_f64() - 2.0).abs() < 1e-6, "{lag:?}");
        // A path left unread counts up to now.
        let lag = g.max_lag(s(17.5), Duration::from_secs(5));
        assert!((lag.as_secs_f64() - 3.0).abs() < 1e-6, "{lag:?}");
        // Failed reads are not reads.
        let mut failed = read("secret/data/bench/p1", s(13.0));
        failed.status = 403;
        g.add(&[failed]);
        let lag = g.max_lag(s(17.5), Duration::from_secs(5));
        assert!((lag.as_secs_f64() - 3.0).abs() < 1e-6, "{lag:?}");
    }

    #[test]
    fn a_log_that_overran_between_polls_is_flagged() {
        let t0 = Instant::now();
        let mut g = ReadGaps::new(t0, 1);
        g.add(&[read("secret/data/bench/p0", t0 + Duration::from_secs(1))]);
        let full: Vec<RequestRecord> = (0..LOG_CAPACITY)
            .map(|i| {
                read(
                    "x",
                    t0 + Duration::from_secs(2) + Duration::from_micros(i as u64),
                )
            })
            .collect();
        g.add(&full);
        assert!(g.overrun);
    }
}
