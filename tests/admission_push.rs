//! Admission of PushSecrets against the Vault and Kubernetes emulators: the static rules
//! through a review, and the live checks (write capabilities, an unmanaged secret at the
//! target, the source Secret and its keys, another PushSecret on the same target).

#[path = "support/live.rs"]
mod live;

use std::collections::BTreeMap;
use std::time::Duration;

use live::{env, judge};
use serde_json::{Value, json};
use vaultgate::admission::LiveMode;

fn ps(name: &str, source: &str, data: Value) -> Value {
    json!({
        "apiVersion": "external-secrets.io/v1alpha1",
        "kind": "PushSecret",
        "metadata": {"name": name, "namespace": "team-a"},
        "spec": {
            "secretStoreRefs": [{"name": "vault", "kind": "SecretStore"}],
            "selector": {"secret": {"name": source}},
            "data": data
        }
    })
}

fn entry(key: &str, remote: &str, property: &str) -> Value {
    json!([{"match": {"secretKey": key, "remoteRef": {"remoteKey": remote, "property": property}}}])
}

#[tokio::test]
async fn static_rules_refuse_by_field_path() {
    let e = env().await;
    let enforce = e.state(LiveMode::Enforce, Duration::from_secs(2));
    let mut bad = ps("bad", "src", entry("k", "push/a", "p"));
    bad["spec"]["secretStoreRefs"] = json!([]);
    bad["spec"]["dataTo"] = json!([{"storeRef": {"name": "vault"}}]);
    let v = judge(&enforce, &bad, false).await;
    assert!(!v.allowed);
    assert!(
        v.message
            .contains("spec.secretStoreRefs: at least one store")
            && v.message
                .contains("spec.dataTo: not supported by vaultgate"),
        "{}",
        v.message
    );
}

#[tokio::test]
async fn targets_source_and_other_pushers_are_checked_live() {
    let e = env().await;
    e.kube
        .apply_yaml(
            "apiVersion: v1\nkind: Secret\nmetadata: {name: src, namespace: team-a}\nstringData: {k: v}\n",
        )
        .await
        .unwrap();
    e.vault
        .kv2_put("secret", "push/theirs", json!({"p": "keep"}))
        .unwrap();
    e.vault
        .kv2_put("secret", "push/ours", json!({"p": "old"}))
        .unwrap();
    e.vault
        .kv2_set_custom_metadata(
            "secret",
            "push/ours",
            BTreeMap::from([("managed-by".to_string(), "external-secrets".to_string())]),
        )
        .unwrap();
    let enforce = e.state(LiveMode::Enforce, Duration::from_secs(2));

    for target in ["push/new", "push/ours"] {
        let ok = judge(&enforce, &ps("ok", "src", entry("k", target, "p")), false).await;
        assert!(
            ok.allowed && ok.warnings.is_empty(),
            "{target}: {} {:?}",
            ok.message,
            ok.warnings
        );
    }

    let not_writable = judge(&enforce, &ps("nw", "src", entry("k", "app/x", "p")), false).await;
    assert!(!not_writable.allowed);
    assert!(
        not_writable
            .message
            .contains("spec.data[0].match.remoteRef.remoteKey")
            && not_writable
                .message
                .contains("may not write the data path \"secret/data/app/x\"")
            && not_writable
                .message
                .contains("metadata path \"secret/metadata/app/x\""),
        "{}",
        not_writable.message
    );

    let theirs = judge(
        &enforce,
        &ps("t", "src", entry("k", "push/theirs", "p")),
        false,
    )
    .await;
    assert!(!theirs.allowed);
    assert!(
        theirs.message.contains("\"push/theirs\"") && theirs.message.contains("not managed"),
        "{}",
        theirs.message
    );
    assert!(!theirs.message.contains("keep"), "{}", theirs.message);

    let no_source = judge(
        &enforce,
        &ps("ns", "nope", entry("k", "push/new", "p")),
        false,
    )
    .await;
    assert!(!no_source.allowed);
    assert!(
        no_source
            .message
            .contains("spec.selector.secret.name: Secret team-a/nope does not exist"),
        "{}",
        no_source.message
    );

    let no_key = judge(
        &enforce,
        &ps("nk", "src", entry("nokey", "push/new", "p")),
        false,
    )
    .await;
    assert!(!no_key.allowed);
    assert!(
        no_key
            .message
            .contains("spec.data[0].match.secretKey: Secret team-a/src has no key \"nokey\""),
        "{}",
        no_key.message
    );

    // Another PushSecret already pushes to push/shared property p through the same store.
    let other = ps("other", "src", entry("k", "push/shared", "p"));
    e.kube
        .apply_yaml(&serde_yaml_ng::to_string(&other).unwrap())
        .await
        .unwrap();
    let clash = judge(
        &enforce,
        &ps("mine", "src", entry("k", "push/shared", "p")),
        false,
    )
    .await;
    assert!(!clash.allowed);
    assert!(
        clash
            .message
            .contains("PushSecret team-a/other already pushes to \"push/shared\" property \"p\""),
        "{}",
        clash.message
    );
    // Another property of the same secret is fine.
    let beside = judge(
        &enforce,
        &ps("mine", "src", entry("k", "push/shared", "q")),
        false,
    )
    .await;
    assert!(beside.allowed, "{}", beside.message);

    // warn: admitted, with the problem as a warning.
    let warn = e.state(LiveMode::Warn, Duration::from_secs(2));
    let w = judge(
        &warn,
        &ps("t", "src", entry("k", "push/theirs", "p")),
        false,
    )
    .await;
    assert!(w.allowed);
    assert!(
        w.warnings.iter().any(|x| x.contains("not managed")),
        "{:?}",
        w.warnings
    );

    // A dry run does not log in to Vault.
    let d = judge(
        &enforce,
        &ps("t", "src", entry("k", "push/theirs", "p")),
        true,
    )
    .await;
    assert!(d.allowed, "{}", d.message);
    assert!(
        d.warnings.iter().any(|x| x.contains("dry run")),
        "{:?}",
        d.warnings
    );
}

