//! `make bench`: the webhook against a bare axum + rustls baseline (`vaultgate-baseline`; load
//! from `oha`, a separate process), the sync of 1k/5k/10k ExternalSecrets against the floor of
//! the API writes they need, Vault load, memory and start-up time, new ExternalSecrets idle and
//! under refresh load (`bench/fresh.rs`), and a cold burst of applies through the webhooks
//! (`bench/burst.rs`).
//! Figures go to `target/bench/results.json`.
//!
//! vaultgate always runs as its own process (the release `vaultgate` binary next to this one),
//! so its memory is its own; the emulators run in this process.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use vaultgate::api::{ExternalSecret, PushSecret};
use vaultgate_sandbox::cpus;
use vaultgate_sandbox::process::{
    Emulators, Proc, approle_load_manifests, cpu_seconds, output_with_cpu, peak_rss_mib,
    sibling_binary, spawn_vaultgate, vaultgate_binary, wait_ready,
};
use vaultgate_sandbox::{free_local_addr, repo_root};

/// The emulators hold every object of a sync (at 100k, with their Secrets and watch history,
/// some hundreds of megabytes): on glibc's malloc their cost per object grew by two thirds
/// from 10k to 100k, on fragmented free lists, and the sync's figures were theirs.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "bench/burst.rs"]
mod bench_burst;
#[path = "bench/ces.rs"]
mod bench_ces;
#[path = "bench/fresh.rs"]
mod bench_fresh;

const STORES: usize = 10;
const NAMESPACES: usize = 100;
const PATHS: usize = 1000;

/// How a sync benchmark's ExternalSecrets spread: up to 10,000 over 10 stores, 100 namespaces
/// and 1,000 paths; from 100,000 on, over 100 stores, 1,000 namespaces and 10,000 paths.
#[derive(Clone, Copy)]
struct Shape {
    stores: usize,
    namespaces: usize,
    paths: usize,
}

impl Shape {
    fn of(n: usize) -> Shape {
        if n >= 100_000 {
            Shape {
                stores: 100,
                namespaces: 1000,
                paths: 10_000,
            }
        } else {
            Shape {
                stores: STORES,
                namespaces: NAMESPACES,
                paths: PATHS,
            }
        }
    }
}
/// Alternating baseline / validate / mutate runs at saturation.
const SATURATION_ROUNDS: usize = 15;
/// Alternating baseline / validate runs at a fixed rate.
const RATE_ROUNDS: usize = 3;
/// Their rate, requests/s, and connections.
const FIXED_RATE: f64 = 1000.0;
const RATE_CONNECTIONS: usize = 16;

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    vaultgate::run::install_crypto();
    runtime.block_on(all())
}

async fn all() -> anyhow::Result<()> {
    let bin = vaultgate_binary()?;
    let oha =
        which("oha").context("the load generator `oha` is needed: cargo install oha --locked")?;
    let out_dir = repo_root().join("target/bench");
    std::fs::create_dir_all(&out_dir)?;
    let work = tempdir(&out_dir.join("work"))?;
    let mut results: BTreeMap<String, f64> = BTreeMap::new();
    // `BENCH_COMPARE=PATH`: another vaultgate build, measured beside this one in the same
    // webhook rounds and again in each sync round, right after this one's.
    let compare = std::env::var_os("BENCH_COMPARE").map(PathBuf::from);

    let sizes: Vec<usize> = std::env::var("BENCH_SYNC_SIZES")
        .unwrap_or_else(|_| "1000,5000,10000".into())
        .split(',')
        .map(str::trim)
        // Empty: the webhook figures only.
        .filter(|s| !s.is_empty())
        .map(|s| s.parse())
        .collect::<Result<_, _>>()
        .context("BENCH_SYNC_SIZES")?;
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);

    // `BENCH_WEBHOOK=0`: the sync figures only.
    if std::env::var("BENCH_WEBHOOK").as_deref() != Ok("0") {
        eprintln!("== start-up and webhook");
        webhook_benchmarks(&bin, &oha, &work, seconds, compare.as_deref(), &mut results).await?;
    }
    // `BENCH_SYNC_ROUNDS`: rounds of each sync size (default 7; see `sync_figures`).
    let rounds: usize = std::env::var("BENCH_SYNC_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|r| *r > 0)
        .unwrap_or(7);
    // The sizes take turns, round by round (1k, 5k, 10k, 1k, …): a machine that slows down
    // mid-run weighs on every size alike, and growth compares rounds run next to each other.
    // With `BENCH_COMPARE`, the other build's sync figures are given again prefixed `compare_`.
    let builds: Vec<(&Path, &str)> = std::iter::once((bin.as_path(), ""))
        .chain(compare.as_deref().map(|c| (c, "compare_")))
        .collect();
    let mut by_size: Vec<(usize, Vec<Vec<SyncRound>>)> = sizes
        .iter()
        .map(|&n| (n, builds.iter().map(|_| Vec::new()).collect()))
        .collect();
    for round in 1..=rounds {
        for (n, all) in &mut by_size {
            for ((build, prefix), rounds_of_build) in builds.iter().zip(all.iter_mut()) {
                eprintln!("== {prefix}sync of {n} ExternalSecrets, round {round} of {rounds}");
                let r = sync_round(build, &work, *n, round).await?;
                log_round(&r);
                rounds_of_build.push(r);
            }
        }
    }
    for (i, (_, prefix)) in builds.iter().enumerate() {
        let mut figures = BTreeMap::new();
        for (n, all) in &by_size {
            sync_figures(*n, &all[i], &mut figures);
        }
        let of = |n: usize| {
            by_size
                .iter()
                .find(|(m, _)| *m == n)
                .map(|(_, all)| &all[i])
        };
        if let (Some(r10), Some(r100)) = (of(10_000), of(100_000)) {
            growth_figures(r10, r100, &mut figures);
        }
        results.extend(
            figures
                .into_iter()
                .map(|(k, v)| (format!("{prefix}{k}"), v)),
        );
    }
    // `BENCH_PUSH=0`: without the PushSecret figure.
    if std::env::var("BENCH_PUSH").as_deref() != Ok("0") {
        eprintln!("== push of {PUSHES} PushSecrets");
        push_benchmark(&bin, &work, &mut results).await?;
    }
    // `BENCH_CES=0`: without the ClusterExternalSecret figures.
    if std::env::var("BENCH_CES").as_deref() != Ok("0") {
        // `BENCH_CES_ROUNDS`: rounds (default 3), each on fresh emulators.
        let rounds: usize = std::env::var("BENCH_CES_ROUNDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|r| *r > 0)
            .unwrap_or(3);
        eprintln!("== a ClusterExternalSecret over 1,000 namespaces, {rounds} rounds");
        bench_ces::ces_benchmark(&bin, &work, 1000, rounds, &mut results).await?;
    }
    // `BENCH_FRESH=0`: without the fresh-under-refresh and quiet-refresh figures.
    if std::env::var("BENCH_FRESH").as_deref() != Ok("0") {
        // `BENCH_FRESH_SCALE`: a fraction of 10,000 refreshing and 500 new (a smoke run: 0.1).
        let scale: f64 = std::env::var("BENCH_FRESH_SCALE")
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|s: &f64| *s > 0.0)
            .unwrap_or(1.0);
        let load = ((10_000.0 * scale) as usize).max(10);
        let fresh = ((500.0 * scale) as usize).max(10);
        // `BENCH_FRESH_INTERVAL`: the load's refresh interval in seconds (default 5).
        let every: u64 = std::env::var("BENCH_FRESH_INTERVAL")
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|s| *s > 0)
            .unwrap_or(5);
        eprintln!(
            "== {fresh} new ExternalSecrets, idle and under {load} refreshing every {every} s"
        );
        let every = Duration::from_secs(every);
        bench_fresh::fresh_benchmark(&bin, &work, load, fresh, every, &mut results).await?;
    }
    // `BENCH_BURST=0`: without the cold admission burst.
    if std::env::var("BENCH_BURST").as_deref() != Ok("0") {
        // `BENCH_BURST_SCALE`: a fraction of the 1,000 ExternalSecrets; `BENCH_BURST_CLIENTS`:
        // how many create at once (default 32).
        let scale: f64 = std::env::var("BENCH_BURST_SCALE")
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|s: &f64| *s > 0.0)
            .unwrap_or(1.0);
        let n = ((bench_burst::BURST as f64 * scale) as usize).max(10);
        let clients: usize = std::env::var("BENCH_BURST_CLIENTS")
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|c| *c > 0)
            .unwrap_or(bench_burst::CLIENTS);
        // `BENCH_BURST_ROUNDS`: rounds (default 3), each on fresh emulators.
        let rounds: usize = std::env::var("BENCH_BURST_ROUNDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|r| *r > 0)
            .unwrap_or(3);
        eprintln!(
            "== a cold burst of {n} ExternalSecrets through the webhooks, {clients} clients, {rounds} rounds"
        );
        bench_burst::burst_benchmark(&bin, &work, n, clients, rounds, &mut results).await?;
    }
    let json = serde_json::to_string_pretty(&results)?;
    std::fs::write(out_dir.join("results.json"), &json)?;
    println!("{:<32} {:>14}", "figure", "value");
    for (k, v) in &results {
        println!("{k:<32} {v:>14.3}");
    }
    println!("\nwritten to {}", out_dir.join("results.json").display());
    Ok(())
}

