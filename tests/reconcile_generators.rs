//! Generators through the reconciler, against the Kubernetes and Vault emulators: Password,
//! UUID and SSHKey values appear in the Secret and change on each refresh; VaultDynamicSecret
//! reads (GET) and writes (with parameters); a ClusterGenerator; a generator's change
//! re-syncs, and its failure leaves the Secret as it is.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::{Api, ListParams};
use kube_emulator::KubeEmulator;
use serde_json::json;
use vault_emulator::{VaultEmulator, VaultEmulatorConfig};
use vaultgate::api::ExternalSecret;

#[path = "support/emulated.rs"]
mod emulated;
use emulated::READER;

const WAIT: Duration = Duration::from_secs(15);

/// Token creation for the VaultDynamicSecret write test.
const MINTER: &str = r#"
path "auth/token/create" { capabilities = ["update"] }
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
        &[("team-a", &[]), ("team-b", &[]), ("vaultgate-system", &[])],
    )
    .await;
    vault.put_policy("reader", READER).unwrap();
    vault.put_policy("minter", MINTER).unwrap();
    emulated::apply_crds(&kube).await;
    let controller = emulated::Running::start(kc.clone(), emulated::controller_config(8));
    Env {
        kube,
        vault,
        kc,
        controller,
    }
}

async fn eventually<T, F, Fut>(what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    emulated::eventually(what, WAIT, f).await
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

    /// Waits for the Secret to exist with every key of `keys`.
    async fn wait_keys(&self, ns: &str, name: &str, keys: &[&str]) -> BTreeMap<String, String> {
        eventually(&format!("{ns}/{name} with keys {keys:?}"), || async {
            self.data(ns, name)
                .await
                .filter(|d| keys.iter().all(|k| d.contains_key(*k)))
        })
        .await
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

    async fn wait_ready_message(&self, ns: &str, name: &str, status: &str, part: &str) -> String {
        eventually(
            &format!("{ns}/{name} Ready {status} saying {part:?}"),
            || async {
                self.ready(ns, name)
                    .await
                    .filter(|(s, m)| s == status && m.contains(part))
                    .map(|(_, m)| m)
            },
        )
        .await
    }

    async fn wait_event(&self, ns: &str, regarding: &str, reason: &str, part: &str) {
        let api: Api<K8sEvent> = Api::namespaced(self.kc.clone(), ns);
        eventually(
            &format!("a {reason} event about {ns}/{regarding}"),
            || async {
                api.list(&ListParams::default())
                    .await
                    .unwrap()
                    .items
                    .into_iter()
                    .find(|e| {
                        e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(regarding)
                            && e.reason.as_deref() == Some(reason)
                            && e.note.as_deref().is_some_and(|n| n.contains(part))
                    })
                    .map(|_| ())
            },
        )
        .await
    }

    /// A Secret `ns/vault-token` with a token of `policies`.
    async fn token_secret(&self, ns: &str, policies: &[&str]) {
        let token = self.vault.create_token(policies, None);
        self.apply(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: vault-token\n  namespace: {ns}\nstringData:\n  token: {token}\n"
        ))
        .await;
    }

    /// An ExternalSecret with no store: every entry names a generator.
    async fn generator_es(&self, ns: &str, name: &str, refresh: &str, data_from: &str) {
        self.apply(&format!(
            r#"
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata:
  name: {name}
  namespace: {ns}
spec:
  refreshInterval: {refresh}
  target:
    name: {name}
  dataFrom:
{data_from}
"#
        ))
        .await;
    }
}

