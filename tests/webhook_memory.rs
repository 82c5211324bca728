//! The whole `vaultgate run` process (webhook and reconciler) under the worst load the
//! webhook's limits admit, from clients that need no credential: as many connections as it
//! serves, each sending the largest reviews it reads, built to cost the most once parsed. Its
//! peak resident memory must stay under the Deployment's memory limit.

#[path = "support/process.rs"]
mod process;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kube_emulator::KubeEmulator;
use process::{Proc, free_addr};
use serde_json::{Value, json};
use vaultgate::admission::MAX_BODY;
use vaultgate::admission::budget::{MAX_VALUES, parsed_bound, values};
use vaultgate::admission::tls::MAX_CONNECTIONS;

/// The Deployment's memory limit (deploy/deployment.yaml).
const LIMIT_MIB: u64 = 256;

/// A field of `/proc/PID/status`, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

fn review(uid: usize, object: &Value, kind: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": format!("u-{uid}"), "operation": "CREATE", "namespace": "team-a",
            "kind": {"group": "external-secrets.io", "version": "v1", "kind": kind},
            "object": object, "oldObject": null,
        }
    }))
    .unwrap()
}

/// An object of `kind` padded to just under the body limit, with as many cheap-to-send,
/// costly-to-parse values in `list` (at `path` in the spec) as the budget reads.
fn costliest(kind: &str, spec: Value, path: &[&str], element: Value) -> Vec<u8> {
    let mut object = json!({
        "apiVersion": "external-secrets.io/v1", "kind": kind,
        "metadata": {"name": "x", "namespace": "team-a", "annotations": {"pad": ""}},
        "spec": spec,
    });
    let per = values(element.to_string().as_bytes()) + 1;
    let n = (MAX_VALUES - 1_000) / per;
    let mut at = &mut object["spec"];
    for p in path {
        at = &mut at[*p];
    }
    *at = Value::Array(vec![element; n]);
    let len = review(0, &object, kind).len();
    object["metadata"]["annotations"]["pad"] = json!("x".repeat(MAX_BODY - len - 64));
    let body = review(0, &object, kind);
    assert!(body.len() <= MAX_BODY);
    assert!(parsed_bound(body.len(), values(&body)) <= vaultgate::admission::budget::PARSED_BYTES);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_worst_load_the_limits_admit_stays_under_the_memory_limit() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = std::env::temp_dir().join(format!("vaultgate-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kube = KubeEmulator::start(Default::default()).await.unwrap();
    kube.apply_yaml(&vaultgate::crd::render_all().unwrap())
        .await
        .unwrap();
    kube.apply_yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: vaultgate-system}\n")
        .await
        .unwrap();
    let kubeconfig = dir.join("kubeconfig");
    kube.write_kubeconfig(&kubeconfig, &kube.admin_token())
        .unwrap();
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let bundle = vaultgate::certs::generate(&names, Duration::from_secs(3600)).unwrap();
    vaultgate::certs::write_dir(&bundle, &dir).unwrap();
    let (webhook, metrics) = (free_addr(), free_addr());
    let log = std::fs::File::create(dir.join("vaultgate.log")).unwrap();
    let vg = Proc(
        Command::new(env!("CARGO_BIN_EXE_vaultgate"))
            .arg("run")
            .args(["--webhook-addr", &webhook.to_string()])
            .args(["--metrics-addr", &metrics.to_string()])
            .args(["--tls-cert", dir.join("tls.crt").to_str().unwrap()])
            .args(["--tls-key", dir.join("tls.key").to_str().unwrap()])
            .args(["--admission-live", "warn", "--log-level", "warn"])
            .env("KUBECONFIG", &kubeconfig)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let pid = vg.0.id();
    let http = reqwest::Client::new();
    let start = Instant::now();
    while !http
        .get(format!("http://{metrics}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "vaultgate not ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let idle_kib = status_kib(pid, "VmRSS:");

    // Each shape the parse test found costliest per value, as large as a review can be.
    let store_spec = json!({"provider": {"vault": {"server": "https://vault:8200", "path": "secret",
        "auth": {"tokenSecretRef": {"name": "t", "key": "token"}}}}});
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        (
            "/validate",
            costliest(
                "ExternalSecret",
                json!({"secretStoreRef": {"name": "vault"}, "target": {"name": "x"}}),
                &["dataFrom"],
                json!({}),
            ),
        ),
        (
            "/validate",
            costliest(
                "ExternalSecret",
                json!({"secretStoreRef": {"name": "vault"}, "target": {"name": "x"}}),
                &["data"],
                json!({"secretKey": "", "remoteRef": {"key": ""}}),
            ),
        ),
        (
            "/validate",
            costliest(
                "ClusterSecretStore",
                store_spec.clone(),
                &["conditions"],
                json!({}),
            ),
        ),
        (
            "/mutate",
            costliest(
                "SecretStore",
                store_spec.clone(),
                &[
                    "provider",
                    "vault",
                    "auth",
                    "kubernetes",
                    "serviceAccountRef",
                    "audiences",
                ],
                json!(""),
            ),
        ),
    ];
    let bodies = Arc::new(bodies);

    // As many clients as connections are served, each sending in a loop for a while.
    let url = format!("https://127.0.0.1:{}", webhook.port());
    let ca = reqwest::Certificate::from_pem(bundle.ca_cert_pem.as_bytes()).unwrap();
    let (answered, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let until = Instant::now() + Duration::from_secs(8);
    let mut tasks = Vec::new();
    for c in 0..MAX_CONNECTIONS {
        let mut client = reqwest::Client::builder()
            .tls_certs_only([ca.clone()])
            .timeout(Duration::from_secs(30));
        if c % 2 == 0 {
            client = client.http1_only();
        }
        let client = client.build().unwrap();
        let (bodies, url) = (bodies.clone(), url.clone());
        let (answered, refused) = (answered.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = c;
            while Instant::now() < until {
                let (path, body) = &bodies[i % bodies.len()];
                i += 1;
                match client
                    .post(format!("{url}{path}"))
                    .body(body.clone())
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let mut peak_seen = 0;
    while tasks.iter().any(|t| !t.is_finished()) {
        peak_seen = peak_seen.max(status_kib(pid, "VmHWM:"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let peak_kib = status_kib(pid, "VmHWM:").max(peak_seen);
    let (answered, refused) = (
        answered.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    );
    eprintln!(
        "idle {} MiB, peak {} MiB under {MAX_CONNECTIONS} connections; {answered} reviews answered, {refused} not",
        idle_kib >> 10,
        peak_kib >> 10
    );
    assert!(
        answered >= bodies.len(),
        "the load was served: {answered} answered"
    );
    assert!(
        peak_kib < LIMIT_MIB << 10,
        "peak resident memory {} MiB, the limit is {LIMIT_MIB} MiB",
        peak_kib >> 10
    );
    // Still serving after it.
    let r = http
        .get(format!("http://{metrics}/readyz"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    drop(vg);
    kube.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
