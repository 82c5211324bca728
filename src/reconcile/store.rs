//! The SecretStore / ClusterSecretStore controller: logs in to Vault and looks the token up,
//! reports the result in the store's status, and does it again every `refreshInterval`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::events::{Event, EventType};
use futures::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::external_secret::{class_matches, stable_identity};
use super::refresh;
use super::status::{self, StoreOutcome};
use super::{Error, Shared};
use crate::api::{
    ClusterSecretStore, SecretStore, SecretStoreSpec, SecretStoreStatus, StoreKind, VaultProvider,
    duration,
};
use crate::vault::StoreHandle;

/// ESO's default store re-validation period.
const DEFAULT_REFRESH: Duration = Duration::from_secs(300);

/// Consecutive validation failures per store, for backoff.
pub(crate) type StoreFailures = Mutex<HashMap<String, u32>>;

/// What the two store kinds have in common here.
pub(crate) trait StoreObject:
    Resource<DynamicType = ()>
    + Clone
    + DeserializeOwned
    + Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    const KIND: StoreKind;
    fn spec(&self) -> &SecretStoreSpec;
    fn status(&self) -> Option<&SecretStoreStatus>;
    fn handle(&self) -> StoreHandle;
    fn api(client: kube::Client, namespace: Option<&str>) -> Api<Self>;
}

impl StoreObject for SecretStore {
    const KIND: StoreKind = StoreKind::SecretStore;
    fn spec(&self) -> &SecretStoreSpec {
        &self.spec
    }
    fn status(&self) -> Option<&SecretStoreStatus> {
        self.status.as_ref()
    }
    fn handle(&self) -> StoreHandle {
        StoreHandle::from_secret_store(self)
    }
    fn api(client: kube::Client, namespace: Option<&str>) -> Api<Self> {
        Api::namespaced(client, namespace.unwrap_or_default())
    }
}

impl StoreObject for ClusterSecretStore {
    const KIND: StoreKind = StoreKind::ClusterSecretStore;
    fn spec(&self) -> &SecretStoreSpec {
        &self.spec.store
    }
    fn status(&self) -> Option<&SecretStoreStatus> {
        self.status.as_ref()
    }
    fn handle(&self) -> StoreHandle {
        StoreHandle::from_cluster_store(self)
    }
    fn api(client: kube::Client, _namespace: Option<&str>) -> Api<Self> {
        Api::all(client)
    }
}

/// `spec.refreshInterval`: seconds, or a Go duration; default 5m; zero: validate once.
pub fn refresh_interval(v: Option<&IntOrString>) -> Result<Duration, String> {
    match v {
        None => Ok(DEFAULT_REFRESH),
        Some(IntOrString::Int(n)) if *n >= 0 => Ok(Duration::from_secs(*n as u64)),
        Some(IntOrString::Int(n)) => Err(format!("spec.refreshInterval {n} is negative")),
        Some(IntOrString::String(s)) => match s.parse::<u64>() {
            Ok(n) => Ok(Duration::from_secs(n)),
            Err(_) => duration::parse(s).map_err(|e| format!("spec.refreshInterval: {e}")),
        },
    }
}

/// Whether a ClusterSecretStore takes its credentials from each ExternalSecret's namespace
/// (references without a namespace), so that no single login can validate it.
pub fn is_referent(kind: StoreKind, p: &VaultProvider) -> bool {
    kind == StoreKind::ClusterSecretStore && crate::vault::has_referent_refs(p)
}

fn store_key<K: StoreObject>(s: &K) -> String {
    format!(
        "{}/{}/{}",
        K::KIND.as_str(),
        s.namespace().unwrap_or_default(),
        s.name_any()
    )
}

async fn validate<K: StoreObject>(s: &K, sh: &Shared) -> StoreOutcome {
    let spec = s.spec();
    let Some(provider) = spec.provider.vault.as_ref() else {
        return StoreOutcome::ClientFailed(
            "spec.provider.vault is not set: vaultgate only serves the Vault provider".into(),
        );
    };
    if is_referent(K::KIND, provider) {
        return StoreOutcome::Referent;
    }
    let mut handle = s.handle();
    stable_identity(&mut handle, s.meta());
    let ns = s.namespace().unwrap_or_default();
    let client = match sh.vault.client(&handle, &ns).await {
        Ok(c) => c,
        Err(e) => return StoreOutcome::ClientFailed(e.to_string()),
    };
    match client.lookup_self().await {
        Ok(_) => StoreOutcome::Valid,
        Err(e) => StoreOutcome::ValidationFailed(e.to_string()),
    }
}

