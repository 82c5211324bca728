//! JSON, merge and strategic merge patches, and server-side apply ownership.

mod common;

use common::*;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

async fn seeded() -> (kube_emulator::KubeEmulator, Api<ConfigMap>) {
    let k = start().await;
    let api: Api<ConfigMap> = Api::namespaced(k.client().await, "default");
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "c", "labels": {"a": "1"}},
        "data": {"x": "1", "y": "2"},
    }))
    .unwrap();
    within(10, api.create(&PostParams::default(), &cm))
        .await
        .unwrap();
    (k, api)
}

#[tokio::test]
async fn json_merge_and_strategic_patches() {
    let (_k, api) = seeded().await;
    let pp = PatchParams::default();
    let jp: json_patch::Patch = serde_json::from_value(json!([
        {"op": "replace", "path": "/data/x", "value": "10"},
        {"op": "remove", "path": "/data/y"},
    ]))
    .unwrap();
    let out = within(10, api.patch("c", &pp, &Patch::<()>::Json(jp)))
        .await
        .unwrap();
    assert_eq!(
        out.data.unwrap(),
        [("x".to_string(), "10".to_string())].into()
    );

    let out = within(
        10,
        api.patch(
            "c",
            &pp,
            &Patch::Merge(json!({"data": {"z": "3", "x": null}})),
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        out.data.unwrap(),
        [("z".to_string(), "3".to_string())].into()
    );

    let out = within(
        10,
        api.patch(
            "c",
            &pp,
            &Patch::Strategic(json!({"metadata": {"labels": {"b": "2"}}})),
        ),
    )
    .await
    .unwrap();
    assert_eq!(out.metadata.labels.unwrap().len(), 2);

    // A failing test operation is refused and nothing changes.
    let jp: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/data/z", "value": "nope"}]))
            .unwrap();
    let err = api_error(
        within(10, api.patch("c", &pp, &Patch::<()>::Json(jp)))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);

    // A resourceVersion in the patch is a precondition.
    let err = api_error(
        within(
            10,
            api.patch(
                "c",
                &pp,
                &Patch::Merge(json!({"metadata": {"resourceVersion": "1"}, "data": {"q": "1"}})),
            ),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 409);
    let err = api_error(
        within(10, api.patch("missing", &pp, &Patch::Merge(json!({}))))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 404);
}

#[tokio::test]
async fn strategic_merge_patch_merges_owner_references_and_webhooks_by_key() {
    let (k, api) = seeded().await;
    let pp = PatchParams::default();
    let owner =
        |uid: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "name": uid, "uid": uid});
    within(
        10,
        api.patch(
            "c",
            &pp,
            &Patch::Strategic(json!({"metadata": {"ownerReferences": [owner("u1")]}})),
        ),
    )
    .await
    .unwrap();
    let out = within(
        10,
        api.patch(
            "c",
            &pp,
            &Patch::Strategic(json!({"metadata": {"ownerReferences": [owner("u2")]}})),
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        out.metadata.owner_references.unwrap().len(),
        2,
        "merged by uid"
    );
    let out = within(
        10,
        api.patch(
            "c",
            &pp,
            &Patch::Strategic(
                json!({"metadata": {"ownerReferences": [{"uid": "u1", "$patch": "delete"}]}}),
            ),
        ),
    )
    .await
    .unwrap();
    let refs = out.metadata.owner_references.unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].uid, "u2");
    // A merge patch replaces the list instead.
    let out = within(
        10,
        api.patch(
            "c",
            &pp,
            &Patch::Merge(json!({"metadata": {"ownerReferences": [owner("u3")]}})),
        ),
    )
    .await
    .unwrap();
    assert_eq!(out.metadata.owner_references.unwrap()[0].uid, "u3");

    let vw: Api<ValidatingWebhookConfiguration> = Api::all(k.client().await);
    let hook = |name: &str, timeout: i32| {
        json!({
            "name": name, "admissionReviewVersions": ["v1"], "sideEffects": "None", "timeoutSeconds": timeout,
            "clientConfig": {"url": "https://127.0.0.1:1/validate"},
        })
    };
    let cfg: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": "v"}, "webhooks": [hook("a.example.com", 5), hook("b.example.com", 5)],
    }))
    .unwrap();
    within(10, vw.create(&PostParams::default(), &cfg))
        .await
        .unwrap();
    let out = within(
        10,
        vw.patch(
            "v",
            &pp,
            &Patch::Strategic(
                json!({"webhooks": [{"name": "b.example.com", "timeoutSeconds": 9}]}),
            ),
        ),
    )
    .await
    .unwrap();
    let hooks = out.webhooks.unwrap();
    assert_eq!(hooks.len(), 2);
    assert_eq!(hooks[1].timeout_seconds, Some(9));
    assert_eq!(hooks[0].timeout_seconds, Some(5));
    assert_eq!(out.metadata.generation, Some(2));
}

