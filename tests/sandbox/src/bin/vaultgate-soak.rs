//! `make soak`: 1,000 ExternalSecrets (`SOAK_OBJECTS`) kept in sync by vaultgate, run as its own
//! process, while faults are injected at random for a bounded period: Vault 500/503/429 bursts,
//! Vault down for a few seconds, every token revoked, API server 500s and 409s, dropped watches
//! and compacted history, a slow API server, and Vault values changed meanwhile.
//!
//! Faults that take data away from ExternalSecrets under deletionPolicy Retain come and go too:
//! a `find` folder deleted in Vault, the latest version of secrets soft-deleted, a store
//! re-pointed at an empty mount.
//!
//! Beside them, a few ExternalSecrets use a VaultDynamicSecret on `database/creds/<role>` with
//! short TTLs (rotated, renewed, minted early); their live leases are sampled throughout and
//! must never exceed the current one plus the superseded ones within their grace.
//!
//! Checked: no Secret is ever deleted or emptied; once the faults stop every Secret holds
//! Vault's current value within a bound; the process's open file descriptors, tokio tasks
//! (`vaultgate_runtime_alive_tasks`) and resident memory come back to their pre-fault figures.
//! Figures are printed and written to `target/soak/results.json`; the exit status is non-zero on
//! failure. `SOAK_SECONDS` (default 180) bounds the whole run, `SOAK_SEED` replays a run's
//! faults, `SOAK_FAULTS=0` runs the same without faults (a control for the figures); vaultgate's
//! log (`SOAK_LOG_LEVEL`, default `warn`) goes to `target/soak/vaultgate.log`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ListParams, PostParams};
use kube_emulator::FaultFilter;
use serde_json::{Value, json};
use vaultgate::api::ExternalSecret;
use vaultgate_sandbox::process::{
    Emulators, approle_load_manifests, metric_sum, open_fds, peak_rss_mib, rss_mib, scrape,
    spawn_vaultgate, vaultgate_binary,
};
use vaultgate_sandbox::{free_local_addr, repo_root};

#[path = "soak/leases.rs"]
mod soak_leases;

const STORES: usize = 4;
const NAMESPACES: usize = 10;
/// ExternalSecrets reading a folder with `dataFrom.find` (`find-<j>`, folder `soak-find/f<j>`),
/// each folder holding these secrets.
const FINDS: usize = 10;
const FIND_KEYS: [&str; 2] = ["a", "b"];
/// An empty KV v2 mount a store is re-pointed at.
const EMPTY_MOUNT: &str = "soak-empty";
/// Every ExternalSecret refreshes on this period, so values changed in Vault arrive within it.
const REFRESH: &str = "20s";
const LABEL_MANAGED: &str = "reconcile.external-secrets.io/managed=true";

const PHASES: [&str; 3] = ["steady", "faults", "recovery"];
const PHASE_FAULTS: u8 = 1;
const PHASE_RECOVERY: u8 = 2;
const PHASE_DONE: u8 = 3;

/// Limits of the pass criteria.
const FD_TOLERANCE: f64 = 8.0;
const OTHER_FD_TOLERANCE: f64 = 2.0;
const TASK_TOLERANCE: f64 = 8.0;
const LOOSE_TASK_TOLERANCE: f64 = 4.0;
const RSS_GROWTH: f64 = 0.20;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={v:?} is not valid")),
        Err(_) => Ok(default),
    }
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    vaultgate::run::install_crypto();
    let passed = runtime.block_on(soak())?;
    if !passed {
        std::process::exit(1);
    }
    Ok(())
}

/// A small deterministic generator (xorshift64*), so that `SOAK_SEED` replays a run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// One sample of the vaultgate process.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    /// Open file descriptors.
    fds: f64,
    /// Those that are not sockets (files, pipes, epoll, ...).
    other_fds: f64,
    /// Alive tokio tasks.
    tasks: f64,
    /// Tasks beyond one per open socket. HTTP client pools keep a task per connection and
    /// shrink or grow with the load (idle connections close after 90 s); a leak of tasks hides
    /// behind a pool that shrank, not behind this figure.
    loose_tasks: f64,
    rss_mib: f64,
}

