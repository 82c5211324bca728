//! CustomResourceDefinitions: serving, discovery, schemas, status subresource.

mod common;

use common::*;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use kube::discovery::Discovery;
use serde_json::json;

#[tokio::test]
async fn crd_becomes_served_and_discoverable() {
    let k = start().await;
    let client = k.client().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_yaml_ng::from_str(WIDGET_CRD).unwrap();
    let created = within(10, crds.create(&PostParams::default(), &crd))
        .await
        .unwrap();
    let conds = created.status.unwrap().conditions.unwrap();
    for t in ["Established", "NamesAccepted"] {
        assert!(
            conds.iter().any(|c| c.type_ == t && c.status == "True"),
            "{t}"
        );
    }
    let discovery = within(10, Discovery::new(client.clone()).run())
        .await
        .unwrap();
    let group = discovery.get("example.com").expect("group discovered");
    assert_eq!(group.preferred_version_or_latest(), "v1");
    let (ar, caps) = group.recommended_kind("Widget").expect("kind discovered");
    assert_eq!(ar.plural, "widgets");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
    assert!(caps.subresources.iter().any(|(s, _)| s.plural == "status"));

    // The same through aggregated discovery (apidiscovery.k8s.io/v2).
    let aggregated = within(10, Discovery::new(client.clone()).run_aggregated())
        .await
        .unwrap();
    let (ar, caps) = aggregated
        .get("example.com")
        .expect("group in aggregated discovery")
        .recommended_kind("Widget")
        .expect("kind in aggregated discovery");
    assert_eq!(ar.plural, "widgets");
    assert!(caps.subresources.iter().any(|(s, _)| s.plural == "status"));
    let core = aggregated.get("").expect("core group");
    assert!(core.recommended_kind("Secret").is_some());

    // Served at both versions; stored once.
    let v1 = widget_api(&client, "default");
    within(10, v1.create(&PostParams::default(), &widget("w", 2)))
        .await
        .unwrap();
    let beta: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "default", &widget_resource("v1beta1"));
    let got = within(10, beta.get("w")).await.unwrap();
    assert_eq!(got.types.unwrap().api_version, "example.com/v1beta1");
    assert_eq!(got.data["spec"]["size"], 2);

    // Deleting the CRD removes its objects and stops serving it.
    within(
        10,
        crds.delete("widgets.example.com", &DeleteParams::default()),
    )
    .await
    .unwrap();
    let err = within(10, v1.get("w")).await.unwrap_err();
    assert_eq!(api_error(err).code, 404);
    assert_eq!(k.object_count("widgets"), 0);
}

