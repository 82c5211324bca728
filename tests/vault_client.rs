//! The Vault client against the Vault and Kubernetes emulators: logins and their cache, token
//! renewal and re-login, deduplicated reads, retries, KV v1/v2 and ESO's value rules.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, PostParams};
use kube_emulator::KubeEmulator;
use serde_json::{Value, json};
use vault_emulator::{VaultEmulator, VaultEmulatorConfig};
use vaultgate::api::*;
use vaultgate::metrics::Metrics;
use vaultgate::vault::{Limits, StoreHandle, VaultClients, VaultError, fetch_external_secret};

#[path = "support/emulated.rs"]
mod emulated;
use emulated::{READER, sel};

/// Every test must finish well within this.
const BOUND: Duration = Duration::from_secs(20);

struct Env {
    vault: VaultEmulator,
    kube: KubeEmulator,
    kc: kube::Client,
    clients: VaultClients,
    metrics: Metrics,
}

async fn env_with(cfg: VaultEmulatorConfig) -> Env {
    let emulated::Emulators { vault, kube, kc } = emulated::start(
        cfg,
        &[("team-a", &[]), ("team-b", &[]), ("vault-system", &[])],
    )
    .await;
    let metrics = Metrics::new();
    let clients = VaultClients::new(kc.clone(), metrics.clone());
    Env {
        vault,
        kube,
        kc,
        clients,
        metrics,
    }
}

async fn env() -> Env {
    env_with(VaultEmulatorConfig::default()).await
}

impl Env {
    /// A Vault API call with the root token, for setting up auth methods.
    async fn api(&self, method: &str, path: &str, body: Value) -> Value {
        self.api_in("", method, path, body).await
    }

    async fn api_in(&self, ns: &str, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}/v1/{path}", self.vault.addr());
        let client = reqwest::Client::builder()
            .tls_backend_rustls()
            .tls_danger_accept_invalid_certs(true)
            .build()
            .unwrap();
        let resp = client
            .request(method.parse().unwrap(), url)
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

    async fn put_secret(&self, ns: &str, name: &str, data: &[(&str, &[u8])]) {
        let api: Api<Secret> = Api::namespaced(self.kc.clone(), ns);
        let mut s = Secret::default();
        s.metadata.name = Some(name.into());
        s.data = Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                .collect(),
        );
        let _ = api.delete(name, &Default::default()).await;
        api.create(&PostParams::default(), &s).await.unwrap();
    }

    /// A token Secret `team-a/vault-token` with a token for `policies`.
    async fn token_store(
        &self,
        policies: &[&str],
        provider: impl FnOnce(&mut VaultProvider),
    ) -> StoreHandle {
        let token = self.vault.create_token(policies, None);
        self.put_secret("team-a", "vault-token", &[("token", token.as_bytes())])
            .await;
        let auth = VaultAuth {
            token_secret_ref: Some(sel("vault-token", "token")),
            ..Default::default()
        };
        self.store(auth, provider)
    }

    fn store(&self, auth: VaultAuth, provider: impl FnOnce(&mut VaultProvider)) -> StoreHandle {
        let mut p = VaultProvider {
            server: self.vault.addr(),
            path: Some("secret".into()),
            version: Some(VaultKvVersion::V2),
            auth: Some(auth),
            ..Default::default()
        };
        provider(&mut p);
        secret_store("team-a", "vault", "1", p, None)
    }

    async fn approle(&self, policies: &[&str], ttl: &str) -> (String, String) {
        let _ = self.vault.enable_auth("approle", "approle");
        self.api(
            "POST",
            "auth/approle/role/app",
            json!({"token_policies": policies, "token_ttl": ttl, "token_max_ttl": "24h"}),
        )
        .await;
        let role_id = self
            .api("GET", "auth/approle/role/app/role-id", json!({}))
            .await["data"]["role_id"]
            .as_str()
            .unwrap()
            .to_string();
        let secret_id = self
            .api("POST", "auth/approle/role/app/secret-id", json!({}))
            .await["data"]["secret_id"]
            .as_str()
            .unwrap()
            .to_string();
        (role_id, secret_id)
    }

    async fn approle_store(&self, ttl: &str) -> StoreHandle {
        self.approle_store_with(ttl, &["reader"]).await
    }

    async fn approle_store_with(&self, ttl: &str, policies: &[&str]) -> StoreHandle {
        let (role_id, secret_id) = self.approle(policies, ttl).await;
        self.put_secret("team-a", "approle", &[("secret-id", secret_id.as_bytes())])
            .await;
        let auth = VaultAuth {
            app_role: Some(VaultAppRole {
                path: "approle".into(),
                role_id: Some(role_id),
                role_ref: None,
                secret_ref: sel("approle", "secret-id"),
            }),
            ..Default::default()
        };
        self.store(auth, |_| {})
    }
}

fn secret_store(
    ns: &str,
    name: &str,
    rv: &str,
    provider: VaultProvider,
    retry: Option<RetrySettings>,
) -> StoreHandle {
    let mut s = SecretStore::new(
        name,
        SecretStoreSpec {
            provider: SecretStoreProvider {
                vault: Some(provider),
            },
            retry_settings: retry,
            ..Default::default()
        },
    );
    s.metadata.namespace = Some(ns.into());
    s.metadata.uid = Some(format!("uid-{name}"));
    s.metadata.resource_version = Some(rv.into());
    StoreHandle::from_secret_store(&s)
}

fn data(key: &str, remote: &str, property: Option<&str>) -> ExternalSecretData {
    ExternalSecretData {
        secret_key: key.into(),
        remote_ref: ExternalSecretDataRemoteRef {
            key: remote.into(),
            property: property.map(Into::into),
            ..Default::default()
        },
        source_ref: None,
    }
}

fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap()
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(BOUND, f)
        .await
        .expect("test took too long")
}

