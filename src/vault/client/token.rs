//! Token life: renewal from two thirds of the TTL, a new login when renewal is not possible or
//! Vault says the token is dead, and revocation when the client is retired.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use zeroize::Zeroizing;

use super::StoreClient;
use crate::vault::VaultError;
use crate::vault::auth::{self, LoginToken};
use crate::vault::http::Req;

/// A renewal that leaves less than this fraction of the login TTL means the token is near its
/// max TTL: log in again instead of renewing ever more often.
const MIN_RENEW_FRACTION: u32 = 3;
/// Pause between attempts to replace a token that is due for renewal but still valid.
const REFRESH_HOLD: Duration = Duration::from_secs(10);

/// The current token of a client. Never printed.
pub(super) struct TokenState {
    token: Zeroizing<String>,
    generation: u64,
    obtained: Instant,
    ttl: Option<Duration>,
    login_ttl: Option<Duration>,
    renewable: bool,
    from_login: bool,
    /// After a failed renewal and re-login, the still valid token is used without new
    /// attempts until then, so that a broken credential does not cause a login per call.
    hold_until: Option<Instant>,
}

impl TokenState {
    pub(super) fn from_login(t: LoginToken, generation: u64) -> Self {
        TokenState {
            token: t.token,
            generation,
            obtained: Instant::now(),
            ttl: t.ttl,
            login_ttl: t.ttl,
            renewable: t.renewable,
            from_login: t.from_login,
            hold_until: None,
        }
    }

    /// Still usable without renewal: static tokens and tokens without TTL always; others
    /// until two thirds of their TTL.
    fn fresh(&self, now: Instant) -> bool {
        if self.hold_until.is_some_and(|h| now < h) && !self.expired(now) {
            return true;
        }
        match self.ttl {
            Some(ttl) if self.from_login && !ttl.is_zero() => {
                now.duration_since(self.obtained) < ttl * 2 / 3
            }
            _ => true,
        }
    }

    fn expired(&self, now: Instant) -> bool {
        match self.ttl {
            Some(ttl) if self.from_login && !ttl.is_zero() => {
                now.duration_since(self.obtained) >= ttl
            }
            _ => false,
        }
    }
}

impl StoreClient {
    /// A usable token, renewing (`auth/token/renew-self`) from two thirds of its TTL or
    /// logging in again when it cannot be renewed.
    pub(super) async fn token(&self) -> Result<(Zeroizing<String>, u64), VaultError> {
        {
            let st = self.state.read().await;
            if st.fresh(Instant::now()) {
                return Ok((st.token.clone(), st.generation));
            }
        }
        let _guard = self.refresh.lock().await;
        let (token, generation, renewable, expired, login_ttl) = {
            let st = self.state.read().await;
            let now = Instant::now();
            if st.fresh(now) {
                return Ok((st.token.clone(), st.generation));
            }
            (
                st.token.clone(),
                st.generation,
                st.renewable,
                st.expired(now),
                st.login_ttl,
            )
        };
        if renewable && !expired {
            match self.renew(&token).await {
                Ok((ttl, renewable)) if login_ttl.is_none_or(|l| ttl * MIN_RENEW_FRACTION > l) => {
                    let mut st = self.state.write().await;
                    st.obtained = Instant::now();
                    st.ttl = Some(ttl);
                    st.renewable = renewable;
                    return Ok((st.token.clone(), st.generation));
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::info!(store = %self.store.display(), error = %e, "token renewal failed; logging in again");
                }
            }
        }
        match self.replace_token(generation).await {
            Ok(r) => Ok(r),
            // The old token still has up to a third of its TTL: keep working with it.
            Err(e) if !expired => {
                tracing::warn!(store = %self.store.display(), error = %e, "re-login failed; using the current token until it expires");
                self.state.write().await.hold_until = Some(Instant::now() + REFRESH_HOLD);
                Ok((token, generation))
            }
            Err(e) => Err(e),
        }
    }

