//! ESO conformance end to end (through the API server, the webhook and the reconciler): what
//! ESO 2.9 accepts and vaultgate used to refuse.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::json;
use vaultgate::admission::LiveMode;
use vaultgate_sandbox::Sandbox;

const LIMIT: Duration = Duration::from_secs(30);

/// `kubectl apply -f -` with the sandbox's kubeconfig: (success, stderr).
fn kubectl_apply(sb: &Sandbox, yaml: &str) -> (bool, String) {
    let (ok, _, err) = kubectl(sb, &["apply", "-f", "-"], yaml);
    (ok, err)
}

/// kubectl with the sandbox's kubeconfig and `stdin`: (success, stdout, stderr).
fn kubectl(sb: &Sandbox, args: &[&str], stdin: &str) -> (bool, String, String) {
    let dir = std::env::temp_dir().join(format!(
        "vaultgate-eso-conformance-{}-{}",
        std::process::id(),
        NEXT_DIR.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    sb.write_files(&dir).unwrap();
    let mut child = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", dir.join("kubeconfig"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl must be installed");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Each kubectl call's own kubeconfig directory (tests of this file run side by side).
static NEXT_DIR: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Item 5 of ESO conformance: a Kubernetes-auth store naming both `serviceAccountRef` and
/// `secretRef`, and a JWT store naming both `secretRef` and `kubernetesServiceAccountToken`
/// (as ESO's own examples do) are admitted with a warning naming the credential used, and log
/// in with that one: the other points at something that would fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_naming_two_credentials_use_esos_precedence() {
    let sb = sandbox(LiveMode::Warn).await;
    sb.vault
        .kv2_put("secret", "app", json!({"password": "pw-1"}))
        .unwrap();
    sb.vault
        .put_policy(
            "reader",
            "path \"secret/data/*\" { capabilities = [\"read\"] }",
        )
        .unwrap();
    sb.vault.enable_auth("kubernetes", "kubernetes").unwrap();
    sb.vault.enable_auth("jwt", "jwt").unwrap();
    vault_api(&sb, Method::POST, "auth/kubernetes/config", json!({"kubernetes_host": sb.kube.url(), "kubernetes_ca_cert": sb.kube.ca_pem(), "token_reviewer_jwt": sb.kube.admin_token()})).await;
    vault_api(&sb, Method::POST, "auth/kubernetes/role/app", json!({"bound_service_account_names": ["app-sa"], "bound_service_account_namespaces": ["k8s-both"], "token_policies": ["reader"]})).await;
    vault_api(
        &sb,
        Method::POST,
        "auth/jwt/config",
        json!({"jwt_validation_pubkeys": [sb.kube.jwt_public_key_pem()]}),
    )
    .await;
    vault_api(&sb, Method::POST, "auth/jwt/role/app", json!({"role_type": "jwt", "bound_audiences": ["vault"], "user_claim": "sub", "token_policies": ["reader"]})).await;
    let server = sb.vault.addr();
    // serviceAccountRef wins: the Secret of secretRef holds no usable token.
    let k8s = format!(
        r#"{ns}---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: app-sa, namespace: k8s-both}}
---
apiVersion: v1
kind: Secret
metadata: {{name: my-secret, namespace: k8s-both}}
stringData: {{vault: not-a-service-account-token}}
"#,
        ns = namespace("k8s-both")
    );
    apply(&sb, &k8s).await.unwrap();
    let k8s_store = format!(
        r#"apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {{name: vault-backend, namespace: k8s-both}}
spec:
  provider:
    vault:
      server: "{server}"
      path: secret
      version: v2
      auth:
        kubernetes:
          mountPath: kubernetes
          role: app
          serviceAccountRef: {{name: app-sa}}
          secretRef: {{name: my-secret, key: vault}}
"#
    );
    let (ok, err) = kubectl_apply(&sb, &k8s_store);
    assert!(ok, "{err}");
    assert!(
        err.contains("Warning:")
            && err.contains("serviceAccountRef and secretRef are both set: the login uses a token requested for serviceAccountRef"),
        "{err}"
    );
    // secretRef wins: kubernetesServiceAccountToken names a ServiceAccount that does not exist.
    let jwt = sb
        .kube
        .issue_token("jwt-both", "app-sa", &["vault".to_string()], 3600);
    let jwt_creds = format!(
        "{}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: my-secret, namespace: jwt-both}}\nstringData: {{jwt-token: \"{jwt}\"}}\n",
        namespace("jwt-both")
    );
    apply(&sb, &jwt_creds).await.unwrap();
    let jwt_store = format!(
        r#"apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {{name: vault-backend, namespace: jwt-both}}
spec:
  provider:
    vault:
      server: "{server}"
      path: secret
      version: v2
      auth:
        jwt:
          path: jwt
          role: app
          secretRef: {{name: my-secret, key: jwt-token}}
          kubernetesServiceAccountToken:
            serviceAccountRef: {{name: nobody}}
"#
    );
    let (ok, err) = kubectl_apply(&sb, &jwt_store);
    assert!(ok, "{err}");
    assert!(
        err.contains("Warning:")
            && err.contains("secretRef and kubernetesServiceAccountToken are both set: the login uses the JWT of secretRef"),
        "{err}"
    );
    for ns in ["k8s-both", "jwt-both"] {
        let es = format!(
            r#"apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {{name: app, namespace: {ns}}}
spec:
  refreshInterval: 1h
  secretStoreRef: {{name: vault-backend}}
  data:
  - secretKey: password
    remoteRef: {{key: app, property: password}}
"#
        );
        apply(&sb, &es).await.unwrap();
    }
    for ns in ["k8s-both", "jwt-both"] {
        wait_value(&sb, ns, "app", "password", "pw-1", LIMIT).await;
    }
    sb.stop().await.unwrap();
}

/// Item 2: `dataFrom.find` by name on a KV v1 store lists the v1 mount, as ESO's `FindByName`
/// and `FindByNameAndRewrite` cases do with their v1 store; find by tags, which needs KV v2
/// metadata, is refused at admission.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_by_name_on_a_kv_v1_store() {
    let sb = sandbox(LiveMode::Enforce).await;
    sb.vault.enable_kv("kv1", 1).unwrap();
    for (path, v) in [
        ("e2e/db-credentials", "p1"),
        ("e2e/api-credentials", "p2"),
        ("e2e/settings", "s"),
    ] {
        sb.vault.kv1_put("kv1", path, json!({"value": v})).unwrap();
    }
    sb.vault
        .put_policy(
            "v1-reader",
            "path \"kv1/*\" { capabilities = [\"read\", \"list\"] }",
        )
        .unwrap();
    let token = sb
        .vault
        .create_token(&["v1-reader"], Some(Duration::from_secs(3600)));
    let server = sb.vault.addr();
    let yaml = format!(
        r#"{ns}---
{tok}---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {{name: vault-v1, namespace: kv1}}
spec:
  provider:
    vault:
      server: "{server}"
      path: kv1
      version: v1
      auth: {{tokenSecretRef: {{name: vault-token, key: token}}}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {{name: by-name, namespace: kv1}}
spec:
  refreshInterval: 1h
  secretStoreRef: {{name: vault-v1}}
  dataFrom:
  - find:
      path: e2e
      name: {{regexp: credentials}}
    rewrite:
    - regexp: {{source: "e2e/(.*)", target: "$1"}}
"#,
        ns = namespace("kv1"),
        tok = token_secret("kv1", "vault-token", &token)
    );
    apply(&sb, &yaml).await.unwrap();
    wait_value(
        &sb,
        "kv1",
        "by-name",
        "db-credentials",
        r#"{"value":"p1"}"#,
        LIMIT,
    )
    .await;
    wait_value(
        &sb,
        "kv1",
        "by-name",
        "api-credentials",
        r#"{"value":"p2"}"#,
        LIMIT,
    )
    .await;
    assert_eq!(secret_value(&sb, "kv1", "by-name", "settings").await, None);

    let by_tags = r#"apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: by-tags, namespace: kv1}
spec:
  secretStoreRef: {name: vault-v1}
  dataFrom:
  - find:
      tags: {env: dev}
"#;
    let err = apply(&sb, by_tags).await.unwrap_err();
    assert!(
        err.contains("spec.dataFrom[0].find.tags: dataFrom.find by tags on a KV v1 store"),
        "{err}"
    );
    sb.stop().await.unwrap();
}

/// `rewrite[].merge`: the secrets a find returns merged into one set of keys (ESO's
/// `datafrom-rewrite-merge` documentation example), and into one JSON key with `strategy:
/// JSON`; a conflict fails the sync, naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_merge_builds_one_set_of_keys() {
    let sb = sandbox(LiveMode::Enforce).await;
    sb.vault
        .kv2_put(
            "secret",
            "creds/db-credentials",
            json!({"db_user": "app", "db_password": "p1"}),
        )
        .unwrap();
    sb.vault
        .kv2_put(
            "secret",
            "creds/api-credentials",
            json!({"api_token": "t1"}),
        )
        .unwrap();
    let token = reader_token(&sb);
    let server = sb.vault.addr();
    let yaml = format!(
        r#"{ns}---
{tok}---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {{name: vault, namespace: merge}}
spec: {{provider: {{vault: {{server: "{server}", path: secret, auth: {{tokenSecretRef: {{name: vault-token, key: token}}}}}}}}}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {{name: merged, namespace: merge}}
spec:
  refreshInterval: 1h
  secretStoreRef: {{name: vault}}
  dataFrom:
  - find:
      path: creds
      name: {{regexp: ".*-credentials"}}
    rewrite:
    - merge: {{}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {{name: as-json, namespace: merge}}
spec:
  refreshInterval: 1h
  secretStoreRef: {{name: vault}}
  dataFrom:
  - find:
      path: creds
      name: {{regexp: ".*-credentials"}}
    rewrite:
    - merge: {{strategy: JSON, into: all}}
    - regexp: {{source: "creds/(.*)", target: "$1"}}
"#,
        ns = namespace("merge"),
        tok = token_secret("merge", "vault-token", &token)
    );
    apply(&sb, &yaml).await.unwrap();
    wait_value(&sb, "merge", "merged", "db_password", "p1", LIMIT).await;
    wait_value(&sb, "merge", "merged", "api_token", "t1", LIMIT).await;
    wait_value(
        &sb,
        "merge",
        "as-json",
        "all",
        r#"{"api_token":"t1","db_password":"p1","db_user":"app"}"#,
        LIMIT,
    )
    .await;
    wait_value(
        &sb,
        "merge",
        "as-json",
        "api-credentials",
        r#"{"api_token":"t1"}"#,
        LIMIT,
    )
    .await;

    // A key in two secrets is a conflict (conflictPolicy Error by default): the sync fails,
    // naming the key.
    sb.vault
        .kv2_put(
            "secret",
            "creds/api-credentials",
            json!({"api_token": "t2", "db_user": "other"}),
        )
        .unwrap();
    let conflicted = r#"apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: conflicted, namespace: merge}
spec:
  refreshInterval: 1s
  secretStoreRef: {name: vault}
  dataFrom:
  - find:
      path: creds
      name: {regexp: ".*-credentials"}
    rewrite:
    - merge: {}
"#;
    apply(&sb, conflicted).await.unwrap();
    let start = std::time::Instant::now();
    loop {
        if let Some((status, _, message)) = ready(&sb, "merge", "conflicted").await
            && status == "False"
        {
            assert!(
                message.contains("merge failed with conflicts: db_user"),
                "{message}"
            );
            assert!(
                !message.contains("other"),
                "no value in a status: {message}"
            );
            break;
        }
        assert!(
            start.elapsed() < LIMIT,
            "the conflict never failed the sync: {:?}",
            ready(&sb, "merge", "conflicted").await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nothing of the conflicting data is written (a first sync may have used the read the
    // other ExternalSecrets just made, from before the change).
    let kept = secret_value(&sb, "merge", "conflicted", "api_token").await;
    assert!(
        kept.is_none() || kept.as_deref() == Some(&b"t1"[..]),
        "{kept:?}"
    );
    sb.stop().await.unwrap();
}

/// Items 6 and 7: `kubectl apply -f` of a `kind: List` holding a store and an ExternalSecret
/// is accepted (through the webhook), and `kubectl get externalsecrets` shows ESO 2.9's
/// columns, `Last Sync` included once synced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_a_list_and_shows_esos_columns() {
    let sb = sandbox(LiveMode::Enforce).await;
    sb.vault
        .kv2_put("secret", "listed", json!({"password": "pw-l"}))
        .unwrap();
    let token = reader_token(&sb);
    apply(
        &sb,
        &format!(
            "{}---\n{}",
            namespace("lists"),
            token_secret("lists", "vault-token", &token)
        ),
    )
    .await
    .unwrap();
    let list = format!(
        r#"apiVersion: v1
kind: List
items:
- apiVersion: external-secrets.io/v1
  kind: SecretStore
  metadata: {{name: vault, namespace: lists}}
  spec: {{provider: {{vault: {{server: "{server}", path: secret, auth: {{tokenSecretRef: {{name: vault-token, key: token}}}}}}}}}}
- apiVersion: external-secrets.io/v1
  kind: ExternalSecret
  metadata: {{name: app, namespace: lists}}
  spec:
    refreshInterval: 1h
    secretStoreRef: {{name: vault}}
    data:
    - secretKey: password
      remoteRef: {{key: listed, property: password}}
"#,
        server = sb.vault.addr()
    );
    let (ok, out, err) = kubectl(&sb, &["apply", "-f", "-"], &list);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("secretstore.external-secrets.io/vault created")
            && out.contains("externalsecret.external-secrets.io/app created"),
        "{out}"
    );
    wait_value(&sb, "lists", "app", "password", "pw-l", LIMIT).await;
    let start = std::time::Instant::now();
    loop {
        let (ok, out, err) = kubectl(&sb, &["get", "externalsecrets", "-n", "lists"], "");
        assert!(ok, "{err}");
        let mut lines = out.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        assert_eq!(
            header,
            [
                "NAME",
                "STORETYPE",
                "STORE",
                "REFRESH",
                "INTERVAL",
                "STATUS",
                "READY",
                "LAST",
                "SYNC"
            ],
            "{out}"
        );
        let row: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        // Last Sync is a date column: kubectl shows its age once refreshTime is set.
        if row.len() == 7 && row[5] == "True" {
            assert_eq!(
                row[..6],
                ["app", "SecretStore", "vault", "1h", "SecretSynced", "True"],
                "{out}"
            );
            break;
        }
        assert!(start.elapsed() < LIMIT, "{out}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sb.stop().await.unwrap();
}

/// Items 1, 3 and 4 through the webhook and the reconciler: ESO's `JSONDataWithTemplate` with
/// the template's `metadata.finalizers`; ESO's PKCS#12 functions over a bundle read from Vault
/// (its `TestPkcs12cert` data); a `templateFrom` entry whose rendered values are decoded
/// (`valuesDecodingStrategy`, ESO's `TestExecuteDecodesRenderedTemplateValues`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_with_finalizers_pkcs12_and_decoded_values() {
    use base64::Engine as _;
    let sb = sandbox(LiveMode::Enforce).await;
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/eso-template");
    let pfx = std::fs::read(data.join("foo-nopass.pfx")).unwrap();
    let chain: String = ["foo.crt", "intermediate-ca.crt", "root-ca.crt"]
        .iter()
        .map(|f| std::fs::read_to_string(data.join(f)).unwrap())
        .collect();
    let b64 = base64::engine::general_purpose::STANDARD;
    sb.vault
        .kv2_put(
            "secret",
            "one",
            json!({"foo1": "foo1-val", "bar1": "bar1-val"}),
        )
        .unwrap();
    sb.vault
        .kv2_put(
            "secret",
            "other",
            json!({"foo2": "foo2-val", "bar2": "bar2-val"}),
        )
        .unwrap();
    sb.vault
        .kv2_put(
            "secret",
            "tls",
            json!({"archive": b64.encode(&pfx), "token": b64.encode("s3cr3t")}),
        )
        .unwrap();
    let token = reader_token(&sb);
    let server = sb.vault.addr();
    let yaml = format!(
        r#"{ns}---
{tok}---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {{name: vault, namespace: tpl}}
spec: {{provider: {{vault: {{server: "{server}", path: secret, auth: {{tokenSecretRef: {{name: vault-token, key: token}}}}}}}}}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {{name: json-template, namespace: tpl}}
spec:
  refreshInterval: 1h
  secretStoreRef: {{name: vault}}
  target:
    template:
      metadata:
        annotations: {{example: annotation}}
        labels: {{example: label}}
        finalizers: [example.com/keep]
      data:
        my-data: "executed: {{{{ .one }}}}|{{{{ .two }}}}"
  data:
  - {{secretKey: one, remoteRef: {{key: one, property: foo1}}}}
  - {{secretKey: two, remoteRef: {{key: other, property: bar2}}}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {{name: pkcs12, namespace: tpl}}
spec:
  refreshInterval: 1h
  secretStoreRef: {{name: vault}}
  target:
    template:
      data:
        tls.crt: "{{{{ .archive | pkcs12cert }}}}"
        tls.key: "{{{{ .archive | pkcs12key }}}}"
      templateFrom:
      - literal: "decoded: {{{{ .token }}}}"
        valuesDecodingStrategy: Base64
  data:
  - {{secretKey: archive, remoteRef: {{key: tls, property: archive, decodingStrategy: Base64}}}}
  - {{secretKey: token, remoteRef: {{key: tls, property: token}}}}
"#,
        ns = namespace("tpl"),
        tok = token_secret("tpl", "vault-token", &token)
    );
    apply(&sb, &yaml).await.unwrap();

    wait_value(
        &sb,
        "tpl",
        "json-template",
        "my-data",
        "executed: foo1-val|bar2-val",
        LIMIT,
    )
    .await;
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(sb.kube.client().await, "tpl");
    let s = secrets.get("json-template").await.unwrap();
    assert_eq!(
        s.metadata.finalizers.as_deref(),
        Some(&["example.com/keep".to_string()][..])
    );
    assert_eq!(s.metadata.labels.as_ref().unwrap()["example"], "label");
    assert_eq!(
        s.metadata.annotations.as_ref().unwrap()["example"],
        "annotation"
    );

    wait_value(&sb, "tpl", "pkcs12", "tls.crt", &chain, LIMIT).await;
    let key = secret_value(&sb, "tpl", "pkcs12", "tls.key").await.unwrap();
    assert!(
        key.starts_with(b"-----BEGIN PRIVATE KEY-----"),
        "{}",
        String::from_utf8_lossy(&key)
    );
    assert_eq!(
        secret_value(&sb, "tpl", "pkcs12", "decoded")
            .await
            .as_deref(),
        Some(&b"s3cr3t"[..])
    );
    sb.stop().await.unwrap();
}
