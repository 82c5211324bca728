//! `vaultgate check -f FILE [--live]`: the admission defaults and rules, offline (and the live
//! checks against the current kubeconfig's cluster and its Vault with `--live`).
//!
//! Prints the defaulted objects as YAML on stdout and one line per problem on stderr
//! (`<kind>/<namespace>/<name>: <field path>: <message>`); exits 1 when there are problems.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use crate::admission::{self, Kind, LiveChecker};

/// `vaultgate check`'s options.
#[derive(clap::Args, Debug)]
pub struct Config {
    /// Multi-document YAML file of manifests (`-` for standard input).
    #[arg(short = 'f', long = "filename", env = "VAULTGATE_FILENAME")]
    pub file: PathBuf,
    /// Also run the live checks against the cluster of the current kubeconfig and its Vault.
    #[arg(long, env = "VAULTGATE_LIVE")]
    pub live: bool,
    /// Time budget of the live checks per object.
    #[arg(long, env = "VAULTGATE_LIVE_BUDGET", value_parser = crate::api::duration::parse_flag, default_value = "10s")]
    pub live_budget: Duration,
}

/// The outcome for a whole file.
#[derive(Debug, Default)]
pub struct Report {
    /// Every document, with the defaults applied to the kinds vaultgate serves.
    pub objects: Vec<Value>,
    /// One line per problem.
    pub problems: Vec<String>,
    /// Things worth knowing that are not problems (e.g. checks that could not run).
    pub warnings: Vec<String>,
}

/// `Kind/namespace/name` (`Kind/name` for cluster-scoped objects).
pub fn object_id(kind: Kind, obj: &Value) -> String {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>");
    match kind {
        Kind::ClusterSecretStore | Kind::ClusterPushSecret | Kind::ClusterExternalSecret => {
            format!("{}/{name}", kind.as_str())
        }
        _ => format!("{}/{}/{name}", kind.as_str(), namespace_of(obj)),
    }
}

/// The namespace a manifest without one lands in (kubectl's default context namespace).
const DEFAULT_NAMESPACE: &str = "default";

fn namespace_of(obj: &Value) -> &str {
    obj.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or(DEFAULT_NAMESPACE)
}

/// Parses a multi-document YAML stream, applies the defaults and the static rules.
pub fn check_text(text: &str) -> anyhow::Result<Report> {
    let mut report = Report::default();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let mut obj: Value = serde::Deserialize::deserialize(doc)
            .with_context(|| format!("reading YAML document {}", i + 1))?;
        if obj.is_null() {
            continue;
        }
        if let Some(kind) = admission::kind_of(&obj) {
            if !matches!(kind, Kind::ClusterSecretStore | Kind::ClusterExternalSecret)
                && obj.pointer("/metadata/namespace").is_none()
                && let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut)
            {
                meta.insert("namespace".into(), Value::String(DEFAULT_NAMESPACE.into()));
            }
            admission::defaults::apply(kind, &mut obj);
            let id = object_id(kind, &obj);
            for p in admission::static_problems(kind, &obj) {
                report.problems.push(format!("{id}: {p}"));
            }
            for n in admission::static_notes(kind, &obj) {
                report.warnings.push(format!("{id}: {n}"));
            }
        } else if let Some(problem) = unserved_version(&obj) {
            report.problems.push(problem);
        }
        report.objects.push(obj);
    }
    Ok(report)
}

/// A kind vaultgate serves, in a version of the group it does not serve (e.g. the long-gone
/// `v1alpha1` of old examples) or with no `apiVersion`: the API server would refuse it, so
/// this says so.
fn unserved_version(obj: &Value) -> Option<String> {
    let kind = Kind::from_name(obj.get("kind")?.as_str()?)?;
    let id = object_id(kind, obj);
    let wanted = format!(
        "{}/{}",
        crate::api::GROUP,
        crate::api::VERSIONS.join(" or ")
    );
    let Some(api_version) = obj.get("apiVersion").and_then(Value::as_str) else {
        return Some(format!("{id}: apiVersion: not set: use {wanted}"));
    };
    let (group, _) = api_version.split_once('/')?;
    (group == crate::api::GROUP)
        .then(|| format!("{id}: apiVersion: {api_version} is not served: use {wanted}"))
}

/// Adds the live findings for every served object without static problems.
pub async fn check_live(report: &mut Report, checker: &LiveChecker) {
    for obj in &report.objects {
        let Some(kind) = admission::kind_of(obj) else {
            continue;
        };
        let id = object_id(kind, obj);
        if report
            .problems
            .iter()
            .any(|p| p.starts_with(&format!("{id}: ")))
        {
            continue;
        }
        let Ok(typed) = admission::handler_typed(kind, obj) else {
            continue;
        };
        // Whoever runs `check --live` uses their own kubeconfig's rights: the manifests are theirs.
        let findings = typed
            .live(checker, admission::Callers::Authenticated, false)
            .await;
        let field = match kind {
            Kind::ExternalSecret => "spec.secretStoreRef",
            Kind::ClusterExternalSecret => "spec.externalSecretSpec.secretStoreRef",
            _ => "spec.provider.vault",
        };
        for m in findings.refusals.iter().chain(&findings.problems) {
            if m.starts_with("spec") {
                report.problems.push(format!("{id}: {m}"));
            } else {
                report.problems.push(format!("{id}: {field}: {m}"));
            }
        }
        for n in findings.notes {
            report.warnings.push(format!("{id}: {n}"));
        }
    }
}