fn cps(name: &str, data: Value) -> Value {
    json!({
        "apiVersion": "external-secrets.io/v1alpha1",
        "kind": "ClusterPushSecret",
        "metadata": {"name": name},
        "spec": {
            "pushSecretName": "pushed",
            "namespaceSelectors": [{"matchLabels": {"team": "a"}}],
            "pushSecretSpec": {
                "secretStoreRefs": [{"name": "vault", "kind": "SecretStore"}],
                "selector": {"secret": {"name": "src"}},
                "data": data
            }
        }
    })
}

#[tokio::test]
async fn cluster_push_secrets_are_checked_in_the_namespaces_they_select() {
    let e = env().await;
    e.kube
        .apply_yaml(
            "apiVersion: v1\nkind: Secret\nmetadata: {name: src, namespace: team-a}\nstringData: {k: v}\n",
        )
        .await
        .unwrap();
    let enforce = e.state(LiveMode::Enforce, Duration::from_secs(2));

    let ok = judge(&enforce, &cps("c", entry("k", "push/new", "p")), false).await;
    assert!(
        ok.allowed && ok.warnings.is_empty(),
        "{} {:?}",
        ok.message,
        ok.warnings
    );

    let no_key = judge(&enforce, &cps("c", entry("nokey", "push/new", "p")), false).await;
    assert!(!no_key.allowed);
    assert!(
        no_key.message.contains(
            "spec.pushSecretSpec.data[0].match.secretKey: Secret team-a/src has no key \"nokey\" (namespace team-a)"
        ),
        "{}",
        no_key.message
    );

    // A PushSecret the same ClusterPushSecret made is not another pusher; one it did not make is.
    let mut sibling = ps("sibling", "src", entry("k", "push/shared", "p"));
    sibling["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "external-secrets.io/v1alpha1",
        "kind": "ClusterPushSecret",
        "name": "c",
        "uid": "c-uid",
        "controller": true
    }]);
    e.kube
        .apply_yaml(&serde_yaml_ng::to_string(&sibling).unwrap())
        .await
        .unwrap();
    let same = judge(&enforce, &cps("c", entry("k", "push/shared", "p")), false).await;
    assert!(same.allowed, "{}", same.message);
    let other = judge(&enforce, &cps("d", entry("k", "push/shared", "p")), false).await;
    assert!(!other.allowed);
    assert!(
        other.message.contains(
            "spec.pushSecretSpec.data[0].match.remoteRef: PushSecret team-a/sibling already pushes to \"push/shared\" property \"p\""
        ),
        "{}",
        other.message
    );
}

/// A generator as the source: a served kind is admitted (no source Secret to look for); a
/// VaultDynamicSecret is refused, named directly or behind a ClusterGenerator.
#[tokio::test]
async fn generator_sources_are_admitted_but_not_vault_dynamic_secrets() {
    let e = env().await;
    e.kube
        .apply_yaml(
            r#"
apiVersion: generators.external-secrets.io/v1alpha1
kind: ClusterGenerator
metadata: {name: db}
spec:
  kind: VaultDynamicSecret
  generator:
    vaultDynamicSecretSpec:
      path: database/creds/app
      provider: {server: "http://127.0.0.1:1", auth: {tokenSecretRef: {name: t, key: token}}}
---
apiVersion: generators.external-secrets.io/v1alpha1
kind: ClusterGenerator
metadata: {name: pw}
spec:
  kind: Password
  generator: {passwordSpec: {length: 16}}
"#,
        )
        .await
        .unwrap();
    let enforce = e.state(LiveMode::Enforce, Duration::from_secs(2));
    let from = |kind: &str, name: &str| {
        let mut p = ps("gen", "unused", entry("password", "push/new", "p"));
        p["spec"]["selector"] = json!({"generatorRef": {
            "apiVersion": "generators.external-secrets.io/v1alpha1", "kind": kind, "name": name}});
        p
    };
    for (kind, name) in [("Password", "any"), ("ClusterGenerator", "pw")] {
        let v = judge(&enforce, &from(kind, name), false).await;
        assert!(v.allowed, "{kind} {name}: {}", v.message);
    }
    for (kind, name, field) in [
        (
            "VaultDynamicSecret",
            "db",
            "spec.selector.generatorRef.kind: a VaultDynamicSecret cannot be pushed",
        ),
        (
            "ClusterGenerator",
            "db",
            "spec.selector.generatorRef: ClusterGenerator db is a VaultDynamicSecret",
        ),
        (
            "ClusterGenerator",
            "nope",
            "spec.selector.generatorRef: ClusterGenerator nope does not exist",
        ),
    ] {
        let v = judge(&enforce, &from(kind, name), false).await;
        assert!(!v.allowed, "{kind} {name}");
        assert!(v.message.contains(field), "{kind} {name}: {}", v.message);
    }
}
