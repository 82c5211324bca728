//! Lease calls (renew, revoke, lookup) through a store's client against the Vault and
//! Kubernetes emulators: caps at the max TTL, leases that ended, namespaces, policies, retries.

use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use vault_emulator::{VaultEmulator, VaultEmulatorConfig};
use vaultgate::api::*;
use vaultgate::metrics::Metrics;
use vaultgate::vault::{RenewOutcome, StoreHandle, VaultClients, VaultError};

#[path = "support/emulated.rs"]
mod emulated;
use emulated::sel;

const BOUND: Duration = Duration::from_secs(20);

const LEASES: &str = r#"
path "db/creds/app" { capabilities = ["read"] }
path "sys/leases/revoke" { capabilities = ["update"] }
"#;

struct Env {
    vault: VaultEmulator,
    /// Kept alive for the test's length: the store's token Secret lives there.
    _kube: kube_emulator::KubeEmulator,
    kc: kube::Client,
    clients: VaultClients,
}

async fn env() -> Env {
    let emulated::Emulators { vault, kube, kc } =
        emulated::start(VaultEmulatorConfig::default(), &[("team-a", &[])]).await;
    let clients = VaultClients::new(kc.clone(), Metrics::new());
    Env {
        vault,
        _kube: kube,
        kc,
        clients,
    }
}

