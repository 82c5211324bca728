//! ClusterExternalSecrets end to end, against the Kubernetes and Vault emulators: an
//! ExternalSecret in every selected namespace (and its Secret from Vault), following namespace
//! labels, refusing someone else's, renamed and removed with the ClusterExternalSecret.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube_emulator::KubeEmulator;
use serde_json::json;
use vault_emulator::{VaultEmulator, VaultEmulatorConfig};
use vaultgate::api::{ClusterExternalSecret, ExternalSecret};
use vaultgate::metrics::Metrics;

#[path = "support/emulated.rs"]
mod emulated;

const WAIT: Duration = Duration::from_secs(15);

struct Env {
    kube: KubeEmulator,
    vault: VaultEmulator,
    kc: kube::Client,
    metrics: Metrics,
    controller: emulated::Running,
}

/// [`emulated::eventually`] within [`WAIT`].
async fn eventually<T, F, Fut>(what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    emulated::eventually(what, WAIT, f).await
}

/// Namespaces `a`, `b` (label `pull=yes`), `c` (`pull=no`), `d` (no labels), a token in
/// `vaultgate-system` and a ClusterSecretStore `vault` reading KV v2 `secret`.
async fn env() -> Env {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let vault = VaultEmulator::start(VaultEmulatorConfig::default())
        .await
        .unwrap();
    vault
        .put_policy(
            "reader",
            r#"path "secret/data/*" { capabilities = ["read"] }"#,
        )
        .unwrap();
    vault.kv2_put("secret", "pull", json!({"k": "v"})).unwrap();
    let kube = KubeEmulator::start(Default::default()).await.unwrap();
    emulated::apply_crds(&kube).await;
    let kc = kube.client().await;
    for (ns, pull) in [
        ("vaultgate-system", None),
        ("a", Some("yes")),
        ("b", Some("yes")),
        ("c", Some("no")),
        ("d", None),
    ] {
        create_namespace(&kc, ns, pull).await;
    }
    let token = vault.create_token(&["reader"], None);
    kube.apply_yaml(&format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: vault-token, namespace: vaultgate-system}}
stringData: {{token: {token}}}
---
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata: {{name: vault}}
spec:
  provider:
    vault:
      server: "{server}"
      path: secret
      auth:
        tokenSecretRef: {{name: vault-token, namespace: vaultgate-system, key: token}}
"#,
        server = vault.addr()
    ))
    .await
    .unwrap();
    let controller = emulated::Running::start(kc.clone(), emulated::controller_config(16));
    Env {
        kube,
        vault,
        kc,
        metrics: controller.metrics.clone(),
        controller,
    }
}

async fn create_namespace(kc: &kube::Client, name: &str, pull: Option<&str>) {
    let mut n = Namespace::default();
    n.metadata.name = Some(name.into());
    n.metadata.labels = pull.map(|p| [("pull".to_string(), p.to_string())].into());
    Api::<Namespace>::all(kc.clone())
        .create(&PostParams::default(), &n)
        .await
        .unwrap();
}

const SPEC: &str = r#"
  externalSecretSpec:
    refreshInterval: 1h
    secretStoreRef: {kind: ClusterSecretStore, name: vault}
    target: {name: pull-secret}
    data:
    - secretKey: k
      remoteRef: {key: pull, property: k}"#;

impl Env {
    async fn stop(self) {
        self.controller.stop().await;
    }

    async fn apply(&self, yaml: &str) {
        self.kube.apply_yaml(yaml).await.unwrap();
    }

    fn ces_api(&self) -> Api<ClusterExternalSecret> {
        Api::all(self.kc.clone())
    }

