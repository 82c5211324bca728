//! `ces_1k_namespaces_seconds`: one ClusterExternalSecret selecting 1,000 namespaces, applied at
//! once to a running controller; time until every namespace holds the target Secret with its
//! value (and the ClusterExternalSecret says Ready with all of them provisioned), and the Vault
//! reads it cost (one path: one read, as for any ExternalSecrets sharing it).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use futures::{StreamExt, TryStreamExt};
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use vaultgate::api::ClusterExternalSecret;
use vaultgate_sandbox::free_local_addr;
use vaultgate_sandbox::process::{Emulators, wait_ready};

use super::{median, spawn};

struct Round {
    seconds: f64,
    provisioned: f64,
    reads: f64,
}

pub async fn ces_benchmark(
    bin: &Path,
    work: &Path,
    namespaces: usize,
    rounds: usize,
    results: &mut BTreeMap<String, f64>,
) -> anyhow::Result<()> {
    let mut all = vec![];
    for round in 1..=rounds {
        let r = ces_round(bin, work, namespaces, round).await?;
        eprintln!(
            "   round {round}: {namespaces} namespaces provisioned in {:.2}s, every Secret in {:.2}s, {} Vault reads",
            r.provisioned, r.seconds, r.reads
        );
        all.push(r);
    }
    let tag = format!("{}k", namespaces / 1000);
    results.insert(
        format!("ces_{tag}_namespaces_seconds"),
        median(all.iter().map(|r| r.seconds).collect()),
    );
    results.insert(
        format!("ces_{tag}_provisioned_seconds"),
        median(all.iter().map(|r| r.provisioned).collect()),
    );
    results.insert(
        format!("ces_{tag}_vault_reads"),
        all.iter().map(|r| r.reads).fold(0.0, f64::max),
    );
    Ok(())
}

async fn ces_round(bin: &Path, work: &Path, n: usize, round: usize) -> anyhow::Result<Round> {
    let env = Emulators::start(work, &format!("ces{n}-{round}")).await?;
    let client = env.kube.client().await;
    env.vault.put_policy(
        "bench",
        "path \"secret/data/bench/*\" { capabilities = [\"read\"] }",
    )?;
    env.vault
        .kv2_put("secret", "bench/pull", json!({"value": "pulled"}))?;
    let token = env.vault.create_token(&["bench"], None);
    vaultgate_sandbox::apply_all(
        &client,
        &format!(
            r#"---
apiVersion: v1
kind: Secret
metadata: {{name: bench-token, namespace: vaultgate-system}}
stringData: {{token: "{token}"}}
---
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata: {{name: shared}}
spec:
  provider:
    vault:
      server: "{server}"
      path: secret
      version: v2
      auth:
        tokenSecretRef: {{name: bench-token, namespace: vaultgate-system, key: token}}
"#,
            server = env.vault.addr()
        ),
    )
    .await?;
    futures::stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            async move {
                let ns = serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": format!("fan-{i}"), "labels": {"pull": "yes"}}
                }))?;
                Api::<k8s_openapi::api::core::v1::Namespace>::all(client)
                    .create(&PostParams::default(), &ns)
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(64)
        .try_collect::<()>()
        .await?;

    let metrics = free_local_addr();
    let vg = spawn(bin, &env, &["--controller-only"], metrics)?;
    wait_ready(metrics, Duration::from_secs(20)).await?;
    env.vault.reset_counters();
    let ces: ClusterExternalSecret = serde_json::from_value(json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ClusterExternalSecret",
        "metadata": {"name": "fan"},
        "spec": {
            "namespaceSelectors": [{"matchLabels": {"pull": "yes"}}],
            "externalSecretSpec": {
                "refreshInterval": "1h",
                "secretStoreRef": {"kind": "ClusterSecretStore", "name": "shared"},
                "target": {"name": "pulled"},
                "data": [{"secretKey": "value", "remoteRef": {"key": "bench/pull", "property": "value"}}]
            }
        }
    }))?;
    let start = Instant::now();
    Api::<ClusterExternalSecret>::all(client.clone())
        .create(&PostParams::default(), &ces)
        .await?;
    // Read in the API server's memory, as the sync benchmark does.
    let deadline = start + Duration::from_secs(300);
    let mut provisioned = None;
    let seconds = loop {
        if provisioned.is_none() {
            let ready = env.kube.objects("clusterexternalsecrets").iter().any(|c| {
                c["status"]["provisionedNamespaces"]
                    .as_array()
                    .is_some_and(|p| p.len() == n)
                    && c["status"]["conditions"][0]["status"] == "True"
            });
            if ready {
                provisioned = Some(start.elapsed().as_secs_f64());
            }
        }
        let secrets = env.kube.objects("secrets");
        let done = secrets
            .iter()
            .filter(|s| {
                s["metadata"]["name"] == "pulled"
                    && s["metadata"]["namespace"]
                        .as_str()
                        .is_some_and(|ns| ns.starts_with("fan-"))
                    && s["data"]["value"] == "cHVsbGVk"
            })
            .count();
        if done >= n && provisioned.is_some() {
            break start.elapsed().as_secs_f64();
        }
        if Instant::now() > deadline {
            bail!("{n} namespaces not provisioned within 5 minutes ({done} Secrets)");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let reads = env.vault.count_kv_reads() as f64;
    vg.terminate();
    env.shutdown().await;
    Ok(Round {
        seconds,
        provisioned: provisioned.unwrap_or(seconds),
        reads,
    })
}
