//! Helpers shared by the end-to-end tests that run vaultgate in the sandbox.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serde_json::{Value, json};
use vaultgate::api::ExternalSecret;
use vaultgate_sandbox::{Sandbox, SandboxOptions};

/// A sandbox with the given live-admission mode.
pub async fn sandbox(live: vaultgate::admission::LiveMode) -> Sandbox {
    let mut opts = SandboxOptions::from_env().unwrap();
    opts.run_args.admission_live = live;
    opts.run_args.log_level = std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into());
    vaultgate::telemetry::init(
        vaultgate::telemetry::LogFormat::Text,
        &opts.run_args.log_level,
    )
    .unwrap();
    Sandbox::start(opts).await.unwrap()
}

/// A Vault token that may read (and list) everything under `secret/`.
pub fn reader_token(sb: &Sandbox) -> String {
    sb.vault
        .put_policy(
            "reader",
            "path \"secret/*\" { capabilities = [\"read\", \"list\"] }",
        )
        .unwrap();
    sb.vault
        .create_token(&["reader"], Some(Duration::from_secs(3600)))
}

/// Applies YAML through the API server (admission included); the error text on refusal.
pub async fn apply(sb: &Sandbox, yaml: &str) -> Result<(), String> {
    let client = sb.kube.client().await;
    vaultgate_sandbox::apply_all(&client, yaml)
        .await
        .map_err(|e| format!("{e:#}"))
}

/// The Ready condition of an ExternalSecret: (status, reason, message).
pub async fn ready(sb: &Sandbox, ns: &str, name: &str) -> Option<(String, String, String)> {
    let api: Api<ExternalSecret> = Api::namespaced(sb.kube.client().await, ns);
    let es = api.get_opt(name).await.ok()??;
    let c = es
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")?;
    Some((
        c.status,
        c.reason.unwrap_or_default(),
        c.message.unwrap_or_default(),
    ))
}

/// Waits until the Ready condition satisfies `pred`; returns it.
pub async fn wait_ready(
    sb: &Sandbox,
    ns: &str,
    name: &str,
    limit: Duration,
    pred: impl Fn(&(String, String, String)) -> bool,
) -> (String, String, String) {
    let start = Instant::now();
    loop {
        let r = ready(sb, ns, name).await;
        if let Some(r) = &r
            && pred(r)
        {
            return r.clone();
        }
        assert!(
            start.elapsed() < limit,
            "{ns}/{name}: condition never matched; last {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of a key of a Secret, if both exist.
pub async fn secret_value(sb: &Sandbox, ns: &str, name: &str, key: &str) -> Option<Vec<u8>> {
    let api: Api<Secret> = Api::namespaced(sb.kube.client().await, ns);
    api.get_opt(name)
        .await
        .ok()??
        .data?
        .get(key)
        .map(|v| v.0.clone())
}

/// Waits until `ns/name[key]` holds `want`; returns how long it took.
pub async fn wait_value(
    sb: &Sandbox,
    ns: &str,
    name: &str,
    key: &str,
    want: &str,
    limit: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        let v = secret_value(sb, ns, name, key).await;
        if v.as_deref() == Some(want.as_bytes()) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "{ns}/{name}[{key}] never became the expected value"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn namespace(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n")
}

pub fn token_secret(ns: &str, name: &str, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\nstringData: {{token: \"{token}\"}}\n"
    )
}

pub fn json_of(v: &Value) -> String {
    json!(v).to_string()
}

/// In namespace `app`: an AppRole store (so that tokens are real logins) and `n` ExternalSecrets
/// `es<i>` refreshing every second, each writing Vault's `secret/app/s<i>` property `v`
/// (`v1-<i>`) to key `v` of Secret `es<i>`; returns once all are synced (each within `limit`).
pub async fn approle_app(sb: &Sandbox, n: usize, limit: Duration) {
    sb.vault
        .put_policy(
            "app",
            "path \"secret/data/app/*\" { capabilities = [\"read\"] }",
        )
        .unwrap();
    sb.vault.enable_auth("approle", "approle").unwrap();
    let http = reqwest::Client::new();
    let root = sb.vault.root_token();
    let url = |p: &str| format!("{}/v1/{p}", sb.vault.addr());
    http.post(url("auth/approle/role/app"))
        .header("X-Vault-Token", &root)
        .json(&json!({"token_policies": ["app"], "token_ttl": "1h"}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let role_id: serde_json::Value = http
        .get(url("auth/approle/role/app/role-id"))
        .header("X-Vault-Token", &root)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret_id: serde_json::Value = http
        .post(url("auth/approle/role/app/secret-id"))
        .header("X-Vault-Token", &root)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut yaml = format!(
        "{}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: approle, namespace: app}}\nstringData: {{secret-id: \"{}\"}}\n---\napiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {{name: vault, namespace: app}}\nspec: {{provider: {{vault: {{server: \"{}\", path: secret, auth: {{appRole: {{roleId: \"{}\", secretRef: {{name: approle, key: secret-id}}}}}}}}}}}}\n",
        namespace("app"),
        secret_id["data"]["secret_id"].as_str().unwrap(),
        sb.vault.addr(),
        role_id["data"]["role_id"].as_str().unwrap(),
    );
    for i in 0..n {
        sb.vault
            .kv2_put(
                "secret",
                &format!("app/s{i}"),
                json!({"v": format!("v1-{i}")}),
            )
            .unwrap();
        yaml.push_str(&format!(
            "---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: es{i}, namespace: app}}\nspec:\n  refreshInterval: 1s\n  secretStoreRef: {{name: vault}}\n  data: [{{secretKey: v, remoteRef: {{key: app/s{i}, property: v}}}}]\n"
        ));
    }
    apply(sb, &yaml).await.unwrap();
    for i in 0..n {
        wait_value(sb, "app", &format!("es{i}"), "v", &format!("v1-{i}"), limit).await;
    }
}

/// Watches every Secret `es0..n` until stopped and fails if one disappears or loses its value.
pub fn guard(
    sb: &Sandbox,
    n: usize,
) -> (Arc<AtomicBool>, tokio::task::JoinHandle<Result<(), String>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let kube = sb.kube.clone();
    let flag = stop.clone();
    let task = tokio::spawn(async move {
        let api: kube::Api<k8s_openapi::api::core::v1::Secret> =
            kube::Api::namespaced(kube.client().await, "app");
        while !flag.load(Ordering::SeqCst) {
            for i in 0..n {
                match api.get_opt(&format!("es{i}")).await {
                    Ok(Some(s)) => {
                        let v = s
                            .data
                            .as_ref()
                            .and_then(|d| d.get("v"))
                            .map(|b| b.0.clone())
                            .unwrap_or_default();
                        if v.is_empty() {
                            return Err(format!("Secret es{i} was emptied"));
                        }
                    }
                    Ok(None) => return Err(format!("Secret es{i} was deleted")),
                    // The API server itself may be the fault under test.
                    Err(_) => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    });
    (stop, task)
}

/// A call to Vault's HTTP API with the root token; the answer's JSON (null when empty).
pub async fn vault_api(sb: &Sandbox, method: reqwest::Method, path: &str, body: Value) -> Value {
    let mut builder = reqwest::Client::builder();
    if let Some(ca) = sb.vault.ca_pem() {
        builder =
            builder.add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap());
    }
    let mut req = builder
        .build()
        .unwrap()
        .request(method, format!("{}/v1/{path}", sb.vault.addr()))
        .header("X-Vault-Token", sb.vault.root_token());
    if !body.is_null() {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.json().await.unwrap_or(Value::Null)
}
