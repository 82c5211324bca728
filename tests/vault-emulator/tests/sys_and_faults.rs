//! sys/ endpoints, namespaces, header recording, fault injection and
//! counters.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use vaultrs::api::sys::requests::EnableEngineRequest;
use vaultrs::{kv2, sys};

#[tokio::test]
async fn health_and_seal() {
    let vault = start().await;
    let c = client(&vault, "");
    let h = within(sys::health(&c)).await.unwrap();
    assert!(h.initialized && !h.sealed && !h.standby);
    assert!(!h.version.is_empty());

    let http = raw(&vault);
    let resp = within(http.head(format!("{}/v1/sys/health", vault.addr())).send())
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    vault.set_sealed(true);
    let (s, body) = call(&http, &vault, "GET", "sys/health", None, None).await;
    assert_eq!(s, 503);
    assert_eq!(body["sealed"], true);
    let (s, body) = call(
        &http,
        &vault,
        "GET",
        "sys/health?sealedcode=200",
        None,
        None,
    )
    .await;
    assert_eq!((s, body["sealed"].clone()), (200, json!(true)));
    let (s, body) = call(
        &http,
        &vault,
        "GET",
        "secret/data/x",
        Some(&vault.root_token()),
        None,
    )
    .await;
    assert_eq!(
        (s, errors(&body)),
        (503, vec!["Vault is sealed".to_string()])
    );
    vault.set_sealed(false);
    let (s, _) = call(&http, &vault, "GET", "sys/health", None, None).await;
    assert_eq!(s, 200);
    let (s, _) = call(&http, &vault, "POST", "sys/health", None, None).await;
    assert_eq!(s, 405);
}

