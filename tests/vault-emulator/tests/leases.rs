//! The database secrets engine and `sys/leases/*`, checked with vaultrs (engine setup, roles,
//! credentials) and raw requests where vaultrs has no call (the lease envelope and endpoints).

mod common;

use std::time::Duration;

use common::{api_status, call, client, errors, raw, start, within};
use serde_json::{Value, json};
use vault_emulator::LeaseCounters;
use vaultrs::api::database::requests::{PostgreSQLConnectionRequest, SetRoleRequest};

async fn setup_engine(vault: &vault_emulator::VaultEmulator) {
    let c = client(vault, &vault.root_token());
    within(vaultrs::sys::mount::enable(
        &c, "database", "database", None,
    ))
    .await
    .expect("enable database engine");
    within(vaultrs::database::connection::postgres(
        &c,
        "database",
        "pg",
        Some(
            PostgreSQLConnectionRequest::builder()
                .plugin_name("postgresql-database-plugin")
                .connection_url("postgresql://{{username}}:{{password}}@db:5432/app")
                .username("vault")
                .password("not-read-back")
                .allowed_roles(vec!["app".to_string(), "svc-*".to_string()]),
        ),
    ))
    .await
    .expect("connection");
    for role in ["app", "svc-billing", "analytics"] {
        within(vaultrs::database::role::set(
            &c,
            "database",
            role,
            Some(
                SetRoleRequest::builder()
                    .db_name("pg")
                    .creation_statements(vec!["CREATE ROLE \"{{name}}\";".to_string()])
                    .default_ttl("1m")
                    .max_ttl("5m"),
            ),
        ))
        .await
        .expect("role");
    }
}

async fn creds(vault: &vault_emulator::VaultEmulator, token: &str, role: &str) -> (u16, Value) {
    call(
        &raw(vault),
        vault,
        "GET",
        &format!("database/creds/{role}"),
        Some(token),
        None,
    )
    .await
}

async fn lease_call(
    vault: &vault_emulator::VaultEmulator,
    token: &str,
    op: &str,
    body: Value,
) -> (u16, Value) {
    call(
        &raw(vault),
        vault,
        "PUT",
        &format!("sys/leases/{op}"),
        Some(token),
        Some(body),
    )
    .await
}

