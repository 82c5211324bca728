//! Live checks of a PushSecret: its stores exist and admit its namespace; the store's identity
//! may write each target (`sys/capabilities-self`, and on KV v2 the metadata path); the source
//! Secret exists with the matched keys; and — what ESO only finds out at reconcile — a target
//! that already holds a Vault secret not managed by vaultgate/ESO, or that another PushSecret
//! already pushes to. Only key names are read from the Secret, never values.

use std::time::Instant;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use super::{Findings, LiveChecker};
use crate::api::{PushSecret, PushSecretStoreKind, StoreKind, VaultKvVersion};
use crate::vault::push_plan::{MANAGED_BY_KEY, MANAGED_BY_VALUE};
use crate::vault::{StoreHandle, paths};

impl LiveChecker {
    pub async fn push_secret(&self, ps: &PushSecret, dry_run: bool) -> Findings {
        let deadline = Instant::now() + self.budget;
        let mut f = Findings::default();
        let checks = async {
            self.source_keys(ps, &mut f).await;
            self.source_generator(ps, &mut f).await;
            self.other_pushers(ps, &mut f).await;
            for (i, r) in ps.spec.secret_store_refs.iter().enumerate() {
                let Some(name) = r.name.as_deref().filter(|n| !n.is_empty()) else {
                    f.notes.push(format!(
                        "spec.secretStoreRefs[{i}]: stores chosen by labelSelector are not checked in Vault"
                    ));
                    continue;
                };
                let kind = match r.kind.unwrap_or_default() {
                    PushSecretStoreKind::SecretStore => StoreKind::SecretStore,
                    PushSecretStoreKind::ClusterSecretStore => StoreKind::ClusterSecretStore,
                };
                self.push_store(ps, i, kind, name, dry_run, &mut f).await;
            }
        };
        if tokio::time::timeout_at(deadline.into(), checks)
            .await
            .is_err()
        {
            f.problems.push(format!(
                "the live checks did not finish within {:?}: the PushSecret was not fully checked",
                self.budget
            ));
        }
        f
    }

