use super::*;
use serde_json::json;

fn ces(spec: serde_json::Value) -> ClusterExternalSecret {
    let mut v = json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ClusterExternalSecret",
        "metadata": {"name": "pull", "uid": "u-ces"},
        "spec": {"externalSecretSpec": {"secretStoreRef": {"name": "vault", "kind": "ClusterSecretStore"}}}
    });
    for (k, val) in spec.as_object().unwrap() {
        v["spec"][k] = val.clone();
    }
    serde_json::from_value(v).unwrap()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn selection_by_selectors_deprecated_selector_and_names() {
    let team = labels(&[("team", "a")]);
    let other = labels(&[("team", "b")]);
    let cases = [
        // (spec, namespace, labels, selected)
        (json!({}), "x", &team, false),
        (json!({"namespaceSelectors": [{}]}), "x", &other, true),
        (
            json!({"namespaceSelectors": [{"matchLabels": {"team": "a"}}]}),
            "x",
            &team,
            true,
        ),
        (
            json!({"namespaceSelectors": [{"matchLabels": {"team": "a"}}]}),
            "x",
            &other,
            false,
        ),
        (
            json!({"namespaceSelectors": [{"matchLabels": {"team": "z"}}, {"matchExpressions": [{"key": "team", "operator": "In", "values": ["b"]}]}]}),
            "x",
            &other,
            true,
        ),
        (
            json!({"namespaceSelector": {"matchLabels": {"team": "a"}}}),
            "x",
            &team,
            true,
        ),
        (json!({"namespaces": ["x", "y"]}), "y", &other, true),
        (json!({"namespaces": ["x"]}), "y", &other, false),
        (
            json!({"namespaceSelectors": [{"matchLabels": {"team": "z"}}], "namespaces": ["y"]}),
            "y",
            &other,
            true,
        ),
    ];
    for (spec, name, l, want) in cases {
        let c = ces(spec.clone());
        let ns = Ns {
            name,
            labels: Some(l),
            terminating: false,
        };
        assert_eq!(selects(&c, &ns), Ok(want), "{spec} {name} {l:?}");
    }
}

#[test]
fn an_invalid_selector_is_an_error_and_plans_nothing() {
    let c = ces(
        json!({"namespaceSelectors": [{"matchExpressions": [{"key": "k", "operator": "Near"}]}]}),
    );
    let ns = [Ns {
        name: "a",
        labels: None,
        terminating: false,
    }];
    let ours = vec![("a".to_string(), "pull".to_string())];
    let err = plan(&c, ns, |_| Existing::Absent, &ours).unwrap_err();
    assert!(
        err.contains("namespace selector 0") && err.contains("Near"),
        "{err}"
    );
    let st = status_unselectable(&c, &err, Timestamp::UNIX_EPOCH);
    assert_eq!(st.failed_namespaces[0].namespace, "unknown");
    assert_eq!(st.conditions[0].status, "False");
}

#[test]
fn plans_create_update_keep_refuse_and_remove() {
    let c = ces(json!({"namespaceSelectors": [{"matchLabels": {"pull": "yes"}}]}));
    let yes = labels(&[("pull", "yes")]);
    let no = labels(&[("pull", "no")]);
    let nss = [
        ("new", &yes, false),
        ("stale", &yes, false),
        ("fine", &yes, false),
        ("taken", &yes, false),
        ("gone", &no, false),
        ("dying", &yes, true),
    ];
    let existing = |ns: &str| match ns {
        "stale" => Existing::OursStale,
        "fine" => Existing::OursUpToDate,
        "taken" => Existing::NotOurs,
        _ => Existing::Absent,
    };
    let ours: Vec<(String, String)> = [
        ("stale", "pull"),
        ("fine", "pull"),
        ("gone", "pull"),
        ("dying", "pull"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    let p = plan(
        &c,
        nss.iter().map(|(n, l, t)| Ns {
            name: n,
            labels: Some(l),
            terminating: *t,
        }),
        existing,
        &ours,
    )
    .unwrap();
    assert_eq!(p.selected, s(&["fine", "new", "stale", "taken"]));
    assert_eq!(p.create, s(&["new"]));
    assert_eq!(p.update, s(&["stale"]));
    assert_eq!(
        p.refused,
        BTreeMap::from([("taken".to_string(), NOT_OURS.to_string())])
    );
    // A namespace that stops matching loses ours; a terminating one is left to its deletion.
    assert_eq!(p.remove, vec![("gone".to_string(), "pull".to_string())]);
}

#[test]
fn a_renamed_external_secret_removes_the_old_ones() {
    let c = ces(json!({"namespaces": ["a"], "externalSecretName": "new-name"}));
    let ours = vec![
        ("a".to_string(), "pull".to_string()),
        ("a".to_string(), "new-name".to_string()),
    ];
    let ns = [Ns {
        name: "a",
        labels: None,
        terminating: false,
    }];
    let p = plan(&c, ns, |_| Existing::OursUpToDate, &ours).unwrap();
    assert_eq!(p.remove, vec![("a".to_string(), "pull".to_string())]);
    assert!(p.create.is_empty() && p.update.is_empty());
    assert_eq!(c.external_secret_name(), "new-name");
    assert_eq!(ces(json!({})).external_secret_name(), "pull");
}

#[test]
fn status_ready_only_when_every_selected_namespace_is_provisioned() {
    let c = ces(json!({}));
    let selected = s(&["a", "b", "c"]);
    let st = status(&c, &selected, &BTreeMap::new(), Timestamp::UNIX_EPOCH);
    assert_eq!(st.provisioned_namespaces, selected);
    assert!(st.failed_namespaces.is_empty());
    assert_eq!(st.external_secret_name.as_deref(), Some("pull"));
    assert_eq!(st.conditions[0].status, "True");

    let failures = BTreeMap::from([("b".to_string(), NOT_OURS.to_string())]);
    let st = status(&c, &selected, &failures, Timestamp::UNIX_EPOCH);
    assert_eq!(st.provisioned_namespaces, s(&["a", "c"]));
    assert_eq!(st.failed_namespaces.len(), 1);
    assert_eq!(st.failed_namespaces[0].reason.as_deref(), Some(NOT_OURS));
    let cond = &st.conditions[0];
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_deref()),
        ("False", Some("NamespacesFailed"))
    );
    assert_eq!(
        cond.message.as_deref(),
        Some("one or more namespaces failed: b: external secret already exists in namespace")
    );
}

