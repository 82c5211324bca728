//! A sync's reads: the data from Vault (with events for what was missing or empty) and the
//! template's sources from the ExternalSecret's own namespace.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;

use super::error::SyncError;
use super::generators::run_all;
use super::report::publish;
use crate::api::entry_stores::Entry;
use crate::api::{DeletionPolicy, ExternalSecret};
use crate::generators::Resolved;
use crate::reconcile::Shared;
use crate::reconcile::desired;
use crate::reconcile::events::EventType;
use crate::reconcile::refresh::{self, Reason};
use crate::reconcile::status;
use crate::template::{Rendered, TemplateSources};
use crate::vault::ReadReuse;
use crate::vault::{EntryClients, Fetched, StoreHandle, fetch_with_generated};

/// Reads what the ExternalSecret asks of Vault, sharing reads with concurrent syncs of the same
/// paths as `reason` allows.
/// The generators the ExternalSecret names run first (each sync mints anew, as in ESO); a
/// failure of any leaves the Secret as it is.
#[allow(clippy::too_many_arguments)]
pub(super) async fn fetch(
    es: &ExternalSecret,
    sh: &Shared,
    store: Option<&StoreHandle>,
    own: &[(Entry, &StoreHandle)],
    gens: &[(usize, Resolved)],
    ns: &str,
    reason: Reason,
    interval: Duration,
) -> Result<Fetched, SyncError> {
    let client = match store {
        Some(store) => Some(
            sh.vault
                .client(store, ns)
                .await
                .map_err(SyncError::Provider)?,
        ),
        None => None,
    };
    // One client per entry; the client cache keeps one login per store identity, so entries
    // on the same store share it.
    let mut own_clients = Vec::with_capacity(own.len());
    for (entry, handle) in own {
        let c = sh
            .vault
            .client(handle, ns)
            .await
            .map_err(|e| SyncError::Entry {
                at: entry.store_field(),
                source: Box::new(SyncError::Provider(e)),
            })?;
        own_clients.push((*entry, c));
    }
    let clients = EntryClients {
        default: client.as_deref(),
        own: own_clients.iter().map(|(e, c)| (*e, c.as_ref())).collect(),
    };
    let (generated, leases) = run_all(sh, ns, gens).await?;
    let deletion = desired::deletion_policy(es);
    let skip_missing = matches!(deletion, DeletionPolicy::Delete | DeletionPolicy::Merge);
    let reuse = match refresh::read_reuse(reason, interval) {
        refresh::ReadAge::Within(age) => ReadReuse::FinishedWithin(age),
        refresh::ReadAge::SinceSyncStart => ReadReuse::StartedSince(Instant::now()),
    };
    let mut fetched = crate::vault::with_read_reuse(
        reuse,
        fetch_with_generated(&clients, &es.spec, skip_missing, &generated),
    )
    .await
    .map_err(SyncError::Fetch)?;
    fetched.leases = leases;
    for key in &fetched.missing {
        publish(
            sh,
            es,
            EventType::Warning,
            status::EVENT_MISSING_PROVIDER_SECRET,
            &format!(
                "secret {key:?} does not exist in the provider; its entry was skipped (deletionPolicy {deletion:?})"
            ),
        );
    }
    if fetched.data.is_empty() && deletion == DeletionPolicy::Retain {
        publish(
            sh,
            es,
            EventType::Warning,
            status::EVENT_PROVIDER_DATA_EMPTY,
            &retained_note(&fetched.empty),
        );
    }
    Ok(fetched)
}

/// The event of a sync whose provider data came back empty under deletionPolicy Retain: which
/// entries had nothing.
pub(super) fn retained_note(empty: &[String]) -> String {
    let what = if empty.is_empty() {
        "spec.data and spec.dataFrom".to_string()
    } else {
        empty.join("; ")
    };
    format!(
        "the provider returned no data ({what}); the Secret was left as it is (deletionPolicy Retain)"
    )
}

/// The target template rendered over the fetched data; `None` without a template.
pub(super) async fn render(
    es: &ExternalSecret,
    sh: &Shared,
    ns: &str,
    data: &BTreeMap<String, Vec<u8>>,
) -> Result<Option<Rendered>, SyncError> {
    let Some(tpl) = es.spec.target.as_ref().and_then(|t| t.template.as_ref()) else {
        return Ok(None);
    };
    let sources = template_sources(sh, ns, tpl).await?;
    crate::template::render_target(tpl, data, &sources)
        .map(Some)
        .map_err(SyncError::Template)
}

/// The ConfigMaps and Secrets a template's `templateFrom` names, read from the ExternalSecret's
/// own namespace (never another).
pub(super) async fn template_sources(
    sh: &Shared,
    ns: &str,
    tpl: &crate::api::ExternalSecretTemplate,
) -> Result<TemplateSources, SyncError> {
    let (config_maps, secrets) = crate::template::source_names(tpl);
    let mut sources = TemplateSources::default();
    let missing = |kind, name: &str| SyncError::TemplateSourceMissing {
        kind,
        namespace: ns.to_string(),
        name: name.to_string(),
    };
    let unreadable = |kind, name: &str, source| SyncError::TemplateSource {
        what: format!("could not read template {kind} {ns}/{name}"),
        source,
    };
    let cms: Api<ConfigMap> = Api::namespaced(sh.kube.clone(), ns);
    for name in config_maps {
        let cm = cms
            .get_opt(&name)
            .await
            .map_err(|e| unreadable("ConfigMap", &name, e))?
            .ok_or_else(|| missing("ConfigMap", &name))?;
        sources
            .config_maps
            .insert(name, cm.data.unwrap_or_default());
    }
    let api: Api<Secret> = Api::namespaced(sh.kube.clone(), ns);
    for name in secrets {
        let s = api
            .get_opt(&name)
            .await
            .map_err(|e| unreadable("Secret", &name, e))?
            .ok_or_else(|| missing("Secret", &name))?;
        let data = s
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        sources.secrets.insert(name, data);
    }
    Ok(sources)
}
