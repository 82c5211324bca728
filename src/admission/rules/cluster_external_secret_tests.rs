//! A ClusterExternalSecret's rules, defaults and `check -f`, through manifests as JSON.

use serde_json::{Value, json};

use crate::admission::{Kind, defaults, kind_of, static_problems};

fn base(version: &str) -> Value {
    json!({
        "apiVersion": format!("external-secrets.io/{version}"),
        "kind": "ClusterExternalSecret",
        "metadata": {"name": "pull"},
        "spec": {
            "externalSecretName": "registry",
            "externalSecretMetadata": {"labels": {"team": "platform"}, "annotations": {"example.com/note": "x"}},
            "namespaceSelectors": [{"matchLabels": {"pull": "yes"}},
                                   {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]}],
            "namespaceSelector": {"matchExpressions": [{"key": "legacy", "operator": "Exists"}]},
            "namespaces": ["tools"],
            "refreshTime": "10m",
            "externalSecretSpec": {
                "secretStoreRef": {"name": "vault", "kind": "ClusterSecretStore"},
                "refreshInterval": "1h",
                "data": [{"secretKey": "k", "remoteRef": {"key": "app/db", "property": "p"}}]
            }
        }
    })
}

fn problems(version: &str, patch: &Value) -> Vec<String> {
    let mut obj = base(version);
    json_patch::merge(&mut obj, patch);
    assert_eq!(kind_of(&obj), Some(Kind::ClusterExternalSecret));
    static_problems(Kind::ClusterExternalSecret, &obj)
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn every_rule_names_its_full_field_path() {
    type Case = (&'static str, Value, Option<(&'static str, &'static str)>);
    let spec = |es: Value| json!({"spec": {"externalSecretSpec": es}});
    let sel = |s: Value| json!({"spec": {"namespaceSelectors": [s]}});
    let cases: Vec<Case> = vec![
        ("valid", json!({}), None),
        (
            "an ExternalSecret rule: the remote key",
            spec(json!({"data": [{"secretKey": "k", "remoteRef": {"key": "../x"}}]})),
            Some(("spec.externalSecretSpec.data[0].remoteRef.key", "\"..\"")),
        ),
        (
            "an ExternalSecret rule: duplicate secretKey",
            spec(
                json!({"data": [{"secretKey": "k", "remoteRef": {"key": "a"}}, {"secretKey": "k", "remoteRef": {"key": "b"}}]}),
            ),
            Some(("spec.externalSecretSpec.data[1].secretKey", "duplicate")),
        ),
        (
            "an ExternalSecret rule: contradicting policies",
            spec(json!({"target": {"creationPolicy": "Merge", "deletionPolicy": "Delete"}})),
            Some((
                "spec.externalSecretSpec.target.deletionPolicy",
                "Owner or Orphan",
            )),
        ),
        (
            "an ExternalSecret rule: a template that does not parse",
            spec(json!({"target": {"template": {"data": {"a": "{{ nosuchfunc . }}"}}}})),
            Some((
                "spec.externalSecretSpec.target.template.data[a]",
                "nosuchfunc",
            )),
        ),
        (
            "an ExternalSecret rule: refreshInterval",
            spec(json!({"refreshInterval": "1 hour"})),
            Some(("spec.externalSecretSpec.refreshInterval", "\"1 hour\"")),
        ),
        (
            "unknown selector operator",
            sel(json!({"matchExpressions": [{"key": "a", "operator": "Near"}]})),
            Some((
                "spec.namespaceSelectors[0].matchExpressions[0].operator",
                "\"Near\"",
            )),
        ),
        (
            "In without values",
            sel(json!({"matchExpressions": [{"key": "a", "operator": "In"}]})),
            Some((
                "spec.namespaceSelectors[0].matchExpressions[0].values",
                "at least one",
            )),
        ),
        (
            "Exists with values",
            sel(json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]})),
            Some((
                "spec.namespaceSelectors[0].matchExpressions[0].values",
                "takes no values",
            )),
        ),
        (
            "bad expression key",
            sel(json!({"matchExpressions": [{"key": "-a", "operator": "Exists"}]})),
            Some((
                "spec.namespaceSelectors[0].matchExpressions[0].key",
                "\"-a\"",
            )),
        ),
        (
            "bad expression value",
            sel(
                json!({"matchExpressions": [{"key": "a", "operator": "In", "values": ["no spaces"]}]}),
            ),
            Some((
                "spec.namespaceSelectors[0].matchExpressions[0].values",
                "\"no spaces\"",
            )),
        ),
        (
            "bad matchLabels key",
            sel(json!({"matchLabels": {"a b": "x"}})),
            Some(("spec.namespaceSelectors[0].matchLabels", "\"a b\"")),
        ),
        (
            "bad matchLabels value",
            sel(json!({"matchLabels": {"a": "x y"}})),
            Some(("spec.namespaceSelectors[0].matchLabels.a", "\"x y\"")),
        ),
        (
            "the deprecated selector is checked too",
            json!({"spec": {"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}}}),
            Some((
                "spec.namespaceSelector.matchExpressions[0].operator",
                "\"Near\"",
            )),
        ),
        (
            "bad label key in the ExternalSecret metadata",
            json!({"spec": {"externalSecretMetadata": {"labels": {"a b": "x"}}}}),
            Some(("spec.externalSecretMetadata.labels", "\"a b\"")),
        ),
        (
            "bad label value in the ExternalSecret metadata",
            json!({"spec": {"externalSecretMetadata": {"labels": {"a": "x y"}}}}),
            Some(("spec.externalSecretMetadata.labels.a", "\"x y\"")),
        ),
        (
            "bad annotation key in the ExternalSecret metadata",
            json!({"spec": {"externalSecretMetadata": {"annotations": {"/x": "v"}}}}),
            Some(("spec.externalSecretMetadata.annotations", "\"/x\"")),
        ),
        (
            "refreshTime",
            json!({"spec": {"refreshTime": "soon"}}),
            Some(("spec.refreshTime", "\"soon\"")),
        ),
    ];
    for version in ["v1", "v1beta1"] {
        for (name, patch, want) in &cases {
            let got = problems(version, patch);
            match want {
                None => assert!(got.is_empty(), "{name}: expected valid, got {got:?}"),
                Some((field, msg)) => assert!(
                    got.iter()
                        .any(|p| p.starts_with(&format!("{field}: ")) && p.contains(msg)),
                    "{name} ({version}): expected `{field}: …{msg}…`, got {got:?}"
                ),
            }
        }
    }
}

#[test]
fn an_unreadable_spec_is_one_problem() {
    let got = problems("v1", &json!({"spec": {"namespaces": "tools"}}));
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].contains("invalid type: string \"tools\", expected a sequence"),
        "{got:?}"
    );
}

