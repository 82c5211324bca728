//! Create, read, update and delete of built-in kinds through kube-rs.

mod common;

use common::*;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::core::ObjectMeta;
use std::collections::BTreeMap;

fn secret(name: &str, key: &str, value: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        string_data: Some(BTreeMap::from([(key.to_string(), value.to_string())])),
        ..Default::default()
    }
}

#[tokio::test]
async fn secret_crud_and_server_set_metadata() {
    let k = start().await;
    let client = k.client().await;
    let api: Api<Secret> = Api::namespaced(client, "default");
    let created = within(
        10,
        api.create(&PostParams::default(), &secret("s1", "user", "alice")),
    )
    .await
    .unwrap();
    let md = &created.metadata;
    assert!(md.uid.as_deref().is_some_and(|u| u.len() == 36));
    assert!(md.creation_timestamp.is_some());
    assert!(
        md.resource_version
            .as_deref()
            .is_some_and(|r| r.parse::<u64>().unwrap() > 0)
    );
    assert_eq!(created.type_.as_deref(), Some("Opaque"));
    // stringData is folded into data and never stored.
    assert!(created.string_data.is_none());
    assert_eq!(created.data.as_ref().unwrap()["user"].0, b"alice");

    let got = within(10, api.get("s1")).await.unwrap();
    assert_eq!(got.metadata.uid, md.uid);

    let err = api_error(
        within(
            10,
            api.create(&PostParams::default(), &secret("s1", "a", "b")),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 409);
    assert_eq!(err.reason, "AlreadyExists");
    assert_eq!(err.message, "secrets \"s1\" already exists");

    let mut upd = got.clone();
    upd.data
        .as_mut()
        .unwrap()
        .insert("extra".into(), k8s_openapi::ByteString(b"x".to_vec()));
    let updated = within(10, api.replace("s1", &PostParams::default(), &upd))
        .await
        .unwrap();
    assert_ne!(
        updated.metadata.resource_version,
        got.metadata.resource_version
    );

    // The stale copy now conflicts.
    let err = api_error(
        within(10, api.replace("s1", &PostParams::default(), &got))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 409);
    assert_eq!(err.reason, "Conflict");
    assert_eq!(
        err.message,
        "Operation cannot be fulfilled on secrets \"s1\": the object has been modified; please apply your changes to the latest version and try again"
    );

    let list = within(10, api.list(&ListParams::default())).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert!(list.metadata.resource_version.is_some());

    within(10, api.delete("s1", &DeleteParams::default()))
        .await
        .unwrap();
    let err = api_error(within(10, api.get("s1")).await.unwrap_err());
    assert_eq!(err.code, 404);
    assert_eq!(err.reason, "NotFound");
    assert_eq!(err.message, "secrets \"s1\" not found");
    k.shutdown().await;
}

#[tokio::test]
async fn namespaced_create_needs_the_namespace() {
    let k = start().await;
    let api: Api<ConfigMap> = Api::namespaced(k.client().await, "nowhere");
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("c".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let err = api_error(
        within(10, api.create(&PostParams::default(), &cm))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 404);
    assert_eq!(err.message, "namespaces \"nowhere\" not found");

    let nss: Api<Namespace> = Api::all(k.client().await);
    let names: Vec<String> = within(10, nss.list(&ListParams::default()))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert!(names.contains(&"default".to_string()) && names.contains(&"kube-system".to_string()));

    within(
        10,
        nss.create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    name: Some("nowhere".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        ),
    )
    .await
    .unwrap();
    within(10, api.create(&PostParams::default(), &cm))
        .await
        .unwrap();
}

#[tokio::test]
async fn generate_name_and_invalid_names() {
    let k = start().await;
    let api: Api<ConfigMap> = Api::namespaced(k.client().await, "default");
    let cm = ConfigMap {
        metadata: ObjectMeta {
            generate_name: Some("gen-".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let a = within(10, api.create(&PostParams::default(), &cm))
        .await
        .unwrap();
    let b = within(10, api.create(&PostParams::default(), &cm))
        .await
        .unwrap();
    let (na, nb) = (a.metadata.name.unwrap(), b.metadata.name.unwrap());
    assert!(na.starts_with("gen-") && na.len() == 9 && na != nb);

    let bad = ConfigMap {
        metadata: ObjectMeta {
            name: Some("Bad_Name".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let err = api_error(
        within(10, api.create(&PostParams::default(), &bad))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert_eq!(err.reason, "Invalid");
    assert!(err.message.starts_with("ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"), "{}", err.message);
}

#[tokio::test]
async fn bad_or_missing_token_is_401() {
    let k = start().await;
    let client = k.client_with_token("not-a-token");
    let api: Api<Secret> = Api::namespaced(client, "default");
    let err = api_error(
        within(10, api.list(&ListParams::default()))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 401);
    assert_eq!(err.reason, "Unauthorized");
    let audit = k.audit();
    assert!(
        audit
            .iter()
            .any(|r| r.code == 401 && r.user == "system:anonymous")
    );
}

#[tokio::test]
async fn dry_run_stores_nothing() {
    let k = start().await;
    let api: Api<Secret> = Api::namespaced(k.client().await, "default");
    let pp = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let out = within(10, api.create(&pp, &secret("dry", "k", "v")))
        .await
        .unwrap();
    assert_eq!(out.metadata.name.as_deref(), Some("dry"));
    assert_eq!(
        api_error(within(10, api.get("dry")).await.unwrap_err()).code,
        404
    );
    assert_eq!(k.writes_of("secrets"), 0);
}

#[tokio::test]
async fn delete_collection_by_label() {
    let k = start().await;
    let api: Api<ConfigMap> = Api::namespaced(k.client().await, "default");
    for (n, team) in [("a", "x"), ("b", "x"), ("c", "y")] {
        let cm: ConfigMap = serde_json::from_value(
            serde_json::json!({"metadata": {"name": n, "labels": {"team": team}}}),
        )
        .unwrap();
        within(10, api.create(&PostParams::default(), &cm))
            .await
            .unwrap();
    }
    let r = within(
        10,
        api.delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("team=x"),
        ),
    )
    .await
    .unwrap();
    let deleted: Vec<String> = r
        .left()
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(deleted, ["a", "b"]);
    let left: Vec<String> = within(10, api.list(&ListParams::default()))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(left, ["c"]);
    assert!(
        k.audit()
            .iter()
            .any(|r| r.verb == "deletecollection" && r.resource == "configmaps" && r.code == 200)
    );
}