impl Sample {
    fn fields(&self) -> [f64; 5] {
        [
            self.fds,
            self.other_fds,
            self.tasks,
            self.loose_tasks,
            self.rss_mib,
        ]
    }
    fn from_fields(f: [f64; 5]) -> Sample {
        Sample {
            fds: f[0],
            other_fds: f[1],
            tasks: f[2],
            loose_tasks: f[3],
            rss_mib: f[4],
        }
    }
    fn max(&self, o: &Sample) -> Sample {
        let (a, b) = (self.fields(), o.fields());
        Sample::from_fields(std::array::from_fn(|i| a[i].max(b[i])))
    }
}

async fn sample(pid: u32, metrics: SocketAddr) -> anyhow::Result<Sample> {
    // Scrape first: the scrape's own connection is closed again when the fds are counted (its
    // task is counted, a constant).
    let text = scrape(metrics).await?;
    let tasks = metric_sum(&text, "vaultgate_runtime_alive_tasks")
        .context("vaultgate_runtime_alive_tasks is not exposed")?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (fds, sockets) = open_fds(pid)?;
    Ok(Sample {
        fds: fds as f64,
        other_fds: (fds - sockets) as f64,
        tasks,
        loose_tasks: tasks - sockets as f64,
        rss_mib: rss_mib(pid)?,
    })
}

