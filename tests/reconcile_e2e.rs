//! The reconciler end to end, against the Kubernetes and Vault emulators: Secrets appear, follow
//! Vault, come back when deleted, go per deletionPolicy; stores report their state; failures
//! keep what was written.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube_emulator::KubeEmulator;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use vault_emulator::{VaultEmulator, VaultEmulatorConfig};
use vaultgate::api::{ClusterSecretStore, ExternalSecret, SecretStore};
use vaultgate::metrics::Metrics;
use vaultgate::reconcile::{ControllerConfig, run};
use vaultgate::vault::VaultClients;

#[path = "support/emulated.rs"]
mod emulated;
use emulated::READER;

/// Waits for conditions at most this long (tests stay well under 30 s).
const WAIT: Duration = Duration::from_secs(12);

struct Env {
    kube: KubeEmulator,
    vault: VaultEmulator,
    kc: kube::Client,
    metrics: Metrics,
    clients: VaultClients,
    controller: emulated::Running,
}

fn config() -> ControllerConfig {
    emulated::controller_config(16)
}

async fn emulators() -> (KubeEmulator, VaultEmulator, kube::Client) {
    let allowed: &[(&str, &str)] = &[("vault", "allowed")];
    let emulated::Emulators { vault, kube, kc } = emulated::start(
        VaultEmulatorConfig::default(),
        &[
            ("default", &[]),
            ("team-a", &[]),
            ("team-b", allowed),
            ("vaultgate-system", &[]),
        ],
    )
    .await;
    vault.put_policy("reader", READER).unwrap();
    emulated::apply_crds(&kube).await;
    (kube, vault, kc)
}

async fn env_with(cfg: ControllerConfig) -> Env {
    let (kube, vault, kc) = emulators().await;
    let controller = emulated::Running::start(kc.clone(), cfg);
    Env {
        kube,
        vault,
        kc,
        metrics: controller.metrics.clone(),
        clients: controller.clients.clone(),
        controller,
    }
}

async fn env() -> Env {
    env_with(config()).await
}

/// [`emulated::eventually`] within [`WAIT`].
async fn eventually<T, F, Fut>(what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    emulated::eventually(what, WAIT, f).await
}

impl Env {
    async fn stop(self) {
        self.controller.stop().await;
    }

    async fn apply(&self, yaml: &str) {
        self.kube.apply_yaml(yaml).await.unwrap();
    }

    fn secrets(&self, ns: &str) -> Api<Secret> {
        Api::namespaced(self.kc.clone(), ns)
    }

    fn es_api(&self, ns: &str) -> Api<ExternalSecret> {
        Api::namespaced(self.kc.clone(), ns)
    }

    async fn secret(&self, ns: &str, name: &str) -> Option<Secret> {
        self.secrets(ns).get_opt(name).await.unwrap()
    }

    async fn value(&self, ns: &str, name: &str, key: &str) -> Option<String> {
        let s = self.secret(ns, name).await?;
        let v = s.data?.get(key)?.0.clone();
        Some(String::from_utf8(v).unwrap())
    }

    async fn wait_value(&self, ns: &str, name: &str, key: &str, want: &str) {
        eventually(&format!("{ns}/{name}[{key}] = {want:?}"), || async {
            (self.value(ns, name, key).await.as_deref() == Some(want)).then_some(())
        })
        .await
    }

    /// The Ready condition of an ExternalSecret as (status, reason, message).
    async fn es_ready(&self, ns: &str, name: &str) -> Option<(String, String, String)> {
        let es = self.es_api(ns).get_opt(name).await.unwrap()?;
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

    async fn wait_es(&self, ns: &str, name: &str, status: &str, reason: &str) -> String {
        eventually(&format!("{ns}/{name} Ready {status} {reason}"), || async {
            match self.es_ready(ns, name).await {
                Some((s, r, m)) if s == status && r == reason => Some(m),
                _ => None,
            }
        })
        .await
    }

    async fn store_ready(&self, ns: Option<&str>, name: &str) -> Option<(String, String, String)> {
        let status = match ns {
            Some(ns) => {
                Api::<SecretStore>::namespaced(self.kc.clone(), ns)
                    .get_opt(name)
                    .await
                    .unwrap()?
                    .status?
            }
            None => {
                Api::<ClusterSecretStore>::all(self.kc.clone())
                    .get_opt(name)
                    .await
                    .unwrap()?
                    .status?
            }
        };
        let c = status.conditions.into_iter().find(|c| c.type_ == "Ready")?;
        Some((
            c.status,
            c.reason.unwrap_or_default(),
            c.message.unwrap_or_default(),
        ))
    }

    async fn events(&self, ns: &str, regarding: &str) -> Vec<(String, String, String)> {
        let api: Api<K8sEvent> = Api::namespaced(self.kc.clone(), ns);
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(regarding))
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Waits for an event about `regarding` with `reason` (events are written from a queue,
    /// after the status) and returns it as (type, reason, note).
    async fn wait_event(
        &self,
        ns: &str,
        regarding: &str,
        reason: &str,
    ) -> (String, String, String) {
        eventually(
            &format!("a {reason} event about {ns}/{regarding}"),
            || async {
                self.events(ns, regarding)
                    .await
                    .into_iter()
                    .find(|e| e.1 == reason)
            },
        )
        .await
    }

    /// Waits for the Ready condition to have `status` and a message containing `part`.
    async fn wait_es_message(
        &self,
        ns: &str,
        name: &str,
        status: &str,
        part: &str,
    ) -> (String, String) {
        eventually(
            &format!("{ns}/{name} Ready {status} saying {part:?}"),
            || async {
                match self.es_ready(ns, name).await {
                    Some((s, r, m)) if s == status && m.contains(part) => Some((r, m)),
                    _ => None,
                }
            },
        )
        .await
    }

    /// A Secret `ns/vault-token` holding a fresh token with the reader policy.
    async fn token_secret(&self, ns: &str) -> String {
        let token = self.vault.create_token(&["reader"], None);
        self.apply(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: vault-token\n  namespace: {ns}\nstringData:\n  token: {token}\n"
        ))
        .await;
        token
    }

    /// A SecretStore `team-a/vault` with token auth, KV `path` of `version`.
    async fn secret_store(&self, path: &str, version: &str, refresh: &str) {
        self.token_secret("team-a").await;
        self.apply(&format!(
            r#"
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata:
  name: vault
  namespace: team-a
spec:
  refreshInterval: {refresh}
  provider:
    vault:
      server: "{server}"
      path: {path}
      version: {version}
      auth:
        tokenSecretRef:
          name: vault-token
          key: token
"#,
            server = self.vault.addr()
        ))
        .await;
    }

    /// An ExternalSecret in team-a on SecretStore `vault`; `extra` is spliced into its spec.
    async fn external_secret(&self, name: &str, target: &str, extra_target: &str, data: &str) {
        self.apply(&format!(
            r#"
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata:
  name: {name}
  namespace: team-a
  labels:
    app: web
spec:
  refreshInterval: 1s
  secretStoreRef:
    kind: SecretStore
    name: vault
  target:
    name: {target}
{extra_target}
  data:
{data}
"#
        ))
        .await;
    }
}

fn data_entry(secret_key: &str, key: &str, property: &str) -> String {
    format!(
        "  - secretKey: {secret_key}\n    remoteRef:\n      key: {key}\n      property: {property}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_manifests_produce_the_secret() {
    let env = env().await;
    env.vault
        .kv2_put("secret", "my-app/api-key", json!({"value": "abc123"}))
        .unwrap();
    let token = env.vault.create_token(&["reader"], None);
    let seed = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples/seed-v1beta1.yaml"),
    )
    .unwrap()
    .replace("https://vault.example.com", &env.vault.addr())
    .replace("REPLACE-ME", &token);
    env.apply(&seed).await;

    env.wait_value(
        "default",
        "my-app-k8s-secret",
        "api-key",
        r#"{"value":"abc123"}"#,
    )
    .await;
    let s = env.secret("default", "my-app-k8s-secret").await.unwrap();
    let labels = s.metadata.labels.clone().unwrap();
    assert_eq!(labels["reconcile.external-secrets.io/managed"], "true");
    assert!(
        s.metadata.annotations.as_ref().unwrap()["reconcile.external-secrets.io/data-hash"].len()
            == 64
    );
    let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("ExternalSecret", "my-app-secret", Some(true))
    );
    assert_eq!(s.type_.as_deref(), Some("Opaque"));