/// vaultgate with the benchmark's log level (`BENCH_LOG_LEVEL`, default `warn`), its log on
/// this process's stderr.
fn spawn(bin: &Path, env: &Emulators, args: &[&str], metrics: SocketAddr) -> anyhow::Result<Proc> {
    spawn_on(None, bin, env, args, metrics)
}

/// [`spawn`], on `cpus` only.
fn spawn_on(
    cpus: Option<&[usize]>,
    bin: &Path,
    env: &Emulators,
    args: &[&str],
    metrics: SocketAddr,
) -> anyhow::Result<Proc> {
    let level = std::env::var("BENCH_LOG_LEVEL").unwrap_or_else(|_| "warn".into());
    spawn_vaultgate(
        cpus,
        bin,
        env,
        args,
        metrics,
        &[("VAULTGATE_LOG_LEVEL", level.as_str())],
        Stdio::inherit(),
    )
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

fn tempdir(base: &Path) -> anyhow::Result<PathBuf> {
    let _ = std::fs::remove_dir_all(base);
    std::fs::create_dir_all(base)?;
    Ok(base.to_path_buf())
}

// ---------------------------------------------------------------------------------------------
// Webhook

async fn webhook_benchmarks(
    bin: &Path,
    oha: &Path,
    work: &Path,
    seconds: u64,
    compare: Option<&Path>,
    results: &mut BTreeMap<String, f64>,
) -> anyhow::Result<()> {
    let env = Emulators::start(work, "webhook").await?;
    let bundle = vaultgate::certs::generate(
        &["127.0.0.1".into(), "localhost".into()],
        Duration::from_secs(86400),
    )?;
    let certs = work.join("certs");
    vaultgate::certs::write_dir(&bundle, &certs)?;
    let (cert, key) = (certs.join("tls.crt"), certs.join("tls.key"));

    // A store and a secret for the live checks to find.
    env.vault
        .kv2_put("secret", "bench/app", json!({"password": "bench-value"}))?;
    env.vault.put_policy(
        "bench",
        "path \"secret/*\" { capabilities = [\"read\", \"list\"] }",
    )?;
    let token = env
        .vault
        .create_token(&["bench"], Some(Duration::from_secs(86400)));
    let client = env.kube.client().await;
    vaultgate_sandbox::apply_all(
        &client,
        &format!(
            r#"
apiVersion: v1
kind: Namespace
metadata: {{name: bench}}
---
apiVersion: v1
kind: Secret
metadata: {{name: vault-token, namespace: bench}}
stringData: {{token: "{token}"}}
---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {{name: vault, namespace: bench}}
spec:
  provider:
    vault: {{server: "{server}", path: secret, version: v2, auth: {{tokenSecretRef: {{name: vault-token, key: token}}}}}}
"#,
            server = env.vault.addr()
        ),
    )
    .await?;

    // Start-up: process start to /readyz, the median of five.
    let mut startups = vec![];
    for _ in 0..5 {
        let (webhook, metrics) = (free_local_addr(), free_local_addr());
        let start = Instant::now();
        let p = spawn(
            bin,
            &env,
            &[
                "--tls-cert",
                path(&cert),
                "--tls-key",
                path(&key),
                "--webhook-addr",
                &webhook.to_string(),
            ],
            metrics,
        )?;
        wait_ready(metrics, Duration::from_secs(20)).await?;
        startups.push(start.elapsed().as_secs_f64() * 1000.0);
        p.terminate();
    }
    results.insert("startup_ready_ms".into(), median(startups));

    let body = work.join("review.json");
    std::fs::write(&body, serde_json::to_vec(&review())?)?;
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(
            bundle.ca_cert_pem.as_bytes(),
        )?)
        .build()?;
    let servers = Servers {
        bin,
        compare,
        env: &env,
        cert: &cert,
        key: &key,
        http: &http,
    };

    let sat = |url: String, secs: u64| {
        vec![
            "-z".to_string(),
            format!("{secs}s"),
            "-c".into(),
            "64".into(),
            url,
        ]
    };
    // Vault requests made while under load (not in warming up each process's cache).
    let (mut logins, mut reads) = (0, 0);
    // Saturation in short alternating rounds, each ratio taken between neighbouring runs and
    // the median reported: a busy moment on this shared machine then skews a round or two, not
    // the figure. The order turns round every other round, so that neither side always runs
    // right after the other's load. Each round has processes of its own, started for it: one
    // process of either server could be slower than another all along (in one run the
    // webhook's CPU per request was 20-24 µs in all nine rounds, 16-21 in the runs around it,
    // while the baseline's was not), and a single pair would carry that into every round.
    let round_secs = (seconds / 5).max(1);
    let mut rounds = Vec::new();
    let mut compared = Vec::new();
    for round in 1..=SATURATION_ROUNDS {
        let up = servers.start().await?;
        let run = |url: &String, pid: u32| run_oha(oha, &body, pid, sat(url.clone(), round_secs));
        // The other build, on either side of this build's validate run in turn.
        let compare = || -> anyhow::Result<Option<Load>> {
            up.other
                .as_ref()
                .map(|(p, url)| run(url, p.pid()))
                .transpose()
        };
        let (vg, baseline) = (up.vg.pid(), up.baseline.pid());
        let (b, v, m, c) = if round % 2 == 1 {
            let b = run(&up.baseline_url, baseline)?;
            let v = run(&up.validate_url, vg)?;
            let c = compare()?;
            (b, v, run(&up.mutate_url, vg)?, c)
        } else {
            let m = run(&up.mutate_url, vg)?;
            let c = compare()?;
            let v = run(&up.validate_url, vg)?;
            (run(&up.baseline_url, baseline)?, v, m, c)
        };
        let (l, r) = servers.stop(up);
        (logins, reads) = (logins + l, reads + r);
        if let Some(c) = c {
            eprintln!(
                "   round {round}: the other build {:.0}/s, this one {:.0}/s ({:.3}); server CPU per request {:.1} / {:.1} µs",
                c.rps,
                v.rps,
                v.rps / c.rps,
                c.server_cpu_us,
                v.server_cpu_us,
            );
            compared.push((v.rps / c.rps, v.server_cpu_us / c.server_cpu_us, c));
        }
        eprintln!(
            "   round {round}: baseline {:.0}/s, validate {:.0}/s ({:.3}), mutate {:.0}/s ({:.3}); server CPU per request {:.1} / {:.1} / {:.1} µs, oha's {:.1} / {:.1} / {:.1} µs",
            b.rps,
            v.rps,
            v.rps / b.rps,
            m.rps,
            m.rps / b.rps,
            b.server_cpu_us,
            v.server_cpu_us,
            m.server_cpu_us,
            b.client_cpu_us,
            v.client_cpu_us,
            m.client_cpu_us,
        );
        rounds.push((b, v, m));
    }
    // Latency at a fixed rate, in alternating rounds as well: a stall of the machine (which shows
    // in the baseline's p99 as much as in the webhook's) then spoils a round, not the figure.
    // Three rounds of each, half of `seconds` each (5,000 requests at the default, so the p99 is
    // the 50th slowest), on one pair of processes.
    let rate_secs = (seconds / 2).max(1);
    let up = servers.start().await?;
    let mut latency = Vec::new();
    for round in 1..=RATE_ROUNDS {
        let run = |url: &str, pid: u32| run_oha_rate(oha, &body, pid, url, rate_secs);
        let (b, v) = if round % 2 == 1 {
            let b = run(&up.baseline_url, up.baseline.pid())?;
            (b, run(&up.validate_url, up.vg.pid())?)
        } else {
            let v = run(&up.validate_url, up.vg.pid())?;
            (run(&up.baseline_url, up.baseline.pid())?, v)
        };
        eprintln!(
            "   at 1,000 requests/s, round {round}: p50 / p99 baseline {:.3} / {:.3} ms, validate {:.3} / {:.3} ms",
            b.p50_ms, b.p99_ms, v.p50_ms, v.p99_ms
        );
        latency.push((b, v));
    }
    let (l, r) = servers.stop(up);
    (logins, reads) = (logins + l, reads + r);
    type Figure = fn(&(Load, Load, Load)) -> f64;
    let per_round: [(&str, Figure); 11] = [
        ("baseline_tls_rps", |r| r.0.rps),
        ("webhook_validate_rps", |r| r.1.rps),
        ("webhook_mutate_rps", |r| r.2.rps),
        ("webhook_vs_baseline", |r| r.1.rps / r.0.rps),
        ("webhook_mutate_vs_baseline", |r| r.2.rps / r.0.rps),
        ("baseline_cpu_us_per_request", |r| r.0.server_cpu_us),
        ("webhook_validate_cpu_us_per_request", |r| r.1.server_cpu_us),
        ("webhook_mutate_cpu_us_per_request", |r| r.2.server_cpu_us),
        ("baseline_client_cpu_us_per_request", |r| r.0.client_cpu_us),
        ("webhook_validate_client_cpu_us_per_request", |r| {
            r.1.client_cpu_us
        }),
        ("webhook_validate_cpu_vs_baseline", |r| {
            r.1.server_cpu_us / r.0.server_cpu_us
        }),
    ];
    for (key, figure) in per_round {
        results.insert(key.into(), median(rounds.iter().map(figure).collect()));
    }
    if !compared.is_empty() {
        results.insert(
            "compare_validate_rps_ratio".into(),
            median(compared.iter().map(|c| c.0).collect()),
        );
        results.insert(
            "compare_validate_cpu_ratio".into(),
            median(compared.iter().map(|c| c.1).collect()),
        );
    }
    type Latency = fn(&(Load, Load)) -> f64;
    let latencies: [(&str, Latency); 4] = [
        ("webhook_validate_p50_ms", |r| r.1.p50_ms),
        ("webhook_validate_p99_ms", |r| r.1.p99_ms),
        ("baseline_p50_ms", |r| r.0.p50_ms),
        ("baseline_p99_ms", |r| r.0.p99_ms),
    ];
    for (key, figure) in latencies {
        results.insert(key.into(), median(latency.iter().map(figure).collect()));
    }
    results.insert(
        "webhook_validate_p99_max_ms".into(),
        latency.iter().map(|r| r.1.p99_ms).fold(f64::NAN, f64::max),
    );
    results.insert("webhook_vault_logins".into(), logins as f64);
    results.insert("webhook_vault_reads".into(), reads as f64);
    let saturated = rounds
        .iter()
        .flat_map(|(b, v, m)| [("baseline", b), ("validate", v), ("mutate", m)]);
    let fixed_rate = latency
        .iter()
        .flat_map(|(b, v)| [("baseline@1000", b), ("validate@1000", v)]);
    let other_runs = compared
        .iter()
        .map(|c| ("validate (the other build)", &c.2));
    for (name, r) in saturated.chain(fixed_rate).chain(other_runs) {
        if r.success_rate < 0.999 {
            bail!(
                "{name}: only {:.2}% of requests succeeded",
                r.success_rate * 100.0
            );
        }
    }
    Ok(())
}

