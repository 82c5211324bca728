//! In-memory object storage with one global resourceVersion counter, a bounded
//! event history for watch resumption and a broadcast channel for fan-out.
//!
//! Every operation holds the lock only for map updates (never across an await),
//! and touches only the objects involved: no scans over all objects per write.

use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One change of one object.
#[derive(Debug)]
pub struct WatchEvent {
    pub rv: u64,
    /// Resource id (`group/plural`).
    pub resource: String,
    pub namespace: String,
    pub type_: EventType,
    pub object: Arc<Value>,
    /// The previous state, for selector transitions.
    pub old: Option<Arc<Value>>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum CommitError {
    AlreadyExists,
    NotFound,
    /// The stored object's resourceVersion is not the one expected.
    Changed,
}

struct Inner {
    rv: u64,
    tables: HashMap<String, BTreeMap<String, Arc<Value>>>,
    history: VecDeque<Arc<WatchEvent>>,
    history_cap: usize,
    /// Events with rv > compacted_rv are all still in `history`.
    compacted_rv: u64,
    uids: HashMap<String, (String, String)>,
    /// owner uid → dependents (resource id, key).
    dependents: HashMap<String, HashSet<(String, String)>>,
    writes: HashMap<String, u64>,
}

/// A point-in-time page source for `limit`/`continue`.
pub struct Snapshot {
    pub rv: u64,
    pub items: Vec<Arc<Value>>,
}

/// Last snapshot id and the retained snapshots.
type Snapshots = (u64, VecDeque<(u64, Arc<Snapshot>)>);

pub struct Store {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<WatchEvent>>,
    snapshots: Mutex<Snapshots>,
}

/// Storage key of an object within its resource.
pub fn key(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

pub fn rv_of(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn owner_uids(obj: &Value) -> HashSet<String> {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["uid"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// What a new watch starts with.
pub enum WatchStart {
    /// Replay of stored events after the requested version.
    Replay(Vec<Arc<WatchEvent>>),
    /// Current objects (sent as ADDED), for watches without a resourceVersion.
    Initial(Vec<Arc<Value>>),
}

impl Store {
    pub fn new(history_cap: usize, channel_cap: usize) -> Self {
        let (tx, _) = broadcast::channel(channel_cap.max(16));
        Store {
            inner: Mutex::new(Inner {
                rv: 0,
                tables: HashMap::new(),
                history: VecDeque::new(),
                history_cap: history_cap.max(1),
                compacted_rv: 0,
                uids: HashMap::new(),
                dependents: HashMap::new(),
                writes: HashMap::new(),
            }),
            tx,
            snapshots: Mutex::new((0, VecDeque::new())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    pub fn get(&self, id: &str, key: &str) -> Option<Arc<Value>> {
        self.lock().tables.get(id).and_then(|t| t.get(key)).cloned()
    }

    /// Objects of a resource (optionally in one namespace), in key order, with the current version.
    pub fn list(&self, id: &str, namespace: Option<&str>) -> (u64, Vec<Arc<Value>>) {
        let g = self.lock();
        let items = match g.tables.get(id) {
            None => vec![],
            Some(t) => match namespace {
                None => t.values().cloned().collect(),
                Some(ns) => {
                    // '0' follows '/' in byte order, so this range is exactly the namespace.
                    let lo = format!("{ns}/");
                    let hi = format!("{ns}0");
                    t.range(lo..hi).map(|(_, v)| v.clone()).collect()
                }
            },
        };
        (g.rv, items)
    }

    pub fn count(&self, id: &str) -> usize {
        self.lock().tables.get(id).map(|t| t.len()).unwrap_or(0)
    }

    /// Store `obj` (assigning it the next resourceVersion). `expect`:
    /// `None` = must not exist; `Some(0)` = must exist (any version); `Some(rv)` = must be at `rv`.
    pub fn put(
        &self,
        id: &str,
        key: &str,
        mut obj: Value,
        expect: Option<u64>,
    ) -> Result<Arc<Value>, CommitError> {
        let mut g = self.lock();
        let old = g.tables.get(id).and_then(|t| t.get(key)).cloned();
        match (&old, expect) {
            (Some(_), None) => return Err(CommitError::AlreadyExists),
            (None, Some(_)) => return Err(CommitError::NotFound),
            (Some(o), Some(rv)) if rv != 0 && rv_of(o) != rv => return Err(CommitError::Changed),
            _ => {}
        }
        g.rv += 1;
        let rv = g.rv;
        obj["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        let obj = Arc::new(obj);
        let namespace = obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let uid = obj["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        g.tables
            .entry(id.to_string())
            .or_default()
            .insert(key.to_string(), obj.clone());
        if old.is_none() && !uid.is_empty() {
            g.uids.insert(uid, (id.to_string(), key.to_string()));
        }
        let before = old.as_deref().map(owner_uids).unwrap_or_default();
        let after = owner_uids(&obj);
        for u in before.difference(&after) {
            if let Some(s) = g.dependents.get_mut(u) {
                s.remove(&(id.to_string(), key.to_string()));
                if s.is_empty() {
                    g.dependents.remove(u);
                }
            }
        }
        for u in after.difference(&before) {
            g.dependents
                .entry(u.clone())
                .or_default()
                .insert((id.to_string(), key.to_string()));
        }
        *g.writes.entry(id.to_string()).or_default() += 1;
        let ev = Arc::new(WatchEvent {
            rv,
            resource: id.to_string(),
            namespace,
            type_: if old.is_some() {
                EventType::Modified
            } else {
                EventType::Added
            },
            object: obj.clone(),
            old,
        });
        Self::record(&mut g, &self.tx, ev);
        Ok(obj)
    }

    /// Remove an object; `expect` as for `put` (`Some(0)` = any version).
    pub fn delete(&self, id: &str, key: &str, expect: u64) -> Result<Arc<Value>, CommitError> {
        let mut g = self.lock();
        let old = g
            .tables
            .get(id)
            .and_then(|t| t.get(key))
            .cloned()
            .ok_or(CommitError::NotFound)?;
        if expect != 0 && rv_of(&old) != expect {
            return Err(CommitError::Changed);
        }
        if let Some(t) = g.tables.get_mut(id) {
            t.remove(key);
        }
        g.rv += 1;
        let rv = g.rv;
        // A deleted object is reported with the version of its deletion.
        let mut gone = (*old).clone();
        gone["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        let gone = Arc::new(gone);
        if let Some(uid) = old["metadata"]["uid"].as_str() {
            g.uids.remove(uid);
        }
        for u in owner_uids(&old) {
            if let Some(s) = g.dependents.get_mut(&u) {
                s.remove(&(id.to_string(), key.to_string()));
                if s.is_empty() {
                    g.dependents.remove(&u);
                }
            }
        }
        *g.writes.entry(id.to_string()).or_default() += 1;
        let ev = Arc::new(WatchEvent {
            rv,
            resource: id.to_string(),
            namespace: old["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            type_: EventType::Deleted,
            object: gone.clone(),
            old: Some(old),
        });
        Self::record(&mut g, &self.tx, ev);
        Ok(gone)
    }

    fn record(g: &mut Inner, tx: &broadcast::Sender<Arc<WatchEvent>>, ev: Arc<WatchEvent>) {
        g.history.push_back(ev.clone());
        while g.history.len() > g.history_cap {
            if let Some(e) = g.history.pop_front() {
                g.compacted_rv = e.rv;
            }
        }
        // Sending under the lock keeps channel order equal to version order.
        let _ = tx.send(ev);
    }

    /// Forget all history: watches from any earlier version get 410 Gone.
    pub fn compact(&self) {
        let mut g = self.lock();
        g.history.clear();
        // Moving the counter on makes every version handed out so far too old,
        // while lists taken afterwards carry a version that can be watched from.
        g.rv += 1;
        g.compacted_rv = g.rv;
        self.snapshots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clear();
    }

    pub fn compacted_rv(&self) -> u64 {
        self.lock().compacted_rv
    }

    /// Subscribe to changes, atomically with the starting state.
    /// `from`: `None` = current objects first; `Some(rv)` = replay events after `rv`.
    /// Err(compacted) when `rv` is older than the retained history.
    #[allow(clippy::type_complexity)]
    pub fn watch(
        &self,
        id: &str,
        namespace: Option<&str>,
        from: Option<u64>,
    ) -> Result<(WatchStart, broadcast::Receiver<Arc<WatchEvent>>, u64), u64> {
        let g = self.lock();
        let rx = self.tx.subscribe();
        let start = match from {
            Some(rv) => {
                if rv < g.compacted_rv {
                    return Err(g.compacted_rv);
                }
                let idx = g.history.partition_point(|e| e.rv <= rv);
                WatchStart::Replay(
                    g.history
                        .range(idx..)
                        .filter(|e| {
                            e.resource == id && namespace.is_none_or(|ns| e.namespace == ns)
                        })
                        .cloned()
                        .collect(),
                )
            }
            None => {
                let items = match g.tables.get(id) {
                    None => vec![],
                    Some(t) => match namespace {
                        None => t.values().cloned().collect(),
                        Some(ns) => t
                            .range(format!("{ns}/")..format!("{ns}0"))
                            .map(|(_, v)| v.clone())
                            .collect(),
                    },
                };
                WatchStart::Initial(items)
            }
        };
        Ok((start, rx, g.rv))
    }

    pub fn save_snapshot(&self, snap: Snapshot) -> u64 {
        let mut s = self.snapshots.lock().unwrap_or_else(|e| e.into_inner());
        s.0 += 1;
        let id = s.0;
        s.1.push_back((id, Arc::new(snap)));
        while s.1.len() > 64 {
            s.1.pop_front();
        }
        id
    }

    pub fn snapshot(&self, id: u64) -> Option<Arc<Snapshot>> {
        let s = self.snapshots.lock().unwrap_or_else(|e| e.into_inner());
        s.1.iter().find(|(i, _)| *i == id).map(|(_, s)| s.clone())
    }

    pub fn uid_exists(&self, uid: &str) -> bool {
        self.lock().uids.contains_key(uid)
    }

    pub fn dependents_of(&self, uid: &str) -> Vec<(String, String)> {
        self.lock()
            .dependents
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn writes(&self) -> HashMap<String, u64> {
        self.lock().writes.clone()
    }

    pub fn keys(&self, id: &str) -> Vec<String> {
        self.lock()
            .tables
            .get(id)
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default()
    }
}
