//! The emulated cluster and Vault behind the live admission checks' tests: a user `app` in
//! Vault who may read `secret/app/*`, namespaces `team-a` and `team-b`, a SecretStore `vault` in
//! `team-a` and a ClusterSecretStore `only-team-a`; and AdmissionReview builders.

#![allow(dead_code)]

use kube_emulator::KubeEmulator;
use serde_json::{Value, json};
use std::time::Duration;
use vault_emulator::VaultEmulator;
use vaultgate::admission::LiveMode;
use vaultgate::admission::{AdmissionState, Callers, Endpoint, review};
use vaultgate::metrics::Metrics;
use vaultgate::vault::VaultClients;
pub const PASSWORD: &str = "correct-horse";

pub struct Env {
    pub vault: VaultEmulator,
    pub kube: KubeEmulator,
    pub client: kube::Client,
}

pub async fn env() -> Env {
    env_with(Default::default()).await
}

/// [`env`] on an API server emulator configured as given.
pub async fn env_with(config: kube_emulator::KubeEmulatorConfig) -> Env {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let vault = VaultEmulator::start(Default::default()).await.unwrap();
    vault
        .kv2_put(
            "secret",
            "app/db",
            json!({"password": "s3cr3t", "user": "app"}),
        )
        .unwrap();
    vault
        .kv2_put("secret", "app/config", json!({"a": "1", "b": "2"}))
        .unwrap();
    vault
        .kv2_put("secret", "other/x", json!({"a": "1"}))
        .unwrap();
    vault
        .put_policy(
            "app",
            r#"
path "secret/data/app/*" { capabilities = ["read"] }
path "secret/metadata/app/*" { capabilities = ["read", "list"] }
path "secret/data/push/*" { capabilities = ["create", "read", "update"] }
path "secret/metadata/push/*" { capabilities = ["create", "read", "update"] }
"#,
        )
        .unwrap();
    vault.enable_auth("userpass", "userpass").unwrap();
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/v1/auth/userpass/users/app", vault.addr()))
        .header("X-Vault-Token", vault.root_token())
        .json(&json!({"password": PASSWORD, "token_policies": ["app"]}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());

    let kube = KubeEmulator::start(config).await.unwrap();
    kube.apply_yaml(&vaultgate::crd::render_all().unwrap())
        .await
        .unwrap();
    let server = vault.addr();
    kube.apply_yaml(&format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: team-a, labels: {{team: a}}}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: team-b, labels: {{team: b}}}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: vaultgate-system}}
---
apiVersion: v1
kind: Secret
metadata: {{name: vault-userpass, namespace: team-a}}
stringData: {{password: {PASSWORD}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: wrong-password, namespace: team-a}}
stringData: {{password: nope}}
---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {{name: vault, namespace: team-a}}
spec:
  provider:
    vault:
      server: {server}
      path: secret
      version: v2
      auth:
        userPass: {{path: userpass, username: app, secretRef: {{name: vault-userpass, key: password}}}}
---
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata: {{name: only-team-a}}
spec:
  conditions:
  - namespaceSelector: {{matchLabels: {{team: a}}}}
  provider:
    vault:
      server: {server}
      path: secret
      version: v2
      auth:
        userPass: {{path: userpass, username: app, secretRef: {{name: vault-userpass, key: password, namespace: team-a}}}}
"#
    ))
    .await
    .unwrap();
    let client = kube.client().await;
    Env {
        vault,
        kube,
        client,
    }
}

impl Env {
    /// The webhook's state as deployed by default: any client may call it.
    pub fn state(&self, mode: LiveMode, budget: Duration) -> AdmissionState {
        self.state_for(mode, budget, Callers::Anyone)
    }

    /// The state of a webhook that requires the API server's client certificate.
    pub fn trusted_state(&self, mode: LiveMode, budget: Duration) -> AdmissionState {
        self.state_for(mode, budget, Callers::Authenticated)
    }

