//! PushSecrets whose source is a generator (`spec.selector.generatorRef`), against the
//! Kubernetes and Vault emulators: the generator's keys are pushed, a new value on each
//! refresh (ESO runs the generator on every push); a VaultDynamicSecret behind a
//! ClusterGenerator is refused without calling Vault; a missing generator names itself.

use std::future::Future;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use kube_emulator::KubeEmulator;
use serde_json::{Value, json};
use vault_emulator::{VaultEmulator, VaultEmulatorConfig};
use vaultgate::api::PushSecret;

#[path = "support/emulated.rs"]
mod emulated;

const WAIT: Duration = Duration::from_secs(12);

const WRITER: &str = r#"
path "secret/data/*" { capabilities = ["create", "read", "update", "delete"] }
path "secret/metadata/*" { capabilities = ["create", "read", "update", "delete"] }
"#;

struct Env {
    kube: KubeEmulator,
    vault: VaultEmulator,
    kc: kube::Client,
    http: reqwest::Client,
    controller: emulated::Running,
}

async fn env() -> Env {
    let emulated::Emulators { vault, kube, kc } =
        emulated::start(VaultEmulatorConfig::default(), &[("team-a", &[])]).await;
    vault.put_policy("writer", WRITER).unwrap();
    emulated::apply_crds(&kube).await;
    let controller = emulated::Running::start(kc.clone(), emulated::controller_config(4));
    let http = reqwest::Client::builder()
        .tls_certs_only(Vec::new())
        .build()
        .unwrap();
    let env = Env {
        kube,
        vault,
        kc,
        http,
        controller,
    };
    env.store().await;
    env
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

    /// A SecretStore `team-a/vault` on KV v2 `secret`, writing with the writer policy.
    async fn store(&self) {
        let token = self.vault.create_token(&["writer"], None);
        self.apply(&format!(
            r#"
apiVersion: v1
kind: Secret
metadata: {{name: vault-token, namespace: team-a}}
stringData: {{token: {token}}}
---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {{name: vault, namespace: team-a}}
spec:
  provider:
    vault:
      server: "{server}"
      path: secret
      version: v2
      auth:
        tokenSecretRef: {{name: vault-token, key: token}}
"#,
            server = self.vault.addr()
        ))
        .await;
    }

    /// A PushSecret `name` pushing generator `kind` `generator`: key `password` to property
    /// `password` of `app/pw`, and every key to `app/whole`.
    async fn push(&self, name: &str, kind: &str, generator: &str, refresh: &str) {
        self.apply(&format!(
            r#"
apiVersion: external-secrets.io/v1alpha1
kind: PushSecret
metadata: {{name: {name}, namespace: team-a}}
spec:
  refreshInterval: {refresh}
  secretStoreRefs: [{{name: vault, kind: SecretStore}}]
  selector:
    generatorRef:
      apiVersion: generators.external-secrets.io/v1alpha1
      kind: {kind}
      name: {generator}
  data:
  - match: {{secretKey: password, remoteRef: {{remoteKey: app/pw, property: password}}}}
  - match: {{remoteRef: {{remoteKey: app/whole}}}}
"#
        ))
        .await;
    }

    fn ps_api(&self) -> Api<PushSecret> {
        Api::namespaced(self.kc.clone(), "team-a")
    }

    async fn wait_ready(&self, name: &str, status: &str, reason: &str) -> String {
        eventually(&format!("{name} Ready {status} {reason}"), || async {
            let ps = self.ps_api().get_opt(name).await.unwrap()?;
            let c = ps
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Ready")?;
            (c.status == status && c.reason.as_deref() == Some(reason))
                .then(|| c.message.unwrap_or_default())
        })
        .await
    }

    async fn kv2(&self, key: &str) -> Option<Value> {
        let r = self
            .http
            .get(format!("{}/v1/secret/data/{key}", self.vault.addr()))
            .header("X-Vault-Token", self.vault.root_token())
            .send()
            .await
            .unwrap();
        if r.status().as_u16() != 200 {
            return None;
        }
        Some(r.json::<Value>().await.unwrap()["data"]["data"].clone())
    }

    /// The password at `app/pw` once it is other than `not`.
    async fn wait_password(&self, not: Option<&str>) -> String {
        eventually(&format!("app/pw other than {not:?}"), || async {
            let v = self.kv2("app/pw").await?;
            let pw = v["password"].as_str()?.to_string();
            (Some(pw.as_str()) != not).then_some(pw)
        })
        .await
    }
}

