//! Live admission checks of entries that name their own store (`sourceRef.storeRef`): each
//! entry is checked in Vault through its own stored store (read from the API server, never
//! from the review), and a ClusterSecretStore whose conditions refuse the namespace is refused
//! with the entry's field path.

#[path = "support/live.rs"]
mod live;

use std::time::Duration;

use live::{env, judge};
use serde_json::{Value, json};
use vaultgate::admission::LiveMode;

/// An ExternalSecret without `secretStoreRef` unless `default` names one.
fn es(ns: &str, default: Option<&str>, data: Value, data_from: Value) -> Value {
    let mut o = json!({
        "apiVersion": "external-secrets.io/v1",
        "kind": "ExternalSecret",
        "metadata": {"name": "es", "namespace": ns},
        "spec": {
            "refreshInterval": "1h0m0s",
            "target": {"name": "es"},
            "data": data,
            "dataFrom": data_from,
        }
    });
    if let Some(s) = default {
        o["spec"]["secretStoreRef"] = json!({"kind": "SecretStore", "name": s});
    }
    o
}

fn own(kind: &str, name: &str) -> Value {
    json!({"storeRef": {"kind": kind, "name": name}})
}

#[tokio::test]
async fn each_entry_is_checked_through_its_own_stored_store() {
    let e = env().await;
    let enforce = e.state(LiveMode::Enforce, Duration::from_secs(2));
    let warn = e.state(LiveMode::Warn, Duration::from_secs(2));
    let data = |key: &str| {
        json!([{"secretKey": "v", "remoteRef": {"key": key, "property": "password"},
                "sourceRef": own("SecretStore", "vault")}])
    };

    // No secretStoreRef: every entry names its store.
    let ok = judge(
        &enforce,
        &es(
            "team-a",
            None,
            data("app/db"),
            json!([{"extract": {"key": "app/config"},
                    "sourceRef": own("ClusterSecretStore", "only-team-a")}]),
        ),
        false,
    )
    .await;
    assert!(
        ok.allowed && ok.warnings.is_empty(),
        "{} {:?}",
        ok.message,
        ok.warnings
    );

    // A missing secret, found through the entry's store.
    let missing = judge(
        &enforce,
        &es("team-a", None, data("app/nope"), Value::Null),
        false,
    )
    .await;
    assert!(!missing.allowed);
    assert!(
        missing.message.contains("spec.data[0].remoteRef.key")
            && missing.message.contains("secret/data/app/nope"),
        "{}",
        missing.message
    );

    // Beside the default store: the entry on the ClusterSecretStore is checked with it (its
    // identity may not read other/x) and the default's entry with the default.
    let mixed = judge(
        &enforce,
        &es(
            "team-a",
            Some("vault"),
            json!([{"secretKey": "v", "remoteRef": {"key": "app/db", "property": "password"}}]),
            json!([{"extract": {"key": "other/x"},
                    "sourceRef": own("ClusterSecretStore", "only-team-a")}]),
        ),
        false,
    )
    .await;
    assert!(!mixed.allowed);
    assert!(
        mixed.message.contains("spec.dataFrom[0].extract")
            && mixed.message.contains("secret/data/other/x")
            && !mixed.message.contains("spec.data[0]"),
        "{}",
        mixed.message
    );

    // A store that is not stored is not taken from anywhere else: it does not exist.
    let absent = judge(
        &enforce,
        &es(
            "team-a",
            None,
            json!([{"secretKey": "v", "remoteRef": {"key": "app/db"},
                    "sourceRef": own("SecretStore", "later")}]),
            Value::Null,
        ),
        false,
    )
    .await;
    assert!(!absent.allowed);
    assert!(
        absent
            .message
            .contains("spec.data[0].sourceRef.storeRef: SecretStore team-a/later does not exist"),
        "{}",
        absent.message
    );

    // A ClusterSecretStore whose conditions leave team-b out: refused in every mode, naming
    // the entry.
    let refused = judge(
        &warn,
        &es(
            "team-b",
            None,
            Value::Null,
            json!([{"extract": {"key": "app/config"},
                    "sourceRef": own("ClusterSecretStore", "only-team-a")}]),
        ),
        false,
    )
    .await;
    assert!(!refused.allowed);
    assert!(
        refused.message.contains(
            "spec.dataFrom[0].sourceRef.storeRef: using cluster store \"only-team-a\" is not \
             allowed from namespace \"team-b\": denied by spec.condition"
        ),
        "{}",
        refused.message
    );
}
