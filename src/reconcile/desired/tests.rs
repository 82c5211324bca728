//! The pure plan, case by case.

use super::*;
use crate::api::{
    ExternalSecretSpec, ExternalSecretTarget, ExternalSecretTemplate,
    ExternalSecretTemplateMetadata,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};

const UID: &str = "es-uid-1";

fn es(creation: CreationPolicy, deletion: DeletionPolicy) -> ExternalSecret {
    let mut es = ExternalSecret::new(
        "app",
        ExternalSecretSpec {
            target: Some(ExternalSecretTarget {
                name: Some("app-secret".into()),
                creation_policy: Some(creation),
                deletion_policy: Some(deletion),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    es.metadata.namespace = Some("team".into());
    es.metadata.uid = Some(UID.into());
    es.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
    es.metadata.annotations = Some(
        [
            ("note".to_string(), "hi".to_string()),
            (LAST_APPLIED.to_string(), "{...}".to_string()),
        ]
        .into(),
    );
    es
}

fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

fn secret(pairs: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some("app-secret".into()),
            namespace: Some("team".into()),
            ..Default::default()
        },
        data: Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

/// A Secret as a previous apply of `es` left it (with managedFields for its manager).
fn written_by(es: &ExternalSecret, pairs: &[(&str, &str)]) -> Secret {
    let d = data(pairs);
    // A merge needs a Secret to merge into.
    let empty = secret(&[]);
    let existing = (creation_policy(es) == CreationPolicy::Merge).then_some(&empty);
    let plan = desired(&Inputs {
        es,
        data: &d,
        existing,
        rendered: None,
    })
    .unwrap();
    let Plan::Apply(w) = plan else {
        panic!("expected a write, got {plan:?}")
    };
    let mut s = w.secret.clone();
    let mut fields =
        serde_json::json!({"f:data": {}, "f:metadata": {"f:labels": {}, "f:annotations": {}}});
    for k in d.keys() {
        fields["f:data"][format!("f:{k}")] = serde_json::json!({});
    }
    for k in s.metadata.labels.iter().flatten().map(|(k, _)| k) {
        fields["f:metadata"]["f:labels"][format!("f:{k}")] = serde_json::json!({});
    }
    for k in s.metadata.annotations.iter().flatten().map(|(k, _)| k) {
        fields["f:metadata"]["f:annotations"][format!("f:{k}")] = serde_json::json!({});
    }
    for f in s.metadata.finalizers.iter().flatten() {
        fields["f:metadata"]["f:finalizers"][format!("v:{}", serde_json::json!(f))] =
            serde_json::json!({});
    }
    if let Some(o) = s.metadata.owner_references.as_ref() {
        fields["f:metadata"]["f:ownerReferences"] =
            serde_json::json!({ format!("k:{{\"uid\":\"{}\"}}", o[0].uid): {} });
    }
    s.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
        manager: Some(field_manager("team", "app")),
        operation: Some("Apply".into()),
        fields_type: Some("FieldsV1".into()),
        fields_v1: Some(FieldsV1(fields)),
        ..Default::default()
    }]);
    s
}

fn plan(
    es: &ExternalSecret,
    d: &[(&str, &str)],
    existing: Option<&Secret>,
) -> Result<Plan, DesiredError> {
    desired(&Inputs {
        es,
        data: &data(d),
        existing,
        rendered: None,
    })
}

fn write(p: Result<Plan, DesiredError>) -> Write {
    match p {
        Ok(Plan::Apply(w)) => *w,
        other => panic!("expected a write, got {other:?}"),
    }
}

fn keys(s: &Secret) -> Vec<String> {
    s.data.iter().flatten().map(|(k, _)| k.clone()).collect()
}

#[test]
fn owner_creates_full_secret() {
    let es = es(CreationPolicy::Owner, DeletionPolicy::Retain);
    let w = write(plan(&es, &[("api-key", "s3cr3t")], None));
    assert!(w.creates);
    let s = &w.secret;
    assert_eq!(s.metadata.name.as_deref(), Some("app-secret"));
    assert_eq!(s.metadata.namespace.as_deref(), Some("team"));
    assert_eq!(s.type_.as_deref(), Some("Opaque"));
    assert_eq!(keys(s), ["api-key"]);
    let labels = s.metadata.labels.as_ref().unwrap();
    assert_eq!(labels.get(LABEL_MANAGED).map(String::as_str), Some("true"));
    assert_eq!(labels.get("app").map(String::as_str), Some("web"));
    let ann = s.metadata.annotations.as_ref().unwrap();
    assert_eq!(ann.get("note").map(String::as_str), Some("hi"));
    assert!(!ann.contains_key(LAST_APPLIED));
    assert_eq!(ann.get(ANNOTATION_DATA_HASH), Some(&w.hash));
    assert_eq!(w.hash, data_hash(&data(&[("api-key", "s3cr3t")])));
    let owners = s.metadata.owner_references.as_ref().unwrap();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].uid, UID);
    assert_eq!(owners[0].kind, "ExternalSecret");
    assert_eq!(owners[0].api_version, "external-secrets.io/v1");
    assert_eq!(owners[0].controller, Some(true));
    assert_eq!(s.immutable, None);
}