    /// Logs in again (caller holds `refresh`); revokes the replaced token if it was ours.
    async fn replace_token(&self, generation: u64) -> Result<(Zeroizing<String>, u64), VaultError> {
        if self.retired.load(Ordering::Acquire) {
            return Err(VaultError::Unavailable {
                message: format!(
                    "the client of {} was replaced by a newer version of the store; retry",
                    self.store.display()
                ),
            });
        }
        let t = Self::do_login(
            &self.env,
            &self.store,
            &self.es_namespace,
            self.kind,
            &self.transport,
            self.login_namespace.as_deref(),
        )
        .await?;
        let mut st = self.state.write().await;
        let old = std::mem::replace(&mut *st, TokenState::from_login(t, generation + 1));
        let out = (st.token.clone(), st.generation);
        drop(st);
        if old.from_login && !old.expired(Instant::now()) && old.token != out.0 {
            let _ = self.revoke_token(&old.token).await;
        }
        Ok(out)
    }

    /// After a 403: whether the token itself is dead (revoked or expired), checked with
    /// lookup-self, so that a genuine permission denial does not cause a login.
    pub(super) async fn token_dead(&self, token: &str) -> Result<bool, VaultError> {
        let reply = self
            .transport
            .send(&Req {
                call: "lookup_self",
                method: Method::GET,
                path: "auth/token/lookup-self",
                query: None,
                token: Some(token),
                namespace: Some(self.login_namespace.as_deref()),
                body: None,
            })
            .await?;
        // Only Vault's own refusal counts; a proxy's error page says nothing about the token.
        Ok(matches!(reply.status, 401 | 403) && reply.body.is_object())
    }

    pub(super) async fn relogin_after(&self, generation: u64) -> Result<(), VaultError> {
        let _guard = self.refresh.lock().await;
        if self.state.read().await.generation != generation {
            return Ok(());
        }
        self.replace_token(generation).await.map(|_| ())
    }

    async fn renew(&self, token: &str) -> Result<(Duration, bool), VaultError> {
        let body = json!({});
        let reply = self
            .transport
            .send(&Req {
                call: "renew_self",
                method: Method::POST,
                path: "auth/token/renew-self",
                query: None,
                token: Some(token),
                namespace: Some(self.login_namespace.as_deref()),
                body: Some(&body),
            })
            .await?;
        let t = auth::login_reply(self.kind, "auth/token/renew-self", reply)?;
        Ok((t.ttl.unwrap_or_default(), t.renewable))
    }

    async fn revoke_token(&self, token: &str) -> Result<(), VaultError> {
        let reply = self
            .transport
            .send(&Req {
                call: "revoke_self",
                method: Method::POST,
                path: "auth/token/revoke-self",
                query: None,
                token: Some(token),
                namespace: Some(self.login_namespace.as_deref()),
                body: None,
            })
            .await?;
        if (200..300).contains(&reply.status) {
            Ok(())
        } else {
            Err(self.status_error(
                "revoke-self",
                &Method::POST,
                "auth/token/revoke-self",
                &reply,
            ))
        }
    }

    /// Revokes the client's token if it came from a login, and refuses further logins.
    pub(super) async fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        let _guard = self.refresh.lock().await;
        let st = self.state.read().await;
        if st.from_login
            && !st.expired(Instant::now())
            && let Err(e) = self.revoke_token(&st.token).await
        {
            tracing::info!(store = %self.store.display(), error = %e, "revoking the Vault token failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_freshness() {
        // Ahead of the real clock, so that subtracting ages cannot underflow.
        let now = Instant::now() + Duration::from_secs(20_000);
        let st = |ttl: Option<u64>, from_login: bool, age: u64| TokenState {
            token: Zeroizing::new("t".into()),
            generation: 0,
            obtained: now - Duration::from_secs(age),
            ttl: ttl.map(Duration::from_secs),
            login_ttl: ttl.map(Duration::from_secs),
            renewable: true,
            from_login,
            hold_until: None,
        };
        assert!(st(Some(300), true, 100).fresh(now));
        assert!(!st(Some(300), true, 200).fresh(now));
        assert!(!st(Some(300), true, 200).expired(now));
        assert!(st(Some(300), true, 300).expired(now));
        assert!(st(Some(0), true, 10_000).fresh(now));
        assert!(st(None, false, 10_000).fresh(now));
        assert!(st(Some(300), false, 10_000).fresh(now));
        let mut held = st(Some(300), true, 250);
        held.hold_until = Some(now + Duration::from_secs(5));
        assert!(held.fresh(now));
        let mut held_expired = st(Some(300), true, 301);
        held_expired.hold_until = Some(now + Duration::from_secs(5));
        assert!(!held_expired.fresh(now));
    }
}
