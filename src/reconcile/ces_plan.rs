//! What a ClusterExternalSecret should change, as a plain function of what is cached: which
//! namespaces it selects, where its ExternalSecret is created, updated, kept or refused (someone
//! else's of that name), which of its ExternalSecrets go (namespace no longer selected, or an old
//! `externalSecretName`), and the status that results once the writes are done.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;

use crate::api::selector::selector_matches;
use crate::api::{
    ClusterExternalSecret, ClusterExternalSecretStatus, Condition, ExternalSecret,
    NamespaceFailure, conditions,
};

/// ESO's reason for a namespace that already has an ExternalSecret of that name, not ours.
pub const NOT_OURS: &str = "external secret already exists in namespace";
/// ESO's condition message when some namespace failed.
pub const NAMESPACES_FAILED: &str = "one or more namespaces failed";
/// Failures named in the condition message; the full list is in `failedNamespaces`.
const FAILURES_IN_MESSAGE: usize = 10;

/// A namespace as the plan sees it.
#[derive(Debug, Clone, Default)]
pub struct Ns<'a> {
    pub name: &'a str,
    pub labels: Option<&'a BTreeMap<String, String>>,
    /// Being deleted: nothing can be created there any more.
    pub terminating: bool,
}

/// Whether a ClusterExternalSecret selects a namespace: any selector matches, or the name is
/// listed. An invalid selector is an error, never a match.
pub fn selects(ces: &ClusterExternalSecret, ns: &Ns<'_>) -> Result<bool, String> {
    let empty = BTreeMap::new();
    let labels = ns.labels.unwrap_or(&empty);
    for (i, sel) in ces.selectors().into_iter().enumerate() {
        if selector_matches(sel, labels).map_err(|e| format!("namespace selector {i}: {e}"))? {
            return Ok(true);
        }
    }
    Ok(ces.spec.namespaces.iter().flatten().any(|n| n.0 == ns.name))
}

/// Whether an ExternalSecret's controller is the ClusterExternalSecret of this name (ESO's
/// test: group, kind and name).
pub fn owned_by(es: &ExternalSecret, ces_name: &str) -> bool {
    es.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| is_ces_controller(o) && o.name == ces_name)
}

/// Whether an owner reference is a ClusterExternalSecret's controller reference.
pub fn is_ces_controller(o: &OwnerReference) -> bool {
    o.controller == Some(true)
        && o.kind == "ClusterExternalSecret"
        && o.api_version.split('/').next() == Some(crate::api::GROUP)
}

/// What the ExternalSecret in one namespace should look like.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired<'a> {
    pub ces: &'a ClusterExternalSecret,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// ESO copies this annotation of the ClusterExternalSecret onto its ExternalSecrets (a change
/// forces a sync everywhere).
pub const FORCE_SYNC: &str = "force-sync";

impl<'a> Desired<'a> {
    pub fn of(ces: &'a ClusterExternalSecret) -> Self {
        let meta = ces.spec.external_secret_metadata.as_ref();
        let labels = meta.and_then(|m| m.labels.clone()).unwrap_or_default();
        let mut annotations = meta.and_then(|m| m.annotations.clone()).unwrap_or_default();
        if let Some(v) = ces
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(FORCE_SYNC))
        {
            annotations.insert(FORCE_SYNC.into(), v.clone());
        }
        Desired {
            ces,
            labels,
            annotations,
        }
    }

    /// Whether an ExternalSecret we control already has the spec, labels and annotations.
    pub fn is_met_by(&self, es: &ExternalSecret) -> bool {
        let has = |want: &BTreeMap<String, String>, have: &Option<BTreeMap<String, String>>| {
            want.iter()
                .all(|(k, v)| have.as_ref().and_then(|h| h.get(k)) == Some(v))
        };
        es.spec == self.ces.spec.external_secret_spec
            && has(&self.labels, &es.metadata.labels)
            && has(&self.annotations, &es.metadata.annotations)
    }
}

/// What is known of the ExternalSecret named `externalSecretName` in a selected namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    Absent,
    /// Ours, already as desired.
    OursUpToDate,
    /// Ours, to be updated.
    OursStale,
    /// Someone else's: left alone.
    NotOurs,
}

/// The writes a reconcile makes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Namespaces selected (and not terminating), sorted.
    pub selected: Vec<String>,
    pub create: Vec<String>,
    pub update: Vec<String>,
    /// Namespaces where another ExternalSecret of the name stands, with the reason.
    pub refused: BTreeMap<String, String>,
    /// Our ExternalSecrets to delete, as (namespace, name).
    pub remove: Vec<(String, String)>,
}