/// What a round of the webhook benchmark serves from: vaultgate, the baseline and (with
/// `BENCH_COMPARE`) another vaultgate build.
struct Servers<'a> {
    bin: &'a Path,
    compare: Option<&'a Path>,
    env: &'a Emulators,
    cert: &'a Path,
    key: &'a Path,
    http: &'a reqwest::Client,
}

/// A round's processes, started and ready: each vaultgate has admitted the benchmark's review
/// once (its live-check cache is warm), the baseline has answered.
struct Up {
    /// The Vault emulator's login and KV read counts once they were ready.
    vault_before: (usize, usize),
    vg: Proc,
    baseline: Proc,
    other: Option<(Proc, String)>,
    baseline_url: String,
    validate_url: String,
    mutate_url: String,
}

impl Servers<'_> {
    async fn start(&self) -> anyhow::Result<Up> {
        let (vg, webhook) = webhook_process(self.bin, self.env, self.cert, self.key).await?;
        let other = match self.compare {
            None => None,
            Some(bin) => {
                let (p, addr) = webhook_process(bin, self.env, self.cert, self.key).await?;
                Some((p, format!("https://{addr}/validate")))
            }
        };
        let baseline_addr = free_local_addr();
        let baseline = Proc(
            Command::new(sibling_binary("vaultgate-baseline")?)
                .args([&baseline_addr.to_string(), path(self.cert), path(self.key)])
                .stdout(Stdio::null())
                .spawn()?,
        );
        let validate_url = format!("https://{webhook}/validate");
        // Warm the live-check cache, and make sure the request is valid and admitted as is.
        let urls = std::iter::once(&validate_url).chain(other.as_ref().map(|(_, url)| url));
        for url in urls {
            let resp: Value = self
                .http
                .post(url)
                .json(&review())
                .send()
                .await?
                .json()
                .await?;
            if resp["response"]["allowed"] != true
                || resp["response"]["warnings"]
                    .as_array()
                    .is_some_and(|w| !w.is_empty())
            {
                bail!("the benchmark's ExternalSecret is not admitted cleanly: {resp}");
            }
        }
        wait_http(self.http, baseline_addr).await?;
        Ok(Up {
            vault_before: (
                self.env.vault.count_logins(),
                self.env.vault.count_kv_reads(),
            ),
            vg,
            baseline,
            other,
            baseline_url: format!("https://{baseline_addr}/validate"),
            validate_url,
            mutate_url: format!("https://{webhook}/mutate"),
        })
    }

    /// Stops a round's processes: the Vault logins and KV reads made since they were ready.
    fn stop(&self, up: Up) -> (usize, usize) {
        let (logins, reads) = up.vault_before;
        let made = (
            self.env.vault.count_logins() - logins,
            self.env.vault.count_kv_reads() - reads,
        );
        up.vg.terminate();
        if let Some((p, _)) = up.other {
            p.terminate();
        }
        drop(up.baseline);
        made
    }
}

