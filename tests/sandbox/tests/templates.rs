//! Templates end to end: a dockerconfigjson built from a Vault property, keys from a ConfigMap
//! template with KeysAndValues, labels and annotations from the template, Merge vs Replace.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::*;
use serde_json::json;
use vaultgate::admission::LiveMode;

const LIMIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_build_the_secret() {
    let sb = sandbox(LiveMode::Enforce).await;
    sb.vault
        .kv2_put(
            "secret",
            "registry",
            json!({"user": "robot", "token": "t0ken"}),
        )
        .unwrap();
    sb.vault
        .kv2_put(
            "secret",
            "db",
            json!({"user": "app", "password": "pw", "host": "db.internal"}),
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
apiVersion: v1
kind: ConfigMap
metadata: {{name: db-template, namespace: tpl}}
data:
  keys: |
    DB_URL: postgres://{{{{ .user }}}}:{{{{ .password }}}}@{{{{ .host }}}}/app
    DB_HOST: "{{{{ .host | upper }}}}"
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {{name: registry, namespace: tpl}}
spec:
  secretStoreRef: {{name: vault}}
  target:
    template:
      type: kubernetes.io/dockerconfigjson
      metadata:
        labels: {{team: "{{{{ .user }}}}"}}
        annotations: {{registry: example.io}}
      data:
        .dockerconfigjson: '{{{{ dict "auths" (dict "example.io" (dict "auth" (printf "%s:%s" .user .token | b64enc))) | toJson }}}}'
  data:
    - {{secretKey: user, remoteRef: {{key: registry, property: user}}}}
    - {{secretKey: token, remoteRef: {{key: registry, property: token}}}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {{name: db-replace, namespace: tpl}}
spec:
  secretStoreRef: {{name: vault}}
  target:
    template:
      templateFrom:
        - configMap: {{name: db-template, items: [{{key: keys, templateAs: KeysAndValues}}]}}
  dataFrom: [{{extract: {{key: db}}}}]
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {{name: db-merge, namespace: tpl}}
spec:
  secretStoreRef: {{name: vault}}
  target:
    template:
      mergePolicy: Merge
      templateFrom:
        - configMap: {{name: db-template, items: [{{key: keys, templateAs: KeysAndValues}}]}}
  dataFrom: [{{extract: {{key: db}}}}]
"#,
        ns = namespace("tpl"),
        tok = token_secret("tpl", "vault-token", &token),
    );
    apply(&sb, &yaml).await.unwrap();

    let auth = base64::engine::general_purpose::STANDARD.encode("robot:t0ken");
    wait_value(
        &sb,
        "tpl",
        "registry",
        ".dockerconfigjson",
        &format!(r#"{{"auths":{{"example.io":{{"auth":"{auth}"}}}}}}"#),
        LIMIT,
    )
    .await;
    let api: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(sb.kube.client().await, "tpl");
    let s = api.get("registry").await.unwrap();
    assert_eq!(s.type_.as_deref(), Some("kubernetes.io/dockerconfigjson"));
    assert_eq!(
        s.metadata.labels.as_ref().unwrap()["team"],
        "robot",
        "labels are templates too"
    );
    assert_eq!(
        s.metadata.annotations.as_ref().unwrap()["registry"],
        "example.io"
    );
    assert_eq!(
        s.data.as_ref().unwrap().len(),
        1,
        "Replace: only the templated key"
    );

    wait_value(
        &sb,
        "tpl",
        "db-replace",
        "DB_URL",
        "postgres://app:pw@db.internal/app",
        LIMIT,
    )
    .await;
    wait_value(&sb, "tpl", "db-replace", "DB_HOST", "DB.INTERNAL", LIMIT).await;
    let keys = |name: &'static str| {
        let api = api.clone();
        async move {
            api.get(name)
                .await
                .unwrap()
                .data
                .unwrap()
                .into_keys()
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        keys("db-replace").await,
        ["DB_HOST", "DB_URL"],
        "Replace: the template's keys only"
    );
    wait_value(
        &sb,
        "tpl",
        "db-merge",
        "DB_URL",
        "postgres://app:pw@db.internal/app",
        LIMIT,
    )
    .await;
    assert_eq!(
        keys("db-merge").await,
        ["DB_HOST", "DB_URL", "host", "password", "user"],
        "Merge: the template's keys over the fetched ones"
    );

    // A template that cannot parse is refused at the door, naming the field and position.
    let bad = "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {name: bad, namespace: tpl}\nspec:\n  secretStoreRef: {name: vault}\n  target: {template: {data: {x: '{{ .user | nosuch }}'}}}\n  data: [{secretKey: user, remoteRef: {key: registry, property: user}}]\n";
    let err = apply(&sb, bad).await.expect_err("refused");
    assert!(
        err.contains("spec.target.template.data[x]") && err.contains("nosuch"),
        "{err}"
    );
    sb.stop().await.unwrap();
}
