//! A kube_runtime Controller and streaming-list watcher against the emulator.

mod common;

use common::*;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct Error(#[from] kube::Error);

async fn reconcile(w: Arc<DynamicObject>, client: Arc<Client>) -> Result<Action, Error> {
    let ns = w.namespace().unwrap();
    let name = w.name_any();
    let owner = w.controller_owner_ref(&widget_resource("v1")).unwrap();
    let cms: Api<ConfigMap> = Api::namespaced((*client).clone(), &ns);
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("{name}-config"), "ownerReferences": [owner]},
        "data": {"size": w.data["spec"]["size"].to_string()},
    });
    cms.patch(
        &format!("{name}-config"),
        &PatchParams::apply("widget-controller").force(),
        &Patch::Apply(cm),
    )
    .await?;
    let widgets = widget_api(&client, &ns);
    let status = json!({
        "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name},
        "status": {"phase": "Reconciled", "conditions": [{"type": "Ready", "status": "True"}]},
    });
    widgets
        .patch_status(
            &name,
            &PatchParams::apply("widget-controller").force(),
            &Patch::Apply(status),
        )
        .await?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

#[tokio::test]
async fn controller_reconciles_and_owned_objects_are_collected() {
    let k = with_widgets().await;
    let client = k.client().await;
    let widgets = widget_api(&client, "default");
    let ctl = Controller::new_with(
        widgets.clone(),
        watcher::Config::default(),
        widget_resource("v1"),
    )
    .owns_with(
        Api::<ConfigMap>::namespaced(client.clone(), "default"),
        (),
        watcher::Config::default(),
    )
    .run(
        reconcile,
        |_, _, _| Action::requeue(Duration::from_secs(1)),
        Arc::new(client.clone()),
    );
    let handle = tokio::spawn(ctl.for_each(|_| async {}));

    widgets
        .create(&PostParams::default(), &widget("ctl", 4))
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    within(10, async {
        loop {
            let w = widgets.get("ctl").await.unwrap();
            if w.data["status"]["phase"] == "Reconciled" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let cm = cms.get("ctl-config").await.unwrap();
    assert_eq!(cm.data.unwrap()["size"], "4");

    widgets
        .delete("ctl", &DeleteParams::default())
        .await
        .unwrap();
    within(10, async {
        while cms.get_opt("ctl-config").await.unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    handle.abort();
}

#[tokio::test]
async fn streaming_list_watcher_gets_initial_events_then_changes() {
    let k = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(k.client().await, "default");
    for n in ["a", "b"] {
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": n}})).unwrap(),
        )
        .await
        .unwrap();
    }
    let mut s = watcher(cms.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut initial = vec![];
    within(10, async {
        loop {
            match s.try_next().await.unwrap().unwrap() {
                Event::InitApply(o) => initial.push(o.name_any()),
                Event::InitDone => break,
                _ => {}
            }
        }
    })
    .await;
    initial.sort();
    assert_eq!(initial, ["a", "b"]);
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "c"}})).unwrap(),
    )
    .await
    .unwrap();
    let next = within(10, async {
        loop {
            if let Event::Apply(o) = s.try_next().await.unwrap().unwrap() {
                return o.name_any();
            }
        }
    })
    .await;
    assert_eq!(next, "c");
}