/// vaultgate's webhook alone, live checks enforced, ready: the process and its address.
async fn webhook_process(
    bin: &Path,
    env: &Emulators,
    cert: &Path,
    key: &Path,
) -> anyhow::Result<(Proc, SocketAddr)> {
    let (addr, metrics) = (free_local_addr(), free_local_addr());
    let p = spawn(
        bin,
        env,
        &[
            "--webhook-only",
            "--tls-cert",
            path(cert),
            "--tls-key",
            path(key),
            "--webhook-addr",
            &addr.to_string(),
            "--admission-live",
            "enforce",
        ],
        metrics,
    )?;
    wait_ready(metrics, Duration::from_secs(20)).await?;
    Ok((p, addr))
}

/// Creates `n` ExternalSecrets `{prefix}-{i}` across the namespaces and stores, 64 at a time;
/// how long that took.
async fn create_external_secrets(
    client: &kube::Client,
    n: usize,
    prefix: &str,
    shape: Shape,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            async move {
                let es: ExternalSecret = serde_json::from_value(json!({
                    "apiVersion": "external-secrets.io/v1",
                    "kind": "ExternalSecret",
                    "metadata": {"name": format!("{prefix}-{i}"), "namespace": format!("ns-{}", i % shape.namespaces)},
                    "spec": {
                        "refreshInterval": "1h",
                        "secretStoreRef": {"kind": "ClusterSecretStore", "name": format!("store-{}", i % shape.stores)},
                        "target": {"name": format!("{prefix}-{i}")},
                        "data": [{"secretKey": "value", "remoteRef": {"key": format!("bench/p{}", i % shape.paths), "property": "value"}}]
                    }
                }))?;
                Api::<ExternalSecret>::namespaced(client, &format!("ns-{}", i % shape.namespaces))
                    .create(&PostParams::default(), &es)
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(64)
        .try_collect::<()>()
        .await?;
    Ok(start.elapsed())
}

/// The middle value (the upper middle of an even number).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// A CREATE of a valid ExternalSecret, complete (so /mutate has nothing to add but still parses
/// and checks it) and valid (so /validate runs every rule and the cached live checks).
fn review() -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0b4f8f34-0000-4000-8000-000000000001",
            "kind": {"group": "external-secrets.io", "version": "v1", "kind": "ExternalSecret"},
            "resource": {"group": "external-secrets.io", "version": "v1", "resource": "externalsecrets"},
            "requestKind": {"group": "external-secrets.io", "version": "v1", "kind": "ExternalSecret"},
            "requestResource": {"group": "external-secrets.io", "version": "v1", "resource": "externalsecrets"},
            "name": "app",
            "namespace": "bench",
            "operation": "CREATE",
            "userInfo": {"username": "admin", "groups": ["system:masters"]},
            "object": {
                "apiVersion": "external-secrets.io/v1",
                "kind": "ExternalSecret",
                "metadata": {"name": "app", "namespace": "bench"},
                "spec": {
                    "refreshInterval": "1h0m0s",
                    "refreshPolicy": "Periodic",
                    "secretStoreRef": {"name": "vault", "kind": "SecretStore"},
                    "target": {"name": "app", "creationPolicy": "Owner", "deletionPolicy": "Retain"},
                    "data": [{"secretKey": "password", "remoteRef": {"key": "bench/app", "property": "password"}}]
                }
            },
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    })
}

