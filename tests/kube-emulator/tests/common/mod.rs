//! Shared fixtures for the emulator's integration tests.
#![allow(dead_code)]

use kube_emulator::{KubeEmulator, KubeEmulatorConfig};
use std::time::Duration;

pub async fn start() -> KubeEmulator {
    start_with(KubeEmulatorConfig::default()).await
}

pub async fn start_with(cfg: KubeEmulatorConfig) -> KubeEmulator {
    KubeEmulator::start(cfg).await.expect("emulator starts")
}

/// Bound every network wait in tests.
pub async fn within<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("operation finished in time")
}

/// A namespaced CRD with two served versions, a status subresource, printer
/// columns and a schema with a required field, a default and an enum.
pub const WIDGET_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    shortNames: [wg]
    categories: [all]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
    additionalPrinterColumns:
    - name: Size
      type: integer
      jsonPath: .spec.size
    - name: Ready
      type: string
      jsonPath: .status.conditions[?(@.type=="Ready")].status
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size:
                type: integer
                minimum: 1
              color:
                type: string
                default: blue
                enum: [blue, red, green]
              tags:
                type: object
                additionalProperties:
                  type: string
          status:
            type: object
            properties:
              phase:
                type: string
              conditions:
                type: array
                items:
                  type: object
                  properties:
                    type: {type: string}
                    status: {type: string}
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;

pub fn widget_resource(version: &str) -> kube::discovery::ApiResource {
    kube::discovery::ApiResource {
        group: "example.com".into(),
        version: version.into(),
        api_version: format!("example.com/{version}"),
        kind: "Widget".into(),
        plural: "widgets".into(),
    }
}

pub async fn with_widgets() -> KubeEmulator {
    let k = start().await;
    k.apply_yaml(WIDGET_CRD).await.expect("CRD applies");
    k
}

pub fn widget_api(client: &kube::Client, ns: &str) -> kube::Api<kube::core::DynamicObject> {
    kube::Api::namespaced_with(client.clone(), ns, &widget_resource("v1"))
}

pub fn widget(name: &str, size: i64) -> kube::core::DynamicObject {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"size": size},
    }))
    .expect("valid object")
}

pub fn api_error(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}
