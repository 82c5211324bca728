//! Entries read from their own store (`sourceRef.storeRef`) through the reconciler, against
//! the Kubernetes and Vault emulators: a SecretStore and a ClusterSecretStore on different
//! mounts (and tokens) fill one Secret; an ExternalSecret whose every entry names its store
//! needs no `secretStoreRef`; a change to a store used only by an entry re-syncs; a
//! ClusterSecretStore whose conditions refuse the namespace fails the sync with the entry's
//! field path and writes nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube_emulator::KubeEmulator;
use serde_json::json;
use vault_emulator::{VaultEmulator, VaultEmulatorConfig};
use vaultgate::api::{ClusterSecretStore, ExternalSecret};

#[path = "support/emulated.rs"]
mod emulated;
use emulated::READER;

const WAIT: Duration = Duration::from_secs(15);

/// The other mounts the ClusterSecretStore reads.
const OTHER: &str = r#"
path "other/data/*" { capabilities = ["read", "list"] }
path "other2/data/*" { capabilities = ["read", "list"] }
"#;

struct Env {
    kube: KubeEmulator,
    vault: VaultEmulator,
    kc: kube::Client,
    controller: emulated::Running,
}

async fn env() -> Env {
    let emulated::Emulators { vault, kube, kc } = emulated::start(
        VaultEmulatorConfig::default(),
        &[
            ("team-a", &[]),
            ("team-b", &[("vault", "allowed")]),
            ("vaultgate-system", &[]),
        ],
    )
    .await;
    vault.put_policy("reader", READER).unwrap();
    vault.put_policy("other", OTHER).unwrap();
    vault.enable_kv("other", 2).unwrap();
    vault.enable_kv("other2", 2).unwrap();
    emulated::apply_crds(&kube).await;
    let controller = emulated::Running::start(kc.clone(), emulated::controller_config(4));
    Env {
        kube,
        vault,
        kc,
        controller,
    }
}

impl Env {
    async fn apply(&self, yaml: &str) {
        self.kube.apply_yaml(yaml).await.unwrap();
    }

    async fn data(&self, ns: &str, name: &str) -> Option<BTreeMap<String, String>> {
        let s = Api::<Secret>::namespaced(self.kc.clone(), ns)
            .get_opt(name)
            .await
            .unwrap()?;
        Some(
            s.data?
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
                .collect(),
        )
    }

    /// Waits for the Secret to hold exactly `want`.
    async fn wait_data(&self, ns: &str, name: &str, want: &[(&str, &str)]) {
        let want: BTreeMap<String, String> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        emulated::eventually(&format!("{ns}/{name} holding {want:?}"), WAIT, || async {
            self.data(ns, name).await.filter(|d| *d == want)
        })
        .await;
    }

    async fn ready(&self, ns: &str, name: &str) -> Option<(String, String)> {
        let es = Api::<ExternalSecret>::namespaced(self.kc.clone(), ns)
            .get_opt(name)
            .await
            .unwrap()?;
        let c = es
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready")?;
        Some((c.status, c.message.unwrap_or_default()))
    }

    async fn wait_ready(&self, ns: &str, name: &str, status: &str) -> String {
        emulated::eventually(&format!("{ns}/{name} Ready {status}"), WAIT, || async {
            self.ready(ns, name)
                .await
                .filter(|(s, _)| s == status)
                .map(|(_, m)| m)
        })
        .await
    }
}

/// A SecretStore `vault` in `ns` on mount `secret`, and a ClusterSecretStore `shared` on mount
/// `other` for namespaces labelled `vault: allowed`, each with its own token.
fn stores(server: &str, ns: &str, reader: &str, other: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Secret
metadata:
  name: vault-token
  namespace: {ns}
stringData:
  token: {reader}
---
apiVersion: v1
kind: Secret
metadata:
  name: other-token
  namespace: vaultgate-system
stringData:
  token: {other}
---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata:
  name: vault
  namespace: {ns}
spec:
  provider:
    vault:
      server: "{server}"
      path: secret
      auth:
        tokenSecretRef:
          name: vault-token
          key: token
---
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata:
  name: shared
spec:
  conditions:
  - namespaceSelector:
      matchLabels:
        vault: allowed
  provider:
    vault:
      server: "{server}"
      path: other
      auth:
        tokenSecretRef:
          name: other-token
          namespace: vaultgate-system
          key: token
"#
    )
}