const PASSWORD: &str = r#"
apiVersion: generators.external-secrets.io/v1alpha1
kind: Password
metadata: {name: pw, namespace: team-a}
spec: {length: 20, digits: 4, symbols: 0, noUpper: false, allowRepeat: true}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_generator_is_pushed_and_a_change_pushes_a_new_one() {
    let env = env().await;
    env.apply(PASSWORD).await;
    env.push("ps", "Password", "pw", "1h").await;
    let msg = env.wait_ready("ps", "True", "Synced").await;
    assert_eq!(msg, "PushSecret synced successfully");
    let first = env.wait_password(None).await;
    assert_eq!(first.chars().count(), 20);
    assert_eq!(first.chars().filter(char::is_ascii_digit).count(), 4);
    // The whole-output entry carries the generator's keys: one generation per push, so both
    // entries hold the same value.
    assert_eq!(env.kv2("app/whole").await, Some(json!({"password": first})));
    let st = env.ps_api().get("ps").await.unwrap().status.unwrap();
    let keys: Vec<_> = st.synced_push_secrets.unwrap()["SecretStore/vault"]
        .keys()
        .cloned()
        .collect();
    assert_eq!(keys, ["app/pw/password", "app/whole"]);

    // A change of the PushSecret pushes again, with a freshly generated value.
    let patch = json!({"metadata": {"annotations": {"test/nudge": "1"}}});
    env.ps_api()
        .patch("ps", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let second = env.wait_password(Some(&first)).await;
    assert_eq!(second.chars().count(), 20);
    // The push writes its entries one after another: `app/whole` follows `app/pw`.
    let whole = json!({"password": second});
    eventually("app/whole to hold the new password", || async {
        (env.kv2("app/whole").await.as_ref() == Some(&whole)).then_some(())
    })
    .await;
    env.controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_refresh_pushes_a_new_value() {
    let env = env().await;
    env.apply(PASSWORD).await;
    env.push("ps", "Password", "pw", "1s").await;
    let first = env.wait_password(None).await;
    // Nothing changes but the clock: the refresh interval alone rotates the value.
    let second = env.wait_password(Some(&first)).await;
    let third = env.wait_password(Some(&second)).await;
    assert_ne!(first, third);
    env.controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_dynamic_secret_is_refused_without_calling_vault() {
    let env = env().await;
    env.apply(&format!(
        r#"
apiVersion: generators.external-secrets.io/v1alpha1
kind: ClusterGenerator
metadata: {{name: db}}
spec:
  kind: VaultDynamicSecret
  generator:
    vaultDynamicSecretSpec:
      path: database/creds/app
      provider:
        server: "{server}"
        auth:
          tokenSecretRef: {{name: vault-token, key: token}}
"#,
        server = env.vault.addr()
    ))
    .await;
    env.push("ps", "ClusterGenerator", "db", "1h").await;
    let msg = env.wait_ready("ps", "False", "Errored").await;
    assert!(
        msg.contains("spec.selector.generatorRef")
            && msg.contains("ClusterGenerator db")
            && msg.contains("cannot be pushed"),
        "{msg}"
    );
    let touched: Vec<_> = env
        .vault
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("database/") || r.path.starts_with("secret/"))
        .map(|r| r.path)
        .collect();
    assert_eq!(touched, Vec::<String>::new());
    env.controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_generator_is_an_error_naming_it_and_its_creation_is_pushed() {
    let env = env().await;
    env.push("ps", "Password", "pw", "1h").await;
    let msg = env.wait_ready("ps", "False", "Errored").await;
    assert!(
        msg.contains("spec.selector.generatorRef") && msg.contains("Password team-a/pw not found"),
        "{msg}"
    );
    // Created later, it is pushed on the next push (here asked for by a change).
    env.apply(PASSWORD).await;
    let patch = json!({"metadata": {"annotations": {"test/nudge": "1"}}});
    env.ps_api()
        .patch("ps", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let pw = env.wait_password(None).await;
    assert_eq!(pw.chars().count(), 20);
    env.controller.stop().await;
}
