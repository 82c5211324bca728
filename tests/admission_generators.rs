//! Admission of the generator kinds and of ExternalSecrets naming generators, against the
//! Vault and Kubernetes emulators: static refusals by field path; a VaultDynamicSecret's path
//! checked for its call (`sys/capabilities-self`) only with authenticated callers, nothing
//! generated; a generator that does not exist reported as a missing store is.

#[path = "support/live.rs"]
mod live;

use std::time::Duration;

use live::{env, judge};
use serde_json::{Value, json};
use vaultgate::admission::LiveMode;

const BUDGET: Duration = Duration::from_secs(2);

fn vds(name: &str, path: &str, method: &str, server: &str) -> Value {
    json!({
        "apiVersion": "generators.external-secrets.io/v1alpha1",
        "kind": "VaultDynamicSecret",
        "metadata": {"name": name, "namespace": "team-a"},
        "spec": {
            "path": path,
            "method": method,
            "provider": {
                "server": server,
                "auth": {"userPass": {"path": "userpass", "username": "app",
                    "secretRef": {"name": "vault-userpass", "key": "password"}}}
            }
        }
    })
}

fn generator_es(kind: &str, name: &str) -> Value {
    json!({
        "apiVersion": "external-secrets.io/v1",
        "kind": "ExternalSecret",
        "metadata": {"name": "made", "namespace": "team-a"},
        "spec": {
            "target": {"name": "made"},
            "dataFrom": [{"sourceRef": {"generatorRef": {
                "apiVersion": "generators.external-secrets.io/v1alpha1", "kind": kind, "name": name}}}]
        }
    })
}

#[tokio::test]
async fn an_impossible_password_is_refused_by_field() {
    let e = env().await;
    let enforce = e.state(LiveMode::Enforce, BUDGET);
    let pw = |spec: Value| {
        json!({
            "apiVersion": "generators.external-secrets.io/v1alpha1",
            "kind": "Password",
            "metadata": {"name": "pw", "namespace": "team-a"},
            "spec": spec,
        })
    };
    let v = judge(
        &enforce,
        &pw(json!({"length": 8, "digits": 5, "symbols": 4})),
        false,
    )
    .await;
    assert!(!v.allowed);
    assert!(
        v.message
            .contains("spec: digits (5) + symbols (4) exceed length (8)"),
        "{}",
        v.message
    );
    let v = judge(
        &enforce,
        &pw(json!({"length": 8, "digits": 2, "symbols": 2})),
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
async fn a_vault_dynamic_secret_path_is_checked_for_its_call_with_trusted_callers() {
    let e = env().await;
    let server = e.vault.addr();
    let trusted = e.trusted_state(LiveMode::Enforce, BUDGET);
    let ok = judge(
        &trusted,
        &vds("db", "secret/data/app/db", "GET", &server),
        false,
    )
    .await;
    assert!(
        ok.allowed && ok.warnings.is_empty(),
        "{} {:?}",
        ok.message,
        ok.warnings
    );

    let denied = judge(
        &trusted,
        &vds("x", "secret/data/other/x", "GET", &server),
        false,
    )
    .await;
    assert!(!denied.allowed);
    assert!(
        denied.message.contains("spec.path: the Vault identity of VaultDynamicSecret team-a/x may not read \"secret/data/other/x\""),
        "{}",
        denied.message
    );
    let write = judge(
        &trusted,
        &vds("w", "secret/data/app/db", "POST", &server),
        false,
    )
    .await;
    assert!(!write.allowed);
    assert!(
        write.message.contains("may not update"),
        "{}",
        write.message
    );
    // Nothing was generated: the secret was only asked about, never read or written.
    assert!(
        e.vault
            .requests()
            .iter()
            .all(|r| !r.path.starts_with("secret/data/")),
        "a live check read or wrote a secret"
    );

    // Without authenticated callers the review's server and credentials are not used.
    let logins = e.vault.count_logins();
    let anyone = e.state(LiveMode::Enforce, BUDGET);
    let v = judge(
        &anyone,
        &vds("x", "secret/data/other/x", "GET", &server),
        false,
    )
    .await;
    assert!(v.allowed, "{}", v.message);
    assert!(
        v.warnings
            .iter()
            .any(|w| w.contains("checked when an ExternalSecret uses it")),
        "{:?}",
        v.warnings
    );
    assert_eq!(e.vault.count_logins(), logins);
}

#[tokio::test]
async fn an_external_secret_naming_a_missing_generator_is_reported() {
    let e = env().await;
    let enforce = e.state(LiveMode::Enforce, BUDGET);
    let v = judge(&enforce, &generator_es("Password", "absent"), false).await;
    assert!(!v.allowed);
    assert!(
        v.message.contains(
            "spec.dataFrom[0].sourceRef.generatorRef: Password team-a/absent does not exist (yet)"
        ),
        "{}",
        v.message
    );
    let warn = e.state(LiveMode::Warn, BUDGET);
    let v = judge(&warn, &generator_es("ClusterGenerator", "absent"), false).await;
    assert!(v.allowed);
    assert!(
        v.warnings
            .iter()
            .any(|w| w.contains("ClusterGenerator absent does not exist")),
        "{:?}",
        v.warnings
    );

    e.kube
        .apply_yaml(
            "apiVersion: generators.external-secrets.io/v1alpha1\nkind: Password\nmetadata: {name: pw, namespace: team-a}\nspec: {length: 16}\n",
        )
        .await
        .unwrap();
    // No store named and none needed: every entry is a generator's.
    let v = judge(&enforce, &generator_es("Password", "pw"), false).await;
    assert!(
        v.allowed && v.warnings.is_empty(),
        "{} {:?}",
        v.message,
        v.warnings
    );
}
