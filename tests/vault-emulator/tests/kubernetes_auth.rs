//! Kubernetes auth: logins are checked with a TokenReview posted to a
//! small in-test HTTPS responder standing in for the API server.

mod common;

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use serde_json::{Value, json};
use vaultrs::api::auth::kubernetes::requests::{
    ConfigureKubernetesAuthRequest, CreateKubernetesRoleRequest,
};
use vaultrs::auth::kubernetes;

/// One TokenReview as received: its Authorization header and body.
type Review = (Option<String>, Value);

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Review>>>);

/// Answers TokenReviews: "sa-web" and JWT-shaped tokens for apps/web are
/// authenticated, "sa-db" is apps/db, anything else is not; requests must
/// carry a bearer token.
async fn review(
    State(seen): State<Seen>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    seen.0.lock().unwrap().push((auth.clone(), body.clone()));
    if auth.is_none() {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"kind": "Status", "status": "Failure", "code": 401})),
        );
    }
    let token = body["spec"]["token"].as_str().unwrap_or_default();
    let user = match token {
        "sa-web" => Some("system:serviceaccount:apps:web"),
        "sa-db" => Some("system:serviceaccount:apps:db"),
        t if t.split('.').count() == 3 => Some("system:serviceaccount:apps:web"),
        _ => None,
    };
    let audiences = body["spec"]["audiences"].clone();
    let status = match user {
        Some(u) => {
            json!({"authenticated": true, "user": {"username": u, "uid": "uid-1", "groups": ["system:serviceaccounts"]}, "audiences": if audiences.is_null() { json!(["https://kubernetes.default.svc"]) } else { audiences }})
        }
        None => json!({"authenticated": false, "error": "invalid bearer token"}),
    };
    (
        StatusCode::CREATED,
        Json(
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": body["spec"], "status": status}),
        ),
    )
}

async fn api_server() -> (String, String, Seen) {
    let seen = Seen::default();
    let router = axum::Router::new()
        .route("/apis/authentication.k8s.io/v1/tokenreviews", post(review))
        .with_state(seen.clone());
    let (url, ca) = https_server(router).await;
    (url, ca, seen)
}

fn unsigned_jwt(claims: Value) -> String {
    let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"k"}"#);
    let c = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    format!("{h}.{c}.c2ln")
}