fn read_input(args: &Config) -> anyhow::Result<String> {
    if args.file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading standard input")?;
        Ok(s)
    } else {
        std::fs::read_to_string(&args.file)
            .with_context(|| format!("reading {}", args.file.display()))
    }
}

/// Renders the objects as a YAML stream.
pub fn render(objects: &[Value]) -> anyhow::Result<String> {
    let mut out = String::new();
    for o in objects {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(o)?);
    }
    Ok(out)
}

pub fn main(args: Config) -> anyhow::Result<ExitCode> {
    let text = read_input(&args)?;
    let mut report = check_text(&text)?;
    if args.live {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let client = kube::Client::try_default()
                .await
                .context("connecting to the cluster of the current kubeconfig")?;
            let vault =
                crate::vault::VaultClients::new(client.clone(), crate::metrics::Metrics::new());
            let checker = LiveChecker::new(client, vault.clone(), args.live_budget);
            check_live(&mut report, &checker).await;
            vault.revoke_all().await;
            anyhow::Ok(())
        })?;
    }
    print!("{}", render(&report.objects)?);
    std::io::stdout().flush()?;
    let mut err = std::io::stderr().lock();
    for w in &report.warnings {
        writeln!(err, "warning: {w}")?;
    }
    for p in &report.problems {
        writeln!(err, "{p}")?;
    }
    Ok(if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
apiVersion: external-secrets.io/v1beta1
kind: ExternalSecret
metadata:
  name: app
  namespace: team-a
spec:
  secretStoreRef:
    name: vault
  data:
  - secretKey: password
    remoteRef:
      key: app/db
      property: password
---
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata:
  name: shared
spec:
  provider:
    vault:
      server: vault:8200
      auth:
        kubernetes:
          role: app
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: untouched
data:
  a: b
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata:
  name: bad
spec:
  secretStoreRef:
    name: vault
  data:
  - secretKey: a
    remoteRef: {key: x}
  - secretKey: a
    remoteRef: {key: ../y}
"#;

    #[test]
    fn defaults_and_problems_for_a_file() {
        let r = check_text(FILE).unwrap();
        assert_eq!(r.objects.len(), 4);
        let es = &r.objects[0];
        assert_eq!(es["spec"]["refreshInterval"], "1h0m0s");
        assert_eq!(es["spec"]["target"]["name"], "app");
        assert_eq!(es["spec"]["secretStoreRef"]["kind"], "SecretStore");
        assert_eq!(r.objects[1]["spec"]["provider"]["vault"]["version"], "v2");
        assert_eq!(
            r.objects[1]["spec"]["provider"]["vault"]["auth"]["kubernetes"]["mountPath"],
            "kubernetes"
        );
        assert_eq!(r.objects[2]["data"]["a"], "b");
        assert!(r.objects[2].get("spec").is_none());
        assert_eq!(
            r.problems,
            vec![
                "ClusterSecretStore/shared: spec.provider.vault.server: \"vault:8200\" is not an http(s) URL such as \"https://vault.example.com:8200\"".to_string(),
                "ExternalSecret/default/bad: spec.data[1].secretKey: duplicate secretKey \"a\"".to_string(),
                "ExternalSecret/default/bad: spec.data[1].remoteRef.key: the remote key \"../y\" contains a \".\" or \"..\" segment".to_string(),
            ]
        );
        let yaml = render(&r.objects).unwrap();
        assert_eq!(yaml.matches("---\n").count(), 4);
        assert!(yaml.contains("refreshInterval: 1h0m0s"), "{yaml}");
    }

    #[test]
    fn a_clean_file_has_no_problems() {
        let r = check_text(
            FILE.split("---\napiVersion: external-secrets.io/v1\nkind: ClusterSecretStore")
                .next()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(r.objects.len(), 1);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
    }

    #[test]
    fn two_jwt_sources_are_admitted_with_the_one_used_named() {
        let r = check_text(
            r#"
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {name: vault, namespace: team-a}
spec:
  provider:
    vault:
      server: https://vault.example.com
      auth:
        jwt:
          role: r
          secretRef: {name: jwt, key: token}
          kubernetesServiceAccountToken:
            serviceAccountRef: {name: app}
---
apiVersion: external-secrets.io/v1alpha1
kind: ExternalSecret
metadata: {name: old}
spec: {}
"#,
        )
        .unwrap();
        assert_eq!(
            r.warnings,
            [
                "SecretStore/team-a/vault: spec.provider.vault.auth.jwt: secretRef and \
              kubernetesServiceAccountToken are both set: the login uses the JWT of secretRef and \
              ignores kubernetesServiceAccountToken, as ESO does"
            ]
        );
        assert_eq!(
            r.problems,
            [
                "ExternalSecret/default/old: apiVersion: external-secrets.io/v1alpha1 is not served: \
              use external-secrets.io/v1 or v1beta1"
            ]
        );
    }

    #[test]
    fn broken_yaml_is_an_error() {
        assert!(check_text("a: [b").is_err());
    }
}
