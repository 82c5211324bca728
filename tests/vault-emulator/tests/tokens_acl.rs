//! Token store and ACL policy enforcement.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use vaultrs::api::token::requests::CreateTokenRequest;
use vaultrs::{kv2, sys, token};

const APP_POLICY: &str = r#"
# read-only access to the app's secrets
path "secret/data/app/*" {
  capabilities = ["read"]
}
path "secret/metadata/app/*" {
  capabilities = ["read", "list"]
}
path "secret/data/app/private" {
  capabilities = ["deny"]
}
path "secret/data/+/shared" {
  capabilities = ["read", "create", "update"]
}
"#;

#[tokio::test]
async fn token_create_lookup_renew_revoke() {
    let vault = start().await;
    let root = client(&vault, &vault.root_token());
    within(sys::policy::set(&root, "app", APP_POLICY))
        .await
        .unwrap();

    let mut meta = HashMap::new();
    meta.insert("team".to_string(), "a".to_string());
    let auth = within(token::new(
        &root,
        Some(
            CreateTokenRequest::builder()
                .policies(vec!["app".to_string()])
                .ttl("1h")
                .renewable(true)
                .display_name("ci")
                .meta(meta),
        ),
    ))
    .await
    .unwrap();
    assert!(auth.client_token.starts_with("hvs."));
    assert_eq!(auth.policies, vec!["app", "default"]);
    assert_eq!(auth.token_policies, vec!["app", "default"]);
    assert_eq!(auth.lease_duration, 3600);
    assert!(auth.renewable);
    assert!(!auth.orphan);
    assert_eq!(auth.token_type, "service");

    let c = client(&vault, &auth.client_token);
    let me = within(token::lookup_self(&c)).await.unwrap();
    assert_eq!(me.accessor, auth.accessor);
    assert_eq!(me.display_name, "token-ci");
    assert_eq!(me.policies, vec!["app", "default"]);
    assert_eq!(me.meta.unwrap()["team"], "a");
    assert!(me.ttl <= 3600 && me.ttl > 3500);
    assert_eq!(me.creation_ttl, 3600);
    assert!(me.expire_time.is_some());

    // The default policy lets the token renew itself.
    let renewed = within(token::renew_self(&c, Some("2h"))).await.unwrap();
    assert_eq!(renewed.lease_duration, 7200);

    // Root looks it up by value.
    let other = within(token::lookup(&root, &auth.client_token))
        .await
        .unwrap();
    assert_eq!(other.id, auth.client_token);
    assert!(other.ttl > 3600);

    // A token without the right capability cannot look up others.
    let err = within(token::lookup(&c, &vault.root_token()))
        .await
        .unwrap_err();
    assert_eq!(api_status(&err), Some(403));

    // Revoking the parent revokes its child.
    let child = within(token::new(
        &c,
        Some(CreateTokenRequest::builder().policies(vec!["app".to_string()])),
    ))
    .await;
    assert_eq!(
        api_status(&child.unwrap_err()),
        Some(403),
        "creating tokens needs auth/token/create"
    );
    within(token::revoke_self(&c)).await.unwrap();
    let err = within(token::lookup_self(&c)).await.unwrap_err();
    assert_eq!(api_status(&err), Some(403));
}

