//! KV v1 and v2 conformance, driven by vaultrs and by raw HTTP.

mod common;

use std::collections::HashMap;

use common::*;
use serde_json::{Value, json};
use vaultrs::api::kv2::requests::{SetSecretMetadataRequest, SetSecretRequestOptions};
use vaultrs::{kv1, kv2};

#[tokio::test]
async fn kv2_versions_metadata_and_lifecycle() {
    let vault = start().await;
    let c = client(&vault, &vault.root_token());

    let m1 = within(kv2::set(
        &c,
        "secret",
        "app/db",
        &json!({"user": "a", "pass": "1"}),
    ))
    .await
    .unwrap();
    assert_eq!(m1.version, 1);
    assert!(!m1.destroyed);
    assert_eq!(m1.deletion_time, "");
    let m2 = within(kv2::set(
        &c,
        "secret",
        "app/db",
        &json!({"user": "a", "pass": "2"}),
    ))
    .await
    .unwrap();
    assert_eq!(m2.version, 2);

    let latest: HashMap<String, String> = within(kv2::read(&c, "secret", "app/db")).await.unwrap();
    assert_eq!(latest["pass"], "2");
    let v1: HashMap<String, String> = within(kv2::read_version(&c, "secret", "app/db", 1))
        .await
        .unwrap();
    assert_eq!(v1["pass"], "1");

    // Custom metadata, max_versions and cas_required through the metadata endpoint.
    let mut custom = HashMap::new();
    custom.insert("owner".to_string(), "team-a".to_string());
    within(kv2::set_metadata(
        &c,
        "secret",
        "app/db",
        Some(
            SetSecretMetadataRequest::builder()
                .custom_metadata(custom)
                .max_versions(5u64),
        ),
    ))
    .await
    .unwrap();
    let meta = within(kv2::read_metadata(&c, "secret", "app/db"))
        .await
        .unwrap();
    assert_eq!(meta.current_version, 2);
    assert_eq!(meta.max_versions, 5);
    assert_eq!(meta.custom_metadata.unwrap()["owner"], "team-a");
    assert_eq!(meta.versions.len(), 2);
    assert!(meta.versions.contains_key("1"));
    assert!(!meta.created_time.is_empty() && !meta.updated_time.is_empty());

    // Soft delete of the latest version: reads 404, vaultrs sees an error.
    within(kv2::delete_latest(&c, "secret", "app/db"))
        .await
        .unwrap();
    // The 404 body has no `errors` (it carries the metadata), so vaultrs
    // reports it as an unparsable response, as it does against Vault.
    let err = within(kv2::read::<Value>(&c, "secret", "app/db"))
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("404"), "{err:?}");
    // Raw shape: 404 carrying the version metadata with null data.
    let http = raw(&vault);
    let (status, body) = call(
        &http,
        &vault,
        "GET",
        "secret/data/app/db",
        Some(&vault.root_token()),
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert!(body["data"]["data"].is_null());
    assert_eq!(body["data"]["metadata"]["version"], 2);
    assert_eq!(body["data"]["metadata"]["destroyed"], false);
    assert!(
        !body["data"]["metadata"]["deletion_time"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        body["data"]["metadata"]["custom_metadata"]["owner"],
        "team-a"
    );
    for k in [
        "request_id",
        "lease_id",
        "renewable",
        "lease_duration",
        "wrap_info",
        "warnings",
        "auth",
    ] {
        assert!(body.get(k).is_some(), "missing {k}");
    }

    within(kv2::undelete_versions(&c, "secret", "app/db", vec![2]))
        .await
        .unwrap();
    let back: HashMap<String, String> = within(kv2::read(&c, "secret", "app/db")).await.unwrap();
    assert_eq!(back["pass"], "2");

    within(kv2::delete_versions(&c, "secret", "app/db", vec![1]))
        .await
        .unwrap();
    within(kv2::destroy_versions(&c, "secret", "app/db", vec![1]))
        .await
        .unwrap();
    let (status, body) = call(
        &http,
        &vault,
        "GET",
        "secret/data/app/db?version=1",
        Some(&vault.root_token()),
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["data"]["metadata"]["destroyed"], true);
    assert!(body["data"]["data"].is_null());
    // Destroyed versions cannot be undeleted.
    within(kv2::undelete_versions(&c, "secret", "app/db", vec![1]))
        .await
        .unwrap();
    let (status, _) = call(
        &http,
        &vault,
        "GET",
        "secret/data/app/db?version=1",
        Some(&vault.root_token()),
        None,
    )
    .await;
    assert_eq!(status, 404);
    // A version that never existed: plain 404.
    let (status, body) = call(
        &http,
        &vault,
        "GET",
        "secret/data/app/db?version=9",
        Some(&vault.root_token()),
        None,
    )
    .await;
    assert_eq!((status, body), (404, json!({"errors": []})));

    within(kv2::delete_metadata(&c, "secret", "app/db"))
        .await
        .unwrap();
    let err = within(kv2::read_metadata(&c, "secret", "app/db"))
        .await
        .unwrap_err();
    assert_eq!(api_status(&err), Some(404));
}

#[tokio::test]
async fn kv2_check_and_set() {
    let vault = start().await;
    let c = client(&vault, &vault.root_token());
    let opts = |cas| SetSecretRequestOptions { cas };
    // cas=0 writes only when the secret does not exist yet.
    within(kv2::set_with_options(
        &c,
        "secret",
        "cas",
        &json!({"a": 1}),
        opts(0),
    ))
    .await
    .unwrap();
    let err = within(kv2::set_with_options(
        &c,
        "secret",
        "cas",
        &json!({"a": 2}),
        opts(0),
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
    within(kv2::set_with_options(
        &c,
        "secret",
        "cas",
        &json!({"a": 2}),
        opts(1),
    ))
    .await
    .unwrap();

    // cas_required on the secret makes the option mandatory.
    within(kv2::set_metadata(
        &c,
        "secret",
        "cas",
        Some(SetSecretMetadataRequest::builder().cas_required(true)),
    ))
    .await
    .unwrap();
    let http = raw(&vault);
    let (status, body) = call(
        &http,
        &vault,
        "POST",
        "secret/data/cas",
        Some(&vault.root_token()),
        Some(json!({"data": {"a": 3}})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        errors(&body),
        vec!["check-and-set parameter required for this call"]
    );
    let (status, body) = call(
        &http,
        &vault,
        "PUT",
        "secret/data/cas",
        Some(&vault.root_token()),
        Some(json!({"data": {"a": 3}, "options": {"cas": 2}})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["version"], 3);
    // Missing data is a 400.
    let (status, body) = call(
        &http,
        &vault,
        "POST",
        "secret/data/cas",
        Some(&vault.root_token()),
        Some(json!({"options": {"cas": 3}})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(errors(&body), vec!["no data provided"]);
}

#[tokio::test]
async fn kv2_max_versions_prunes_oldest() {
    let vault = start().await;
    let http = raw(&vault);
    let root = vault.root_token();
    let (s, _) = call(
        &http,
        &vault,
        "POST",
        "secret/metadata/p",
        Some(&root),
        Some(json!({"max_versions": 2})),
    )
    .await;
    assert_eq!(s, 204);
    for i in 0..4 {
        vault.kv2_put("secret", "p", json!({"i": i})).unwrap();
    }
    let (_, body) = call(&http, &vault, "GET", "secret/metadata/p", Some(&root), None).await;
    assert_eq!(body["data"]["current_version"], 4);
    assert_eq!(body["data"]["oldest_version"], 3);
    let versions = body["data"]["versions"].as_object().unwrap();
    assert_eq!(versions.keys().cloned().collect::<Vec<_>>(), vec!["3", "4"]);
    let (s, _) = call(
        &http,
        &vault,
        "GET",
        "secret/data/p?version=1",
        Some(&root),
        None,
    )
    .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn kv2_list_and_config() {
    let vault = start().await;
    let c = client(&vault, &vault.root_token());
    for p in ["team/a", "team/b/c", "team/b/d", "other"] {
        vault.kv2_put("secret", p, json!({"k": "v"})).unwrap();
    }
    let keys = within(kv2::list(&c, "secret", "team")).await.unwrap();
    assert_eq!(keys, vec!["a", "b/"]);
    let keys = within(kv2::list(&c, "secret", "")).await.unwrap();
    assert_eq!(keys, vec!["other", "team/"]);
    let err = within(kv2::list(&c, "secret", "nothing"))
        .await
        .unwrap_err();
    assert_eq!(api_status(&err), Some(404));

    // LIST also works as GET ?list=true.
    let http = raw(&vault);
    let (s, body) = call(
        &http,
        &vault,
        "GET",
        "secret/metadata/team/b?list=true",
        Some(&vault.root_token()),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(body["data"]["keys"], json!(["c", "d"]));

    within(kv2::config::set(
        &c,
        "secret",
        Some(
            vaultrs::api::kv2::requests::SetConfigurationRequest::builder()
                .max_versions(7u64)
                .cas_required(false),
        ),
    ))
    .await
    .unwrap();
    let cfg = within(kv2::config::read(&c, "secret")).await.unwrap();
    assert_eq!(cfg.max_versions, 7);
    assert!(!cfg.cas_required);
    assert_eq!(cfg.delete_version_after, "0s");
}

#[tokio::test]
async fn kv1_read_write_list_delete() {
    let vault = start().await;
    let c = client(&vault, &vault.root_token());
    within(vaultrs::sys::mount::enable(
        &c,
        "kv1",
        "kv",
        Some(
            vaultrs::api::sys::requests::EnableEngineRequest::builder()
                .options(HashMap::from([("version".to_string(), "1".to_string())])),
        ),
    ))
    .await
    .unwrap();
    within(kv1::set(&c, "kv1", "app/cfg", &HashMap::from([("k", "v")])))
        .await
        .unwrap();
    vault
        .kv1_put("kv1", "app/other", json!({"x": "y"}))
        .unwrap();
    let got: HashMap<String, String> = within(kv1::get(&c, "kv1", "app/cfg")).await.unwrap();
    assert_eq!(got["k"], "v");
    let list = within(kv1::list(&c, "kv1", "app")).await.unwrap();
    assert_eq!(list.data.keys, vec!["cfg", "other"]);

    let http = raw(&vault);
    let (s, body) = call(
        &http,
        &vault,
        "GET",
        "kv1/app/cfg",
        Some(&vault.root_token()),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(body["data"], json!({"k": "v"}));
    assert_eq!(body["lease_duration"], 2764800);
    assert_eq!(body["mount_type"], "kv");
    let (s, body) = call(
        &http,
        &vault,
        "GET",
        "kv1/app?list=true",
        Some(&vault.root_token()),
        None,
    )
    .await;
    assert_eq!(
        (s, body["data"]["keys"].clone()),
        (200, json!(["cfg", "other"]))
    );
    // As ESO's find by name lists a v1 mount: the mount's root, with folders ending in `/`,
    // by `?list=true` or the LIST verb; a folder with nothing in it is a 404 with no errors.
    for (method, path) in [("GET", "kv1/?list=true"), ("LIST", "kv1/")] {
        let (s, body) = call(&http, &vault, method, path, Some(&vault.root_token()), None).await;
        assert_eq!(
            (s, body["data"]["keys"].clone()),
            (200, json!(["app/"])),
            "{method}"
        );
    }
    let (s, body) = call(
        &http,
        &vault,
        "GET",
        "kv1/nothing/?list=true",
        Some(&vault.root_token()),
        None,
    )
    .await;
    assert_eq!((s, body), (404, json!({"errors": []})));

    let (s, body) = call(
        &http,
        &vault,
        "PUT",
        "kv1/app/empty",
        Some(&vault.root_token()),
        None,
    )
    .await;
    assert_eq!(
        (s, errors(&body)),
        (400, vec!["missing data fields".to_string()])
    );
    let (s, body) = call(
        &http,
        &vault,
        "POST",
        "kv1/app/",
        Some(&vault.root_token()),
        Some(json!({"a": "b"})),
    )
    .await;
    assert_eq!(
        (s, errors(&body)),
        (
            400,
            vec!["cannot write to a path ending in '/'".to_string()]
        )
    );

    within(kv1::delete(&c, "kv1", "app/cfg")).await.unwrap();
    let err = within(kv1::get::<Value>(&c, "kv1", "app/cfg"))
        .await
        .unwrap_err();
    assert_eq!(api_status(&err), Some(404));
    let (s, body) = call(
        &http,
        &vault,
        "GET",
        "kv1/app/cfg",
        Some(&vault.root_token()),
        None,
    )
    .await;
    assert_eq!((s, body), (404, json!({"errors": []})));
}

#[tokio::test]
async fn raw_error_shapes() {
    let vault = start().await;
    let http = raw(&vault);
    let root = vault.root_token();
    // No token.
    let (s, body) = call(&http, &vault, "GET", "secret/data/x", None, None).await;
    assert_eq!((s, body), (403, json!({"errors": ["permission denied"]})));
    // Unknown token.
    let (s, body) = call(
        &http,
        &vault,
        "GET",
        "secret/data/x",
        Some("hvs.bogus"),
        None,
    )
    .await;
    assert_eq!(
        (s, body),
        (
            403,
            json!({"errors": ["2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"]})
        )
    );
    // Unknown mount.
    let (s, body) = call(&http, &vault, "GET", "nomount/x", Some(&root), None).await;
    assert_eq!(s, 404);
    assert_eq!(
        errors(&body),
        vec!["no handler for route \"nomount/x\". route entry not found."]
    );
    // Malformed JSON body.
    let resp = within(
        http.post(format!("{}/v1/secret/data/x", vault.addr()))
            .header("X-Vault-Token", &root)
            .body("{not json")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(errors(&body)[0].starts_with("failed to parse JSON input"));
    // Unsupported method on a known path.
    let (s, _) = call(&http, &vault, "LIST", "secret/data/x", Some(&root), None).await;
    assert_eq!(s, 405);
    // A v1-style path on a v2 mount: 404 carrying only a warning.
    let (s, body) = call(&http, &vault, "GET", "secret/x", Some(&root), None).await;
    assert_eq!(s, 404);
    assert!(body["data"].is_null());
    assert!(
        body["warnings"][0]
            .as_str()
            .unwrap()
            .starts_with("Invalid path for a versioned K/V secrets engine")
    );
    assert!(
        body["warnings"][0]
            .as_str()
            .unwrap()
            .contains("'vault kv get'")
    );
    // Wrong methods and unknown routes elsewhere.
    let (s, _) = call(&http, &vault, "DELETE", "sys/health", None, None).await;
    assert_eq!(s, 405);
    let (s, _) = call(&http, &vault, "GET", "auth/token/create", Some(&root), None).await;
    assert_eq!(s, 405);
    let (s, body) = call(&http, &vault, "GET", "auth/nope/login", Some(&root), None).await;
    assert_eq!(s, 404);
    assert_eq!(
        errors(&body),
        vec!["no handler for route \"auth/nope/login\". route entry not found."]
    );
    let resp = within(http.get(format!("{}/not-the-api", vault.addr())).send())
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    // Bad version parameter.
    vault.kv2_put("secret", "x", json!({"a": "b"})).unwrap();
    let (s, _) = call(
        &http,
        &vault,
        "GET",
        "secret/data/x?version=abc",
        Some(&root),
        None,
    )
    .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn kv1_mount_upgrades_to_v2_through_tune() {
    let vault = start().await;
    vault.enable_kv("legacy", 1).unwrap();
    vault.kv1_put("legacy", "app", json!({"k": "v"})).unwrap();
    let http = raw(&vault);
    let root = vault.root_token();
    let (s, body) = call(
        &http,
        &vault,
        "GET",
        "sys/mounts/legacy/tune",
        Some(&root),
        None,
    )
    .await;
    assert_eq!(
        (s, body["data"]["options"]["version"].clone()),
        (200, json!("1"))
    );
    let (s, _) = call(
        &http,
        &vault,
        "POST",
        "sys/mounts/legacy/tune",
        Some(&root),
        Some(json!({"options": {"version": "2"}})),
    )
    .await;
    assert_eq!(s, 204);
    let (s, body) = call(&http, &vault, "GET", "legacy/data/app", Some(&root), None).await;
    assert_eq!(s, 200);
    assert_eq!(body["data"]["data"], json!({"k": "v"}));
    assert_eq!(body["data"]["metadata"]["version"], 1);
    let (s, _) = call(
        &http,
        &vault,
        "POST",
        "sys/mounts/legacy/tune",
        Some(&root),
        Some(json!({"options": {"version": "1"}})),
    )
    .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn kv2_delete_version_after_expires_versions() {
    let vault = start().await;
    let http = raw(&vault);
    let root = vault.root_token();
    let (s, _) = call(
        &http,
        &vault,
        "POST",
        "secret/metadata/short",
        Some(&root),
        Some(json!({"delete_version_after": "1s"})),
    )
    .await;
    assert_eq!(s, 204);
    let (s, body) = call(
        &http,
        &vault,
        "POST",
        "secret/data/short",
        Some(&root),
        Some(json!({"data": {"a": "b"}})),
    )
    .await;
    assert_eq!(s, 200);
    assert!(
        !body["data"]["deletion_time"].as_str().unwrap().is_empty(),
        "deletion time is set ahead"
    );
    let (s, body) = call(&http, &vault, "GET", "secret/data/short", Some(&root), None).await;
    assert_eq!((s, body["data"]["data"].clone()), (200, json!({"a": "b"})));
    let (_, body) = call(
        &http,
        &vault,
        "GET",
        "secret/metadata/short",
        Some(&root),
        None,
    )
    .await;
    assert_eq!(body["data"]["delete_version_after"], "1s");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (s, body) = call(&http, &vault, "GET", "secret/data/short", Some(&root), None).await;
    assert_eq!(s, 404);
    assert!(body["data"]["data"].is_null());
}