#[test]
fn policies_table() {
    use CreationPolicy as C;
    use DeletionPolicy as D;
    let other = secret(&[("other", "x")]);
    // (creation, deletion, provider data, existing, expected outcome)
    #[derive(Debug, PartialEq)]
    enum Want {
        Create {
            owned: bool,
            keys: &'static [&'static str],
        },
        Update {
            keys: &'static [&'static str],
            type_set: bool,
        },
        Skip(Skip),
        Delete,
        Refused,
    }
    type Case<'a> = (C, D, &'a [(&'a str, &'a str)], Option<&'a Secret>, Want);
    let cases: Vec<Case> = vec![
        (
            C::Owner,
            D::Retain,
            &[("k", "v")],
            None,
            Want::Create {
                owned: true,
                keys: &["k"],
            },
        ),
        (
            C::Orphan,
            D::Retain,
            &[("k", "v")],
            None,
            Want::Create {
                owned: false,
                keys: &["k"],
            },
        ),
        (
            C::Merge,
            D::Retain,
            &[("k", "v")],
            None,
            Want::Skip(Skip::MergeTargetMissing),
        ),
        (
            C::Merge,
            D::Retain,
            &[("k", "v")],
            Some(&other),
            Want::Update {
                keys: &["k"],
                type_set: false,
            },
        ),
        (
            C::CreateOrMerge,
            D::Retain,
            &[("k", "v")],
            None,
            Want::Create {
                owned: false,
                keys: &["k"],
            },
        ),
        (
            C::CreateOrMerge,
            D::Retain,
            &[("k", "v")],
            Some(&other),
            Want::Update {
                keys: &["k"],
                type_set: false,
            },
        ),
        (
            C::None,
            D::Retain,
            &[("k", "v")],
            None,
            Want::Skip(Skip::CreationPolicyNone),
        ),
        (
            C::None,
            D::Retain,
            &[("k", "v")],
            Some(&other),
            Want::Skip(Skip::CreationPolicyNone),
        ),
        // A Secret nobody controls, holding data this ExternalSecret did not write: Owner
        // does not take it over (see `adoption`).
        (
            C::Owner,
            D::Retain,
            &[("k", "v")],
            Some(&other),
            Want::Refused,
        ),
        // Provider empty with deletionPolicy Delete: the Secret goes, if this ExternalSecret
        // controls it (below); someone else's is refused, as is any creationPolicy but Owner.
        (
            C::Owner,
            D::Delete,
            &[],
            None,
            Want::Skip(Skip::NothingToDelete),
        ),
        (C::Owner, D::Delete, &[], Some(&other), Want::Refused),
        (C::Orphan, D::Delete, &[], None, Want::Refused),
        (C::Orphan, D::Delete, &[], Some(&other), Want::Refused),
        // Empty data with Retain leaves everything as it is (ESO returns early).
        (
            C::Owner,
            D::Retain,
            &[],
            None,
            Want::Skip(Skip::RetainedEmpty),
        ),
        (C::Owner, D::Retain, &[], Some(&other), Want::Refused),
        (
            C::Orphan,
            D::Retain,
            &[],
            Some(&other),
            Want::Skip(Skip::RetainedEmpty),
        ),
        (
            C::Merge,
            D::Retain,
            &[],
            Some(&other),
            Want::Skip(Skip::RetainedEmpty),
        ),
    ];
    for (i, (c, d, vals, existing, want)) in cases.into_iter().enumerate() {
        let es = es(c, d);
        let got = match plan(&es, vals, existing) {
            Err(_) => Want::Refused,
            Ok(Plan::Apply(w)) if w.creates => Want::Create {
                owned: w.secret.metadata.owner_references.is_some(),
                keys: if keys(&w.secret).is_empty() {
                    &[]
                } else {
                    &["k"]
                },
            },
            Ok(Plan::Apply(w)) => Want::Update {
                keys: if keys(&w.secret) == ["k"] {
                    &["k"]
                } else {
                    &[]
                },
                type_set: w.secret.type_.is_some(),
            },
            Ok(Plan::Skip(s)) => Want::Skip(s),
            Ok(Plan::Delete) => Want::Delete,
        };
        assert_eq!(got, want, "case {i}: {c:?}/{d:?}");
    }
    let mine = written_by(&es(C::Owner, D::Delete), &[("k", "v")]);
    assert_eq!(
        plan(&es(C::Owner, D::Delete), &[], Some(&mine)).unwrap(),
        Plan::Delete
    );
    // Labelled as managed but controlled by nobody: not this ExternalSecret's to delete.
    let orphaned = written_by(&es(C::Orphan, D::Retain), &[("k", "v")]);
    assert!(matches!(
        plan(&es(C::Owner, D::Delete), &[], Some(&orphaned)),
        Err(DesiredError::DeleteNotControlled { .. })
    ));
    let err = plan(&es(C::Orphan, D::Delete), &[], Some(&orphaned)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "could not delete secret: unable to delete secret \"app-secret\": creationPolicy=Orphan is not Owner"
    );
    // deletionPolicy Merge: the keys this ExternalSecret wrote go, the Secret stays.
    let merged = written_by(&es(C::Owner, D::Merge), &[("k", "v")]);
    let w = write(plan(&es(C::Owner, D::Merge), &[], Some(&merged)));
    assert!(keys(&w.secret).is_empty());
    assert_eq!(w.hash, data_hash(&data(&[])));
}