#[tokio::test]
async fn token_auth_reads_kv2_and_kv1_with_properties() {
    bounded(async {
        let e = env().await;
        e.vault.put_policy("reader", READER).unwrap();
        e.vault.enable_kv("kv1", 1).unwrap();
        e.vault
            .kv2_put(
                "secret",
                "app/db",
                json!({"user": "admin", "port": 5432, "tls": true, "nested": {"b": {"c": "deep"}, "a": 1}}),
            )
            .unwrap();
        e.vault
            .kv2_put("secret", "app/db", json!({"user": "admin2", "port": 5433}))
            .unwrap();
        e.vault
            .kv1_put("kv1", "legacy", json!({"password": "hunter2"}))
            .unwrap();
        let store = e.token_store(&["reader"], |_| {}).await;
        let client = e.clients.client(&store, "team-a").await.unwrap();
        assert_eq!(client.kv_version(), VaultKvVersion::V2);
        assert_eq!(client.mount(), Some("secret"));
        client.check_mount().await.unwrap();
        let me = client.lookup_self().await.unwrap();
        assert!(me["policies"].as_array().unwrap().contains(&json!("reader")), "{me}");

        let mut v1 = data("v1", "app/db", Some("user"));
        v1.remote_ref.version = Some("1".into());
        let spec = ExternalSecretSpec {
            data: Some(vec![
                data("user", "app/db", Some("user")),
                data("port", "secret/app/db", Some("port")),
                data("whole", "secret/data/app/db", None),
                v1,
                data("deep", "app/db", Some("nested.b.c")),
            ]),
            ..Default::default()
        };
        // Version 1 (the nested one) is still readable with ?version=1.
        let fetched = fetch_external_secret(&client, &spec, false).await;
        let err = fetched.err().expect("nested.b.c is absent from the latest version");
        assert_eq!(
            err.context,
            r#"spec.data[4] (key "app/db", property "nested.b.c")"#
        );
        assert!(err.to_string().contains("property \"nested.b.c\" does not exist"), "{err}");

        let mut spec = spec;
        spec.data.as_mut().unwrap().pop();
        let got = fetch_external_secret(&client, &spec, false).await.unwrap().data;
        assert_eq!(text(&got["user"]), "admin2");
        assert_eq!(text(&got["port"]), "5433");
        assert_eq!(text(&got["whole"]), r#"{"port":5433,"user":"admin2"}"#);
        assert_eq!(text(&got["v1"]), "admin");

        let old = client.read_secret("app/db", Some("1")).await.unwrap().unwrap();
        assert_eq!(old["nested"]["b"]["c"], "deep");

        // KV v1 on another store of the same token.
        let store_v1 = e
            .token_store(&["reader"], |p| {
                p.path = Some("kv1".into());
                p.version = Some(VaultKvVersion::V1);
            })
            .await;
        let store_v1 = StoreHandle {
            name: "vault-v1".into(),
            ..store_v1
        };
        let c1 = e.clients.client(&store_v1, "team-a").await.unwrap();
        c1.check_mount().await.unwrap();
        let spec = ExternalSecretSpec {
            data: Some(vec![data("pw", "legacy", Some("password"))]),
            ..Default::default()
        };
        let got = fetch_external_secret(&c1, &spec, false).await.unwrap().data;
        assert_eq!(text(&got["pw"]), "hunter2");
        // Declaring the wrong version is caught by the mount check.
        let wrong = e
            .token_store(&["reader"], |p| p.version = Some(VaultKvVersion::V1))
            .await;
        let wrong = StoreHandle {
            name: "wrong".into(),
            ..wrong
        };
        let cw = e.clients.client(&wrong, "team-a").await.unwrap();
        let err = cw.check_mount().await.unwrap_err();
        assert!(matches!(err, VaultError::Config { .. }), "{err}");
        assert!(err.to_string().contains("version v2"), "{err}");

        // Static tokens are no logins and are never revoked.
        assert_eq!(e.clients.login_count(), 0);
        assert_eq!(e.vault.count_logins(), 0);
        let live = e.vault.live_tokens();
        e.clients.revoke_all().await;
        assert_eq!(e.vault.live_tokens(), live);

        // A revoked static token is reported as such, not as a missing policy; a new token
        // in the Secret is picked up without any change to the store.
        let c1 = e.clients.client(&store_v1, "team-a").await.unwrap();
        e.vault.revoke_all_tokens();
        let err = c1.read_secret("legacy", None).await.unwrap_err();
        assert!(matches!(err, VaultError::Auth { .. }), "{err}");
        assert!(err.to_string().contains("tokenSecretRef"), "{err}");
        let fresh = e.vault.create_token(&["reader"], None);
        e.put_secret("team-a", "vault-token", &[("token", fresh.as_bytes())])
            .await;
        assert!(c1.read_secret("legacy", None).await.unwrap().is_some());
    })
    .await
}

#[tokio::test]
async fn approle_logs_in_once_for_100_concurrent_callers_and_revokes_on_shutdown() {
    bounded(async {
        let e = env().await;
        e.vault.put_policy("reader", READER).unwrap();
        let store = e.approle_store("1h").await;
        let live_before = e.vault.live_tokens();
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let clients = e.clients.clone();
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                clients.client(&store, "team-a").await
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await.unwrap().unwrap());
        }
        assert!(all.iter().all(|c| Arc::ptr_eq(c, &all[0])));
        assert_eq!(e.vault.count_logins(), 1);
        assert_eq!(e.clients.login_count(), 1);
        assert_eq!(e.vault.live_tokens(), live_before + 1);
        let text = e.metrics.render();
        assert!(
            text.contains("vaultgate_vault_logins_total{method=\"appRole\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("vaultgate_vault_requests_total{call=\"login\",status=\"200\"} 1"),
            "{text}"
        );
        e.clients.revoke_all().await;
        assert_eq!(e.vault.live_tokens(), live_before);
        // After shutdown's revocation a new caller logs in again.
        e.clients.client(&store, "team-a").await.unwrap();
        assert_eq!(e.vault.count_logins(), 2);
    })
    .await
}