#[tokio::test]
async fn kubernetes_login_via_token_review() {
    let (url, ca, seen) = api_server().await;
    let vault = start().await;
    let root = client(&vault, &vault.root_token());
    within(vaultrs::sys::auth::enable(
        &root,
        "kubernetes",
        "kubernetes",
        None,
    ))
    .await
    .unwrap();
    within(kubernetes::configure(
        &root,
        "kubernetes",
        &url,
        Some(ConfigureKubernetesAuthRequest::builder().kubernetes_ca_cert(ca.clone())),
    ))
    .await
    .unwrap();
    within(kubernetes::role::create(
        &root,
        "kubernetes",
        "web",
        Some(
            CreateKubernetesRoleRequest::builder()
                .bound_service_account_names(vec!["web".to_string()])
                .bound_service_account_namespaces(vec!["apps".to_string()])
                .token_policies(vec!["web".to_string()])
                .token_ttl("20m"),
        ),
    ))
    .await
    .unwrap();

    let auth = within(kubernetes::login(&root, "kubernetes", "web", "sa-web"))
        .await
        .unwrap();
    assert_eq!(auth.policies, vec!["default", "web"]);
    assert_eq!(auth.lease_duration, 1200);
    let meta = auth.metadata.unwrap();
    assert_eq!(meta["service_account_name"], "web");
    assert_eq!(meta["service_account_namespace"], "apps");
    assert_eq!(meta["service_account_uid"], "uid-1");
    assert_eq!(meta["role"], "web");
    {
        let seen = seen.0.lock().unwrap();
        let (bearer, body) = seen.last().unwrap();
        // Without token_reviewer_jwt the login JWT itself authenticates the review.
        assert_eq!(bearer.as_deref(), Some("Bearer sa-web"));
        assert_eq!(body["apiVersion"], "authentication.k8s.io/v1");
        assert_eq!(body["kind"], "TokenReview");
        assert_eq!(body["spec"]["token"], "sa-web");
    }

    // Authenticated, but not a bound service account.
    let err = within(kubernetes::login(&root, "kubernetes", "web", "sa-db"))
        .await
        .unwrap_err();
    match err {
        vaultrs::error::ClientError::APIError { code, errors } => {
            assert_eq!(code, 403);
            assert_eq!(errors, vec!["service account name not authorized"]);
        }
        other => panic!("unexpected {other:?}"),
    }
    // Not authenticated by the API server.
    let http = raw(&vault);
    let (s, body) = call(
        &http,
        &vault,
        "POST",
        "auth/kubernetes/login",
        None,
        Some(json!({"role": "web", "jwt": "garbage"})),
    )
    .await;
    assert_eq!((s, body), (403, json!({"errors": ["permission denied"]})));
    // Unknown role.
    let (s, body) = call(
        &http,
        &vault,
        "POST",
        "auth/kubernetes/login",
        None,
        Some(json!({"role": "nope", "jwt": "sa-web"})),
    )
    .await;
    assert_eq!(
        (s, errors(&body)),
        (400, vec!["invalid role name \"nope\"".to_string()])
    );

    // With token_reviewer_jwt configured, that token is the bearer.
    let root_token = vault.root_token();
    let (s, _) = call(&http, &vault, "POST", "auth/kubernetes/config", Some(&root_token), Some(json!({"kubernetes_host": url, "kubernetes_ca_cert": ca, "token_reviewer_jwt": "reviewer-token"}))).await;
    assert_eq!(s, 204);
    let (s, body) = call(
        &http,
        &vault,
        "GET",
        "auth/kubernetes/config",
        Some(&root_token),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(body["data"]["token_reviewer_jwt_set"], true);
    assert!(body["data"].get("token_reviewer_jwt").is_none());
    let (s, _) = call(
        &http,
        &vault,
        "POST",
        "auth/kubernetes/login",
        None,
        Some(json!({"role": "web", "jwt": "sa-web"})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        seen.0.lock().unwrap().last().unwrap().0.as_deref(),
        Some("Bearer reviewer-token")
    );
}

#[tokio::test]
async fn kubernetes_claims_audience_and_ca_are_checked() {
    let (url, ca, seen) = api_server().await;
    let vault = start().await;
    vault.enable_auth("kubernetes", "kubernetes").unwrap();
    let http = raw(&vault);
    let root = vault.root_token();
    let (s, _) = call(
        &http,
        &vault,
        "POST",
        "auth/kubernetes/config",
        Some(&root),
        Some(json!({"kubernetes_host": url, "kubernetes_ca_cert": ca})),
    )
    .await;
    assert_eq!(s, 204);
    let (s, _) = call(&http, &vault, "POST", "auth/kubernetes/role/r", Some(&root), Some(json!({"bound_service_account_names": "web", "bound_service_account_namespaces": ["*"], "audience": "vault", "token_policies": ["p"]}))).await;
    assert_eq!(s, 204);
    // Roles need bound names and namespaces.
    let (s, body) = call(
        &http,
        &vault,
        "POST",
        "auth/kubernetes/role/empty",
        Some(&root),
        Some(json!({"bound_service_account_names": "web"})),
    )
    .await;
    assert_eq!(s, 400, "{body}");

    // A projected token whose claims name the bound account: the review
    // carries the role's audience.
    let jwt = unsigned_jwt(
        json!({"aud": ["vault"], "sub": "system:serviceaccount:apps:web", "kubernetes.io": {"namespace": "apps", "serviceaccount": {"name": "web", "uid": "uid-1"}}}),
    );
    let (s, body) = call(
        &http,
        &vault,
        "POST",
        "auth/kubernetes/login",
        None,
        Some(json!({"role": "r", "jwt": jwt})),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["auth"]["policies"], json!(["default", "p"]));
    assert_eq!(
        seen.0.lock().unwrap().last().unwrap().1["spec"]["audiences"],
        json!(["vault"])
    );

    // Claims naming another account are refused before any review.
    let before = seen.0.lock().unwrap().len();
    let jwt = unsigned_jwt(
        json!({"kubernetes.io": {"namespace": "apps", "serviceaccount": {"name": "db"}}}),
    );
    let (s, body) = call(
        &http,
        &vault,
        "POST",
        "auth/kubernetes/login",
        None,
        Some(json!({"role": "r", "jwt": jwt})),
    )
    .await;
    assert_eq!(
        (s, errors(&body)),
        (403, vec!["service account name not authorized".to_string()])
    );
    assert_eq!(seen.0.lock().unwrap().len(), before);

    // An API server whose certificate is not signed by kubernetes_ca_cert is not trusted.
    let (other_url, _other_ca, other_seen) = api_server().await;
    let (s, _) = call(
        &http,
        &vault,
        "POST",
        "auth/kubernetes/config",
        Some(&root),
        Some(json!({"kubernetes_host": other_url, "kubernetes_ca_cert": ca})),
    )
    .await;
    assert_eq!(s, 204);
    let (s, _) = call(
        &http,
        &vault,
        "POST",
        "auth/kubernetes/login",
        None,
        Some(json!({"role": "r", "jwt": "sa-web"})),
    )
    .await;
    assert_eq!(s, 403);
    assert!(other_seen.0.lock().unwrap().is_empty());
    // A malformed CA is rejected at configuration time.
    let (s, _) = call(
        &http,
        &vault,
        "POST",
        "auth/kubernetes/config",
        Some(&root),
        Some(json!({"kubernetes_host": url, "kubernetes_ca_cert": "not a pem"})),
    )
    .await;
    assert_eq!(s, 400);
}
