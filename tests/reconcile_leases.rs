//! The lease lifecycle of VaultDynamicSecret credentials through the reconciler, against the
//! Kubernetes and Vault emulators (database engine): rotated on each refresh with the old lease
//! revoked after the grace; renewed when it would end before the next refresh; minted early
//! near the max TTL; revoked when the ExternalSecret is deleted; picked up after a restart.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams};
use kube_emulator::KubeEmulator;
use vault_emulator::{VaultEmulator, VaultEmulatorConfig};
use vaultgate::api::ExternalSecret;

#[path = "support/emulated.rs"]
mod emulated;

const WAIT: Duration = Duration::from_secs(20);
const ROLE: &str = "db/creds/app/";

const LEASES: &str = r#"
path "db/creds/app" { capabilities = ["read"] }
path "sys/leases/revoke" { capabilities = ["update"] }
path "secret/data/*" { capabilities = ["read"] }
"#;

struct Env {
    kube: KubeEmulator,
    vault: VaultEmulator,
    kc: kube::Client,
}

async fn env(default_ttl: u64, max_ttl: u64) -> Env {
    let emulated::Emulators { vault, kube, kc } = emulated::start(
        VaultEmulatorConfig::default(),
        &[("team-a", &[]), ("vaultgate-system", &[])],
    )
    .await;
    emulated::apply_crds(&kube).await;
    vault
        .put_database_role(
            "db",
            "app",
            Duration::from_secs(default_ttl),
            Duration::from_secs(max_ttl),
        )
        .unwrap();
    vault.put_policy("leases", LEASES).unwrap();
    let env = Env { kube, vault, kc };
    let token = env.vault.create_token(&["leases"], None);
    env.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: vault-token, namespace: team-a}}\nstringData: {{token: {token}}}\n"
    ))
    .await;
    env.apply(&format!(
        r#"
apiVersion: generators.external-secrets.io/v1alpha1
kind: VaultDynamicSecret
metadata: {{name: db, namespace: team-a}}
spec:
  path: db/creds/app
  provider:
    server: "{}"
    auth:
      tokenSecretRef: {{name: vault-token, key: token}}
"#,
        env.vault.addr()
    ))
    .await;
    env
}

fn start(env: &Env) -> emulated::Running {
    emulated::Running::start(env.kc.clone(), emulated::controller_config(4))
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

    /// ExternalSecret `app` whose Secret `app-db` holds the generator's credentials.
    async fn external_secret(&self, refresh: &str, grace: Option<&str>) {
        let annotations = grace
            .map(|g| format!("\n  annotations: {{vaultgate.io/lease-revoke-grace: \"{g}\"}}"))
            .unwrap_or_default();
        self.apply(&format!(
            r#"
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata:
  name: app
  namespace: team-a{annotations}
spec:
  refreshInterval: {refresh}
  target: {{name: app-db}}
  dataFrom:
  - sourceRef:
      generatorRef:
        apiVersion: generators.external-secrets.io/v1alpha1
        kind: VaultDynamicSecret
        name: db
"#
        ))
        .await;
    }

    async fn username(&self) -> Option<String> {
        let s = Api::<Secret>::namespaced(self.kc.clone(), "team-a")
            .get_opt("app-db")
            .await
            .unwrap()?;
        let v = s.data?.get("username")?.0.clone();
        Some(String::from_utf8(v).unwrap())
    }

    async fn wait_username(&self, not: Option<&str>) -> String {
        eventually(&format!("a username other than {not:?}"), || async {
            self.username().await.filter(|u| Some(u.as_str()) != not)
        })
        .await
    }

    /// What Vault says is left of a lease, in seconds.
    async fn lease_ttl(&self, id: &str) -> u64 {
        let resp = reqwest::Client::new()
            .put(format!("{}/v1/sys/leases/lookup", self.vault.addr()))
            .header("x-vault-token", self.vault.root_token())
            .json(&serde_json::json!({ "lease_id": id }))
            .send()
            .await
            .unwrap();
        let body: serde_json::Value = resp.json().await.unwrap();
        body["data"]["ttl"].as_u64().expect("a live lease")
    }

    /// `status.leases` as (id, revokeAfter set).
    async fn status_leases(&self) -> Vec<(String, bool)> {
        let Some(es) = Api::<ExternalSecret>::namespaced(self.kc.clone(), "team-a")
            .get_opt("app")
            .await
            .unwrap()
        else {
            return Vec::new();
        };
        es.status
            .and_then(|s| s.leases)
            .unwrap_or_default()
            .into_iter()
            .map(|l| (l.id, l.revoke_after.is_some()))
            .collect()
    }

    /// Waits until the status names exactly one current lease, live in Vault; returns its id.
    async fn wait_current_lease(&self) -> String {
        eventually("one current lease in the status, live in Vault", || async {
            let current: Vec<String> = self
                .status_leases()
                .await
                .into_iter()
                .filter(|(_, superseded)| !superseded)
                .map(|(id, _)| id)
                .collect();
            match current.as_slice() {
                [id] if self.vault.live_leases(ROLE).contains(id) => Some(id.clone()),
                _ => None,
            }
        })
        .await
    }
}

