//! Vault is not hammered: 200 ExternalSecrets on one store, over three refresh periods, cost one
//! login and one read per distinct path per refresh period.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use vaultgate::admission::LiveMode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_external_secrets_one_login_one_read_per_path_per_period() {
    const N: usize = 200;
    const PATHS: usize = 20;
    const PERIOD: Duration = Duration::from_secs(3);
    let sb = sandbox(LiveMode::Off).await;
    sb.vault
        .put_policy(
            "load",
            "path \"secret/data/load/*\" { capabilities = [\"read\"] }",
        )
        .unwrap();
    sb.vault.enable_auth("userpass", "userpass").unwrap();
    reqwest::Client::new()
        .post(format!("{}/v1/auth/userpass/users/load", sb.vault.addr()))
        .header("X-Vault-Token", sb.vault.root_token())
        .json(&json!({"password": "load-pw", "token_policies": ["load"], "token_ttl": "1h"}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    for p in 0..PATHS {
        sb.vault
            .kv2_put(
                "secret",
                &format!("load/p{p}"),
                json!({"v": format!("v{p}")}),
            )
            .unwrap();
    }
    let mut yaml = format!(
        "{}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: pw, namespace: load}}\nstringData: {{password: load-pw}}\n---\napiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {{name: vault, namespace: load}}\nspec: {{provider: {{vault: {{server: \"{}\", path: secret, auth: {{userPass: {{username: load, secretRef: {{name: pw, key: password}}}}}}}}}}}}\n",
        namespace("load"),
        sb.vault.addr()
    );
    for i in 0..N {
        yaml.push_str(&format!(
            "---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: es{i}, namespace: load}}\nspec:\n  refreshInterval: {}s\n  secretStoreRef: {{name: vault}}\n  data: [{{secretKey: v, remoteRef: {{key: load/p{}, property: v}}}}]\n",
            PERIOD.as_secs(),
            i % PATHS
        ));
    }
    sb.vault.reset_counters();
    let start = Instant::now();
    // Created at once, as a GitOps sync would.
    let (setup, objects) = yaml.split_at(
        yaml.find("---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret")
            .unwrap(),
    );
    apply(&sb, setup).await.unwrap();
    let docs: Vec<&str> = objects
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .collect();
    let results = futures::future::join_all(docs.iter().map(|d| apply(&sb, d))).await;
    results.into_iter().collect::<Result<Vec<_>, _>>().unwrap();
    for i in 0..N {
        wait_value(
            &sb,
            "load",
            &format!("es{i}"),
            "v",
            &format!("v{}", i % PATHS),
            Duration::from_secs(30),
        )
        .await;
    }
    println!(
        "{N} ExternalSecrets synced in {:.2} s",
        start.elapsed().as_secs_f64()
    );
    // Three refresh periods of steady state. The window is not aligned with the refresh grid, so
    // a path may show a fourth read at its edges; what must hold is the spacing: one read of each
    // path per period, never two close together (readers of one path split over several reads).
    let first = sb.vault.count_kv_reads();
    let from = Instant::now();
    tokio::time::sleep(PERIOD * 3).await;
    let logins = sb.vault.count_logins();
    let reads = sb.vault.count_kv_reads() - first;
    println!(
        "{logins} login(s); {first} reads for the first sync, then {reads} reads over 3 refresh periods, {PATHS} distinct paths"
    );
    assert_eq!(logins, 1, "one login for the store");
    let mut by_path: std::collections::BTreeMap<String, Vec<Instant>> = Default::default();
    for r in sb.vault.requests() {
        if r.at >= from && r.method == "GET" && r.path.starts_with("secret/data/load/") {
            by_path.entry(r.path).or_default().push(r.at);
        }
    }
    assert_eq!(by_path.len(), PATHS, "every path refreshed: {by_path:?}");
    let mut closest = PERIOD;
    for (path, at) in &by_path {
        assert!(
            (2..=4).contains(&at.len()),
            "{path}: {} reads in 3 periods",
            at.len()
        );
        for w in at.windows(2) {
            closest = closest.min(w[1] - w[0]);
        }
    }
    println!(
        "closest two reads of one path: {:.2} s",
        closest.as_secs_f64()
    );
    assert!(
        closest >= PERIOD / 2,
        "a path was read twice {closest:?} apart within one period of {PERIOD:?}"
    );
    assert!(reads <= PATHS * 4, "{reads} reads > {PATHS} paths x 4");
    sb.stop().await.unwrap();
}
