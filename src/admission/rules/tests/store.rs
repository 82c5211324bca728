//! Table tests of the store rules.

use serde_json::{Value, json};

use super::{VERSIONS, assert_case, store_base};

/// (name, only for this kind, merge patch, expected `(field, message)` or valid); run for
/// both kinds unless restricted.
type StoreCase = (
    &'static str,
    Option<&'static str>,
    Value,
    Option<(&'static str, &'static str)>,
);

fn store_cases() -> Vec<StoreCase> {
    let with_auth = |a: Value| json!({"spec": {"provider": {"vault": {"auth": a}}}});
    vec![
        ("base is valid", None, json!({}), None),
        (
            "token auth",
            None,
            with_auth(json!({"appRole": null, "tokenSecretRef": {"name": "t", "key": "token"}})),
            None,
        ),
        (
            "kubernetes auth with service account",
            None,
            with_auth(
                json!({"appRole": null, "kubernetes": {"role": "r", "serviceAccountRef": {"name": "sa"}}}),
            ),
            None,
        ),
        (
            "kubernetes auth with vaultgate's own token in a ClusterSecretStore",
            Some("ClusterSecretStore"),
            with_auth(json!({"appRole": null, "kubernetes": {"role": "r"}})),
            None,
        ),
        (
            "kubernetes auth with vaultgate's own token in a SecretStore",
            Some("SecretStore"),
            with_auth(json!({"appRole": null, "kubernetes": {"role": "r"}})),
            Some((
                "spec.provider.vault.auth.kubernetes",
                "needs serviceAccountRef or secretRef",
            )),
        ),
        (
            "kubernetes auth with serviceAccountRef and secretRef, as ESO's example",
            None,
            with_auth(
                json!({"appRole": null, "kubernetes": {"role": "r", "serviceAccountRef": {"name": "sa"}, "secretRef": {"name": "s", "key": "vault"}}}),
            ),
            None,
        ),
        (
            "jwt auth with secretRef and a service account token",
            None,
            with_auth(
                json!({"appRole": null, "jwt": {"role": "r", "secretRef": {"name": "j", "key": "jwt"}, "kubernetesServiceAccountToken": {"serviceAccountRef": {"name": "sa"}}}}),
            ),
            None,
        ),
        (
            "jwt auth: the token source not used is still checked",
            None,
            with_auth(
                json!({"appRole": null, "jwt": {"role": "r", "secretRef": {"name": "j", "key": "jwt"}, "kubernetesServiceAccountToken": {"serviceAccountRef": {"name": ""}}}}),
            ),
            Some((
                "spec.provider.vault.auth.jwt.kubernetesServiceAccountToken.serviceAccountRef.name",
                "a ServiceAccount name is required",
            )),
        ),
        (
            "ldap auth",
            None,
            with_auth(
                json!({"appRole": null, "ldap": {"username": "u", "secretRef": {"name": "p", "key": "pw"}}}),
            ),
            None,
        ),
        (
            "userpass auth",
            None,
            with_auth(
                json!({"appRole": null, "userPass": {"username": "u", "secretRef": {"name": "p", "key": "pw"}}}),
            ),
            None,
        ),
        (
            "jwt auth with a secret",
            None,
            with_auth(
                json!({"appRole": null, "jwt": {"role": "r", "secretRef": {"name": "j", "key": "jwt"}}}),
            ),
            None,
        ),
        (
            "jwt auth with a service account token",
            None,
            with_auth(
                json!({"appRole": null, "jwt": {"role": "r", "kubernetesServiceAccountToken": {"serviceAccountRef": {"name": "sa"}}}}),
            ),
            None,
        ),
        (
            "cert auth",
            None,
            with_auth(
                json!({"appRole": null, "cert": {"clientCert": {"name": "c", "key": "tls.crt"}, "secretRef": {"name": "c", "key": "tls.key"}}}),
            ),
            None,
        ),
        (
            "approle with roleRef",
            None,
            with_auth(json!({"appRole": {"roleId": null, "roleRef": {"name": "r", "key": "id"}}})),
            None,
        ),
        (
            "client tls both",
            None,
            json!({"spec": {"provider": {"vault": {"tls": {"certSecretRef": {"name": "c"}, "keySecretRef": {"name": "c"}}}}}}),
            None,
        ),
        (
            "refresh as seconds",
            None,
            json!({"spec": {"refreshInterval": 300}}),
            None,
        ),
        (
            "refresh as duration",
            None,
            json!({"spec": {"refreshInterval": "5m"}}),
            None,
        ),
        (
            "own namespace is fine",
            Some("SecretStore"),
            with_auth(
                json!({"appRole": null, "tokenSecretRef": {"name": "t", "key": "token", "namespace": "team-a"}}),
            ),
            None,
        ),
        (
            "cluster store references any namespace",
            Some("ClusterSecretStore"),
            with_auth(
                json!({"appRole": null, "tokenSecretRef": {"name": "t", "key": "token", "namespace": "vault-auth"}}),
            ),
            None,
        ),
        (
            "cluster store caProvider with namespace",
            Some("ClusterSecretStore"),
            json!({"spec": {"provider": {"vault": {"caProvider": {"type": "Secret", "name": "ca", "key": "ca.crt", "namespace": "vault"}}}}}),
            None,
        ),
        (
            "conditions",
            Some("ClusterSecretStore"),
            json!({"spec": {"conditions": [{"namespaceRegexes": ["^team-.*$"], "namespaces": ["ops"]}]}}),
            None,
        ),
        // Invalid ones.
        (
            "another provider",
            None,
            json!({"spec": {"provider": {"vault": null, "aws": {"service": "SecretsManager"}}}}),
            Some(("spec.provider", "provider aws not supported by vaultgate")),
        ),
        (
            "two providers",
            None,
            json!({"spec": {"provider": {"aws": {"service": "SecretsManager"}}}}),
            Some((
                "spec.provider",
                "exactly one provider may be set, found vault and aws",
            )),
        ),
        (
            "no provider",
            None,
            json!({"spec": {"provider": {"vault": null}}}),
            Some(("spec.provider", "a provider is required")),
        ),
        (
            "negative refresh seconds",
            None,
            json!({"spec": {"refreshInterval": -5}}),
            Some(("spec.refreshInterval", "-5 is negative")),
        ),
        (
            "bad refresh duration",
            None,
            json!({"spec": {"refreshInterval": "5 minutes"}}),
            Some(("spec.refreshInterval", "\"5 minutes\"")),
        ),
        (
            "bad retry interval",
            None,
            json!({"spec": {"retrySettings": {"maxRetries": 3, "retryInterval": "soon"}}}),
            Some(("spec.retrySettings.retryInterval", "\"soon\"")),
        ),
        (
            "approle without role id",
            None,
            with_auth(json!({"appRole": {"roleId": null}})),
            Some((
                "spec.provider.vault.auth.appRole.roleId",
                "one of roleId or roleRef",
            )),
        ),
        (
            "two auth methods",
            None,
            with_auth(json!({"tokenSecretRef": {"name": "t", "key": "token"}})),
            Some(("spec.provider.vault.auth", "found tokenSecretRef, appRole")),
        ),
        (
            "no auth method",
            None,
            with_auth(json!({"appRole": null})),
            Some((
                "spec.provider.vault.auth",
                "exactly one auth method is required",
            )),
        ),
        (
            "no auth at all",
            None,
            with_auth(Value::Null),
            Some((
                "spec.provider.vault.auth",
                "exactly one auth method is required",
            )),
        ),
        (
            "iam",
            None,
            with_auth(json!({"appRole": null, "iam": {"vaultRole": "r"}})),
            Some(("spec.provider.vault.auth.iam", "not supported by vaultgate")),
        ),
        (
            "gcp",
            None,
            with_auth(json!({"appRole": null, "gcp": {"role": "r"}})),
            Some(("spec.provider.vault.auth.gcp", "not supported by vaultgate")),
        ),
        (
            "server without scheme",
            None,
            json!({"spec": {"provider": {"vault": {"server": "vault:8200"}}}}),
            Some((
                "spec.provider.vault.server",
                "\"vault:8200\" is not an http(s) URL",
            )),
        ),
        (
            "server with another scheme",
            None,
            json!({"spec": {"provider": {"vault": {"server": "ftp://vault"}}}}),
            Some(("spec.provider.vault.server", "\"ftp://vault\"")),
        ),
        (
            "client tls half",
            None,
            json!({"spec": {"provider": {"vault": {"tls": {"certSecretRef": {"name": "c"}}}}}}),
            Some(("spec.provider.vault.tls", "must be set together")),
        ),
        (
            "jwt without credentials",
            None,
            with_auth(json!({"appRole": null, "jwt": {"role": "r"}})),
            Some((
                "spec.provider.vault.auth.jwt",
                "one of secretRef or kubernetesServiceAccountToken",
            )),
        ),
        (
            "userpass without password",
            None,
            with_auth(json!({"appRole": null, "userPass": {"username": "u"}})),
            Some((
                "spec.provider.vault.auth.userPass.secretRef",
                "password is required",
            )),
        ),
        (
            "cert without key",
            None,
            with_auth(
                json!({"appRole": null, "cert": {"clientCert": {"name": "c", "key": "tls.crt"}}}),
            ),
            Some(("spec.provider.vault.auth.cert.secretRef", "required")),
        ),
        (
            "token ref without key",
            None,
            with_auth(json!({"appRole": null, "tokenSecretRef": {"name": "t"}})),
            Some((
                "spec.provider.vault.auth.tokenSecretRef.key",
                "a key is required",
            )),
        ),
        (
            "bad auth mount",
            None,
            with_auth(json!({"appRole": {"path": "../sys"}})),
            Some((
                "spec.provider.vault.auth.appRole.path",
                "not an auth mount path",
            )),
        ),
        (
            "secret ref in another namespace",
            Some("SecretStore"),
            with_auth(
                json!({"appRole": null, "tokenSecretRef": {"name": "t", "key": "token", "namespace": "kube-system"}}),
            ),
            Some((
                "spec.provider.vault.auth.tokenSecretRef.namespace",
                "\"kube-system\" is not the store's namespace \"team-a\"",
            )),
        ),
        (
            "approle secret in another namespace",
            Some("SecretStore"),
            with_auth(json!({"appRole": {"secretRef": {"namespace": "other"}}})),
            Some((
                "spec.provider.vault.auth.appRole.secretRef.namespace",
                "\"other\"",
            )),
        ),
        (
            "service account in another namespace",
            Some("SecretStore"),
            with_auth(
                json!({"appRole": null, "kubernetes": {"role": "r", "serviceAccountRef": {"name": "sa", "namespace": "other"}}}),
            ),
            Some((
                "spec.provider.vault.auth.kubernetes.serviceAccountRef.namespace",
                "\"other\"",
            )),
        ),
        (
            "caProvider in another namespace",
            Some("SecretStore"),
            json!({"spec": {"provider": {"vault": {"caProvider": {"type": "ConfigMap", "name": "ca", "namespace": "other"}}}}}),
            Some(("spec.provider.vault.caProvider.namespace", "\"other\"")),
        ),
        (
            "tls secret in another namespace",
            Some("SecretStore"),
            json!({"spec": {"provider": {"vault": {"tls": {"certSecretRef": {"name": "c", "namespace": "other"}, "keySecretRef": {"name": "c"}}}}}}),
            Some((
                "spec.provider.vault.tls.certSecretRef.namespace",
                "\"other\"",
            )),
        ),
        (
            "cluster caProvider without namespace",
            Some("ClusterSecretStore"),
            json!({"spec": {"provider": {"vault": {"caProvider": {"type": "Secret", "name": "ca", "key": "ca.crt"}}}}}),
            Some((
                "spec.provider.vault.caProvider.namespace",
                "needs a namespace",
            )),
        ),
        (
            "bad namespace regex",
            Some("ClusterSecretStore"),
            json!({"spec": {"conditions": [{"namespaceRegexes": ["team-("]}]}}),
            Some((
                "spec.conditions[0].namespaceRegexes[0]",
                "\"team-(\" does not compile",
            )),
        ),
    ]
}

#[test]
fn store_rules() {
    for v in VERSIONS {
        for kind in ["SecretStore", "ClusterSecretStore"] {
            let base = store_base(v, kind);
            for (name, only, patch, want) in store_cases() {
                if only.is_some_and(|k| k != kind) {
                    continue;
                }
                assert_case(&base, &format!("{v} {kind} {name}"), &patch, want);
            }
        }
    }
}

#[test]
fn server_urls() {
    for ok in [
        "https://vault:8200",
        "http://127.0.0.1:8200",
        "https://vault.example.com",
    ] {
        assert!(super::super::check_server(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "vault",
        "https://",
        "ftp://x",
        "https:// vault",
        "/v1/secret",
    ] {
        assert!(super::super::check_server(bad).is_err(), "{bad}");
    }
}