/// A stream of distinct store identities (referent stores in ever new namespaces, admission
/// checks of stores this replica never reconciles) keeps the cache and the open Vault tokens
/// bounded: the least recently used clients beyond the limit and idle ones are dropped and
/// their tokens revoked; failed logins are forgotten after their window.
#[tokio::test]
async fn a_stream_of_distinct_stores_keeps_the_cache_and_open_tokens_bounded() {
    bounded(async {
        let e = env().await;
        e.vault.put_policy("reader", READER).unwrap();
        let store = e.approle_store("1h").await;
        let idle = Duration::from_millis(300);
        let clients = VaultClients::with_limits(
            e.kc.clone(),
            Metrics::new(),
            Limits {
                idle,
                max_entries: 8,
                failure_window: Duration::from_millis(200),
            },
        );
        let live_before = e.vault.live_tokens();
        let nth = |i: usize| StoreHandle {
            name: format!("store-{i}"),
            uid: format!("uid-{i}"),
            ..store.clone()
        };
        for i in 0..40 {
            let c = clients.client(&nth(i), "team-a").await.unwrap();
            c.lookup_self().await.unwrap();
            assert!(
                clients.cached() <= 8,
                "{} cached after {i}",
                clients.cached()
            );
        }
        assert_eq!(e.vault.count_logins(), 40);
        // Revocation runs in the background: wait for it.
        let start = Instant::now();
        while e.vault.live_tokens() > live_before + 8 {
            assert!(
                start.elapsed() < BOUND,
                "{} tokens open",
                e.vault.live_tokens()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A client in use is never dropped under its caller: the most recent one still works.
        let kept = clients.client(&nth(39), "team-a").await.unwrap();
        assert_eq!(e.vault.count_logins(), 40, "still cached");

        // Failed logins (a store whose credentials are missing) go after their window too.
        for i in 0..20 {
            let mut broken = nth(100 + i);
            let mut spec = (*broken.spec).clone();
            let auth = spec.provider.vault.as_mut().unwrap().auth.as_mut().unwrap();
            auth.app_role.as_mut().unwrap().secret_ref = sel("no-such-secret", "secret-id");
            broken.spec = Arc::new(spec);
            assert!(clients.client(&broken, "team-a").await.is_err());
            assert!(clients.cached() <= 8);
        }

        // Everything idle for longer than `idle` goes at the next sweep, tokens revoked; the one
        // in use stays.
        tokio::time::sleep(idle + Duration::from_millis(100)).await;
        clients.client(&nth(200), "team-a").await.unwrap();
        assert_eq!(clients.cached(), 2, "the new client and the one in use");
        let start = Instant::now();
        while e.vault.live_tokens() > live_before + 2 {
            assert!(
                start.elapsed() < BOUND,
                "{} tokens open",
                e.vault.live_tokens()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        kept.lookup_self().await.unwrap();
        drop(kept);
        clients.revoke_all().await;
        assert_eq!(e.vault.live_tokens(), live_before);
    })
    .await
}

#[tokio::test]
async fn userpass_and_ldap_logins() {
    bounded(async {
        let e = env().await;
        e.vault.put_policy("reader", READER).unwrap();
        e.vault.kv2_put("secret", "app", json!({"k": "v"})).unwrap();
        e.vault.enable_auth("userpass", "userpass").unwrap();
        e.api(
            "POST",
            "auth/userpass/users/alice",
            json!({"password": "s3cret pass", "token_policies": ["reader"]}),
        )
        .await;
        e.put_secret("team-a", "pw", &[("password", b"s3cret pass")])
            .await;
        let store = e.store(
            VaultAuth {
                user_pass: Some(VaultUserPassAuth {
                    path: "userpass".into(),
                    username: "alice".into(),
                    secret_ref: Some(sel("pw", "password")),
                }),
                ..Default::default()
            },
            |_| {},
        );
        let c = e.clients.client(&store, "team-a").await.unwrap();
        assert_eq!(c.read_secret("app", None).await.unwrap().unwrap()["k"], "v");

        e.vault.enable_auth("ldap", "ldap").unwrap();
        e.vault.ldap_set_password("ldap", "bob", "ldap-pw").unwrap();
        e.api(
            "POST",
            "auth/ldap/users/bob",
            json!({"policies": ["reader"]}),
        )
        .await;
        e.put_secret("team-a", "ldap", &[("password", b"ldap-pw")])
            .await;
        let ldap = StoreHandle {
            name: "ldap".into(),
            ..e.store(
                VaultAuth {
                    ldap: Some(VaultLdapAuth {
                        path: "ldap".into(),
                        username: "bob".into(),
                        secret_ref: Some(sel("ldap", "password")),
                    }),
                    ..Default::default()
                },
                |_| {},
            )
        };
        let c = e.clients.client(&ldap, "team-a").await.unwrap();
        assert_eq!(c.read_secret("app", None).await.unwrap().unwrap()["k"], "v");

        // A wrong password is an Auth error that names the method and never the password.
        e.put_secret("team-a", "pw", &[("password", b"wrong-password")])
            .await;
        let bad = StoreHandle {
            name: "bad".into(),
            ..store
        };
        let err = e.clients.client(&bad, "team-a").await.err().unwrap();
        assert!(matches!(err, VaultError::Auth { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("userPass") && msg.contains("auth/userpass/login/alice"),
            "{msg}"
        );
        assert!(!msg.contains("wrong-password"), "{msg}");
        assert_eq!(e.clients.login_count(), 3);

        // Many callers of a misconfigured store share one failed login.
        let bad2 = StoreHandle {
            name: "bad2".into(),
            ..bad
        };
        let calls = (0..20).map(|_| e.clients.client(&bad2, "team-a"));
        let results = futures::future::join_all(calls).await;
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Err(VaultError::Auth { .. })))
        );
        assert_eq!(e.clients.login_count(), 4);
        assert_eq!(e.vault.count_logins(), 4);
    })
    .await
}

#[tokio::test]
async fn concurrent_reads_share_one_vault_request() {
    bounded(async {
        let e = env().await;
        e.vault.put_policy("reader", READER).unwrap();
        e.vault
            .kv2_put("secret", "shared", json!({"a": "1"}))
            .unwrap();
        e.vault
            .kv2_put("secret", "shared", json!({"a": "2"}))
            .unwrap();
        let store = e.token_store(&["reader"], |_| {}).await;
        let client = e.clients.client(&store, "team-a").await.unwrap();
        e.vault.set_latency(Duration::from_millis(300));
        e.vault.reset_counters();
        let reads = (0..50).map(|_| client.read_secret("shared", None));
        let results = futures::future::join_all(reads).await;
        assert!(
            results
                .iter()
                .all(|r| r.as_ref().unwrap().as_ref().unwrap()["a"] == "2")
        );
        assert_eq!(e.vault.count_kv_reads(), 1);
        let m = e.metrics.render();
        assert!(
            m.contains("vaultgate_vault_requests_total{call=\"read\",status=\"200\"} 1"),
            "{m}"
        );
        // Within the share window a later read is served from the same answer…
        client.read_secret("shared", None).await.unwrap();
        assert_eq!(e.vault.count_kv_reads(), 1);
        // …but another version is another request.
        let v1 = client
            .read_secret("shared", Some("1"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v1["a"], "1");
        assert_eq!(e.vault.count_kv_reads(), 2);
        e.vault.set_latency(Duration::ZERO);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        client.read_secret("shared", None).await.unwrap();
        assert_eq!(e.vault.count_kv_reads(), 3);
    })
    .await
}

#[tokio::test]
async fn relogin_after_the_token_is_revoked() {
    bounded(async {
        let e = env().await;
        e.vault
            .put_policy(
                "xy",
                r#"path "secret/data/x" { capabilities = ["read"] }
                   path "secret/data/y" { capabilities = ["read"] }"#,
            )
            .unwrap();
        e.vault.kv2_put("secret", "x", json!({"v": "1"})).unwrap();
        e.vault.kv2_put("secret", "y", json!({"v": "2"})).unwrap();
        e.vault.kv2_put("secret", "z", json!({"v": "3"})).unwrap();
        let store = e.approle_store_with("1h", &["xy"]).await;
        let client = e.clients.client(&store, "team-a").await.unwrap();
        client.read_secret("x", None).await.unwrap().unwrap();
        e.vault.revoke_all_tokens();
        let y = client.read_secret("y", None).await.unwrap().unwrap();
        assert_eq!(y["v"], "2");
        assert_eq!(e.vault.count_logins(), 2);
        // A genuine permission denial does not cause another login.
        let err = client.read_secret("z", None).await.unwrap_err();
        assert!(matches!(err, VaultError::PermissionDenied { .. }), "{err}");
        let caps = client
            .capabilities(&["secret/data/z".into()])
            .await
            .unwrap();
        assert_eq!(caps["secret/data/z"], ["deny"]);
        assert_eq!(e.vault.count_logins(), 2);
    })
    .await
}

#[tokio::test]
async fn short_lived_tokens_are_renewed_or_replaced() {
    bounded(async {
        let e = env().await;
        e.vault.put_policy("reader", READER).unwrap();
        e.vault.kv2_put("secret", "x", json!({"v": "1"})).unwrap();
        let store = e.approle_store("6s").await;
        let client = e.clients.client(&store, "team-a").await.unwrap();
        e.vault.reset_counters();
        // Past two thirds of the TTL the token is renewed before use.
        tokio::time::sleep(Duration::from_millis(4300)).await;
        client.read_secret("x", None).await.unwrap().unwrap();
        let renewals = e
            .vault
            .requests()
            .iter()
            .filter(|r| r.path == "auth/token/renew-self" && r.status == 200)
            .count();
        assert_eq!(renewals, 1, "{:?}", e.vault.requests());
        assert_eq!(e.vault.count_logins(), 0);
        // Still valid after the original TTL has passed.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        client.read_secret("x", None).await.unwrap().unwrap();
        assert_eq!(e.clients.login_count(), 1);
    })
    .await
}

#[tokio::test]
async fn a_failing_relogin_keeps_the_valid_token_without_a_login_per_call() {
    bounded(async {
        let e = env().await;
        e.vault.put_policy("reader", READER).unwrap();
        e.vault.kv2_put("secret", "x", json!({"v": "1"})).unwrap();
        let _ = e.vault.enable_auth("approle", "approle");
        // max TTL = TTL: renewal cannot extend the token, so it must be replaced by a login.
        let store = e.approle_store("6s").await;
        e.api(
            "POST",
            "auth/approle/role/app",
            json!({"token_ttl": "6s", "token_max_ttl": "6s"}),
        )
        .await;
        let client = e.clients.client(&store, "team-a").await.unwrap();
        e.put_secret("team-a", "approle", &[("secret-id", b"wrong")])
            .await;
        tokio::time::sleep(Duration::from_millis(4300)).await;
        for _ in 0..5 {
            // Distinct keys so that no read is served from the share window.
            client.read_secret("x", Some("1")).await.unwrap();
            client.read_secret("x", None).await.unwrap();
        }
        assert_eq!(
            e.clients.login_count(),
            2,
            "one failed re-login, then held off"
        );
        tokio::time::sleep(Duration::from_millis(2200)).await;
        let err = client.read_secret("x", Some("1")).await.unwrap_err();
        assert!(matches!(err, VaultError::Auth { .. }), "{err}");
        assert!(!err.to_string().contains("wrong"), "{err}");
    })
    .await
}

#[tokio::test]
async fn retries_on_503_and_429_and_gives_up_after_max_retries() {
    bounded(async {
        let e = env().await;
        e.vault.put_policy("reader", READER).unwrap();
        e.vault.kv2_put("secret", "flaky", json!({"v": "ok"})).unwrap();
        let mut store = e.token_store(&["reader"], |_| {}).await;
        Arc::make_mut(&mut store.spec).retry_settings = Some(RetrySettings {
            max_retries: Some(2),
            retry_interval: Some("50ms".into()),
        });
        let client = e.clients.client(&store, "team-a").await.unwrap();

        e.vault.fail_next_matching("secret/data/flaky", 2, 503, None);
        let started = Instant::now();
        let v = client.read_secret("flaky", None).await.unwrap().unwrap();
        assert_eq!(v["v"], "ok");
        assert!(started.elapsed() >= Duration::from_millis(150));
        let attempts = e
            .vault
            .requests()
            .iter()
            .filter(|r| r.path == "secret/data/flaky")
            .count();
        assert_eq!(attempts, 3);

        tokio::time::sleep(Duration::from_millis(1100)).await;
        e.vault.fail_next_matching("secret/data/flaky", 1, 429, Some(1));
        let started = Instant::now();
        client.read_secret("flaky", None).await.unwrap().unwrap();
        assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After honoured");

        tokio::time::sleep(Duration::from_millis(1100)).await;
        e.vault.fail_next_matching("secret/data/flaky", 3, 503, None);
        let err = client.read_secret("flaky", None).await.unwrap_err();
        assert!(matches!(err, VaultError::Unavailable { .. }), "{err}");
        assert!(err.is_transient());
        assert!(err.to_string().contains("HTTP 503"), "{err}");

        e.vault.fail_next_matching("secret/data/flaky", 3, 429, Some(60));
        let err = client.read_secret("flaky", None).await.unwrap_err();
        assert!(
            matches!(err, VaultError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(60)),
            "{err}"
        );
        e.vault.clear_faults();

        // 4xx other than 429 is not retried.
        e.vault.reset_counters();
        e.vault.fail_next_matching("secret/data/flaky", 1, 400, None);
        let err = client.read_secret("flaky", None).await.unwrap_err();
        assert!(matches!(err, VaultError::Invalid { .. }), "{err}");
        assert_eq!(e.vault.count_requests(), 1);

        // Connection refused: retried, then Unavailable.
        e.vault.set_down(true);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let err = client.read_secret("flaky", None).await.unwrap_err();
        assert!(matches!(err, VaultError::Unavailable { .. }), "{err}");
        e.vault.set_down(false);
    })
    .await
}

#[tokio::test]
async fn not_found_versus_permission_denied() {
    bounded(async {
        let e = env().await;
        e.vault
            .put_policy(
                "narrow",
                r#"path "secret/data/allowed/*" { capabilities = ["read"] }
                   path "secret/metadata/allowed/*" { capabilities = ["read"] }"#,
            )
            .unwrap();
        e.vault
            .kv2_put("secret", "allowed/a", json!({"v": "1"}))
            .unwrap();
        e.vault
            .kv2_put("secret", "forbidden", json!({"v": "x"}))
            .unwrap();
        e.vault
            .kv2_put("secret", "allowed/gone", json!({"v": "1"}))
            .unwrap();
        e.vault
            .kv2_delete_versions("secret", "allowed/gone", &[1])
            .unwrap();
        let store = e.token_store(&["narrow"], |_| {}).await;
        let c = e.clients.client(&store, "team-a").await.unwrap();
        assert!(
            c.read_secret("allowed/missing", None)
                .await
                .unwrap()
                .is_none()
        );
        // A deleted latest version (404 with its metadata) is missing, and says so.
        let gone = c.read_secret("allowed/gone", None).await.unwrap_err();
        assert!(
            matches!(&gone, VaultError::VersionDeleted { path, version: None, deleted_at: Some(_), destroyed: false } if path == "secret/data/allowed/gone"),
            "{gone:?}"
        );
        assert!(gone.is_missing());
        let err = c.read_secret("forbidden", None).await.unwrap_err();
        match &err {
            VaultError::PermissionDenied { path, call } => {
                assert_eq!(path, "secret/data/forbidden");
                assert_eq!(call, "read");
            }
            other => panic!("{other}"),
        }
        assert!(err.to_string().contains("HTTP 403"), "{err}");

        let spec = ExternalSecretSpec {
            data: Some(vec![
                data("a", "allowed/a", Some("v")),
                data("m", "allowed/missing", Some("v")),
            ]),
            ..Default::default()
        };
        let got = fetch_external_secret(&c, &spec, true).await.unwrap();
        assert_eq!(got.missing, ["allowed/missing"]);
        assert_eq!(text(&got.data["a"]), "1");
        let err = fetch_external_secret(&c, &spec, false).await.err().unwrap();
        assert!(matches!(err.source, VaultError::NotFound { .. }));
        assert_eq!(
            err.context,
            r#"spec.data[1] (key "allowed/missing", property "v")"#
        );
        assert!(
            err.to_string().contains("secret/data/allowed/missing"),
            "{err}"
        );

        // Unsafe keys never reach Vault.
        e.vault.reset_counters();
        for key in [
            "../sys/seal",
            "/abs",
            "sys/health",
            "auth/token/create",
            "a/../../x",
        ] {
            let err = c.read_secret(key, None).await.unwrap_err();
            assert!(matches!(err, VaultError::Invalid { .. }), "{key}: {err}");
        }
        assert_eq!(e.vault.count_requests(), 0);
    })
    .await
}

fn extract(key: &str) -> ExternalSecretDataRemoteRef {
    ExternalSecretDataRemoteRef {
        key: key.into(),
        ..Default::default()
    }
}

fn rewrite(source: &str, target: &str) -> ExternalSecretRewrite {
    ExternalSecretRewrite {
        regexp: Some(RewriteRegexp {
            source: source.into(),
            target: target.into(),
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn extract_find_decoding_rewrite_and_metadata() {
    bounded(async {
        let e = env().await;
        e.vault.put_policy("reader", READER).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        e.vault
            .kv2_put(
                "secret",
                "app/config",
                json!({"url": "https://x", "cert": b64.encode("PEM DATA"), "obj": {"z": 1, "a": [true]}}),
            )
            .unwrap();
        e.vault.kv2_put("secret", "team/db", json!({"password": "p1"})).unwrap();
        e.vault.kv2_put("secret", "team/api/key", json!({"token": "t1"})).unwrap();
        e.vault.kv2_put("secret", "other/db", json!({"password": "p2"})).unwrap();
        // A folder named like the mount: found secrets are read where they were listed.
        e.vault.kv2_put("secret", "secret/inner", json!({"x": "in"})).unwrap();
        let md = |owner: &str| -> BTreeMap<String, String> {
            [("owner".to_string(), owner.to_string())].into()
        };
        e.vault.kv2_set_custom_metadata("secret", "team/db", md("a")).unwrap();
        e.vault.kv2_set_custom_metadata("secret", "team/api/key", md("b")).unwrap();
        e.vault.kv2_set_custom_metadata("secret", "other/db", md("a")).unwrap();
        let store = e.token_store(&["reader"], |_| {}).await;
        let c = e.clients.client(&store, "team-a").await.unwrap();

        let mut cert = data("cert", "app/config", Some("cert"));
        cert.remote_ref.decoding_strategy = Some(DecodingStrategy::Base64);
        let mut owner = data("owner", "team/db", Some("owner"));
        owner.remote_ref.metadata_policy = Some(MetadataPolicy::Fetch);
        let mut auto = extract("app/config");
        auto.decoding_strategy = Some(DecodingStrategy::Auto);
        let spec = ExternalSecretSpec {
            data: Some(vec![
                cert,
                owner,
                data("url", "app/config", Some("url")),
                // `data` wins over `dataFrom` on the same key, as in ESO.
                data("cfg-url", "team/db", Some("password")),
            ]),
            data_from: Some(vec![
                ExternalSecretDataFromRemoteRef {
                    extract: Some(auto),
                    rewrite: Some(vec![rewrite("^(.*)$", "cfg-$1")]),
                    ..Default::default()
                },
                ExternalSecretDataFromRemoteRef {
                    find: Some(ExternalSecretFind {
                        name: Some(FindName {
                            regexp: Some("db$".into()),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ExternalSecretDataFromRemoteRef {
                    find: Some(ExternalSecretFind {
                        path: Some("team".into()),
                        tags: Some(md("b")),
                        ..Default::default()
                    }),
                    rewrite: Some(vec![rewrite("/", "-")]),
                    ..Default::default()
                },
                ExternalSecretDataFromRemoteRef {
                    find: Some(ExternalSecretFind {
                        name: Some(FindName {
                            regexp: Some("^secret/".into()),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let got = fetch_external_secret(&c, &spec, false).await.unwrap().data;
        let keys: Vec<&str> = got.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "cert",
                "cfg-cert",
                "cfg-obj",
                "cfg-url",
                "other_db",
                "owner",
                "secret_inner",
                "team-api-key",
                "team_db",
                "url"
            ]
        );
        assert_eq!(text(&got["cert"]), "PEM DATA");
        assert_eq!(text(&got["cfg-cert"]), "PEM DATA");
        assert_eq!(text(&got["cfg-obj"]), r#"{"a":[true],"z":1}"#);
        assert_eq!(text(&got["cfg-url"]), "p1");
        assert_eq!(text(&got["owner"]), "a");
        assert_eq!(text(&got["team_db"]), r#"{"password":"p1"}"#);
        assert_eq!(text(&got["other_db"]), r#"{"password":"p2"}"#);
        assert_eq!(text(&got["team-api-key"]), r#"{"token":"t1"}"#);
        assert_eq!(text(&got["secret_inner"]), r#"{"x":"in"}"#);

        let listed = c.list_recursive("").await.unwrap();
        assert_eq!(
            listed,
            ["app/config", "other/db", "secret/inner", "team/api/key", "team/db"]
        );
        assert_eq!(c.list_recursive("team").await.unwrap(), ["team/api/key", "team/db"]);
        // A folder Vault lists as absent (404) is a missing secret, never an empty folder.
        let err = c.list_recursive("renamed").await.unwrap_err();
        assert!(err.is_missing(), "{err:?}");
        assert_eq!(
            err.to_string(),
            "nothing is listed under \"secret/metadata/renamed/\" in Vault (HTTP 404: the \
             folder does not exist or is empty)"
        );
        let gone = ExternalSecretSpec {
            data_from: Some(vec![ExternalSecretDataFromRemoteRef {
                find: Some(ExternalSecretFind {
                    path: Some("renamed".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        };
        // deletionPolicy Retain: an error naming the entry; Delete/Merge: skipped and listed.
        let err = fetch_external_secret(&c, &gone, false).await.err().unwrap();
        assert!(err.to_string().starts_with("spec.dataFrom[0].find (path \"renamed\"): nothing is listed"), "{err}");
        let skipped = fetch_external_secret(&c, &gone, true).await.unwrap();
        assert!(skipped.data.is_empty());
        assert_eq!(skipped.missing, ["renamed/"]);

        // Rewrites by template: the key is `.value`.
        let spec = ExternalSecretSpec {
            data_from: Some(vec![ExternalSecretDataFromRemoteRef {
                extract: Some(extract("app/config")),
                rewrite: Some(vec![ExternalSecretRewrite {
                    transform: Some(RewriteTransform {
                        template: "t-{{ .value | upper }}".into(),
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let got = fetch_external_secret(&c, &spec, false).await.unwrap().data;
        assert_eq!(got.keys().collect::<Vec<_>>(), ["t-CERT", "t-OBJ", "t-URL"]);

        // Without rewrite a key that cannot be a Secret key is refused with advice.
        let spec = ExternalSecretSpec {
            data_from: Some(vec![ExternalSecretDataFromRemoteRef {
                extract: Some(extract("app/config")),
                rewrite: Some(vec![rewrite("url", "u/r/l")]),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let err = fetch_external_secret(&c, &spec, false).await.err().unwrap();
        assert!(err.to_string().contains("\"u/r/l\" is not a valid Secret key"), "{err}");

        let caps = c
            .capabilities(&["secret/data/app/config".into(), "secret/data/x".into()])
            .await
            .unwrap();
        let mut app = caps["secret/data/app/config"].clone();
        app.sort();
        assert_eq!(app, ["list", "read"]);
    })
    .await
}

#[tokio::test]
async fn namespaces_headers_and_inconsistent_forwarding() {
    bounded(async {
        let e = env().await;
        e.vault.create_namespace("team").unwrap();
        e.vault.enable_kv_in("team", "kv", 2).unwrap();
        e.vault
            .kv2_put_in("team", "kv", "app", json!({"v": "ns"}))
            .unwrap();
        e.vault
            .put_policy_in(
                "team",
                "reader",
                r#"path "kv/data/*" { capabilities = ["read"] }"#,
            )
            .unwrap();
        let token = e.vault.create_token_in("team", &["reader"], None).unwrap();
        e.put_secret("team-a", "ns-token", &[("token", token.as_bytes())])
            .await;
        let store = e.store(
            VaultAuth {
                token_secret_ref: Some(sel("ns-token", "token")),
                ..Default::default()
            },
            |p| {
                p.path = Some("kv".into());
                p.namespace = Some("team".into());
                p.read_your_writes = Some(true);
                p.forward_inconsistent = Some(true);
                p.headers = Some([("X-Team".to_string(), "a".to_string())].into());
            },
        );
        let c = e.clients.client(&store, "team-a").await.unwrap();
        assert_eq!(
            c.read_secret("app", None).await.unwrap().unwrap()["v"],
            "ns"
        );
        let h = |name: &str| e.vault.last_header("kv/data/app", name);
        assert_eq!(h("x-vault-namespace").as_deref(), Some("team"));
        assert_eq!(
            h("x-vault-inconsistent").as_deref(),
            Some("forward-active-node")
        );
        assert_eq!(h("x-team").as_deref(), Some("a"));
        let rec = e.vault.requests();
        assert!(
            rec.iter()
                .any(|r| r.path == "kv/data/app" && r.namespace == "team")
        );
    })
    .await
}

#[tokio::test]
async fn auth_namespace_is_used_for_the_login_only() {
    bounded(async {
        let e = env().await;
        e.vault.create_namespace("team").unwrap();
        e.vault.create_namespace("team/child").unwrap();
        e.vault.enable_kv_in("team/child", "kv", 2).unwrap();
        e.vault
            .kv2_put_in("team/child", "kv", "app", json!({"v": "child"}))
            .unwrap();
        e.vault
            .enable_auth_in("team", "approle", "approle")
            .unwrap();
        e.vault
            .put_policy_in(
                "team",
                "child-reader",
                r#"path "child/kv/data/*" { capabilities = ["read"] }"#,
            )
            .unwrap();
        e.api_in(
            "team",
            "POST",
            "auth/approle/role/app",
            json!({"token_policies": ["child-reader"]}),
        )
        .await;
        let role_id = e
            .api_in("team", "GET", "auth/approle/role/app/role-id", json!({}))
            .await["data"]["role_id"]
            .as_str()
            .unwrap()
            .to_string();
        let secret_id = e
            .api_in("team", "POST", "auth/approle/role/app/secret-id", json!({}))
            .await["data"]["secret_id"]
            .as_str()
            .unwrap()
            .to_string();
        e.put_secret("team-a", "approle", &[("secret-id", secret_id.as_bytes())])
            .await;
        let store = e.store(
            VaultAuth {
                namespace: Some("team".into()),
                app_role: Some(VaultAppRole {
                    path: "approle".into(),
                    role_id: Some(role_id),
                    role_ref: None,
                    secret_ref: sel("approle", "secret-id"),
                }),
                ..Default::default()
            },
            |p| {
                p.path = Some("kv".into());
                p.namespace = Some("team/child".into());
            },
        );
        let c = e.clients.client(&store, "team-a").await.unwrap();
        let rec = e.vault.requests();
        let login = rec
            .iter()
            .find(|r| r.path == "auth/approle/login")
            .expect("login request");
        assert_eq!(login.namespace, "team");
        let read = c.read_secret("app", None).await;
        let rec = e.vault.requests();
        let kv = rec
            .iter()
            .find(|r| r.path == "kv/data/app")
            .expect("read request");
        assert_eq!(kv.namespace, "team/child");
        assert_eq!(read.unwrap().unwrap()["v"], "child");
    })
    .await
}

#[tokio::test]
async fn cache_follows_store_versions_and_referent_namespaces() {
    bounded(async {
        let e = env().await;
        e.vault.put_policy("reader", READER).unwrap();
        let store = e.approle_store("1h").await;
        let live = e.vault.live_tokens();
        let c1 = e.clients.client(&store, "team-a").await.unwrap();
        let again = e.clients.client(&store, "team-b").await.unwrap();
        assert!(
            Arc::ptr_eq(&c1, &again),
            "a SecretStore is one identity for every caller"
        );
        let newer = StoreHandle {
            resource_version: "2".into(),
            ..store.clone()
        };
        let c2 = e.clients.client(&newer, "team-a").await.unwrap();
        assert!(!Arc::ptr_eq(&c1, &c2));
        assert_eq!(e.clients.login_count(), 2);
        // The evicted version's token is revoked in the background.
        let deadline = Instant::now() + Duration::from_secs(5);
        while e.vault.live_tokens() != live + 1 {
            assert!(Instant::now() < deadline, "old token not revoked");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The cached version again is the same client; the older version again (a reconcile
        // that read an older cache) logs in anew and evicts the newer, and back.
        let same = e.clients.client(&newer, "team-b").await.unwrap();
        assert!(Arc::ptr_eq(&c2, &same));
        let old = e.clients.client(&store, "team-a").await.unwrap();
        assert!(!Arc::ptr_eq(&c1, &old) && !Arc::ptr_eq(&c2, &old));
        let c2 = e.clients.client(&newer, "team-a").await.unwrap();
        assert!(!Arc::ptr_eq(&same, &c2));
        assert_eq!(e.clients.login_count(), 4);
        let deadline = Instant::now() + Duration::from_secs(5);
        while e.vault.live_tokens() != live + 1 {
            assert!(
                Instant::now() < deadline,
                "evicted versions' tokens not revoked"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A deleted store's clients are dropped and their tokens revoked.
        e.clients.forget(&store).await;
        assert_eq!(e.vault.live_tokens(), live);
        let c3 = e.clients.client(&newer, "team-a").await.unwrap();
        assert!(!Arc::ptr_eq(&c2, &c3));

        // A ClusterSecretStore with a namespace-less reference logs in per ExternalSecret
        // namespace, with that namespace's Secret.
        let t_a = e.vault.create_token(&["reader"], None);
        let t_b = e.vault.create_token(&["default"], None);
        e.put_secret("team-a", "vault-token", &[("token", t_a.as_bytes())])
            .await;
        e.put_secret("team-b", "vault-token", &[("token", t_b.as_bytes())])
            .await;
        let mut css = ClusterSecretStore::new(
            "shared",
            ClusterSecretStoreSpec {
                store: SecretStoreSpec {
                    provider: SecretStoreProvider {
                        vault: Some(VaultProvider {
                            server: e.vault.addr(),
                            path: Some("secret".into()),
                            version: Some(VaultKvVersion::V2),
                            auth: Some(VaultAuth {
                                token_secret_ref: Some(sel("vault-token", "token")),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                    },
                    ..Default::default()
                },
            },
        );
        css.metadata.uid = Some("css-uid".into());
        css.metadata.resource_version = Some("7".into());
        let h = StoreHandle::from_cluster_store(&css);
        e.vault.kv2_put("secret", "p", json!({"v": "1"})).unwrap();
        let ca = e.clients.client(&h, "team-a").await.unwrap();
        let cb = e.clients.client(&h, "team-b").await.unwrap();
        assert!(!Arc::ptr_eq(&ca, &cb));
        assert!(ca.read_secret("p", None).await.unwrap().is_some());
        let err = cb.read_secret("p", None).await.unwrap_err();
        assert!(matches!(err, VaultError::PermissionDenied { .. }), "{err}");
        // A reference to a Secret that does not exist is a configuration error naming it.
        let err = e.clients.client(&h, "vault-system").await.err().unwrap();
        assert!(matches!(err, VaultError::Config { .. }), "{err}");
        assert!(
            err.to_string().contains("vault-system/vault-token"),
            "{err}"
        );
    })
    .await
}

#[tokio::test]
async fn tls_with_ca_bundle_and_cert_auth() {
    bounded(async {
        let e = env_with(VaultEmulatorConfig {
            tls: true,
            ..Default::default()
        })
        .await;
        e.vault.put_policy("reader", READER).unwrap();
        e.vault
            .kv2_put("secret", "app", json!({"v": "tls"}))
            .unwrap();
        let ca = e.vault.ca_pem().unwrap();
        let ca_b64 = base64::engine::general_purpose::STANDARD.encode(&ca);

        // Without the CA the server is not trusted.
        let untrusted = e.token_store(&["reader"], |_| {}).await;
        let err = e.clients.client(&untrusted, "team-a").await.err();
        // Token auth needs no call at client(): the first request shows it.
        let err = match err {
            Some(err) => err,
            None => e
                .clients
                .client(&untrusted, "team-a")
                .await
                .unwrap()
                .read_secret("app", None)
                .await
                .unwrap_err(),
        };
        assert!(matches!(err, VaultError::Config { .. }), "{err}");
        assert!(err.to_string().contains("caBundle"), "{err}");

        // Client certificate login.
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["vaultgate".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "vaultgate");
        let cert = params.self_signed(&key).unwrap();
        e.vault.enable_auth("cert", "cert").unwrap();
        e.api(
            "POST",
            "auth/cert/certs/web",
            json!({"certificate": cert.pem(), "token_policies": ["reader"]}),
        )
        .await;
        e.put_secret(
            "team-a",
            "client-cert",
            &[
                ("tls.crt", cert.pem().as_bytes()),
                ("tls.key", key.serialize_pem().as_bytes()),
            ],
        )
        .await;
        let store = StoreHandle {
            name: "cert".into(),
            ..e.store(
                VaultAuth {
                    cert: Some(VaultCertAuth {
                        path: "cert".into(),
                        client_cert: Some(SecretKeySelector {
                            name: Some("client-cert".into()),
                            ..Default::default()
                        }),
                        secret_ref: Some(SecretKeySelector {
                            name: Some("client-cert".into()),
                            ..Default::default()
                        }),
                        vault_role: Some("web".into()),
                    }),
                    ..Default::default()
                },
                |p| p.ca_bundle = Some(ca_b64.clone()),
            )
        };
        let c = e.clients.client(&store, "team-a").await.unwrap();
        assert_eq!(
            c.read_secret("app", None).await.unwrap().unwrap()["v"],
            "tls"
        );
        assert_eq!(e.vault.count_logins(), 1);

        // mTLS from spec.provider.vault.tls (default keys tls.crt / tls.key) carries the
        // cert login when auth.cert names no certificate of its own.
        let mtls = StoreHandle {
            name: "mtls".into(),
            ..e.store(
                VaultAuth {
                    cert: Some(VaultCertAuth {
                        path: "cert".into(),
                        vault_role: Some("web".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                |p| {
                    p.ca_bundle = Some(ca_b64.clone());
                    p.tls = Some(VaultClientTls {
                        cert_secret_ref: Some(SecretKeySelector {
                            name: Some("client-cert".into()),
                            ..Default::default()
                        }),
                        key_secret_ref: Some(SecretKeySelector {
                            name: Some("client-cert".into()),
                            ..Default::default()
                        }),
                    });
                },
            )
        };
        let c = e.clients.client(&mtls, "team-a").await.unwrap();
        assert_eq!(
            c.read_secret("app", None).await.unwrap().unwrap()["v"],
            "tls"
        );
        assert_eq!(e.vault.count_logins(), 2);
        // Without any client certificate the cert login is refused by configuration.
        let none = StoreHandle {
            name: "no-cert".into(),
            ..mtls.clone()
        };
        let mut spec = (*none.spec).clone();
        spec.provider.vault.as_mut().unwrap().tls = None;
        let none = StoreHandle {
            spec: Arc::new(spec),
            ..none
        };
        let err = e.clients.client(&none, "team-a").await.err().unwrap();
        assert!(matches!(err, VaultError::Config { .. }), "{err}");

        // caProvider from a ConfigMap works like caBundle.
        let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
            Api::namespaced(e.kc.clone(), "team-a");
        let mut cm = k8s_openapi::api::core::v1::ConfigMap::default();
        cm.metadata.name = Some("vault-ca".into());
        cm.data = Some([("ca.crt".to_string(), ca.clone())].into());
        cms.create(&PostParams::default(), &cm).await.unwrap();
        let via_cm = StoreHandle {
            name: "cm".into(),
            ..e.token_store(&["reader"], |p| {
                p.ca_provider = Some(CaProvider {
                    type_: CaProviderType::ConfigMap,
                    name: "vault-ca".into(),
                    key: Some("ca.crt".into()),
                    namespace: None,
                })
            })
            .await
        };
        let c = e.clients.client(&via_cm, "team-a").await.unwrap();
        assert_eq!(
            c.read_secret("app", None).await.unwrap().unwrap()["v"],
            "tls"
        );

        // And from a Secret.
        e.put_secret("team-a", "vault-ca", &[("ca.crt", ca.as_bytes())])
            .await;
        let via_secret = StoreHandle {
            name: "secret-ca".into(),
            ..e.token_store(&["reader"], |p| {
                p.ca_provider = Some(CaProvider {
                    type_: CaProviderType::Secret,
                    name: "vault-ca".into(),
                    key: Some("ca.crt".into()),
                    namespace: None,
                })
            })
            .await
        };
        let c = e.clients.client(&via_secret, "team-a").await.unwrap();
        assert_eq!(
            c.read_secret("app", None).await.unwrap().unwrap()["v"],
            "tls"
        );
    })
    .await
}

#[tokio::test]
async fn kubernetes_and_jwt_logins_with_service_account_tokens() {
    bounded(async {
        let e = env().await;
        e.vault.put_policy("reader", READER).unwrap();
        e.vault
            .kv2_put("secret", "app", json!({"v": "k8s"}))
            .unwrap();
        let sas: Api<ServiceAccount> = Api::namespaced(e.kc.clone(), "team-a");
        let mut sa = ServiceAccount::default();
        sa.metadata.name = Some("app".into());
        sas.create(&PostParams::default(), &sa).await.unwrap();

        e.vault.enable_auth("kubernetes", "kubernetes").unwrap();
        e.api(
            "POST",
            "auth/kubernetes/config",
            json!({
                "kubernetes_host": e.kube.url(),
                "kubernetes_ca_cert": e.kube.ca_pem(),
                "token_reviewer_jwt": e.kube.admin_token(),
            }),
        )
        .await;
        e.api(
            "POST",
            "auth/kubernetes/role/app",
            json!({
                "bound_service_account_names": ["app"],
                "bound_service_account_namespaces": ["team-a"],
                "token_policies": ["reader"],
            }),
        )
        .await;
        let store = e.store(
            VaultAuth {
                kubernetes: Some(VaultKubernetesAuth {
                    mount_path: "kubernetes".into(),
                    role: "app".into(),
                    service_account_ref: Some(ServiceAccountSelector {
                        name: "app".into(),
                        ..Default::default()
                    }),
                    secret_ref: None,
                }),
                ..Default::default()
            },
            |_| {},
        );
        let c = e.clients.client(&store, "team-a").await.unwrap();
        assert_eq!(
            c.read_secret("app", None).await.unwrap().unwrap()["v"],
            "k8s"
        );

        // A JWT kept in a Secret (key `token` by default).
        let jwt = e.kube.issue_token("team-a", "app", &[], 600);
        e.put_secret("team-a", "sa-jwt", &[("token", jwt.as_bytes())])
            .await;
        let from_secret = StoreHandle {
            name: "k8s-secret".into(),
            ..e.store(
                VaultAuth {
                    kubernetes: Some(VaultKubernetesAuth {
                        mount_path: "kubernetes".into(),
                        role: "app".into(),
                        service_account_ref: None,
                        secret_ref: Some(SecretKeySelector {
                            name: Some("sa-jwt".into()),
                            ..Default::default()
                        }),
                    }),
                    ..Default::default()
                },
                |_| {},
            )
        };
        let c = e.clients.client(&from_secret, "team-a").await.unwrap();
        assert_eq!(
            c.read_secret("app", None).await.unwrap().unwrap()["v"],
            "k8s"
        );

        e.vault.enable_auth("jwt", "jwt").unwrap();
        e.api(
            "POST",
            "auth/jwt/config",
            json!({"jwt_validation_pubkeys": [e.kube.jwt_public_key_pem()]}),
        )
        .await;
        e.api(
            "POST",
            "auth/jwt/role/app",
            json!({
                "role_type": "jwt",
                "bound_audiences": ["vault"],
                "user_claim": "sub",
                "token_policies": ["reader"],
            }),
        )
        .await;
        let jwt_store = StoreHandle {
            name: "jwt".into(),
            ..e.store(
                VaultAuth {
                    jwt: Some(VaultJwtAuth {
                        path: "jwt".into(),
                        role: Some("app".into()),
                        secret_ref: None,
                        kubernetes_service_account_token: Some(
                            VaultKubernetesServiceAccountTokenAuth {
                                service_account_ref: ServiceAccountSelector {
                                    name: "app".into(),
                                    ..Default::default()
                                },
                                audiences: None,
                                expiration_seconds: None,
                            },
                        ),
                    }),
                    ..Default::default()
                },
                |_| {},
            )
        };
        let c = e.clients.client(&jwt_store, "team-a").await.unwrap();
        assert_eq!(
            c.read_secret("app", None).await.unwrap().unwrap()["v"],
            "k8s"
        );
        assert_eq!(e.vault.count_logins(), 3);
    })
    .await
}
