//! The seed document's ClusterSecretStore + ExternalSecret (external-secrets.io/v1beta1), with
//! the store's auth swapped for each supported method, produce `my-app-k8s-secret` with key
//! `api-key` — through the real webhook and reconciler, against a Vault served over HTTPS.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::*;
use serde_json::{Value, json};
use vaultgate_sandbox::{Sandbox, SandboxOptions};

const SEED_ES: &str = include_str!("../../data/seed/externalsecret.yaml");
const SEED_CSS: &str = include_str!("../../data/seed/clustersecretstore.yaml");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_manifests_sync_with_every_auth_method() {
    let mut opts = SandboxOptions::from_env().unwrap();
    opts.vault_tls = true;
    opts.run_args.log_level = std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into());
    vaultgate::telemetry::init(
        vaultgate::telemetry::LogFormat::Text,
        &opts.run_args.log_level,
    )
    .unwrap();
    let sb = Sandbox::start(opts).await.unwrap();
    let ca_b64 = base64::engine::general_purpose::STANDARD.encode(sb.vault.ca_pem().unwrap());
    sb.vault
        .kv2_put(
            "secret",
            "my-app/api-key",
            json!({"api-key": "seed-api-key-value"}),
        )
        .unwrap();
    sb.vault
        .put_policy(
            "reader",
            "path \"secret/data/my-app/*\" { capabilities = [\"read\"] }",
        )
        .unwrap();

    // Vault side of every method.
    let token = sb
        .vault
        .create_token(&["reader"], Some(Duration::from_secs(3600)));
    for (path, kind) in [
        ("approle", "approle"),
        ("kubernetes", "kubernetes"),
        ("jwt", "jwt"),
        ("userpass", "userpass"),
        ("ldap", "ldap"),
        ("cert", "cert"),
    ] {
        sb.vault.enable_auth(path, kind).unwrap();
    }
    use reqwest::Method;
    vault_api(
        &sb,
        Method::POST,
        "auth/approle/role/app",
        json!({"token_policies": ["reader"]}),
    )
    .await;
    let role_id = vault_api(
        &sb,
        Method::GET,
        "auth/approle/role/app/role-id",
        Value::Null,
    )
    .await["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_string();
    let secret_id = vault_api(
        &sb,
        Method::POST,
        "auth/approle/role/app/secret-id",
        json!({}),
    )
    .await["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_string();
    vault_api(&sb, Method::POST, "auth/kubernetes/config", json!({"kubernetes_host": sb.kube.url(), "kubernetes_ca_cert": sb.kube.ca_pem(), "token_reviewer_jwt": sb.kube.admin_token()})).await;
    vault_api(&sb, Method::POST, "auth/kubernetes/role/app", json!({"bound_service_account_names": ["app-sa"], "bound_service_account_namespaces": ["seed-kubernetes"], "token_policies": ["reader"]})).await;
    vault_api(
        &sb,
        Method::POST,
        "auth/jwt/config",
        json!({"jwt_validation_pubkeys": [sb.kube.jwt_public_key_pem()]}),
    )
    .await;
    vault_api(&sb, Method::POST, "auth/jwt/role/app", json!({"role_type": "jwt", "bound_audiences": ["vault"], "user_claim": "sub", "token_policies": ["reader"]})).await;
    vault_api(
        &sb,
        Method::POST,
        "auth/userpass/users/app",
        json!({"password": "userpass-pw", "token_policies": ["reader"]}),
    )
    .await;
    sb.vault
        .ldap_set_user("ldap", "app", "ldap-pw", &[])
        .unwrap();
    vault_api(
        &sb,
        Method::POST,
        "auth/ldap/users/app",
        json!({"policies": "reader"}),
    )
    .await;
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["vaultgate".into()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "vaultgate");
    let cert = params.self_signed(&key).unwrap();
    vault_api(
        &sb,
        Method::POST,
        "auth/cert/certs/web",
        json!({"certificate": cert.pem(), "token_policies": ["reader"]}),
    )
    .await;

    let methods: Vec<(&str, String, String)> = vec![
        ("token", "tokenSecretRef: {name: vault-token, key: token}".into(), token_secret("@NS@", "vault-token", &token)),
        (
            "approle",
            format!("appRole: {{path: approle, roleId: \"{role_id}\", secretRef: {{name: approle, key: secret-id}}}}"),
            format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: approle, namespace: @NS@}}\nstringData: {{secret-id: \"{secret_id}\"}}\n"),
        ),
        (
            "kubernetes",
            "kubernetes: {mountPath: kubernetes, role: app, serviceAccountRef: {name: app-sa}}".into(),
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: app-sa, namespace: @NS@}\n".into(),
        ),
        (
            "jwt",
            "jwt: {path: jwt, role: app, kubernetesServiceAccountToken: {serviceAccountRef: {name: app-sa}, audiences: [vault]}}".into(),
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: app-sa, namespace: @NS@}\n".into(),
        ),
        (
            "userpass",
            "userPass: {path: userpass, username: app, secretRef: {name: userpass, key: password}}".into(),
            "apiVersion: v1\nkind: Secret\nmetadata: {name: userpass, namespace: @NS@}\nstringData: {password: userpass-pw}\n".into(),
        ),
        (
            "ldap",
            "ldap: {path: ldap, username: app, secretRef: {name: ldap, key: password}}".into(),
            "apiVersion: v1\nkind: Secret\nmetadata: {name: ldap, namespace: @NS@}\nstringData: {password: ldap-pw}\n".into(),
        ),
        (
            "cert",
            "cert: {path: cert, vaultRole: web, clientCert: {name: client-cert, key: tls.crt}, secretRef: {name: client-cert, key: tls.key}}".into(),
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: client-cert, namespace: @NS@}}\ndata: {{tls.crt: {}, tls.key: {}}}\n",
                base64::engine::general_purpose::STANDARD.encode(cert.pem()),
                base64::engine::general_purpose::STANDARD.encode(key.serialize_pem())
            ),
        ),
    ];
    for (method, auth, creds) in &methods {
        let ns = format!("seed-{method}");
        let store = format!("vault-backend-{method}");
        // The seed's store, with this method's auth, the emulated server and its CA.
        let css = SEED_CSS
            .replace("name: vault-backend", &format!("name: {store}"))
            .replace(
                "\"https://vault.example.com\"",
                &format!("\"{}\"\n      caBundle: {ca_b64}", sb.vault.addr()),
            )
            .replace(
                "tokenSecretRef:\n          name: vault-token\n          key: token",
                auth,
            );
        let es = SEED_ES
            .replace("namespace: default", &format!("namespace: {ns}"))
            .replace("name: vault-backend", &format!("name: {store}"));
        let yaml = format!(
            "{}---\n{}---\n{css}---\n{es}",
            namespace(&ns),
            creds.replace("@NS@", &ns)
        );
        apply(&sb, &yaml)
            .await
            .unwrap_or_else(|e| panic!("{method}: {e}"));
    }
    for (method, _, _) in &methods {
        let ns = format!("seed-{method}");
        let took = wait_value(
            &sb,
            &ns,
            "my-app-k8s-secret",
            "api-key",
            r#"{"api-key":"seed-api-key-value"}"#,
            Duration::from_secs(30),
        )
        .await;
        let (status, reason, _) = ready(&sb, &ns, "my-app-secret").await.unwrap();
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("True", "SecretSynced"),
            "{method}"
        );
        println!("{method}: synced in {:.2} s", took.as_secs_f64());
    }
    // One login per store identity: token auth never logs in; six methods, six logins (the
    // referent stores are validated per ExternalSecret namespace, each used by one namespace).
    let logins = sb.vault.count_logins();
    assert!(
        logins <= 2 * (methods.len() - 1),
        "{logins} logins for {} login methods",
        methods.len() - 1
    );
    sb.stop().await.unwrap();
}
