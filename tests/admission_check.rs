//! `vaultgate check`: the binary on files and standard input, and its live checks against the
//! emulators.

use std::io::Write;
use std::process::{Command, Stdio};

const GOOD: &str = r#"
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
    remoteRef: {key: app/db, property: password}
---
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata:
  name: shared
spec:
  provider:
    vault:
      server: https://vault:8200
      path: secret
      auth:
        appRole:
          roleId: abc
          secretRef: {name: approle, key: secret-id, namespace: vault}
"#;

const BAD: &str = r#"
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata:
  name: broken
  namespace: team-a
spec:
  secretStoreRef:
    name: vault
  target:
    template:
      data: {a: "{{ .b | nosuchfunc }}"}
  data:
  - secretKey: password
    remoteRef: {key: sys/seal-status}
---
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata:
  name: shared
spec:
  provider:
    vault:
      server: https://vault:8200
      auth:
        iam: {vaultRole: r}
"#;

fn run(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vaultgate"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn a_valid_file_prints_the_defaulted_objects() {
    let path =
        std::env::temp_dir().join(format!("vaultgate-check-good-{}.yaml", std::process::id()));
    std::fs::write(&path, GOOD).unwrap();
    let (code, out, err) = run(&["check", "-f", path.to_str().unwrap()], None);
    let _ = std::fs::remove_file(&path);
    assert_eq!(code, 0, "{err}");
    assert!(err.is_empty(), "{err}");
    let docs: Vec<serde_json::Value> = serde_yaml_ng::Deserializer::from_str(&out)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    assert_eq!(docs.len(), 2, "{out}");
    assert_eq!(docs[0]["apiVersion"], "external-secrets.io/v1beta1");
    assert_eq!(docs[0]["spec"]["refreshInterval"], "1h0m0s");
    assert_eq!(docs[0]["spec"]["target"]["name"], "app");
    assert_eq!(docs[0]["spec"]["target"]["deletionPolicy"], "Retain");
    assert_eq!(docs[1]["spec"]["provider"]["vault"]["version"], "v2");
    assert_eq!(
        docs[1]["spec"]["provider"]["vault"]["auth"]["appRole"]["path"],
        "approle"
    );
}

#[test]
fn problems_exit_one_with_a_line_each_from_stdin() {
    let (code, out, err) = run(&["check", "-f", "-"], Some(BAD));
    assert_eq!(code, 1, "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines,
        [
            "ExternalSecret/team-a/broken: spec.target.template.data[a]: template: a:1:9: function \"nosuchfunc\" not defined",
            "ExternalSecret/team-a/broken: spec.data[0].remoteRef.key: the remote key \"sys/seal-status\" points into Vault's sys/ API, not at a secret",
            "ClusterSecretStore/shared: spec.provider.vault.auth.iam: auth method iam is not supported by vaultgate",
        ],
        "{err}"
    );
    // The objects are still printed, defaulted.
    assert!(
        out.contains("name: broken") && out.contains("refreshInterval: 1h0m0s"),
        "{out}"
    );
}

#[test]
fn unreadable_input_exits_two() {
    let (code, _, err) = run(&["check", "-f", "/nonexistent/manifests.yaml"], None);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/manifests.yaml"), "{err}");
    let (code, _, err) = run(&["check", "-f", "-"], Some("a: [b"));
    assert_eq!(code, 2, "{err}");
}
