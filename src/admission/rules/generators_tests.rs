use serde_json::{Value, json};

use crate::admission::{Kind, kind_of, static_problems};

fn problems(kind: &str, spec: Value) -> Vec<String> {
    let namespaced = kind != "ClusterGenerator";
    let mut obj = json!({
        "apiVersion": "generators.external-secrets.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": "g"},
        "spec": spec,
    });
    if namespaced {
        obj["metadata"]["namespace"] = json!("team-a");
    }
    let k: Kind = kind_of(&obj).unwrap();
    static_problems(k, &obj)
        .into_iter()
        .map(|p| p.to_string())
        .collect()
}

fn vds(extra: Value) -> Value {
    let mut v = json!({
        "path": "database/creds/app",
        "provider": {"server": "https://vault:8200", "auth": {"tokenSecretRef": {"name": "t", "key": "token"}}},
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

#[test]
fn generator_kinds_are_served_in_their_group_only() {
    let obj = |api: &str, kind: &str| json!({"apiVersion": api, "kind": kind, "spec": {}});
    assert_eq!(
        kind_of(&obj("generators.external-secrets.io/v1alpha1", "Password")),
        Some(Kind::Password)
    );
    assert_eq!(
        kind_of(&obj(
            "generators.external-secrets.io/v1alpha1",
            "ClusterGenerator"
        )),
        Some(Kind::ClusterGenerator)
    );
    assert_eq!(kind_of(&obj("external-secrets.io/v1", "Password")), None);
    assert_eq!(
        kind_of(&obj("generators.external-secrets.io/v1", "UUID")),
        None
    );
    assert_eq!(
        kind_of(&obj("generators.external-secrets.io/v1alpha1", "Fake")),
        None
    );
}

/// (kind, spec, the problem expected: field and part of its message; None: accepted)
type Case = (&'static str, Value, Option<(&'static str, &'static str)>);

#[test]
fn generator_rules() {
    let cases: Vec<Case> = vec![
        ("Password", json!({}), None),
        (
            "Password",
            json!({"length": 32, "digits": 5, "symbols": 5, "allowRepeat": true}),
            None,
        ),
        (
            "Password",
            json!({"length": 8, "digits": 5, "symbols": 4}),
            Some(("spec", "digits (5) + symbols (4) exceed length (8)")),
        ),
        (
            "Password",
            json!({"length": 70, "digits": 8, "symbols": 8, "allowRepeat": false}),
            Some(("spec", "54 letters without repeats, but only 52 exist")),
        ),
        (
            "Password",
            json!({"secretKeys": ["a", "a"]}),
            Some(("spec.secretKeys[1]", "appears twice")),
        ),
        (
            "Password",
            json!({"length": "x"}),
            Some(("spec", "invalid type")),
        ),
        ("UUID", json!({}), None),
        ("SSHKey", json!({}), None),
        (
            "SSHKey",
            json!({"keyType": "ed25519", "comment": "c"}),
            None,
        ),
        (
            "SSHKey",
            json!({"keyType": "rsa", "keySize": 1024}),
            Some(("spec.keySize", "an RSA key of 1024 bits")),
        ),
        (
            "SSHKey",
            json!({"keyType": "ecdsa", "keySize": 300}),
            Some(("spec.keySize", "256, 384 or 521")),
        ),
        (
            "SSHKey",
            json!({"keyType": "dsa"}),
            Some(("spec", "unknown variant")),
        ),
        ("VaultDynamicSecret", vds(json!({})), None),
        (
            "VaultDynamicSecret",
            vds(json!({"method": "POST", "parameters": {"ttl": "1h"}})),
            None,
        ),
        (
            "VaultDynamicSecret",
            vds(json!({"path": "../sys/raw"})),
            Some(("spec.path", "is not a Vault path")),
        ),
        (
            "VaultDynamicSecret",
            vds(json!({"method": "PATCH"})),
            Some(("spec.method", "use one of GET, LIST, DELETE, POST, PUT")),
        ),
        (
            "VaultDynamicSecret",
            vds(json!({"method": "POST", "parameters": "ttl=1h"})),
            Some(("spec.parameters", "must be an object")),
        ),
        (
            "VaultDynamicSecret",
            vds(json!({"method": "LIST", "getParameters": {"a": ["1"]}})),
            Some(("spec.getParameters", "only a GET sends getParameters")),
        ),
        (
            "VaultDynamicSecret",
            vds(json!({"retrySettings": {"maxRetries": -1}})),
            Some(("spec.retrySettings.maxRetries", "negative")),
        ),
        (
            "VaultDynamicSecret",
            vds(json!({"provider": {"server": "vault:8200"}})),
            Some(("spec.provider.server", "")),
        ),
        (
            "ClusterGenerator",
            json!({"kind": "UUID", "generator": {"uuidSpec": {}}}),
            None,
        ),
        (
            "ClusterGenerator",
            json!({"kind": "Password", "generator": {"passwordSpec": {"length": 4, "digits": 4, "symbols": 4}}}),
            Some(("spec.generator.passwordSpec", "exceed length (4)")),
        ),
        (
            "ClusterGenerator",
            json!({"kind": "VaultDynamicSecret", "generator": {"vaultDynamicSecretSpec": vds(json!({"method": "PATCH"}))}}),
            Some(("spec.generator.vaultDynamicSecretSpec.method", "use one of")),
        ),
        (
            "ClusterGenerator",
            json!({"kind": "SSHKey", "generator": {"passwordSpec": {}}}),
            Some(("spec.generator", "kind is SSHKey but sshKeySpec is not set")),
        ),
    ];
    for (kind, spec, want) in cases {
        let got = problems(kind, spec.clone());
        match want {
            None => assert!(got.is_empty(), "{kind} {spec}: {got:?}"),
            Some((field, part)) => assert!(
                got.iter()
                    .any(|p| p.starts_with(&format!("{field}: ")) && p.contains(part)),
                "{kind} {spec}: wanted {field}: …{part}…, got {got:?}"
            ),
        }
    }
}
