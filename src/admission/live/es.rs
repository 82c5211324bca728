//! Live checks of an ExternalSecret: its generators exist; each store an entry reads (its
//! `secretStoreRef`, or the entry's own `sourceRef.storeRef`) is read from the API server —
//! never taken from the review — exists, is ready and admits the namespace; and each remote
//! reference exists in Vault and may be read (or listed, for `find`) by its store's identity.

use std::hash::{Hash, Hasher};
use std::time::Instant;

use super::{Findings, LiveChecker, RESULT_TTL, check_list, check_read, hash_refs, key_hasher};
use crate::api::entry_stores::{
    Entry, data_from_has_own_source, data_has_own_store, entry_store_refs,
};
use crate::api::{ExternalSecret, ExternalSecretDataRemoteRef, StoreKind};
use crate::vault::{ReadReuse, StoreHandle, with_read_reuse};

/// Which entries a store check covers.
#[derive(Clone, Copy, Hash)]
enum Entries {
    /// Those that read `spec.secretStoreRef`.
    Default,
    /// One entry with its own store.
    Own(Entry),
}

impl Entries {
    fn covers(self, entry: Entry, has_own: bool) -> bool {
        match self {
            Entries::Default => !has_own,
            Entries::Own(e) => e == entry,
        }
    }
}

impl LiveChecker {
    /// An ExternalSecret, each of its stores checked with the entries that read it.
    pub async fn external_secret(&self, es: &ExternalSecret, dry_run: bool) -> Findings {
        let deadline = Instant::now() + self.budget;
        let generators = self.generators_named(es, deadline).await;
        let mut f = Findings::default();
        if crate::generators::needs_store(&es.spec)
            && let Some(r) = es.spec.secret_store_ref.as_ref()
        {
            let (kind, name) = (r.kind.unwrap_or_default(), r.name.as_deref());
            let one = self
                .store_and_refs(
                    es,
                    dry_run,
                    kind,
                    name.unwrap_or_default(),
                    Entries::Default,
                )
                .await;
            merge(&mut f, one);
        }
        for (entry, r) in entry_store_refs(&es.spec) {
            let Some(name) = r.name.as_deref().filter(|n| !n.is_empty()) else {
                continue; // the rules name it
            };
            let kind = r.kind.unwrap_or_default();
            let one = self
                .store_and_refs(es, dry_run, kind, name, Entries::Own(entry))
                .await;
            merge(&mut f, one);
        }
        f.problems.extend(generators);
        f
    }

