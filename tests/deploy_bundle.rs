//! `kubectl kustomize deploy/` renders, and the rendered webhook configurations, Service and
//! Deployment agree with what `vaultgate run` serves.

use std::collections::BTreeSet;
use std::process::Command;

use clap::Parser;
use serde_json::Value;
use vaultgate::cli::{Cli, Command as VgCommand};

fn rendered() -> Vec<Value> {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("kubectl")
        .args(["kustomize", &format!("{root}/deploy")])
        .output()
        .expect(
            "kubectl must be installed: the deploy bundle is rendered with `kubectl kustomize`",
        );
    assert!(
        out.status.success(),
        "kubectl kustomize failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde_yaml_ng::with::singleton_map_recursive::deserialize::<Value, _>(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind}/{name} not rendered"))
}

fn run_defaults() -> vaultgate::run::Config {
    let cli = Cli::try_parse_from(["vaultgate", "run"]).unwrap();
    let VgCommand::Run(args) = cli.command else {
        unreachable!()
    };
    *args
}

#[test]
fn webhooks_service_and_deployment_match_what_run_serves() {
    let objs = rendered();
    let args = run_defaults();
    let svc = find(&objs, "Service", &args.service_name);
    let ns = svc["metadata"]["namespace"].as_str().unwrap();
    assert_eq!(ns, args.pod_namespace);
    let https = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["port"] == 443)
        .expect("Service port 443");
    assert_eq!(
        https["targetPort"].as_u64(),
        Some(args.webhook_addr.port() as u64),
        "Service targets the webhook port"
    );
    assert_eq!(
        svc["spec"]["ports"].as_array().unwrap().len(),
        1,
        "the webhook's Service carries the webhook port only"
    );
    let metrics = find(&objs, "Service", "vaultgate-metrics");
    assert_eq!(
        metrics["spec"]["ports"][0]["targetPort"].as_u64(),
        Some(args.metrics_addr.port() as u64)
    );
    // Ingress to the pods: the webhook and metrics ports, nothing else.
    let policy = find(&objs, "NetworkPolicy", "vaultgate");
    assert_eq!(
        policy["spec"]["policyTypes"],
        serde_json::json!(["Ingress"])
    );
    let ports: BTreeSet<u64> = policy["spec"]["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|rule| rule["ports"].as_array().unwrap().iter())
        .map(|p| p["port"].as_u64().unwrap())
        .collect();
    assert_eq!(
        ports,
        BTreeSet::from([
            args.webhook_addr.port() as u64,
            args.metrics_addr.port() as u64
        ])
    );

    for (kind, path) in [
        ("ValidatingWebhookConfiguration", "/validate"),
        ("MutatingWebhookConfiguration", "/mutate"),
    ] {
        let cfg = find(&objs, kind, &args.webhook_config_name);
        let hooks = cfg["webhooks"].as_array().unwrap();
        assert!(!hooks.is_empty());
        let mut covered = BTreeSet::new();
        for hook in hooks {
            let svc_ref = &hook["clientConfig"]["service"];
            assert_eq!(svc_ref["name"], args.service_name.as_str(), "{kind}");
            assert_eq!(svc_ref["namespace"], args.pod_namespace.as_str(), "{kind}");
            assert_eq!(svc_ref["port"].as_u64().unwrap_or(443), 443, "{kind}");
            assert_eq!(svc_ref["path"], path, "{kind}");
            assert!(
                hook["clientConfig"].get("caBundle").is_none(),
                "caBundle is injected at run time"
            );
            assert_eq!(hook["admissionReviewVersions"], serde_json::json!(["v1"]));
            assert!(
                hook["timeoutSeconds"]
                    .as_u64()
                    .is_some_and(|t| (1..=10).contains(&t)),
                "explicit timeoutSeconds"
            );
            assert!(hook["failurePolicy"].is_string(), "explicit failurePolicy");
            let side = hook["sideEffects"].as_str().unwrap();
            assert!(side == "None" || side == "NoneOnDryRun", "{side}");
            for rule in hook["rules"].as_array().unwrap() {
                let ops: BTreeSet<&str> = rule["operations"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|o| o.as_str().unwrap())
                    .collect();
                assert_eq!(ops, BTreeSet::from(["CREATE", "UPDATE"]));
                let group = rule["apiGroups"].as_array().unwrap();
                assert!(
                    group == &[serde_json::json!("external-secrets.io")]
                        || group == &[serde_json::json!("generators.external-secrets.io")],
                    "{group:?}"
                );
                for v in rule["apiVersions"].as_array().unwrap() {
                    for r in rule["resources"].as_array().unwrap() {
                        covered.insert((
                            v.as_str().unwrap().to_string(),
                            r.as_str().unwrap().to_string(),
                        ));
                    }
                }
            }
        }
        for v in ["v1", "v1beta1"] {
            for r in [
                "externalsecrets",
                "clusterexternalsecrets",
                "secretstores",
                "clustersecretstores",
            ] {
                assert!(
                    covered.contains(&(v.to_string(), r.to_string())),
                    "{kind} does not cover {v} {r}"
                );
            }
        }
    }

    let deploy = find(&objs, "Deployment", "vaultgate");
    assert_eq!(deploy["spec"]["replicas"], 2);
    let pod = &deploy["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let cargs: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(cargs[0], "run");
    assert!(
        cargs.contains(&"--leader-elect"),
        "leader election is on in deploy/"
    );
    // The rendered arguments must parse with the real CLI.
    let mut argv = vec!["vaultgate"];
    argv.extend(&cargs);
    Cli::try_parse_from(argv).expect("the Deployment's args parse");
    for probe in ["livenessProbe", "readinessProbe"] {
        let port = &c[probe]["httpGet"]["port"];
        assert!(
            port == args.metrics_addr.port() || port == "metrics",
            "{probe} targets the metrics port: {port}"
        );
    }
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert!(c["resources"]["requests"].is_object() && c["resources"]["limits"].is_object());
    find(&objs, "PodDisruptionBudget", "vaultgate");
    find(&objs, "Namespace", "vaultgate-system");
    for crd in [
        "externalsecrets.external-secrets.io",
        "clusterexternalsecrets.external-secrets.io",
        "secretstores.external-secrets.io",
        "clustersecretstores.external-secrets.io",
        "vaultdynamicsecrets.generators.external-secrets.io",
        "clustergenerators.generators.external-secrets.io",
    ] {
        find(&objs, "CustomResourceDefinition", crd);
    }
}

#[test]
fn rbac_grants_what_the_controller_needs_and_no_wildcards() {
    let objs = rendered();
    let role = find(&objs, "ClusterRole", "vaultgate");
    for rule in role["rules"].as_array().unwrap() {
        for field in ["apiGroups", "resources", "verbs"] {
            assert!(
                !rule[field].as_array().unwrap().iter().any(|v| v == "*"),
                "wildcard in ClusterRole rule {rule}"
            );
        }
    }
    let grants = |group: &str, resource: &str, verb: &str| {
        role["rules"].as_array().unwrap().iter().any(|r| {
            r["apiGroups"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g == group)
                && r["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|x| x == resource)
                && r["verbs"].as_array().unwrap().iter().any(|v| v == verb)
        })
    };
    for (g, r, v) in [
        ("external-secrets.io", "externalsecrets", "watch"),
        ("external-secrets.io", "externalsecrets/status", "patch"),
        ("external-secrets.io", "clusterexternalsecrets", "watch"),
        ("external-secrets.io", "clusterexternalsecrets", "patch"),
        (
            "external-secrets.io",
            "clusterexternalsecrets/status",
            "patch",
        ),
        ("external-secrets.io", "externalsecrets", "create"),
        ("external-secrets.io", "externalsecrets", "delete"),
        ("", "namespaces", "watch"),
        ("external-secrets.io", "clustersecretstores", "list"),
        ("", "secrets", "patch"),
        ("", "serviceaccounts/token", "create"),
        ("", "events", "create"),
        ("generators.external-secrets.io", "passwords", "watch"),
        ("generators.external-secrets.io", "uuids", "watch"),
        ("generators.external-secrets.io", "sshkeys", "watch"),
        (
            "generators.external-secrets.io",
            "vaultdynamicsecrets",
            "watch",
        ),
        (
            "generators.external-secrets.io",
            "clustergenerators",
            "watch",
        ),
    ] {
        assert!(grants(g, r, v), "ClusterRole lacks {v} on {g}/{r}");
    }
    assert!(!grants("", "secrets", "deletecollection"));
}
