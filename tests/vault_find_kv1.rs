//! `dataFrom.find` on a KV v1 store, as ESO does it (`providers/v1/vault/client_get_all_secrets.go`):
//! find by name lists the v1 mount recursively and reads each match; only find by tags, which
//! needs KV v2 custom metadata, is refused.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, PostParams};
use kube_emulator::KubeEmulator;
use serde_json::json;
use vault_emulator::VaultEmulator;
use vaultgate::api::*;
use vaultgate::metrics::Metrics;
use vaultgate::vault::{StoreHandle, VaultClients, VaultError, fetch_external_secret};

const BOUND: Duration = Duration::from_secs(20);

fn find(path: Option<&str>, name: Option<&str>, tags: &[(&str, &str)]) -> ExternalSecretFind {
    ExternalSecretFind {
        path: path.map(Into::into),
        name: name.map(|n| FindName {
            regexp: Some(n.into()),
        }),
        tags: (!tags.is_empty()).then(|| {
            tags.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        }),
        ..Default::default()
    }
}

fn spec(entries: Vec<(ExternalSecretFind, Option<(&str, &str)>)>) -> ExternalSecretSpec {
    ExternalSecretSpec {
        data_from: Some(
            entries
                .into_iter()
                .map(|(f, rewrite)| ExternalSecretDataFromRemoteRef {
                    find: Some(f),
                    rewrite: rewrite.map(|(source, target)| {
                        vec![ExternalSecretRewrite {
                            regexp: Some(RewriteRegexp {
                                source: source.into(),
                                target: target.into(),
                            }),
                            ..Default::default()
                        }]
                    }),
                    ..Default::default()
                })
                .collect(),
        ),
        ..Default::default()
    }
}

#[tokio::test]
async fn find_by_name_lists_a_kv_v1_mount_and_tags_are_refused() {
    tokio::time::timeout(BOUND, async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let vault = VaultEmulator::start(Default::default()).await.unwrap();
        let kube = KubeEmulator::start(Default::default()).await.unwrap();
        let kc = kube.client().await;
        let mut n = Namespace::default();
        n.metadata.name = Some("team-a".into());
        Api::<Namespace>::all(kc.clone())
            .create(&PostParams::default(), &n)
            .await
            .unwrap();
        vault.enable_kv("kv1", 1).unwrap();
        for (path, v) in [
            ("app/db-credentials", "p1"),
            ("app/api-credentials", "p2"),
            ("app/nested/cache-credentials", "p3"),
            ("other/db-credentials", "p4"),
            ("app/settings", "s"),
        ] {
            vault.kv1_put("kv1", path, json!({"value": v})).unwrap();
        }
        vault
            .put_policy(
                "reader",
                "path \"kv1/*\" { capabilities = [\"read\", \"list\"] }",
            )
            .unwrap();
        let token = vault.create_token(&["reader"], None);
        let mut s = Secret::default();
        s.metadata.name = Some("vault-token".into());
        s.data = Some([("token".to_string(), ByteString(token.into_bytes()))].into());
        Api::<Secret>::namespaced(kc.clone(), "team-a")
            .create(&PostParams::default(), &s)
            .await
            .unwrap();
        let mut store = SecretStore::new(
            "vault-v1",
            SecretStoreSpec {
                provider: SecretStoreProvider {
                    vault: Some(VaultProvider {
                        server: vault.addr(),
                        path: Some("kv1".into()),
                        version: Some(VaultKvVersion::V1),
                        auth: Some(VaultAuth {
                            token_secret_ref: Some(SecretKeySelector {
                                name: Some("vault-token".into()),
                                namespace: None,
                                key: Some("token".into()),
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                },
                ..Default::default()
            },
        );
        store.metadata.namespace = Some("team-a".into());
        store.metadata.uid = Some("uid-v1".into());
        store.metadata.resource_version = Some("1".into());
        let clients = VaultClients::new(kc.clone(), Metrics::new());
        let c = clients
            .client(&StoreHandle::from_secret_store(&store), "team-a")
            .await
            .unwrap();

        // ESO's FindByName: every secret under the mount whose path matches, keyed by its
        // path with `/` made `_`.
        let got = fetch_external_secret(
            &c,
            &spec(vec![(find(None, Some("credentials$"), &[]), None)]),
            false,
        )
        .await
        .unwrap()
        .data;
        let keys: Vec<&str> = got.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "app_api-credentials",
                "app_db-credentials",
                "app_nested_cache-credentials",
                "other_db-credentials"
            ]
        );
        assert_eq!(got["app_db-credentials"], br#"{"value":"p1"}"#);

        // ESO's FindByNameAndRewrite: under a path, keys rewritten.
        let got = fetch_external_secret(
            &c,
            &spec(vec![(
                find(Some("app"), Some("credentials"), &[]),
                Some(("^(?:.*/)?(.*)-credentials$", "$1")),
            )]),
            false,
        )
        .await
        .unwrap()
        .data;
        let keys: Vec<&str> = got.keys().map(String::as_str).collect();
        assert_eq!(keys, ["api", "cache", "db"]);
        assert_eq!(got["api"], br#"{"value":"p2"}"#);

        // The listing is KV v1's: `<mount>/<folder>/` (folders end with `/`), no `metadata/`.
        let listed: Vec<String> = vault
            .requests()
            .into_iter()
            .filter(|r| r.path.ends_with('/'))
            .map(|r| r.path)
            .collect();
        assert!(listed.contains(&"kv1/".to_string()), "{listed:?}");
        assert!(listed.contains(&"kv1/app/".to_string()), "{listed:?}");
        assert!(listed.iter().all(|p| !p.contains("metadata")), "{listed:?}");

        // Find by tags needs KV v2 custom metadata: refused, naming why.
        let err = fetch_external_secret(
            &c,
            &spec(vec![(find(None, None, &[("env", "dev")]), None)]),
            false,
        )
        .await
        .err()
        .unwrap();
        assert!(
            matches!(err.source, VaultError::Unsupported { .. }),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("find by tags on a KV v1 store: tags are KV v2 custom metadata"),
            "{err}"
        );
    })
    .await
    .expect("test took too long");
}
