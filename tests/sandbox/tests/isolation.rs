//! Namespace isolation: a SecretStore serves its own namespace only, references stay inside it,
//! a ClusterSecretStore's conditions hold at admission and at reconcile, and a referent store
//! resolves credentials in the ExternalSecret's namespace only. Each test tries to cross the
//! line and must fail.

mod common;

use std::time::Duration;

use common::*;
use vaultgate::admission::LiveMode;

const LIMIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_store_cannot_be_used_from_another_namespace() {
    let sb = sandbox(LiveMode::Warn).await;
    sb.vault
        .kv2_put("secret", "a/app", serde_json::json!({"v": "team-a-only"}))
        .unwrap();
    let token = reader_token(&sb);
    let server = sb.vault.addr();
    let yaml = format!(
        "{}---\n{}---\n{}---\n{}---\napiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {{name: vault, namespace: team-a}}\nspec: {{provider: {{vault: {{server: \"{server}\", path: secret, auth: {{tokenSecretRef: {{name: vault-token, key: token}}}}}}}}}}\n",
        namespace("team-a"),
        namespace("team-b"),
        token_secret("team-a", "vault-token", &token),
        token_secret("team-b", "unrelated", "x"),
    );
    apply(&sb, &yaml).await.unwrap();
    // team-b names team-a's store: the name resolves in team-b, where there is none.
    let es = "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {name: steal, namespace: team-b}\nspec:\n  refreshInterval: 1s\n  secretStoreRef: {name: vault, kind: SecretStore}\n  data: [{secretKey: v, remoteRef: {key: a/app, property: v}}]\n";
    apply(&sb, es).await.unwrap();
    let (status, reason, message) =
        wait_ready(&sb, "team-b", "steal", LIMIT, |r| r.0 == "False").await;
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "SecretSyncedError")
    );
    assert!(
        message.contains("team-b") && message.contains("vault"),
        "{message}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        secret_value(&sb, "team-b", "steal", "v").await.is_none(),
        "no Secret for team-b"
    );
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_stores_references_cannot_reach_another_namespace() {
    let sb = sandbox(LiveMode::Off).await;
    let server = sb.vault.addr();
    apply(
        &sb,
        &format!("{}---\n{}", namespace("team-a"), namespace("team-b")),
    )
    .await
    .unwrap();
    for (what, auth) in [
        (
            "tokenSecretRef",
            "{tokenSecretRef: {name: vault-token, key: token, namespace: team-b}}",
        ),
        (
            "appRole",
            "{appRole: {roleId: r, secretRef: {name: s, key: k, namespace: team-b}}}",
        ),
        (
            "kubernetes",
            "{kubernetes: {role: r, serviceAccountRef: {name: default, namespace: team-b}}}",
        ),
    ] {
        let yaml = format!(
            "apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {{name: cross, namespace: team-a}}\nspec: {{provider: {{vault: {{server: \"{server}\", path: secret, auth: {auth}}}}}}}\n"
        );
        let err = apply(&sb, &yaml).await.expect_err(what);
        assert!(
            err.contains("team-b"),
            "{what}: the refusal names the namespace: {err}"
        );
    }
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_store_conditions_hold_at_admission_and_at_reconcile() {
    let sb = sandbox(LiveMode::Warn).await;
    sb.vault
        .kv2_put(
            "secret",
            "shared/app",
            serde_json::json!({"v": "for-team-a"}),
        )
        .unwrap();
    let token = reader_token(&sb);
    let server = sb.vault.addr();
    let yaml = format!(
        "{}---\n{}---\n{}---\napiVersion: external-secrets.io/v1\nkind: ClusterSecretStore\nmetadata: {{name: shared}}\nspec:\n  conditions: [{{namespaces: [team-a]}}]\n  provider: {{vault: {{server: \"{server}\", path: secret, auth: {{tokenSecretRef: {{name: vault-token, key: token, namespace: vaultgate-system}}}}}}}}\n",
        namespace("team-a"),
        namespace("team-b"),
        token_secret("vaultgate-system", "vault-token", &token),
    );
    apply(&sb, &yaml).await.unwrap();
    let es = |ns: &str| {
        format!(
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: app, namespace: {ns}}}\nspec:\n  refreshInterval: 1s\n  secretStoreRef: {{name: shared, kind: ClusterSecretStore}}\n  data: [{{secretKey: v, remoteRef: {{key: shared/app, property: v}}}}]\n"
        )
    };
    // Admission: refused outright, even in warn mode.
    let err = apply(&sb, &es("team-b"))
        .await
        .expect_err("team-b is not allowed");
    assert!(
        err.contains("not allowed from namespace \"team-b\""),
        "{err}"
    );
    apply(&sb, &es("team-a")).await.unwrap();
    wait_value(&sb, "team-a", "app", "v", "for-team-a", LIMIT).await;
    // Reconcile: the store's conditions narrow after team-c's ExternalSecret was admitted; the
    // reconciler refuses it from then on (and writes nothing new).
    apply(
        &sb,
        &yaml
            .replace("[team-a]", "[team-a, team-c]")
            .replace("team-b", "team-c"),
    )
    .await
    .unwrap();
    apply(&sb, &es("team-c")).await.unwrap();
    wait_value(&sb, "team-c", "app", "v", "for-team-a", LIMIT).await;
    apply(&sb, &yaml).await.unwrap();
    sb.vault
        .kv2_put("secret", "shared/app", serde_json::json!({"v": "changed"}))
        .unwrap();
    let (_, reason, message) = wait_ready(&sb, "team-c", "app", LIMIT, |r| r.0 == "False").await;
    assert_eq!(reason, "SecretSyncedError");
    assert!(
        message.contains("not allowed from namespace \"team-c\""),
        "{message}"
    );
    wait_value(&sb, "team-a", "app", "v", "changed", LIMIT).await;
    assert_eq!(
        secret_value(&sb, "team-c", "app", "v").await.as_deref(),
        Some(&b"for-team-a"[..]),
        "team-c gets no new value"
    );
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referent_store_resolves_credentials_in_the_external_secrets_namespace_only() {
    let sb = sandbox(LiveMode::Off).await;
    sb.vault
        .kv2_put("secret", "ref/app", serde_json::json!({"v": "referent"}))
        .unwrap();
    let token = reader_token(&sb);
    let server = sb.vault.addr();
    // The credentials exist in team-a only; the store names no namespace (referent).
    let yaml = format!(
        "{}---\n{}---\n{}---\napiVersion: external-secrets.io/v1\nkind: ClusterSecretStore\nmetadata: {{name: referent}}\nspec: {{provider: {{vault: {{server: \"{server}\", path: secret, auth: {{tokenSecretRef: {{name: vault-token, key: token}}}}}}}}}}\n",
        namespace("team-a"),
        namespace("team-b"),
        token_secret("team-a", "vault-token", &token),
    );
    apply(&sb, &yaml).await.unwrap();
    let es = |ns: &str| {
        format!(
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: app, namespace: {ns}}}\nspec:\n  refreshInterval: 1s\n  secretStoreRef: {{name: referent, kind: ClusterSecretStore}}\n  data: [{{secretKey: v, remoteRef: {{key: ref/app, property: v}}}}]\n"
        )
    };
    apply(&sb, &es("team-a")).await.unwrap();
    apply(&sb, &es("team-b")).await.unwrap();
    wait_value(&sb, "team-a", "app", "v", "referent", LIMIT).await;
    let (_, _, message) = wait_ready(&sb, "team-b", "app", LIMIT, |r| r.0 == "False").await;
    assert!(
        message.contains("team-b"),
        "the error names team-b, where the credentials were looked up: {message}"
    );
    assert!(
        secret_value(&sb, "team-b", "app", "v").await.is_none(),
        "team-b must not borrow team-a's credentials"
    );
    sb.stop().await.unwrap();
}