#[tokio::test]
async fn token_revoke_tree_and_orphans() {
    let vault = start().await;
    let root = client(&vault, &vault.root_token());
    vault
        .put_policy(
            "creator",
            r#"path "auth/token/create" { capabilities = ["update"] }"#,
        )
        .unwrap();
    let parent = within(token::new(
        &root,
        Some(CreateTokenRequest::builder().policies(vec!["creator".to_string()])),
    ))
    .await
    .unwrap();
    let pc = client(&vault, &parent.client_token);
    let child = within(token::new(
        &pc,
        Some(CreateTokenRequest::builder().policies(vec!["creator".to_string()])),
    ))
    .await
    .unwrap();
    // A child may not get policies its parent lacks.
    let err = within(token::new(
        &pc,
        Some(CreateTokenRequest::builder().policies(vec!["root".to_string()])),
    ))
    .await
    .unwrap_err();
    assert_eq!(api_status(&err), Some(400));
    let orphan = within(token::new(
        &root,
        Some(CreateTokenRequest::builder().no_parent(true)),
    ))
    .await
    .unwrap();
    assert!(orphan.orphan);

    within(token::revoke(&root, &parent.client_token))
        .await
        .unwrap();
    let http = raw(&vault);
    let (s, _) = call(
        &http,
        &vault,
        "GET",
        "auth/token/lookup-self",
        Some(&child.client_token),
        None,
    )
    .await;
    assert_eq!(s, 403, "children are revoked with their parent");
    let (s, body) = call(
        &http,
        &vault,
        "GET",
        "auth/token/lookup-self",
        Some(&orphan.client_token),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(body["data"]["orphan"], true);
    // Without explicit policies a token inherits its creator's.
    assert_eq!(body["data"]["policies"], json!(["root"]));
    assert_eq!(body["data"]["ttl"], 0);
}

#[tokio::test]
async fn token_expiry_is_wall_clock() {
    let vault = start().await;
    let short = vault.create_token(&["default"], Some(Duration::from_secs(1)));
    let http = raw(&vault);
    let (s, body) = call(
        &http,
        &vault,
        "GET",
        "auth/token/lookup-self",
        Some(&short),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(body["data"]["creation_ttl"], 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (s, body) = call(
        &http,
        &vault,
        "GET",
        "auth/token/lookup-self",
        Some(&short),
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
}

#[tokio::test]
async fn acl_enforces_policy_paths() {
    let vault = start().await;
    vault.put_policy("app", APP_POLICY).unwrap();
    vault
        .kv2_put("secret", "app/one", json!({"k": "1"}))
        .unwrap();
    vault
        .kv2_put("secret", "app/private", json!({"k": "p"}))
        .unwrap();
    vault
        .kv2_put("secret", "other/x", json!({"k": "x"}))
        .unwrap();
    let t = vault.create_token(&["app"], None);
    let c = client(&vault, &t);

    let v: HashMap<String, String> = within(kv2::read(&c, "secret", "app/one")).await.unwrap();
    assert_eq!(v["k"], "1");
    // Glob does not reach other paths.
    let err = within(kv2::read::<Value>(&c, "secret", "other/x"))
        .await
        .unwrap_err();
    assert_eq!(api_status(&err), Some(403));
    // The exact deny rule wins over the glob.
    let err = within(kv2::read::<Value>(&c, "secret", "app/private"))
        .await
        .unwrap_err();
    assert_eq!(api_status(&err), Some(403));
    // read does not imply create.
    let err = within(kv2::set(&c, "secret", "app/one", &json!({"k": "2"})))
        .await
        .unwrap_err();
    assert_eq!(api_status(&err), Some(403));
    // `+` matches one segment; create is enough for a new secret.
    within(kv2::set(&c, "secret", "team/shared", &json!({"k": "s"})))
        .await
        .unwrap();
    // LIST needs list on the metadata path with its trailing slash.
    let keys = within(kv2::list(&c, "secret", "app/")).await.unwrap();
    assert_eq!(keys, vec!["one", "private"]);

    // Raw body of an ACL denial, as Vault formats it.
    let http = raw(&vault);
    let (s, body) = call(&http, &vault, "GET", "secret/data/other/x", Some(&t), None).await;
    assert_eq!(s, 403);
    assert_eq!(
        errors(&body),
        vec!["1 error occurred:\n\t* permission denied\n\n"]
    );
    // sys paths are ACL-checked too.
    let (s, _) = call(&http, &vault, "GET", "sys/mounts", Some(&t), None).await;
    assert_eq!(s, 403);
    // capabilities-self reports what the token may do.
    let (s, body) = call(&http, &vault, "POST", "sys/capabilities-self", Some(&t), Some(json!({"paths": ["secret/data/app/one", "secret/data/app/private", "secret/data/a/shared"]}))).await;
    assert_eq!(s, 200);
    assert_eq!(body["data"]["secret/data/app/one"], json!(["read"]));
    assert_eq!(body["data"]["secret/data/app/private"], json!(["deny"]));
    assert_eq!(
        body["data"]["secret/data/a/shared"],
        json!(["create", "read", "update"])
    );

    // The UI mount lookup answers only for mounts the token can use.
    let (s, body) = call(
        &http,
        &vault,
        "GET",
        "sys/internal/ui/mounts/secret",
        Some(&t),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(body["data"]["type"], "kv");
    assert_eq!(body["data"]["options"]["version"], "2");
    assert_eq!(body["data"]["path"], "secret/");
    vault.enable_kv("hidden", 2).unwrap();
    for mount in ["hidden", "nonexistent"] {
        let (s, body) = call(
            &http,
            &vault,
            "GET",
            &format!("sys/internal/ui/mounts/{mount}"),
            Some(&t),
            None,
        )
        .await;
        assert_eq!(s, 403);
        assert_eq!(
            errors(&body),
            vec![format!(
                "preflight capability check returned 403, please ensure client's policies grant access to path \"{mount}/\""
            )]
        );
    }

    // Revocation from the test side takes effect at once.
    assert!(vault.revoke_token(&t));
    let (s, _) = call(&http, &vault, "GET", "secret/data/app/one", Some(&t), None).await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn policies_through_sys_endpoints() {
    let vault = start().await;
    let c = client(&vault, &vault.root_token());
    within(sys::policy::set(
        &c,
        "reader",
        r#"path "secret/*" { capabilities = ["read", "list"] }"#,
    ))
    .await
    .unwrap();
    let list = within(sys::policy::list(&c)).await.unwrap();
    assert_eq!(list.policies, vec!["default", "reader", "root"]);
    let p = within(sys::policy::read(&c, "reader")).await.unwrap();
    assert_eq!(p.name, "reader");
    assert!(p.rules.contains("secret/*"));

    let http = raw(&vault);
    let root = vault.root_token();
    let (s, body) = call(
        &http,
        &vault,
        "GET",
        "sys/policies/acl/reader",
        Some(&root),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(body["data"]["name"], "reader");
    assert!(
        body["data"]["policy"]
            .as_str()
            .unwrap()
            .contains("capabilities")
    );
    let (s, body) = call(&http, &vault, "LIST", "sys/policies/acl", Some(&root), None).await;
    assert_eq!(
        (s, body["data"]["keys"].clone()),
        (200, json!(["default", "reader"]))
    );
    let (s, body) = call(
        &http,
        &vault,
        "PUT",
        "sys/policies/acl/broken",
        Some(&root),
        Some(json!({"policy": "path \"a\" { capabilities = [\"fly\"] }"})),
    )
    .await;
    assert_eq!(s, 400);
    assert!(errors(&body)[0].starts_with("failed to parse policy"));
    let (s, _) = call(
        &http,
        &vault,
        "DELETE",
        "sys/policies/acl/default",
        Some(&root),
        None,
    )
    .await;
    assert_eq!(s, 400);
    let (s, _) = call(
        &http,
        &vault,
        "PUT",
        "sys/policies/acl/root",
        Some(&root),
        Some(json!({"policy": "path \"a\" { capabilities = [\"read\"] }"})),
    )
    .await;
    assert_eq!(s, 400);

    within(sys::policy::delete(&c, "reader")).await.unwrap();
    let err = within(sys::policy::read(&c, "reader")).await.unwrap_err();
    assert_eq!(api_status(&err), Some(404));
}

#[tokio::test]
async fn limited_use_tokens_are_revoked_after_their_last_use() {
    let vault = start().await;
    let http = raw(&vault);
    let (s, body) = call(
        &http,
        &vault,
        "POST",
        "auth/token/create",
        Some(&vault.root_token()),
        Some(json!({"policies": ["default"], "num_uses": 2})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(body["auth"]["num_uses"], 2);
    let t = body["auth"]["client_token"].as_str().unwrap().to_string();
    let (s, body) = call(
        &http,
        &vault,
        "GET",
        "auth/token/lookup-self",
        Some(&t),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(body["data"]["num_uses"], 1, "the lookup itself used one");
    let (s, _) = call(
        &http,
        &vault,
        "GET",
        "auth/token/lookup-self",
        Some(&t),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, body) = call(
        &http,
        &vault,
        "GET",
        "auth/token/lookup-self",
        Some(&t),
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
    let (s, _) = call(
        &http,
        &vault,
        "POST",
        "auth/token/lookup",
        Some(&vault.root_token()),
        Some(json!({"token": t})),
    )
    .await;
    assert_eq!(s, 400, "the used-up token is gone");
}
