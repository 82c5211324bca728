//! A logged-in Vault client for one store identity: its connection, its login, and the one
//! authenticated call every operation goes through. The operations live beside it: token life
//! (`token.rs`), shared reads (`reads.rs`), KV (`kv.rs`), store checks (`checks.rs`) and leases
//! (`lease.rs`); the
//! clients of all store identities are cached in `cache.rs`.

mod cache;
mod checks;
mod evict;
mod generate;
mod kv;
mod lease;
mod push;
mod reads;
mod token;

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use reqwest::Method;
use tokio::sync::RwLock;

use super::auth::{self, AuthKind, LoginToken, Resolver};
use super::http::{self, Reply, Req, RetryPolicy, Transport};
use super::paths;
use super::{StoreHandle, VaultError};
use crate::api::VaultKvVersion;
use crate::metrics::Metrics;

pub use cache::VaultClients;
pub use evict::Limits;
pub use lease::{LeaseInfo, RenewOutcome, Renewed};
use reads::Reads;
pub use reads::{MAX_READ_REUSE, READ_SHARE_WINDOW, ReadReuse, with_read_reuse};
use token::TokenState;

struct Env {
    kube: kube::Client,
    metrics: Metrics,
    logins: AtomicU64,
    /// The HTTP client of every store that trusts the system's roots with no client
    /// certificate (see [`http::client_for`]). Kept here rather than for the whole process:
    /// a client's pooled connections belong to the runtime that opened them.
    http: OnceLock<reqwest::Client>,
}

/// A logged-in Vault client for one store identity.
pub struct StoreClient {
    env: Arc<Env>,
    store: StoreHandle,
    es_namespace: String,
    kind: AuthKind,
    transport: Transport,
    login_namespace: Option<String>,
    kv_version: VaultKvVersion,
    mount: Option<String>,
    state: RwLock<TokenState>,
    refresh: tokio::sync::Mutex<()>,
    retired: AtomicBool,
    reads: Mutex<Reads>,
}

impl StoreClient {
    async fn connect(
        env: Arc<Env>,
        store: StoreHandle,
        es_namespace: &str,
    ) -> Result<Arc<StoreClient>, VaultError> {
        let p = store
            .spec
            .provider
            .vault
            .as_ref()
            .ok_or_else(|| VaultError::config("spec.provider.vault is not set"))?;
        let kind = auth::auth_kind(p.auth.as_ref())?;
        let resolver = Resolver {
            kube: &env.kube,
            store: &store,
            es_namespace,
        };
        let tls = resolver.tls_material(p).await?;
        let retry = RetryPolicy::from_settings(store.spec.retry_settings.as_ref())?;
        let transport = Transport::new(
            &p.server,
            p.namespace.clone(),
            p.headers.as_ref(),
            p.read_your_writes == Some(true) && p.forward_inconsistent == Some(true),
            http::client_for(&tls, &env.http)?,
            retry,
            env.metrics.clone(),
        )?;
        let login_namespace = p
            .auth
            .as_ref()
            .and_then(|a| a.namespace.clone())
            .filter(|n| !n.is_empty())
            .or_else(|| p.namespace.clone());
        let token = Self::do_login(
            &env,
            &store,
            es_namespace,
            kind,
            &transport,
            login_namespace.as_deref(),
        )
        .await?;
        Ok(Arc::new(StoreClient {
            kv_version: p.version.unwrap_or_default(),
            mount: paths::mount_of(p.path.as_deref()),
            env,
            es_namespace: es_namespace.to_string(),
            kind,
            transport,
            login_namespace,
            state: RwLock::new(TokenState::from_login(token, 0)),
            refresh: tokio::sync::Mutex::new(()),
            retired: AtomicBool::new(false),
            reads: Mutex::new(Reads::default()),
            store,
        }))
    }

    async fn do_login(
        env: &Env,
        store: &StoreHandle,
        es_namespace: &str,
        kind: AuthKind,
        transport: &Transport,
        login_namespace: Option<&str>,
    ) -> Result<LoginToken, VaultError> {
        let resolver = Resolver {
            kube: &env.kube,
            store,
            es_namespace,
        };
        let t = auth::login(
            &resolver,
            kind,
            transport,
            login_namespace,
            &env.metrics,
            &env.logins,
        )
        .await;
        match &t {
            Ok(_) => tracing::debug!(store = %store.display(), method = kind.name(), "Vault login"),
            Err(e) => {
                tracing::warn!(store = %store.display(), method = kind.name(), error = %e, "Vault login failed")
            }
        }
        t
    }

    pub fn kv_version(&self) -> VaultKvVersion {
        self.kv_version
    }

    pub fn mount(&self) -> Option<&str> {
        self.mount.as_deref()
    }

    /// The store this client logged in for.
    pub fn store(&self) -> &StoreHandle {
        &self.store
    }

    /// One authenticated call; on 403 with a dead token, logs in again once and retries.
    async fn call(&self, req: Req<'_>) -> Result<Reply, VaultError> {
        let (token, generation) = self.token().await?;
        let reply = self
            .transport
            .send(&Req {
                token: Some(&token),
                ..clone_req(&req)
            })
            .await?;
        if !matches!(reply.status, 401 | 403) || !self.token_dead(&token).await? {
            return Ok(reply);
        }
        tracing::info!(store = %self.store.display(), "Vault token no longer valid; logging in again");
        self.relogin_after(generation).await?;
        let (token, _) = self.token().await?;
        let reply = self
            .transport
            .send(&Req {
                token: Some(&token),
                ..req
            })
            .await?;
        if matches!(reply.status, 401 | 403) && self.token_dead(&token).await? {
            // Only a static token can still be dead here: the Secret holds a stale one.
            let advice = if self.kind == AuthKind::Token {
                "put a valid token into the Secret referenced by tokenSecretRef"
            } else {
                "check the auth method's token policies and TTLs"
            };
            return Err(VaultError::Auth {
                method: self.kind.name().into(),
                message: format!(
                    "the Vault token is revoked or expired (auth/token/lookup-self answered \
                     HTTP 403): {advice}"
                ),
            });
        }
        Ok(reply)
    }

    fn status_error(&self, call: &str, method: &Method, path: &str, reply: &Reply) -> VaultError {
        match reply.status {
            // Not Vault's error body: whatever answered, the status proves nothing about the
            // secret or the policy.
            s if reply.not_json.is_some() => {
                VaultError::bad_answer(format!("{method} {path}: HTTP {s}{}", reply.detail()))
            }
            404 => VaultError::NotFound {
                path: path.to_string(),
            },
            401 | 403 => VaultError::PermissionDenied {
                path: path.to_string(),
                call: call.to_string(),
            },
            s => VaultError::invalid(format!(
                "{method} {path}: Vault answered HTTP {s}{}",
                reply.detail()
            )),
        }
    }
}

fn clone_req<'a>(r: &Req<'a>) -> Req<'a> {
    Req {
        call: r.call,
        method: r.method.clone(),
        path: r.path,
        query: r.query,
        token: r.token,
        namespace: r.namespace,
        body: r.body,
    }
}