    /// The source Secret exists and has every `secretKey` the entries match.
    async fn source_keys(&self, ps: &PushSecret, f: &mut Findings) {
        let ns = ps.metadata.namespace.as_deref().unwrap_or_default();
        let Some(name) = ps
            .spec
            .selector
            .secret
            .as_ref()
            .and_then(|s| s.name.as_deref())
            .filter(|n| !n.is_empty())
        else {
            return;
        };
        let api: Api<Secret> = Api::namespaced(self.kube.clone(), ns);
        let secret = match api.get_opt(name).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                f.problems.push(format!(
                    "spec.selector.secret.name: Secret {ns}/{name} does not exist (yet)"
                ));
                return;
            }
            Err(e) => {
                f.problems.push(format!(
                    "spec.selector.secret.name: reading Secret {ns}/{name}: {e}"
                ));
                return;
            }
        };
        // Key names only: the values are dropped unread.
        let keys: Vec<String> = secret.data.unwrap_or_default().into_keys().collect();
        for (i, d) in ps.spec.data.iter().flatten().enumerate() {
            if let Some(k) = d.match_.secret_key.as_deref().filter(|k| !k.is_empty())
                && !keys.iter().any(|have| have == k)
                && d.conversion_strategy
                    != Some(crate::api::PushSecretConversionStrategy::ReverseUnicode)
            {
                f.problems.push(format!(
                    "spec.data[{i}].match.secretKey: Secret {ns}/{name} has no key {k:?}"
                ));
            }
        }
    }

    /// A ClusterGenerator source is not a VaultDynamicSecret (a direct reference to one is
    /// refused by the static rules): each push would mint credentials whose lease stays live.
    async fn source_generator(&self, ps: &PushSecret, f: &mut Findings) {
        use crate::api::generators::{ClusterGenerator, ClusterGeneratorKind};
        let Some(g) = ps.spec.selector.generator_ref.as_ref() else {
            return;
        };
        if g.kind != crate::api::GeneratorKind::ClusterGenerator {
            return;
        }
        let api: Api<ClusterGenerator> = Api::all(self.kube.clone());
        match api.get_opt(&g.name).await {
            Ok(Some(cg)) if cg.spec.kind == ClusterGeneratorKind::VaultDynamicSecret => {
                f.problems.push(format!(
                    "spec.selector.generatorRef: ClusterGenerator {} is a VaultDynamicSecret, \
                     which cannot be pushed: each push would mint new leased credentials and \
                     none would be revoked",
                    g.name
                ))
            }
            Ok(Some(_)) => {}
            Ok(None) => f.problems.push(format!(
                "spec.selector.generatorRef: ClusterGenerator {} does not exist (yet)",
                g.name
            )),
            Err(e) => f.problems.push(format!(
                "spec.selector.generatorRef: reading ClusterGenerator {}: {e}",
                g.name
            )),
        }
    }

    /// Another PushSecret already pushing to one of these targets through the same store: the
    /// two would overwrite each other on every refresh.
    async fn other_pushers(&self, ps: &PushSecret, f: &mut Findings) {
        let ns = ps.metadata.namespace.as_deref().unwrap_or_default();
        let me = ps.metadata.name.as_deref().unwrap_or_default();
        let api: Api<PushSecret> = Api::all(self.kube.clone());
        let others = match api.list(&Default::default()).await {
            Ok(l) => l.items,
            Err(e) => {
                f.problems.push(format!(
                    "could not list PushSecrets to look for another one pushing to the same targets: {e}"
                ));
                return;
            }
        };
        let mine = targets(ps, ns);
        for o in &others {
            let ons = o.metadata.namespace.as_deref().unwrap_or_default();
            let oname = o.metadata.name.as_deref().unwrap_or_default();
            // Itself, or a sibling made by the same ClusterPushSecret.
            if (ons == ns && oname == me) || maker(o).is_some_and(|m| maker(ps) == Some(m)) {
                continue;
            }
            for (i, (store, key, prop)) in &mine {
                let clash = targets(o, ons).into_iter().find(|(_, (s, k, p))| {
                    s == store && k == key && (p == prop || p.is_empty() || prop.is_empty())
                });
                if clash.is_some() {
                    let what = if prop.is_empty() {
                        format!("{key:?}")
                    } else {
                        format!("{key:?} property {prop:?}")
                    };
                    f.problems.push(format!(
                        "spec.data[{i}].match.remoteRef: PushSecret {ons}/{oname} already pushes to {what} through {store}"
                    ));
                }
            }
        }
    }

    async fn push_store(
        &self,
        ps: &PushSecret,
        i: usize,
        kind: StoreKind,
        name: &str,
        dry_run: bool,
        f: &mut Findings,
    ) {
        let ns = ps.metadata.namespace.as_deref().unwrap_or_default();
        let at = format!("spec.secretStoreRefs[{i}]");
        let shown = match kind {
            StoreKind::SecretStore => format!("SecretStore {ns}/{name}"),
            StoreKind::ClusterSecretStore => format!("ClusterSecretStore {name}"),
        };
        let entry = match self.cached_store(kind, ns, name, Instant::now()) {
            Some(e) => e,
            None => match self.store_read(kind, ns, name).await {
                Some(Ok(e)) => e,
                Some(Err(e)) => {
                    f.problems
                        .push(format!("{at}: reading {shown} from the API server: {e}"));
                    return;
                }
                None => {
                    f.problems.push(format!(
                        "{at}: {shown} could not be read from the API server in time"
                    ));
                    return;
                }
            },
        };
        let Some(store) = entry.store else {
            f.problems
                .push(format!("{at}: {shown} does not exist (yet)"));
            return;
        };
        if let Some(why) = &entry.not_ready {
            f.problems
                .push(format!("{at}: {shown} is not ready: {why}"));
            return;
        }
        match entry.allowed {
            Some(Ok(false)) => {
                f.refusals
                    .push(crate::api::selector::denied_message(name, ns));
                return;
            }
            Some(Err(e)) => {
                f.problems.push(format!(
                    "{at}: the conditions of {shown} cannot be evaluated: {e}"
                ));
                return;
            }
            _ => {}
        }
        if dry_run {
            f.notes.push(format!(
                "dry run: the targets were not checked in Vault (that would log in to Vault for {shown})"
            ));
            return;
        }
        self.push_targets(ps, &store, &shown, f).await;
    }

    /// Write capabilities on each target, and no unmanaged secret there.
    async fn push_targets(
        &self,
        ps: &PushSecret,
        store: &StoreHandle,
        shown: &str,
        f: &mut Findings,
    ) {
        let ns = ps.metadata.namespace.as_deref().unwrap_or_default();
        let client = match self.vault.client(store, ns).await {
            Ok(c) => c,
            Err(e) => {
                f.problems.push(format!("{shown}: {e}"));
                return;
            }
        };
        let v2 = client.kv_version() == VaultKvVersion::V2;
        let mut want: Vec<(usize, String, &'static str)> = vec![];
        for (i, d) in ps.spec.data.iter().flatten().enumerate() {
            let key = &d.match_.remote_ref.remote_key;
            want.push((
                i,
                paths::data_path(client.mount(), client.kv_version(), key),
                "data",
            ));
            if v2 {
                want.push((i, paths::metadata_path(client.mount(), key), "metadata"));
            }
        }
        let asked: Vec<String> = want.iter().map(|w| w.1.clone()).collect();
        match client.capabilities(&asked).await {
            Ok(caps) => {
                for (i, path, what) in &want {
                    let have = caps.get(path).cloned().unwrap_or_default();
                    let can = have.iter().any(|c| c == "root")
                        || (have.iter().any(|c| c == "create")
                            && have.iter().any(|c| c == "update"));
                    if !can {
                        f.problems.push(format!(
                            "spec.data[{i}].match.remoteRef.remoteKey: {shown} may not write the {what} path {path:?} (create and update needed; capabilities: {})",
                            if have.is_empty() { "none".to_string() } else { have.join(", ") }
                        ));
                    }
                }
            }
            Err(e) => f.problems.push(format!("{shown}: {e}")),
        }
        for (i, d) in ps.spec.data.iter().flatten().enumerate() {
            let key = &d.match_.remote_ref.remote_key;
            match client.read_for_push(key).await {
                Ok(remote) if remote.exists => {
                    let managed = if v2 {
                        remote
                            .custom_metadata
                            .get(MANAGED_BY_KEY)
                            .map(String::as_str)
                            == Some(MANAGED_BY_VALUE)
                    } else {
                        remote
                            .data
                            .as_ref()
                            .and_then(|d| d.get(crate::vault::push_plan::CUSTOM_METADATA_KEY))
                            .and_then(|m| m.get(MANAGED_BY_KEY))
                            .and_then(|v| v.as_str())
                            == Some(MANAGED_BY_VALUE)
                    };
                    if !managed {
                        f.problems.push(format!(
                            "spec.data[{i}].match.remoteRef.remoteKey: secret {key:?} already exists in Vault and is not managed by vaultgate/ESO (no custom_metadata {MANAGED_BY_KEY}={MANAGED_BY_VALUE}): the push would never overwrite it"
                        ));
                    }
                }
                Ok(_) => {}
                // A denied read is already said by the capabilities; other errors are worth saying.
                Err(crate::vault::VaultError::PermissionDenied { .. }) => {}
                Err(e) => f
                    .problems
                    .push(format!("spec.data[{i}].match.remoteRef.remoteKey: {e}")),
            }
        }
    }
}