    /// Namespaces holding an ExternalSecret `name` controlled by ClusterExternalSecret `ces`.
    async fn holders(&self, name: &str, ces: &str) -> Vec<String> {
        let all: Api<ExternalSecret> = Api::all(self.kc.clone());
        let mut v: Vec<String> = all
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|es| es.metadata.name.as_deref() == Some(name))
            .filter(|es| {
                es.metadata.owner_references.iter().flatten().any(|o| {
                    o.kind == "ClusterExternalSecret" && o.name == ces && o.controller == Some(true)
                })
            })
            .map(|es| es.metadata.namespace.unwrap())
            .collect();
        v.sort();
        v
    }

    async fn wait_holders(&self, name: &str, ces: &str, want: &[&str]) {
        eventually(&format!("{name} of {ces} in {want:?}"), || async {
            (self.holders(name, ces).await == want).then_some(())
        })
        .await
    }

    /// (Ready status, provisioned, failed namespaces) once the status has a Ready condition.
    async fn ces_status(&self, name: &str) -> Option<(String, Vec<String>, Vec<String>)> {
        let st = self.ces_api().get_opt(name).await.unwrap()?.status?;
        let ready = st.conditions.iter().find(|c| c.type_ == "Ready")?;
        Some((
            ready.status.clone(),
            st.provisioned_namespaces,
            st.failed_namespaces
                .into_iter()
                .map(|f| f.namespace)
                .collect(),
        ))
    }

    async fn wait_status(&self, name: &str, ready: &str, provisioned: &[&str], failed: &[&str]) {
        eventually(
            &format!("{name} Ready={ready} provisioned {provisioned:?} failed {failed:?}"),
            || async {
                let (r, p, f) = self.ces_status(name).await?;
                (r == ready && p == provisioned && f == failed).then_some(())
            },
        )
        .await
    }

    async fn label(&self, ns: &str, pull: Option<&str>) {
        Api::<Namespace>::all(self.kc.clone())
            .patch(
                ns,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"pull": pull}}})),
            )
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectors_and_names_provision_and_namespace_labels_are_followed() {
    let env = env().await;
    env.apply(&format!(
        "apiVersion: external-secrets.io/v1\nkind: ClusterExternalSecret\nmetadata: {{name: pull}}\nspec:\n  externalSecretMetadata:\n    labels: {{team: platform}}\n    annotations: {{note: fanned-out}}\n  namespaceSelectors:\n  - matchLabels: {{pull: \"yes\"}}\n  namespaces: [d]\n  refreshTime: 1h{SPEC}\n"
    ))
    .await;
    env.wait_holders("pull", "pull", &["a", "b", "d"]).await;
    env.wait_status("pull", "True", &["a", "b", "d"], &[]).await;
    let es = Api::<ExternalSecret>::namespaced(env.kc.clone(), "a")
        .get("pull")
        .await
        .unwrap();
    let labels = es.metadata.labels.unwrap();
    assert_eq!(labels.get("team").map(String::as_str), Some("platform"));
    let notes = es.metadata.annotations.unwrap();
    assert_eq!(notes.get("note").map(String::as_str), Some("fanned-out"));
    let ces = env.ces_api().get("pull").await.unwrap();
    let owner = &es.metadata.owner_references.unwrap()[0];
    assert_eq!(owner.uid, ces.metadata.uid.unwrap());
    assert_eq!(owner.block_owner_deletion, Some(true));
    // The ExternalSecrets sync as any other: the Secret arrives in each namespace.
    for ns in ["a", "b", "d"] {
        eventually(&format!("{ns}/pull-secret"), || async {
            let s: Option<Secret> = Api::namespaced(env.kc.clone(), ns)
                .get_opt("pull-secret")
                .await
                .unwrap();
            s.and_then(|s| s.data)
                .and_then(|d| d.get("k").map(|v| v.0.clone()))
                .filter(|v| v == b"v")
        })
        .await;
    }
    // Labelled, unlabelled and new namespaces are followed at once (refreshTime is an hour).
    env.label("c", Some("yes")).await;
    env.wait_holders("pull", "pull", &["a", "b", "c", "d"])
        .await;
    env.label("a", None).await;
    env.wait_holders("pull", "pull", &["b", "c", "d"]).await;
    create_namespace(&env.kc, "e", Some("yes")).await;
    env.wait_holders("pull", "pull", &["b", "c", "d", "e"])
        .await;
    env.wait_status("pull", "True", &["b", "c", "d", "e"], &[])
        .await;
    let text = env.metrics.render();
    assert!(
        text.contains("clusterexternalsecret_status_condition{condition=\"Ready\",name=\"pull\",namespace=\"\",status=\"True\"} 1"),
        "{text}"
    );
    assert!(text.contains("clusterexternalsecret_reconcile_duration{name=\"pull\""));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn someone_elses_external_secret_is_left_alone_and_reported() {
    let env = env().await;
    env.apply(
        "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {name: pull, namespace: b}\nspec:\n  refreshInterval: 1h\n  secretStoreRef: {kind: ClusterSecretStore, name: vault}\n  target: {name: mine}\n  data:\n  - secretKey: mine\n    remoteRef: {key: pull, property: k}\n",
    )
    .await;
    env.apply(&format!(
        "apiVersion: external-secrets.io/v1\nkind: ClusterExternalSecret\nmetadata: {{name: pull}}\nspec:\n  refreshTime: 1s\n  namespaceSelectors:\n  - matchLabels: {{pull: \"yes\"}}{SPEC}\n"
    ))
    .await;
    env.wait_status("pull", "False", &["a"], &["b"]).await;
    let st = env.ces_api().get("pull").await.unwrap().status.unwrap();
    assert_eq!(
        st.failed_namespaces[0].reason.as_deref(),
        Some("external secret already exists in namespace")
    );
    let ready = st.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.reason.as_deref(), Some("NamespacesFailed"));
    assert!(
        ready
            .message
            .as_deref()
            .unwrap()
            .contains("b: external secret already exists")
    );
    // Untouched: still its own target, no owner.
    let theirs = Api::<ExternalSecret>::namespaced(env.kc.clone(), "b")
        .get("pull")
        .await
        .unwrap();
    assert!(theirs.metadata.owner_references.is_none());
    assert_eq!(theirs.spec.target.unwrap().name.as_deref(), Some("mine"));
    // A Warning event on the ClusterExternalSecret (cluster-scoped: in `default`).
    eventually("a NamespacesFailed event", || async {
        let events: Api<K8sEvent> = Api::namespaced(env.kc.clone(), "default");
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("NamespacesFailed")
                    && e.type_.as_deref() == Some("Warning")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("pull")
            })
    })
    .await;
    let text = env.metrics.render();
    assert!(text.contains("clusterexternalsecret_status_condition{condition=\"Ready\",name=\"pull\",namespace=\"\",status=\"False\"} 1"));
    // Once theirs is gone, the next refresh (refreshTime 1s) provisions b and clears the failure.
    Api::<ExternalSecret>::namespaced(env.kc.clone(), "b")
        .delete("pull", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_status("pull", "True", &["a", "b"], &[]).await;
    env.wait_holders("pull", "pull", &["a", "b"]).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_deletion_of_one_and_deletion_of_all() {
    let env = env().await;
    env.apply(&format!(
        "apiVersion: external-secrets.io/v1\nkind: ClusterExternalSecret\nmetadata: {{name: pull}}\nspec:\n  namespaces: [a, c]{SPEC}\n"
    ))
    .await;
    env.wait_holders("pull", "pull", &["a", "c"]).await;
    // Someone deletes one: it is put back.
    Api::<ExternalSecret>::namespaced(env.kc.clone(), "c")
        .delete("pull", &DeleteParams::default())
        .await
        .unwrap();
    eventually("c/pull back", || async {
        let es = Api::<ExternalSecret>::namespaced(env.kc.clone(), "c")
            .get_opt("pull")
            .await
            .unwrap()?;
        es.metadata.deletion_timestamp.is_none().then_some(())
    })
    .await;
    // Renamed: the new ones come, the old ones go.
    env.apply(&format!(
        "apiVersion: external-secrets.io/v1\nkind: ClusterExternalSecret\nmetadata: {{name: pull}}\nspec:\n  externalSecretName: registry\n  namespaces: [a, c]{SPEC}\n"
    ))
    .await;
    env.wait_holders("registry", "pull", &["a", "c"]).await;
    env.wait_holders("pull", "pull", &[]).await;
    let st = env.ces_api().get("pull").await.unwrap().status.unwrap();
    assert_eq!(st.external_secret_name.as_deref(), Some("registry"));
    // Deleted: its ExternalSecrets go, then its finalizer, then the object.
    env.ces_api()
        .delete("pull", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the ClusterExternalSecret gone", || async {
        env.ces_api()
            .get_opt("pull")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(env.holders("registry", "pull").await.is_empty());
    assert!(
        !env.metrics
            .render()
            .contains("name=\"pull\",namespace=\"\"")
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_namespaces_share_one_vault_read() {
    let env = env().await;
    for i in 0..50 {
        create_namespace(&env.kc, &format!("fan-{i:02}"), Some("fan")).await;
    }
    env.vault.reset_counters();
    env.apply(&format!(
        "apiVersion: external-secrets.io/v1\nkind: ClusterExternalSecret\nmetadata: {{name: fan}}\nspec:\n  namespaceSelectors:\n  - matchLabels: {{pull: fan}}{SPEC}\n"
    ))
    .await;
    let all: Vec<String> = (0..50).map(|i| format!("fan-{i:02}")).collect();
    let want: Vec<&str> = all.iter().map(String::as_str).collect();
    env.wait_status("fan", "True", &want, &[]).await;
    eventually("50 Secrets", || async {
        let secrets: Api<Secret> = Api::all(env.kc.clone());
        let n = secrets
            .list(&ListParams::default().labels("reconcile.external-secrets.io/managed=true"))
            .await
            .unwrap()
            .items
            .len();
        (n == 50).then_some(())
    })
    .await;
    // One distinct path: Vault is read for it once, not once per namespace.
    assert_eq!(env.vault.count_kv_reads(), 1);
    env.stop().await;
}
