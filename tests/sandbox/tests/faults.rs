//! Faults survived: Vault down, 5xx and 429 bursts, tokens revoked, permission and mount
//! removed; API server conflicts, errors and dropped watches; vaultgate killed mid-sync. In every
//! case no target Secret is deleted or emptied by a transient fault, and every Secret converges
//! to Vault's value once the fault clears; the time to converge is printed.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use kube_emulator::FaultFilter;
use serde_json::json;
use vaultgate::admission::LiveMode;
use vaultgate_sandbox::Sandbox;

const LIMIT: Duration = Duration::from_secs(30);

/// A sandbox with an AppRole store and `n` ExternalSecrets refreshing every second, all synced.
async fn setup(n: usize) -> Sandbox {
    let sb = sandbox(LiveMode::Off).await;
    approle_app(&sb, n, LIMIT).await;
    sb
}

async fn bump_and_converge(sb: &Sandbox, n: usize, round: &str, what: &str) {
    for i in 0..n {
        sb.vault
            .kv2_put(
                "secret",
                &format!("app/s{i}"),
                json!({"v": format!("{round}-{i}")}),
            )
            .unwrap();
    }
    let start = Instant::now();
    for i in 0..n {
        wait_value(
            sb,
            "app",
            &format!("es{i}"),
            "v",
            &format!("{round}-{i}"),
            LIMIT,
        )
        .await;
    }
    println!(
        "{what}: converged {:.2} s after the fault cleared",
        start.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_down_for_several_refresh_periods() {
    let n = 5;
    let sb = setup(n).await;
    let (stop, guarded) = guard(&sb, n);
    sb.vault.set_down(true);
    let (_, reason, message) = wait_ready(&sb, "app", "es0", LIMIT, |r| r.0 == "False").await;
    assert_eq!(reason, "SecretSyncedError");
    assert!(!message.is_empty());
    tokio::time::sleep(Duration::from_secs(4)).await;
    sb.vault.set_down(false);
    bump_and_converge(&sb, n, "v2", "vault down 4+ refresh periods").await;
    wait_ready(&sb, "app", "es0", LIMIT, |r| r.0 == "True").await;
    stop.store(true, Ordering::SeqCst);
    guarded.await.unwrap().unwrap();
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_5xx_and_429_bursts() {
    let n = 5;
    let sb = setup(n).await;
    let (stop, guarded) = guard(&sb, n);
    sb.vault.reset_counters();
    sb.vault.fail_next(6, 503, None);
    sb.vault.fail_next(4, 500, None);
    sb.vault.fail_next(3, 429, Some(2));
    bump_and_converge(&sb, n, "v2", "5xx/429 bursts").await;
    // Retry-After was honoured: no storm of requests while Vault asked to wait.
    let requests = sb.vault.count_requests();
    assert!(
        requests < 200,
        "{requests} Vault requests for {n} ExternalSecrets over a few seconds"
    );
    stop.store(true, Ordering::SeqCst);
    guarded.await.unwrap().unwrap();
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_revoked_mid_run_relogs_in() {
    let n = 3;
    let sb = setup(n).await;
    let (stop, guarded) = guard(&sb, n);
    let logins = sb.vault.count_logins();
    sb.vault.revoke_all_tokens();
    bump_and_converge(&sb, n, "v2", "token revoked").await;
    let relogins = sb.vault.count_logins() - logins;
    assert!(
        (1..=3).contains(&relogins),
        "one re-login for the store, not one per ExternalSecret: {relogins}"
    );
    wait_ready(&sb, "app", "es0", LIMIT, |r| r.0 == "True").await;
    stop.store(true, Ordering::SeqCst);
    guarded.await.unwrap().unwrap();
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_and_mount_removed_keep_the_secret() {
    let n = 2;
    let sb = setup(n).await;
    let (stop, guarded) = guard(&sb, n);
    // Permission removed: the ExternalSecret says so; the Secret stays.
    sb.vault
        .put_policy(
            "app",
            "path \"secret/data/other/*\" { capabilities = [\"read\"] }",
        )
        .unwrap();
    let (_, _, message) = wait_ready(&sb, "app", "es0", LIMIT, |r| r.0 == "False").await;
    assert!(
        message.to_lowercase().contains("permission denied") || message.contains("403"),
        "{message}"
    );
    sb.vault
        .put_policy(
            "app",
            "path \"secret/data/app/*\" { capabilities = [\"read\"] }",
        )
        .unwrap();
    bump_and_converge(&sb, n, "v2", "permission restored").await;
    // Mount removed, then restored with new data.
    let http = reqwest::Client::new();
    http.delete(format!("{}/v1/sys/mounts/secret", sb.vault.addr()))
        .header("X-Vault-Token", sb.vault.root_token())
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    wait_ready(&sb, "app", "es0", LIMIT, |r| r.0 == "False").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    sb.vault.enable_kv("secret", 2).unwrap();
    bump_and_converge(&sb, n, "v3", "mount restored").await;
    stop.store(true, Ordering::SeqCst);
    guarded.await.unwrap().unwrap();
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_conflicts_errors_and_dropped_watches() {
    let n = 5;
    let sb = setup(n).await;
    let (stop, guarded) = guard(&sb, n);
    sb.kube
        .fail_next(FaultFilter::verb_resource("patch", "secrets"), 5, 409);
    sb.kube.fail_next(
        FaultFilter::verb_resource("patch", "externalsecrets"),
        5,
        500,
    );
    sb.kube.fail_next(FaultFilter::verb("list"), 3, 500);
    sb.kube.drop_watches();
    bump_and_converge(&sb, n, "v2", "409s, 500s and dropped watches").await;
    // History compacted: watches resuming from old versions get 410 Gone and relist.
    sb.kube.compact();
    sb.kube.drop_watches();
    bump_and_converge(&sb, n, "v3", "410 Gone relist").await;
    // A Secret deleted while watches were down comes back.
    sb.kube.drop_watches();
    let api: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(sb.kube.client().await, "app");
    stop.store(true, Ordering::SeqCst);
    guarded.await.unwrap().unwrap();
    api.delete("es0", &Default::default()).await.unwrap();
    let back = wait_value(&sb, "app", "es0", "v", "v3-0", LIMIT).await;
    println!("deleted Secret restored after {:.2} s", back.as_secs_f64());
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_sync_and_restarted() {
    let n = 20;
    let sb = setup(n).await;
    for i in 0..n {
        sb.vault
            .kv2_put(
                "secret",
                &format!("app/s{i}"),
                json!({"v": format!("v2-{i}")}),
            )
            .unwrap();
    }
    // Stop vaultgate while it is syncing the new values, then start a new one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let Sandbox {
        kube,
        vault,
        args,
        shutdown,
        vaultgate,
        gate: _,
    } = sb;
    vaultgate.abort();
    let _ = vaultgate.await;
    shutdown.cancel();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut args = args;
    args.webhook_addr = vaultgate_sandbox::free_local_addr();
    args.metrics_addr = vaultgate_sandbox::free_local_addr();
    kube.map_service(
        &args.pod_namespace,
        &args.service_name,
        443,
        args.webhook_addr,
    );
    let restarted = tokio::spawn(vaultgate::run::run(
        args.clone(),
        kube.client().await,
        shutdown.clone(),
    ));
    let sb = Sandbox {
        kube,
        vault,
        args,
        shutdown,
        vaultgate: restarted,
        gate: Default::default(),
    };
    let start = Instant::now();
    for i in 0..n {
        wait_value(
            &sb,
            "app",
            &format!("es{i}"),
            "v",
            &format!("v2-{i}"),
            LIMIT,
        )
        .await;
    }
    println!(
        "restart: converged {:.2} s after the restart",
        start.elapsed().as_secs_f64()
    );
    sb.stop().await.unwrap();
}
