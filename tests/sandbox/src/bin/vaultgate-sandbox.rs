//! `make run`: everything on one machine, no cluster needed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use vaultgate_sandbox::{Sandbox, SandboxOptions, addr_or_free, apply_all};

const DEMO_VALUE: &str = "sandbox-demo-password";

fn main() -> anyhow::Result<()> {
    let mut opts = SandboxOptions::from_env()?;
    if std::env::var_os("VAULTGATE_LOG_FORMAT").is_none() {
        opts.run_args.log_format = vaultgate::telemetry::LogFormat::Text;
    }
    vaultgate::telemetry::init(opts.run_args.log_format, &opts.run_args.log_level)?;
    let dir = PathBuf::from(std::env::var("SANDBOX_DIR").unwrap_or_else(|_| ".sandbox".into()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        // Familiar ports when free (`SANDBOX_KUBE_ADDR`, `SANDBOX_VAULT_ADDR` override them;
        // port 0 picks any).
        opts.kube_addr = Some(listen_addr("SANDBOX_KUBE_ADDR", 6443)?);
        opts.vault_addr = Some(listen_addr("SANDBOX_VAULT_ADDR", 8200)?);
        let sandbox = Sandbox::start(opts).await?;
        sandbox.write_files(&dir)?;
        seed_demo(&sandbox).await?;
        let secret = wait_for_demo_secret(&sandbox, Duration::from_secs(30)).await?;
        print_summary(&sandbox, &dir, &secret);
        println!("sandbox ready");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => println!("stopping"),
            r = wait_failed(&sandbox) => { r?; }
        }
        sandbox.stop().await
    })
}

fn listen_addr(var: &str, default_port: u16) -> anyhow::Result<SocketAddr> {
    match std::env::var(var) {
        Ok(v) => v.parse().map_err(|e| anyhow::anyhow!("{var}={v:?}: {e}")),
        Err(_) => Ok(addr_or_free(SocketAddr::from((
            [127, 0, 0, 1],
            default_port,
        )))),
    }
}

async fn wait_failed(sandbox: &Sandbox) -> anyhow::Result<()> {
    while !sandbox.vaultgate.is_finished() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("vaultgate stopped unexpectedly")
}

/// A Vault secret, a policy and token that may read it, and a SecretStore + ExternalSecret that
/// sync it — applied through the API server, so they pass the admission webhook like any
/// `kubectl apply`.
async fn seed_demo(sandbox: &Sandbox) -> anyhow::Result<()> {
    let vault = &sandbox.vault;
    vault.kv2_put(
        "secret",
        "demo/app",
        serde_json::json!({"username": "demo", "password": DEMO_VALUE}),
    )?;
    vault.put_policy("demo-read", "path \"secret/data/demo/*\" { capabilities = [\"read\"] }\npath \"secret/metadata/demo/*\" { capabilities = [\"read\", \"list\"] }\n")?;
    let token = vault.create_token(&["demo-read"], Some(Duration::from_secs(24 * 3600)));
    let manifests = format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: demo}}
---
apiVersion: v1
kind: Secret
metadata: {{name: vault-token, namespace: demo}}
stringData: {{token: "{token}"}}
---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {{name: vault, namespace: demo}}
spec:
  provider:
    vault:
      server: "{server}"
      path: secret
      auth:
        tokenSecretRef: {{name: vault-token, key: token}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {{name: demo-app, namespace: demo}}
spec:
  refreshInterval: 15s
  secretStoreRef: {{name: vault}}
  data:
    - secretKey: password
      remoteRef: {{key: demo/app, property: password}}
"#,
        server = vault.addr()
    );
    let client = sandbox.kube.client().await;
    apply_all(&client, &manifests).await
}

async fn wait_for_demo_secret(sandbox: &Sandbox, limit: Duration) -> anyhow::Result<Secret> {
    let secrets: Api<Secret> = Api::namespaced(sandbox.kube.client().await, "demo");
    let start = Instant::now();
    loop {
        if let Some(s) = secrets.get_opt("demo-app").await?
            && s.data
                .as_ref()
                .and_then(|d| d.get("password"))
                .is_some_and(|v| v.0 == DEMO_VALUE.as_bytes())
        {
            return Ok(s);
        }
        if start.elapsed() > limit {
            anyhow::bail!(
                "the demo Secret demo/demo-app did not appear with the demo value within {limit:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn print_summary(sandbox: &Sandbox, dir: &std::path::Path, secret: &Secret) {
    let keys: Vec<&String> = secret
        .data
        .as_ref()
        .map(|d| d.keys().collect())
        .unwrap_or_default();
    println!();
    println!("Kubernetes API (emulated): {}", sandbox.kube.url());
    println!("Vault dev server:          {}", sandbox.vault.addr());
    println!(
        "vaultgate webhook:         https://{}",
        sandbox.args.webhook_addr
    );
    println!(
        "metrics/health:            {}/metrics",
        sandbox.metrics_url()
    );
    println!();
    println!(
        "Vault secret/demo/app was synced by ExternalSecret demo/demo-app into Secret demo/demo-app (keys: {keys:?})."
    );
    println!("Its password is the demo value {DEMO_VALUE:?} (a demo value, shown on purpose).");
    println!();
    println!("Try, in another shell:");
    println!("  source {}/env", dir.display());
    println!("  kubectl get externalsecrets -A");
    println!("  kubectl describe externalsecret -n demo demo-app");
    println!("  kubectl get secret -n demo demo-app -o jsonpath='{{.data.password}}' | base64 -d");
    println!();
}
