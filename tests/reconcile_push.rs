//! PushSecrets end to end, against the Kubernetes and Vault emulators: keys written with the
//! managed-by marker, properties merged, nothing written when Vault already agrees,
//! check-and-set, IfNotExists, deletionPolicy Delete and None, templates, KV v1, and a source
//! Secret's change pushed at once.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube_emulator::KubeEmulator;
use serde_json::{Value, json};
use vault_emulator::{VaultEmulator, VaultEmulatorConfig};
use vaultgate::api::PushSecret;
use vaultgate::metrics::Metrics;

#[path = "support/emulated.rs"]
mod emulated;

const WAIT: Duration = Duration::from_secs(12);

const WRITER: &str = r#"
path "secret/data/*" { capabilities = ["create", "read", "update", "delete"] }
path "secret/metadata/*" { capabilities = ["create", "read", "update", "delete"] }
path "kv1/*" { capabilities = ["create", "read", "update", "delete"] }
"#;

struct Env {
    kube: KubeEmulator,
    vault: VaultEmulator,
    kc: kube::Client,
    http: reqwest::Client,
    metrics: Metrics,
    controller: emulated::Running,
}

async fn env() -> Env {
    let emulated::Emulators { vault, kube, kc } =
        emulated::start(VaultEmulatorConfig::default(), &[("team-a", &[])]).await;
    vault.put_policy("writer", WRITER).unwrap();
    vault.enable_kv("kv1", 1).unwrap();
    emulated::apply_crds(&kube).await;
    let controller = emulated::Running::start(kc.clone(), emulated::controller_config(8));
    let http = reqwest::Client::builder()
        .tls_certs_only(Vec::new())
        .build()
        .unwrap();
    Env {
        kube,
        vault,
        kc,
        http,
        metrics: controller.metrics.clone(),
        controller,
    }
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

    /// A SecretStore `team-a/vault` writing with a token of the writer policy.
    async fn store(&self, path: &str, version: &str, extra: &str) {
        let token = self.vault.create_token(&["writer"], None);
        self.apply(&format!(
            r#"
apiVersion: v1
kind: Secret
metadata:
  name: vault-token
  namespace: team-a
stringData:
  token: {token}
---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata:
  name: vault
  namespace: team-a
spec:
  provider:
    vault:
      server: "{server}"
      path: {path}
      version: {version}
{extra}      auth:
        tokenSecretRef:
          name: vault-token
          key: token
"#,
            server = self.vault.addr()
        ))
        .await;
    }

    async fn source(&self, name: &str, data: &[(&str, &str)]) {
        let lines: String = data
            .iter()
            .map(|(k, v)| format!("  {k}: {v:?}\n"))
            .collect();
        self.apply(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: team-a\nstringData:\n{lines}"
        ))
        .await;
    }

    fn ps_api(&self) -> Api<PushSecret> {
        Api::namespaced(self.kc.clone(), "team-a")
    }

    /// The Ready condition as (status, reason, message).
    async fn ready(&self, name: &str) -> Option<(String, String, String)> {
        let ps = self.ps_api().get_opt(name).await.unwrap()?;
        let c = ps
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

    async fn wait_ready(&self, name: &str, status: &str, reason: &str) -> String {
        eventually(&format!("{name} Ready {status} {reason}"), || async {
            match self.ready(name).await {
                Some((s, r, m)) if s == status && r == reason => Some(m),
                _ => None,
            }
        })
        .await
    }

    /// A raw Vault GET with the root token: (status, body).
    async fn vault_get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}/v1/{path}", self.vault.addr()))
            .header("X-Vault-Token", self.vault.root_token())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body = r.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }

    async fn kv2(&self, key: &str) -> Option<Value> {
        let (s, body) = self.vault_get(&format!("secret/data/{key}")).await;
        (s == 200).then(|| body["data"]["data"].clone())
    }

    async fn kv2_custom(&self, key: &str) -> Option<Value> {
        let (s, body) = self.vault_get(&format!("secret/metadata/{key}")).await;
        (s == 200).then(|| body["data"]["custom_metadata"].clone())
    }

    async fn wait_kv2(&self, key: &str, want: Value) {
        eventually(&format!("secret/{key} = {want}"), || async {
            (self.kv2(key).await == Some(want.clone())).then_some(())
        })
        .await
    }

    /// Writes (POST/PUT) Vault answered under `secret/`.
    fn writes(&self) -> usize {
        self.vault
            .requests()
            .iter()
            .filter(|r| {
                matches!(r.method.as_str(), "POST" | "PUT") && r.path.starts_with("secret/")
            })
            .count()
    }

    /// Asks for a push now (a changed annotation changes syncedResourceVersion) and waits for it.
    async fn repush(&self, name: &str, n: u32) {
        let patch = json!({"metadata": {"annotations": {"test/nudge": n.to_string()}}});
        let before = self
            .ps_api()
            .get(name)
            .await
            .unwrap()
            .status
            .and_then(|s| s.synced_resource_version);
        self.ps_api()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        eventually(&format!("{name} pushed again"), || async {
            let now = self
                .ps_api()
                .get(name)
                .await
                .unwrap()
                .status
                .and_then(|s| s.synced_resource_version);
            (now.is_some() && now != before).then_some(())
        })
        .await
    }
}