#[test]
fn adoption() {
    let owner = es(CreationPolicy::Owner, DeletionPolicy::Retain);
    let with_manager = |m: &str| {
        let mut s = secret(&[("k", "v")]);
        s.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
            manager: Some(m.into()),
            operation: Some("Update".into()),
            ..Default::default()
        }]);
        s
    };
    let mut referenced = secret(&[("k", "v")]);
    referenced.metadata.owner_references = Some(vec![OwnerReference {
        controller: None,
        ..owner_ref(&owner)
    }]);
    // (what the Secret is, whether Owner takes it over)
    let cases = [
        ("empty", secret(&[]), true),
        (
            "no data at all",
            Secret {
                data: None,
                ..secret(&[])
            },
            true,
        ),
        ("someone's data", secret(&[("k", "v")]), false),
        (
            "written by this ExternalSecret as Orphan",
            written_by(
                &es(CreationPolicy::Orphan, DeletionPolicy::Retain),
                &[("k", "v")],
            ),
            true,
        ),
        (
            "written by ESO for this ExternalSecret",
            with_manager("externalsecrets.external-secrets.io/app"),
            true,
        ),
        (
            "written by ESO for another",
            with_manager("externalsecrets.external-secrets.io/other"),
            false,
        ),
        ("written by kubectl", with_manager("kubectl-create"), false),
        ("referencing this ExternalSecret", referenced, true),
    ];
    for (what, s, want) in cases {
        assert_eq!(adoptable(&owner, &s), want, "{what}");
        let r = check_controller(&owner, &s, CreationPolicy::Owner);
        assert_eq!(r.is_ok(), want, "{what}: {r:?}");
        // Only Owner makes the ExternalSecret the Secret's controller.
        for c in [
            CreationPolicy::Orphan,
            CreationPolicy::Merge,
            CreationPolicy::CreateOrMerge,
        ] {
            assert!(check_controller(&owner, &s, c).is_ok(), "{what} {c:?}");
        }
    }
    let err = plan(&owner, &[("k", "v")], Some(&secret(&[("k", "v")]))).unwrap_err();
    assert!(
        err.to_string()
            .contains("it would be deleted together with the ExternalSecret"),
        "{err}"
    );
}