#[tokio::test]
async fn schema_defaults_and_violations() {
    let k = with_widgets().await;
    let client = k.client().await;
    let api = widget_api(&client, "default");
    let out = within(10, api.create(&PostParams::default(), &widget("ok", 1)))
        .await
        .unwrap();
    assert_eq!(out.data["spec"]["color"], "blue", "default applied");
    assert_eq!(out.metadata.generation, Some(1));

    let mut bad = widget("bad", 0);
    bad.data["spec"]["color"] = json!("purple");
    bad.data["spec"]["unknown"] = json!(true);
    let err = api_error(
        within(10, api.create(&PostParams::default(), &bad))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert_eq!(err.reason, "Invalid");
    assert!(
        err.message
            .starts_with("Widget.example.com \"bad\" is invalid: "),
        "{}",
        err.message
    );
    let details = err.details.unwrap();
    assert_eq!(details.kind, "Widget");
    assert_eq!(details.group, "example.com");
    let fields: Vec<&str> = details.causes.iter().map(|c| c.field.as_str()).collect();
    assert!(
        fields.contains(&"spec.size") && fields.contains(&"spec.color"),
        "{fields:?}"
    );
    assert!(
        details
            .causes
            .iter()
            .any(|c| c.reason == "FieldValueNotSupported")
    );

    // Unknown fields are pruned, not stored.
    let mut extra = widget("extra", 3);
    extra.data["spec"]["unknown"] = json!(true);
    let out = within(10, api.create(&PostParams::default(), &extra))
        .await
        .unwrap();
    assert!(out.data["spec"].get("unknown").is_none());

    // Updates are validated too, and need a resourceVersion.
    let mut upd = out.clone();
    upd.data["spec"]["size"] = json!(-1);
    let err = api_error(
        within(10, api.replace("extra", &PostParams::default(), &upd))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    let mut no_rv = out.clone();
    no_rv.metadata.resource_version = None;
    let err = api_error(
        within(10, api.replace("extra", &PostParams::default(), &no_rv))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert!(
        err.message.contains("metadata.resourceVersion"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn status_subresource_and_generation() {
    let k = with_widgets().await;
    let client = k.client().await;
    let api = widget_api(&client, "default");
    let mut w = widget("s", 1);
    w.data["status"] = json!({"phase": "ignored-on-create"});
    let out = within(10, api.create(&PostParams::default(), &w))
        .await
        .unwrap();
    assert!(
        out.data.get("status").is_none(),
        "status is dropped on create"
    );

    // Status writes leave spec alone and keep the generation.
    let st = within(
        10,
        api.patch_status(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({
                "spec": {"size": 99},
                "status": {"phase": "Ready", "conditions": [{"type": "Ready", "status": "True"}]},
            })),
        ),
    )
    .await
    .unwrap();
    assert_eq!(st.data["status"]["phase"], "Ready");
    assert_eq!(st.data["spec"]["size"], 1);
    assert_eq!(st.metadata.generation, Some(1));

    // Main-resource writes ignore status; spec changes bump the generation.
    let out = within(
        10,
        api.patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({
                "spec": {"size": 2}, "status": {"phase": "Hacked"},
            })),
        ),
    )
    .await
    .unwrap();
    assert_eq!(out.data["status"]["phase"], "Ready");
    assert_eq!(out.metadata.generation, Some(2));
    // Metadata-only changes do not.
    let out = within(
        10,
        api.patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        ),
    )
    .await
    .unwrap();
    assert_eq!(out.metadata.generation, Some(2));

    // Apply to status with its own manager.
    let cfg = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "s"}, "status": {"phase": "Applied"}});
    let out = within(
        10,
        api.patch_status(
            "s",
            &PatchParams::apply("status-writer").force(),
            &Patch::Apply(cfg),
        ),
    )
    .await
    .unwrap();
    assert_eq!(out.data["status"]["phase"], "Applied");
    let entry = out
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .find(|e| e.manager.as_deref() == Some("status-writer"))
        .unwrap();
    assert_eq!(entry.subresource.as_deref(), Some("status"));
    let got = within(10, api.get_status("s")).await.unwrap();
    assert_eq!(got.data["status"]["phase"], "Applied");
}

#[tokio::test]
async fn crd_names_must_match() {
    let k = start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(k.client().await);
    let mut crd: CustomResourceDefinition = serde_yaml_ng::from_str(WIDGET_CRD).unwrap();
    crd.metadata.name = Some("gadgets.example.com".into());
    let err = api_error(
        within(10, crds.create(&PostParams::default(), &crd))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert!(
        err.message
            .contains("must be spec.names.plural+\".\"+spec.group"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn unknown_fields_warn_by_default_and_fail_when_strict() {
    let k = with_widgets().await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(k.ca_pem().as_bytes()).unwrap())
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap();
    let url = format!("{}/apis/example.com/v1/namespaces/default/widgets", k.url());
    let body = |name: &str| json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name}, "spec": {"size": 1, "unknown": 1}});
    let resp = http
        .post(&url)
        .bearer_auth(k.admin_token())
        .json(&body("warned"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let warnings: Vec<&str> = resp
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(warnings, [r#"299 - "unknown field \"spec.unknown\"""#]);

    let resp = http
        .post(format!("{url}?fieldValidation=Strict"))
        .bearer_auth(k.admin_token())
        .json(&body("strict"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let status: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        status["message"],
        r#"Widget in version "v1" cannot be handled as a Widget: strict decoding error: unknown field "spec.unknown""#
    );
}
