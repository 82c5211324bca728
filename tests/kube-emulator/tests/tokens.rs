//! TokenRequest, TokenReview, OIDC discovery, audit, fault injection and counters.

mod common;

use common::*;
use k8s_openapi::api::authentication::v1::{
    TokenRequest, TokenRequestSpec, TokenReview, TokenReviewSpec,
};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use kube::api::{Api, ListParams, PostParams};
use kube_emulator::FaultFilter;
use serde_json::json;
use std::time::Duration;

async fn review(
    k: &kube_emulator::KubeEmulator,
    token: &str,
    audiences: Option<Vec<String>>,
) -> serde_json::Value {
    let api: Api<TokenReview> = Api::all(k.client().await);
    let tr = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.into()),
            audiences,
        },
        ..Default::default()
    };
    let out = within(10, api.create(&PostParams::default(), &tr))
        .await
        .unwrap();
    serde_json::to_value(out.status.unwrap()).unwrap()
}

#[tokio::test]
async fn token_request_and_review() {
    let k = start().await;
    let client = k.client().await;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let req = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec!["vault".into()],
            expiration_seconds: Some(600),
            ..Default::default()
        },
        ..Default::default()
    };
    // The service account must exist.
    let err = api_error(
        within(
            10,
            sas.create_token_request("robot", &PostParams::default(), &req),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 404);
    assert_eq!(err.message, "serviceaccounts \"robot\" not found");

    let sa = within(
        10,
        sas.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "robot"}})).unwrap(),
        ),
    )
    .await
    .unwrap();
    let out = within(
        10,
        sas.create_token_request("robot", &PostParams::default(), &req),
    )
    .await
    .unwrap();
    let token = out.status.unwrap().token;

    // Claims as kube-apiserver writes them.
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], "system:serviceaccount:default:robot");
    assert_eq!(claims["aud"], json!(["vault"]));
    assert_eq!(claims["iss"], k.issuer());
    assert_eq!(claims["kubernetes.io"]["namespace"], "default");
    assert_eq!(claims["kubernetes.io"]["serviceaccount"]["name"], "robot");
    assert_eq!(
        claims["kubernetes.io"]["serviceaccount"]["uid"],
        json!(sa.metadata.uid)
    );
    let ttl = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(ttl, 600);

    let st = review(&k, &token, Some(vec!["vault".into()])).await;
    assert_eq!(st["authenticated"], true);
    assert_eq!(
        st["user"]["username"],
        "system:serviceaccount:default:robot"
    );
    assert_eq!(st["audiences"], json!(["vault"]));
    assert!(
        st["user"]["groups"]
            .as_array()
            .unwrap()
            .contains(&json!("system:serviceaccounts:default"))
    );

    // Audiences must intersect.
    let st = review(&k, &token, Some(vec!["other".into()])).await;
    assert_eq!(st["authenticated"], false);
    assert!(st["error"].as_str().unwrap().contains("audiences"));
    // Tampered signature.
    let mut bad = token.clone();
    bad.pop();
    bad.push(if token.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(
        review(&k, &bad, Some(vec!["vault".into()])).await["authenticated"],
        false
    );
    // Expired.
    let expired = k.issue_token("default", "robot", &["vault".into()], -10);
    assert_eq!(
        review(&k, &expired, Some(vec!["vault".into()])).await["authenticated"],
        false
    );
    // The admin token.
    let st = review(&k, &k.admin_token(), None).await;
    assert_eq!(st["authenticated"], true);
    assert_eq!(st["user"]["username"], "admin");

    // Too short a lifetime is invalid.
    let short = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(60),
            ..Default::default()
        },
        ..Default::default()
    };
    let err = api_error(
        within(
            10,
            sas.create_token_request("robot", &PostParams::default(), &short),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 422);
}