#[test]
fn merge_keeps_foreign_keys_and_hashes_the_result() {
    let es = es(CreationPolicy::Merge, DeletionPolicy::Retain);
    let existing = secret(&[("theirs", "1"), ("k", "old")]);
    let w = write(plan(&es, &[("k", "new")], Some(&existing)));
    assert!(!w.creates);
    assert!(w.remove_foreign_keys.is_empty());
    assert_eq!(keys(&w.secret), ["k"]);
    assert!(w.secret.metadata.owner_references.is_none());
    assert_eq!(w.hash, data_hash(&data(&[("theirs", "1"), ("k", "new")])));
}

#[test]
fn merge_drops_keys_it_no_longer_produces_from_the_hash() {
    let es = es(CreationPolicy::Merge, DeletionPolicy::Retain);
    let mut existing = written_by(&es, &[("a", "1"), ("b", "2")]);
    existing
        .data
        .as_mut()
        .unwrap()
        .insert("theirs".into(), ByteString(b"x".to_vec()));
    let w = write(plan(&es, &[("a", "1")], Some(&existing)));
    assert_eq!(w.hash, data_hash(&data(&[("a", "1"), ("theirs", "x")])));
}

#[test]
fn owner_removes_foreign_keys() {
    let es = es(CreationPolicy::Owner, DeletionPolicy::Retain);
    let mut existing = written_by(&es, &[("k", "v")]);
    existing
        .data
        .as_mut()
        .unwrap()
        .insert("added-by-hand".into(), ByteString(b"x".to_vec()));
    let w = write(plan(&es, &[("k", "v")], Some(&existing)));
    assert_eq!(w.remove_foreign_keys, ["added-by-hand"]);
    assert_eq!(w.hash, data_hash(&data(&[("k", "v")])));
}

#[test]
fn unchanged_secret_is_not_written_again() {
    for c in [CreationPolicy::Owner, CreationPolicy::Orphan] {
        let es = es(c, DeletionPolicy::Retain);
        let existing = written_by(&es, &[("k", "v")]);
        assert_eq!(
            plan(&es, &[("k", "v")], Some(&existing)).unwrap(),
            Plan::Skip(Skip::UpToDate),
            "{c:?}"
        );
        // A changed value, a new label, a dropped label: all need a write.
        assert!(matches!(
            plan(&es, &[("k", "w")], Some(&existing)),
            Ok(Plan::Apply(_))
        ));
        let mut relabelled = es.clone();
        relabelled.metadata.labels = Some([("app".to_string(), "api".to_string())].into());
        assert!(matches!(
            plan(&relabelled, &[("k", "v")], Some(&existing)),
            Ok(Plan::Apply(_))
        ));
        let mut unlabelled = es.clone();
        unlabelled.metadata.labels = None;
        assert!(matches!(
            plan(&unlabelled, &[("k", "v")], Some(&existing)),
            Ok(Plan::Apply(_))
        ));
    }
    // Owner → Orphan: our ownerReference must go.
    let owned = written_by(
        &es(CreationPolicy::Owner, DeletionPolicy::Retain),
        &[("k", "v")],
    );
    let orphan = es(CreationPolicy::Orphan, DeletionPolicy::Retain);
    let w = write(plan(&orphan, &[("k", "v")], Some(&owned)));
    assert!(w.secret.metadata.owner_references.is_none());
    // Without managedFields nothing can be concluded: write.
    let mut bare = written_by(&orphan, &[("k", "v")]);
    bare.metadata.managed_fields = None;
    assert!(matches!(
        plan(&orphan, &[("k", "v")], Some(&bare)),
        Ok(Plan::Apply(_))
    ));
}

