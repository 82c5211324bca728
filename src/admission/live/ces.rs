//! Live checks of a ClusterExternalSecret: the ExternalSecret checks, run for the namespaces it
//! selects now, and a warning naming the selected namespaces a ClusterSecretStore's
//! `conditions` would refuse.

use std::collections::BTreeMap;
use std::time::Instant;

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::ListParams;

use super::{Findings, LiveChecker};
use crate::admission::rules::{ES_SPEC, external_secret_of};
use crate::api::{ClusterExternalSecret, ClusterSecretStore, StoreKind};
use crate::reconcile::ces_plan::{Ns, selects};

/// Namespaces whose SecretStore is checked for a ClusterExternalSecret on a SecretStore.
const SECRET_STORE_NAMESPACES: usize = 5;
/// Refused namespaces named in the warning.
const LISTED: usize = 20;

/// An ExternalSecret finding, as a finding about the ClusterExternalSecret.
fn nested(m: &str, ns: Option<&str>) -> String {
    let m = match m.strip_prefix("spec.") {
        Some(rest) => format!("{ES_SPEC}.{rest}"),
        None => m.to_string(),
    };
    match ns {
        Some(ns) => format!("{m} (namespace {ns})"),
        None => m,
    }
}

fn merge(into: &mut Findings, from: Findings, ns: Option<&str>) {
    let map = |v: Vec<String>| v.into_iter().map(|m| nested(&m, ns)).collect::<Vec<_>>();
    into.refusals.extend(map(from.refusals));
    into.problems.extend(map(from.problems));
    into.notes.extend(map(from.notes));
}

fn listed(names: &[String]) -> String {
    let mut s = names
        .iter()
        .take(LISTED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > LISTED {
        s.push_str(&format!(" and {} more", names.len() - LISTED));
    }
    s
}

impl LiveChecker {
    /// A ClusterExternalSecret: its store exists (in the selected namespaces, for a
    /// SecretStore), its remote references can be read, and the selected namespaces a
    /// ClusterSecretStore's conditions refuse are named in a warning.
    pub async fn cluster_external_secret(
        &self,
        ces: &ClusterExternalSecret,
        dry_run: bool,
    ) -> Findings {
        let mut f = Findings::default();
        let deadline = Instant::now() + self.budget;
        let api: Api<Namespace> = Api::all(self.kube.clone());
        let list = tokio::time::timeout_at(deadline.into(), api.list(&ListParams::default())).await;
        let namespaces = match list {
            Ok(Ok(l)) => l.items,
            Ok(Err(e)) => {
                f.problems
                    .push(format!("listing namespaces from the API server: {e}"));
                return f;
            }
            Err(_) => {
                f.problems.push(format!(
                    "the namespaces could not be listed within {:?}; the ClusterExternalSecret was not checked against its store",
                    self.budget
                ));
                return f;
            }
        };
        let selected: Vec<(String, BTreeMap<String, String>)> = namespaces
            .into_iter()
            .filter(|n| n.metadata.deletion_timestamp.is_none())
            .map(|n| {
                (
                    n.metadata.name.unwrap_or_default(),
                    n.metadata.labels.unwrap_or_default(),
                )
            })
            .filter(|(name, labels)| {
                let ns = Ns {
                    name,
                    labels: Some(labels),
                    terminating: false,
                };
                selects(ces, &ns).unwrap_or(false)
            })
            .collect();
        if selected.is_empty() {
            f.notes.push(
                "no namespace is selected yet: the ExternalSecret was not checked against its store"
                    .into(),
            );
            return f;
        }
        let mut es = external_secret_of(ces);
        let store_ref = es.spec.secret_store_ref.clone().unwrap_or_default();
        let store_name = store_ref.name.clone().unwrap_or_default();
        match store_ref.kind.unwrap_or_default() {
            StoreKind::SecretStore => {
                for (ns, _) in selected.iter().take(SECRET_STORE_NAMESPACES) {
                    es.metadata.namespace = Some(ns.clone());
                    let found = self.external_secret(&es, dry_run).await;
                    merge(&mut f, found, Some(ns));
                }
                if selected.len() > SECRET_STORE_NAMESPACES {
                    f.notes.push(format!(
                        "the SecretStore was checked in {SECRET_STORE_NAMESPACES} of the {} selected namespaces",
                        selected.len()
                    ));
                }
            }
            StoreKind::ClusterSecretStore => {
                let api: Api<ClusterSecretStore> = Api::all(self.kube.clone());
                let store =
                    tokio::time::timeout_at(deadline.into(), api.get_opt(&store_name)).await;
                let conditions = match store {
                    Ok(Ok(Some(s))) => s.spec.conditions.clone().unwrap_or_default(),
                    // Missing or unreadable: the ExternalSecret check below says so.
                    _ => vec![],
                };
                let mut refused = vec![];
                let mut allowed = vec![];
                for (ns, labels) in &selected {
                    match crate::api::selector::namespace_allowed(Some(&conditions), ns, labels) {
                        Ok(true) => allowed.push(ns.clone()),
                        Ok(false) => refused.push(ns.clone()),
                        Err(e) => {
                            f.problems.push(format!(
                                "{ES_SPEC}.secretStoreRef: the conditions of ClusterSecretStore {store_name} cannot be evaluated: {e}"
                            ));
                            return f;
                        }
                    }
                }
                if !refused.is_empty() {
                    f.notes.push(format!(
                        "{ES_SPEC}.secretStoreRef: the conditions of ClusterSecretStore {store_name} refuse {} of the {} selected namespaces, whose ExternalSecrets will not sync: {}",
                        refused.len(),
                        selected.len(),
                        listed(&refused)
                    ));
                }
                // The references are read once: a ClusterSecretStore reads the same in every
                // namespace it admits.
                if let Some(ns) = allowed.first() {
                    es.metadata.namespace = Some(ns.clone());
                    let found = self.external_secret(&es, dry_run).await;
                    merge(&mut f, found, None);
                }
            }
        }
        f
    }
}
