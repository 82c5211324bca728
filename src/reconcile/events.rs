//! Kubernetes events (events.k8s.io/v1) about ExternalSecrets and stores, with repeats folded
//! into a series the way kube-rs's `Recorder` does. kube-rs's recorder keeps every event it
//! sent for six minutes and scans that whole cache under one write lock on every publish: with
//! 10,000 ExternalSecrets syncing at once that was a quarter of the controller's memory and a
//! tenth of its CPU. This one remembers a few numbers per recent event and sweeps them once a
//! minute.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use kube::api::{Patch, PatchParams, PostParams};
pub use kube::runtime::events::{Event, EventType};
use serde::de::IgnoredAny;
use serde_json::json;
use tokio::sync::mpsc;

/// How long a repeat is folded into the earlier event rather than sent as a new one (as
/// kube-rs and client-go do).
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);
/// How often forgotten events are swept from the cache.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// What is remembered of an event sent recently.
struct Sent {
    name: String,
    namespace: String,
    count: i32,
    last: Instant,
}

struct Cache {
    sent: HashMap<u64, Sent>,
    next_sweep: Instant,
}

pub struct Recorder {
    client: kube::Client,
    controller: String,
    instance: String,
    cache: Mutex<Cache>,
}

/// Which events are "the same" (and so one series): same object, type, reason, action and note.
fn event_key(ev: &Event, regarding: &ObjectReference) -> u64 {
    let mut h = DefaultHasher::new();
    (
        &regarding.api_version,
        &regarding.kind,
        &regarding.namespace,
        &regarding.name,
        &regarding.uid,
    )
        .hash(&mut h);
    matches!(ev.type_, EventType::Warning).hash(&mut h);
    (&ev.reason, &ev.action, &ev.note).hash(&mut h);
    h.finish()
}

/// The namespace an event about `regarding` lives in (cluster-scoped objects: `default`).
fn event_namespace(regarding: &ObjectReference) -> String {
    regarding
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into())
}