#[test]
fn controlled_by_another() {
    let mut s = secret(&[("k", "v")]);
    s.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "external-secrets.io/v1".into(),
        kind: "ExternalSecret".into(),
        name: "someone-else".into(),
        uid: "other-uid".into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    for c in [
        CreationPolicy::Owner,
        CreationPolicy::Orphan,
        CreationPolicy::Merge,
        CreationPolicy::CreateOrMerge,
    ] {
        let err = plan(&es(c, DeletionPolicy::Retain), &[("k", "v")], Some(&s)).unwrap_err();
        assert!(
            matches!(&err, DesiredError::ControlledByOther { owner, .. } if owner.contains("someone-else")),
            "{c:?}: {err}"
        );
    }
    // Another kind of controller: Owner cannot add a second controller; Merge may write keys.
    s.metadata.owner_references.as_mut().unwrap()[0].kind = "Deployment".into();
    assert!(
        plan(
            &es(CreationPolicy::Owner, DeletionPolicy::Retain),
            &[("k", "v")],
            Some(&s)
        )
        .is_err()
    );
    assert!(
        plan(
            &es(CreationPolicy::Merge, DeletionPolicy::Retain),
            &[("k", "v")],
            Some(&s)
        )
        .is_ok()
    );
    // Our own controller reference is fine.
    s.metadata.owner_references.as_mut().unwrap()[0].kind = "ExternalSecret".into();
    s.metadata.owner_references.as_mut().unwrap()[0].uid = UID.into();
    assert!(
        plan(
            &es(CreationPolicy::Owner, DeletionPolicy::Retain),
            &[("k", "v")],
            Some(&s)
        )
        .is_ok()
    );
}

#[test]
fn immutable_targets() {
    let mut e = es(CreationPolicy::Owner, DeletionPolicy::Retain);
    e.spec.target.as_mut().unwrap().immutable = Some(true);
    let w = write(plan(&e, &[("k", "v")], None));
    assert_eq!(w.secret.immutable, Some(true));
    let mut existing = written_by(&e, &[("k", "v")]);
    existing.immutable = Some(true);
    assert_eq!(
        plan(&e, &[("k", "changed")], Some(&existing)).unwrap(),
        Plan::Skip(Skip::Immutable)
    );
    // The ExternalSecret no longer asks for immutability, but the Secret is: cannot change.
    let mutable = es(CreationPolicy::Owner, DeletionPolicy::Retain);
    assert!(matches!(
        plan(&mutable, &[("k", "changed")], Some(&existing)),
        Err(DesiredError::ImmutableDiffers { .. })
    ));
}