#[tokio::test]
async fn roles_and_connections_read_back_as_vault_shows_them() {
    let vault = start().await;
    setup_engine(&vault).await;
    let c = client(&vault, &vault.root_token());
    let role = within(vaultrs::database::role::read(&c, "database", "app"))
        .await
        .expect("read role");
    assert_eq!(
        (role.db_name.as_str(), role.default_ttl, role.max_ttl),
        ("pg", 60, 300)
    );
    assert_eq!(role.creation_statements, vec!["CREATE ROLE \"{{name}}\";"]);
    let conn = within(vaultrs::database::connection::read(&c, "database", "pg"))
        .await
        .expect("read connection");
    assert_eq!(conn.plugin_name, "postgresql-database-plugin");
    assert_eq!(conn.allowed_roles, vec!["app", "svc-*"]);
    assert_eq!(conn.connection_details.username, "vault");
    let roles = within(vaultrs::database::role::list(&c, "database"))
        .await
        .expect("list roles");
    assert_eq!(roles.keys, vec!["analytics", "app", "svc-billing"]);

    // A role without a database is refused; so is a TTL above the max.
    let (status, body) = call(
        &raw(&vault),
        &vault,
        "POST",
        "database/roles/bad",
        Some(&vault.root_token()),
        Some(json!({"default_ttl": "1h"})),
    )
    .await;
    assert_eq!(
        (status, errors(&body)),
        (400, vec!["database name is required".to_string()])
    );
    let (status, _) = call(
        &raw(&vault),
        &vault,
        "POST",
        "database/roles/bad",
        Some(&vault.root_token()),
        Some(json!({"db_name": "pg", "default_ttl": "1h", "max_ttl": "1m"})),
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn each_read_of_creds_is_a_new_user_under_a_new_lease() {
    let vault = start().await;
    setup_engine(&vault).await;
    let root = vault.root_token();
    let c = client(&vault, &root);
    let a = within(vaultrs::database::role::creds(&c, "database", "app"))
        .await
        .expect("creds through vaultrs");
    assert!(a.username.starts_with("v-root-app-"), "{}", a.username);
    assert_eq!(a.password.len(), 20);

    let (status, body) = creds(&vault, &root, "app").await;
    assert_eq!(status, 200);
    let lease = body["lease_id"].as_str().expect("lease_id");
    assert!(lease.starts_with("database/creds/app/"), "{lease}");
    assert_eq!(body["lease_duration"], 60);
    assert_eq!(body["renewable"], true);
    assert_eq!(body["mount_type"], "database");
    assert_ne!(body["data"]["username"].as_str(), Some(a.username.as_str()));

    assert_eq!(vault.live_leases("database/creds/app/").len(), 2);
    assert_eq!(
        vault.lease_counters(),
        LeaseCounters {
            issued: 2,
            ..Default::default()
        }
    );

    // A pattern in allowed_roles allows; a role outside it, or no role, is refused.
    assert_eq!(creds(&vault, &root, "svc-billing").await.0, 200);
    let (status, body) = creds(&vault, &root, "analytics").await;
    assert_eq!(
        (status, errors(&body)),
        (
            400,
            vec!["\"analytics\" is not an allowed role".to_string()]
        )
    );
    let (status, body) = creds(&vault, &root, "nope").await;
    assert_eq!(
        (status, errors(&body)),
        (400, vec!["unknown role: nope".to_string()])
    );
}

#[tokio::test]
async fn renew_extends_up_to_the_max_ttl_then_the_lease_expires() {
    let vault = start().await;
    setup_engine(&vault).await;
    let root = vault.root_token();
    let (_, body) = creds(&vault, &root, "app").await;
    let id = body["lease_id"].as_str().unwrap().to_string();

    let (status, lookup) = lease_call(&vault, &root, "lookup", json!({"lease_id": id})).await;
    assert_eq!(status, 200);
    let d = &lookup["data"];
    assert_eq!(
        (d["id"].as_str(), d["renewable"].as_bool()),
        (Some(id.as_str()), Some(true))
    );
    assert!(d["ttl"].as_u64().unwrap() <= 60 && d["ttl"].as_u64().unwrap() >= 59);
    assert!(d["last_renewal"].is_null());
    let issued = chrono::DateTime::parse_from_rfc3339(d["issue_time"].as_str().unwrap()).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(d["expire_time"].as_str().unwrap()).unwrap();
    assert_eq!((expires - issued).num_seconds(), 60);

    // Without an increment a renew gives the role's default TTL again.
    vault.advance_lease_clock(Duration::from_secs(50));
    let (status, r) = lease_call(&vault, &root, "renew", json!({"lease_id": id})).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        (r["lease_id"].as_str(), r["lease_duration"].as_u64()),
        (Some(id.as_str()), Some(60))
    );
    assert!(r["warnings"].is_null());
    // An increment is honoured while it fits under the max TTL (5m from issue)...
    let (_, r) = lease_call(
        &vault,
        &root,
        "renew",
        json!({"lease_id": id, "increment": 120}),
    )
    .await;
    assert_eq!(r["lease_duration"], 120);
    // ...and capped at what is left of it, with Vault's warning.
    vault.advance_lease_clock(Duration::from_secs(100));
    let (_, r) = lease_call(
        &vault,
        &root,
        "renew",
        json!({"lease_id": id, "increment": "1h"}),
    )
    .await;
    assert_eq!(r["lease_duration"], 150, "{r}");
    assert!(
        r["warnings"][0]
            .as_str()
            .unwrap()
            .contains("exceeded the effective max_ttl")
    );
    let (_, lookup) = lease_call(&vault, &root, "lookup", json!({"lease_id": id})).await;
    assert!(lookup["data"]["last_renewal"].is_string());

    // Past the max TTL the lease is gone: renew and lookup fail as Vault's do.
    vault.advance_lease_clock(Duration::from_secs(151));
    let (status, r) = lease_call(&vault, &root, "renew", json!({"lease_id": id})).await;
    assert_eq!(
        (status, errors(&r)),
        (400, vec!["lease not found".to_string()])
    );
    let (status, r) = lease_call(&vault, &root, "lookup", json!({"lease_id": id})).await;
    assert_eq!(
        (status, errors(&r)),
        (400, vec!["invalid lease".to_string()])
    );
    assert!(vault.live_leases("database/creds/app/").is_empty());
    assert_eq!(
        vault.lease_counters(),
        LeaseCounters {
            issued: 1,
            renewed: 3,
            revoked: 0,
            expired: 1
        }
    );
}

#[tokio::test]
async fn revoke_ends_a_lease_and_is_idempotent() {
    let vault = start().await;
    setup_engine(&vault).await;
    let root = vault.root_token();
    let (_, a) = creds(&vault, &root, "app").await;
    let (_, b) = creds(&vault, &root, "app").await;
    let a = a["lease_id"].as_str().unwrap().to_string();
    let b = b["lease_id"].as_str().unwrap().to_string();

    let (status, _) = lease_call(&vault, &root, "revoke", json!({"lease_id": a})).await;
    assert_eq!(status, 204);
    assert_eq!(vault.live_leases("database/creds/app/"), vec![b.clone()]);
    let (status, r) = lease_call(&vault, &root, "renew", json!({"lease_id": a})).await;
    assert_eq!(
        (status, errors(&r)),
        (400, vec!["lease not found".to_string()])
    );
    assert_eq!(
        lease_call(&vault, &root, "revoke", json!({"lease_id": a}))
            .await
            .0,
        204
    );
    // The id may also follow the path.
    let (status, _) = call(
        &raw(&vault),
        &vault,
        "PUT",
        &format!("sys/leases/revoke/{b}"),
        Some(&root),
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert!(vault.live_leases("database/creds/app/").is_empty());
    assert_eq!(vault.lease_counters().revoked, 2);
    let (status, r) = lease_call(&vault, &root, "renew", json!({})).await;
    assert_eq!(
        (status, errors(&r)),
        (400, vec!["lease_id must be specified".to_string()])
    );

    // Unmounting the engine revokes what it issued.
    let (_, c) = creds(&vault, &root, "app").await;
    assert!(c["lease_id"].is_string());
    within(vaultrs::sys::mount::disable(
        &client(&vault, &root),
        "database",
    ))
    .await
    .expect("unmount");
    assert!(vault.live_leases("database/").is_empty());
    assert_eq!(vault.lease_counters().revoked, 3);
}

#[tokio::test]
async fn policies_govern_creds_renew_and_revoke() {
    let vault = start().await;
    setup_engine(&vault).await;
    let root = vault.root_token();
    vault
        .put_policy(
            "app",
            r#"path "database/creds/app" { capabilities = ["read"] }"#,
        )
        .unwrap();
    let token = vault.create_token(&["app"], None);

    let c = client(&vault, &token);
    within(vaultrs::database::role::creds(&c, "database", "app"))
        .await
        .expect("allowed role");
    let e = within(vaultrs::database::role::creds(
        &c,
        "database",
        "svc-billing",
    ))
    .await
    .expect_err("other role denied");
    assert_eq!(api_status(&e), Some(403));

    let (_, body) = creds(&vault, &token, "app").await;
    let id = body["lease_id"].as_str().unwrap().to_string();
    // The default policy allows renew and lookup, not revoke.
    assert_eq!(
        lease_call(&vault, &token, "renew", json!({"lease_id": id}))
            .await
            .0,
        200
    );
    assert_eq!(
        lease_call(&vault, &token, "lookup", json!({"lease_id": id}))
            .await
            .0,
        200
    );
    assert_eq!(
        lease_call(&vault, &token, "revoke", json!({"lease_id": id}))
            .await
            .0,
        403
    );

    let (status, caps) = call(
        &raw(&vault),
        &vault,
        "POST",
        "sys/capabilities-self",
        Some(&token),
        Some(json!({"paths": ["database/creds/app", "sys/leases/renew", "sys/leases/revoke"]})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(caps["data"]["database/creds/app"], json!(["read"]));
    assert_eq!(caps["data"]["sys/leases/renew"], json!(["update"]));
    assert_eq!(caps["data"]["sys/leases/revoke"], json!(["deny"]));

    vault
        .put_policy(
            "app",
            r#"path "database/creds/app" { capabilities = ["read"] }
               path "sys/leases/revoke" { capabilities = ["update"] }"#,
        )
        .unwrap();
    assert_eq!(
        lease_call(&vault, &token, "revoke", json!({"lease_id": id}))
            .await
            .0,
        204
    );
    let _ = root;
}

#[tokio::test]
async fn the_control_api_moves_the_clock_and_reports_leases() {
    let vault = start().await;
    vault
        .put_database_role(
            "db",
            "app",
            Duration::from_secs(30),
            Duration::from_secs(60),
        )
        .unwrap();
    let root = vault.root_token();
    let (status, body) = call(
        &raw(&vault),
        &vault,
        "GET",
        "db/creds/app",
        Some(&root),
        None,
    )
    .await;
    assert_eq!((status, body["lease_duration"].as_u64()), (200, Some(30)));

    let http = raw(&vault);
    let report = |http: reqwest::Client| {
        let url = format!("{}/_emulator/leases", vault.addr());
        async move {
            within(http.get(url).send())
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let r = report(http.clone()).await;
    assert_eq!(
        (r["issued"].as_u64(), r["live"].as_array().map(Vec::len)),
        (Some(1), Some(1))
    );
    let resp = within(
        http.post(format!("{}/_emulator/clock", vault.addr()))
            .json(&json!({"advance_s": 31}))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let r = report(http).await;
    assert_eq!(
        (r["expired"].as_u64(), r["live"].as_array().map(Vec::len)),
        (Some(1), Some(0))
    );
}
