//! Table tests of the rules, through the manifests as JSON.

use serde_json::{Value, json};

use super::super::{Kind, kind_of, static_problems};

mod store;

const VERSIONS: [&str; 2] = ["v1", "v1beta1"];

fn es_base(version: &str) -> Value {
    json!({
        "apiVersion": format!("external-secrets.io/{version}"),
        "kind": "ExternalSecret",
        "metadata": {"name": "app", "namespace": "team-a"},
        "spec": {
            "secretStoreRef": {"name": "vault", "kind": "SecretStore"},
            "refreshInterval": "1h",
            "target": {"name": "app-secret"},
            "data": [{"secretKey": "password", "remoteRef": {"key": "app/db", "property": "password"}}],
            "dataFrom": [
                {"extract": {"key": "app/config"}},
                {"find": {"path": "app", "name": {"regexp": "^db-.*"}},
                 "rewrite": [{"regexp": {"source": "db-(.*)", "target": "$1"}}]}
            ]
        }
    })
}

fn store_base(version: &str, kind: &str) -> Value {
    let mut v = json!({
        "apiVersion": format!("external-secrets.io/{version}"),
        "kind": kind,
        "metadata": {"name": "vault"},
        "spec": {"provider": {"vault": {
            "server": "https://vault.example:8200",
            "path": "secret",
            "version": "v2",
            "auth": {"appRole": {"path": "approle", "roleId": "abc",
                                 "secretRef": {"name": "approle", "key": "secret-id"}}}
        }}}
    });
    if kind == "SecretStore" {
        v["metadata"]["namespace"] = json!("team-a");
    }
    v
}

