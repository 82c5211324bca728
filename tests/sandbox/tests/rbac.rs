//! The RBAC in deploy/ is what vaultgate needs: every request it made to the API server during
//! a run that exercises its features (leader election, self-managed certificates, kubernetes
//! auth with TokenRequest, Owner/Orphan/Merge targets, deletionPolicy Delete, events, status,
//! a ClusterExternalSecret made and deleted)
//! is allowed by the rendered ClusterRole and Role — and grants no test ever used are listed.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use vaultgate_sandbox::{Sandbox, SandboxOptions, vaultgate_user};

fn rendered_rbac() -> Vec<(Option<String>, Value)> {
    let root = vaultgate_sandbox::repo_root();
    let out = Command::new("kubectl")
        .args(["kustomize"])
        .arg(root.join("deploy"))
        .output()
        .expect("kubectl");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut rules = vec![];
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(doc).unwrap();
        let ns = match v["kind"].as_str() {
            Some("ClusterRole") => None,
            Some("Role") => Some(v["metadata"]["namespace"].as_str().unwrap().to_string()),
            _ => continue,
        };
        for r in v["rules"].as_array().unwrap() {
            rules.push((ns.clone(), r.clone()));
        }
    }
    rules
}

fn has(list: &Value, want: &str) -> bool {
    list.as_array()
        .is_some_and(|l| l.iter().any(|x| x == want || x == "*"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_vaultgate_makes_is_granted_by_deploy_rbac() {
    let mut opts = SandboxOptions::from_env().unwrap();
    opts.run_args.leader_elect = true;
    opts.run_args.log_level = "warn".into();
    vaultgate::telemetry::init(vaultgate::telemetry::LogFormat::Text, "warn").unwrap();
    let sb = Sandbox::start(opts).await.unwrap();
    let server = sb.vault.addr();

    // Vault: kubernetes auth validating ServiceAccount tokens through the API server.
    sb.vault
        .kv2_put("secret", "rbac/app", json!({"a": "1", "b": "2"}))
        .unwrap();
    sb.vault
        .put_policy(
            "rbac",
            "path \"secret/*\" { capabilities = [\"read\", \"list\"] }",
        )
        .unwrap();
    sb.vault.enable_auth("kubernetes", "kubernetes").unwrap();
    let http = reqwest::Client::new();
    let root = sb.vault.root_token();
    let url = |p: &str| format!("{server}/v1/{p}");
    http.post(url("auth/kubernetes/config"))
        .header("X-Vault-Token", &root)
        .json(&json!({"kubernetes_host": sb.kube.url(), "kubernetes_ca_cert": sb.kube.ca_pem(), "token_reviewer_jwt": sb.kube.admin_token()}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    http.post(url("auth/kubernetes/role/app"))
        .header("X-Vault-Token", &root)
        .json(&json!({"bound_service_account_names": ["app-sa"], "bound_service_account_namespaces": ["app"], "token_policies": ["rbac"]}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let token = reader_token(&sb);
    let yaml = format!(
        r#"{ns}---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: app-sa, namespace: app}}
---
{tok}---
apiVersion: v1
kind: Secret
metadata: {{name: merged, namespace: app}}
stringData: {{theirs: "kept"}}
---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {{name: k8s, namespace: app}}
spec: {{provider: {{vault: {{server: "{server}", path: secret, auth: {{kubernetes: {{role: app, serviceAccountRef: {{name: app-sa}}}}}}}}}}}}
---
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata: {{name: shared}}
spec:
  conditions: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: app}}}}}}]
  provider: {{vault: {{server: "{server}", path: secret, auth: {{tokenSecretRef: {{name: vault-token, key: token, namespace: app}}}}}}}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {{name: owner, namespace: app}}
spec:
  refreshInterval: 1s
  secretStoreRef: {{name: k8s}}
  target: {{deletionPolicy: Delete}}
  dataFrom: [{{extract: {{key: rbac/app}}}}]
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {{name: orphan, namespace: app}}
spec:
  refreshInterval: 1s
  secretStoreRef: {{name: shared, kind: ClusterSecretStore}}
  target: {{creationPolicy: Orphan, deletionPolicy: Delete}}
  data: [{{secretKey: a, remoteRef: {{key: rbac/app, property: a}}}}]
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {{name: merge, namespace: app}}
spec:
  refreshInterval: 1s
  secretStoreRef: {{name: shared, kind: ClusterSecretStore}}
  target: {{name: merged, creationPolicy: Merge, deletionPolicy: Merge}}
  data: [{{secretKey: b, remoteRef: {{key: rbac/app, property: b}}}}]
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {{name: failing, namespace: app}}
spec:
  refreshInterval: 1s
  secretStoreRef: {{name: k8s}}
  data: [{{secretKey: z, remoteRef: {{key: rbac/missing}}}}]
---
apiVersion: external-secrets.io/v1
kind: ClusterExternalSecret
metadata: {{name: fan}}
spec:
  namespaces: [app]
  externalSecretName: fanned
  externalSecretSpec:
    refreshInterval: 1h
    secretStoreRef: {{name: shared, kind: ClusterSecretStore}}
    data: [{{secretKey: a, remoteRef: {{key: rbac/app, property: a}}}}]
"#,
        ns = namespace("app"),
        tok = token_secret("app", "vault-token", &token),
    );
    apply(&sb, &yaml).await.unwrap();
    let limit = Duration::from_secs(20);
    wait_value(&sb, "app", "owner", "a", "1", limit).await;
    wait_value(&sb, "app", "orphan", "a", "1", limit).await;
    wait_value(&sb, "app", "merged", "b", "2", limit).await;
    wait_ready(&sb, "app", "failing", limit, |r| r.0 == "False").await;
    // The ClusterExternalSecret's ExternalSecret syncs; deleting it removes that ExternalSecret.
    wait_value(&sb, "app", "fanned", "a", "1", limit).await;
    {
        let client = sb.kube.client().await;
        let ces: kube::Api<vaultgate::api::ClusterExternalSecret> = kube::Api::all(client.clone());
        ces.delete("fan", &Default::default()).await.unwrap();
        let es: kube::Api<vaultgate::api::ExternalSecret> = kube::Api::namespaced(client, "app");
        let start = std::time::Instant::now();
        while ces.get_opt("fan").await.unwrap().is_some()
            || es.get_opt("fanned").await.unwrap().is_some()
        {
            assert!(
                start.elapsed() < limit,
                "ClusterExternalSecret cleanup not carried out"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Deletion with every deletionPolicy that writes.
    let client = sb.kube.client().await;
    let es: kube::Api<vaultgate::api::ExternalSecret> = kube::Api::namespaced(client, "app");
    for name in ["owner", "orphan", "merge"] {
        es.delete(name, &Default::default()).await.unwrap();
    }
    // The ExternalSecrets go only once their cleanup is done; `owner` controls its Secret, which
    // is deleted; `orphan` controls nothing, so its Secret stays.
    let start = std::time::Instant::now();
    while secret_value(&sb, "app", "owner", "a").await.is_some()
        || secret_value(&sb, "app", "merged", "b").await.is_some()
        || es.get_opt("orphan").await.unwrap().is_some()
    {
        assert!(
            start.elapsed() < limit,
            "deletionPolicy Delete/Merge not carried out"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        secret_value(&sb, "app", "orphan", "a").await.as_deref(),
        Some(&b"1"[..])
    );
    assert_eq!(
        secret_value(&sb, "app", "merged", "theirs")
            .await
            .as_deref(),
        Some(&b"kept"[..])
    );
    let user = vaultgate_user(&sb.args.pod_namespace);
    let audit = sb.kube.audit();
    sb.stop().await.unwrap();

    let rules = rendered_rbac();
    let mut used = BTreeSet::new();
    let mut denied = vec![];
    for r in audit
        .iter()
        .filter(|r| r.user == user && !r.resource.is_empty())
    {
        let resource = if r.subresource.is_empty() {
            r.resource.clone()
        } else {
            format!("{}/{}", r.resource, r.subresource)
        };
        let grant = rules.iter().position(|(ns, rule)| {
            ns.as_ref().is_none_or(|ns| *ns == r.namespace)
                && has(&rule["apiGroups"], &r.api_group)
                && has(&rule["resources"], &resource)
                && has(&rule["verbs"], &r.verb)
                && rule["resourceNames"].as_array().is_none_or(|names| {
                    r.name.is_empty() && r.verb == "create"
                        || names.iter().any(|n| n == r.name.as_str())
                })
        });
        match grant {
            Some(i) => {
                used.insert((i, r.verb.clone(), resource.clone()));
            }
            None => denied.push(format!(
                "{} {}/{} in {:?} name {:?}",
                r.verb, r.api_group, resource, r.namespace, r.name
            )),
        }
    }
    denied.sort();
    denied.dedup();
    assert!(
        denied.is_empty(),
        "vaultgate made requests its RBAC does not grant:\n{}",
        denied.join("\n")
    );
    assert!(
        used.len() >= 10,
        "the scenario exercised few permissions: {used:?}"
    );
    // What the RBAC grants and this run never used, for whoever trims it next.
    let mut unused = vec![];
    for (i, (ns, rule)) in rules.iter().enumerate() {
        for res in rule["resources"].as_array().unwrap() {
            for verb in rule["verbs"].as_array().unwrap() {
                let (res, verb) = (res.as_str().unwrap(), verb.as_str().unwrap());
                if !used
                    .iter()
                    .any(|(j, v, r)| *j == i && v == verb && r == res)
                {
                    unused.push(format!(
                        "{verb} {res}{}",
                        ns.as_ref().map(|n| format!(" in {n}")).unwrap_or_default()
                    ));
                }
            }
        }
    }
    println!("granted but not used in this run: {unused:?}");
}
