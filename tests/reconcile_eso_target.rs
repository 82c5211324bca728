//! ESO 2.9's target and scheduling features end to end, against the Kubernetes and Vault
//! emulators: template `metadata.finalizers` (ESO's common `JSONDataWithTemplate` case),
//! `creationPolicy: CreateOrMerge`, and `syncWindows`.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube_emulator::KubeEmulator;
use serde_json::json;
use vault_emulator::{VaultEmulator, VaultEmulatorConfig};
use vaultgate::api::ExternalSecret;

#[path = "support/emulated.rs"]
mod emulated;

const WAIT: Duration = Duration::from_secs(15);
const NS: &str = "team";

struct Env {
    kube: KubeEmulator,
    vault: VaultEmulator,
    kc: kube::Client,
    controller: emulated::Running,
}

async fn eventually<T, F, Fut>(what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    emulated::eventually(what, WAIT, f).await
}

async fn env() -> Env {
    let e = emulated::start(VaultEmulatorConfig::default(), &[(NS, &[])]).await;
    emulated::apply_crds(&e.kube).await;
    e.vault.put_policy("reader", emulated::READER).unwrap();
    let token = e.vault.create_token(&["reader"], None);
    e.kube
        .apply_yaml(&format!(
            r#"
apiVersion: v1
kind: Secret
metadata: {{name: vault-token, namespace: {NS}}}
stringData: {{token: {token}}}
---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {{name: vault, namespace: {NS}}}
spec:
  provider:
    vault:
      server: "{server}"
      path: secret
      auth:
        tokenSecretRef: {{name: vault-token, key: token}}
"#,
            server = e.vault.addr()
        ))
        .await
        .unwrap();
    let controller = emulated::Running::start(e.kc.clone(), emulated::controller_config(4));
    Env {
        kube: e.kube,
        vault: e.vault,
        kc: e.kc,
        controller,
    }
}

impl Env {
    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.kc.clone(), NS)
    }

    fn externalsecrets(&self) -> Api<ExternalSecret> {
        Api::namespaced(self.kc.clone(), NS)
    }

    async fn patch_es(&self, name: &str, merge: serde_json::Value) {
        self.externalsecrets()
            .patch(name, &PatchParams::default(), &Patch::Merge(merge))
            .await
            .unwrap();
    }

    async fn patch_secret(&self, name: &str, merge: serde_json::Value) {
        self.secrets()
            .patch(name, &PatchParams::default(), &Patch::Merge(merge))
            .await
            .unwrap();
    }

    /// Waits until Secret `name` satisfies `ok`, and returns it.
    async fn secret_where(&self, what: &str, name: &str, ok: impl Fn(&Secret) -> bool) -> Secret {
        let api = self.secrets();
        eventually(what, || {
            let api = api.clone();
            let ok = &ok;
            async move { api.get_opt(name).await.unwrap().filter(|s| ok(s)) }
        })
        .await
    }
}

fn value(s: &Secret, key: &str) -> Option<String> {
    s.data
        .as_ref()?
        .get(key)
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
}

fn finalizers(s: &Secret) -> Vec<String> {
    s.metadata.finalizers.clone().unwrap_or_default()
}