#[tokio::test]
async fn service_account_tokens_authenticate_api_calls() {
    let k = start().await;
    let sas: Api<ServiceAccount> = Api::namespaced(k.client().await, "default");
    within(
        10,
        sas.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "app"}})).unwrap(),
        ),
    )
    .await
    .unwrap();
    let out = within(
        10,
        sas.create_token_request("app", &PostParams::default(), &TokenRequest::default()),
    )
    .await
    .unwrap();
    let token = out.status.unwrap().token;
    let api: Api<ConfigMap> = Api::namespaced(k.client_with_token(&token), "default");
    within(10, api.list(&ListParams::default())).await.unwrap();
    assert!(
        k.audit()
            .iter()
            .any(|r| r.user == "system:serviceaccount:default:app"
                && r.verb == "list"
                && r.resource == "configmaps"
                && r.code == 200)
    );
    // A token for another audience is not an API credential.
    let other = k.issue_token("default", "app", &["vault".into()], 3600);
    let api: Api<ConfigMap> = Api::namespaced(k.client_with_token(&other), "default");
    assert_eq!(
        api_error(
            within(10, api.list(&ListParams::default()))
                .await
                .unwrap_err()
        )
        .code,
        401
    );
}

#[tokio::test]
async fn oidc_discovery_and_jwks_verify_tokens() {
    let k = start().await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(k.ca_pem().as_bytes()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let conf: serde_json::Value = http
        .get(format!("{}/.well-known/openid-configuration", k.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(conf["issuer"], k.issuer());
    let jwks: serde_json::Value = http
        .get(conf["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["alg"], "ES256");

    // Verify a token with the published key alone.
    let token = k.issue_token("default", "x", &["a".into()], 600);
    let parts: Vec<&str> = token.split('.').collect();
    let b64 = |s: &str| {
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, s).unwrap()
    };
    let mut point = vec![4u8];
    point.extend(b64(key["x"].as_str().unwrap()));
    point.extend(b64(key["y"].as_str().unwrap()));
    let pk =
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point);
    pk.verify(
        format!("{}.{}", parts[0], parts[1]).as_bytes(),
        &b64(parts[2]),
    )
    .expect("signature verifies with the JWKS key");
    assert!(
        k.jwt_public_key_pem()
            .starts_with("-----BEGIN PUBLIC KEY-----\n")
    );
    // Non-resource requests are audited too.
    assert!(k.audit().iter().any(|r| r.uri == "/openid/v1/jwks"
        && r.user == "system:anonymous"
        && r.verb == "get"
        && r.code == 200));
}

#[tokio::test]
async fn audit_faults_latency_and_counters() {
    let k = start().await;
    let api: Api<Secret> = Api::namespaced(k.client().await, "default");
    let s: Secret = serde_json::from_value(json!({"metadata": {"name": "a"}})).unwrap();

    // 500 rather than 503: the client retries 503 on its own.
    k.fail_next(FaultFilter::verb_resource("create", "secrets"), 1, 500);
    let err = api_error(
        within(10, api.create(&PostParams::default(), &s))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 500);
    within(10, api.create(&PostParams::default(), &s))
        .await
        .unwrap();
    // Other verbs are unaffected by a filtered fault.
    k.fail_next(FaultFilter::verb("delete"), 2, 500);
    within(10, api.get("a")).await.unwrap();

    let recs = k.audit();
    let creates: Vec<u16> = recs
        .iter()
        .filter(|r| r.verb == "create" && r.resource == "secrets")
        .map(|r| r.code)
        .collect();
    assert_eq!(creates, [500, 201]);
    let get = recs.iter().find(|r| r.verb == "get").unwrap();
    assert_eq!(
        (
            get.user.as_str(),
            get.namespace.as_str(),
            get.name.as_str(),
            get.api_group.as_str()
        ),
        ("admin", "default", "a", "")
    );
    assert_eq!(k.writes_of("secrets"), 1);

    k.set_latency(Duration::from_millis(300));
    let t = std::time::Instant::now();
    within(10, api.get("a")).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn self_subject_reviews() {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
    };
    let k = start().await;
    let client = k.client().await;
    let ssr: Api<SelfSubjectReview> = Api::all(client.clone());
    let me = within(
        10,
        ssr.create(&PostParams::default(), &SelfSubjectReview::default()),
    )
    .await
    .unwrap();
    assert_eq!(
        me.status.unwrap().user_info.unwrap().username.as_deref(),
        Some("admin")
    );
    let ssar: Api<SelfSubjectAccessReview> = Api::all(client);
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some("create".into()),
                resource: Some("secrets".into()),
                namespace: Some("default".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let out = within(10, ssar.create(&PostParams::default(), &review))
        .await
        .unwrap();
    assert!(out.status.unwrap().allowed);
}
