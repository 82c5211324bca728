//! The resourceVersion of each Secret we manage, as its watch last showed it: all that a
//! reconcile reads of the managed Secrets' cache (it compares it with its own last write).
//!
//! A reflector kept each Secret's metadata whole, some 900 bytes per Secret at 10,000, for one
//! string; this keeps the string. Its watch events still carry the metadata to the
//! ExternalSecret controller (whose owners a Secret's event wakes), and are dropped there.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::Event;

/// namespace → name → resourceVersion.
type Versions = HashMap<Box<str>, HashMap<Box<str>, Box<str>>>;

#[derive(Default)]
pub(crate) struct SecretVersions {
    maps: RwLock<Maps>,
    /// A first complete list has been applied: a Secret absent from here does not exist.
    ready: AtomicBool,
}

#[derive(Default)]
struct Maps {
    live: Versions,
    /// A (re)list under way: it replaces `live` once complete, as a reflector's does, so that
    /// Secrets deleted while the watch was down are forgotten.
    listing: Option<Versions>,
}

impl SecretVersions {
    /// The resourceVersion last seen of `ns`/`name`, if the Secret is known.
    pub(crate) fn get(&self, ns: &str, name: &str) -> Option<String> {
        let maps = self.maps.read().unwrap_or_else(|p| p.into_inner());
        maps.live.get(ns)?.get(name).map(|rv| rv.to_string())
    }

    /// Whether a first list has been seen (before it, absence means nothing).
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Brings the versions up to date with one watch event.
    pub(crate) fn apply(&self, event: &Event<PartialObjectMeta<Secret>>) {
        let mut maps = self.maps.write().unwrap_or_else(|p| p.into_inner());
        match event {
            Event::Apply(s) => insert(&mut maps.live, s),
            Event::Delete(s) => remove(&mut maps.live, s),
            Event::Init => maps.listing = Some(Versions::new()),
            Event::InitApply(s) => insert(maps.listing.get_or_insert_default(), s),
            Event::InitDone => {
                maps.live = maps.listing.take().unwrap_or_default();
                drop(maps);
                self.ready.store(true, Ordering::Release);
            }
        }
    }
}

fn insert(map: &mut Versions, s: &PartialObjectMeta<Secret>) {
    let m = &s.metadata;
    let (Some(name), Some(rv)) = (&m.name, &m.resource_version) else {
        return;
    };
    let ns = m.namespace.as_deref().unwrap_or_default();
    match map.get_mut(ns) {
        Some(in_ns) => {
            in_ns.insert(name.as_str().into(), rv.as_str().into());
        }
        None => {
            map.insert(
                ns.into(),
                HashMap::from([(name.as_str().into(), rv.as_str().into())]),
            );
        }
    }
}

fn remove(map: &mut Versions, s: &PartialObjectMeta<Secret>) {
    let m = &s.metadata;
    let Some(name) = &m.name else {
        return;
    };
    let ns = m.namespace.as_deref().unwrap_or_default();
    if let Some(in_ns) = map.get_mut(ns) {
        in_ns.remove(name.as_str());
        if in_ns.is_empty() {
            map.remove(ns);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(ns: &str, name: &str, rv: &str) -> PartialObjectMeta<Secret> {
        let mut s = PartialObjectMeta::<Secret>::default();
        s.metadata.namespace = Some(ns.into());
        s.metadata.name = Some(name.into());
        s.metadata.resource_version = Some(rv.into());
        s
    }

    #[test]
    fn versions_follow_the_watch() {
        // (events, then: what get("team", "app") gives, is_ready)
        type Case = (
            &'static str,
            Vec<Event<PartialObjectMeta<Secret>>>,
            Option<&'static str>,
            bool,
        );
        let cases: Vec<Case> = vec![
            ("nothing seen", vec![], None, false),
            (
                "first list",
                vec![
                    Event::Init,
                    Event::InitApply(secret("team", "app", "1")),
                    Event::InitDone,
                ],
                Some("1"),
                true,
            ),
            (
                "list under way: not ready, nothing live",
                vec![Event::Init, Event::InitApply(secret("team", "app", "1"))],
                None,
                false,
            ),
            (
                "applied after the list",
                vec![
                    Event::Init,
                    Event::InitDone,
                    Event::Apply(secret("team", "app", "1")),
                    Event::Apply(secret("team", "app", "7")),
                ],
                Some("7"),
                true,
            ),
            (
                "deleted",
                vec![
                    Event::Init,
                    Event::InitApply(secret("team", "app", "1")),
                    Event::InitDone,
                    Event::Delete(secret("team", "app", "2")),
                ],
                None,
                true,
            ),
            (
                "a relist forgets what it no longer lists",
                vec![
                    Event::Init,
                    Event::InitApply(secret("team", "app", "1")),
                    Event::InitDone,
                    Event::Init,
                    Event::InitApply(secret("team", "other", "3")),
                    Event::InitDone,
                ],
                None,
                true,
            ),
            (
                "the live view stands while a relist is under way",
                vec![
                    Event::Init,
                    Event::InitApply(secret("team", "app", "1")),
                    Event::InitDone,
                    Event::Init,
                ],
                Some("1"),
                true,
            ),
            (
                "another namespace's Secret of the same name is another Secret",
                vec![
                    Event::Init,
                    Event::InitApply(secret("prod", "app", "1")),
                    Event::InitDone,
                ],
                None,
                true,
            ),
        ];
        for (what, events, want, ready) in cases {
            let v = SecretVersions::default();
            for e in &events {
                v.apply(e);
            }
            assert_eq!(v.get("team", "app").as_deref(), want, "{what}");
            assert_eq!(v.is_ready(), ready, "{what}");
        }
    }

    #[test]
    fn an_emptied_namespace_leaves_no_entry() {
        let v = SecretVersions::default();
        v.apply(&Event::Apply(secret("team", "app", "1")));
        v.apply(&Event::Delete(secret("team", "app", "1")));
        assert!(v.maps.read().unwrap().live.is_empty());
    }
}