#[tokio::test]
async fn strategic_merge_patch_on_custom_resources_is_415() {
    let k = with_widgets().await;
    let client = k.client().await;
    let api = widget_api(&client, "default");
    within(10, api.create(&PostParams::default(), &widget("w", 1)))
        .await
        .unwrap();
    let err = api_error(
        within(
            10,
            api.patch(
                "w",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"size": 2}})),
            ),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 415);
    assert_eq!(err.reason, "UnsupportedMediaType");
    let out = within(
        10,
        api.patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 2}})),
        ),
    )
    .await
    .unwrap();
    assert_eq!(out.data["spec"]["size"], 2);
}

fn secret_cfg(data: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": data})
}

#[tokio::test]
async fn server_side_apply_tracks_owners() {
    let k = start().await;
    let api: Api<Secret> = Api::namespaced(k.client().await, "default");
    let a = PatchParams::apply("manager-a");
    let b = PatchParams::apply("manager-b");
    let v = |s: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s);

    // Create-if-absent.
    let out = within(
        10,
        api.patch(
            "s",
            &a,
            &Patch::Apply(secret_cfg(json!({"k1": v("1"), "k2": v("2")}))),
        ),
    )
    .await
    .unwrap();
    let mf = out.metadata.managed_fields.clone().unwrap();
    assert_eq!(mf.len(), 1);
    assert_eq!(mf[0].manager.as_deref(), Some("manager-a"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));
    let fields = serde_json::to_value(&mf[0].fields_v1).unwrap();
    // Only what the configuration names is owned; server defaults (type) are not.
    assert_eq!(fields, json!({"f:data": {"f:k1": {}, "f:k2": {}}}));

    // Another manager adds its own key: both keys stay.
    let out = within(
        10,
        api.patch("s", &b, &Patch::Apply(secret_cfg(json!({"k3": v("3")})))),
    )
    .await
    .unwrap();
    assert_eq!(out.data.as_ref().unwrap().len(), 3);

    // Conflict on a value owned by manager-a.
    let err = api_error(
        within(
            10,
            api.patch(
                "s",
                &b,
                &Patch::Apply(secret_cfg(json!({"k1": v("x"), "k3": v("3")}))),
            ),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 409);
    assert_eq!(err.reason, "Conflict");
    assert_eq!(
        err.message,
        "Apply failed with 1 conflict: conflict with \"manager-a\": .data.k1"
    );

    // The same value is shared ownership, not a conflict.
    within(
        10,
        api.patch(
            "s",
            &b,
            &Patch::Apply(secret_cfg(json!({"k1": v("1"), "k3": v("3")}))),
        ),
    )
    .await
    .unwrap();

    // manager-a drops k2 (it alone owned it: removed) and k1 (shared with b: kept).
    let out = within(10, api.patch("s", &a, &Patch::Apply(secret_cfg(json!({})))))
        .await
        .unwrap();
    let data = out.data.unwrap();
    assert!(
        data.contains_key("k1") && data.contains_key("k3") && !data.contains_key("k2"),
        "{data:?}"
    );

    // Force takes ownership.
    let forced = PatchParams::apply("manager-a").force();
    let out = within(
        10,
        api.patch(
            "s",
            &forced,
            &Patch::Apply(secret_cfg(json!({"k3": v("mine")}))),
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        out.data.as_ref().unwrap()["k3"],
        ByteString(b"mine".to_vec())
    );
    let owners_of_k3: Vec<String> = out
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter(|e| {
            serde_json::to_value(&e.fields_v1).unwrap()["f:data"]
                .get("f:k3")
                .is_some()
        })
        .filter_map(|e| e.manager)
        .collect();
    assert_eq!(owners_of_k3, ["manager-a"]);

    // Without fieldManager apply is invalid.
    let err = api_error(
        within(
            10,
            api.patch(
                "s",
                &PatchParams::default(),
                &Patch::Apply(secret_cfg(json!({}))),
            ),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert!(
        err.message.contains("fieldManager: Required value"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn apply_labels_and_owner_references_per_entry() {
    let k = start().await;
    let api: Api<ConfigMap> = Api::namespaced(k.client().await, "default");
    let cfg = |labels: serde_json::Value, refs: serde_json::Value| {
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "m", "labels": labels, "ownerReferences": refs},
        })
    };
    let owner = |uid: &str| json!({"apiVersion": "v1", "kind": "Secret", "name": uid, "uid": uid});
    within(
        10,
        api.patch(
            "m",
            &PatchParams::apply("a"),
            &Patch::Apply(cfg(json!({"x": "1"}), json!([owner("u1")]))),
        ),
    )
    .await
    .unwrap();
    within(
        10,
        api.patch(
            "m",
            &PatchParams::apply("b"),
            &Patch::Apply(cfg(json!({"y": "1"}), json!([owner("u2")]))),
        ),
    )
    .await
    .unwrap();
    let out = within(
        10,
        api.patch(
            "m",
            &PatchParams::apply("a"),
            &Patch::Apply(cfg(json!({}), json!([]))),
        ),
    )
    .await
    .unwrap();
    let labels = out.metadata.labels.unwrap();
    assert_eq!(labels.keys().collect::<Vec<_>>(), ["y"]);
    let refs = out.metadata.owner_references.unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].uid, "u2");
}

#[tokio::test]
async fn update_moves_ownership_to_the_updater() {
    let k = start().await;
    let api: Api<ConfigMap> = Api::namespaced(k.client().await, "default");
    let cfg = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "u"}, "data": {"k": "1"}});
    within(
        10,
        api.patch(
            "u",
            &PatchParams::apply("applier"),
            &Patch::Apply(cfg.clone()),
        ),
    )
    .await
    .unwrap();
    let pp = PatchParams {
        field_manager: Some("editor".into()),
        ..Default::default()
    };
    within(
        10,
        api.patch("u", &pp, &Patch::Merge(json!({"data": {"k": "2"}}))),
    )
    .await
    .unwrap();
    // The applier now conflicts with the editor's update.
    let err = api_error(
        within(
            10,
            api.patch("u", &PatchParams::apply("applier"), &Patch::Apply(cfg)),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 409);
    assert!(
        err.message
            .starts_with("Apply failed with 1 conflict: conflict with \"editor\" using v1 at "),
        "{}",
        err.message
    );
    assert!(err.message.ends_with(": .data.k"), "{}", err.message);
}

/// An apply that takes back the last label and ownerReference leaves no empty fields behind
/// (ObjectMeta's `omitempty`), as the API server returns them.
#[tokio::test]
async fn emptied_metadata_fields_are_dropped() {
    let (k, _) = seeded().await;
    let api: Api<Secret> = Api::namespaced(k.client().await, "default");
    let pp = PatchParams::apply("m").force();
    let full = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {
            "name": "s",
            "labels": {"only": "1"},
            "annotations": {"a": "1"},
            "ownerReferences": [{
                "apiVersion": "v1", "kind": "ConfigMap", "name": "c", "uid": "u-1",
            }],
        },
        "data": {"k": "dg=="},
    });
    within(10, api.patch("s", &pp, &Patch::Apply(&full)))
        .await
        .unwrap();
    let empty = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}});
    let out = within(10, api.patch("s", &pp, &Patch::Apply(&empty)))
        .await
        .unwrap();
    assert_eq!(out.metadata.labels, None);
    assert_eq!(out.metadata.annotations, None);
    assert_eq!(out.metadata.owner_references, None);
    let got = within(10, api.get("s")).await.unwrap();
    assert_eq!(got.metadata.labels, None);
    assert_eq!(got.metadata.owner_references, None);
}