impl Env {
    /// A root-token Vault call in namespace `ns` ("" for root).
    async fn api(&self, ns: &str, method: &str, path: &str, body: Value) -> Value {
        let resp = reqwest::Client::new()
            .request(
                method.parse().unwrap(),
                format!("{}/v1/{path}", self.vault.addr()),
            )
            .header("x-vault-token", self.vault.root_token())
            .header("x-vault-namespace", ns)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// New credentials for role `app` on the `db` engine; returns the lease id.
    async fn mint(&self, ns: &str) -> String {
        self.api(ns, "GET", "db/creds/app", json!({})).await["lease_id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// A store in `team-a` logging in with a token that holds `policies`.
    async fn store(&self, policies: &[&str], namespace: Option<&str>) -> StoreHandle {
        let token = match namespace {
            Some(ns) => self.vault.create_token_in(ns, policies, None).unwrap(),
            None => self.vault.create_token(policies, None),
        };
        let api: Api<Secret> = Api::namespaced(self.kc.clone(), "team-a");
        let mut s = Secret::default();
        s.metadata.name = Some("vault-token".into());
        s.data = Some(
            [("token".to_string(), ByteString(token.into_bytes()))]
                .into_iter()
                .collect(),
        );
        let _ = api.delete("vault-token", &Default::default()).await;
        api.create(&PostParams::default(), &s).await.unwrap();
        let provider = VaultProvider {
            server: self.vault.addr(),
            namespace: namespace.map(Into::into),
            auth: Some(VaultAuth {
                token_secret_ref: Some(sel("vault-token", "token")),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut s = SecretStore::new(
            "vault",
            SecretStoreSpec {
                provider: SecretStoreProvider {
                    vault: Some(provider),
                },
                ..Default::default()
            },
        );
        s.metadata.namespace = Some("team-a".into());
        s.metadata.uid = Some(format!("uid-{}", policies.join("-")));
        s.metadata.resource_version = Some("1".into());
        StoreHandle::from_secret_store(&s)
    }
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(BOUND, f)
        .await
        .expect("test took too long")
}

fn renewed(o: RenewOutcome) -> u64 {
    match o {
        RenewOutcome::Renewed(r) => {
            assert!(r.renewable);
            r.duration_s
        }
        RenewOutcome::Ended(why) => panic!("lease ended: {why}"),
    }
}

#[tokio::test]
async fn renew_is_capped_at_the_max_ttl_and_an_ended_lease_is_an_answer() {
    bounded(async {
        let e = env().await;
        e.vault
            .put_database_role(
                "db",
                "app",
                Duration::from_secs(60),
                Duration::from_secs(300),
            )
            .unwrap();
        e.vault.put_policy("leases", LEASES).unwrap();
        let client = e
            .clients
            .client(&e.store(&["leases"], None).await, "team-a")
            .await
            .unwrap();
        let id = e.mint("").await;

        assert_eq!(renewed(client.renew_lease(&id, 120).await.unwrap()), 120);
        e.vault.advance_lease_clock(Duration::from_secs(100));
        // 200s are left of the max TTL: Vault gives those, not the 250 asked for.
        assert_eq!(renewed(client.renew_lease(&id, 250).await.unwrap()), 200);
        let info = client.lookup_lease(&id).await.unwrap().expect("live lease");
        assert_eq!((info.id.as_str(), info.ttl_s), (id.as_str(), 200));
        assert!(info.renewable && info.last_renewal.is_some());
        let (issued, expires) = (info.issue_time.unwrap(), info.expire_time.unwrap());
        assert_eq!(expires.as_second() - issued.as_second(), 300);

        e.vault.advance_lease_clock(Duration::from_secs(201));
        assert_eq!(
            client.renew_lease(&id, 120).await.unwrap(),
            RenewOutcome::Ended("lease not found".into())
        );
        assert_eq!(client.lookup_lease(&id).await.unwrap(), None);
        // Revoking what is already gone is what was asked for.
        client.revoke_lease(&id).await.unwrap();
    })
    .await
}

#[tokio::test]
async fn revoke_ends_the_lease_in_vault() {
    bounded(async {
        let e = env().await;
        e.vault
            .put_database_role("db", "app", Duration::from_secs(60), Duration::ZERO)
            .unwrap();
        e.vault.put_policy("leases", LEASES).unwrap();
        let client = e
            .clients
            .client(&e.store(&["leases"], None).await, "team-a")
            .await
            .unwrap();
        let (a, b) = (e.mint("").await, e.mint("").await);
        client.revoke_lease(&a).await.unwrap();
        assert_eq!(e.vault.live_leases("db/creds/app/"), vec![b.clone()]);
        assert_eq!(e.vault.lease_counters().revoked, 1);

        // A 503 is retried like any other call.
        e.vault
            .fail_next_matching("sys/leases/revoke", 1, 503, None);
        client.revoke_lease(&b).await.unwrap();
        assert!(e.vault.live_leases("db/creds/app/").is_empty());
    })
    .await
}

#[tokio::test]
async fn a_policy_without_revoke_is_a_clear_error() {
    bounded(async {
        let e = env().await;
        e.vault
            .put_database_role("db", "app", Duration::from_secs(60), Duration::ZERO)
            .unwrap();
        e.vault
            .put_policy("creds", r#"path "db/creds/app" { capabilities = ["read"] }"#)
            .unwrap();
        let client = e
            .clients
            .client(&e.store(&["creds"], None).await, "team-a")
            .await
            .unwrap();
        let id = e.mint("").await;
        // The default policy lets every token renew and look up.
        assert_eq!(renewed(client.renew_lease(&id, 0).await.unwrap()), 60);
        let err = client.revoke_lease(&id).await.unwrap_err();
        assert!(
            matches!(&err, VaultError::PermissionDenied { path, .. } if path == "sys/leases/revoke"),
            "{err}"
        );
        assert_eq!(e.vault.live_leases("db/creds/app/").len(), 1);
    })
    .await
}

#[tokio::test]
async fn leases_are_handled_in_the_store_namespace() {
    bounded(async {
        let e = env().await;
        e.vault.create_namespace("team").unwrap();
        e.api("team", "POST", "sys/mounts/db", json!({"type": "database"}))
            .await;
        e.api(
            "team",
            "POST",
            "db/config/pg",
            json!({"plugin_name": "postgresql-database-plugin", "allowed_roles": "app"}),
        )
        .await;
        e.api(
            "team",
            "POST",
            "db/roles/app",
            json!({"db_name": "pg", "default_ttl": "1m", "max_ttl": "10m"}),
        )
        .await;
        e.vault.put_policy_in("team", "leases", LEASES).unwrap();
        let client = e
            .clients
            .client(&e.store(&["leases"], Some("team")).await, "team-a")
            .await
            .unwrap();
        let id = e.mint("team").await;
        assert_eq!(renewed(client.renew_lease(&id, 30).await.unwrap()), 30);
        client.revoke_lease(&id).await.unwrap();
        assert!(e.vault.live_leases("db/creds/app/").is_empty());
    })
    .await
}