fn push_secret(name: &str, source: &str, extra_spec: &str, data: &str) -> String {
    format!(
        r#"
apiVersion: external-secrets.io/v1alpha1
kind: PushSecret
metadata:
  name: {name}
  namespace: team-a
spec:
  refreshInterval: 1h
  secretStoreRefs:
  - name: vault
    kind: SecretStore
  selector:
    secret:
      name: {source}
{extra_spec}  data:
{data}"#
    )
}

fn entry(key: Option<&str>, remote: &str, property: Option<&str>) -> String {
    let mut s = String::from("  - match:\n");
    if let Some(k) = key {
        s.push_str(&format!("      secretKey: {k}\n"));
    }
    s.push_str(&format!("      remoteRef:\n        remoteKey: {remote}\n"));
    if let Some(p) = property {
        s.push_str(&format!("        property: {p}\n"));
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_with_the_marker_and_writes_nothing_when_vault_agrees() {
    let env = env().await;
    env.store("secret", "v2", "").await;
    env.source("src", &[("password", "p1"), ("user", "u")])
        .await;
    let data =
        entry(Some("password"), "app/db", Some("password")) + &entry(None, "app/whole", None);
    env.apply(&push_secret("ps", "src", "", &data)).await;
    let msg = env.wait_ready("ps", "True", "Synced").await;
    assert_eq!(msg, "PushSecret synced successfully");
    assert_eq!(env.kv2("app/db").await, Some(json!({"password": "p1"})));
    assert_eq!(
        env.kv2("app/whole").await,
        Some(json!({"password": "p1", "user": "u"}))
    );
    for key in ["app/db", "app/whole"] {
        assert_eq!(
            env.kv2_custom(key).await,
            Some(json!({"managed-by": "external-secrets"})),
            "{key}"
        );
    }
    let st = env.ps_api().get("ps").await.unwrap().status.unwrap();
    let synced = st.synced_push_secrets.unwrap();
    let keys: Vec<_> = synced["SecretStore/vault"].keys().cloned().collect();
    assert_eq!(keys, ["app/db/password", "app/whole"]);
    assert!(
        env.metrics
            .render()
            .contains("pushsecret_status_condition{condition=\"Ready\",name=\"ps\",namespace=\"team-a\",status=\"True\"} 1")
    );

    // Pushed again with nothing changed: Vault is read, not written.
    let before = env.writes();
    env.repush("ps", 1).await;
    assert_eq!(
        env.writes(),
        before,
        "no write when Vault holds the same value"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_property_merges_into_a_managed_secret_and_unmanaged_ones_are_refused() {
    let env = env().await;
    env.store("secret", "v2", "").await;
    env.vault
        .kv2_put("secret", "app/db", json!({"user": "u"}))
        .unwrap();
    env.vault
        .kv2_set_custom_metadata(
            "secret",
            "app/db",
            BTreeMap::from([("managed-by".to_string(), "external-secrets".to_string())]),
        )
        .unwrap();
    env.vault
        .kv2_put("secret", "app/theirs", json!({"password": "keep"}))
        .unwrap();
    env.source("src", &[("password", "p1")]).await;
    env.apply(&push_secret(
        "ps",
        "src",
        "",
        &entry(Some("password"), "app/db", Some("password")),
    ))
    .await;
    env.wait_ready("ps", "True", "Synced").await;
    assert_eq!(
        env.kv2("app/db").await,
        Some(json!({"user": "u", "password": "p1"}))
    );

    env.apply(&push_secret(
        "theirs",
        "src",
        "",
        &entry(Some("password"), "app/theirs", Some("password")),
    ))
    .await;
    let msg = env.wait_ready("theirs", "False", "Errored").await;
    assert!(
        msg.contains("\"app/theirs\"") && msg.contains("not managed"),
        "{msg}"
    );
    assert!(!msg.contains("p1") && !msg.contains("keep"), "{msg}");
    assert_eq!(
        env.kv2("app/theirs").await,
        Some(json!({"password": "keep"}))
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_change_is_pushed_at_once() {
    let env = env().await;
    env.store("secret", "v2", "").await;
    env.source("src", &[("password", "p1")]).await;
    env.apply(&push_secret(
        "ps",
        "src",
        "",
        &entry(Some("password"), "app/db", Some("password")),
    ))
    .await;
    env.wait_kv2("app/db", json!({"password": "p1"})).await;
    // refreshInterval is 1h: only the watch of the source can bring this.
    env.source("src", &[("password", "p2")]).await;
    env.wait_kv2("app/db", json!({"password": "p2"})).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_set_carries_the_version() {
    let env = env().await;
    env.store(
        "secret",
        "v2",
        "      checkAndSet:\n        required: true\n",
    )
    .await;
    // The mount refuses writes without cas, as a cas_required mount does.
    env.http
        .post(format!("{}/v1/secret/config", env.vault.addr()))
        .header("X-Vault-Token", env.vault.root_token())
        .json(&json!({"cas_required": true}))
        .send()
        .await
        .unwrap();
    env.source("src", &[("password", "p1")]).await;
    env.apply(&push_secret(
        "ps",
        "src",
        "",
        &entry(Some("password"), "app/db", Some("password")),
    ))
    .await;
    env.wait_kv2("app/db", json!({"password": "p1"})).await;
    env.source("src", &[("password", "p2")]).await;
    env.wait_kv2("app/db", json!({"password": "p2"})).await;
    let (_, meta) = env.vault_get("secret/metadata/app/db").await;
    assert_eq!(meta["data"]["current_version"], 2);
    env.wait_ready("ps", "True", "Synced").await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_not_exists_leaves_an_existing_value() {
    let env = env().await;
    env.store("secret", "v2", "").await;
    env.vault
        .kv2_put("secret", "app/db", json!({"password": "old"}))
        .unwrap();
    env.vault
        .kv2_set_custom_metadata(
            "secret",
            "app/db",
            BTreeMap::from([("managed-by".to_string(), "external-secrets".to_string())]),
        )
        .unwrap();
    env.source("src", &[("password", "new"), ("user", "u")])
        .await;
    let data = entry(Some("password"), "app/db", Some("password"))
        + &entry(Some("user"), "app/db", Some("user"));
    env.apply(&push_secret(
        "ps",
        "src",
        "  updatePolicy: IfNotExists\n",
        &data,
    ))
    .await;
    let msg = env.wait_ready("ps", "True", "Synced").await;
    assert!(
        msg.contains("Existing secrets in providers unchanged"),
        "{msg}"
    );
    // The existing property stays; the missing one is added.
    assert_eq!(
        env.kv2("app/db").await,
        Some(json!({"password": "old", "user": "u"}))
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_policy_delete_removes_what_was_pushed() {
    let env = env().await;
    env.store("secret", "v2", "").await;
    env.source("src", &[("a", "1"), ("b", "2")]).await;
    let data = entry(Some("a"), "app/ab", Some("a"))
        + &entry(Some("b"), "app/ab", Some("b"))
        + &entry(Some("a"), "app/solo", Some("a"));
    env.apply(&push_secret(
        "ps",
        "src",
        "  deletionPolicy: Delete\n",
        &data,
    ))
    .await;
    env.wait_kv2("app/ab", json!({"a": "1", "b": "2"})).await;
    env.wait_kv2("app/solo", json!({"a": "1"})).await;
    let ps = env.ps_api().get("ps").await.unwrap();
    assert!(
        ps.metadata
            .finalizers
            .unwrap_or_default()
            .contains(&"pushsecret.externalsecrets.io/finalizer".to_string())
    );

    // An entry leaving `data`: its property goes, the rest is rewritten.
    let data = entry(Some("a"), "app/ab", Some("a")) + &entry(Some("a"), "app/solo", Some("a"));
    env.apply(&push_secret(
        "ps",
        "src",
        "  deletionPolicy: Delete\n",
        &data,
    ))
    .await;
    env.wait_kv2("app/ab", json!({"a": "1"})).await;

    // The PushSecret deleted: everything it pushed goes, metadata too.
    env.ps_api()
        .delete("ps", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the PushSecret gone", || async {
        env.ps_api()
            .get_opt("ps")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    for key in ["app/ab", "app/solo"] {
        let (s, _) = env.vault_get(&format!("secret/metadata/{key}")).await;
        assert_eq!(s, 404, "{key} removed with its metadata");
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_policy_none_leaves_vault_as_it_is() {
    let env = env().await;
    env.store("secret", "v2", "").await;
    env.source("src", &[("a", "1")]).await;
    env.apply(&push_secret(
        "ps",
        "src",
        "",
        &entry(Some("a"), "app/keep", Some("a")),
    ))
    .await;
    env.wait_kv2("app/keep", json!({"a": "1"})).await;
    let ps = env.ps_api().get("ps").await.unwrap();
    assert!(ps.metadata.finalizers.unwrap_or_default().is_empty());
    env.ps_api()
        .delete("ps", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the PushSecret gone", || async {
        env.ps_api()
            .get_opt("ps")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(env.kv2("app/keep").await, Some(json!({"a": "1"})));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv1_keeps_the_marker_inline_and_deletes() {
    let env = env().await;
    env.store("kv1", "v1", "").await;
    env.source("src", &[("a", "1")]).await;
    env.apply(&push_secret(
        "ps",
        "src",
        "  deletionPolicy: Delete\n",
        &entry(Some("a"), "app/one", Some("a")),
    ))
    .await;
    env.wait_ready("ps", "True", "Synced").await;
    let (s, body) = env.vault_get("kv1/app/one").await;
    assert_eq!(s, 200);
    assert_eq!(
        body["data"],
        json!({"a": "1", "custom_metadata": {"managed-by": "external-secrets"}})
    );
    env.ps_api()
        .delete("ps", &DeleteParams::default())
        .await
        .unwrap();
    eventually("kv1/app/one deleted", || async {
        (env.vault_get("kv1/app/one").await.0 == 404).then_some(())
    })
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_renders_before_the_push() {
    let env = env().await;
    env.store("secret", "v2", "").await;
    env.source("src", &[("user", "u"), ("pass", "p")]).await;
    let tpl = "  template:\n    data:\n      dsn: \"{{ .user }}:{{ .pass }}@db\"\n";
    env.apply(&push_secret(
        "ps",
        "src",
        tpl,
        &entry(Some("dsn"), "app/dsn", Some("dsn")),
    ))
    .await;
    env.wait_kv2("app/dsn", json!({"dsn": "u:p@db"})).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_source_is_an_error_naming_it() {
    let env = env().await;
    env.store("secret", "v2", "").await;
    env.apply(&push_secret(
        "ps",
        "nope",
        "",
        &entry(Some("a"), "app/x", Some("a")),
    ))
    .await;
    let msg = env.wait_ready("ps", "False", "Errored").await;
    assert!(
        msg.contains("could not get source secret") && msg.contains("team-a/nope"),
        "{msg}"
    );
    // Created later, it is pushed without waiting for the refresh interval.
    env.source("nope", &[("a", "1")]).await;
    env.wait_kv2("app/x", json!({"a": "1"})).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_push_secret_provisions_selected_namespaces() {
    use vaultgate::api::ClusterPushSecret;
    let env = env().await;
    env.apply(
        r#"
apiVersion: v1
kind: Namespace
metadata: {name: push-a, labels: {push: "yes"}}
---
apiVersion: v1
kind: Namespace
metadata: {name: push-b, labels: {push: "yes"}}
---
apiVersion: external-secrets.io/v1alpha1
kind: PushSecret
metadata: {name: pushed, namespace: push-b}
spec:
  secretStoreRefs: [{name: vault}]
  selector: {secret: {name: mine}}
  data: [{match: {secretKey: k, remoteRef: {remoteKey: b/k}}}]
---
apiVersion: external-secrets.io/v1alpha1
kind: ClusterPushSecret
metadata: {name: everywhere}
spec:
  pushSecretName: pushed
  pushSecretMetadata: {labels: {from: cluster}}
  namespaceSelectors: [{matchLabels: {push: "yes"}}]
  pushSecretSpec:
    secretStoreRefs: [{name: vault}]
    selector: {secret: {name: src}}
    data: [{match: {secretKey: k, remoteRef: {remoteKey: app/k}}}]
"#,
    )
    .await;
    let cps_api: Api<ClusterPushSecret> = Api::all(env.kc.clone());
    let st = eventually("the ClusterPushSecret's status", || async {
        let st = cps_api.get("everywhere").await.unwrap().status?;
        (!st.provisioned_namespaces.is_empty()).then_some(st)
    })
    .await;
    assert_eq!(st.provisioned_namespaces, ["push-a"]);
    assert_eq!(st.push_secret_name.as_deref(), Some("pushed"));
    // A PushSecret of that name it does not own is left alone and reported.
    assert_eq!(st.failed_namespaces.len(), 1);
    assert_eq!(st.failed_namespaces[0].namespace, "push-b");
    assert_eq!(
        st.failed_namespaces[0].reason.as_deref(),
        Some("push secret already exists in namespace")
    );
    let ready = st.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.status, "False");
    let theirs: PushSecret = Api::namespaced(env.kc.clone(), "push-b")
        .get("pushed")
        .await
        .unwrap();
    assert_eq!(
        theirs.spec.data.unwrap()[0].match_.remote_ref.remote_key,
        "b/k"
    );

    let ours: PushSecret = Api::namespaced(env.kc.clone(), "push-a")
        .get("pushed")
        .await
        .unwrap();
    assert_eq!(ours.metadata.labels.unwrap()["from"], "cluster");
    let owner = &ours.metadata.owner_references.unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("ClusterPushSecret", "everywhere")
    );
    assert_eq!(
        ours.spec.data.unwrap()[0].match_.remote_ref.remote_key,
        "app/k"
    );

    let exists = |ns: &'static str, name: &'static str| {
        let kc = env.kc.clone();
        async move {
            Api::<PushSecret>::namespaced(kc, ns)
                .get_opt(name)
                .await
                .unwrap()
                .is_some()
        }
    };

    // The namespace no longer selected: its PushSecret goes.
    env.apply(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: push-a, labels: {push: \"no\"}}\n",
    )
    .await;
    eventually("the PushSecret in push-a removed", || async {
        (!exists("push-a", "pushed").await).then_some(())
    })
    .await;

    // Selected again, then renamed: the old name goes, the new one comes, and the PushSecret
    // it never owned stays.
    env.apply(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: push-a, labels: {push: \"yes\"}}\n",
    )
    .await;
    eventually("the PushSecret in push-a again", || async {
        exists("push-a", "pushed").await.then_some(())
    })
    .await;
    let mut cps: ClusterPushSecret = cps_api.get("everywhere").await.unwrap();
    cps.spec.push_secret_name = Some("renamed".into());
    cps.metadata.managed_fields = None;
    cps_api
        .replace("everywhere", &Default::default(), &cps)
        .await
        .unwrap();
    eventually("the renamed PushSecrets, the old one gone", || async {
        (exists("push-a", "renamed").await
            && exists("push-b", "renamed").await
            && !exists("push-a", "pushed").await)
            .then_some(())
    })
    .await;
    assert!(exists("push-b", "pushed").await, "theirs is left alone");

    // Deleting the ClusterPushSecret takes its PushSecrets with it, and only those.
    cps_api
        .delete("everywhere", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the ClusterPushSecret's PushSecrets removed", || async {
        (!exists("push-a", "renamed").await && !exists("push-b", "renamed").await).then_some(())
    })
    .await;
    assert!(exists("push-b", "pushed").await, "theirs is left alone");
    env.stop().await;
}