/// Applies a JSON merge patch (null deletes) and runs the rules.
fn problems(base: &Value, patch: &Value) -> Vec<String> {
    let mut obj = base.clone();
    json_patch::merge(&mut obj, patch);
    let kind = kind_of(&obj).expect("served kind");
    static_problems(kind, &obj)
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn assert_case(base: &Value, name: &str, patch: &Value, want: Option<(&str, &str)>) {
    let got = problems(base, patch);
    match want {
        None => assert!(got.is_empty(), "{name}: expected valid, got {got:?}"),
        Some((field, msg)) => assert!(
            got.iter()
                .any(|p| p.starts_with(&format!("{field}: ")) && p.contains(msg)),
            "{name}: expected `{field}: …{msg}…`, got {got:?}"
        ),
    }
}

#[test]
fn kinds_and_versions_are_recognised() {
    for v in VERSIONS {
        assert_eq!(kind_of(&es_base(v)), Some(Kind::ExternalSecret));
        assert_eq!(
            kind_of(&store_base(v, "SecretStore")),
            Some(Kind::SecretStore)
        );
        assert_eq!(
            kind_of(&store_base(v, "ClusterSecretStore")),
            Some(Kind::ClusterSecretStore)
        );
    }
    assert_eq!(
        kind_of(&json!({"apiVersion": "external-secrets.io/v1alpha1", "kind": "ExternalSecret"})),
        None
    );
    assert_eq!(
        kind_of(&json!({"apiVersion": "v1", "kind": "Secret"})),
        None
    );
}

#[test]
fn external_secret_rules() {
    type Case = (&'static str, Value, Option<(&'static str, &'static str)>);
    // A spec whose data entries have the secretKeys `k{n}`, in this order.
    let keyed = |ns: &mut dyn Iterator<Item = usize>| {
        let data: Vec<Value> = ns
            .map(|n| json!({"secretKey": format!("k{n}"), "remoteRef": {"key": "x"}}))
            .collect();
        json!({"spec": {"data": data}})
    };
    let cases: Vec<Case> = vec![
        ("base is valid", json!({}), None),
        ("sync once", json!({"spec": {"refreshInterval": "0"}}), None),
        (
            "delete with orphan",
            json!({"spec": {"target": {"deletionPolicy": "Delete", "creationPolicy": "Orphan"}}}),
            None,
        ),
        ("data only", json!({"spec": {"dataFrom": null}}), None),
        ("dataFrom only", json!({"spec": {"data": null}}), None),
        (
            "versioned read",
            json!({"spec": {"data": [{"secretKey": "a", "remoteRef": {"key": "app/db", "version": "3"}}]}}),
            None,
        ),
        (
            "delete with merge creation",
            json!({"spec": {"target": {"deletionPolicy": "Delete", "creationPolicy": "Merge"}}}),
            Some((
                "spec.target.deletionPolicy",
                "needs creationPolicy Owner or Orphan",
            )),
        ),
        (
            "merge deletion with none creation",
            json!({"spec": {"target": {"deletionPolicy": "Merge", "creationPolicy": "None"}}}),
            Some(("spec.target.deletionPolicy", "creationPolicy None")),
        ),
        (
            "neither data nor dataFrom",
            json!({"spec": {"data": null, "dataFrom": null}}),
            Some(("spec", "either data or dataFrom")),
        ),
        (
            "empty data lists",
            json!({"spec": {"data": [], "dataFrom": []}}),
            Some(("spec", "either data or dataFrom")),
        ),
        (
            "extract and find together",
            json!({"spec": {"dataFrom": [{"extract": {"key": "a"}, "find": {"path": "b"}}]}}),
            Some(("spec.dataFrom[0]", "exactly one of extract or find")),
        ),
        (
            "neither extract nor find",
            json!({"spec": {"dataFrom": [{}]}}),
            Some(("spec.dataFrom[0]", "exactly one of extract or find")),
        ),
        (
            "duplicate secretKey",
            json!({"spec": {"data": [
                {"secretKey": "a", "remoteRef": {"key": "x"}},
                {"secretKey": "a", "remoteRef": {"key": "y"}}]}}),
            Some(("spec.data[1].secretKey", "duplicate secretKey \"a\"")),
        ),
        (
            "distinct secretKeys, few and many",
            keyed(&mut (0..10).chain(100..140)),
            None,
        ),
        ("distinct secretKeys, few", keyed(&mut (0..16)), None),
        (
            // Past the few keys that are compared one by one.
            "duplicate secretKey among many",
            keyed(&mut (0..20).chain([3])),
            Some(("spec.data[20].secretKey", "duplicate secretKey \"k3\"")),
        ),
        (
            "duplicate secretKey as the last of a few",
            keyed(&mut (0..15).chain([0])),
            Some(("spec.data[15].secretKey", "duplicate secretKey \"k0\"")),
        ),
        (
            "service account token type",
            json!({"spec": {"target": {"template": {"type": "kubernetes.io/service-account-token"}}}}),
            Some((
                "spec.target.template.type",
                "kubernetes.io/service-account-token",
            )),
        ),
        (
            "bootstrap token type",
            json!({"spec": {"target": {"template": {"type": "bootstrap.kubernetes.io/token"}}}}),
            Some(("spec.target.template.type", "bootstrap.kubernetes.io/token")),
        ),
        (
            "template calling an unknown function",
            json!({"spec": {"target": {"template": {"data": {"a": "{{ .b | nosuchfunc }}"}}}}}),
            Some(("spec.target.template.data[a]", "nosuchfunc")),
        ),
        (
            "bad secretKey",
            json!({"spec": {"data": [{"secretKey": "pass word", "remoteRef": {"key": "x"}}]}}),
            Some((
                "spec.data[0].secretKey",
                "\"pass word\" is not a valid Secret key",
            )),
        ),
        (
            "key escaping upwards",
            json!({"spec": {"data": [{"secretKey": "a", "remoteRef": {"key": "app/../../sys/seal"}}]}}),
            Some(("spec.data[0].remoteRef.key", "\"..\"")),
        ),
        (
            "absolute key",
            json!({"spec": {"data": [{"secretKey": "a", "remoteRef": {"key": "/secret/app"}}]}}),
            Some(("spec.data[0].remoteRef.key", "starts with \"/\"")),
        ),
        (
            "sys key",
            json!({"spec": {"data": [{"secretKey": "a", "remoteRef": {"key": "sys/mounts"}}]}}),
            Some(("spec.data[0].remoteRef.key", "sys/")),
        ),
        (
            "auth key",
            json!({"spec": {"dataFrom": [{"extract": {"key": "auth/token/lookup-self"}}]}}),
            Some(("spec.dataFrom[0].extract.key", "auth/")),
        ),
        (
            "NUL in key",
            json!({"spec": {"data": [{"secretKey": "a", "remoteRef": {"key": "a\u{0}b"}}]}}),
            Some(("spec.data[0].remoteRef.key", "NUL")),
        ),
        (
            "find path escaping",
            json!({"spec": {"dataFrom": [{"find": {"path": "../other"}}]}}),
            Some(("spec.dataFrom[0].find.path", "\"..\"")),
        ),
        (
            "bad version",
            json!({"spec": {"data": [{"secretKey": "a", "remoteRef": {"key": "x", "version": "latest"}}]}}),
            Some(("spec.data[0].remoteRef.version", "\"latest\"")),
        ),
        (
            "bad refresh interval",
            json!({"spec": {"refreshInterval": "1 hour"}}),
            Some(("spec.refreshInterval", "\"1 hour\"")),
        ),
        (
            "negative refresh interval",
            json!({"spec": {"refreshInterval": "-1h"}}),
            Some(("spec.refreshInterval", "negative")),
        ),
        (
            "find regexp does not compile",
            json!({"spec": {"dataFrom": [{"find": {"name": {"regexp": "db-("}}}]}}),
            Some((
                "spec.dataFrom[0].find.name.regexp",
                "\"db-(\" does not compile",
            )),
        ),
        (
            "find regexp a backtracking engine would take forever on",
            json!({"spec": {"dataFrom": [{"find": {"name": {"regexp": "(a+)+$"}}}]}}),
            None,
        ),
        (
            "find regexp beyond the compiled size limit",
            json!({"spec": {"dataFrom": [{"find": {"name": {"regexp": "a{1000}{1000}"}}}]}}),
            Some((
                "spec.dataFrom[0].find.name.regexp",
                "\"a{1000}{1000}\" compiles to more than 10 MiB",
            )),
        ),
        (
            "find regexp longer than 4096 bytes",
            json!({"spec": {"dataFrom": [{"find": {"name": {"regexp": "a".repeat(4097)}}}]}}),
            Some((
                "spec.dataFrom[0].find.name.regexp",
                "... (4097 bytes) is longer than 4096 bytes",
            )),
        ),
        (
            "find regexp nested too deep",
            json!({"spec": {"dataFrom": [{"find": {"name": {"regexp": "(".repeat(300) + &")".repeat(300)}}}]}}),
            Some(("spec.dataFrom[0].find.name.regexp", "nested")),
        ),
        (
            "templates longer than 1 MiB together",
            json!({"spec": {"target": {"template": {"data": {
                "a": "{{ .a }}".repeat(70_000), "b": "{{ .b }}".repeat(70_000)}}}}}),
            Some(("spec", "are 1120000 bytes long together; at most 1048576")),
        ),
        (
            "templates with more than 10000 actions together",
            json!({"spec": {"target": {"template": {"data": {"a": "{{ .a }}".repeat(6000)}}},
                "dataFrom": [{"extract": {"key": "a"},
                    "rewrite": [{"transform": {"template": "{{ .value }}".repeat(4001)}}]}]}}),
            Some(("spec", "have 10001 actions together; at most 10000")),
        ),
        (
            "template labels and annotations that a Secret can carry",
            json!({"spec": {"target": {"template": {
                "data": {"config.yaml": "x", "a_b-c": "{{ .a }}"},
                "metadata": {
                    "labels": {"app.kubernetes.io/name": "{{ .a | lower }} x", "team": "a.b-c_d", "empty": ""},
                    "annotations": {"example.com/note": "any\nthing\u{0}", "n": "x".repeat(1000)}}}}}}),
            None,
        ),
        (
            "template data key that is not a Secret key",
            json!({"spec": {"target": {"template": {"data": {"a/b": "x"}}}}}),
            Some((
                "spec.target.template.data",
                "key \"a/b\" is not a valid Secret key",
            )),
        ),
        (
            "template label key with a space",
            json!({"spec": {"target": {"template": {"metadata": {"labels": {"a b": "x"}}}}}}),
            Some((
                "spec.target.template.metadata.labels",
                "key \"a b\" is not a valid label key",
            )),
        ),
        (
            "template finalizers, as ESO's e2e case writes them",
            json!({"spec": {"target": {"template": {"metadata": {"finalizers": ["example.com/keep"]}}}}}),
            None,
        ),
        (
            "template finalizer that is not a qualified name",
            json!({"spec": {"target": {"template": {"metadata": {"finalizers": ["keep me"]}}}}}),
            Some((
                "spec.target.template.metadata.finalizers",
                "\"keep me\" is not a valid finalizer name",
            )),
        ),
        (
            "template label key with an upper-case prefix",
            json!({"spec": {"target": {"template": {"metadata": {"labels": {"Example.com/a": "x"}}}}}}),
            Some((
                "spec.target.template.metadata.labels",
                "not a valid label key",
            )),
        ),
        (
            "template label value too long",
            json!({"spec": {"target": {"template": {"metadata": {"labels": {"a": "v".repeat(64)}}}}}}),
            Some((
                "spec.target.template.metadata.labels",
                "the value of \"a\" is not a valid label value",
            )),
        ),
        (
            "template label value with a NUL",
            json!({"spec": {"target": {"template": {"metadata": {"labels": {"a": "x\u{0}"}}}}}}),
            Some(("spec.target.template.metadata.labels", "\"x\\0\"")),
        ),
        (
            "template annotation key of 100k characters",
            json!({"spec": {"target": {"template": {"metadata": {"annotations": {"k".repeat(100_000): "x"}}}}}}),
            Some((
                "spec.target.template.metadata.annotations",
                "(100000 bytes) is not a valid annotation key",
            )),
        ),
        (
            "remote key longer than 4096 bytes",
            json!({"spec": {"data": [{"secretKey": "a", "remoteRef": {"key": "k".repeat(5000)}}]}}),
            Some((
                "spec.data[0].remoteRef.key",
                "... (5000 bytes) is longer than 4096 bytes",
            )),
        ),
        (
            "rewrite regexp does not compile",
            json!({"spec": {"dataFrom": [{"extract": {"key": "a"},
                "rewrite": [{"regexp": {"source": "[", "target": "x"}}]}]}}),
            Some((
                "spec.dataFrom[0].rewrite[0].regexp.source",
                "\"[\" does not compile",
            )),
        ),
        (
            "rewrite transform",
            json!({"spec": {"dataFrom": [{"extract": {"key": "a"},
                "rewrite": [{"transform": {"template": "{{ .value | upper }}"}}]}]}}),
            None,
        ),
        (
            "rewrite transform with an unknown function",
            json!({"spec": {"dataFrom": [{"extract": {"key": "a"},
                "rewrite": [{"transform": {"template": "{{ .value | nope }}"}}]}]}}),
            Some((
                "spec.dataFrom[0].rewrite[0].transform.template",
                "template: transform:1:13: function \"nope\" not defined",
            )),
        ),
        (
            "rewrite merge",
            json!({"spec": {"dataFrom": [{"extract": {"key": "a"},
                "rewrite": [{"merge": {"into": "x"}}]}]}}),
            None,
        ),
        (
            "rewrite merge with strategy JSON and no into",
            json!({"spec": {"dataFrom": [{"extract": {"key": "a"},
                "rewrite": [{"merge": {"strategy": "JSON"}}]}]}}),
            Some((
                "spec.dataFrom[0].rewrite[0].merge.into",
                "strategy JSON needs the key to merge into",
            )),
        ),
        (
            "empty rewrite",
            json!({"spec": {"dataFrom": [{"extract": {"key": "a"}, "rewrite": [{}]}]}}),
            Some((
                "spec.dataFrom[0].rewrite[0]",
                "one of regexp, transform or merge",
            )),
        ),
        (
            "data storeRef",
            json!({"spec": {"data": [{"secretKey": "a", "remoteRef": {"key": "x"},
                "sourceRef": {"storeRef": {"name": "other"}}}]}}),
            None,
        ),
        (
            "dataFrom storeRef of a ClusterSecretStore",
            json!({"spec": {"dataFrom": [{"extract": {"key": "x"},
                "sourceRef": {"storeRef": {"name": "shared", "kind": "ClusterSecretStore"}}}]}}),
            None,
        ),
        (
            "storeRef without a name",
            json!({"spec": {"dataFrom": [{"extract": {"key": "x"},
                "sourceRef": {"storeRef": {"kind": "ClusterSecretStore"}}}]}}),
            Some((
                "spec.dataFrom[0].sourceRef.storeRef.name",
                "a store name is required",
            )),
        ),
        (
            "storeRef beside generatorRef",
            json!({"spec": {"dataFrom": [{"sourceRef": {
                "generatorRef": {"kind": "Password", "name": "pw"},
                "storeRef": {"name": "other"}}}]}}),
            Some((
                "spec.dataFrom[0].sourceRef",
                "set one of generatorRef and storeRef, not both",
            )),
        ),
        (
            "entries on their own stores beside one on the default still need it",
            json!({"spec": {"secretStoreRef": null, "data": [
                {"secretKey": "a", "remoteRef": {"key": "x"}, "sourceRef": {"storeRef": {"name": "other"}}},
                {"secretKey": "b", "remoteRef": {"key": "y"}}]}}),
            Some(("spec.secretStoreRef.name", "a store name is required")),
        ),
        (
            "generator kind not served",
            json!({"spec": {"dataFrom": [{"sourceRef": {"generatorRef": {"kind": "Fake", "name": "f"}}}]}}),
            Some((
                "spec.dataFrom[0].sourceRef.generatorRef.kind",
                "not supported by vaultgate (generator kind Fake",
            )),
        ),
        (
            "generatorRef of another apiVersion",
            json!({"spec": {"dataFrom": [{"sourceRef": {"generatorRef": {
                "apiVersion": "generators.external-secrets.io/v1", "kind": "UUID", "name": "u"}}}]}}),
            Some((
                "spec.dataFrom[0].sourceRef.generatorRef.apiVersion",
                "is not served",
            )),
        ),
        (
            "generatorRef beside extract",
            json!({"spec": {"dataFrom": [{"extract": {"key": "a"},
                "sourceRef": {"generatorRef": {"kind": "Password", "name": "pw"}}}]}}),
            Some(("spec.dataFrom[0]", "sets neither extract nor find")),
        ),
        (
            "generatorRef in data",
            json!({"spec": {"data": [{"secretKey": "a", "remoteRef": {"key": "x"},
                "sourceRef": {"generatorRef": {"kind": "Password", "name": "pw"}}}]}}),
            Some((
                "spec.data[0].sourceRef.generatorRef",
                "through spec.dataFrom[].sourceRef.generatorRef",
            )),
        ),
        (
            "generators beside a store read still need the store",
            json!({"spec": {"secretStoreRef": null, "dataFrom": [{"extract": {"key": "a"}},
                {"sourceRef": {"generatorRef": {"kind": "Password", "name": "pw"}}}]}}),
            Some(("spec.secretStoreRef.name", "a store name is required")),
        ),
        (
            "manifest target",
            json!({"spec": {"target": {"manifest": {"apiVersion": "v1", "kind": "ConfigMap"}}}}),
            Some((
                "spec.target.manifest",
                "not supported by vaultgate (kind \"ConfigMap\")",
            )),
        ),
        (
            "sync windows",
            json!({"spec": {"syncWindows": {"kind": "allow", "windows": [{"duration": "1h", "schedule": "@daily"}]}}}),
            None,
        ),
        (
            "syncWindows schedule that is not cron",
            json!({"spec": {"syncWindows": {"kind": "deny", "windows": [
                {"duration": "1h", "schedule": "0 22 * * 1-5"},
                {"duration": "1h", "schedule": "0 61 * * *"}]}}}),
            Some((
                "spec.syncWindows.windows[1].schedule",
                "not a 5-field cron expression",
            )),
        ),
        (
            "syncWindows duration that is not a duration",
            json!({"spec": {"syncWindows": {"kind": "deny", "windows": [{"duration": "soon", "schedule": "@daily"}]}}}),
            Some(("spec.syncWindows.windows[0].duration", "")),
        ),
        (
            "no store name",
            json!({"spec": {"secretStoreRef": {"name": null}}}),
            Some(("spec.secretStoreRef.name", "a store name is required")),
        ),
        (
            "unreadable spec",
            json!({"spec": {"data": "not a list"}}),
            Some(("spec", "invalid type")),
        ),
    ];
    for v in VERSIONS {
        let base = es_base(v);
        for (name, patch, want) in &cases {
            assert_case(&base, &format!("{v} {name}"), patch, *want);
        }
    }
}

#[test]
fn generator_entries_need_no_store() {
    let only_generators = json!({"spec": {"secretStoreRef": null, "data": null, "dataFrom": [
        {"sourceRef": {"generatorRef": {"kind": "Password", "name": "pw"}},
         "rewrite": [{"regexp": {"source": "password", "target": "db-password"}}]},
        {"sourceRef": {"generatorRef": {"apiVersion": "generators.external-secrets.io/v1alpha1",
            "kind": "ClusterGenerator", "name": "shared"}}}
    ]}});
    for v in VERSIONS {
        assert_eq!(
            problems(&es_base(v), &only_generators),
            Vec::<String>::new()
        );
    }
}

#[test]
fn entries_on_their_own_stores_need_no_default_store() {
    let own = json!({"spec": {"secretStoreRef": null, "data": [
        {"secretKey": "a", "remoteRef": {"key": "x"}, "sourceRef": {"storeRef": {"name": "one"}}}],
        "dataFrom": [
        {"extract": {"key": "y"}, "sourceRef": {"storeRef": {"name": "two", "kind": "ClusterSecretStore"}}},
        {"sourceRef": {"generatorRef": {"kind": "UUID", "name": "u"}}}
    ]}});
    for v in VERSIONS {
        assert_eq!(problems(&es_base(v), &own), Vec::<String>::new());
    }
}

#[test]
fn refusals_never_carry_more_than_names() {
    // A property is a key name and may appear; nothing from a Secret's data can, because
    // the rules never read any: a spot check that messages quote the field values given.
    let got = problems(
        &es_base("v1"),
        &json!({"spec": {"data": [{"secretKey": "bad key!", "remoteRef": {"key": "x"}}]}}),
    );
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].contains("\"bad key!\""), "{got:?}");
}

