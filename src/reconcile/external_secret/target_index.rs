//! Which ExternalSecrets write a Secret, so that a Secret's watch event wakes them.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::ObjectRef;

use super::memory::MemoryMap;
use crate::api::ExternalSecret;
use crate::reconcile::Shared;
use crate::reconcile::desired;

/// Namespace and target Secret name → the ExternalSecrets writing it, kept current from the
/// ExternalSecret watch. An ExternalSecret whose target changes stays listed under its old
/// name too: a stale entry only costs one needless reconcile, a missing one a missed re-sync.
/// Those writing a Secret of their own name, as most do (it is the default), are not listed:
/// [`writers_of_secret`] asks about them, and the index stays small.
#[derive(Clone, Default)]
pub(crate) struct TargetIndex(Arc<std::sync::RwLock<TargetMaps>>);

/// namespace → name → names, looked up by `&str` without building a key.
pub(super) type Nested = HashMap<Box<str>, HashMap<Box<str>, Vec<Box<str>>>>;

#[derive(Default)]
pub(super) struct TargetMaps {
    /// namespace → Secret → the ExternalSecrets writing it (usually one: a small list, where
    /// a set took a few hundred bytes per Secret).
    writers: Nested,
    /// namespace → ExternalSecret → every target it was seen with: a delete finds its entries
    /// directly instead of scanning every Secret of the index (quadratic in a mass delete).
    targets: Nested,
}

/// Adds `value` under `ns`/`key` unless it is there already.
pub(super) fn add(map: &mut Nested, ns: &str, key: &str, value: &str) {
    let list = map
        .entry(ns.into())
        .or_default()
        .entry(key.into())
        .or_default();
    if !list.iter().any(|v| &**v == value) {
        list.push(value.into());
    }
}

impl TargetIndex {
    pub(crate) fn insert(&self, es: &ExternalSecret) {
        let (ns, name) = (es.namespace().unwrap_or_default(), es.name_any());
        let target = desired::target_name(es);
        if target == name {
            return;
        }
        let mut maps = self.0.write().unwrap_or_else(|e| e.into_inner());
        add(&mut maps.writers, &ns, &target, &name);
        add(&mut maps.targets, &ns, &name, &target);
    }

    pub(crate) fn remove(&self, es: &ExternalSecret) {
        let (ns, name) = (es.namespace().unwrap_or_default(), es.name_any());
        let mut guard = self.0.write().unwrap_or_else(|e| e.into_inner());
        let maps = &mut *guard;
        let Some(in_ns) = maps.targets.get_mut(ns.as_str()) else {
            return;
        };
        let targets = in_ns.remove(name.as_str()).unwrap_or_default();
        if in_ns.is_empty() {
            maps.targets.remove(ns.as_str());
        }
        let Some(secrets) = maps.writers.get_mut(ns.as_str()) else {
            return;
        };
        for target in targets {
            if let Some(writers) = secrets.get_mut(&target) {
                writers.retain(|w| **w != *name);
                if writers.is_empty() {
                    secrets.remove(&target);
                }
            }
        }
        if secrets.is_empty() {
            maps.writers.remove(ns.as_str());
        }
    }

    fn writers(&self, ns: &str, secret: &str) -> Vec<String> {
        let maps = self.0.read().unwrap_or_else(|e| e.into_inner());
        maps.writers
            .get(ns)
            .and_then(|m| m.get(secret))
            .map(|w| w.iter().map(|n| n.to_string()).collect())
            .unwrap_or_default()
    }

    /// How many namespaces hold entries (both directions): for the tests.
    #[cfg(test)]
    fn namespaces(&self) -> (usize, usize) {
        let maps = self.0.read().unwrap_or_else(|e| e.into_inner());
        (maps.writers.len(), maps.targets.len())
    }
}