#[test]
fn a_long_failure_list_is_cut_in_the_message_not_in_the_status() {
    let c = ces(json!({}));
    let failures: BTreeMap<String, String> = (0..25)
        .map(|i| (format!("ns-{i:02}"), "boom".to_string()))
        .collect();
    let selected: Vec<String> = failures.keys().cloned().collect();
    let st = status(&c, &selected, &failures, Timestamp::UNIX_EPOCH);
    assert_eq!(st.failed_namespaces.len(), 25);
    assert!(st.provisioned_namespaces.is_empty());
    let msg = st.conditions[0].message.clone().unwrap();
    assert!(msg.ends_with("and 15 more"), "{msg}");
    assert!(
        msg.contains("ns-09: boom") && !msg.contains("ns-10"),
        "{msg}"
    );
}

#[test]
fn status_differs_ignores_transition_times() {
    let c = ces(json!({}));
    let a = status(&c, &s(&["a"]), &BTreeMap::new(), Timestamp::UNIX_EPOCH);
    let mut later = a.clone();
    later.conditions[0].last_transition_time = Some(Time(Timestamp::from_second(99).unwrap()));
    assert!(!differs(Some(&a), &later));
    assert!(differs(None, &a));
    let b = status(&c, &s(&["a", "b"]), &BTreeMap::new(), Timestamp::UNIX_EPOCH);
    assert!(differs(Some(&a), &b));
}

#[test]
fn desired_metadata_and_what_counts_as_up_to_date() {
    let mut c = ces(
        json!({"externalSecretMetadata": {"labels": {"app": "x"}, "annotations": {"note": "n"}}}),
    );
    c.metadata.annotations = Some(labels(&[("force-sync", "7"), ("other", "o")]));
    let d = Desired::of(&c);
    assert_eq!(d.labels, labels(&[("app", "x")]));
    assert_eq!(d.annotations, labels(&[("force-sync", "7"), ("note", "n")]));
    let mut es = ExternalSecret {
        spec: c.spec.external_secret_spec.clone(),
        ..Default::default()
    };
    es.metadata.labels = Some(labels(&[("app", "x"), ("extra", "kept")]));
    es.metadata.annotations = Some(labels(&[("force-sync", "7"), ("note", "n")]));
    assert!(d.is_met_by(&es));
    es.metadata.annotations = Some(labels(&[("force-sync", "6"), ("note", "n")]));
    assert!(!d.is_met_by(&es));
    es.metadata.annotations = Some(labels(&[("force-sync", "7"), ("note", "n")]));
    es.spec.refresh_interval = Some("5m".into());
    assert!(!d.is_met_by(&es));
}

#[test]
fn ownership_is_a_controller_reference_to_a_cluster_external_secret_of_that_name() {
    let owner = |api: &str, kind: &str, name: &str, controller: Option<bool>| OwnerReference {
        api_version: api.into(),
        kind: kind.into(),
        name: name.into(),
        uid: "u".into(),
        controller,
        ..Default::default()
    };
    let cases = [
        (
            owner(
                "external-secrets.io/v1",
                "ClusterExternalSecret",
                "pull",
                Some(true),
            ),
            true,
        ),
        (
            owner(
                "external-secrets.io/v1beta1",
                "ClusterExternalSecret",
                "pull",
                Some(true),
            ),
            true,
        ),
        (
            owner(
                "external-secrets.io/v1",
                "ClusterExternalSecret",
                "other",
                Some(true),
            ),
            false,
        ),
        (
            owner(
                "external-secrets.io/v1",
                "ClusterExternalSecret",
                "pull",
                None,
            ),
            false,
        ),
        (
            owner(
                "example.com/v1",
                "ClusterExternalSecret",
                "pull",
                Some(true),
            ),
            false,
        ),
        (
            owner(
                "external-secrets.io/v1",
                "ExternalSecret",
                "pull",
                Some(true),
            ),
            false,
        ),
    ];
    for (o, want) in cases {
        let mut es = ExternalSecret::default();
        es.metadata.owner_references = Some(vec![o.clone()]);
        assert_eq!(owned_by(&es, "pull"), want, "{o:?}");
    }
    assert!(!owned_by(&ExternalSecret::default(), "pull"));
}