#[tokio::test]
async fn mounts_and_auth_methods() {
    let vault = start().await;
    let c = client(&vault, &vault.root_token());
    within(sys::mount::enable(&c, "kv-two", "kv-v2", None))
        .await
        .unwrap();
    within(sys::mount::enable(
        &c,
        "kvopt",
        "kv",
        Some(
            EnableEngineRequest::builder()
                .options(HashMap::from([("version".to_string(), "2".to_string())])),
        ),
    ))
    .await
    .unwrap();
    let mounts = within(sys::mount::list(&c)).await.unwrap();
    for m in ["kv-two/", "kvopt/", "secret/", "sys/", "cubbyhole/"] {
        assert!(mounts.contains_key(m), "missing {m}");
    }
    assert_eq!(mounts["kv-two/"].mount_type, "kv");
    assert_eq!(mounts["kv-two/"].options.as_ref().unwrap()["version"], "2");
    let cfg = within(sys::mount::get_configuration_of_a_secret_engine(
        &c, "kvopt",
    ))
    .await
    .unwrap();
    assert_eq!(cfg.options.unwrap()["version"], "2");
    within(kv2::set(&c, "kvopt", "a", &json!({"x": 1})))
        .await
        .unwrap();

    let err = within(sys::mount::enable(&c, "kvopt", "kv", None))
        .await
        .unwrap_err();
    assert_eq!(api_status(&err), Some(400));
    let err = within(sys::mount::enable(&c, "weird", "nosuch", None))
        .await
        .unwrap_err();
    assert_eq!(api_status(&err), Some(400));
    within(sys::mount::disable(&c, "kvopt")).await.unwrap();
    let err = within(kv2::read::<Value>(&c, "kvopt", "a"))
        .await
        .unwrap_err();
    assert_eq!(api_status(&err), Some(404));

    within(sys::auth::enable(&c, "apps/approle", "approle", None))
        .await
        .unwrap();
    let auths = within(sys::auth::list(&c)).await.unwrap();
    assert_eq!(auths["apps/approle/"].mount_type, "approle");
    assert_eq!(auths["token/"].mount_type, "token");
    let err = within(sys::auth::enable(&c, "x", "nosuch", None))
        .await
        .unwrap_err();
    assert_eq!(api_status(&err), Some(400));
    within(sys::auth::disable(&c, "apps/approle"))
        .await
        .unwrap();
    let auths = within(sys::auth::list(&c)).await.unwrap();
    assert!(!auths.contains_key("apps/approle/"));

    // Raw shape: the listing is both top-level and under data.
    let http = raw(&vault);
    let (s, body) = call(
        &http,
        &vault,
        "GET",
        "sys/mounts",
        Some(&vault.root_token()),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert!(body["secret/"].is_object() && body["data"]["secret/"].is_object());
    // Enabling auth needs sudo.
    vault
        .put_policy(
            "mounter",
            r#"path "sys/auth/*" { capabilities = ["create", "update"] }"#,
        )
        .unwrap();
    let t = vault.create_token(&["mounter"], None);
    let (s, _) = call(
        &http,
        &vault,
        "POST",
        "sys/auth/up",
        Some(&t),
        Some(json!({"type": "userpass"})),
    )
    .await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn namespaces_isolate_state() {
    let vault = start().await;
    let http = raw(&vault);
    let root = vault.root_token();
    let (s, body) = call(
        &http,
        &vault,
        "POST",
        "sys/namespaces/team-a",
        Some(&root),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(body["data"]["path"], "team-a/");
    vault.create_namespace("team-b").unwrap();
    let (s, body) = call(&http, &vault, "LIST", "sys/namespaces", Some(&root), None).await;
    assert_eq!(
        (s, body["data"]["keys"].clone()),
        (200, json!(["team-a/", "team-b/"]))
    );

    vault.enable_kv_in("team-a", "kv", 2).unwrap();
    vault
        .kv2_put_in("team-a", "kv", "app", json!({"ns": "a"}))
        .unwrap();
    // The root token reaches into child namespaces.
    let ca = client_ns(&vault, &root, Some("team-a"));
    let v: Value = within(kv2::read(&ca, "kv", "app")).await.unwrap();
    assert_eq!(v, json!({"ns": "a"}));
    // The same mount path in another namespace does not exist.
    let (s, _) = call_ns(
        &http,
        &vault,
        "GET",
        "kv/data/app",
        Some(&root),
        Some("team-b"),
        None,
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = call(&http, &vault, "GET", "kv/data/app", Some(&root), None).await;
    assert_eq!(s, 404);

    // Policies and tokens are per namespace.
    vault
        .put_policy_in(
            "team-a",
            "reader",
            r#"path "kv/data/*" { capabilities = ["read"] }"#,
        )
        .unwrap();
    let ta = vault.create_token_in("team-a", &["reader"], None).unwrap();
    let (s, _) = call_ns(
        &http,
        &vault,
        "GET",
        "kv/data/app",
        Some(&ta),
        Some("team-a"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = call(
        &http,
        &vault,
        "GET",
        "auth/token/lookup-self",
        Some(&ta),
        None,
    )
    .await;
    assert_eq!(
        s, 403,
        "a namespace token is not valid in the root namespace"
    );
    let (s, _) = call_ns(
        &http,
        &vault,
        "GET",
        "auth/token/lookup-self",
        Some(&ta),
        Some("team-b"),
        None,
    )
    .await;
    assert_eq!(s, 403);
    let (s, body) = call_ns(
        &http,
        &vault,
        "GET",
        "sys/policies/acl/reader",
        Some(&root),
        Some("team-b"),
        None,
    )
    .await;
    assert_eq!((s, body), (404, json!({"errors": []})));

    // The namespace may also lead the path.
    let (s, body) = call(
        &http,
        &vault,
        "GET",
        "team-a/kv/data/app",
        Some(&root),
        None,
    )
    .await;
    assert_eq!((s, body["data"]["data"].clone()), (200, json!({"ns": "a"})));
    let (s, _) = call(&http, &vault, "GET", "team-a/kv/data/app", Some(&ta), None).await;
    assert_eq!(s, 200);
    assert_eq!(vault.requests().last().unwrap().namespace, "team-a");
    // Reserved names are refused.
    let (s, _) = call(
        &http,
        &vault,
        "POST",
        "sys/namespaces/sys",
        Some(&root),
        None,
    )
    .await;
    assert_eq!(s, 400);

    // Unknown namespace.
    let (s, body) = call_ns(
        &http,
        &vault,
        "GET",
        "kv/data/app",
        Some(&root),
        Some("nope"),
        None,
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(
        errors(&body),
        vec!["no handler for route \"kv/data/app\". route entry not found."]
    );
    let (s, body) = call_ns(
        &http,
        &vault,
        "GET",
        "kv/data/app",
        Some(&ta),
        Some("nope"),
        None,
    )
    .await;
    assert_eq!((s, body), (403, json!({"errors": ["permission denied"]})));
    let (s, _) = call_ns(
        &http,
        &vault,
        "POST",
        "auth/approle/login",
        None,
        Some("nope"),
        Some(json!({"role_id": "x"})),
    )
    .await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn headers_are_recorded() {
    let vault = start().await;
    vault.kv2_put("secret", "h", json!({"a": "b"})).unwrap();
    let c = client_ns(&vault, &vault.root_token(), None);
    let _: Value = within(kv2::read(&c, "secret", "h")).await.unwrap();
    assert_eq!(
        vault
            .last_header("secret/data/h", "X-Vault-Request")
            .as_deref(),
        Some("true")
    );
    assert_eq!(
        vault.last_header("secret/data/h", "x-vault-token"),
        Some(vault.root_token())
    );

    let http = raw(&vault);
    let resp = within(
        http.get(format!("{}/v1/secret/data/h", vault.addr()))
            .header("X-Vault-Token", vault.root_token())
            .header("X-Vault-Inconsistent", "forward-active-node")
            .header("X-Custom", "42")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        vault
            .last_header("secret/data/h", "x-vault-inconsistent")
            .as_deref(),
        Some("forward-active-node")
    );
    assert_eq!(
        vault.last_header("secret/data/h", "x-custom").as_deref(),
        Some("42")
    );
    assert_eq!(vault.last_header("secret/data/h", "x-vault-request"), None);
}

#[tokio::test]
async fn fault_injection() {
    let vault = start().await;
    vault.kv2_put("secret", "f", json!({"a": "b"})).unwrap();
    let http = raw(&vault);
    let root = vault.root_token();

    vault.fail_next(2, 503, Some(3));
    for _ in 0..2 {
        let resp = within(
            http.get(format!("{}/v1/secret/data/f", vault.addr()))
                .header("X-Vault-Token", &root)
                .send(),
        )
        .await
        .unwrap();
        assert_eq!(resp.status().as_u16(), 503);
        assert_eq!(resp.headers()["retry-after"], "3");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(errors(&body), vec!["Vault is sealed"]);
    }
    let (s, _) = call(&http, &vault, "GET", "secret/data/f", Some(&root), None).await;
    assert_eq!(s, 200);

    // Filtered by path prefix: other paths pass untouched.
    vault.fail_next_matching("auth/", 1, 429, None);
    let (s, _) = call(&http, &vault, "GET", "secret/data/f", Some(&root), None).await;
    assert_eq!(s, 200);
    let (s, body) = call(
        &http,
        &vault,
        "GET",
        "auth/token/lookup-self",
        Some(&root),
        None,
    )
    .await;
    assert_eq!(s, 429);
    assert!(errors(&body)[0].contains("rate limit quota exceeded"));
    let (s, _) = call(
        &http,
        &vault,
        "GET",
        "auth/token/lookup-self",
        Some(&root),
        None,
    )
    .await;
    assert_eq!(s, 200);

    // vaultrs sees the injected status.
    vault.fail_next(1, 500, None);
    let c = client(&vault, &root);
    let err = within(kv2::read::<Value>(&c, "secret", "f"))
        .await
        .unwrap_err();
    assert_eq!(api_status(&err), Some(500));

    // Latency.
    vault.set_latency(Duration::from_millis(150));
    let t0 = Instant::now();
    let (s, _) = call(&http, &vault, "GET", "secret/data/f", Some(&root), None).await;
    assert_eq!(s, 200);
    assert!(t0.elapsed() >= Duration::from_millis(150));
    vault.set_latency(Duration::ZERO);

    // Down: connections refused; back up on the same address.
    let addr = vault.addr();
    vault.set_down(true);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let fresh = raw(&vault);
    let r = within(fresh.get(format!("{addr}/v1/sys/health")).send()).await;
    assert!(r.is_err(), "request while down must fail");
    vault.set_down(false);
    let mut ok = false;
    for _ in 0..50 {
        if let Ok(r) = within(fresh.get(format!("{addr}/v1/sys/health")).send()).await {
            ok = r.status().as_u16() == 200;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "server must come back up");
}

#[tokio::test]
async fn counters_and_request_log() {
    let vault = start().await;
    vault.kv2_put("secret", "c/one", json!({"a": "b"})).unwrap();
    vault.enable_kv("old", 1).unwrap();
    vault.kv1_put("old", "x", json!({"a": "b"})).unwrap();
    let http = raw(&vault);
    let root = vault.root_token();
    vault.reset_counters();
    call(&http, &vault, "GET", "secret/data/c/one", Some(&root), None).await;
    call(
        &http,
        &vault,
        "GET",
        "secret/metadata/c/one",
        Some(&root),
        None,
    )
    .await;
    call(
        &http,
        &vault,
        "LIST",
        "secret/metadata/c",
        Some(&root),
        None,
    )
    .await;
    call(&http, &vault, "GET", "old/x", Some(&root), None).await;
    call(&http, &vault, "GET", "secret/data/c/one", None, None).await;
    vault.enable_auth("userpass", "userpass").unwrap();
    call(
        &http,
        &vault,
        "POST",
        "auth/userpass/login/u",
        None,
        Some(json!({"password": "x"})),
    )
    .await;

    assert_eq!(
        vault.count_kv_reads(),
        3,
        "LIST and denied reads are not KV reads"
    );
    assert_eq!(vault.count_logins(), 1);
    assert_eq!(vault.count_requests(), 6);
    let log = vault.requests();
    assert_eq!(log.len(), 6);
    assert_eq!(log[0].method, "GET");
    assert_eq!(log[0].path, "secret/data/c/one");
    assert_eq!(log[0].status, 200);
    assert_eq!(log[2].method, "LIST");
    assert_eq!(log[4].status, 403);
    assert_eq!(log[5].status, 400);

    let resp = within(
        http.get(format!("{}/_emulator/counters", vault.addr()))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let counters: Value = resp.json().await.unwrap();
    assert_eq!(counters["kv_reads"], 3);
    assert_eq!(counters["logins"], 1);
    assert_eq!(counters["requests"], 6);
    assert_eq!(counters["by_endpoint"]["GET secret/data"], 2);

    // Out-of-process readers can reset too.
    let resp = within(
        http.post(format!("{}/_emulator/counters/reset", vault.addr()))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    assert_eq!(vault.count_requests(), 0);
    assert!(vault.requests().is_empty());
    assert_eq!(vault.count_kv_reads(), 0);
}

#[tokio::test]
async fn sustains_many_concurrent_reads_and_logins() {
    let vault = start().await;
    vault.kv2_put("secret", "load", json!({"a": "b"})).unwrap();
    vault.enable_auth("approle", "approle").unwrap();
    let http = raw(&vault);
    let root = vault.root_token();
    let (_, _) = call(
        &http,
        &vault,
        "POST",
        "auth/approle/role/r",
        Some(&root),
        Some(json!({"bind_secret_id": false, "token_ttl": "1m"})),
    )
    .await;
    let (_, body) = call(
        &http,
        &vault,
        "GET",
        "auth/approle/role/r/role-id",
        Some(&root),
        None,
    )
    .await;
    let role_id = body["data"]["role_id"].as_str().unwrap().to_string();
    vault.reset_counters();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let http = http.clone();
        let base = vault.addr();
        let root = root.clone();
        let role_id = role_id.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..250 {
                let resp = if i % 5 == 0 {
                    http.post(format!("{base}/v1/auth/approle/login"))
                        .json(&json!({"role_id": role_id}))
                        .send()
                        .await
                } else {
                    http.get(format!("{base}/v1/secret/data/load"))
                        .header("X-Vault-Token", &root)
                        .send()
                        .await
                };
                assert_eq!(resp.unwrap().status().as_u16(), 200);
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(15), t)
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(vault.count_requests(), 4000);
    assert_eq!(vault.count_logins(), 800);
    assert_eq!(vault.count_kv_reads(), 3200);
    assert!(t0.elapsed() < Duration::from_secs(15));
    assert_eq!(vault.live_tokens(), 801);
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let vault = start().await;
    let addr = vault.addr();
    let http = raw(&vault);
    let (s, _) = call(&http, &vault, "GET", "sys/health", None, None).await;
    assert_eq!(s, 200);
    within(vault.clone().shutdown()).await;
    let fresh = raw(&vault);
    assert!(
        within(fresh.get(format!("{addr}/v1/sys/health")).send())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn control_endpoints_for_out_of_process_users() {
    let vault = start().await;
    let http = raw(&vault);
    let base = vault.addr();
    let post = |path: &str, body: Value| {
        let http = http.clone();
        let url = format!("{base}/_emulator/{path}");
        async move {
            within(http.post(url).json(&body).send())
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };

    assert_eq!(
        post(
            "faults",
            json!({"count": 1, "status": 502, "path_prefix": "sys/"})
        )
        .await,
        204
    );
    let (s, _) = call(&http, &vault, "GET", "sys/health", None, None).await;
    assert_eq!(s, 502);
    let (s, _) = call(&http, &vault, "GET", "sys/health", None, None).await;
    assert_eq!(s, 200);
    assert_eq!(
        post("faults", json!({"count": 5, "status": 500})).await,
        204
    );
    let resp = within(http.delete(format!("{base}/_emulator/faults")).send())
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let (s, _) = call(&http, &vault, "GET", "sys/health", None, None).await;
    assert_eq!(s, 200);
    assert_eq!(post("faults", json!({"status": 500})).await, 400);

    assert_eq!(post("sealed", json!({"sealed": true})).await, 204);
    let (s, _) = call(&http, &vault, "GET", "sys/health", None, None).await;
    assert_eq!(s, 503);
    assert_eq!(post("sealed", json!({"sealed": false})).await, 204);

    assert_eq!(post("latency", json!({"ms": 100})).await, 204);
    let t0 = Instant::now();
    call(&http, &vault, "GET", "sys/health", None, None).await;
    assert!(t0.elapsed() >= Duration::from_millis(100));
    assert_eq!(post("latency", json!({"ms": 0})).await, 204);

    vault.enable_auth("ldap", "ldap").unwrap();
    assert_eq!(
        post("ldap/ldap/users/carol", json!({"password": "pw"})).await,
        204
    );
    let (s, _) = call(
        &http,
        &vault,
        "POST",
        "auth/ldap/login/carol",
        None,
        Some(json!({"password": "pw"})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        post("ldap/nope/users/carol", json!({"password": "pw"})).await,
        400
    );

    let resp = within(http.get(format!("{base}/_emulator/requests")).send())
        .await
        .unwrap();
    let log: Value = resp.json().await.unwrap();
    let last = log["requests"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["path"], "auth/ldap/login/carol");
    assert_eq!(last["status"], 200);
    // Control calls are not Vault requests and are not logged.
    assert!(
        log["requests"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| !r["path"].as_str().unwrap().starts_with("_emulator"))
    );
    let resp = within(http.get(format!("{base}/_emulator/nothing")).send())
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
}
