//! The calls a PushSecret makes, as real Vault answers them, driven by vaultrs: metadata
//! written before any version, check-and-set from version 0, `custom_metadata` coming back
//! with each read, soft delete then metadata delete, KV v1 writes of nested values, and the
//! write capabilities `sys/capabilities-self` reports.

mod common;

use std::collections::HashMap;

use common::*;
use serde_json::{Value, json};
use vaultrs::api::kv2::requests::{SetSecretMetadataRequest, SetSecretRequestOptions};
use vaultrs::{kv1, kv2};

#[tokio::test]
async fn kv2_metadata_first_then_data_with_cas_zero() {
    let vault = start().await;
    let c = client(&vault, &vault.root_token());
    let custom = HashMap::from([("managed-by".to_string(), "external-secrets".to_string())]);
    // Metadata alone makes a secret with no version yet.
    within(kv2::set_metadata(
        &c,
        "secret",
        "push/app",
        Some(SetSecretMetadataRequest::builder().custom_metadata(custom)),
    ))
    .await
    .unwrap();
    let meta = within(kv2::read_metadata(&c, "secret", "push/app"))
        .await
        .unwrap();
    assert_eq!(meta.current_version, 0);
    assert_eq!(
        meta.custom_metadata.unwrap()["managed-by"],
        "external-secrets"
    );
    // Its data is not there yet.
    let err = within(kv2::read::<Value>(&c, "secret", "push/app"))
        .await
        .unwrap_err();
    assert_eq!(api_status(&err), Some(404));
    // cas 0 matches "no version yet"; the version written is 1.
    let m = within(kv2::set_with_options(
        &c,
        "secret",
        "push/app",
        &json!({"password": "p1"}),
        SetSecretRequestOptions { cas: 0 },
    ))
    .await
    .unwrap();
    assert_eq!(m.version, 1);
    // The data read carries the version's metadata with the custom metadata.
    let http = raw(&vault);
    let (s, body) = call(
        &http,
        &vault,
        "GET",
        "secret/data/push/app",
        Some(&vault.root_token()),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(body["data"]["data"]["password"], "p1");
    assert_eq!(body["data"]["metadata"]["version"], 1);
    assert_eq!(
        body["data"]["metadata"]["custom_metadata"]["managed-by"],
        "external-secrets"
    );
    // A stale cas is refused with Vault's message.
    let err = within(kv2::set_with_options(
        &c,
        "secret",
        "push/app",
        &json!({"password": "p2"}),
        SetSecretRequestOptions { cas: 0 },
    ))
    .await
    .unwrap_err();
    match err {
        vaultrs::error::ClientError::APIError { code, errors } => {
            assert_eq!(code, 400);
            assert_eq!(
                errors,
                vec!["check-and-set parameter did not match the current version"]
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn kv2_cas_required_on_the_mount_applies_to_new_secrets() {
    let vault = start().await;
    let c = client(&vault, &vault.root_token());
    let http = raw(&vault);
    let (s, _) = call(
        &http,
        &vault,
        "POST",
        "secret/config",
        Some(&vault.root_token()),
        Some(json!({"cas_required": true})),
    )
    .await;
    assert_eq!(s, 204);
    let err = within(kv2::set(&c, "secret", "new/one", &json!({"a": "1"})))
        .await
        .unwrap_err();
    match err {
        vaultrs::error::ClientError::APIError { code, errors } => {
            assert_eq!(code, 400);
            assert_eq!(
                errors,
                vec!["check-and-set parameter required for this call"]
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    within(kv2::set_with_options(
        &c,
        "secret",
        "new/one",
        &json!({"a": "1"}),
        SetSecretRequestOptions { cas: 0 },
    ))
    .await
    .unwrap();
}

#[tokio::test]
async fn kv2_soft_delete_keeps_metadata_until_the_metadata_delete() {
    let vault = start().await;
    let c = client(&vault, &vault.root_token());
    let custom = HashMap::from([("managed-by".to_string(), "external-secrets".to_string())]);
    within(kv2::set(&c, "secret", "gone/app", &json!({"k": "v"})))
        .await
        .unwrap();
    within(kv2::set_metadata(
        &c,
        "secret",
        "gone/app",
        Some(SetSecretMetadataRequest::builder().custom_metadata(custom)),
    ))
    .await
    .unwrap();
    within(kv2::delete_latest(&c, "secret", "gone/app"))
        .await
        .unwrap();
    // The deleted version answers 404 with its metadata, custom metadata included.
    let http = raw(&vault);
    let root = vault.root_token();
    let (s, body) = call(
        &http,
        &vault,
        "GET",
        "secret/data/gone/app",
        Some(&root),
        None,
    )
    .await;
    assert_eq!(s, 404);
    assert!(body["data"]["data"].is_null());
    assert_ne!(body["data"]["metadata"]["deletion_time"], "");
    assert_eq!(
        body["data"]["metadata"]["custom_metadata"]["managed-by"],
        "external-secrets"
    );
    within(kv2::delete_metadata(&c, "secret", "gone/app"))
        .await
        .unwrap();
    let (s, body) = call(
        &http,
        &vault,
        "GET",
        "secret/data/gone/app",
        Some(&root),
        None,
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(body, json!({"errors": []}));
    // Deleting what is already gone succeeds, as in Vault.
    within(kv2::delete_metadata(&c, "secret", "gone/app"))
        .await
        .unwrap();
}

#[tokio::test]
async fn kv1_writes_nested_values_and_deletes() {
    let vault = start().await;
    vault.enable_kv("kv1", 1).unwrap();
    let c = client(&vault, &vault.root_token());
    let data = json!({"p": "v", "custom_metadata": {"managed-by": "external-secrets"}});
    let fields: HashMap<&str, Value> = data
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    within(kv1::set(&c, "kv1", "push/app", &fields))
        .await
        .unwrap();
    let got: Value = within(kv1::get(&c, "kv1", "push/app")).await.unwrap();
    assert_eq!(got, data);
    within(kv1::delete(&c, "kv1", "push/app")).await.unwrap();
    let err = within(kv1::get::<Value>(&c, "kv1", "push/app"))
        .await
        .unwrap_err();
    assert_eq!(api_status(&err), Some(404));
}

#[tokio::test]
async fn capabilities_self_reports_write_capabilities() {
    let vault = start().await;
    vault
        .put_policy(
            "pusher",
            r#"
path "secret/data/push/*" { capabilities = ["create", "update", "read"] }
path "secret/metadata/push/*" { capabilities = ["create", "update", "read", "delete"] }
path "secret/data/ro/*" { capabilities = ["read"] }
"#,
        )
        .unwrap();
    let t = vault.create_token(&["pusher"], None);
    let http = raw(&vault);
    let (s, body) = call(
        &http,
        &vault,
        "POST",
        "sys/capabilities-self",
        Some(&t),
        Some(
            json!({"paths": ["secret/data/push/a", "secret/metadata/push/a", "secret/data/ro/a"]}),
        ),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        body["data"]["secret/data/push/a"],
        json!(["create", "read", "update"])
    );
    assert_eq!(
        body["data"]["secret/metadata/push/a"],
        json!(["create", "delete", "read", "update"])
    );
    assert_eq!(body["data"]["secret/data/ro/a"], json!(["read"]));
    // And the token can do what it was told: a write where it has create, not elsewhere.
    let c = client(&vault, &t);
    within(kv2::set(&c, "secret", "push/a", &json!({"k": "v"})))
        .await
        .unwrap();
    let err = within(kv2::set(&c, "secret", "ro/a", &json!({"k": "v"})))
        .await
        .unwrap_err();
    assert_eq!(api_status(&err), Some(403));
}