#[test]
fn template_type_metadata_and_unsupported_parts() {
    let mut e = es(CreationPolicy::Owner, DeletionPolicy::Retain);
    e.spec.target.as_mut().unwrap().template = Some(Box::new(ExternalSecretTemplate {
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        metadata: Some(ExternalSecretTemplateMetadata {
            labels: Some([("app".to_string(), "templated".to_string())].into()),
            annotations: Some([("t".to_string(), "1".to_string())].into()),
            finalizers: None,
        }),
        merge_policy: Some(crate::api::TemplateMergePolicy::Merge),
        ..Default::default()
    }));
    let w = write(plan(&e, &[(".dockerconfigjson", "{}")], None));
    assert_eq!(
        w.secret.type_.as_deref(),
        Some("kubernetes.io/dockerconfigjson")
    );
    assert_eq!(
        w.secret.metadata.labels.as_ref().unwrap()["app"],
        "templated"
    );
    assert_eq!(w.secret.metadata.annotations.as_ref().unwrap()["t"], "1");
    // A type change of an existing Secret is refused with advice.
    let err = plan(&e, &[("k", "v")], Some(&secret(&[]))).unwrap_err();
    assert!(err.to_string().contains("delete the Secret"), "{err}");

    // Rendered templates replace the raw values, labels and annotations.
    let rendered = crate::template::Rendered {
        data: [("config".to_string(), b"user=v".to_vec())].into(),
        labels: [("from-template".to_string(), "yes".to_string())].into(),
        annotations: Default::default(),
        type_: Some("kubernetes.io/dockerconfigjson".into()),
    };
    let data: BTreeMap<String, Vec<u8>> = [("k".to_string(), b"v".to_vec())].into();
    let w = write(desired(&Inputs {
        es: &e,
        data: &data,
        existing: None,
        rendered: Some(&rendered),
    }));
    let got: Vec<&String> = w.secret.data.as_ref().unwrap().keys().collect();
    assert_eq!(got, ["config"], "only the rendered keys");
    assert_eq!(
        w.secret.metadata.labels.as_ref().unwrap()["from-template"],
        "yes"
    );
}

#[test]
fn template_finalizers_are_applied_and_withdrawn() {
    let with = |f: Option<Vec<&str>>| {
        let mut e = es(CreationPolicy::Owner, DeletionPolicy::Retain);
        e.spec.target.as_mut().unwrap().template = Some(Box::new(ExternalSecretTemplate {
            metadata: Some(ExternalSecretTemplateMetadata {
                finalizers: f.map(|f| f.into_iter().map(String::from).collect()),
                ..Default::default()
            }),
            ..Default::default()
        }));
        e
    };
    let keep = with(Some(vec!["example.com/keep"]));
    let w = write(plan(&keep, &[("k", "v")], None));
    assert_eq!(
        w.secret.metadata.finalizers,
        Some(vec!["example.com/keep".to_string()])
    );
    let applied = written_by(&keep, &[("k", "v")]);
    assert_eq!(
        OwnedFields::of(&applied, &field_manager("team", "app")).finalizers,
        ["example.com/keep".to_string()].into()
    );
    assert_eq!(
        plan(&keep, &[("k", "v")], Some(&applied)).unwrap(),
        Plan::Skip(Skip::UpToDate)
    );
    // Someone removed it: put back. Someone else's finalizer beside it: left alone.
    let mut removed = applied.clone();
    removed.metadata.finalizers = None;
    assert!(matches!(
        plan(&keep, &[("k", "v")], Some(&removed)),
        Ok(Plan::Apply(_))
    ));
    let mut beside = applied.clone();
    beside
        .metadata
        .finalizers
        .as_mut()
        .unwrap()
        .push("other.io/theirs".into());
    assert_eq!(
        plan(&keep, &[("k", "v")], Some(&beside)).unwrap(),
        Plan::Skip(Skip::UpToDate)
    );
    // Dropped from the template (or emptied): the apply withdraws ours.
    for gone in [with(None), with(Some(vec![]))] {
        let w = write(plan(&gone, &[("k", "v")], Some(&applied)));
        assert_eq!(w.secret.metadata.finalizers, None);
    }
}