/// Samples once a second for `period`; the median of each figure.
async fn steady(pid: u32, metrics: SocketAddr, period: Duration) -> anyhow::Result<Sample> {
    let mut all = vec![];
    let start = Instant::now();
    while start.elapsed() < period {
        all.push(sample(pid, metrics).await?);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(Sample::from_fields(std::array::from_fn(|i| {
        let mut v: Vec<f64> = all.iter().map(|s| s.fields()[i]).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    })))
}

fn figures(s: &Sample) -> Value {
    json!({
        "fds": s.fds,
        "non_socket_fds": s.other_fds,
        "tasks": s.tasks,
        "tasks_minus_sockets": s.loose_tasks,
        "rss_mib": s.rss_mib,
    })
}

/// What every Secret `es-<i>` must hold: `expected[i]`.
type Expected = Arc<Mutex<Vec<String>>>;

fn ns_of(i: usize) -> String {
    format!("ns-{}", i % NAMESPACES)
}

/// What `find-<j>` holds: one key per secret of its folder, the secret's JSON.
fn find_data(j: usize) -> BTreeMap<String, Vec<u8>> {
    FIND_KEYS
        .iter()
        .map(|k| {
            (
                format!("soak-find_f{j}_{k}"),
                format!(r#"{{"value":"f{j}-{k}"}}"#).into_bytes(),
            )
        })
        .collect()
}

fn put_find_folder(vault: &vault_emulator::VaultEmulator, j: usize) -> anyhow::Result<()> {
    for k in FIND_KEYS {
        vault.kv2_put(
            "secret",
            &format!("soak-find/f{j}/{k}"),
            json!({"value": format!("f{j}-{k}")}),
        )?;
    }
    Ok(())
}

/// How many Secrets hold their expected data (`es-<i>` its value, `find-<j>` its folder), and
/// which do not (a few names).
async fn correct(
    secrets: &Api<Secret>,
    expected: &Expected,
) -> anyhow::Result<(usize, Vec<String>)> {
    let list = secrets
        .list(&ListParams::default().labels(LABEL_MANAGED))
        .await?;
    let want = expected.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut finds_ok = vec![false; FINDS];
    for s in &list.items {
        let Some(j) = s
            .metadata
            .name
            .as_deref()
            .and_then(|n| n.strip_prefix("find-"))
            .and_then(|j| j.parse::<usize>().ok())
            .filter(|j| *j < FINDS)
        else {
            continue;
        };
        let data: BTreeMap<String, Vec<u8>> = s
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect();
        finds_ok[j] = data == find_data(j);
    }
    let mut ok = vec![false; want.len()];
    for s in &list.items {
        let Some(i) = s
            .metadata
            .name
            .as_deref()
            .and_then(|n| n.strip_prefix("es-"))
            .and_then(|i| i.parse::<usize>().ok())
            .filter(|i| *i < want.len())
        else {
            continue;
        };
        ok[i] = s
            .data
            .as_ref()
            .and_then(|d| d.get("value"))
            .is_some_and(|v| v.0 == want[i].as_bytes());
    }
    let wrong: Vec<String> = ok
        .iter()
        .enumerate()
        .filter(|(_, ok)| !**ok)
        .map(|(i, _)| format!("{}/es-{i}", ns_of(i)))
        .chain(
            finds_ok
                .iter()
                .enumerate()
                .filter(|(_, ok)| !**ok)
                .map(|(j, _)| format!("{}/find-{j}", ns_of(j))),
        )
        .take(5)
        .collect();
    let good = ok.iter().chain(&finds_ok).filter(|o| **o).count();
    Ok((good, wrong))
}

/// ExternalSecrets whose Ready condition is True.
async fn ready_count(client: &kube::Client) -> anyhow::Result<usize> {
    let list = Api::<ExternalSecret>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    Ok(list
        .items
        .iter()
        .filter(|es| {
            es.status.as_ref().is_some_and(|st| {
                st.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
        })
        .count())
}

async fn soak() -> anyhow::Result<bool> {
    let total = Duration::from_secs(env_or("SOAK_SECONDS", 180u64)?);
    let n: usize = env_or("SOAK_OBJECTS", 1000usize)?;
    let faults_on = env_or("SOAK_FAULTS", 1u8)? != 0;
    let seed: u64 = env_or(
        "SOAK_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos() as u64
            | 1,
    )?;
    // The faults take a third of the run; the rest is set-up, steady state and recovery.
    let fault_period = total / 3;
    let settle = (total / 9).max(Duration::from_secs(10));
    let converge_limit = (total / 3).max(Duration::from_secs(45));
    let bin = vaultgate_binary()?;
    let out_dir = repo_root().join("target/soak");
    std::fs::create_dir_all(&out_dir)?;
    eprintln!(
        "soak: {n} ExternalSecrets, {}s of faults, seed {seed} (SOAK_SEED={seed} replays it)",
        fault_period.as_secs()
    );

    // ---- set-up: Vault data, AppRole ClusterSecretStores, namespaces --------------------------
    let env = Emulators::start(&out_dir, "soak").await?;
    let client = env.kube.client().await;
    env.vault.put_policy(
        "soak",
        &format!(
            "path \"secret/data/soak/*\" {{ capabilities = [\"read\"] }}\n\
             path \"secret/data/soak-find/*\" {{ capabilities = [\"read\"] }}\n\
             path \"secret/metadata/soak-find/*\" {{ capabilities = [\"read\", \"list\"] }}\n\
             path \"{EMPTY_MOUNT}/*\" {{ capabilities = [\"read\", \"list\"] }}"
        ),
    )?;
    env.vault.enable_kv(EMPTY_MOUNT, 2)?;
    for j in 0..FINDS {
        put_find_folder(&env.vault, j)?;
    }
    let expected: Expected = Arc::new(Mutex::new(
        (0..n).map(|i| format!("r0-{i}")).collect::<Vec<_>>(),
    ));
    for i in 0..n {
        env.vault.kv2_put(
            "secret",
            &format!("soak/p{i}"),
            json!({"value": format!("r0-{i}")}),
        )?;
    }
    let docs = approle_load_manifests(&env.vault, "soak", "soak", STORES, NAMESPACES).await?;
    vaultgate_sandbox::apply_all(&client, &docs).await?;

    // ---- vaultgate, as deployed: leader election on, its own process -------------------------
    let metrics = free_local_addr();
    let log_path = out_dir.join("vaultgate.log");
    let log = std::fs::File::create(&log_path)?;
    let log_level = std::env::var("SOAK_LOG_LEVEL").unwrap_or_else(|_| "warn".into());
    let vg = spawn_vaultgate(
        None,
        &bin,
        &env,
        &["--controller-only", "--leader-elect"],
        metrics,
        &[
            ("POD_NAME", "vaultgate-soak"),
            ("VAULTGATE_LOG_LEVEL", &log_level),
        ],
        Stdio::from(log),
    )?;
    let pid = vg.pid();
    vaultgate_sandbox::process::wait_ready(metrics, Duration::from_secs(30)).await?;

    let start = Instant::now();
    // The generator ExternalSecrets' leases are watched from their first mint to the end.
    let phase = Arc::new(AtomicU8::new(0));
    soak_leases::setup(&env.vault, &client).await?;
    let lease_sampler =
        soak_leases::spawn_sampler(env.vault.clone(), client.clone(), phase.clone());
    futures::stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            async move {
                let es: ExternalSecret = serde_json::from_value(json!({
                    "apiVersion": "external-secrets.io/v1",
                    "kind": "ExternalSecret",
                    "metadata": {"name": format!("es-{i}"), "namespace": ns_of(i)},
                    "spec": {
                        "refreshInterval": REFRESH,
                        "secretStoreRef": {"kind": "ClusterSecretStore", "name": format!("store-{}", i % STORES)},
                        "target": {"name": format!("es-{i}")},
                        "data": [{"secretKey": "value", "remoteRef": {"key": format!("soak/p{i}"), "property": "value"}}]
                    }
                }))?;
                Api::<ExternalSecret>::namespaced(client, &ns_of(i))
                    .create(&PostParams::default(), &es)
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<()>()
        .await?;
    for j in 0..FINDS {
        let es: ExternalSecret = serde_json::from_value(json!({
            "apiVersion": "external-secrets.io/v1",
            "kind": "ExternalSecret",
            "metadata": {"name": format!("find-{j}"), "namespace": ns_of(j)},
            "spec": {
                "refreshInterval": REFRESH,
                "secretStoreRef": {"kind": "ClusterSecretStore", "name": format!("store-{}", j % STORES)},
                "target": {"name": format!("find-{j}")},
                "dataFrom": [{"find": {"path": format!("soak-find/f{j}"), "name": {"regexp": ".*"}}}]
            }
        }))?;
        Api::<ExternalSecret>::namespaced(client.clone(), &ns_of(j))
            .create(&PostParams::default(), &es)
            .await?;
    }
    let all = n + FINDS;
    let secrets: Api<Secret> = Api::all(client.clone());
    loop {
        let (ok, _) = correct(&secrets, &expected).await?;
        if ok == all {
            break;
        }
        if start.elapsed() > Duration::from_secs(120) {
            bail!("the first sync did not finish within 120 s ({ok}/{all})");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let first_sync = start.elapsed();
    eprintln!(
        "first sync: {n} Secrets in {:.1} s; steady state for {} s",
        first_sync.as_secs_f64(),
        settle.as_secs() * 2
    );

    // ---- steady state before the faults ------------------------------------------------------
    // A timeline of the process's figures, every 2 s until the end, by phase.
    let timeline = Arc::new(Mutex::new(Vec::<Value>::new()));
    let sampler = {
        let (phase, timeline) = (phase.clone(), timeline.clone());
        tokio::spawn(async move {
            let t0 = Instant::now();
            loop {
                let p = phase.load(Ordering::SeqCst);
                if p == PHASE_DONE {
                    break;
                }
                if let Ok(s) = sample(pid, metrics).await {
                    timeline.lock().unwrap().push(json!([
                        (t0.elapsed().as_secs_f64() * 10.0).round() / 10.0,
                        PHASES[p as usize],
                        s.fds,
                        s.other_fds,
                        s.tasks,
                        s.loose_tasks,
                        (s.rss_mib * 10.0).round() / 10.0
                    ]));
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    };
    tokio::time::sleep(settle).await;
    let before = steady(pid, metrics, settle).await?;
    eprintln!("before faults: {before:?}");

    // ---- faults ------------------------------------------------------------------------------
    // The guard: no managed Secret may disappear or lose its value, at any time.
    let violations = Arc::new(Mutex::new(Vec::<String>::new()));
    let guard_stop = Arc::new(AtomicBool::new(false));
    let guard_checks = Arc::new(AtomicUsize::new(0));
    let guard = {
        let (secrets, violations, stop, checks) = (
            secrets.clone(),
            violations.clone(),
            guard_stop.clone(),
            guard_checks.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                // Errors are the injected API faults: skip that round.
                if let Ok(list) = secrets
                    .list(&ListParams::default().labels(LABEL_MANAGED))
                    .await
                {
                    checks.fetch_add(1, Ordering::Relaxed);
                    let mut seen = 0;
                    for s in &list.items {
                        seen += 1;
                        let name = s.metadata.name.as_deref().unwrap_or_default();
                        let found = name.starts_with("find-");
                        // Under deletionPolicy Retain nothing may take data away: not a folder
                        // deleted in Vault, a deleted version, nor a store pointed elsewhere.
                        let empty = if found {
                            s.data.as_ref().is_none_or(|d| d.len() < FIND_KEYS.len())
                        } else if name.starts_with("gen-") {
                            s.data
                                .as_ref()
                                .and_then(|d| d.get("username"))
                                .is_none_or(|v| v.0.is_empty())
                        } else {
                            s.data
                                .as_ref()
                                .and_then(|d| d.get("value"))
                                .is_none_or(|v| v.0.is_empty())
                        };
                        if empty {
                            violations.lock().unwrap().push(format!(
                                "{}/{} emptied",
                                s.metadata.namespace.as_deref().unwrap_or_default(),
                                s.metadata.name.as_deref().unwrap_or_default()
                            ));
                        }
                    }
                    if seen < all {
                        violations
                            .lock()
                            .unwrap()
                            .push(format!("only {seen} of {all} Secrets exist"));
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let mut rng = Rng(seed);
    let mut injected: BTreeMap<&'static str, u64> = BTreeMap::new();
    // Faults that take data away stay until they come up again or the faults end.
    let mut taken = Taken::default();
    let mut step = 0u64;
    let mut during = before;
    let mut round = 0u64;
    let faults_start = Instant::now();
    phase.store(PHASE_FAULTS, Ordering::SeqCst);
    if faults_on {
        eprintln!("faults for {} s", fault_period.as_secs());
    } else {
        eprintln!("SOAK_FAULTS=0: {} s without faults", fault_period.as_secs());
    }
    while faults_start.elapsed() < fault_period {
        if !faults_on {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        // The faults that take data away come first, so that every run meets each of them.
        let pick = if step < 3 {
            11 + step
        } else {
            rng.range(0, 14)
        };
        step += 1;
        let kind = match pick {
            0 => {
                env.vault.fail_next(rng.range(10, 60) as usize, 500, None);
                "vault 500 burst"
            }
            1 => {
                env.vault.fail_next(rng.range(10, 60) as usize, 503, None);
                "vault 503 burst"
            }
            2 => {
                env.vault
                    .fail_next(rng.range(5, 30) as usize, 429, Some(rng.range(1, 2)));
                "vault 429 burst"
            }
            3 => {
                env.vault.set_down(true);
                tokio::time::sleep(Duration::from_millis(rng.range(2000, 5000))).await;
                env.vault.set_down(false);
                "vault down 2-5 s"
            }
            4 => {
                env.vault.revoke_all_tokens();
                "vault tokens revoked"
            }
            5 => {
                env.kube.fail_next(
                    FaultFilter::verb_resource("patch", "secrets"),
                    rng.range(5, 20) as usize,
                    500,
                );
                "kube 500 on Secret writes"
            }
            6 => {
                env.kube.fail_next(
                    FaultFilter::verb_resource("patch", "externalsecrets"),
                    rng.range(5, 20) as usize,
                    409,
                );
                "kube 409 on status writes"
            }
            7 => {
                env.kube.fail_next(
                    FaultFilter::verb_resource("get", "secrets"),
                    rng.range(5, 20) as usize,
                    500,
                );
                "kube 500 on Secret reads"
            }
            8 => {
                env.kube.drop_watches();
                "watches dropped"
            }
            9 => {
                env.kube.compact();
                env.kube.drop_watches();
                "history compacted, watches dropped (410 Gone)"
            }
            10 => {
                env.kube
                    .set_latency(Duration::from_millis(rng.range(100, 400)));
                tokio::time::sleep(Duration::from_millis(rng.range(1000, 3000))).await;
                env.kube.set_latency(Duration::ZERO);
                "kube slow 1-3 s"
            }
            11 => {
                if taken.folder.is_some() {
                    taken.restore_folder(&env.vault, &client).await?;
                    "find folder restored"
                } else {
                    let j = rng.range(0, FINDS as u64 - 1) as usize;
                    for k in FIND_KEYS {
                        env.vault
                            .kv2_delete_all("secret", &format!("soak-find/f{j}/{k}"))?;
                    }
                    taken.folder = Some(j);
                    force_sync(&client, &format!("find-{j}"), &ns_of(j)).await;
                    "find folder deleted in Vault"
                }
            }
            12 => {
                if !taken.versions.is_empty() {
                    round += 1;
                    taken
                        .restore_versions(&env.vault, &client, &expected, round)
                        .await?;
                    "soft-deleted versions written again"
                } else {
                    for _ in 0..rng.range(5, 20) {
                        let i = rng.range(0, n as u64 - 1) as usize;
                        env.vault
                            .kv2_delete_latest("secret", &format!("soak/p{i}"))?;
                        taken.versions.push(i);
                        force_sync(&client, &format!("es-{i}"), &ns_of(i)).await;
                    }
                    "latest versions soft-deleted"
                }
            }
            13 => {
                if taken.store.is_some() {
                    taken.restore_store(&client).await?;
                    "store pointed back"
                } else {
                    let k = rng.range(0, STORES as u64 - 1) as usize;
                    point_store(&client, k, EMPTY_MOUNT).await?;
                    taken.store = Some(k);
                    "store re-pointed at an empty mount"
                }
            }
            _ => {
                round += 1;
                let k = rng.range(20, 100) as usize;
                for _ in 0..k {
                    let i = rng.range(0, n as u64 - 1) as usize;
                    let value = format!("r{round}-{i}");
                    env.vault
                        .kv2_put("secret", &format!("soak/p{i}"), json!({"value": value}))?;
                    expected.lock().unwrap()[i] = value;
                }
                "vault values changed"
            }
        };
        *injected.entry(kind).or_default() += 1;
        if let Ok(s) = sample(pid, metrics).await {
            during = during.max(&s);
        }
        tokio::time::sleep(Duration::from_millis(rng.range(300, 1500))).await;
    }
    // The faults stop: nothing pending in Vault; what was taken away is back; the last values
    // change as the faults end.
    env.vault.set_down(false);
    env.vault.clear_faults();
    env.kube.set_latency(Duration::ZERO);
    taken.restore_folder(&env.vault, &client).await?;
    round += 1;
    taken
        .restore_versions(&env.vault, &client, &expected, round)
        .await?;
    taken.restore_store(&client).await?;
    round += 1;
    for _ in 0..50 {
        let i = rng.range(0, n as u64 - 1) as usize;
        let value = format!("r{round}-{i}");
        env.vault
            .kv2_put("secret", &format!("soak/p{i}"), json!({"value": value}))?;
        expected.lock().unwrap()[i] = value;
    }
    *injected.entry("vault values changed").or_default() += 1;
    let stopped = Instant::now();
    phase.store(PHASE_RECOVERY, Ordering::SeqCst);
    for (k, v) in &injected {
        eprintln!("  {v:>4} x {k}");
    }

    // ---- recovery ----------------------------------------------------------------------------
    let mut last_wrong = vec![];
    let mut last_ok = 0;
    let converged = loop {
        if let Ok((ok, wrong)) = correct(&secrets, &expected).await {
            last_ok = ok;
            last_wrong = wrong;
            if ok == all {
                break Some(stopped.elapsed());
            }
        }
        if stopped.elapsed() > converge_limit {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    match converged {
        Some(t) => eprintln!(
            "every Secret correct {:.1} s after the faults stopped",
            t.as_secs_f64()
        ),
        None => eprintln!(
            "only {last_ok}/{all} Secrets correct {} s after the faults stopped, e.g. {last_wrong:?}",
            converge_limit.as_secs()
        ),
    }
    // Keep guarding through a quiet period, then measure the steady state again.
    tokio::time::sleep(settle).await;
    guard_stop.store(true, Ordering::SeqCst);
    guard.await?;
    let ready = ready_count(&client).await?;
    let mut proc = vg;
    let alive = proc.alive();
    let after = if alive {
        steady(pid, metrics, settle).await?
    } else {
        Sample::default()
    };
    phase.store(PHASE_DONE, Ordering::SeqCst);
    sampler.await?;
    let lease_tally = lease_sampler.await?;
    let lease_counters = env.vault.lease_counters();
    let peak = peak_rss_mib(pid).unwrap_or(f64::NAN);
    let logins = env.vault.count_logins();
    let exit = proc.terminate();
    env.shutdown().await;

    // ---- verdict -----------------------------------------------------------------------------
    let violations = violations.lock().unwrap().clone();
    let mut failures = vec![];
    if !alive {
        failures.push("vaultgate exited during the soak".to_string());
    }
    if !violations.is_empty() {
        failures.push(format!(
            "{} guard violations, e.g. {:?}",
            violations.len(),
            &violations[..violations.len().min(5)]
        ));
    }
    let (lease_figures, lease_failures) = soak_leases::results(&lease_tally, lease_counters);
    failures.extend(lease_failures);
    if converged.is_none() {
        failures.push(format!(
            "{last_ok}/{all} Secrets correct {} s after the faults stopped",
            converge_limit.as_secs()
        ));
    }
    let limits = Sample {
        fds: before.fds + FD_TOLERANCE,
        other_fds: before.other_fds + OTHER_FD_TOLERANCE,
        tasks: before.tasks + TASK_TOLERANCE,
        loose_tasks: before.loose_tasks + LOOSE_TASK_TOLERANCE,
        rss_mib: before.rss_mib * (1.0 + RSS_GROWTH),
    };
    let names = [
        "open fds",
        "non-socket fds",
        "tokio tasks",
        "tasks - sockets",
        "RSS MiB",
    ];
    let (b, d, a, l) = (
        before.fields(),
        during.fields(),
        after.fields(),
        limits.fields(),
    );
    println!(
        "\n{:<16} {:>14} {:>14} {:>14} {:>10}  ok",
        "figure", "before faults", "max in faults", "after", "limit"
    );
    for (i, name) in names.iter().enumerate() {
        let ok = a[i] <= l[i];
        if !ok {
            failures.push(format!("{name}: {:.1} after recovery > {:.1}", a[i], l[i]));
        }
        let decimals = if i == 4 { 1 } else { 0 };
        let f = |v: f64| format!("{v:.decimals$}");
        println!(
            "{name:<16} {:>14} {:>14} {:>14} {:>10}  {}",
            f(b[i]),
            f(d[i]),
            f(a[i]),
            f(l[i]),
            if ok { "yes" } else { "NO" }
        );
    }
    println!(
        "\nfirst sync of {n}: {:.1} s; converged after faults: {}; Ready at the end: {ready}/{}; guard: {} checks, {} violations; peak RSS {peak:.1} MiB; {logins} Vault logins; exit {}",
        first_sync.as_secs_f64(),
        converged.map_or_else(|| "NO".to_string(), |t| format!("{:.1} s", t.as_secs_f64())),
        all + soak_leases::names().count(),
        guard_checks.load(Ordering::Relaxed),
        violations.len(),
        exit.map_or_else(|| "killed".to_string(), |s| s.to_string()),
    );
    println!("{}", soak_leases::summary(&lease_tally, lease_counters));
    let results = json!({
        "objects": n,
        "seed": seed,
        "seconds_total": start.elapsed().as_secs_f64(),
        "fault_seconds": fault_period.as_secs(),
        "faults_injected": injected,
        "first_sync_seconds": first_sync.as_secs_f64(),
        "converge_seconds": converged.map(|t| t.as_secs_f64()),
        "converge_limit_seconds": converge_limit.as_secs(),
        "before": figures(&before),
        "max_during_faults": figures(&during),
        "after": figures(&after),
        "limits": figures(&limits),
        "peak_rss_mib": peak,
        "vault_logins": logins,
        "ready_at_end": ready,
        "guard_checks": guard_checks.load(Ordering::Relaxed),
        "guard_violations": violations.len(),
        "generator_leases": lease_figures,
        "timeline_columns": ["seconds", "phase", "fds", "non_socket_fds", "tasks", "tasks_minus_sockets", "rss_mib"],
        "timeline": timeline.lock().unwrap().clone(),
        "failures": failures,
        "passed": failures.is_empty(),
    });
    std::fs::write(
        out_dir.join("results.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    println!(
        "written to {}; vaultgate's log in {}",
        out_dir.join("results.json").display(),
        log_path.display()
    );
    if failures.is_empty() {
        println!("soak passed");
    } else {
        println!("soak FAILED:");
        for f in &failures {
            println!("  - {f}");
        }
    }
    Ok(failures.is_empty())
}

/// What the faults that take data away have taken, to be given back.
#[derive(Default)]
struct Taken {
    /// A `find` folder deleted in Vault.
    folder: Option<usize>,
    /// `soak/p<i>` whose latest version is soft-deleted.
    versions: Vec<usize>,
    /// A store pointed at the empty mount.
    store: Option<usize>,
}

impl Taken {
    /// Each restore syncs what it affects at once: an ExternalSecret backing off after the
    /// errors the fault caused would otherwise wait out its backoff.
    async fn restore_folder(
        &mut self,
        vault: &vault_emulator::VaultEmulator,
        client: &kube::Client,
    ) -> anyhow::Result<()> {
        if let Some(j) = self.folder.take() {
            put_find_folder(vault, j)?;
            force_sync(client, &format!("find-{j}"), &ns_of(j)).await;
        }
        Ok(())
    }

    /// A new version with a new value for each soft-deleted secret.
    async fn restore_versions(
        &mut self,
        vault: &vault_emulator::VaultEmulator,
        client: &kube::Client,
        expected: &Expected,
        round: u64,
    ) -> anyhow::Result<()> {
        for i in std::mem::take(&mut self.versions) {
            let value = format!("r{round}-{i}");
            vault.kv2_put("secret", &format!("soak/p{i}"), json!({"value": value}))?;
            expected.lock().unwrap()[i] = value;
            force_sync(client, &format!("es-{i}"), &ns_of(i)).await;
        }
        Ok(())
    }

    async fn restore_store(&mut self, client: &kube::Client) -> anyhow::Result<()> {
        if let Some(k) = self.store.take() {
            point_store(client, k, "secret").await?;
        }
        Ok(())
    }
}

/// Points ClusterSecretStore `store-<k>` at `mount`; retried, since API faults may be injected.
async fn point_store(client: &kube::Client, k: usize, mount: &str) -> anyhow::Result<()> {
    use kube::api::{Patch, PatchParams};
    let api: Api<vaultgate::api::ClusterSecretStore> = Api::all(client.clone());
    let patch = json!({"spec": {"provider": {"vault": {"path": mount}}}});
    let mut last = None;
    for _ in 0..20 {
        match api
            .patch(
                &format!("store-{k}"),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("could not point store-{k} at {mount}: {last:?}")
}

/// ESO's `force-sync` annotation: the ExternalSecret syncs now rather than at its next refresh,
/// so that a fault is met while it lasts. Best effort (API faults may refuse it).
async fn force_sync(client: &kube::Client, name: &str, ns: &str) {
    use kube::api::{Patch, PatchParams};
    static STAMP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let stamp = STAMP.fetch_add(1, Ordering::Relaxed).to_string();
    let patch = json!({"metadata": {"annotations": {"force-sync": stamp}}});
    let _ = Api::<ExternalSecret>::namespaced(client.clone(), ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await;
}