fn metric(running: &emulated::Running, event: &str) -> u64 {
    let want = format!("vaultgate_generator_leases_total{{event=\"{event}\"}} ");
    running
        .metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(&want)?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_each_refresh_and_the_old_lease_revoked_after_the_grace() {
    let env = env(3600, 0).await;
    let running = start(&env);
    env.external_secret("2s", Some("1s")).await;
    let first_user = env.wait_username(None).await;
    let first = env.wait_current_lease().await;

    // The next refresh mints new credentials under a new lease...
    env.wait_username(Some(&first_user)).await;
    // ...and the superseded one is revoked once its grace is over.
    eventually("the first lease revoked", || async {
        (!env.vault.live_leases(ROLE).contains(&first)).then_some(())
    })
    .await;
    let counters = env.vault.lease_counters();
    assert!(
        counters.issued >= 2 && counters.revoked >= 1,
        "{counters:?}"
    );
    // Never more than the current lease and those within their grace.
    assert!(env.vault.live_leases(ROLE).len() <= 3);
    assert!(metric(&running, "issued") >= 2 && metric(&running, "revoked") >= 1);

    // The status shows ids and times, never the credentials.
    let es = Api::<ExternalSecret>::namespaced(env.kc.clone(), "team-a")
        .get("app")
        .await
        .unwrap();
    let status = serde_json::to_string(&es.status).unwrap();
    let user = env.username().await.unwrap();
    assert!(!status.contains(&user), "{status}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_when_it_would_end_before_the_next_refresh() {
    // 4s leases, one refresh an hour: without renewals the Secret would hold dead credentials.
    let env = env(4, 7200).await;
    let running = start(&env);
    env.external_secret("1h", None).await;
    let user = env.wait_username(None).await;
    let lease = env.wait_current_lease().await;
    eventually("a renewal", || async {
        (env.vault.lease_counters().renewed >= 1).then_some(())
    })
    .await;
    // Renewed up to the next refresh (somewhere in the hour), with the same credentials.
    let ttl = env.lease_ttl(&lease).await;
    assert!(ttl > 60, "renewed for {ttl}s");
    assert_eq!(env.username().await.as_deref(), Some(user.as_str()));
    assert_eq!(env.vault.lease_counters().issued, 1);
    assert!(metric(&running, "renewed") >= 1);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minted_early_near_the_max_ttl() {
    // A 3s lease that can live 12s at most, one refresh an hour: renewed once (capped at the
    // 10s left), then replaced at two thirds of those, before its max TTL ends.
    let env = env(3, 12).await;
    let running = start(&env);
    env.external_secret("1h", Some("0s")).await;
    let user = env.wait_username(None).await;
    let first = env.wait_current_lease().await;
    let second_user = env.wait_username(Some(&user)).await;
    assert_ne!(second_user, user);
    let counters = env.vault.lease_counters();
    assert!(
        counters.issued >= 2 && counters.renewed >= 1,
        "{counters:?}"
    );
    // Replaced before it ended: revoked by us after the grace, not expired.
    eventually("the first lease revoked", || async {
        (!env.vault.live_leases(ROLE).contains(&first)).then_some(())
    })
    .await;
    assert!(env.vault.lease_counters().revoked >= 1);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_when_the_external_secret_is_deleted() {
    let env = env(3600, 0).await;
    let running = start(&env);
    env.external_secret("1h", None).await;
    env.wait_username(None).await;
    let lease = env.wait_current_lease().await;
    Api::<ExternalSecret>::namespaced(env.kc.clone(), "team-a")
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the ExternalSecret gone and its lease revoked", || async {
        let gone = Api::<ExternalSecret>::namespaced(env.kc.clone(), "team-a")
            .get_opt("app")
            .await
            .unwrap()
            .is_none();
        (gone && !env.vault.live_leases(ROLE).contains(&lease)).then_some(())
    })
    .await;
    assert_eq!(env.vault.lease_counters().revoked, 1);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_survives_a_restart() {
    let env = env(6, 7200).await;
    let running = start(&env);
    env.external_secret("1h", None).await;
    let user = env.wait_username(None).await;
    let lease = env.wait_current_lease().await;
    running.stop().await;

    // A new reconciler knows the lease only from the status: it renews it...
    let running = start(&env);
    eventually("a renewal by the new reconciler", || async {
        (env.vault.lease_counters().renewed >= 1).then_some(())
    })
    .await;
    assert_eq!(env.vault.lease_counters().issued, 1);
    assert_eq!(env.username().await.as_deref(), Some(user.as_str()));
    // ...and revokes it when the ExternalSecret goes.
    Api::<ExternalSecret>::namespaced(env.kc.clone(), "team-a")
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the lease revoked", || async {
        (!env.vault.live_leases(ROLE).contains(&lease)).then_some(())
    })
    .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_away_from_the_generator_revokes_its_lease() {
    let env = env(3600, 0).await;
    env.vault
        .kv2_put("secret", "app", serde_json::json!({"username": "static"}))
        .unwrap();
    let running = start(&env);
    env.external_secret("1h", Some("0s")).await;
    env.wait_username(None).await;
    let lease = env.wait_current_lease().await;
    // The same ExternalSecret now reads a KV secret through a store instead.
    env.apply(&format!(
        r#"
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {{name: vault, namespace: team-a}}
spec:
  provider:
    vault:
      server: "{}"
      path: secret
      version: v2
      auth:
        tokenSecretRef: {{name: vault-token, key: token}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata:
  name: app
  namespace: team-a
  annotations: {{vaultgate.io/lease-revoke-grace: "0s"}}
spec:
  refreshInterval: 1h
  secretStoreRef: {{kind: SecretStore, name: vault}}
  target: {{name: app-db}}
  dataFrom:
  - extract: {{key: app}}
"#,
        env.vault.addr()
    ))
    .await;
    eventually(
        "the static credentials, the lease revoked and out of the status",
        || async {
            let user = env.username().await;
            let leases = env.status_leases().await;
            (user.as_deref() == Some("static")
                && leases.is_empty()
                && !env.vault.live_leases(ROLE).contains(&lease))
            .then_some(())
        },
    )
    .await;
    assert_eq!(env.vault.lease_counters().revoked, 1);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_syncs_lease_is_revoked_without_waiting_for_the_retry() {
    let env = env(3600, 0).await;
    let running = start(&env);
    env.external_secret("1h", Some("1s")).await;
    env.wait_username(None).await;
    let first = env.wait_current_lease().await;

    // Every Secret write fails from now on: a forced sync mints a lease its Secret never holds,
    // and backs off (5 s first).
    env.kube.fail_next(
        kube_emulator::FaultFilter::verb_resource("patch", "secrets"),
        1000,
        500,
    );
    let patch = serde_json::json!({"metadata": {"annotations": {"force-sync": "1"}}});
    Api::<ExternalSecret>::namespaced(env.kc.clone(), "team-a")
        .patch(
            "app",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    eventually("a second lease minted", || async {
        (env.vault.lease_counters().issued >= 2).then_some(())
    })
    .await;
    // Its grace is zero (the Secret never held it): revoked at once, before the retry mints
    // another, and the current lease is untouched.
    eventually("the unused lease revoked before the retry", || async {
        let c = env.vault.lease_counters();
        (env.vault.live_leases(ROLE) == [first.clone()] && c.issued == 2 && c.revoked == 1)
            .then_some(())
    })
    .await;
    running.stop().await;
}
