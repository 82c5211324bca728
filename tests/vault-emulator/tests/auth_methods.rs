//! AppRole, userpass, LDAP, JWT and cert auth methods.

mod common;

use std::sync::Arc;

use axum::Json;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use serde_json::{Value, json};
use vaultrs::api::auth::approle::requests::SetAppRoleRequest;
use vaultrs::api::auth::cert::requests::CreateCaCertificateRoleRequest;
use vaultrs::api::auth::oidc::requests::{SetConfigurationRequest, SetRoleRequest};
use vaultrs::api::auth::userpass::requests::CreateUserRequest;
use vaultrs::auth::{approle, cert, oidc, userpass};
use vaultrs::{kv2, sys, token};

const RSA_KEY: &str = include_str!("fixtures/rsa-test-key.pem");
const RSA_PUB: &str = include_str!("fixtures/rsa-test-pub.pem");

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn pem_der(pem: &str) -> Vec<u8> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

fn jws(header: Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let h = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap());
    let c = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap());
    let input = format!("{h}.{c}");
    let sig = sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

struct EcKey {
    kp: EcdsaKeyPair,
    public_pem: String,
}

fn ec_key() -> EcKey {
    let key = rcgen::KeyPair::generate().unwrap();
    let kp = EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &key.serialize_der(),
        &SystemRandom::new(),
    )
    .unwrap();
    EcKey {
        kp,
        public_pem: key.public_key_pem(),
    }
}

fn es256(key: &EcKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = json!({"alg": "ES256", "typ": "JWT"});
    if let Some(k) = kid {
        header["kid"] = json!(k);
    }
    jws(header, claims, |m| {
        key.kp
            .sign(&SystemRandom::new(), m)
            .unwrap()
            .as_ref()
            .to_vec()
    })
}

fn rsa_key() -> RsaKeyPair {
    RsaKeyPair::from_pkcs8(&pem_der(RSA_KEY)).unwrap()
}

fn rs256(kp: &RsaKeyPair, kid: Option<&str>, claims: &Value) -> String {
    let mut header = json!({"alg": "RS256", "typ": "JWT"});
    if let Some(k) = kid {
        header["kid"] = json!(k);
    }
    jws(header, claims, |m| {
        let mut sig = vec![0; kp.public().modulus_len()];
        kp.sign(
            &signature::RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            m,
            &mut sig,
        )
        .unwrap();
        sig
    })
}