/// Plans one reconcile. `existing` says what stands in a selected namespace under the current
/// name; `ours` lists every ExternalSecret this ClusterExternalSecret controls, as (namespace,
/// name). Errors (an invalid selector) plan nothing at all: nothing is removed on a doubt.
pub fn plan<'a>(
    ces: &ClusterExternalSecret,
    namespaces: impl IntoIterator<Item = Ns<'a>>,
    existing: impl Fn(&str) -> Existing,
    ours: &[(String, String)],
) -> Result<Plan, String> {
    let name = ces.external_secret_name();
    let mut p = Plan::default();
    let mut selected = BTreeSet::new();
    for ns in namespaces {
        if !selects(ces, &ns)? {
            continue;
        }
        // A terminating namespace keeps what it has until it is gone; nothing new goes there.
        if ns.terminating {
            selected.insert(ns.name.to_string());
            continue;
        }
        selected.insert(ns.name.to_string());
        p.selected.push(ns.name.to_string());
        match existing(ns.name) {
            Existing::Absent => p.create.push(ns.name.to_string()),
            Existing::OursStale => p.update.push(ns.name.to_string()),
            Existing::OursUpToDate => {}
            Existing::NotOurs => {
                p.refused.insert(ns.name.to_string(), NOT_OURS.to_string());
            }
        }
    }
    for (ns, es) in ours {
        if es != &name || !selected.contains(ns) {
            p.remove.push((ns.clone(), es.clone()));
        }
    }
    p.selected.sort();
    p.create.sort();
    p.update.sort();
    p.remove.sort();
    Ok(p)
}

/// The status once the plan's writes are done: `failures` are the namespaces whose write
/// failed (or that were refused), with the reason.
pub fn status(
    ces: &ClusterExternalSecret,
    selected: &[String],
    failures: &BTreeMap<String, String>,
    now: Timestamp,
) -> ClusterExternalSecretStatus {
    let mut provisioned: Vec<String> = selected
        .iter()
        .filter(|n| !failures.contains_key(*n))
        .cloned()
        .collect();
    provisioned.sort();
    let failed: Vec<NamespaceFailure> = failures
        .iter()
        .map(|(ns, reason)| NamespaceFailure {
            namespace: ns.clone(),
            reason: Some(reason.clone()),
        })
        .collect();
    let mut conds = ces
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    conditions::set(&mut conds, ready(failures, now));
    ClusterExternalSecretStatus {
        external_secret_name: Some(ces.external_secret_name()),
        failed_namespaces: failed,
        provisioned_namespaces: provisioned,
        conditions: conds,
    }
}

/// The status when the namespaces cannot be chosen (an invalid selector): ESO's `unknown`
/// failure; what was provisioned stays listed, since nothing was removed.
pub fn status_unselectable(
    ces: &ClusterExternalSecret,
    error: &str,
    now: Timestamp,
) -> ClusterExternalSecretStatus {
    let mut st = ces.status.clone().unwrap_or_default();
    let failures = BTreeMap::from([("unknown".to_string(), error.to_string())]);
    st.failed_namespaces = vec![NamespaceFailure {
        namespace: "unknown".into(),
        reason: Some(error.into()),
    }];
    conditions::set(&mut st.conditions, ready(&failures, now));
    st
}

fn ready(failures: &BTreeMap<String, String>, now: Timestamp) -> Condition {
    let time = Some(Time(now));
    if failures.is_empty() {
        return Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: Some("Provisioned".into()),
            message: None,
            last_transition_time: time,
        };
    }
    let mut listed: Vec<String> = failures
        .iter()
        .take(FAILURES_IN_MESSAGE)
        .map(|(ns, r)| format!("{ns}: {r}"))
        .collect();
    if failures.len() > FAILURES_IN_MESSAGE {
        listed.push(format!("and {} more", failures.len() - FAILURES_IN_MESSAGE));
    }
    Condition {
        type_: "Ready".into(),
        status: "False".into(),
        reason: Some("NamespacesFailed".into()),
        message: Some(format!("{NAMESPACES_FAILED}: {}", listed.join("; "))),
        last_transition_time: time,
    }
}

/// Whether a new status says something the stored one does not (transition times aside).
pub fn differs(
    old: Option<&ClusterExternalSecretStatus>,
    new: &ClusterExternalSecretStatus,
) -> bool {
    let strip = |s: &ClusterExternalSecretStatus| {
        let mut s = s.clone();
        for c in &mut s.conditions {
            c.last_transition_time = None;
        }
        s
    };
    old.map(strip) != Some(strip(new))
}

#[cfg(test)]
#[path = "ces_plan_tests.rs"]
mod tests;