/// Each named store target of a PushSecret: (entry index, (store, remoteKey, property)), the
/// store written as `SecretStore ns/name` or `ClusterSecretStore name`.
fn targets(ps: &PushSecret, ns: &str) -> Vec<(usize, (String, String, String))> {
    let stores: Vec<String> = ps
        .spec
        .secret_store_refs
        .iter()
        .filter_map(|r| {
            let name = r.name.as_deref().filter(|n| !n.is_empty())?;
            Some(match r.kind.unwrap_or_default() {
                PushSecretStoreKind::SecretStore => format!("SecretStore {ns}/{name}"),
                PushSecretStoreKind::ClusterSecretStore => format!("ClusterSecretStore {name}"),
            })
        })
        .collect();
    let mut out = vec![];
    for (i, d) in ps.spec.data.iter().flatten().enumerate() {
        for s in &stores {
            let r = &d.match_.remote_ref;
            out.push((
                i,
                (
                    s.clone(),
                    r.remote_key.clone(),
                    r.property.clone().unwrap_or_default(),
                ),
            ));
        }
    }
    out
}

/// The ClusterPushSecret that controls a PushSecret, if one does.
fn maker(ps: &PushSecret) -> Option<&str> {
    ps.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true) && o.kind == "ClusterPushSecret")
        .map(|o| o.name.as_str())
}