/// The ExternalSecrets that write a Secret: its controller, any the index lists, and the one
/// of the Secret's own name if `writes_own_name` says it is one.
pub(crate) fn writers_of_secret(
    targets: &TargetIndex,
    secret: &PartialObjectMeta<Secret>,
    writes_own_name: impl Fn(&ObjectRef<ExternalSecret>) -> bool,
) -> Vec<ObjectRef<ExternalSecret>> {
    let ns = secret.namespace().unwrap_or_default();
    let name = secret.name_any();
    let mut out: Vec<ObjectRef<ExternalSecret>> = targets
        .writers(&ns, &name)
        .into_iter()
        .map(|name| ObjectRef::new(&name).within(&ns))
        .collect();
    let same_name = ObjectRef::new(&name).within(&ns);
    if !out.contains(&same_name) && writes_own_name(&same_name) {
        out.push(same_name);
    }
    for o in secret.owner_references() {
        if o.kind == "ExternalSecret" {
            let r = ObjectRef::new(&o.name).within(&ns);
            if !out.contains(&r) {
                out.push(r);
            }
        }
    }
    out
}

/// The writers a Secret's watch event should wake: all but those whose own last write is what
/// the event shows. The reconcile that made that write already decided what comes next, and
/// another would find the Secret as it left it: at 10,000 ExternalSecrets those echoes were
/// half of all reconciles. A writer whose memory shows another version (someone else wrote,
/// or another ExternalSecret merging into the same Secret) is woken, as is any writer when the
/// event carries no version.
pub(super) fn to_wake(
    writers: Vec<ObjectRef<ExternalSecret>>,
    rv: Option<&str>,
    mem: &MemoryMap,
) -> Vec<ObjectRef<ExternalSecret>> {
    let Some(rv) = rv else {
        return writers;
    };
    writers
        .into_iter()
        .filter(|w| {
            let key = (w.namespace.clone().unwrap_or_default(), w.name.clone());
            mem.get(&key)
                .is_none_or(|m| m.valid_rv.as_deref() != Some(rv))
        })
        .collect()
}