#[tokio::test]
async fn approle_login_flow() {
    let vault = start().await;
    let root = client(&vault, &vault.root_token());
    within(sys::auth::enable(&root, "approle", "approle", None))
        .await
        .unwrap();
    vault
        .put_policy(
            "app",
            r#"path "secret/data/app/*" { capabilities = ["read"] }"#,
        )
        .unwrap();
    vault
        .kv2_put("secret", "app/cfg", json!({"k": "v"}))
        .unwrap();
    within(approle::role::set(
        &root,
        "approle",
        "svc",
        Some(
            SetAppRoleRequest::builder()
                .token_policies(vec!["app".to_string()])
                .token_ttl("10m"),
        ),
    ))
    .await
    .unwrap();
    let role_id = within(approle::role::read_id(&root, "approle", "svc"))
        .await
        .unwrap()
        .role_id;
    let secret = within(approle::role::secret::generate(
        &root, "approle", "svc", None,
    ))
    .await
    .unwrap();
    assert!(!secret.secret_id.is_empty() && !secret.secret_id_accessor.is_empty());
    let role = within(approle::role::read(&root, "approle", "svc"))
        .await
        .unwrap();
    assert_eq!(role.token_policies, vec!["app"]);
    assert_eq!(role.token_ttl, 600);

    vault.reset_counters();
    let auth = within(approle::login(
        &root,
        "approle",
        &role_id,
        &secret.secret_id,
    ))
    .await
    .unwrap();
    assert_eq!(auth.policies, vec!["app", "default"]);
    assert_eq!(auth.lease_duration, 600);
    assert!(auth.renewable);
    assert_eq!(auth.metadata.as_ref().unwrap()["role_name"], "svc");
    assert_eq!(vault.count_logins(), 1);

    let c = client(&vault, &auth.client_token);
    let v: Value = within(kv2::read(&c, "secret", "app/cfg")).await.unwrap();
    assert_eq!(v, json!({"k": "v"}));
    let me = within(token::lookup_self(&c)).await.unwrap();
    assert_eq!(me.path, "auth/approle/login");

    // Wrong secret id: 400 with Vault's message; login needs no token.
    let http = raw(&vault);
    let (s, body) = call(
        &http,
        &vault,
        "POST",
        "auth/approle/login",
        None,
        Some(json!({"role_id": role_id, "secret_id": "nope"})),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(errors(&body), vec!["invalid role or secret ID"]);
    let (s, body) = call(
        &http,
        &vault,
        "POST",
        "auth/approle/login",
        None,
        Some(json!({"secret_id": "x"})),
    )
    .await;
    assert_eq!(
        (s, errors(&body)),
        (400, vec!["missing role_id".to_string()])
    );
    assert_eq!(vault.count_logins(), 3);

    // Login is POST only.
    let (s, _) = call(&http, &vault, "GET", "auth/approle/login", None, None).await;
    assert_eq!(s, 405);
}

#[tokio::test]
async fn userpass_login_flow() {
    let vault = start().await;
    let root = client(&vault, &vault.root_token());
    within(sys::auth::enable(&root, "userpass", "userpass", None))
        .await
        .unwrap();
    within(userpass::user::set(
        &root,
        "userpass",
        "alice",
        "s3cret",
        Some(CreateUserRequest::builder().token_policies(vec!["dev".to_string()])),
    ))
    .await
    .unwrap();
    let auth = within(userpass::login(&root, "userpass", "alice", "s3cret"))
        .await
        .unwrap();
    assert_eq!(auth.policies, vec!["default", "dev"]);
    assert_eq!(auth.metadata.unwrap()["username"], "alice");
    let err = within(userpass::login(&root, "userpass", "alice", "wrong"))
        .await
        .unwrap_err();
    match err {
        vaultrs::error::ClientError::APIError { code, errors } => {
            assert_eq!(code, 400);
            assert_eq!(errors, vec!["invalid username or password"]);
        }
        other => panic!("unexpected {other:?}"),
    }
    within(userpass::user::update_password(
        &root, "userpass", "alice", "n3w",
    ))
    .await
    .unwrap();
    within(userpass::login(&root, "userpass", "alice", "n3w"))
        .await
        .unwrap();
    let users = within(userpass::user::list(&root, "userpass"))
        .await
        .unwrap();
    assert_eq!(users.keys, vec!["alice"]);
}

#[tokio::test]
async fn ldap_login_against_emulated_directory() {
    let vault = start().await;
    let http = raw(&vault);
    let root = vault.root_token();
    let (s, _) = call(
        &http,
        &vault,
        "POST",
        "sys/auth/ldap",
        Some(&root),
        Some(json!({"type": "ldap"})),
    )
    .await;
    assert_eq!(s, 204);
    let (s, _) = call(
        &http,
        &vault,
        "POST",
        "auth/ldap/config",
        Some(&root),
        Some(
            json!({"url": "ldap://directory", "userdn": "ou=Users,dc=example", "token_ttl": "5m"}),
        ),
    )
    .await;
    assert_eq!(s, 204);
    let (s, _) = call(
        &http,
        &vault,
        "POST",
        "auth/ldap/users/bob",
        Some(&root),
        Some(json!({"policies": "ops"})),
    )
    .await;
    assert_eq!(s, 204);
    let (s, _) = call(
        &http,
        &vault,
        "POST",
        "auth/ldap/groups/admins",
        Some(&root),
        Some(json!({"policies": ["admin"]})),
    )
    .await;
    assert_eq!(s, 204);
    vault
        .ldap_set_user("ldap", "bob", "pw", &["admins"])
        .unwrap();

    let (s, body) = call(
        &http,
        &vault,
        "POST",
        "auth/ldap/login/bob",
        None,
        Some(json!({"password": "pw"})),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["auth"]["policies"], json!(["admin", "default", "ops"]));
    assert_eq!(body["auth"]["metadata"]["username"], "bob");
    assert_eq!(body["auth"]["lease_duration"], 300);
    assert!(body["data"].is_null());

    let (s, body) = call(
        &http,
        &vault,
        "POST",
        "auth/ldap/login/bob",
        None,
        Some(json!({"password": "bad"})),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(
        errors(&body),
        vec!["ldap operation failed: failed to bind as user"]
    );
    let (s, _) = call(
        &http,
        &vault,
        "POST",
        "auth/ldap/login/nobody",
        None,
        Some(json!({"password": "pw"})),
    )
    .await;
    assert_eq!(s, 400);
    let (s, body) = call(
        &http,
        &vault,
        "GET",
        "auth/ldap/users/bob",
        Some(&root),
        None,
    )
    .await;
    assert_eq!((s, body["data"]["policies"].clone()), (200, json!(["ops"])));
}

#[tokio::test]
async fn jwt_login_with_static_keys() {
    let vault = start().await;
    let root = client(&vault, &vault.root_token());
    within(sys::auth::enable(&root, "jwt", "jwt", None))
        .await
        .unwrap();
    let ec = ec_key();
    within(oidc::config::set(
        &root,
        "jwt",
        Some(
            SetConfigurationRequest::builder()
                .jwt_validation_pubkeys(vec![ec.public_pem.clone(), RSA_PUB.to_string()])
                .bound_issuer("https://issuer.test"),
        ),
    ))
    .await
    .unwrap();
    within(oidc::role::set(
        &root,
        "jwt",
        "ci",
        "sub",
        vec![],
        Some(
            SetRoleRequest::builder()
                .role_type("jwt")
                .bound_audiences(vec!["vault".to_string()])
                .bound_subject("repo:org/app")
                .token_policies(vec!["ci".to_string()])
                .token_ttl("15m"),
        ),
    ))
    .await
    .unwrap();

    let claims = json!({"iss": "https://issuer.test", "sub": "repo:org/app", "aud": "vault", "exp": now() + 300, "nbf": now() - 10});
    let auth = within(oidc::login(
        &root,
        "jwt",
        &es256(&ec, None, &claims),
        Some("ci".into()),
    ))
    .await
    .unwrap();
    assert_eq!(auth.policies, vec!["ci", "default"]);
    assert_eq!(auth.lease_duration, 900);
    assert_eq!(auth.metadata.unwrap()["role"], "ci");
    let rsa = rsa_key();
    within(oidc::login(
        &root,
        "jwt",
        &rs256(&rsa, None, &claims),
        Some("ci".into()),
    ))
    .await
    .unwrap();

    let http = raw(&vault);
    let login = |jwt: String| {
        let http = http.clone();
        let vault = vault.clone();
        async move {
            call(
                &http,
                &vault,
                "POST",
                "auth/jwt/login",
                None,
                Some(json!({"role": "ci", "jwt": jwt})),
            )
            .await
        }
    };
    // Expired beyond the leeways.
    let mut bad = claims.clone();
    bad["exp"] = json!(now() - 600);
    let (s, body) = login(es256(&ec, None, &bad)).await;
    assert_eq!(s, 400);
    assert!(errors(&body)[0].contains("expired"), "{body}");
    // Wrong audience.
    let mut bad = claims.clone();
    bad["aud"] = json!(["other"]);
    let (s, body) = login(es256(&ec, None, &bad)).await;
    assert_eq!(
        (s, errors(&body)),
        (
            400,
            vec![
                "error validating claims: aud claim does not match any bound audience".to_string()
            ]
        )
    );
    // Wrong subject.
    let mut bad = claims.clone();
    bad["sub"] = json!("repo:org/other");
    let (s, body) = login(es256(&ec, None, &bad)).await;
    assert_eq!(
        (s, errors(&body)),
        (
            400,
            vec!["error validating claims: sub claim does not match bound subject".to_string()]
        )
    );
    // Wrong issuer.
    let mut bad = claims.clone();
    bad["iss"] = json!("https://evil");
    let (s, _) = login(es256(&ec, None, &bad)).await;
    assert_eq!(s, 400);
    // Signed by a key the server does not know.
    let (s, body) = login(es256(&ec_key(), None, &claims)).await;
    assert_eq!(s, 400);
    assert!(errors(&body)[0].starts_with("error validating token"));
    // Tampered payload.
    let good = es256(&ec, None, &claims);
    let parts: Vec<&str> = good.split('.').collect();
    let forged = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&json!({"iss": "https://issuer.test", "sub": "repo:org/app", "aud": "vault", "exp": now() + 9999})).unwrap());
    let (s, _) = login(format!("{}.{}.{}", parts[0], forged, parts[2])).await;
    assert_eq!(s, 400);
    // Unknown role.
    let (s, body) = call(
        &http,
        &vault,
        "POST",
        "auth/jwt/login",
        None,
        Some(json!({"role": "nope", "jwt": good})),
    )
    .await;
    assert_eq!(
        (s, errors(&body)),
        (400, vec!["role \"nope\" could not be found".to_string()])
    );
    // Roles of type jwt need a bound constraint and a user claim.
    let (s, _) = call(
        &http,
        &vault,
        "POST",
        "auth/jwt/role/loose",
        Some(&vault.root_token()),
        Some(json!({"role_type": "jwt", "user_claim": "sub"})),
    )
    .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn jwt_login_with_jwks_over_https() {
    let vault = start().await;
    let rsa = rsa_key();
    let ec = ec_key();
    let comps = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(rsa.public());
    let point = ec.kp.public_key().as_ref().to_vec();
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "rsa1", "use": "sig", "alg": "RS256", "n": URL_SAFE_NO_PAD.encode(&comps.n), "e": URL_SAFE_NO_PAD.encode(&comps.e)},
        {"kty": "EC", "kid": "ec1", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])},
    ]});
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = hits.clone();
    let router = axum::Router::new().route(
        "/jwks",
        get(move || {
            let jwks = jwks.clone();
            h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move { Json(jwks) }
        }),
    );
    let (url, ca) = https_server(router).await;
    vault.enable_auth("jwt", "jwt").unwrap();
    let http = raw(&vault);
    let root = vault.root_token();
    let (s, body) = call(
        &http,
        &vault,
        "POST",
        "auth/jwt/config",
        Some(&root),
        Some(json!({"jwks_url": format!("{url}/jwks"), "jwks_ca_pem": ca})),
    )
    .await;
    assert_eq!(s, 204, "{body}");
    let (s, body) = call(&http, &vault, "POST", "auth/jwt/role/k", Some(&root), Some(json!({"role_type": "jwt", "user_claim": "sub", "bound_audiences": "vault", "token_policies": "kp"}))).await;
    assert_eq!(s, 204, "{body}");
    let claims = json!({"sub": "svc", "aud": ["vault", "x"], "exp": now() + 60});
    for jwt in [
        rs256(&rsa, Some("rsa1"), &claims),
        es256(&ec, Some("ec1"), &claims),
    ] {
        let (s, body) = call(
            &http,
            &vault,
            "POST",
            "auth/jwt/login",
            None,
            Some(json!({"role": "k", "jwt": jwt})),
        )
        .await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(body["auth"]["policies"], json!(["default", "kp"]));
    }
    // Keys are cached between logins.
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    // A kid that matches no published key fails.
    let (s, _) = call(
        &http,
        &vault,
        "POST",
        "auth/jwt/login",
        None,
        Some(json!({"role": "k", "jwt": es256(&ec_key(), Some("ec1"), &claims)})),
    )
    .await;
    assert_eq!(s, 400);
    // A JWKS server not signed by jwks_ca_pem is not trusted.
    let (other_url, _) = https_server(
        axum::Router::new().route("/jwks", get(|| async { Json(json!({"keys": []})) })),
    )
    .await;
    let (s, _) = call(
        &http,
        &vault,
        "POST",
        "auth/jwt/config",
        Some(&root),
        Some(json!({"jwks_url": format!("{other_url}/jwks"), "jwks_ca_pem": ca})),
    )
    .await;
    assert_eq!(s, 204);
    let (s, body) = call(
        &http,
        &vault,
        "POST",
        "auth/jwt/login",
        None,
        Some(json!({"role": "k", "jwt": rs256(&rsa, Some("rsa1"), &claims)})),
    )
    .await;
    assert_eq!(s, 400);
    assert!(errors(&body)[0].contains("JWKS"), "{body}");
}