/// Waits for the baseline (serving the same certificate as the webhook) to answer.
async fn wait_http(http: &reqwest::Client, addr: SocketAddr) -> anyhow::Result<()> {
    let start = Instant::now();
    while http
        .post(format!("https://{addr}/validate"))
        .body("{}")
        .send()
        .await
        .is_err()
    {
        if start.elapsed() > Duration::from_secs(10) {
            bail!("baseline server not up");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

struct Load {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    success_rate: f64,
    /// CPU time of the server under load per request answered: unlike the rate, which the
    /// load generator's share of the two cores moves too, this is the server's own cost.
    server_cpu_us: f64,
    /// The same for the load generator: its cost per request is not fixed either (a slower
    /// answer gives it fewer responses to collect per wake-up).
    client_cpu_us: f64,
}

/// `oha` POSTing the review with `args`, answering in `format`.
fn oha_command(oha: &Path, body: &Path, format: &str, args: &[String]) -> Command {
    let mut c = Command::new(oha);
    c.args([
        "--no-tui",
        "--insecure",
        "--output-format",
        format,
        "-m",
        "POST",
        "-T",
        "application/json",
        "-D",
    ])
    .arg(body)
    .args(args);
    c
}

/// Runs `oha` with `args`, answering in `format`: its output, and the CPU seconds the server and
/// `oha` spent meanwhile.
fn oha_output(
    oha: &Path,
    body: &Path,
    server: u32,
    format: &str,
    args: &[String],
) -> anyhow::Result<(Vec<u8>, f64, f64)> {
    let cpu_before = cpu_seconds(server)?;
    let (out, client_cpu) = output_with_cpu(&mut oha_command(oha, body, format, args))?;
    if !out.status.success() {
        bail!("oha {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let cpu = cpu_seconds(server)? - cpu_before;
    Ok((out.stdout, cpu, client_cpu))
}

fn run_oha(oha: &Path, body: &Path, server: u32, args: Vec<String>) -> anyhow::Result<Load> {
    let (stdout, cpu, client_cpu) = oha_output(oha, body, server, "json", &args)?;
    let v: Value = serde_json::from_slice(&stdout).context("oha JSON output")?;
    let summary = &v["summary"];
    let p = &v["latencyPercentiles"];
    let answered: f64 = v["statusCodeDistribution"]
        .as_object()
        .map(|d| d.values().filter_map(Value::as_f64).sum())
        .unwrap_or(0.0);
    Ok(Load {
        server_cpu_us: cpu * 1e6 / answered.max(1.0),
        client_cpu_us: client_cpu * 1e6 / answered.max(1.0),
        rps: summary["requestsPerSec"]
            .as_f64()
            .context("requestsPerSec")?,
        success_rate: summary["successRate"].as_f64().unwrap_or(0.0),
        p50_ms: p["p50"].as_f64().unwrap_or(f64::NAN) * 1000.0,
        p99_ms: p["p99"].as_f64().unwrap_or(f64::NAN) * 1000.0,
    })
}

/// A fixed-rate run (`FIXED_RATE` requests/s for `secs` seconds), its latency read from oha's per-request
/// CSV without oha's own start: until each connection has answered its first request, requests
/// wait in oha for connections it is still opening (its first takes 40-70 ms here, setting up
/// its TLS client), and with latency correction all of them count that wait. It fell in the
/// first 0.08 s of every run, against either server, and was 1.3% of a 5-second run: the p99
/// measured oha's start-up, not the server. An API server's connections to a webhook stay open.
fn run_oha_rate(
    oha: &Path,
    body: &Path,
    server: u32,
    url: &str,
    secs: u64,
) -> anyhow::Result<Load> {
    let args = vec![
        "-z".to_string(),
        format!("{secs}s"),
        "-c".into(),
        RATE_CONNECTIONS.to_string(),
        "-q".into(),
        FIXED_RATE.to_string(),
        "--latency-correction".into(),
        url.to_string(),
    ];
    let (stdout, cpu, client_cpu) = oha_output(oha, body, server, "csv", &args)?;
    let text = String::from_utf8(stdout).context("oha CSV output")?;
    let requests = oha_csv(&text)?;
    // Requests that fail to connect are not in the CSV: a run that lost any is refused below
    // through its count.
    let ok = requests.iter().filter(|r| r.ok).count() as f64;
    let mut steady = steady_durations(&requests, RATE_CONNECTIONS);
    let (rate, secs) = (FIXED_RATE, secs as f64);
    if (steady.len() as f64) < 0.5 * rate * secs {
        bail!(
            "oha {args:?}: {} requests after its connections were open, of {}",
            steady.len(),
            requests.len()
        );
    }
    steady.sort_by(f64::total_cmp);
    let at = |q: f64| steady[((steady.len() as f64 * q) as usize).min(steady.len() - 1)] * 1000.0;
    Ok(Load {
        server_cpu_us: cpu * 1e6 / ok.max(1.0),
        client_cpu_us: client_cpu * 1e6 / ok.max(1.0),
        rps: ok / secs,
        // Counted against the requests the rate asked for, as connection failures leave no row.
        success_rate: (ok / (rate * secs)).min(1.0),
        p50_ms: at(0.50),
        p99_ms: at(0.99),
    })
}

/// The durations of the requests that started once the `connections` that oha opens at its
/// start (the first requests that dialed) had each answered its first request. A connection
/// opened later in the run (a server closing one) is the server's doing and counts as usual.
fn steady_durations(requests: &[OhaRequest], connections: usize) -> Vec<f64> {
    let mut dials: Vec<&OhaRequest> = requests.iter().filter(|r| r.dialed).collect();
    dials.sort_by(|a, b| a.start.total_cmp(&b.start));
    let warm = dials
        .iter()
        .take(connections)
        .map(|r| r.start + r.duration)
        .fold(0.0, f64::max);
    requests
        .iter()
        .filter(|r| r.start >= warm)
        .map(|r| r.duration)
        .collect()
}

/// One request of oha's CSV output.
#[derive(Debug, PartialEq)]
struct OhaRequest {
    /// Seconds from the run's start.
    start: f64,
    duration: f64,
    /// It opened a connection first.
    dialed: bool,
    ok: bool,
}

/// oha's CSV: `request-start,DNS,DNS+dialup,Response-delay,request-duration,bytes,status`,
/// times in seconds, the connection columns 0 for a request on an open connection.
fn oha_csv(text: &str) -> anyhow::Result<Vec<OhaRequest>> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    if header != "request-start,DNS,DNS+dialup,Response-delay,request-duration,bytes,status" {
        bail!("oha CSV: unexpected header {header:?}");
    }
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let num = |i: usize| -> anyhow::Result<f64> {
                f.get(i)
                    .context("too few columns")?
                    .parse()
                    .with_context(|| format!("column {i}"))
            };
            Ok(OhaRequest {
                start: num(0)?,
                dialed: num(2)? > 0.0,
                duration: num(4)?,
                ok: (200.0..300.0).contains(&num(6)?),
            })
        })
        .collect::<anyhow::Result<_>>()
        .with_context(|| "oha CSV row")
}

// ---------------------------------------------------------------------------------------------
// Sync

/// What one round of the sync benchmark measured.
struct SyncRound {
    /// Wall seconds: the sync, the creates within it, the floor, the creates with no controller.
    sync: f64,
    created: f64,
    floor: f64,
    alone: f64,
    /// CPU seconds: controller + benchmark process during the sync, the controller alone, the
    /// benchmark process during the floor.
    sync_cpu: f64,
    controller_cpu: f64,
    floor_cpu: f64,
    rss_mib: f64,
    logins: f64,
    reads: f64,
    requests_per_es: f64,
    /// The controller's API requests per ExternalSecret, by verb and resource.
    breakdown: String,
}

/// One round's figures, as it ends.
fn log_round(r: &SyncRound) {
    eprintln!(
        "   synced in {:.2}s (creates {:.2}s), floor {:.2}s, ratio {:.3}; the creates with no controller {:.2}s",
        r.sync,
        r.created,
        r.floor,
        r.floor / r.sync,
        r.alone
    );
    eprintln!(
        "   CPU seconds: sync {:.2} (controller {:.2}), floor {:.2}; peak RSS {:.1} MiB; API requests per ExternalSecret {:.2}: {}",
        r.sync_cpu, r.controller_cpu, r.floor_cpu, r.rss_mib, r.requests_per_es, r.breakdown
    );
}

/// The sync benchmark's figures at `n` ExternalSecrets from its rounds, each on fresh emulators,
/// each a sync followed by its floor on the same API server. On these shared machines the floor
/// alone has taken anywhere from 2.7 to 4.1 s at 10k within an hour: each ratio is taken within
/// its round, and the median round is reported (with the lowest and highest ratio). Memory and
/// Vault requests are the highest of the rounds, as a limit must hold in every one.
fn sync_figures(n: usize, all: &[SyncRound], results: &mut BTreeMap<String, f64>) {
    let tag = match n {
        10_000 => "10k".to_string(),
        n if n % 1000 == 0 => format!("{}k", n / 1000),
        n => n.to_string(),
    };
    let med = |f: fn(&SyncRound) -> f64| median(all.iter().map(f).collect());
    let max = |f: fn(&SyncRound) -> f64| all.iter().map(f).fold(f64::NAN, f64::max);
    let min = |f: fn(&SyncRound) -> f64| all.iter().map(f).fold(f64::NAN, f64::min);
    let ratio = |r: &SyncRound| r.floor / r.sync;
    let figures: [(String, f64); 15] = [
        (format!("sync_{tag}_seconds"), med(|r| r.sync)),
        (format!("sync_api_limit_{tag}_seconds"), med(|r| r.floor)),
        (format!("sync_vs_limit_{tag}"), med(ratio)),
        (format!("sync_vs_limit_min_{tag}"), min(ratio)),
        (format!("sync_vs_limit_max_{tag}"), max(ratio)),
        (
            format!("sync_creates_alone_{tag}_seconds"),
            med(|r| r.alone),
        ),
        (format!("sync_cpu_seconds_{tag}"), med(|r| r.sync_cpu)),
        (
            format!("controller_cpu_seconds_{tag}"),
            med(|r| r.controller_cpu),
        ),
        (
            format!("sync_api_limit_cpu_seconds_{tag}"),
            med(|r| r.floor_cpu),
        ),
        (
            format!("sync_api_requests_per_es_{tag}"),
            med(|r| r.requests_per_es),
        ),
        (format!("rss_mib_{tag}"), max(|r| r.rss_mib)),
        (format!("vault_logins_{tag}"), max(|r| r.logins)),
        (format!("vault_reads_{tag}"), max(|r| r.reads)),
        (format!("sync_rounds_{tag}"), all.len() as f64),
        (format!("sync_created_{tag}_seconds"), med(|r| r.created)),
    ];
    results.extend(figures);
    if n == 10_000 {
        results.insert("sync_api_limit_seconds".into(), med(|r| r.floor));
        results.insert("sync_vs_limit".into(), med(ratio));
    }
}

/// From 10k to 100k: memory per added ExternalSecret, and time and CPU per ExternalSecret at
/// 100k over 10k (1.0: linear growth), the median over pairs of neighbouring rounds.
fn growth_figures(r10: &[SyncRound], r100: &[SyncRound], results: &mut BTreeMap<String, f64>) {
    let slope = (results["rss_mib_100k"] - results["rss_mib_10k"]) * 1024.0 / 90_000.0;
    results.insert("rss_kib_per_es".into(), slope);
    let growth = |f: fn(&SyncRound) -> f64| {
        median(
            r10.iter()
                .zip(r100)
                .map(|(a, b)| f(b) / f(a) / 10.0)
                .collect(),
        )
    };
    results.insert("sync_time_growth_100k_vs_10k".into(), growth(|r| r.sync));
    results.insert(
        "controller_cpu_growth_100k_vs_10k".into(),
        growth(|r| r.controller_cpu),
    );
}

/// One round of the sync benchmark on fresh emulators.
async fn sync_round(bin: &Path, work: &Path, n: usize, round: usize) -> anyhow::Result<SyncRound> {
    // The controller on a CPU of its own, as deploy/ runs it (limited to half a CPU, its runtime
    // has one worker thread), and the API server with the rest of this process on the others,
    // as on machines of their own: on shared cores, each one's load was in the other's figures.
    let split = cpus::Split::start()?;
    if split.is_none() {
        eprintln!("   one CPU: the controller and the API server share it");
    }
    let env = Emulators::start(work, &format!("sync{n}-{round}")).await?;
    let client = env.kube.client().await;
    let shape = Shape::of(n);
    // Vault: a secret per path, one read-only token per store.
    env.vault.put_policy(
        "bench",
        "path \"secret/data/bench/*\" { capabilities = [\"read\"] }",
    )?;
    for p in 0..shape.paths {
        env.vault.kv2_put(
            "secret",
            &format!("bench/p{p}"),
            json!({"value": format!("value-{p}")}),
        )?;
    }
    let docs = approle_load_manifests(&env.vault, "bench", "bench", shape.stores, shape.namespaces)
        .await?;
    vaultgate_sandbox::apply_all(&client, &docs).await?;

    env.vault.reset_counters();
    env.kube.clear_audit();
    let metrics = free_local_addr();
    let vg = spawn_on(
        split.as_ref().map(cpus::Split::vaultgate),
        bin,
        &env,
        &["--controller-only"],
        metrics,
    )?;
    wait_ready(metrics, Duration::from_secs(20)).await?;
    // Counted from before the controller starts: its store checks log in too.

    let me = std::process::id();
    let cpu_before = (cpu_seconds(vg.pid())?, cpu_seconds(me)?);
    let start = Instant::now();
    create_external_secrets(&client, n, "es", shape).await?;
    let created = start.elapsed().as_secs_f64();
    // Done when every target Secret exists with its value, as the API server holds them: read
    // in its own memory every 10 ms, since a list of 10,000 Secrets through the API (and the
    // wait between lists) would add its own time and load to the figure.
    let deadline = Instant::now() + Duration::from_secs(600);
    let sync = loop {
        let managed = env
            .kube
            .object_count("secrets")
            .saturating_sub(shape.stores);
        if managed >= n {
            let stored = env.kube.objects("secrets");
            let at = start.elapsed();
            if all_correct(stored.iter().map(|s| s.as_ref()), n, shape) {
                break at.as_secs_f64();
            }
        }
        if Instant::now() > deadline {
            bail!("{n} ExternalSecrets not synced within 10 minutes ({managed} Secrets)");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // CPU time is steadier than wall time on a shared machine: both cores are busy throughout,
    // so the sync's cost shows as CPU seconds of the controller plus this process (the API
    // server and Vault emulators, and the creates); read before the check below, which is
    // not part of the sync.
    let controller_cpu = cpu_seconds(vg.pid())? - cpu_before.0;
    let sync_cpu = controller_cpu + cpu_seconds(me)? - cpu_before.1;
    // And through the API, as a client sees them (not timed).
    let listed = Api::<Secret>::all(client.clone())
        .list(&ListParams::default().labels("reconcile.external-secrets.io/managed=true"))
        .await?;
    let listed: Vec<Value> = listed
        .items
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()?;
    if !all_correct(listed.iter(), n, shape) {
        bail!("the API server's list of Secrets does not hold every ExternalSecret's value");
    }
    let rss_mib = peak_rss_mib(vg.pid())?;
    let logins = env.vault.count_logins() as f64;
    let reads = env.vault.count_kv_reads() as f64;
    vg.terminate();
    // What the controller asked of the API server per ExternalSecret, from the API server's
    // audit log (the benchmark's own creates left out): the floor makes two writes.
    let mut requests: BTreeMap<String, usize> = BTreeMap::new();
    for r in env.kube.audit() {
        if r.verb == "create" && r.resource == "externalsecrets" {
            continue;
        }
        let what = match r.subresource.as_str() {
            "" => format!("{} {}", r.verb, r.resource),
            sub => format!("{} {}/{sub}", r.verb, r.resource),
        };
        *requests.entry(what).or_default() += 1;
    }
    let total: usize = requests.values().sum();
    // Per ExternalSecret; lists and watches as counts: a watch that had to start again, or
    // list everything again, is few requests but much work.
    let count = |verb: &str| {
        let prefix = format!("{verb} ");
        requests
            .iter()
            .filter(|(what, _)| what.starts_with(&prefix))
            .map(|(_, c)| c)
            .sum::<usize>()
    };
    let breakdown = requests
        .iter()
        .filter(|(_, c)| **c * 100 >= n)
        .map(|(what, c)| format!("{what} {:.2}", *c as f64 / n as f64))
        .chain([format!(
            "lists ×{}, watches ×{}",
            count("list"),
            count("watch")
        )])
        .collect::<Vec<_>>()
        .join(", ");

    // The floor: the same number of minimal writes straight at the same API server.
    let floor_cpu_before = cpu_seconds(me)?;
    let start = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            async move {
                let ns = format!("ns-{}", i % shape.namespaces);
                let secret = json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": format!("floor-{i}"), "namespace": ns},
                    "data": {"value": "dmFsdWU="}
                });
                Api::<Secret>::namespaced(client.clone(), &ns)
                    .patch(
                        &format!("floor-{i}"),
                        &PatchParams::apply("floor").force(),
                        &Patch::Apply(&secret),
                    )
                    .await?;
                let status = json!({"status": {"refreshTime": "2026-01-01T00:00:00Z"}});
                Api::<ExternalSecret>::namespaced(client, &ns)
                    .patch_status(
                        &format!("es-{i}"),
                        &PatchParams::default(),
                        &Patch::Merge(&status),
                    )
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(256)
        .try_collect::<()>()
        .await?;
    let floor = start.elapsed().as_secs_f64();
    let floor_cpu = cpu_seconds(me)? - floor_cpu_before;
    // The same creates again with no controller running: how long creating the objects takes
    // by itself, which bounds the sync time from below.
    let alone = create_external_secrets(&client, n, "alone", shape)
        .await?
        .as_secs_f64();
    env.shutdown().await;
    Ok(SyncRound {
        sync,
        created,
        floor,
        alone,
        sync_cpu,
        controller_cpu,
        floor_cpu,
        rss_mib,
        logins,
        reads,
        requests_per_es: total as f64 / n as f64,
        breakdown,
    })
}

/// Every `es-i` Secret (of the managed ones) holds `value-(i % paths)`.
fn all_correct<'a>(secrets: impl Iterator<Item = &'a Value>, n: usize, shape: Shape) -> bool {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut ok = 0;
    for s in secrets {
        let managed = s["metadata"]["labels"]["reconcile.external-secrets.io/managed"] == "true";
        let Some(i) = s["metadata"]["name"]
            .as_str()
            .and_then(|name| name.strip_prefix("es-"))
            .and_then(|i| i.parse::<usize>().ok())
        else {
            continue;
        };
        let want = format!("value-{}", i % shape.paths);
        let value = s["data"]["value"].as_str().and_then(|v| b64.decode(v).ok());
        if managed && value.is_some_and(|v| v == want.as_bytes()) {
            ok += 1;
        }
    }
    ok >= n
}

/// PushSecrets in the push benchmark (one key each, over the STORES ClusterSecretStores).
const PUSHES: usize = 1000;

/// `push_1k_seconds`: from the first create of 1,000 PushSecrets until Vault has accepted every
/// data write; with the Vault writes it took (`push_1k_vault_data_writes`,
/// `push_1k_vault_metadata_writes`: at most one each per PushSecret).
async fn push_benchmark(
    bin: &Path,
    work: &Path,
    results: &mut BTreeMap<String, f64>,
) -> anyhow::Result<()> {
    let env = Emulators::start(work, "push1k").await?;
    let client = env.kube.client().await;
    env.vault.put_policy(
        "bench-push",
        "path \"secret/data/push/*\" { capabilities = [\"create\", \"read\", \"update\"] }\n\
         path \"secret/metadata/push/*\" { capabilities = [\"create\", \"read\", \"update\"] }",
    )?;
    let mut docs =
        approle_load_manifests(&env.vault, "push", "bench-push", STORES, NAMESPACES).await?;
    for ns in 0..NAMESPACES {
        docs.push_str(&format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: src, namespace: ns-{ns}}}\nstringData: {{value: value-{ns}}}\n"
        ));
    }
    vaultgate_sandbox::apply_all(&client, &docs).await?;
    let metrics = free_local_addr();
    let vg = spawn(bin, &env, &["--controller-only"], metrics)?;
    wait_ready(metrics, Duration::from_secs(20)).await?;
    env.vault.reset_counters();
    let start = Instant::now();
    futures::stream::iter(0..PUSHES)
        .map(|i| {
            let client = client.clone();
            async move {
                let ns = format!("ns-{}", i % NAMESPACES);
                let ps: PushSecret = serde_json::from_value(json!({
                    "apiVersion": "external-secrets.io/v1alpha1",
                    "kind": "PushSecret",
                    "metadata": {"name": format!("ps-{i}"), "namespace": ns},
                    "spec": {
                        "refreshInterval": "1h",
                        "secretStoreRefs": [{"kind": "ClusterSecretStore", "name": format!("store-{}", i % STORES)}],
                        "selector": {"secret": {"name": "src"}},
                        "data": [{"match": {"secretKey": "value", "remoteRef": {"remoteKey": format!("push/p{i}"), "property": "value"}}}]
                    }
                }))?;
                Api::<PushSecret>::namespaced(client, &ns)
                    .create(&PostParams::default(), &ps)
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(64)
        .try_collect::<()>()
        .await?;
    let is_write = |r: &vault_emulator::RequestRecord, prefix: &str| {
        matches!(r.method.as_str(), "POST" | "PUT")
            && r.path.starts_with(prefix)
            && (200..300).contains(&r.status)
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    let seconds = loop {
        let done = env
            .vault
            .requests()
            .iter()
            .filter(|r| is_write(r, "secret/data/push/"))
            .count();
        if done >= PUSHES {
            break start.elapsed().as_secs_f64();
        }
        if Instant::now() > deadline {
            bail!("{PUSHES} PushSecrets not pushed within 5 minutes ({done} written)");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // Settled: no further writes once everything is pushed (a no-op push writes nothing).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let requests = env.vault.requests();
    let data = requests
        .iter()
        .filter(|r| is_write(r, "secret/data/push/"))
        .count();
    let meta = requests
        .iter()
        .filter(|r| is_write(r, "secret/metadata/push/"))
        .count();
    vg.terminate();
    results.insert("push_1k_seconds".into(), seconds);
    results.insert("push_1k_vault_data_writes".into(), data as f64);
    results.insert("push_1k_vault_metadata_writes".into(), meta as f64);
    if data > PUSHES || meta > PUSHES {
        bail!(
            "{PUSHES} pushes took {data} data and {meta} metadata writes (at most {PUSHES} each)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "request-start,DNS,DNS+dialup,Response-delay,request-duration,bytes,status
0.000464474,0.000036536,0.069262078,0.072610165,0.072781225,146,200
0.001817682,0.000010474,0.070269952,0.071486628,0.071504311,146,200
0.06813502,0,0,0.005101087,0.005145996,146,200
0.080000000,0,0,0.000241867,0.000292341,146,200
0.090000000,0,0,0.000184444,0.000200008,146,503
";

    #[test]
    fn reads_oha_csv() {
        let r = oha_csv(CSV).unwrap();
        assert_eq!(r.len(), 5);
        assert_eq!(
            r[0],
            OhaRequest {
                start: 0.000464474,
                duration: 0.072781225,
                dialed: true,
                ok: true
            }
        );
        assert!(!r[2].dialed && r[2].ok);
        assert!(!r[4].ok);
        assert!(oha_csv("start,end\n1,2\n").is_err());
        assert!(oha_csv(&CSV.replace("0.080000000", "x")).is_err());
    }

    #[test]
    fn the_steady_state_starts_when_the_first_connections_have_answered() {
        let r = oha_csv(CSV).unwrap();
        // The two dialing requests end at 0.0732 and 0.0733; the one queued behind them, which
        // started at 0.068, is part of the start-up too.
        assert_eq!(steady_durations(&r, 2), [0.000292341, 0.000200008]);
        // With no connection opened (none reported), every request counts.
        let open: Vec<OhaRequest> = r.into_iter().filter(|q| !q.dialed).collect();
        assert_eq!(steady_durations(&open, 2).len(), 3);
        // A connection opened late in the run (the server closed one) does not push the start
        // of the steady state there: it and its wait count.
        let mut late = oha_csv(CSV).unwrap();
        late[4].dialed = true;
        late[4].duration = 0.004;
        assert_eq!(steady_durations(&late, 2), [0.000292341, 0.004]);
    }
}
