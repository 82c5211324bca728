//! ESO's own documentation examples (`tests/data/eso-docs/`, Apache-2.0, from ESO's
//! `docs/snippets/`) through `vaultgate check -f`: only what cannot work is refused, and the
//! message says why; what is admitted with a note says so too.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// `vaultgate check -f -` on a snippet as a reader copies it from the rendered page (the
/// documentation site's `{% raw %}` markers are not part of it): exit code and stderr lines.
fn check(file: &str) -> (i32, Vec<String>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/eso-docs")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let copied: String = text
        .lines()
        .filter(|l| !matches!(l.trim(), "{% raw %}" | "{% endraw %}"))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vaultgate"))
        .args(["check", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(copied.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    (
        out.status.code().unwrap_or(-1),
        err.lines().map(str::to_string).collect(),
    )
}

const NOT_SERVED: &str =
    "apiVersion: external-secrets.io/v1alpha1 is not served: use external-secrets.io/v1 or v1beta1";

/// Every snippet, with the exit code and every line `check` prints on stderr.
fn cases() -> Vec<(&'static str, i32, Vec<String>)> {
    vec![
        // Both serviceAccountRef and secretRef: admitted, and the warning names the one used.
        (
            "vault-kubernetes-store.yaml",
            0,
            vec![
                "warning: SecretStore/example/vault-backend: spec.provider.vault.auth.kubernetes: \
                 serviceAccountRef and secretRef are both set: the login uses a token requested \
                 for serviceAccountRef and ignores secretRef, as ESO does"
                    .into(),
            ],
        ),
        ("vault-jwt-store.yaml", 0, vec![]),
        ("vault-cert-store.yaml", 0, vec![]),
        (
            "vault-jenkins-credential-sonarqube-api-token-external-secret.yaml",
            0,
            vec![],
        ),
        ("datafrom-rewrite-remove-path.yaml", 0, vec![]),
        ("datafrom-rewrite-conflict.yaml", 0, vec![]),
        ("datafrom-rewrite-merge-empty.yaml", 0, vec![]),
        // What cannot work, and why.
        (
            "vault-token-store.yaml",
            1,
            vec![
                "SecretStore/example/vault-backend: apiVersion: not set: use external-secrets.io/v1 or v1beta1"
                    .into(),
            ],
        ),
        (
            "vault-approle-store.yaml",
            1,
            vec![format!("SecretStore/example/vault-backend: {NOT_SERVED}")],
        ),
        (
            "vault-ldap-store.yaml",
            1,
            vec![format!("SecretStore/example/vault-backend: {NOT_SERVED}")],
        ),
        (
            "vault-anchore-engine-access-credentials-external-secret.yaml",
            1,
            vec![format!(
                "ExternalSecret/security/anchore-access-credentials: {NOT_SERVED}"
            )],
        ),
        (
            "basic-external-secret.yaml",
            1,
            vec![format!("ExternalSecret/default/example: {NOT_SERVED}")],
        ),
        (
            "vault-iam-store.yaml",
            1,
            vec![
                "SecretStore/default/vault-backend-aws-iam: spec.provider.vault.auth.iam: auth \
                 method iam is not supported by vaultgate"
                    .into(),
            ],
        ),
        // `# ...` stands for the store reference and the data.
        (
            "certsans-template-v2-external-secret.yaml",
            1,
            vec![
                "ExternalSecret/default/cert-sans-example: spec: either data or dataFrom must be specified".into(),
                "ExternalSecret/default/cert-sans-example: spec.secretStoreRef.name: a store name is required (got \"\")".into(),
            ],
        ),
    ]
}

#[test]
fn eso_doc_snippets_are_refused_only_when_they_cannot_work() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/eso-docs");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    on_disk.sort();
    let cases = cases();
    let mut listed: Vec<String> = cases.iter().map(|(f, _, _)| f.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "every snippet kept has a case");
    for (file, code, lines) in cases {
        let (got_code, got_lines) = check(file);
        assert_eq!(got_lines, lines, "{file}");
        assert_eq!(got_code, code, "{file}: {got_lines:?}");
    }
}