fn generator_entry(kind: &str, name: &str) -> String {
    format!(
        "  - sourceRef:\n      generatorRef:\n        apiVersion: generators.external-secrets.io/v1alpha1\n        kind: {kind}\n        name: {name}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_uuid_and_ssh_key_fill_the_secret_and_change_on_each_refresh() {
    let env = env().await;
    env.apply(
        r#"
apiVersion: generators.external-secrets.io/v1alpha1
kind: Password
metadata: {name: pw, namespace: team-a}
spec: {length: 20, digits: 4, symbols: 0, noUpper: true, allowRepeat: true, secretKeys: [db, api]}
---
apiVersion: generators.external-secrets.io/v1alpha1
kind: UUID
metadata: {name: id, namespace: team-a}
spec: {}
---
apiVersion: generators.external-secrets.io/v1alpha1
kind: SSHKey
metadata: {name: key, namespace: team-a}
spec: {keyType: ed25519, comment: deploy@example}
"#,
    )
    .await;
    // The UUID's key is rewritten, as ESO applies `rewrite` to a generator's output.
    let entries = format!(
        "{}{}    rewrite:\n    - regexp: {{source: \"^uuid$\", target: request-id}}\n{}",
        generator_entry("Password", "pw"),
        generator_entry("UUID", "id"),
        generator_entry("SSHKey", "key"),
    );
    env.generator_es("team-a", "made", "1s", &entries).await;
    let first = env
        .wait_keys(
            "team-a",
            "made",
            &["db", "api", "request-id", "privateKey", "publicKey"],
        )
        .await;
    assert!(!first.contains_key("uuid"), "{:?}", first.keys());
    for k in ["db", "api"] {
        let pw = &first[k];
        assert_eq!(pw.len(), 20, "{k}");
        assert_eq!(pw.chars().filter(|c| c.is_ascii_digit()).count(), 4, "{k}");
        assert!(
            pw.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
            "{k}"
        );
    }
    assert_ne!(first["db"], first["api"]);
    assert_eq!(first["request-id"].len(), 36);
    assert!(first["publicKey"].starts_with("ssh-ed25519 "));
    assert!(first["publicKey"].ends_with(" deploy@example\n"));
    assert!(first["privateKey"].starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
    // Each refresh (every second) makes every value anew.
    let later = eventually("every generated value to change", || async {
        env.data("team-a", "made").await.filter(|d| {
            ["db", "api", "request-id", "privateKey", "publicKey"]
                .iter()
                .all(|k| d.get(*k).is_some_and(|v| *v != first[*k]))
        })
    })
    .await;
    assert_eq!(later["db"].len(), 20);
    env.controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_dynamic_secret_reads_and_writes() {
    let env = env().await;
    env.vault.enable_kv("kv1", 1).unwrap();
    env.vault
        .kv1_put("kv1", "app", json!({"user": "app", "pass": "s3cret"}))
        .unwrap();
    env.token_secret("team-a", &["reader", "minter"]).await;
    let provider = format!(
        "  provider:\n    server: \"{}\"\n    auth:\n      tokenSecretRef: {{name: vault-token, key: token}}\n",
        env.vault.addr()
    );
    env.apply(&format!(
        r#"
apiVersion: generators.external-secrets.io/v1alpha1
kind: VaultDynamicSecret
metadata: {{name: read, namespace: team-a}}
spec:
  path: kv1/app
{provider}---
apiVersion: generators.external-secrets.io/v1alpha1
kind: VaultDynamicSecret
metadata: {{name: mint, namespace: team-a}}
spec:
  path: auth/token/create
  method: POST
  parameters: {{policies: [reader], ttl: 1h, no_parent: false}}
  resultType: Auth
{provider}"#
    ))
    .await;
    env.generator_es(
        "team-a",
        "read",
        "1h",
        &generator_entry("VaultDynamicSecret", "read"),
    )
    .await;
    let got = env.wait_keys("team-a", "read", &["user", "pass"]).await;
    assert_eq!(
        (got["user"].as_str(), got["pass"].as_str()),
        ("app", "s3cret")
    );

    let before = env.vault.live_tokens();
    env.generator_es(
        "team-a",
        "mint",
        "1h",
        &generator_entry("VaultDynamicSecret", "mint"),
    )
    .await;
    let got = env
        .wait_keys("team-a", "mint", &["client_token", "policies"])
        .await;
    assert!(!got["client_token"].is_empty());
    assert!(got["policies"].contains("reader"), "{}", got["policies"]);
    assert!(env.vault.live_tokens() > before);
    // The write went out as a write with the parameters as its body.
    let writes: Vec<_> = env
        .vault
        .requests()
        .into_iter()
        .filter(|r| r.path == "auth/token/create" && r.status == 200)
        .collect();
    assert!(
        writes
            .iter()
            .any(|r| r.method == "PUT" || r.method == "POST"),
        "{:?}",
        writes.iter().map(|r| &r.method).collect::<Vec<_>>()
    );
    env.controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_generator_changes_and_failures() {
    let env = env().await;
    env.apply(
        r#"
apiVersion: generators.external-secrets.io/v1alpha1
kind: ClusterGenerator
metadata: {name: shared-pw}
spec:
  kind: Password
  generator:
    passwordSpec: {length: 12, digits: 2, symbols: 2, noUpper: false, allowRepeat: false}
"#,
    )
    .await;
    // Refreshed only on change: what follows is driven by the generator's watch.
    env.generator_es(
        "team-b",
        "cg",
        "1h",
        &generator_entry("ClusterGenerator", "shared-pw"),
    )
    .await;
    let first = env.wait_keys("team-b", "cg", &["password"]).await;
    assert_eq!(first["password"].chars().count(), 12);

    // A spec that cannot be met: the sync fails naming the generator, the Secret stays.
    env.apply(
        r#"
apiVersion: generators.external-secrets.io/v1alpha1
kind: ClusterGenerator
metadata: {name: shared-pw}
spec:
  kind: Password
  generator:
    passwordSpec: {length: 4, digits: 3, symbols: 3, noUpper: false, allowRepeat: false}
"#,
    )
    .await;
    let msg = env
        .wait_ready_message(
            "team-b",
            "cg",
            "False",
            "generator ClusterGenerator shared-pw",
        )
        .await;
    assert!(msg.contains("exceed length (4)"), "{msg}");
    env.wait_event("team-b", "cg", "UpdateFailed", "ClusterGenerator shared-pw")
        .await;
    assert_eq!(env.data("team-b", "cg").await.unwrap(), first);

    // Fixed: the change re-syncs, with a new password of the new length.
    env.apply(
        r#"
apiVersion: generators.external-secrets.io/v1alpha1
kind: ClusterGenerator
metadata: {name: shared-pw}
spec:
  kind: Password
  generator:
    passwordSpec: {length: 30, noUpper: false, allowRepeat: true}
"#,
    )
    .await;
    eventually("a 30-character password", || async {
        env.data("team-b", "cg")
            .await
            .filter(|d| d["password"].chars().count() == 30)
    })
    .await;

    // A generator that does not exist: reported, and nothing written.
    env.generator_es(
        "team-a",
        "nothing",
        "1h",
        &generator_entry("Password", "absent"),
    )
    .await;
    let msg = env
        .wait_ready_message(
            "team-a",
            "nothing",
            "False",
            "Password team-a/absent not found",
        )
        .await;
    assert!(
        msg.contains("spec.dataFrom[0].sourceRef.generatorRef"),
        "{msg}"
    );
    assert!(env.data("team-a", "nothing").await.is_none());
    env.controller.stop().await;
}