#[test]
fn deletion_table() {
    use CreationPolicy as C;
    use DeletionPolicy as D;
    let foreign = secret(&[("k", "v")]);
    let cases = [
        (C::Owner, D::Retain, true, Cleanup::Nothing),
        (C::Owner, D::Delete, true, Cleanup::DeleteSecret),
        // Written by this ExternalSecret but controlled by nobody: the shared managed label
        // does not make it ours to delete (anyone can set it).
        (C::Orphan, D::Delete, true, Cleanup::Nothing),
        (C::Orphan, D::Delete, false, Cleanup::Nothing),
        (C::Owner, D::Merge, true, Cleanup::RemoveOurFields),
        (C::Merge, D::Merge, false, Cleanup::RemoveOurFields),
        (C::Merge, D::Delete, false, Cleanup::RemoveOurFields),
        (C::None, D::Delete, false, Cleanup::Nothing),
    ];
    for (c, d, ours, want) in cases {
        let e = es(c, d);
        let s = if ours {
            written_by(
                &es(if c == C::Merge { C::Orphan } else { c }, d),
                &[("k", "v")],
            )
        } else {
            foreign.clone()
        };
        assert_eq!(on_delete(&e, Some(&s)), want, "{c:?}/{d:?}/ours={ours}");
        assert_eq!(on_delete(&e, None), Cleanup::Nothing);
    }
    // Labelled as managed, or controlled by another ExternalSecret: never deleted.
    let mut labelled = foreign.clone();
    labelled.metadata.labels = Some([(LABEL_MANAGED.to_string(), "true".to_string())].into());
    assert_eq!(
        on_delete(&es(C::Owner, D::Delete), Some(&labelled)),
        Cleanup::Nothing
    );
    let mut other = written_by(&es(C::Owner, D::Delete), &[("k", "v")]);
    other.metadata.owner_references.as_mut().unwrap()[0].uid = "other-uid".into();
    assert_eq!(
        on_delete(&es(C::Owner, D::Delete), Some(&other)),
        Cleanup::Nothing
    );
    // Controlled by an ExternalSecret without a uid (never stored): not ours either.
    let mut no_uid = es(C::Owner, D::Delete);
    no_uid.metadata.uid = None;
    let mut empty_uid = written_by(&es(C::Owner, D::Delete), &[("k", "v")]);
    empty_uid.metadata.owner_references.as_mut().unwrap()[0].uid = String::new();
    assert_eq!(on_delete(&no_uid, Some(&empty_uid)), Cleanup::Nothing);
    assert!(!needs_finalizer(&es(C::Owner, D::Retain)));
    assert!(needs_finalizer(&es(C::Owner, D::Delete)));
    assert!(needs_finalizer(&es(C::Merge, D::Merge)));
    assert!(!needs_finalizer(&es(C::None, D::Delete)));
}

#[test]
fn names() {
    let mut e = es(CreationPolicy::Owner, DeletionPolicy::Retain);
    assert_eq!(target_name(&e), "app-secret");
    e.spec.target.as_mut().unwrap().name = None;
    assert_eq!(target_name(&e), "app");
    e.spec.target = None;
    assert_eq!(target_name(&e), "app");
    assert_eq!(creation_policy(&e), CreationPolicy::Owner);
    assert_eq!(deletion_policy(&e), DeletionPolicy::Retain);

    assert_eq!(field_manager("ns", "es"), "vaultgate/ns/es");
    let long = "x".repeat(253);
    let m = field_manager("ns", &long);
    assert_eq!(m.len(), 128);
    assert!(m.starts_with("vaultgate/ns/xxx"));
    assert_ne!(m, field_manager("ns", &format!("{long}y")));
}

#[test]
fn owned_fields_from_managed_fields() {
    let e = es(CreationPolicy::Owner, DeletionPolicy::Retain);
    let s = written_by(&e, &[("a", "1"), ("b", "2")]);
    let o = OwnedFields::of(&s, &field_manager("team", "app"));
    assert!(o.known);
    assert_eq!(o.data, ["a".to_string(), "b".to_string()].into());
    assert!(o.labels.contains(LABEL_MANAGED));
    assert!(o.annotations.contains(ANNOTATION_DATA_HASH));
    assert_eq!(o.owner_uids, [UID.to_string()].into());
    assert!(!OwnedFields::of(&s, "someone-else").known);
}