/// ESO's `JSONDataWithTemplate`, with the template's finalizers as ESO 2.9 composes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_finalizers_reach_the_secret_and_leave_with_the_template() {
    let env = env().await;
    env.vault
        .kv2_put(
            "secret",
            "one",
            json!({"foo1": "foo1-val", "bar1": "bar1-val"}),
        )
        .unwrap();
    env.vault
        .kv2_put(
            "secret",
            "other",
            json!({"foo2": "foo2-val", "bar2": "bar2-val"}),
        )
        .unwrap();
    env.kube
        .apply_yaml(&format!(
            r#"
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {{name: templated, namespace: {NS}}}
spec:
  refreshInterval: 1h
  secretStoreRef: {{name: vault}}
  target:
    name: templated
    template:
      metadata:
        annotations: {{example: annotation}}
        labels: {{example: label}}
        finalizers: [example.com/keep]
      data:
        my-data: "executed: {{{{ .one }}}}|{{{{ .two }}}}"
  data:
  - secretKey: one
    remoteRef: {{key: one, property: foo1}}
  - secretKey: two
    remoteRef: {{key: other, property: bar2}}
"#
        ))
        .await
        .unwrap();
    let s = env
        .secret_where(
            "the templated Secret with its finalizer",
            "templated",
            |s| finalizers(s) == ["example.com/keep"],
        )
        .await;
    assert_eq!(
        value(&s, "my-data").as_deref(),
        Some("executed: foo1-val|bar2-val")
    );
    assert_eq!(s.metadata.labels.as_ref().unwrap()["example"], "label");
    assert_eq!(
        s.metadata.annotations.as_ref().unwrap()["example"],
        "annotation"
    );

    // Someone else's finalizer stays; ours leaves when the template drops it.
    env.patch_secret(
        "templated",
        json!({"metadata": {"finalizers": ["example.com/keep", "other.io/theirs"]}}),
    )
    .await;
    env.patch_es(
        "templated",
        json!({"spec": {"target": {"template": {"metadata": {"finalizers": null}}}}}),
    )
    .await;
    env.secret_where("our finalizer withdrawn", "templated", |s| {
        finalizers(s) == ["other.io/theirs"]
    })
    .await;
    env.controller.stop().await;
    drop(env.kube);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_or_merge_creates_merges_recreates_and_retains() {
    let env = env().await;
    env.vault
        .kv2_put("secret", "app", json!({"k": "v1"}))
        .unwrap();
    env.kube
        .apply_yaml(&format!(
            r#"
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {{name: com, namespace: {NS}}}
spec:
  refreshInterval: 1h
  secretStoreRef: {{name: vault}}
  target: {{name: shared, creationPolicy: CreateOrMerge}}
  data:
  - secretKey: k
    remoteRef: {{key: app, property: k}}
"#
        ))
        .await
        .unwrap();
    // Missing: created, without an owner reference.
    let s = env
        .secret_where("the Secret created", "shared", |s| {
            value(s, "k").as_deref() == Some("v1")
        })
        .await;
    assert!(s.metadata.owner_references.unwrap_or_default().is_empty());

    // Existing keys written by others are kept beside ours.
    env.patch_secret("shared", json!({"stringData": {"theirs": "x"}}))
        .await;
    env.vault
        .kv2_put("secret", "app", json!({"k": "v2"}))
        .unwrap();
    env.patch_es(
        "com",
        json!({"metadata": {"annotations": {"force-sync": "1"}}}),
    )
    .await;
    env.secret_where("our key updated, theirs kept", "shared", |s| {
        value(s, "k").as_deref() == Some("v2") && value(s, "theirs").as_deref() == Some("x")
    })
    .await;

    // Deleted: recreated while the ExternalSecret exists.
    env.secrets()
        .delete("shared", &DeleteParams::default())
        .await
        .unwrap();
    env.secret_where("the Secret recreated", "shared", |s| {
        value(s, "k").as_deref() == Some("v2")
    })
    .await;

    // The ExternalSecret goes: the Secret stays.
    env.externalsecrets()
        .delete("com", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the ExternalSecret gone", || async {
        env.externalsecrets()
            .get_opt("com")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    let kept = env.secrets().get("shared").await.unwrap();
    assert_eq!(value(&kept, "k").as_deref(), Some("v2"));
    env.controller.stop().await;
    drop(env.kube);
}

/// A deny window open all day: scheduled refreshes wait, a force-sync does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_windows_hold_scheduled_refreshes_but_not_changes() {
    let env = env().await;
    env.vault
        .kv2_put("secret", "app", json!({"k": "v1"}))
        .unwrap();
    env.kube
        .apply_yaml(&format!(
            r#"
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {{name: windowed, namespace: {NS}}}
spec:
  refreshInterval: 1s
  secretStoreRef: {{name: vault}}
  syncWindows:
    kind: deny
    windows:
    - {{schedule: "* * * * *", duration: 1h}}
  data:
  - secretKey: k
    remoteRef: {{key: app, property: k}}
"#
        ))
        .await
        .unwrap();
    // The first sync is not a scheduled refresh.
    env.secret_where("the first sync", "windowed", |s| {
        value(s, "k").as_deref() == Some("v1")
    })
    .await;
    let refreshed = || async {
        env.externalsecrets()
            .get("windowed")
            .await
            .unwrap()
            .status
            .and_then(|s| s.refresh_time)
    };
    let first = eventually("the first sync's refreshTime", refreshed).await;
    env.vault
        .kv2_put("secret", "app", json!({"k": "v2"}))
        .unwrap();
    // Five intervals pass without a refresh.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        refreshed().await,
        Some(first),
        "no scheduled refresh in the window"
    );
    let s = env.secrets().get("windowed").await.unwrap();
    assert_eq!(value(&s, "k").as_deref(), Some("v1"));

    env.patch_es(
        "windowed",
        json!({"metadata": {"annotations": {"force-sync": "1"}}}),
    )
    .await;
    env.secret_where("force-sync inside the window", "windowed", |s| {
        value(s, "k").as_deref() == Some("v2")
    })
    .await;
    env.controller.stop().await;
    drop(env.kube);
}