/// `data[0]` from the ExternalSecret's default store (or the SecretStore named on the entry
/// when `default` is `None`), `dataFrom[0]` from the ClusterSecretStore `shared`.
fn mixed_es(ns: &str, name: &str, default: Option<&str>) -> String {
    let (store_ref, entry_ref) = match default {
        Some(s) => (format!("  secretStoreRef:\n    name: {s}\n"), String::new()),
        None => (
            String::new(),
            "    sourceRef:\n      storeRef:\n        name: vault\n        kind: SecretStore\n"
                .to_string(),
        ),
    };
    format!(
        r#"
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata:
  name: {name}
  namespace: {ns}
spec:
  refreshInterval: 1h
{store_ref}  target:
    name: {name}
  data:
  - secretKey: k
    remoteRef:
      key: p
      property: k
{entry_ref}  dataFrom:
  - extract:
      key: q
    sourceRef:
      storeRef:
        name: shared
        kind: ClusterSecretStore
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_read_their_own_stores_and_follow_their_changes() {
    let env = env().await;
    env.vault
        .kv2_put("secret", "p", json!({"k": "from-secret"}))
        .unwrap();
    env.vault
        .kv2_put("other", "q", json!({"x": "one", "y": "two"}))
        .unwrap();
    env.vault
        .kv2_put("other2", "q", json!({"x": "moved"}))
        .unwrap();
    let reader = env.vault.create_token(&["reader"], None);
    let other = env.vault.create_token(&["other"], None);
    env.apply(&stores(&env.vault.addr(), "team-b", &reader, &other))
        .await;
    env.apply(&mixed_es("team-b", "mixed", Some("vault"))).await;
    env.apply(&mixed_es("team-b", "own-only", None)).await;
    let both = [("k", "from-secret"), ("x", "one"), ("y", "two")];
    env.wait_data("team-b", "mixed", &both).await;
    env.wait_data("team-b", "own-only", &both).await;
    assert_eq!(
        env.wait_ready("team-b", "own-only", "True").await,
        "secret synced"
    );

    // Each token reads only its own mount: the entries could only have been read through
    // their own stores' logins. Moving the ClusterSecretStore to another mount re-syncs
    // both (refreshInterval 1h: only the store change can bring the new value).
    let api: Api<ClusterSecretStore> = Api::all(env.kc.clone());
    let mut css = api.get("shared").await.unwrap();
    css.spec.store.provider.vault.as_mut().unwrap().path = Some("other2".into());
    css.metadata.managed_fields = None;
    api.replace("shared", &PostParams::default(), &css)
        .await
        .unwrap();
    let moved = [("k", "from-secret"), ("x", "moved")];
    env.wait_data("team-b", "mixed", &moved).await;
    env.wait_data("team-b", "own-only", &moved).await;
    env.controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_store_that_refuses_the_namespace_fails_the_entry() {
    let env = env().await;
    env.vault
        .kv2_put("secret", "p", json!({"k": "from-secret"}))
        .unwrap();
    env.vault
        .kv2_put("other", "q", json!({"x": "one"}))
        .unwrap();
    let reader = env.vault.create_token(&["reader"], None);
    let other = env.vault.create_token(&["other"], None);
    // team-a is not labelled `vault: allowed`.
    env.apply(&stores(&env.vault.addr(), "team-a", &reader, &other))
        .await;
    env.apply(&mixed_es("team-a", "refused", Some("vault")))
        .await;
    let msg = env.wait_ready("team-a", "refused", "False").await;
    assert!(
        msg.contains(
            "spec.dataFrom[0].sourceRef.storeRef: using cluster store \"shared\" is not allowed \
             from namespace \"team-a\""
        ),
        "{msg}"
    );
    // The entry on the default store alone is not written: the Secret is all or nothing.
    assert!(env.data("team-a", "refused").await.is_none());
    env.controller.stop().await;
}