    pub fn state_for(&self, mode: LiveMode, budget: Duration, callers: Callers) -> AdmissionState {
        let metrics = Metrics::new();
        AdmissionState::new(
            metrics.clone(),
            mode,
            budget,
            callers,
            Some(self.client.clone()),
            Some(VaultClients::new(self.client.clone(), metrics)),
        )
    }
}

pub fn review_body(object: &Value, dry_run: bool) -> Vec<u8> {
    let kind = object["kind"].as_str().unwrap();
    let resource = match kind {
        "ExternalSecret" => "externalsecrets",
        "SecretStore" => "secretstores",
        "PushSecret" => "pushsecrets",
        "ClusterPushSecret" => "clusterpushsecrets",
        "ClusterExternalSecret" => "clusterexternalsecrets",
        "Password" | "UUID" | "SSHKey" | "VaultDynamicSecret" | "ClusterGenerator" => {
            &format!("{}s", kind.to_lowercase())
        }
        _ => "clustersecretstores",
    };
    let (group, version) = object["apiVersion"]
        .as_str()
        .and_then(|a| a.split_once('/'))
        .unwrap_or(("external-secrets.io", "v1"));
    let gvk = json!({"group": group, "version": version, "kind": kind});
    let gvr = json!({"group": group, "version": version, "resource": resource});
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u-1", "kind": gvk, "resource": gvr,
            "name": object["metadata"]["name"],
            "namespace": object["metadata"]["namespace"],
            "operation": "CREATE",
            "userInfo": {"username": "admin"},
            "object": object, "oldObject": null, "dryRun": dry_run,
        }
    }))
    .unwrap()
}

pub fn es(ns: &str, name: &str, store: (&str, &str), data: Value) -> Value {
    json!({
        "apiVersion": "external-secrets.io/v1",
        "kind": "ExternalSecret",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "secretStoreRef": {"kind": store.0, "name": store.1},
            "refreshInterval": "1h0m0s",
            "target": {"name": name, "creationPolicy": "Owner", "deletionPolicy": "Retain"},
            "data": data,
        }
    })
}

pub fn read(key: &str, property: &str) -> Value {
    json!([{"secretKey": "v", "remoteRef": {"key": key, "property": property}}])
}

pub struct Verdict {
    pub allowed: bool,
    pub message: String,
    pub warnings: Vec<String>,
}

pub async fn judge(state: &AdmissionState, object: &Value, dry_run: bool) -> Verdict {
    let (_, resp) = review(state, Endpoint::Validate, &review_body(object, dry_run))
        .await
        .unwrap();
    assert_eq!(resp.uid, "u-1");
    Verdict {
        allowed: resp.allowed,
        message: resp.result.message.clone(),
        warnings: resp.warnings.clone().unwrap_or_default(),
    }
}

pub fn secret_store(name: &str, secret: &str, path: &str, server: &str) -> Value {
    json!({
        "apiVersion": "external-secrets.io/v1",
        "kind": "SecretStore",
        "metadata": {"name": name, "namespace": "team-a", "uid": "3f1c", "resourceVersion": "1"},
        "spec": {"provider": {"vault": {
            "server": server, "path": path, "version": "v2",
            "auth": {"userPass": {"path": "userpass", "username": "app",
                                  "secretRef": {"name": secret, "key": "password"}}}
        }}}
    })
}

/// Registers the validating webhook at `url` (serving a certificate of `ca_pem`) for the
/// external-secrets.io kinds, failing closed.
pub async fn register_webhook(e: &Env, url: &str, ca_pem: &str) {
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    e.kube
        .apply_yaml(&format!(
            r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {{name: vaultgate}}
webhooks:
- name: validate.vaultgate.external-secrets.io
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: Fail
  timeoutSeconds: 10
  clientConfig: {{url: "{url}/validate", caBundle: {ca}}}
  rules:
  - apiGroups: [external-secrets.io]
    apiVersions: ["*"]
    operations: [CREATE, UPDATE]
    resources: [externalsecrets, secretstores, clustersecretstores]
"#
        ))
        .await
        .unwrap();
}