/// A managed Secret was deleted: the writes remembered for it no longer stand, so the
/// ExternalSecrets writing it neither take it for untouched nor wait for the cache to show it.
pub(crate) fn secret_deleted(sh: &Shared, secret: &PartialObjectMeta<Secret>) {
    let ns = secret.namespace().unwrap_or_default();
    let mut mem = sh.es_memory.lock().unwrap_or_else(|p| p.into_inner());
    // One of the Secret's name that has no memory has nothing to forget.
    let remembered =
        |r: &ObjectRef<ExternalSecret>| mem.contains_key(&(ns.clone(), r.name.clone()));
    let writers = writers_of_secret(&sh.targets, secret, remembered);
    for es in writers {
        if let Some(m) = mem.get_mut(&(ns.clone(), es.name)) {
            m.valid_rv = None;
            m.lag_checked = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::external_secret::memory::Memory;

    fn es(ns: &str, name: &str, target: Option<&str>) -> ExternalSecret {
        let mut e = ExternalSecret::new(name, Default::default());
        e.metadata.namespace = Some(ns.into());
        e.spec.target = Some(crate::api::ExternalSecretTarget {
            name: target.map(String::from),
            ..Default::default()
        });
        e
    }

    fn secret(ns: &str, name: &str) -> PartialObjectMeta<Secret> {
        let mut s = PartialObjectMeta::<Secret>::default();
        s.metadata.namespace = Some(ns.into());
        s.metadata.name = Some(name.into());
        s
    }

    #[test]
    fn secrets_map_to_the_external_secrets_that_write_them() {
        let idx = TargetIndex::default();
        let all = [
            es("a", "app", None),
            es("a", "merge-1", Some("shared")),
            es("a", "merge-2", Some("shared")),
            es("a", "own", Some("own")),
            es("a", "elsewhere", Some("apart")),
            es("b", "app", None),
        ];
        for e in &all {
            idx.insert(e);
        }
        // As the controller asks: is there an ExternalSecret of that name.
        let own_name = |r: &ObjectRef<ExternalSecret>| {
            all.iter()
                .any(|e| e.namespace() == r.namespace && e.name_any() == r.name)
        };
        let names = |s: &PartialObjectMeta<Secret>| {
            let mut v: Vec<String> = writers_of_secret(&idx, s, own_name)
                .into_iter()
                .map(|r| r.name)
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(&secret("a", "app")), ["app"]);
        assert_eq!(names(&secret("a", "own")), ["own"]);
        assert_eq!(names(&secret("a", "shared")), ["merge-1", "merge-2"]);
        assert_eq!(names(&secret("a", "apart")), ["elsewhere"]);
        // One of the Secret's name that writes another is woken too: a needless reconcile at
        // worst, as with a stale entry.
        assert_eq!(names(&secret("a", "elsewhere")), ["elsewhere"]);
        assert!(
            names(&secret("c", "app")).is_empty(),
            "other namespaces do not match"
        );
        idx.remove(&es("a", "merge-1", Some("shared")));
        assert_eq!(names(&secret("a", "shared")), ["merge-2"]);
        // The controller's ownerReference counts even without an index entry.
        let mut owned = secret("a", "orphan-name");
        owned.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                kind: "ExternalSecret".into(),
                name: "owner".into(),
                api_version: "external-secrets.io/v1".into(),
                uid: "u".into(),
                ..Default::default()
            },
        ]);
        assert_eq!(names(&owned), ["owner"]);
    }

    #[test]
    fn a_secret_event_wakes_the_writers_it_is_news_to() {
        let mem: MemoryMap = [
            // Wrote version 5 last: the event of version 5 is its own write.
            ("wrote-5", Some("5")),
            // Merges into the same Secret and last saw version 3.
            ("wrote-3", Some("3")),
            // Deleted since, or never confirmed: no version remembered.
            ("unknown", None),
        ]
        .into_iter()
        .map(|(name, rv)| {
            let m = Memory {
                valid_rv: rv.map(Into::into),
                ..Default::default()
            };
            (("a".to_string(), name.to_string()), m)
        })
        .collect();
        let all = || {
            ["wrote-5", "wrote-3", "unknown", "never-reconciled"]
                .map(|n| ObjectRef::<ExternalSecret>::new(n).within("a"))
                .to_vec()
        };
        let names =
            |v: Vec<ObjectRef<ExternalSecret>>| v.into_iter().map(|r| r.name).collect::<Vec<_>>();
        let cases: [(Option<&str>, &[&str]); 4] = [
            (Some("5"), &["wrote-3", "unknown", "never-reconciled"]),
            (Some("3"), &["wrote-5", "unknown", "never-reconciled"]),
            (
                Some("9"),
                &["wrote-5", "wrote-3", "unknown", "never-reconciled"],
            ),
            (None, &["wrote-5", "wrote-3", "unknown", "never-reconciled"]),
        ];
        for (rv, want) in cases {
            assert_eq!(
                names(to_wake(all(), rv, &mem)),
                want,
                "event version {rv:?}"
            );
        }
        // The same name in another namespace is another ExternalSecret.
        let other = vec![ObjectRef::<ExternalSecret>::new("wrote-5").within("b")];
        assert_eq!(names(to_wake(other, Some("5"), &mem)), ["wrote-5"]);
    }

    #[test]
    fn a_deleted_external_secret_leaves_no_entry_behind() {
        let idx = TargetIndex::default();
        // Inserted twice (every watch event), then with a new target: both names are kept.
        idx.insert(&es("a", "app", None));
        idx.insert(&es("a", "app", None));
        idx.insert(&es("a", "app", Some("renamed")));
        idx.insert(&es("a", "other", Some("renamed")));
        let names = |ns: &str, secret: &str| {
            let mut v = idx.writers(ns, secret);
            v.sort();
            v
        };
        assert!(names("a", "app").is_empty(), "its own name is not listed");
        assert_eq!(names("a", "renamed"), ["app", "other"]);
        // The delete carries the latest spec; the old target goes too.
        idx.remove(&es("a", "app", Some("renamed")));
        assert!(names("a", "app").is_empty());
        assert_eq!(names("a", "renamed"), ["other"]);
        idx.remove(&es("a", "other", Some("renamed")));
        assert!(names("a", "renamed").is_empty());
        assert_eq!(idx.namespaces(), (0, 0), "empty namespaces are dropped");
        // Removing what was never there changes nothing.
        idx.insert(&es("b", "kept", Some("target")));
        idx.remove(&es("b", "never", Some("target")));
        idx.remove(&es("c", "never", None));
        assert_eq!(names("b", "target"), ["kept"]);
    }
}