struct ClientCert {
    cert_pem: String,
    key_pem: String,
}

fn client_cert(
    cn: &str,
    issuer: Option<&(rcgen::CertificateParams, rcgen::KeyPair)>,
) -> ClientCert {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = match issuer {
        Some((ip, ik)) => params
            .signed_by(&key, &rcgen::Issuer::from_params(ip, ik))
            .unwrap(),
        None => params.self_signed(&key).unwrap(),
    };
    ClientCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn cert_client(
    vault: &vault_emulator::VaultEmulator,
    cc: &ClientCert,
) -> vaultrs::client::VaultClient {
    let ca = TempFile::new("ca.pem", &vault.ca_pem().unwrap());
    let mut b = vaultrs::client::VaultClientSettingsBuilder::default();
    b.address(vault.addr())
        .token("")
        .timeout(Some(std::time::Duration::from_secs(10)))
        .ca_certs(vec![ca.path.clone()])
        .identity(Some(
            reqwest::Identity::from_pem(format!("{}{}", cc.cert_pem, cc.key_pem).as_bytes())
                .unwrap(),
        ));
    vaultrs::client::VaultClient::new(b.build().unwrap()).unwrap()
}

#[tokio::test]
async fn cert_login_over_tls() {
    let vault = start_tls().await;
    assert!(vault.addr().starts_with("https://127.0.0.1:"));
    let root = client(&vault, &vault.root_token());
    within(sys::auth::enable(&root, "cert", "cert", None))
        .await
        .unwrap();

    // A CA-issued client certificate trusted through its CA.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "client CA");
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let ca = (ca_params, ca_key);
    within(cert::ca_cert_role::set(
        &root,
        "cert",
        "web",
        &ca_pem,
        Some(CreateCaCertificateRoleRequest::builder().token_policies(vec!["web".to_string()])),
    ))
    .await
    .unwrap();
    // A self-signed leaf trusted as itself.
    let leaf = client_cert("standalone", None);
    within(cert::ca_cert_role::set(
        &root,
        "cert",
        "leaf",
        &leaf.cert_pem,
        Some(CreateCaCertificateRoleRequest::builder().token_policies(vec!["leaf".to_string()])),
    ))
    .await
    .unwrap();

    let issued = client_cert("web.example", Some(&ca));
    let auth = within(cert::login(&cert_client(&vault, &issued), "cert", "web"))
        .await
        .unwrap();
    assert_eq!(auth.policies, vec!["default", "web"]);
    let meta = auth.metadata.unwrap();
    assert_eq!(meta["cert_name"], "web");
    assert_eq!(meta["common_name"], "web.example");

    let auth = within(cert::login(&cert_client(&vault, &leaf), "cert", "leaf"))
        .await
        .unwrap();
    assert_eq!(auth.policies, vec!["default", "leaf"]);

    // An untrusted certificate is refused.
    let stranger = client_cert("stranger", None);
    let err = within(cert::login(&cert_client(&vault, &stranger), "cert", "web"))
        .await
        .unwrap_err();
    assert_eq!(api_status(&err), Some(400));

    // No client certificate at all: the TLS handshake still succeeds and
    // the login is refused by the auth method.
    let http = raw(&vault);
    let (s, body) = call(
        &http,
        &vault,
        "POST",
        "auth/cert/login",
        None,
        Some(json!({"name": "web"})),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(errors(&body), vec!["client certificate must be supplied"]);
    // And normal API calls work over TLS without one.
    let (s, _) = call(&http, &vault, "GET", "sys/health", None, None).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn jwt_login_with_oidc_discovery() {
    let vault = start().await;
    let ec = ec_key();
    let point = ec.kp.public_key().as_ref().to_vec();
    let jwks = json!({"keys": [
        {"kty": "EC", "kid": "k1", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])},
    ]});
    // The discovery document names the server's own URL, known once it listens.
    let base = Arc::new(std::sync::OnceLock::<String>::new());
    let b = base.clone();
    let router = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || {
                let issuer = b.get().cloned().unwrap_or_default();
                async move {
                    Json(json!({"issuer": issuer, "jwks_uri": format!("{issuer}/openid/v1/jwks")}))
                }
            }),
        )
        .route(
            "/openid/v1/jwks",
            get(move || {
                let jwks = jwks.clone();
                async move { Json(jwks) }
            }),
        );
    let (url, ca) = https_server(router).await;
    base.set(url.clone()).unwrap();

    vault.enable_auth("jwt", "jwt").unwrap();
    let http = raw(&vault);
    let root = vault.root_token();
    let (s, body) = call(
        &http,
        &vault,
        "POST",
        "auth/jwt/config",
        Some(&root),
        Some(json!({"oidc_discovery_url": url, "oidc_discovery_ca_pem": ca})),
    )
    .await;
    assert_eq!(s, 204, "{body}");
    let (s, _) = call(&http, &vault, "POST", "auth/jwt/role/sa", Some(&root), Some(json!({"role_type": "jwt", "user_claim": "sub", "bound_audiences": ["vault"], "token_policies": ["p"]}))).await;
    assert_eq!(s, 204);
    let claims = json!({"iss": url, "sub": "system:serviceaccount:apps:web", "aud": "vault", "exp": now() + 60});
    let (s, body) = call(
        &http,
        &vault,
        "POST",
        "auth/jwt/login",
        None,
        Some(json!({"role": "sa", "jwt": es256(&ec, Some("k1"), &claims)})),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["auth"]["policies"], json!(["default", "p"]));
    // Signed by the right key but issued by another provider.
    let mut other = claims.clone();
    other["iss"] = json!("https://elsewhere");
    let (s, body) = call(
        &http,
        &vault,
        "POST",
        "auth/jwt/login",
        None,
        Some(json!({"role": "sa", "jwt": es256(&ec, Some("k1"), &other)})),
    )
    .await;
    assert_eq!(s, 400);
    assert!(errors(&body)[0].contains("different provider"), "{body}");
    // Exactly one key source may be configured.
    let (s, _) = call(
        &http,
        &vault,
        "POST",
        "auth/jwt/config",
        Some(&root),
        Some(json!({"oidc_discovery_url": url, "jwks_url": format!("{url}/openid/v1/jwks")})),
    )
    .await;
    assert_eq!(s, 400);
}