    async fn store_and_refs(
        &self,
        es: &ExternalSecret,
        dry_run: bool,
        kind: StoreKind,
        name: &str,
        which: Entries,
    ) -> Findings {
        let now = Instant::now();
        let deadline = now + self.budget;
        let mut f = Findings::default();
        let ns = es.metadata.namespace.as_deref().unwrap_or_default();
        let at = match which {
            Entries::Default => "spec.secretStoreRef".to_string(),
            Entries::Own(e) => e.store_field(),
        };
        // Only formatted for a message: a cache hit needs none.
        let shown = || match kind {
            StoreKind::SecretStore => format!("SecretStore {ns}/{name}"),
            StoreKind::ClusterSecretStore => format!("ClusterSecretStore {name}"),
        };
        // The API read is a boxed future, only built on a cache miss: a future holding it
        // inline would be kilobytes, copied on every admission however warm the cache.
        let entry = match self.cached_store(kind, ns, name, now) {
            Some(e) => Ok(Some(Ok(e))),
            None => tokio::time::timeout_at(deadline.into(), self.store_read(kind, ns, name)).await,
        };
        let entry = match entry {
            Err(_) | Ok(None) => {
                f.problems.push(format!(
                    "{at}: {} could not be read from the API server within {:?}; the ExternalSecret was not checked against it",
                    shown(),
                    self.budget
                ));
                return f;
            }
            Ok(Some(Err(e))) => {
                f.problems.push(format!(
                    "{at}: reading {} from the API server: {e}",
                    shown()
                ));
                return f;
            }
            Ok(Some(Ok(e))) => e,
        };
        let Some(store) = entry.store else {
            f.problems
                .push(format!("{at}: {} does not exist (yet)", shown()));
            return f;
        };
        if let Some(why) = &entry.not_ready {
            // Its login failed when the store reconciler tried it: checking the references
            // would only fail again, at Vault's expense.
            f.problems
                .push(format!("{at}: {} is not ready: {why}", shown()));
            return f;
        }
        match entry.allowed {
            Some(Ok(false)) => {
                let denied = crate::api::selector::denied_message(name, ns);
                f.refusals.push(match which {
                    Entries::Default => denied,
                    Entries::Own(_) => format!("{at}: {denied}"),
                });
                return f;
            }
            Some(Err(e)) => {
                f.problems.push(format!(
                    "{at}: the conditions of {} cannot be evaluated: {e}",
                    shown()
                ));
                return f;
            }
            _ => {}
        }

        let key = {
            let mut h = key_hasher();
            "es".hash(&mut h);
            which.hash(&mut h);
            (store.kind.as_str(), &store.namespace, &store.name).hash(&mut h);
            (&store.uid, &store.resource_version, ns).hash(&mut h);
            hash_refs(es, &mut h);
            h.finish()
        };
        if let Some(cached) = self.cached(key, now) {
            return cached;
        }
        if dry_run {
            f.notes.push(format!(
                "dry run: the remote references were not checked in Vault (that would log in to Vault for {})",
                shown()
            ));
            return f;
        }
        // Boxed for the same reason as the store read: only a cache miss pays for it. A Vault
        // answer serves other checks as long as a verdict does: a burst of applies spreads the
        // readers of one secret over seconds, and each would otherwise read it again.
        let checked = tokio::time::timeout_at(
            deadline.into(),
            Box::pin(with_read_reuse(
                ReadReuse::FinishedWithin(RESULT_TTL),
                self.vault_refs(&store, ns, es, which),
            )),
        )
        .await;
        match checked {
            Err(_) => f.problems.push(format!(
                "Vault did not answer within {:?} for {}: the remote references were not checked",
                self.budget,
                shown()
            )),
            Ok((problems, cacheable)) => {
                f.problems = problems;
                if cacheable {
                    self.remember(key, &f);
                }
            }
        }
        f
    }

    /// Checks the remote references `which` covers concurrently; returns the problems and
    /// whether the result may be cached (no transient failure among them).
    async fn vault_refs(
        &self,
        store: &StoreHandle,
        ns: &str,
        es: &ExternalSecret,
        which: Entries,
    ) -> (Vec<String>, bool) {
        let client = match self.vault.client(store, ns).await {
            Ok(c) => c,
            Err(e) => {
                return (vec![format!("{}: {e}", store.display())], !e.is_transient());
            }
        };
        let mut reads: Vec<(String, &ExternalSecretDataRemoteRef, bool)> = Vec::new();
        let mut finds: Vec<(String, String)> = Vec::new();
        let mut refused: Vec<String> = Vec::new();
        for (i, d) in es.spec.data.iter().flatten().enumerate() {
            if which.covers(Entry::Data(i), data_has_own_store(d)) {
                reads.push((format!("spec.data[{i}].remoteRef"), &d.remote_ref, false));
            }
        }
        for (i, d) in es.spec.data_from.iter().flatten().enumerate() {
            if !which.covers(Entry::DataFrom(i), data_from_has_own_source(d)) {
                continue;
            }
            if let Some(e) = &d.extract {
                reads.push((format!("spec.dataFrom[{i}].extract"), e, true));
            }
            if let Some(fd) = &d.find {
                if let Some(why) = crate::vault::find_refusal(client.kv_version(), fd) {
                    refused.push(format!("spec.dataFrom[{i}].find.tags: {why}"));
                }
                finds.push((
                    format!("spec.dataFrom[{i}].find.path"),
                    fd.path.clone().unwrap_or_default(),
                ));
            }
        }
        let read_checks = reads
            .iter()
            .map(|(at, r, extract)| check_read(&client, at, r, *extract));
        let find_checks = finds.iter().map(|(at, path)| check_list(&client, at, path));
        let (a, b) = futures::future::join(
            futures::future::join_all(read_checks),
            futures::future::join_all(find_checks),
        )
        .await;
        let mut problems = refused;
        let mut cacheable = true;
        for r in a.into_iter().chain(b).flatten() {
            cacheable &= !r.1;
            problems.push(r.0);
        }
        (problems, cacheable)
    }
}

fn merge(into: &mut Findings, one: Findings) {
    into.refusals.extend(one.refusals);
    into.problems.extend(one.problems);
    into.notes.extend(one.notes);
}
