//! Finalizers, deletionTimestamp, garbage collection and namespace deletion.

mod common;

use common::*;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use serde_json::json;
use std::time::Duration;

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let k = with_widgets().await;
    let client = k.client().await;
    let api = widget_api(&client, "default");
    let mut w = widget("f", 1);
    w.metadata.finalizers = Some(vec!["example.com/cleanup".into()]);
    within(10, api.create(&PostParams::default(), &w))
        .await
        .unwrap();
    let r = within(10, api.delete("f", &DeleteParams::default()))
        .await
        .unwrap();
    let pending = r.left().expect("object returned while finalizers remain");
    assert!(pending.metadata.deletion_timestamp.is_some());
    let got = within(10, api.get("f")).await.unwrap();
    assert!(got.metadata.deletion_timestamp.is_some());
    // No new finalizers while deleting.
    let err = api_error(
        within(
            10,
            api.patch(
                "f",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/cleanup", "late"]}})),
            ),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert!(
        err.message.contains("no new finalizers can be added"),
        "{}",
        err.message
    );
    // Removing the last finalizer completes the deletion.
    within(
        10,
        api.patch(
            "f",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": []}})),
        ),
    )
    .await
    .unwrap();
    let err = api_error(within(10, api.get("f")).await.unwrap_err());
    assert_eq!(err.code, 404);
}

fn owned_cm(name: &str, owner: &Secret) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "ownerReferences": [{
            "apiVersion": "v1", "kind": "Secret", "name": owner.metadata.name, "uid": owner.metadata.uid,
        }]},
    }))
    .unwrap()
}

#[tokio::test]
async fn garbage_collection_background_and_orphan() {
    let k = start().await;
    let client = k.client().await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mk = |n: &str| serde_json::from_value::<Secret>(json!({"metadata": {"name": n}})).unwrap();
    let owner = secrets
        .create(&PostParams::default(), &mk("owner"))
        .await
        .unwrap();
    let other = secrets
        .create(&PostParams::default(), &mk("other"))
        .await
        .unwrap();
    cms.create(&PostParams::default(), &owned_cm("dep", &owner))
        .await
        .unwrap();
    // Two owners: survives while one remains, losing the dangling reference.
    let mut two = owned_cm("two", &owner);
    two.metadata.owner_references.as_mut().unwrap().push(
        owned_cm("x", &other)
            .metadata
            .owner_references
            .unwrap()
            .remove(0),
    );
    cms.create(&PostParams::default(), &two).await.unwrap();

    secrets
        .delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    eventually("dependent deleted", || async {
        cms.get_opt("dep").await.unwrap().is_none()
    })
    .await;
    eventually("dangling reference dropped", || async {
        cms.get("two")
            .await
            .unwrap()
            .metadata
            .owner_references
            .unwrap()
            .len()
            == 1
    })
    .await;

    // Orphan keeps dependents and removes the reference.
    cms.create(&PostParams::default(), &owned_cm("orphan", &other))
        .await
        .unwrap();
    secrets
        .delete("other", &DeleteParams::orphan())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let o = cms.get("orphan").await.unwrap();
    assert!(o.metadata.owner_references.is_none_or(|r| r.is_empty()));
    let t = cms.get("two").await.unwrap();
    assert!(t.metadata.owner_references.is_none_or(|r| r.is_empty()));
}

#[tokio::test]
async fn foreground_deletion_removes_dependents_first() {
    let k = start().await;
    let client = k.client().await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let owner = secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "fg"}})).unwrap(),
        )
        .await
        .unwrap();
    cms.create(&PostParams::default(), &owned_cm("fg-dep", &owner))
        .await
        .unwrap();
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        ..Default::default()
    };
    secrets.delete("fg", &dp).await.unwrap();
    eventually("owner and dependent gone", || async {
        secrets.get_opt("fg").await.unwrap().is_none()
            && cms.get_opt("fg-dep").await.unwrap().is_none()
    })
    .await;
}

#[tokio::test]
async fn namespace_deletion_removes_contents() {
    let k = start().await;
    let client = k.client().await;
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "doomed"}})).unwrap(),
    )
    .await
    .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "c"}})).unwrap(),
    )
    .await
    .unwrap();
    let r = nss
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    if let Some(ns) = r.left() {
        assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    }
    eventually("namespace gone", || async {
        nss.get_opt("doomed").await.unwrap().is_none()
    })
    .await;
    assert_eq!(k.object_count("configmaps"), 0);
    let err = api_error(
        nss.delete("default", &DeleteParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 403);
    assert_eq!(
        err.message,
        "namespaces \"default\" is forbidden: this namespace may not be deleted"
    );
}

#[tokio::test]
async fn delete_preconditions() {
    let k = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(k.client().await, "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "p"}})).unwrap(),
    )
    .await
    .unwrap();
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some("wrong".into()),
            resource_version: None,
        }),
        ..Default::default()
    };
    let err = api_error(cms.delete("p", &dp).await.unwrap_err());
    assert_eq!(err.code, 409);
    assert!(
        err.message
            .contains("Precondition failed: UID in precondition: wrong"),
        "{}",
        err.message
    );
    cms.delete("p", &DeleteParams::default()).await.unwrap();
}

#[tokio::test]
async fn kube_runtime_finalizer_adds_and_removes() {
    use kube::runtime::controller::Action;
    use kube::runtime::finalizer::{Event as Fin, finalizer};
    use std::sync::Arc;
    let k = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(k.client().await, "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "fz"}})).unwrap(),
    )
    .await
    .unwrap();
    let run = |obj: ConfigMap| {
        let cms = cms.clone();
        async move {
            finalizer(
                &cms,
                "example.com/cleanup",
                Arc::new(obj),
                |ev| async move {
                    Ok::<_, std::convert::Infallible>(match ev {
                        Fin::Apply(_) | Fin::Cleanup(_) => Action::await_change(),
                    })
                },
            )
            .await
            .unwrap()
        }
    };
    // First pass adds the finalizer (JSON patch testing for a null list).
    run(cms.get("fz").await.unwrap()).await;
    assert_eq!(
        cms.get("fz").await.unwrap().metadata.finalizers,
        Some(vec!["example.com/cleanup".to_string()])
    );
    cms.delete("fz", &DeleteParams::default()).await.unwrap();
    let deleting = cms.get("fz").await.unwrap();
    assert!(deleting.metadata.deletion_timestamp.is_some());
    // Cleanup removes it and the deletion completes.
    run(deleting).await;
    assert!(cms.get_opt("fz").await.unwrap().is_none());
}
