//! Live checks of a ClusterPushSecret: the PushSecret checks on `spec.pushSecretSpec`, run in
//! the namespaces it selects now (at most a few: each reads its stores and source Secret).

use std::collections::BTreeMap;
use std::time::Instant;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ListParams;
use kube::{Api, Resource, ResourceExt};

use super::{Findings, LiveChecker};
use crate::api::{ClusterPushSecret, PushSecret};
use crate::reconcile::cluster_push_secret::selected_namespaces;

/// Selected namespaces the PushSecret checks run in.
const NAMESPACES: usize = 5;

/// A PushSecret finding, as a finding about the ClusterPushSecret in namespace `ns`.
fn nested(m: String, ns: &str) -> String {
    let m = match m.strip_prefix("spec.") {
        Some(rest) => format!("spec.pushSecretSpec.{rest}"),
        None => m,
    };
    format!("{m} (namespace {ns})")
}

impl LiveChecker {
    pub async fn cluster_push_secret(&self, cps: &ClusterPushSecret, dry_run: bool) -> Findings {
        let mut f = Findings::default();
        let deadline = Instant::now() + self.budget;
        let api: Api<Namespace> = Api::all(self.kube.clone());
        let namespaces = match tokio::time::timeout_at(
            deadline.into(),
            api.list(&ListParams::default()),
        )
        .await
        {
            Ok(Ok(l)) => l.items,
            Ok(Err(e)) => {
                f.problems
                    .push(format!("listing namespaces from the API server: {e}"));
                return f;
            }
            Err(_) => {
                f.problems.push(format!(
                        "the namespaces could not be listed within {:?}; the ClusterPushSecret was not checked against its stores",
                        self.budget
                    ));
                return f;
            }
        };
        let labelled: Vec<(String, BTreeMap<String, String>)> = namespaces
            .into_iter()
            .filter(|n| n.metadata.deletion_timestamp.is_none())
            .map(|n| (n.name_any(), n.metadata.labels.unwrap_or_default()))
            .collect();
        let selectors = cps.spec.namespace_selectors.clone().unwrap_or_default();
        let selected =
            match selected_namespaces(&selectors, labelled.iter().map(|(n, l)| (n.as_str(), l))) {
                Ok(s) => s,
                // The static rules name the bad selector.
                Err(_) => return f,
            };
        if selected.is_empty() {
            f.notes.push(
                "no namespace is selected yet: the PushSecret spec was not checked against its stores"
                    .into(),
            );
            return f;
        }
        let name = cps
            .spec
            .push_secret_name
            .clone()
            .unwrap_or_else(|| cps.name_any());
        for ns in selected.iter().take(NAMESPACES) {
            let found = self
                .push_secret(&push_secret_in(cps, &name, ns), dry_run)
                .await;
            f.refusals
                .extend(found.refusals.into_iter().map(|m| nested(m, ns)));
            f.problems
                .extend(found.problems.into_iter().map(|m| nested(m, ns)));
            f.notes
                .extend(found.notes.into_iter().map(|m| nested(m, ns)));
            if Instant::now() >= deadline {
                break;
            }
        }
        if selected.len() > NAMESPACES {
            f.notes.push(format!(
                "the PushSecret spec was checked in {NAMESPACES} of the {} selected namespaces",
                selected.len()
            ));
        }
        f
    }
}

/// The PushSecret the ClusterPushSecret makes in `ns`, owned by it as the reconciler's are (so
/// that its siblings in other namespaces are not taken for other PushSecrets on its targets).
fn push_secret_in(cps: &ClusterPushSecret, name: &str, ns: &str) -> PushSecret {
    let mut ps = PushSecret::new(name, cps.spec.push_secret_spec.clone());
    ps.metadata.namespace = Some(ns.to_string());
    ps.metadata.owner_references = Some(vec![OwnerReference {
        api_version: ClusterPushSecret::api_version(&()).into_owned(),
        kind: ClusterPushSecret::kind(&()).into_owned(),
        name: cps.name_any(),
        uid: cps.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    }]);
    ps
}