    let msg = env
        .wait_es("default", "my-app-secret", "True", "SecretSynced")
        .await;
    assert_eq!(msg, "secret synced");
    let es = env.es_api("default").get("my-app-secret").await.unwrap();
    let st = es.status.unwrap();
    assert_eq!(st.binding.unwrap().name, "my-app-k8s-secret");
    assert!(st.refresh_time.is_some());
    assert!(
        st.synced_resource_version
            .unwrap()
            .starts_with(&format!("{}-", es.metadata.generation.unwrap()))
    );
    // The store's token is referent (read in each ExternalSecret's namespace).
    let (status, reason, _) = eventually("store status", || async {
        env.store_ready(None, "vault-backend").await
    })
    .await;
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "ValidationUnknown")
    );
    let events = eventually("Created event", || async {
        let ev = env.events("default", "my-app-secret").await;
        ev.iter().any(|e| e.1 == "Created").then_some(ev)
    })
    .await;
    assert!(events.iter().all(|e| !e.2.contains("abc123")), "{events:?}");

    let text = env.metrics.render();
    assert!(
        text.contains(
            r#"externalsecret_status_condition{condition="Ready",name="my-app-secret",namespace="default",status="True"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"externalsecret_sync_calls_total{name="my-app-secret",namespace="default"}"#
        )
    );
    assert!(text.contains(
        r#"externalsecret_reconcile_duration{name="my-app-secret",namespace="default"}"#
    ));
    assert!(!text.contains("abc123"));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_changes_follow_and_deleted_or_edited_secrets_come_back() {
    let env = env().await;
    env.secret_store("secret", "v2", "1m").await;
    env.vault
        .kv2_put(
            "secret",
            "app/db",
            json!({"password": "one", "user": "app"}),
        )
        .unwrap();
    env.external_secret(
        "db",
        "db-creds",
        "",
        &(data_entry("password", "app/db", "password") + &data_entry("user", "app/db", "user")),
    )
    .await;
    env.wait_value("team-a", "db-creds", "password", "one")
        .await;
    assert_eq!(
        env.value("team-a", "db-creds", "user").await.as_deref(),
        Some("app")
    );
    // ExternalSecret labels are copied.
    let s = env.secret("team-a", "db-creds").await.unwrap();
    assert_eq!(s.metadata.labels.unwrap()["app"], "web");

    // A change in Vault shows up within one refreshInterval (1 s, plus at most 10% jitter).
    env.vault
        .kv2_put(
            "secret",
            "app/db",
            json!({"password": "two", "user": "app"}),
        )
        .unwrap();
    let changed = Instant::now();
    env.wait_value("team-a", "db-creds", "password", "two")
        .await;
    assert!(
        changed.elapsed() < Duration::from_secs(4),
        "{:?}",
        changed.elapsed()
    );
    let updated = eventually("Updated event", || async {
        env.events("team-a", "db")
            .await
            .into_iter()
            .find(|e| e.1 == "Updated")
    })
    .await;
    assert_eq!(updated.0, "Normal");

    // Deleting the Secret brings it back.
    env.secrets("team-a")
        .delete("db-creds", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_value("team-a", "db-creds", "password", "two")
        .await;

    // Editing it by hand is undone: the value restored, the added key removed.
    let mut s = env.secret("team-a", "db-creds").await.unwrap();
    let data = s.data.as_mut().unwrap();
    data.insert(
        "password".into(),
        k8s_openapi::ByteString(b"hacked".to_vec()),
    );
    data.insert("extra".into(), k8s_openapi::ByteString(b"x".to_vec()));
    s.metadata.managed_fields = None;
    env.secrets("team-a")
        .replace("db-creds", &PostParams::default(), &s)
        .await
        .unwrap();
    eventually("edited Secret restored", || async {
        let s = env.secret("team-a", "db-creds").await?;
        let d = s.data?;
        (d.get("password").map(|v| v.0.as_slice()) == Some(b"two".as_slice())
            && !d.contains_key("extra"))
        .then_some(())
    })
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_version_1_mount() {
    let env = env().await;
    env.vault.enable_kv("kv1", 1).unwrap();
    env.vault
        .kv1_put("kv1", "legacy/app", json!({"token": "v1-value"}))
        .unwrap();
    env.secret_store("kv1", "v1", "1m").await;
    env.external_secret(
        "legacy",
        "legacy",
        "",
        &data_entry("token", "legacy/app", "token"),
    )
    .await;
    env.wait_value("team-a", "legacy", "token", "v1-value")
        .await;
    env.vault
        .kv1_put("kv1", "legacy/app", json!({"token": "v1-next"}))
        .unwrap();
    env.wait_value("team-a", "legacy", "token", "v1-next").await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_policies() {
    let env = env().await;
    env.secret_store("secret", "v2", "1m").await;
    env.vault.kv2_put("secret", "p", json!({"k": "v"})).unwrap();
    let entry = data_entry("k", "p", "k");

    // Delete: the Secret it controls goes with the ExternalSecret (a finalizer makes sure).
    env.external_secret(
        "del",
        "del",
        "    creationPolicy: Owner\n    deletionPolicy: Delete",
        &entry,
    )
    .await;
    env.wait_value("team-a", "del", "k", "v").await;
    eventually("finalizer", || async {
        let es = env.es_api("team-a").get("del").await.ok()?;
        es.metadata
            .finalizers?
            .contains(&"externalsecrets.external-secrets.io/externalsecret-cleanup".to_string())
            .then_some(())
    })
    .await;
    env.es_api("team-a")
        .delete("del", &DeleteParams::default())
        .await
        .unwrap();
    eventually("Secret and ExternalSecret gone", || async {
        (env.secret("team-a", "del").await.is_none()
            && env.es_api("team-a").get_opt("del").await.unwrap().is_none())
        .then_some(())
    })
    .await;
    // The controller learns of the delete from its watch, a moment after the API server.
    eventually("the deleted ExternalSecret's metrics forgotten", || async {
        (!env.metrics.render().contains(r#"name="del""#)).then_some(())
    })
    .await;

    // Retain: no finalizer needed, the Secret stays.
    env.external_secret(
        "keep",
        "keep",
        "    creationPolicy: Orphan\n    deletionPolicy: Retain",
        &entry,
    )
    .await;
    env.wait_value("team-a", "keep", "k", "v").await;
    let es = env.es_api("team-a").get("keep").await.unwrap();
    assert!(es.metadata.finalizers.unwrap_or_default().is_empty());
    env.es_api("team-a")
        .delete("keep", &DeleteParams::default())
        .await
        .unwrap();
    eventually("ExternalSecret gone", || async {
        env.es_api("team-a")
            .get_opt("keep")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(env.value("team-a", "keep", "k").await.as_deref(), Some("v"));

    // Merge: into somebody's Secret; on deletion only our keys leave.
    env.apply("apiVersion: v1\nkind: Secret\nmetadata:\n  name: shared\n  namespace: team-a\nstringData:\n  theirs: keep-me\n")
        .await;
    env.external_secret(
        "merge",
        "shared",
        "    creationPolicy: Merge\n    deletionPolicy: Merge",
        &entry,
    )
    .await;
    env.wait_value("team-a", "shared", "k", "v").await;
    assert_eq!(
        env.value("team-a", "shared", "theirs").await.as_deref(),
        Some("keep-me")
    );
    env.wait_es("team-a", "merge", "True", "SecretSynced").await;
    env.es_api("team-a")
        .delete("merge", &DeleteParams::default())
        .await
        .unwrap();
    eventually("our key removed, theirs kept", || async {
        let s = env.secret("team-a", "shared").await?;
        let d = s.data.unwrap_or_default();
        (!d.contains_key("k") && d.contains_key("theirs")).then_some(())
    })
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_without_target_reports_missing_and_none_writes_nothing() {
    let env = env().await;
    env.secret_store("secret", "v2", "1m").await;
    env.vault.kv2_put("secret", "p", json!({"k": "v"})).unwrap();
    let entry = data_entry("k", "p", "k");
    env.external_secret("m", "absent", "    creationPolicy: Merge", &entry)
        .await;
    let msg = env.wait_es("team-a", "m", "True", "SecretMissing").await;
    assert!(msg.contains("absent"), "{msg}");
    env.external_secret("n", "never", "    creationPolicy: None", &entry)
        .await;
    env.wait_es("team-a", "n", "True", "SecretSynced").await;
    assert!(env.secret("team-a", "never").await.is_none());
    assert!(env.secret("team-a", "absent").await.is_none());
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_down_keeps_the_secret_then_recovers() {
    let env = env().await;
    // The store re-validates every second, so its recovery is seen quickly.
    env.secret_store("secret", "v2", "1").await;
    env.vault
        .kv2_put("secret", "p", json!({"k": "before"}))
        .unwrap();
    env.external_secret("es", "target", "", &data_entry("k", "p", "k"))
        .await;
    env.wait_value("team-a", "target", "k", "before").await;

    env.vault.set_down(true);
    let msg = env
        .wait_es("team-a", "es", "False", "SecretSyncedError")
        .await;
    assert!(msg.contains("Vault") || msg.contains("vault"), "{msg}");
    // The Secret is untouched while Vault is away.
    assert_eq!(
        env.value("team-a", "target", "k").await.as_deref(),
        Some("before")
    );
    let failed = eventually("UpdateFailed event", || async {
        env.events("team-a", "es")
            .await
            .into_iter()
            .find(|e| e.1 == "UpdateFailed")
    })
    .await;
    assert_eq!(failed.0, "Warning");

    env.vault
        .kv2_put("secret", "p", json!({"k": "after"}))
        .unwrap();
    env.vault.set_down(false);
    env.wait_value("team-a", "target", "k", "after").await;
    env.wait_es("team-a", "es", "True", "SecretSynced").await;
    let text = env.metrics.render();
    assert!(text.contains(r#"externalsecret_sync_calls_error{name="es",namespace="team-a"}"#));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_status_follows_vault() {
    let env = env().await;
    env.secret_store("secret", "v2", "1m").await;
    let (s, r, m) = eventually("store validated", || async {
        env.store_ready(Some("team-a"), "vault").await
    })
    .await;
    assert_eq!(
        (s.as_str(), r.as_str(), m.as_str()),
        ("True", "Valid", "store validated")
    );
    let ss = Api::<SecretStore>::namespaced(env.kc.clone(), "team-a")
        .get("vault")
        .await
        .unwrap();
    assert_eq!(
        ss.status.unwrap().capabilities.as_deref(),
        Some("ReadWrite")
    );
    assert!(env.metrics.render().contains(
        r#"vaultgate_store_ready{kind="SecretStore",name="vault",namespace="team-a"} 1"#
    ));

    // A revoked token: the store says so, and its ExternalSecrets report it plainly.
    env.apply(&format!(
        r#"
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata:
  name: broken
  namespace: team-a
spec:
  provider:
    vault:
      server: "{}"
      path: secret
      auth:
        tokenSecretRef:
          name: bad-token
          key: token
---
apiVersion: v1
kind: Secret
metadata:
  name: bad-token
  namespace: team-a
stringData:
  token: not-a-token
"#,
        env.vault.addr()
    ))
    .await;
    let (s, r, m) = eventually("broken store", || async {
        env.store_ready(Some("team-a"), "broken")
            .await
            .filter(|c| c.0 == "False")
    })
    .await;
    assert_eq!((s.as_str(), r.as_str()), ("False", "InvalidProviderConfig"));
    assert!(m.starts_with("unable to"), "{m}");
    assert!(!m.contains("not-a-token"), "{m}");
    env.apply(
        r#"
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata:
  name: on-broken
  namespace: team-a
spec:
  refreshInterval: 1s
  secretStoreRef:
    name: broken
  data:
  - secretKey: k
    remoteRef:
      key: p
"#,
    )
    .await;
    let msg = env
        .wait_es("team-a", "on-broken", "False", "SecretSyncedError")
        .await;
    assert!(
        msg.contains("SecretStore team-a/broken is not ready"),
        "{msg}"
    );
    assert!(env.secret("team-a", "on-broken").await.is_none());
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_leave_secrets_untouched() {
    let env = env().await;
    env.secret_store("secret", "v2", "1m").await;
    env.vault.kv2_put("secret", "p", json!({"k": "v"})).unwrap();
    env.vault
        .kv2_put("secret", "other", json!({"k": "w"}))
        .unwrap();
    let entry = data_entry("k", "p", "k");
    env.external_secret("first", "contested", "", &entry).await;
    env.wait_value("team-a", "contested", "k", "v").await;
    let before = env.secret("team-a", "contested").await.unwrap();

    // A second ExternalSecret on the same target is refused.
    env.external_secret("second", "contested", "", &data_entry("k", "other", "k"))
        .await;
    let msg = env
        .wait_es("team-a", "second", "False", "SecretSyncedError")
        .await;
    assert!(
        msg.contains("controlled by ExternalSecret \"first\""),
        "{msg}"
    );
    let after = env.secret("team-a", "contested").await.unwrap();
    assert_eq!(before.data, after.data);
    assert_eq!(
        before.metadata.owner_references,
        after.metadata.owner_references
    );

    // Templates render the Secret from the fetched values.
    env.external_secret(
        "templated",
        "templated",
        "    template:\n      data:\n        x: \"user={{ .k | upper }}\"",
        &entry,
    )
    .await;
    env.wait_value("team-a", "templated", "x", "user=V").await;
    let s = env.secret("team-a", "templated").await.unwrap();
    assert_eq!(
        s.data.unwrap().len(),
        1,
        "only the templated key (mergePolicy Replace)"
    );

    // Template type and metadata are.
    env.external_secret(
        "typed",
        "typed",
        "    template:\n      type: kubernetes.io/basic-auth\n      metadata:\n        labels:\n          tier: db",
        &data_entry("username", "p", "k"),
    )
    .await;
    env.wait_value("team-a", "typed", "username", "v").await;
    let s = env.secret("team-a", "typed").await.unwrap();
    assert_eq!(s.type_.as_deref(), Some("kubernetes.io/basic-auth"));
    assert_eq!(s.metadata.labels.unwrap()["tier"], "db");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_store_conditions_and_controller_class() {
    let env = env().await;
    env.vault.kv2_put("secret", "p", json!({"k": "v"})).unwrap();
    let token = env.vault.create_token(&["reader"], None);
    env.apply(&format!(
        r#"
apiVersion: v1
kind: Secret
metadata:
  name: vault-token
  namespace: vaultgate-system
stringData:
  token: {token}
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
      path: secret
      auth:
        tokenSecretRef:
          name: vault-token
          namespace: vaultgate-system
          key: token
---
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata:
  name: elsewhere
spec:
  controller: other-class
  provider:
    vault:
      server: "{server}"
      path: secret
      auth:
        tokenSecretRef:
          name: vault-token
          namespace: vaultgate-system
          key: token
"#,
        server = env.vault.addr()
    ))
    .await;
    let es = |ns: &str, name: &str, store: &str| {
        format!(
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  refreshInterval: 1s\n  secretStoreRef:\n    kind: ClusterSecretStore\n    name: {store}\n  data:\n  - secretKey: k\n    remoteRef:\n      key: p\n      property: k\n"
        )
    };
    env.apply(&es("team-b", "allowed", "shared")).await;
    env.apply(&es("team-a", "denied", "shared")).await;
    env.apply(&es("team-a", "other-class", "elsewhere")).await;
    env.wait_value("team-b", "allowed", "k", "v").await;
    let msg = env
        .wait_es("team-a", "denied", "False", "SecretSyncedError")
        .await;
    assert_eq!(
        msg,
        "using cluster store \"shared\" is not allowed from namespace \"team-a\": denied by spec.condition"
    );
    assert!(env.secret("team-a", "denied").await.is_none());
    let (s, r, _) = eventually("cluster store validated", || async {
        env.store_ready(None, "shared").await
    })
    .await;
    assert_eq!((s.as_str(), r.as_str()), ("True", "Valid"));
    // Another controller class: neither the store nor its ExternalSecrets are touched.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(env.store_ready(None, "elsewhere").await.is_none());
    assert!(env.es_ready("team-a", "other-class").await.is_none());
    assert!(env.secret("team-a", "other-class").await.is_none());
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_external_secrets_cost_one_login() {
    let env = env().await;
    env.vault.enable_auth("userpass", "userpass").unwrap();
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{}/v1/auth/userpass/users/sync", env.vault.addr()))
        .header("x-vault-token", env.vault.root_token())
        .json(&json!({"password": "pw-123", "token_policies": ["reader"], "token_ttl": "1h"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{:?}", resp.text().await);
    env.vault
        .kv2_put("secret", "shared", json!({"k": "v"}))
        .unwrap();
    let mut yaml = format!(
        r#"
apiVersion: v1
kind: Secret
metadata:
  name: vault-password
  namespace: team-a
stringData:
  password: pw-123
---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata:
  name: vault
  namespace: team-a
spec:
  provider:
    vault:
      server: "{}"
      path: secret
      auth:
        userPass:
          username: sync
          secretRef:
            name: vault-password
            key: password
"#,
        env.vault.addr()
    );
    for i in 0..200 {
        yaml.push_str(&format!(
            "---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata:\n  name: es-{i}\n  namespace: team-a\nspec:\n  refreshInterval: 1h\n  secretStoreRef:\n    name: vault\n  data:\n  - secretKey: k\n    remoteRef:\n      key: shared\n      property: k\n"
        ));
    }
    env.apply(&yaml).await;
    eventually("200 Secrets", || async {
        let list = env
            .secrets("team-a")
            .list(&ListParams::default().labels("reconcile.external-secrets.io/managed=true"))
            .await
            .unwrap();
        (list.items.len() == 200).then_some(())
    })
    .await;
    assert_eq!(env.vault.count_logins(), 1);
    assert_eq!(env.clients.login_count(), 1);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_scoping() {
    let mut cfg = config();
    cfg.namespace = Some("team-b".into());
    let env = env_with(cfg).await;
    env.secret_store("secret", "v2", "1m").await;
    env.vault.kv2_put("secret", "p", json!({"k": "v"})).unwrap();
    env.external_secret("outside", "outside", "", &data_entry("k", "p", "k"))
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(env.secret("team-a", "outside").await.is_none());
    assert!(env.es_ready("team-a", "outside").await.is_none());
    assert!(env.store_ready(Some("team-a"), "vault").await.is_none());
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_election_one_writer_and_hand_over_on_shutdown() {
    let (kube, vault, kc) = emulators().await;
    vault.kv2_put("secret", "p", json!({"k": "v"})).unwrap();
    let start = |identity: &str| {
        let mut cfg = config();
        cfg.leader_elect = true;
        cfg.identity = identity.into();
        let metrics = Metrics::new();
        let token = CancellationToken::new();
        let task = tokio::spawn(run(
            kc.clone(),
            VaultClients::new(kc.clone(), metrics.clone()),
            metrics,
            cfg,
            token.clone(),
        ));
        (token, task)
    };
    let (stop_a, task_a) = start("replica-a");
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(kc.clone(), "vaultgate-system");
    let holder = || async {
        leases
            .get_opt("vaultgate-controller")
            .await
            .unwrap()
            .and_then(|l| l.spec?.holder_identity)
    };
    let first = eventually("a leader", || async { holder().await }).await;
    assert_eq!(first, "replica-a");
    let (stop_b, task_b) = start("replica-b");

    let token = vault.create_token(&["reader"], None);
    kube.apply_yaml(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: vault-token\n  namespace: team-a\nstringData:\n  token: {token}\n---\napiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata:\n  name: vault\n  namespace: team-a\nspec:\n  provider:\n    vault:\n      server: \"{}\"\n      path: secret\n      auth:\n        tokenSecretRef:\n          name: vault-token\n          key: token\n---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata:\n  name: es\n  namespace: team-a\nspec:\n  refreshInterval: 1h\n  secretStoreRef:\n    name: vault\n  data:\n  - secretKey: k\n    remoteRef:\n      key: p\n      property: k\n",
        vault.addr()
    ))
    .await
    .unwrap();
    let secrets: Api<Secret> = Api::namespaced(kc.clone(), "team-a");
    eventually("Secret written by the leader", || async {
        secrets.get_opt("es").await.unwrap()
    })
    .await;
    // Only the leader writes: one field manager on the Secret.
    let s = secrets.get("es").await.unwrap();
    let managers: Vec<String> = s
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(managers, ["vaultgate/team-a/es"]);
    assert_eq!(holder().await.as_deref(), Some("replica-a"));

    // The leader stops: it releases the Lease and the other replica takes over at once.
    stop_a.cancel();
    tokio::time::timeout(Duration::from_secs(10), task_a)
        .await
        .expect("leader stops in time")
        .unwrap()
        .unwrap();
    eventually("replica-b leads", || async {
        (holder().await.as_deref() == Some("replica-b")).then_some(())
    })
    .await;
    // The new leader reconciles: a deleted Secret comes back.
    secrets
        .delete("es", &DeleteParams::default())
        .await
        .unwrap();
    eventually("Secret restored by the new leader", || async {
        secrets.get_opt("es").await.unwrap()
    })
    .await;
    stop_b.cancel();
    tokio::time::timeout(Duration::from_secs(10), task_b)
        .await
        .expect("second leader stops in time")
        .unwrap()
        .unwrap();
    let l = leases.get("vaultgate-controller").await.unwrap();
    assert_eq!(l.spec.unwrap().holder_identity, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_secret_gone_with_deletion_policy_delete() {
    let env = env().await;
    env.secret_store("secret", "v2", "1m").await;
    let version = env
        .vault
        .kv2_put("secret", "short-lived", json!({"k": "v"}))
        .unwrap();
    env.external_secret(
        "temp",
        "temp",
        "    creationPolicy: Owner\n    deletionPolicy: Delete",
        &data_entry("k", "short-lived", "k"),
    )
    .await;
    env.wait_value("team-a", "temp", "k", "v").await;
    env.vault
        .kv2_delete_versions("secret", "short-lived", &[version])
        .unwrap();
    let msg = env.wait_es("team-a", "temp", "True", "SecretDeleted").await;
    assert_eq!(msg, "secret deleted due to DeletionPolicy=Delete");
    assert!(env.secret("team-a", "temp").await.is_none());
    // Events are written from a queue after the status: waited for, not read at once.
    let missing = env
        .wait_event("team-a", "temp", "MissingProviderSecret")
        .await;
    assert_eq!(missing.0, "Warning");
    let deleted = env.wait_event("team-a", "temp", "Deleted").await;
    assert_eq!(
        (deleted.0.as_str(), deleted.2.as_str()),
        ("Normal", "secret deleted due to DeletionPolicy=Delete")
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_change_resyncs_and_immutable_targets_stay() {
    let env = env().await;
    env.vault.enable_kv("secret2", 2).unwrap();
    env.vault
        .put_policy(
            "reader",
            &format!("{READER}\npath \"secret2/data/*\" {{ capabilities = [\"read\"] }}\n"),
        )
        .unwrap();
    env.secret_store("secret", "v2", "1m").await;
    env.vault
        .kv2_put("secret", "p", json!({"k": "from-secret"}))
        .unwrap();
    env.vault
        .kv2_put("secret2", "p", json!({"k": "from-secret2"}))
        .unwrap();
    // A long refreshInterval: only the store change can bring the new value.
    env.apply(
        r#"
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata:
  name: slow
  namespace: team-a
spec:
  refreshInterval: 1h
  secretStoreRef:
    name: vault
  data:
  - secretKey: k
    remoteRef:
      key: p
      property: k
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata:
  name: frozen
  namespace: team-a
spec:
  refreshInterval: 1s
  secretStoreRef:
    name: vault
  target:
    immutable: true
  data:
  - secretKey: k
    remoteRef:
      key: p
      property: k
"#,
    )
    .await;
    env.wait_value("team-a", "slow", "k", "from-secret").await;
    env.wait_value("team-a", "frozen", "k", "from-secret").await;
    assert_eq!(
        env.secret("team-a", "frozen").await.unwrap().immutable,
        Some(true)
    );
    let mut store = Api::<SecretStore>::namespaced(env.kc.clone(), "team-a")
        .get("vault")
        .await
        .unwrap();
    store.spec.provider.vault.as_mut().unwrap().path = Some("secret2".into());
    store.metadata.managed_fields = None;
    Api::<SecretStore>::namespaced(env.kc.clone(), "team-a")
        .replace("vault", &PostParams::default(), &store)
        .await
        .unwrap();
    env.wait_value("team-a", "slow", "k", "from-secret2").await;
    // The immutable target keeps what was first written, and stays Ready.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        env.value("team-a", "frozen", "k").await.as_deref(),
        Some("from-secret")
    );
    env.wait_es("team-a", "frozen", "True", "SecretSynced")
        .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_steps_down_when_the_lease_is_taken() {
    let mut cfg = config();
    cfg.leader_elect = true;
    cfg.identity = "replica-a".into();
    let env = env_with(cfg).await;
    env.secret_store("secret", "v2", "1m").await;
    env.vault.kv2_put("secret", "p", json!({"k": "v"})).unwrap();
    env.external_secret("es", "target", "", &data_entry("k", "p", "k"))
        .await;
    env.wait_value("team-a", "target", "k", "v").await;

    // Someone else holds the Lease now (as after a partition): the replica must stop writing.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(env.kc.clone(), "vaultgate-system");
    let mut lease = leases.get("vaultgate-controller").await.unwrap();
    let spec = lease.spec.as_mut().unwrap();
    spec.holder_identity = Some("intruder".into());
    spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    spec.lease_duration_seconds = Some(60);
    lease.metadata.managed_fields = None;
    leases
        .replace("vaultgate-controller", &PostParams::default(), &lease)
        .await
        .unwrap();
    // One renewal period later the replica has noticed.
    tokio::time::sleep(Duration::from_secs(5)).await;
    env.secrets("team-a")
        .delete("target", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        env.secret("team-a", "target").await.is_none(),
        "a replica that lost the Lease must not write"
    );
    let l = leases.get("vaultgate-controller").await.unwrap();
    assert_eq!(l.spec.unwrap().holder_identity.as_deref(), Some("intruder"));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_read_vault_but_write_only_changes() {
    let env = env().await;
    env.secret_store("secret", "v2", "1m").await;
    env.vault.kv2_put("secret", "p", json!({"k": "v"})).unwrap();
    env.external_secret("steady", "steady", "", &data_entry("k", "p", "k"))
        .await;
    env.wait_value("team-a", "steady", "k", "v").await;
    let rv = env
        .secret("team-a", "steady")
        .await
        .unwrap()
        .metadata
        .resource_version;
    let (refreshed, es_rv) = eventually("the first sync's status", || async {
        let es = env.es_api("team-a").get("steady").await.unwrap();
        let t = es.status?.refresh_time?;
        Some((t, es.metadata.resource_version))
    })
    .await;
    let reads = env.vault.count_kv_reads();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    // Vault was read again (refreshInterval 1 s) …
    assert!(env.vault.count_kv_reads() >= reads + 2);
    // … and nothing changed, so the status was not written either: `refreshTime` lags refreshes
    // that changed nothing by up to five minutes.
    let es = env.es_api("team-a").get("steady").await.unwrap();
    assert_eq!(es.status.unwrap().refresh_time, Some(refreshed));
    assert_eq!(es.metadata.resource_version, es_rv);
    // … but the unchanged Secret was not written.
    assert_eq!(
        env.secret("team-a", "steady")
            .await
            .unwrap()
            .metadata
            .resource_version,
        rv
    );
    // The Created event is written before any later one of the same queue: once it is there,
    // an Updated event from the refreshes above would be too.
    env.wait_event("team-a", "steady", "Created").await;
    let updated = env.events("team-a", "steady").await;
    assert!(!updated.iter().any(|e| e.1 == "Updated"), "{updated:?}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_recover_after_410_and_api_errors_back_off() {
    let env = env().await;
    env.secret_store("secret", "v2", "1m").await;
    env.vault.kv2_put("secret", "p", json!({"k": "v"})).unwrap();
    env.external_secret("es", "target", "", &data_entry("k", "p", "k"))
        .await;
    env.wait_value("team-a", "target", "k", "v").await;

    // Every watch ends and its resourceVersion is too old to resume (410 Gone): the
    // controller relists and keeps working.
    env.kube.compact();
    env.kube.drop_watches();
    env.secrets("team-a")
        .delete("target", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_value("team-a", "target", "k", "v").await;

    // The API server refuses the next writes of the Secret: the sync fails, is reported, and
    // succeeds on a later attempt without any outside help.
    env.kube.fail_next(
        kube_emulator::FaultFilter::verb_resource("patch", "secrets"),
        1,
        500,
    );
    env.vault.kv2_put("secret", "p", json!({"k": "w"})).unwrap();
    let msg = env
        .wait_es("team-a", "es", "False", "SecretSyncedError")
        .await;
    assert!(
        msg.starts_with("could not update Secret \"target\""),
        "{msg}"
    );
    assert_eq!(
        env.value("team-a", "target", "k").await.as_deref(),
        Some("v")
    );
    env.wait_value("team-a", "target", "k", "w").await;
    env.wait_es("team-a", "es", "True", "SecretSynced").await;
    env.stop().await;
}

/// A first sync does not read a target Secret the cache does not know (it is most likely
/// absent) and writes it without force; a Secret by that name that is someone else's must still
/// be judged as a read-first sync judges it. With creationPolicy Owner the ExternalSecret would
/// become its controller, and Kubernetes would delete it with the ExternalSecret: a Secret
/// holding data it did not write is not taken over (the write is refused on a conflicting key,
/// or taken back when it merged into disjoint keys); an empty one is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_unlabelled_secrets_are_adopted_only_when_empty() {
    let env = env().await;
    env.secret_store("secret", "v2", "1m").await;
    env.vault
        .kv2_put("secret", "adopt", json!({"k": "from-vault"}))
        .unwrap();
    let secrets = env.secrets("team-a");
    for (name, data) in [
        ("conflicting", json!({"k": "b2xk", "extra": "eA=="})),
        ("disjoint", json!({"extra": "eA=="})),
        ("empty", json!({})),
    ] {
        let s: Secret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": "team-a"},
            "data": data,
        }))
        .unwrap();
        secrets.create(&PostParams::default(), &s).await.unwrap();
    }
    let before = |name: &'static str| {
        let secrets = secrets.clone();
        async move { secrets.get(name).await.unwrap().data }
    };
    let conflicting = before("conflicting").await;
    let disjoint = before("disjoint").await;
    let entry = data_entry("k", "adopt", "k");
    for name in ["conflicting", "disjoint", "empty"] {
        env.external_secret(name, name, "", &entry).await;
    }
    for (name, was) in [("conflicting", conflicting), ("disjoint", disjoint)] {
        let (reason, msg) = env
            .wait_es_message("team-a", name, "False", "is not taken over")
            .await;
        assert_eq!(reason, "SecretSyncedError");
        assert!(msg.contains("creationPolicy Owner"), "{msg}");
        // Whatever the first write added is gone again.
        let s = eventually(&format!("{name} as it was"), || async {
            let s = env.secret("team-a", name).await?;
            (s.data == was && s.metadata.owner_references.is_none()).then_some(s)
        })
        .await;
        let labels = s.metadata.labels.unwrap_or_default();
        assert!(
            !labels.contains_key("reconcile.external-secrets.io/managed"),
            "{name}: {labels:?}"
        );
    }
    // An empty Secret is taken over: our data only, owned by the ExternalSecret.
    let s = eventually("empty holds the Vault key", || async {
        let s = env.secret("team-a", "empty").await?;
        let data = s.data.clone()?;
        (data.len() == 1 && data["k"].0 == b"from-vault").then_some(s)
    })
    .await;
    let owners = s.metadata.owner_references.unwrap_or_default();
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!(owners[0].name, "empty");
    assert_eq!(owners[0].controller, Some(true));
    env.wait_es("team-a", "empty", "True", "SecretSynced").await;
    env.stop().await;
}

/// An API server that never answers the first lists (down, overloaded, or a list that hangs):
/// a shutdown must still end the controller at once, not wait for a list that its own shutdown
/// stopped waiting for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_before_the_first_list_ends_promptly() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (kc, held) = kube_emulator::silent_api_server().await;
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run(
        kc.clone(),
        VaultClients::new(kc, metrics.clone()),
        metrics,
        config(),
        shutdown.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!task.is_finished(), "the controller runs while it waits");
    let asked = Instant::now();
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("run returns promptly after shutdown")
        .unwrap()
        .unwrap();
    assert!(asked.elapsed() < Duration::from_secs(5));
    held.abort();
}

/// Empty provider data never empties a Secret under deletionPolicy Retain: a `find` folder
/// that is gone is a missing secret (an error, the Secret kept), an `extract` of `{}` leaves
/// the Secret as it is with ESO's status and a Warning event; deletionPolicy Delete deletes
/// only with creationPolicy Owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_provider_data_leaves_the_secret_alone() {
    let env = env().await;
    env.secret_store("secret", "v2", "1m").await;
    env.vault
        .kv2_put("secret", "app/one", json!({"a": "1"}))
        .unwrap();
    env.vault
        .kv2_put("secret", "app/two", json!({"b": "2"}))
        .unwrap();
    env.vault
        .kv2_put("secret", "obj", json!({"x": "1"}))
        .unwrap();
    env.vault
        .kv2_put("secret", "gone", json!({"y": "1"}))
        .unwrap();
    let es = |name: &str, policies: &str, from: &str| {
        format!(
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata:\n  name: {name}\n  namespace: team-a\nspec:\n  refreshInterval: 1s\n  secretStoreRef:\n    name: vault\n  target:\n{policies}\n  dataFrom:\n  - {from}\n"
        )
    };
    env.apply(&es(
        "found",
        "    creationPolicy: Owner",
        "find: {path: app, name: {regexp: \".*\"}}",
    ))
    .await;
    env.apply(&es(
        "extracted",
        "    creationPolicy: Owner",
        "extract: {key: obj}",
    ))
    .await;
    env.apply(&es(
        "orphan-delete",
        "    creationPolicy: Orphan\n    deletionPolicy: Delete",
        "extract: {key: gone}",
    ))
    .await;
    env.wait_value("team-a", "found", "app_one", r#"{"a":"1"}"#)
        .await;
    env.wait_value("team-a", "extracted", "x", "1").await;
    env.wait_value("team-a", "orphan-delete", "y", "1").await;
    let found = env.secret("team-a", "found").await.unwrap();
    let extracted = env.secret("team-a", "extracted").await.unwrap();
    let orphaned = env.secret("team-a", "orphan-delete").await.unwrap();

    // The folder is deleted in Vault: LIST answers 404, which is not an empty folder.
    env.vault.kv2_delete_all("secret", "app/one").unwrap();
    env.vault.kv2_delete_all("secret", "app/two").unwrap();
    let (reason, msg) = env
        .wait_es_message("team-a", "found", "False", "nothing is listed under")
        .await;
    assert_eq!(reason, "SecretSyncedError");
    assert!(msg.contains("secret/metadata/app/"), "{msg}");

    // An extract of `{}`: nothing to write, and the Secret kept as ESO keeps it.
    env.vault.kv2_put("secret", "obj", json!({})).unwrap();
    let (reason, _) = env
        .wait_es_message(
            "team-a",
            "extracted",
            "True",
            "secret retained due to DeletionPolicy=Retain",
        )
        .await;
    assert_eq!(reason, "SecretSynced");
    let (type_, _, note) = env
        .wait_event("team-a", "extracted", "ProviderDataEmpty")
        .await;
    assert_eq!(type_, "Warning");
    assert!(
        note.contains("spec.dataFrom[0].extract (key \"obj\")"),
        "{note}"
    );

    // Delete with creationPolicy Orphan: refused, as ESO refuses it.
    env.vault.kv2_delete_all("secret", "gone").unwrap();
    let (reason, msg) = env
        .wait_es_message("team-a", "orphan-delete", "False", "is not Owner")
        .await;
    assert_eq!(reason, "SecretSyncedError");
    assert!(msg.contains("creationPolicy=Orphan"), "{msg}");

    for (name, was) in [
        ("found", found),
        ("extracted", extracted),
        ("orphan-delete", orphaned),
    ] {
        let now = env
            .secret("team-a", name)
            .await
            .expect("the Secret is kept");
        assert_eq!(now.data, was.data, "{name}: the data is unchanged");
        assert_eq!(
            now.metadata.resource_version, was.metadata.resource_version,
            "{name}: the Secret was not written"
        );
    }
    env.stop().await;
}

/// Only a Secret this ExternalSecret controls (its controller ownerReference) is deleted: a
/// Secret another ExternalSecret wrote as Orphan carries the shared managed label, and an
/// ExternalSecret with the same target, creationPolicy Orphan and deletionPolicy Delete (which
/// someone without `delete secrets` may create) must not delete it when it goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_needs_a_controller_reference_not_the_shared_label() {
    let env = env().await;
    env.secret_store("secret", "v2", "1m").await;
    env.vault.kv2_put("secret", "p", json!({"k": "v"})).unwrap();
    let entry = data_entry("k", "p", "k");
    env.external_secret("first", "shared", "    creationPolicy: Orphan", &entry)
        .await;
    env.wait_value("team-a", "shared", "k", "v").await;
    let s = env.secret("team-a", "shared").await.unwrap();
    assert_eq!(
        s.metadata.labels.as_ref().unwrap()["reconcile.external-secrets.io/managed"],
        "true"
    );
    env.external_secret(
        "second",
        "shared",
        "    creationPolicy: Orphan\n    deletionPolicy: Delete",
        &entry,
    )
    .await;
    eventually("the finalizer of the second", || async {
        let es = env.es_api("team-a").get("second").await.ok()?;
        es.metadata
            .finalizers?
            .iter()
            .any(|f| f.ends_with("externalsecret-cleanup"))
            .then_some(())
    })
    .await;
    env.wait_es("team-a", "second", "True", "SecretSynced")
        .await;
    env.es_api("team-a")
        .delete("second", &DeleteParams::default())
        .await
        .unwrap();
    // The cleanup runs before the finalizer comes off: once the object is gone, it is done.
    eventually("the second ExternalSecret gone", || async {
        env.es_api("team-a")
            .get_opt("second")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        env.secret("team-a", "shared").await.is_some(),
        "a Secret no ExternalSecret controls is never deleted"
    );
    env.stop().await;
}

/// The latest KV v2 version deleted (or destroyed) in Vault: Vault answers the read with 404
/// and the version's metadata. Under deletionPolicy Retain the Secret is kept and the status
/// says what happened; under Merge the keys go, as in ESO (Delete: see
/// `provider_secret_gone_with_deletion_policy_delete`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_latest_version_is_reported_and_retained() {
    let env = env().await;
    env.secret_store("secret", "v2", "1m").await;
    let v_kept = env
        .vault
        .kv2_put("secret", "kept", json!({"k": "v"}))
        .unwrap();
    env.vault
        .kv2_put("secret", "burnt", json!({"k": "v"}))
        .unwrap();
    let v_merged = env
        .vault
        .kv2_put("secret", "merged", json!({"k": "v"}))
        .unwrap();
    env.external_secret("kept", "kept", "", &data_entry("k", "kept", "k"))
        .await;
    env.external_secret("burnt", "burnt", "", &data_entry("k", "burnt", "k"))
        .await;
    env.external_secret(
        "merged",
        "merged",
        "    creationPolicy: Owner\n    deletionPolicy: Merge",
        &data_entry("k", "merged", "k"),
    )
    .await;
    for name in ["kept", "burnt", "merged"] {
        env.wait_value("team-a", name, "k", "v").await;
    }
    let kept = env.secret("team-a", "kept").await.unwrap();
    let burnt = env.secret("team-a", "burnt").await.unwrap();

    env.vault
        .kv2_delete_versions("secret", "kept", &[v_kept])
        .unwrap();
    let (reason, msg) = env
        .wait_es_message("team-a", "kept", "False", "was deleted in Vault at ")
        .await;
    assert_eq!(reason, "SecretSyncedError");
    assert!(
        msg.contains("the latest version of \"secret/data/kept\" was deleted in Vault at 20"),
        "{msg}"
    );

    // Destroyed without a soft delete first: no deletion time, and said so.
    let http = reqwest::Client::new();
    let reply = http
        .post(format!("{}/v1/secret/destroy/burnt", env.vault.addr()))
        .header("X-Vault-Token", env.vault.root_token())
        .json(&json!({"versions": [1]}))
        .send()
        .await
        .unwrap();
    assert!(reply.status().is_success(), "{}", reply.status());
    let (_, msg) = env
        .wait_es_message("team-a", "burnt", "False", "was destroyed in Vault")
        .await;
    assert!(
        msg.contains("the latest version of \"secret/data/burnt\" was destroyed in Vault"),
        "{msg}"
    );
    for (name, was) in [("kept", kept), ("burnt", burnt)] {
        let now = env
            .secret("team-a", name)
            .await
            .expect("the Secret is kept");
        assert_eq!(now.data, was.data, "{name}");
        assert_eq!(now.metadata.resource_version, was.metadata.resource_version);
    }

    // deletionPolicy Merge: the entry is skipped and the keys it wrote go; the Secret stays.
    env.vault
        .kv2_delete_versions("secret", "merged", &[v_merged])
        .unwrap();
    eventually("the merged key removed", || async {
        let s = env.secret("team-a", "merged").await?;
        s.data.unwrap_or_default().is_empty().then_some(())
    })
    .await;
    env.wait_event("team-a", "merged", "MissingProviderSecret")
        .await;
    env.stop().await;
}