#[test]
fn regex_compiling_is_bounded_per_object() {
    // Small patterns fit by the hundred; one large pattern (~11 MiB tried) fits too, and
    // then nothing more does, whether the patterns were seen before or not.
    for _ in 0..2 {
        let mut b = super::RegexBudget::default();
        for i in 0..50 {
            assert!(b.check(&format!("^team-{i}$")).is_ok());
        }
        assert!(b.check(r"\p{L}{100}").is_ok());
        for re in [r"\p{L}{101}", "^team-0$"] {
            let e = b.check(re).unwrap_err();
            assert!(e.starts_with("was not checked"), "{e}");
        }
    }
    // Hundreds of large patterns in one manifest are answered quickly.
    let many: Vec<_> = (0..300)
        .map(|i| json!({"find": {"name": {"regexp": format!(r"\p{{L}}{{1000}}{i}")}}}))
        .collect();
    let start = std::time::Instant::now();
    let got = problems(&es_base("v1"), &json!({"spec": {"dataFrom": many}}));
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(got.len(), 300);
    assert!(
        got[0].contains("compiles to more than 10 MiB"),
        "{}",
        got[0]
    );
    assert!(got[1].contains("was not checked"), "{}", got[1]);
}

#[test]
fn messages_stay_readable() {
    let problems: Vec<_> = (0..30)
        .map(|i| super::Problem::new(format!("spec.data[{i}]"), "x".repeat(100 * i)))
        .collect();
    let msg = super::join(&problems);
    assert!(msg.ends_with("; and 10 more problems"), "{msg}");
    assert!(msg.contains(&format!("spec.data[19]: {}...", "x".repeat(1024 - 15))));
    assert!(!msg.contains("spec.data[20]"));
    assert!(msg.len() < 20 * 1100, "{}", msg.len());
    assert_eq!(
        super::join(&problems[..2]),
        "spec.data[0]: ; spec.data[1]: ".to_string() + &"x".repeat(100)
    );
}

#[test]
fn regex_results_are_remembered_consistently() {
    assert!(super::regex_compiles("^a+$").is_ok());
    assert!(super::regex_compiles("^a+$").is_ok());
    let e1 = super::regex_compiles("(").unwrap_err();
    let e2 = super::regex_compiles("(").unwrap_err();
    assert_eq!(e1, e2);
    assert!(!e1.is_empty());
}