impl Recorder {
    pub fn new(client: kube::Client, controller: &str, instance: Option<&str>) -> Self {
        Recorder {
            client,
            controller: controller.to_string(),
            instance: instance
                .filter(|i| !i.is_empty())
                .unwrap_or(controller)
                .to_string(),
            cache: Mutex::new(Cache {
                sent: HashMap::new(),
                next_sweep: Instant::now() + SWEEP_EVERY,
            }),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `ev` about `regarding`: a new Event, or, when the same one was sent within six
    /// minutes, a patch that bumps its series count.
    pub async fn publish(
        &self,
        ev: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let key = event_key(ev, regarding);
        let now = Instant::now();
        let repeat = {
            let mut cache = self.cache();
            if now >= cache.next_sweep {
                cache
                    .sent
                    .retain(|_, s| now.duration_since(s.last) < SERIES_WINDOW);
                cache.next_sweep = now + SWEEP_EVERY;
            }
            cache
                .sent
                .get(&key)
                .filter(|s| now.duration_since(s.last) < SERIES_WINDOW)
                .map(|s| (s.name.clone(), s.namespace.clone(), s.count + 1))
        };
        let stamp = Timestamp::now();
        if let Some((name, namespace, count)) = repeat {
            let series = EventSeries {
                count,
                last_observed_time: MicroTime(stamp),
            };
            let patch = json!({ "series": series });
            let req = kube::core::Request::new(K8sEvent::url_path(&(), Some(&namespace)))
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .map_err(kube::Error::BuildRequest)?;
            match self.client.request::<IgnoredAny>(req).await {
                Ok(_) => {
                    if let Some(s) = self.cache().sent.get_mut(&key) {
                        s.count = count;
                        s.last = now;
                    }
                    return Ok(());
                }
                // Expired or deleted meanwhile: start a new one.
                Err(kube::Error::Api(s)) if s.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        let namespace = event_namespace(regarding);
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or(&self.controller),
            stamp.as_nanosecond()
        );
        let event = K8sEvent {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            action: Some(ev.action.clone()),
            reason: Some(ev.reason.clone()),
            note: ev.note.clone(),
            type_: Some(
                match ev.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .into(),
            ),
            event_time: Some(MicroTime(stamp)),
            regarding: Some(regarding.clone()),
            related: ev.secondary.clone(),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        };
        // The answer is the Event as stored and nothing reads it: skipped unread rather than
        // built into an object (its managedFields and all), as kube's typed `create` would.
        let req = kube::core::Request::new(K8sEvent::url_path(&(), Some(&namespace)))
            .create(
                &PostParams::default(),
                serde_json::to_vec(&event).map_err(kube::Error::SerdeError)?,
            )
            .map_err(kube::Error::BuildRequest)?;
        self.client.request::<IgnoredAny>(req).await?;
        self.cache().sent.insert(
            key,
            Sent {
                name,
                namespace,
                count: 1,
                last: now,
            },
        );
        Ok(())
    }
}

/// Events of each type waiting to be written. Beyond this many, new ones are dropped with a debug
/// log, as client-go's broadcaster drops them when its queue is full: an event is never worth
/// holding up or failing a sync.
pub const QUEUE: usize = 4096;

/// An event waiting to be written.
pub struct Queued {
    ev: Event,
    regarding: ObjectReference,
}

/// Hands events to [`deliver`], so a reconcile does not wait for the API server to store them
/// (client-go and ESO write events from a background queue the same way). Warnings have a
/// queue of their own, written first: a burst of first syncs (10,000 `Created` events) must
/// not crowd out the events that say why something failed.
#[derive(Clone)]
pub struct Sender {
    normal: mpsc::Sender<Queued>,
    warning: mpsc::Sender<Queued>,
}

impl Sender {
    pub fn send(&self, ev: Event, regarding: ObjectReference) {
        let queue = match ev.type_ {
            EventType::Warning => &self.warning,
            EventType::Normal => &self.normal,
        };
        if queue.try_send(Queued { ev, regarding }).is_err() {
            tracing::debug!("event queue full or closed; event dropped");
        }
    }
}

/// The receiving ends of a [`Sender`]'s queues.
pub struct Receiver {
    normal: mpsc::Receiver<Queued>,
    warning: mpsc::Receiver<Queued>,
}

impl Receiver {
    /// The next event, warnings first; `None` once both queues are closed and empty, which
    /// they are after `done` is cancelled and what was queued by then has been taken.
    async fn next(&mut self, done: &tokio_util::sync::CancellationToken) -> Option<Queued> {
        tokio::select! {
            biased;
            Some(q) = self.warning.recv() => return Some(q),
            Some(q) = self.normal.recv() => return Some(q),
            _ = done.cancelled() => {}
        }
        self.warning.close();
        self.normal.close();
        match self.warning.recv().await {
            Some(q) => Some(q),
            None => self.normal.recv().await,
        }
    }
}

pub fn queue() -> (Sender, Receiver) {
    let (normal_tx, normal) = mpsc::channel(QUEUE);
    let (warning_tx, warning) = mpsc::channel(QUEUE);
    (
        Sender {
            normal: normal_tx,
            warning: warning_tx,
        },
        Receiver { normal, warning },
    )
}

/// How long the events still queued when the controllers stop may take to be written: the pod's
/// grace period (30 s in deploy/) must also cover the reconciles in flight and the Lease.
pub const DRAIN: Duration = Duration::from_secs(10);

/// Writes queued events until `done` is cancelled, then the ones still queued for at most
/// [`DRAIN`], and returns.
///
/// One at a time, as client-go's broadcaster writes them: events share the API server with the
/// syncs they are about, and in a burst of first syncs (10,000 ExternalSecrets created at once)
/// four writers at once made the API server and this process spend about a tenth more CPU on
/// the burst (the sync took that much longer), for `Created` events that the queue then holds
/// until the burst is over (or drops beyond [`QUEUE`], as client-go drops beyond its 1,000).
pub async fn deliver(recorder: &Recorder, rx: Receiver, done: tokio_util::sync::CancellationToken) {
    deliver_within(recorder, rx, done, DRAIN).await
}

async fn deliver_within(
    recorder: &Recorder,
    mut rx: Receiver,
    done: tokio_util::sync::CancellationToken,
    drain: Duration,
) {
    let write = |q: Queued| async move {
        if let Err(e) = recorder.publish(&q.ev, &q.regarding).await {
            tracing::debug!(error = %e, reason = %q.ev.reason, "publishing an event");
        }
    };
    // Until the controllers stop (a write then in progress is finished).
    while !done.is_cancelled() {
        let Some(q) = rx.next(&done).await else {
            return;
        };
        write(q).await;
    }
    // Then what is still queued, for at most `drain`.
    let rest = async {
        while let Some(q) = rx.next(&done).await {
            write(q).await;
        }
    };
    if tokio::time::timeout(drain, rest).await.is_err() {
        // The write cut short, and what was still behind it.
        let dropped = 1 + rx.warning.len() + rx.normal.len();
        tracing::warn!(
            dropped,
            "events still queued {drain:?} after the controllers stopped; not written"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(ns: Option<&str>, name: &str, uid: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("external-secrets.io/v1".into()),
            kind: Some("ExternalSecret".into()),
            namespace: ns.map(Into::into),
            name: Some(name.into()),
            uid: Some(uid.into()),
            ..Default::default()
        }
    }

    fn event(type_: EventType, reason: &str, note: &str) -> Event {
        Event {
            type_,
            reason: reason.into(),
            note: Some(note.into()),
            action: "Sync".into(),
            secondary: None,
        }
    }

    #[test]
    fn the_same_event_is_one_series_and_any_difference_is_another() {
        let r = reference(Some("a"), "es", "u1");
        let base = event_key(&event(EventType::Normal, "Updated", "Updated Secret"), &r);
        assert_eq!(
            base,
            event_key(&event(EventType::Normal, "Updated", "Updated Secret"), &r)
        );
        let others = [
            event_key(&event(EventType::Warning, "Updated", "Updated Secret"), &r),
            event_key(&event(EventType::Normal, "Created", "Updated Secret"), &r),
            event_key(&event(EventType::Normal, "Updated", "other note"), &r),
            event_key(
                &event(EventType::Normal, "Updated", "Updated Secret"),
                &reference(Some("b"), "es", "u1"),
            ),
            event_key(
                &event(EventType::Normal, "Updated", "Updated Secret"),
                &reference(Some("a"), "es", "u2"),
            ),
        ];
        for k in others {
            assert_ne!(k, base);
        }
    }

    /// Warnings are taken before normal events queued earlier; a full normal queue does not
    /// keep a warning out; after `done`, what was queued is still handed out, then `None`.
    #[tokio::test]
    async fn warnings_first_and_never_crowded_out() {
        let (tx, mut rx) = queue();
        let done = tokio_util::sync::CancellationToken::new();
        let r = reference(Some("a"), "es", "u1");
        for i in 0..QUEUE + 10 {
            tx.send(
                event(EventType::Normal, "Created", &format!("n{i}")),
                r.clone(),
            );
        }
        tx.send(event(EventType::Warning, "UpdateFailed", "w0"), r.clone());
        tx.send(event(EventType::Warning, "UpdateFailed", "w1"), r.clone());
        let note = |q: Option<Queued>| q.and_then(|q| q.ev.note).unwrap_or_default();
        assert_eq!(note(rx.next(&done).await), "w0");
        assert_eq!(note(rx.next(&done).await), "w1");
        assert_eq!(note(rx.next(&done).await), "n0");
        done.cancel();
        // The rest of the normal queue (the ten beyond it were dropped), then the end.
        let mut rest = 0;
        while let Some(q) = rx.next(&done).await {
            assert_eq!(
                q.ev.note.as_deref(),
                Some(format!("n{}", rest + 1).as_str())
            );
            rest += 1;
        }
        assert_eq!(rest, QUEUE - 1);
        // Closed: later events are dropped, not queued.
        tx.send(event(EventType::Warning, "UpdateFailed", "late"), r);
        assert!(rx.next(&done).await.is_none());
    }

    /// An API server emulator, a recorder writing to it, and `normals` normal events about one
    /// ExternalSecret queued (notes `n0`, `n1`, ...), with the queue's sending end to add more.
    async fn queued(normals: usize) -> (kube_emulator::KubeEmulator, Recorder, Sender, Receiver) {
        let api = kube_emulator::KubeEmulator::start(Default::default())
            .await
            .unwrap();
        let recorder = Recorder::new(api.client().await, "vaultgate", None);
        let (tx, rx) = queue();
        for i in 0..normals {
            tx.send(
                event(EventType::Normal, "Created", &format!("n{i}")),
                reference(Some("default"), "es", "u1"),
            );
        }
        (api, recorder, tx, rx)
    }

    /// The notes of the events the API server holds, in the order they were written.
    async fn written(api: &kube_emulator::KubeEmulator) -> Vec<String> {
        let list = kube::Api::<K8sEvent>::namespaced(api.client().await, "default")
            .list(&Default::default())
            .await
            .unwrap();
        let mut written: Vec<(u64, String)> = list
            .items
            .into_iter()
            .map(|e| {
                let rv = e.metadata.resource_version.unwrap_or_default();
                (rv.parse().unwrap(), e.note.unwrap_or_default())
            })
            .collect();
        written.sort();
        written.into_iter().map(|(_, note)| note).collect()
    }

    /// Events are written one at a time, in the order they are taken (warnings first): with
    /// the API server taking 40 ms over each request, six take at least six times that (two
    /// writers at once would take half).
    #[tokio::test]
    async fn events_are_written_one_at_a_time_in_order() {
        let (api, recorder, tx, rx) = queued(4).await;
        let r = reference(Some("default"), "es", "u1");
        tx.send(event(EventType::Warning, "UpdateFailed", "w0"), r.clone());
        tx.send(event(EventType::Warning, "UpdateFailed", "w1"), r);
        let done = tokio_util::sync::CancellationToken::new();
        done.cancel();
        let latency = Duration::from_millis(40);
        api.set_latency(latency);
        let start = Instant::now();
        deliver(&recorder, rx, done).await;
        let took = start.elapsed();
        api.set_latency(Duration::ZERO);
        assert!(took >= latency * 6, "six events written in {took:?}");
        assert_eq!(written(&api).await, ["w0", "w1", "n0", "n1", "n2", "n3"]);
    }

    /// At shutdown the queue gets `drain` and no more: with the API server taking 200 ms over
    /// each request, five queued events are not all written in 300 ms, and delivery ends then.
    #[tokio::test]
    async fn a_slow_api_server_does_not_hold_shutdown_beyond_the_drain_time() {
        let (api, recorder, _tx, rx) = queued(5).await;
        let done = tokio_util::sync::CancellationToken::new();
        done.cancel();
        api.set_latency(Duration::from_millis(200));
        let start = Instant::now();
        deliver_within(&recorder, rx, done, Duration::from_millis(300)).await;
        let took = start.elapsed();
        api.set_latency(Duration::ZERO);
        assert!(
            took < Duration::from_millis(1500),
            "delivery ended after {took:?}"
        );
        let written = written(&api).await.len();
        assert!((1..5).contains(&written), "{written} of 5 events written");
    }

    #[test]
    fn cluster_scoped_objects_get_events_in_default() {
        assert_eq!(event_namespace(&reference(None, "s", "u")), "default");
        assert_eq!(event_namespace(&reference(Some(""), "s", "u")), "default");
        assert_eq!(event_namespace(&reference(Some("x"), "s", "u")), "x");
    }
}
