//! No secret value — Vault values, Vault tokens, AppRole secret ids, passwords, JWTs — appears
//! in vaultgate's logs (at trace level), in events, in status, in metrics or in admission
//! messages, while it syncs, fails and re-syncs.
//!
//! vaultgate runs as its own process (the real binary) so that every line it prints is its own.

#[path = "support/process.rs"]
mod process;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube_emulator::{KubeEmulator, KubeEmulatorConfig};
use process::{Proc, free_addr};
use serde_json::json;
use vault_emulator::{VaultEmulator, VaultEmulatorConfig};

async fn vault_json(
    vault: &VaultEmulator,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> serde_json::Value {
    let http = reqwest::Client::new();
    let mut req = http
        .request(method, format!("{}/v1/{path}", vault.addr()))
        .header("X-Vault-Token", vault.root_token());
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.json().await.unwrap_or(serde_json::Value::Null)
}

fn kubectl(kubeconfig: &std::path::Path, args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl must be installed");
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_logs_events_status_metrics_or_admission_messages() {
    vaultgate::run::install_crypto();
    let kube = KubeEmulator::start(KubeEmulatorConfig::default())
        .await
        .unwrap();
    let vault = VaultEmulator::start(VaultEmulatorConfig::default())
        .await
        .unwrap();
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for f in [
        "deploy/crds/external-secrets.io_clusterpushsecrets.yaml",
        "deploy/crds/external-secrets.io_clustersecretstores.yaml",
        "deploy/crds/external-secrets.io_externalsecrets.yaml",
        "deploy/crds/external-secrets.io_pushsecrets.yaml",
        "deploy/crds/external-secrets.io_secretstores.yaml",
        // The ExternalSecret controller watches the generator kinds too.
        "deploy/crds/generators.external-secrets.io_clustergenerators.yaml",
        "deploy/crds/generators.external-secrets.io_passwords.yaml",
        "deploy/crds/generators.external-secrets.io_sshkeys.yaml",
        "deploy/crds/generators.external-secrets.io_uuids.yaml",
        "deploy/crds/generators.external-secrets.io_vaultdynamicsecrets.yaml",
        "deploy/namespace.yaml",
        "deploy/webhooks.yaml",
    ] {
        kube.apply_yaml_file(root.join(f)).await.unwrap();
    }
    let dir = std::env::temp_dir().join(format!("vaultgate-secrecy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    kube.write_kubeconfig(&kubeconfig, &kube.admin_token())
        .unwrap();

    // Distinctive secrets, so that a match can only be a leak.
    let value_a = "VAL-a7f3c9e1-never-log-me";
    let value_b = "VAL-b2d8e4f6-never-log-me";
    let value_c = "VAL-c9a1b3d5-rotated-value";
    let password = "PW-e5f7a9b1-userpass";
    vault
        .kv2_put(
            "secret",
            "team/app",
            json!({"username": value_a, "password": value_b}),
        )
        .unwrap();
    vault.put_policy("team", "path \"secret/data/team/*\" { capabilities = [\"read\"] }\npath \"secret/metadata/team/*\" { capabilities = [\"read\", \"list\"] }").unwrap();
    let static_token = vault.create_token(&["team"], Some(Duration::from_secs(3600)));
    vault.enable_auth("approle", "approle").unwrap();
    vault_json(
        &vault,
        reqwest::Method::POST,
        "auth/approle/role/team",
        Some(json!({"token_policies": ["team"]})),
    )
    .await;
    let role_id = vault_json(
        &vault,
        reqwest::Method::GET,
        "auth/approle/role/team/role-id",
        None,
    )
    .await["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_string();
    let secret_id = vault_json(
        &vault,
        reqwest::Method::POST,
        "auth/approle/role/team/secret-id",
        None,
    )
    .await["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_string();
    vault.enable_auth("userpass", "userpass").unwrap();
    vault_json(
        &vault,
        reqwest::Method::POST,
        "auth/userpass/users/team",
        Some(json!({"password": password, "token_policies": ["team"]})),
    )
    .await;

    let (webhook, metrics) = (free_addr(), free_addr());
    kube.map_service("vaultgate-system", "vaultgate-webhook", 443, webhook);
    let log_path = dir.join("vaultgate.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let _vg = Proc(
        Command::new(env!("CARGO_BIN_EXE_vaultgate"))
            .args([
                "run",
                "--webhook-addr",
                &webhook.to_string(),
                "--metrics-addr",
                &metrics.to_string(),
            ])
            .args(["--log-level", "trace", "--admission-live", "warn"])
            .env("KUBECONFIG", &kubeconfig)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
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

    let manifests = format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: team}}
---
apiVersion: v1
kind: Secret
metadata: {{name: vault-creds, namespace: team}}
stringData: {{token: "{static_token}", secret-id: "{secret_id}", password: "{password}"}}
---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {{name: by-token, namespace: team}}
spec:
  provider: {{vault: {{server: "{server}", path: secret, auth: {{tokenSecretRef: {{name: vault-creds, key: token}}}}}}}}
---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {{name: by-approle, namespace: team}}
spec:
  provider: {{vault: {{server: "{server}", path: secret, auth: {{appRole: {{roleId: "{role_id}", secretRef: {{name: vault-creds, key: secret-id}}}}}}}}}}
---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {{name: by-userpass, namespace: team}}
spec:
  provider: {{vault: {{server: "{server}", path: secret, auth: {{userPass: {{username: team, secretRef: {{name: vault-creds, key: password}}}}}}}}}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {{name: whole, namespace: team}}
spec:
  refreshInterval: 1s
  secretStoreRef: {{name: by-approle}}
  dataFrom: [{{extract: {{key: team/app}}}}]
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {{name: one, namespace: team}}
spec:
  refreshInterval: 1s
  secretStoreRef: {{name: by-userpass}}
  data: [{{secretKey: pw, remoteRef: {{key: team/app, property: password}}}}]
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {{name: json, namespace: team}}
spec:
  refreshInterval: 1s
  secretStoreRef: {{name: by-token}}
  data: [{{secretKey: all, remoteRef: {{key: team/app}}}}]
"#,
        server = vault.addr()
    );
    let mut admission_output = kubectl(&kubeconfig, &["apply", "-f", "-"], Some(&manifests));
    // Failures on purpose: a missing property (admission warning, then a sync error with an
    // event), and a missing path.
    let broken = r#"
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: broken, namespace: team}
spec:
  refreshInterval: 1s
  secretStoreRef: {name: by-token}
  data:
    - {secretKey: first, remoteRef: {key: team/app, property: no-such-property}}
    - {secretKey: second, remoteRef: {key: team/missing}}
"#;
    admission_output.push_str(&kubectl(&kubeconfig, &["apply", "-f", "-"], Some(broken)));
    assert!(
        admission_output.contains("no-such-property") || admission_output.contains("team/missing"),
        "the live checks warn about the broken ExternalSecret: {admission_output}"
    );

    let secrets: Api<Secret> = Api::namespaced(kube.client().await, "team");
    let wait_value = |name: &'static str, key: &'static str, want: &'static str| {
        let secrets = secrets.clone();
        async move {
            let start = Instant::now();
            loop {
                if let Ok(Some(s)) = secrets.get_opt(name).await
                    && s.data
                        .as_ref()
                        .and_then(|d| d.get(key))
                        .is_some_and(|v| v.0 == want.as_bytes())
                {
                    return;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "Secret team/{name} key {key} never got its value"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    wait_value("whole", "username", value_a).await;
    wait_value("one", "pw", value_b).await;
    // A rotation in Vault, and a token revocation that forces new logins.
    vault
        .kv2_put(
            "secret",
            "team/app",
            json!({"username": value_a, "password": value_c}),
        )
        .unwrap();
    vault.revoke_all_tokens();
    wait_value("one", "pw", value_c).await;
    // The failing ExternalSecret's Warning event, written from a queue after its status, is
    // among what is searched below: waited for.
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(kube.client().await, "team");
    let start = Instant::now();
    loop {
        let list = events.list(&Default::default()).await.unwrap();
        if list.items.iter().any(|e| {
            e.reason.as_deref() == Some("UpdateFailed")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("broken")
        }) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no UpdateFailed event about team/broken"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut outputs = vec![("admission messages", admission_output)];
    outputs.push((
        "events",
        kubectl(&kubeconfig, &["get", "events", "-A", "-o", "json"], None),
    ));
    outputs.push((
        "events.k8s.io",
        kubectl(
            &kubeconfig,
            &["get", "events.events.k8s.io", "-A", "-o", "json"],
            None,
        ),
    ));
    outputs.push((
        "ExternalSecret status",
        kubectl(
            &kubeconfig,
            &["get", "externalsecrets", "-A", "-o", "json"],
            None,
        ),
    ));
    outputs.push((
        "SecretStore status",
        kubectl(
            &kubeconfig,
            &["get", "secretstores", "-A", "-o", "json"],
            None,
        ),
    ));
    outputs.push((
        "describe",
        kubectl(
            &kubeconfig,
            &["describe", "externalsecrets", "-n", "team"],
            None,
        ),
    ));
    outputs.push((
        "metrics",
        http.get(format!("http://{metrics}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    ));
    let mut logs = String::new();
    std::fs::File::open(&log_path)
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(
        logs.lines().count() > 50,
        "trace logging produced output ({} lines)",
        logs.lines().count()
    );
    outputs.push(("logs", logs));

    let status = &outputs[3].1;
    assert!(
        status.contains("SecretSyncedError"),
        "the broken ExternalSecret reports its error: {status}"
    );
    let secrets_list = [
        value_a,
        value_b,
        value_c,
        password,
        &static_token,
        &secret_id,
    ];
    let jwt = regex::Regex::new(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.").unwrap();
    for (what, text) in &outputs {
        for s in secrets_list {
            assert!(
                !text.contains(s),
                "a secret ({}…) appears in {what}",
                &s[..6]
            );
        }
        assert!(!jwt.is_match(text), "a JWT appears in {what}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