pub(crate) async fn reconcile<K: StoreObject>(s: Arc<K>, sh: Arc<Shared>) -> Result<Action, Error> {
    if !class_matches(s.spec().controller.as_deref(), &sh.cfg.controller_class) {
        return Ok(Action::await_change());
    }
    let key = store_key(s.as_ref());
    let interval = refresh_interval(s.spec().refresh_interval.as_ref());
    let outcome = match &interval {
        Err(e) => StoreOutcome::ClientFailed(e.clone()),
        Ok(_) => validate(s.as_ref(), &sh).await,
    };
    let ok = matches!(outcome, StoreOutcome::Valid | StoreOutcome::Referent);
    sh.metrics
        .store_ready
        .with_label_values(&[
            K::KIND.as_str(),
            s.namespace().unwrap_or_default().as_str(),
            s.name_any().as_str(),
        ])
        .set(ok as i64);

    let new = status::store_status(s.status(), &outcome, Timestamp::now());
    let was_ready = s
        .status()
        .and_then(|st| status::ready_status(&st.conditions));
    if status::differs(s.status(), &new) {
        let api = K::api(sh.kube.clone(), s.namespace().as_deref());
        api.patch_status(
            &s.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": new })),
        )
        .await?;
        if was_ready != Some(ok) {
            let cond = &new.conditions[0];
            let ev = Event {
                type_: if ok {
                    EventType::Normal
                } else {
                    EventType::Warning
                },
                reason: cond.reason.clone().unwrap_or_default(),
                note: cond.message.clone(),
                action: "Validate".into(),
                secondary: None,
            };
            sh.events.send(ev, s.object_ref(&()));
        }
    }
    if !ok {
        tracing::warn!(store = %key, status = ?new.conditions.first().and_then(|c| c.message.clone()), "store not ready");
    }

    let mut failures = sh.store_failures.lock().unwrap_or_else(|p| p.into_inner());
    let interval = interval.unwrap_or(DEFAULT_REFRESH);
    if ok {
        failures.remove(&key);
        return Ok(if interval.is_zero() {
            Action::await_change()
        } else {
            Action::requeue(interval)
        });
    }
    let n = failures.entry(key).or_default();
    *n = n.saturating_add(1);
    let mut delay = refresh::backoff(*n);
    if !interval.is_zero() {
        delay = delay.min(interval);
    }
    Ok(Action::requeue(delay))
}

pub(crate) fn error_policy<K: StoreObject>(s: Arc<K>, err: &Error, _sh: Arc<Shared>) -> Action {
    tracing::warn!(store = %store_key(s.as_ref()), error = %err, "store reconcile failed");
    Action::requeue(refresh::BACKOFF_BASE)
}

/// Forgets a deleted store's metric series.
pub(crate) fn forget<K: StoreObject>(sh: &Shared, s: &K) {
    let _ = sh.metrics.store_ready.remove_label_values(&[
        K::KIND.as_str(),
        s.namespace().unwrap_or_default().as_str(),
        s.name_any().as_str(),
    ]);
    sh.store_failures
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&store_key(s));
}

/// Runs one store controller until `stop` is cancelled.
pub(crate) async fn run<K: StoreObject>(
    sh: Arc<Shared>,
    reader: Store<K>,
    stream: impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
    stop: tokio_util::sync::CancellationToken,
) {
    let controller = Controller::for_stream(stream, reader.clone())
        .with_config(kube::runtime::controller::Config::default().concurrency(4))
        .graceful_shutdown_on(stop.clone().cancelled_owned())
        // Boxed for the reason the ExternalSecret controller boxes its reconciles: the future
        // (four kilobytes) is moved several times on its way through kube-runtime and tokio.
        .run(
            |s, sh| Box::pin(reconcile::<K>(s, sh)),
            error_policy::<K>,
            sh,
        )
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "store controller");
            }
        });
    super::until_stopped(controller, &reader, &stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SecretKeySelector;
    use crate::api::VaultAuth;

    #[test]
    fn refresh_intervals() {
        let cases = [
            (None, Ok(300)),
            (Some(IntOrString::Int(30)), Ok(30)),
            (Some(IntOrString::Int(0)), Ok(0)),
            (Some(IntOrString::String("90".into())), Ok(90)),
            (Some(IntOrString::String("1m30s".into())), Ok(90)),
            (Some(IntOrString::Int(-1)), Err(())),
            (Some(IntOrString::String("soon".into())), Err(())),
        ];
        for (v, want) in cases {
            let got = refresh_interval(v.as_ref())
                .map(|d| d.as_secs())
                .map_err(|_| ());
            assert_eq!(got, want, "{v:?}");
        }
    }

    #[test]
    fn referent_cluster_stores() {
        let token = |ns: Option<&str>| VaultProvider {
            server: "https://vault".into(),
            auth: Some(VaultAuth {
                token_secret_ref: Some(SecretKeySelector {
                    name: Some("vault-token".into()),
                    key: Some("token".into()),
                    namespace: ns.map(String::from),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(is_referent(StoreKind::ClusterSecretStore, &token(None)));
        assert!(!is_referent(
            StoreKind::ClusterSecretStore,
            &token(Some("vault"))
        ));
        assert!(!is_referent(StoreKind::SecretStore, &token(None)));
        assert!(!is_referent(
            StoreKind::ClusterSecretStore,
            &VaultProvider::default()
        ));
    }

    #[test]
    fn controller_class() {
        assert!(class_matches(None, ""));
        assert!(class_matches(Some(""), "blue"));
        assert!(class_matches(Some("blue"), "blue"));
        assert!(!class_matches(Some("green"), "blue"));
        assert!(!class_matches(Some("green"), ""));
    }
}