#[test]
fn defaults_go_into_the_external_secret_spec_named_after_its_external_secrets() {
    let mut obj = json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ClusterExternalSecret",
        "metadata": {"name": "pull"},
        "spec": {"externalSecretSpec": {"secretStoreRef": {"name": "vault"}}}
    });
    assert!(defaults::apply(Kind::ClusterExternalSecret, &mut obj));
    let es = &obj["spec"]["externalSecretSpec"];
    assert_eq!(es["refreshInterval"], "1h0m0s");
    assert_eq!(es["refreshPolicy"], "Periodic");
    assert_eq!(es["secretStoreRef"]["kind"], "SecretStore");
    assert_eq!(
        es["target"],
        json!({"name": "pull", "creationPolicy": "Owner", "deletionPolicy": "Retain"})
    );
    // Complete: nothing more to add.
    assert!(defaults::patch(Kind::ClusterExternalSecret, &obj).is_none());
    let mut named = base("v1");
    defaults::apply(Kind::ClusterExternalSecret, &mut named);
    assert_eq!(
        named["spec"]["externalSecretSpec"]["target"]["name"],
        "registry"
    );
    // Nothing outside the ExternalSecret spec is touched.
    assert_eq!(named["spec"]["refreshTime"], "10m");
    assert!(named["metadata"].get("namespace").is_none());
}

#[test]
fn check_reads_the_kind_as_cluster_scoped() {
    let text = r#"
apiVersion: external-secrets.io/v1
kind: ClusterExternalSecret
metadata: {name: pull}
spec:
  namespaces: [tools]
  namespaceSelectors:
  - matchExpressions: [{key: a, operator: Near}]
  externalSecretSpec:
    secretStoreRef: {name: vault, kind: ClusterSecretStore}
    data:
    - secretKey: k
      remoteRef: {key: ../x}
"#;
    let r = crate::check::check_text(text).unwrap();
    assert!(r.objects[0]["metadata"].get("namespace").is_none());
    assert_eq!(
        r.objects[0]["spec"]["externalSecretSpec"]["target"]["name"],
        "pull"
    );
    assert_eq!(r.problems.len(), 2, "{:?}", r.problems);
    assert!(
        r.problems[0].starts_with(
            "ClusterExternalSecret/pull: spec.externalSecretSpec.data[0].remoteRef.key:"
        )
    );
    assert!(r.problems[1].starts_with(
        "ClusterExternalSecret/pull: spec.namespaceSelectors[0].matchExpressions[0].operator:"
    ));
}
