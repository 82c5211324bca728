//! Live admission checks of ClusterExternalSecrets against the Vault and Kubernetes emulators:
//! the ExternalSecret checks under `spec.externalSecretSpec`, and a warning naming the selected
//! namespaces a ClusterSecretStore's conditions refuse.

#[path = "support/live.rs"]
mod live;

use std::time::Duration;

use live::{env, judge, read};
use serde_json::{Value, json};
use vaultgate::admission::LiveMode;

fn ces(store: (&str, &str), teams: &[&str], data: Value) -> Value {
    json!({
        "apiVersion": "external-secrets.io/v1",
        "kind": "ClusterExternalSecret",
        "metadata": {"name": "fan"},
        "spec": {
            "namespaceSelectors": [{"matchExpressions": [{"key": "team", "operator": "In", "values": teams}]}],
            "externalSecretSpec": {
                "secretStoreRef": {"kind": store.0, "name": store.1},
                "refreshInterval": "1h0m0s",
                "target": {"name": "fan", "creationPolicy": "Owner", "deletionPolicy": "Retain"},
                "data": data,
            }
        }
    })
}

#[tokio::test]
async fn cluster_store_conditions_name_the_refused_namespaces_in_a_warning() {
    let e = env().await;
    let enforce = e.state(LiveMode::Enforce, Duration::from_secs(2));
    let css = ("ClusterSecretStore", "only-team-a");
    let v = judge(
        &enforce,
        &ces(css, &["a", "b"], read("app/db", "password")),
        false,
    )
    .await;
    assert!(v.allowed, "{}", v.message);
    assert!(
        v.warnings.iter().any(|w| w.contains(
            "the conditions of ClusterSecretStore only-team-a refuse 1 of the 2 selected namespaces"
        ) && w.ends_with(": team-b")),
        "{:?}",
        v.warnings
    );
    // Only admitted namespaces: no warning.
    let v = judge(
        &enforce,
        &ces(css, &["a"], read("app/db", "password")),
        false,
    )
    .await;
    assert!(
        v.allowed && v.warnings.is_empty(),
        "{} {:?}",
        v.message,
        v.warnings
    );
}

#[tokio::test]
async fn remote_refs_are_checked_and_named_with_the_full_path() {
    let e = env().await;
    let enforce = e.state(LiveMode::Enforce, Duration::from_secs(2));
    let css = ("ClusterSecretStore", "only-team-a");
    let v = judge(
        &enforce,
        &ces(css, &["a"], read("app/missing", "password")),
        false,
    )
    .await;
    assert!(!v.allowed);
    assert!(
        v.message
            .contains("spec.externalSecretSpec.data[0].remoteRef.key")
            && v.message.contains("secret/data/app/missing"),
        "{}",
        v.message
    );
    assert!(!v.message.contains("s3cr3t"));
}

#[tokio::test]
async fn a_secret_store_missing_in_a_selected_namespace_is_named() {
    let e = env().await;
    let warn = e.state(LiveMode::Warn, Duration::from_secs(2));
    let v = judge(
        &warn,
        &ces(
            ("SecretStore", "vault"),
            &["a", "b"],
            read("app/db", "password"),
        ),
        false,
    )
    .await;
    assert!(v.allowed, "{}", v.message);
    assert!(
        v.warnings.iter().any(|w| w.contains(
            "spec.externalSecretSpec.secretStoreRef: SecretStore team-b/vault does not exist"
        ) && w.contains("(namespace team-b)")),
        "{:?}",
        v.warnings
    );
    assert!(
        !v.warnings.iter().any(|w| w.contains("team-a/vault")),
        "{:?}",
        v.warnings
    );
}

#[tokio::test]
async fn static_rules_deny_before_any_live_check() {
    let e = env().await;
    let warn = e.state(LiveMode::Warn, Duration::from_secs(2));
    let mut obj = ces(
        ("ClusterSecretStore", "only-team-a"),
        &["a"],
        read("app/db", "password"),
    );
    obj["spec"]["namespaceSelectors"][0]["matchExpressions"][0]["operator"] = json!("Near");
    let v = judge(&warn, &obj, false).await;
    assert!(!v.allowed);
    assert!(
        v.message
            .contains("spec.namespaceSelectors[0].matchExpressions[0].operator"),
        "{}",
        v.message
    );
}
