//! Scheduled refreshes wait here, not in the controller's queue. The controller works through
//! its queue in order, so with thousands of refreshes due a new ExternalSecret (or a changed
//! one, or one whose Secret was deleted) waited behind all of them (ESO issues 4180, 5045).
//! This queue hands due refreshes to the controller only while fewer than `limit` of them are
//! waiting there unstarted: what a watch brings is then at most `limit` refreshes behind.
//! Refreshes that fall behind are handed out in the order they came due, none dropped.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::Stream;
use tokio::sync::Notify;

/// An ExternalSecret, by namespace and name.
pub type Key = (String, String);

/// A refresh handed to the controller and not started this long ago is presumed dropped (its
/// ExternalSecret deleted meanwhile) and no longer counts against the limit.
const HANDED_TIMEOUT: Duration = Duration::from_secs(60);

/// A key allocated once and shared by the queue's indexes: one copy of each name, not two.
type Entry = Arc<Key>;

#[derive(Default)]
struct Queue {
    due: BTreeSet<(Instant, Entry)>,
    at: HashMap<Entry, Instant>,
    /// Handed to the controller, not started yet: when.
    handed: HashMap<Entry, Instant>,
}

/// What to hand over now (oldest due first), while fewer than `limit` are waiting unstarted;
/// with how late each is.
fn release(q: &mut Queue, now: Instant, limit: usize) -> Vec<(Entry, Duration)> {
    q.handed
        .retain(|_, at| now.duration_since(*at) < HANDED_TIMEOUT);
    let mut out = vec![];
    while q.handed.len() < limit {
        let Some((due, key)) = q.due.first().cloned() else {
            break;
        };
        if due > now {
            break;
        }
        q.due.pop_first();
        q.at.remove(&key);
        q.handed.insert(key.clone(), now);
        out.push((key, now.duration_since(due)));
    }
    out
}

/// When [`release`] will next have something to hand over, if it is not blocked by the limit.
fn next_due(q: &Queue, limit: usize) -> Option<Instant> {
    (q.handed.len() < limit)
        .then(|| q.due.first().map(|(at, _)| *at))
        .flatten()
}

pub struct RefreshQueue {
    queue: Mutex<Queue>,
    wake: Notify,
    limit: usize,
    lag: prometheus::Histogram,
}

impl RefreshQueue {
    /// `lag` observes how late each refresh is handed over.
    pub fn new(limit: usize, lag: prometheus::Histogram) -> Arc<RefreshQueue> {
        Arc::new(RefreshQueue {
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            limit: limit.max(1),
            lag,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refreshes `key` at `at` (replacing any earlier schedule of it).
    pub fn schedule(&self, key: Key, at: Instant) {
        let mut q = self.lock();
        if let Some(old) = q.at.remove_entry(&key) {
            q.due.remove(&(old.1, old.0));
        }
        let key = Arc::new(key);
        q.at.insert(key.clone(), at);
        q.due.insert((at, key));
        drop(q);
        self.wake.notify_one();
    }

    /// A reconcile of `key` started: it no longer waits in the controller's queue.
    pub fn started(&self, key: &Key) {
        if self.lock().handed.remove(key).is_some() {
            self.wake.notify_one();
        }
    }

    /// `key` is gone.
    pub fn forget(&self, key: &Key) {
        let mut q = self.lock();
        if let Some(old) = q.at.remove_entry(key) {
            q.due.remove(&(old.1, old.0));
        }
        q.handed.remove(key);
        drop(q);
        self.wake.notify_one();
    }

    /// The refreshes to run, as they come due and the controller has room.
    pub fn stream(self: Arc<Self>) -> impl Stream<Item = Key> + Send + 'static {
        futures::stream::unfold(
            (self, VecDeque::new()),
            |(queue, mut ready): (Arc<Self>, VecDeque<Key>)| async move {
                loop {
                    if let Some(k) = ready.pop_front() {
                        return Some((k, (queue, ready)));
                    }
                    let (released, next) = {
                        let mut q = queue.lock();
                        let r = release(&mut q, Instant::now(), queue.limit);
                        (r, next_due(&q, queue.limit))
                    };
                    for (key, late) in released {
                        queue.lag.observe(late.as_secs_f64());
                        ready.push_back(Key::clone(&key));
                    }
                    if !ready.is_empty() {
                        continue;
                    }
                    let woken = queue.wake.notified();
                    match next {
                        Some(at) => {
                            tokio::select! {
                                _ = woken => {}
                                _ = tokio::time::sleep_until(at.into()) => {}
                            }
                        }
                        None => woken.await,
                    }
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(n: &str) -> Key {
        ("ns".into(), n.into())
    }

    fn e(n: &str) -> Entry {
        Arc::new(k(n))
    }

    #[test]
    fn hands_over_due_refreshes_oldest_first_up_to_the_limit() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut q = Queue::default();
        for (name, at) in [("c", 3), ("a", 1), ("b", 2), ("later", 100)] {
            q.due.insert((t0 + s(at), e(name)));
            q.at.insert(e(name), t0 + s(at));
        }
        // (now, limit, started since last step, handed over)
        let steps: [(u64, usize, &[&str], &[&str]); 5] = [
            (0, 2, &[], &[]),
            (5, 2, &[], &["a", "b"]),
            // The limit holds until one of them starts.
            (6, 2, &[], &[]),
            (7, 2, &["a"], &["c"]),
            (8, 2, &["b", "c"], &[]),
        ];
        for (now, limit, started, want) in steps {
            for n in started {
                q.handed.remove(&k(n));
            }
            let got: Vec<Key> = release(&mut q, t0 + s(now), limit)
                .into_iter()
                .map(|(key, late)| {
                    if *key == k("c") {
                        assert_eq!(late, s(4), "c came due at 3 s and went at 7 s");
                    }
                    Key::clone(&key)
                })
                .collect();
            let want: Vec<Key> = want.iter().map(|n| k(n)).collect();
            assert_eq!(got, want, "at {now}s");
        }
        assert_eq!(next_due(&q, 2), Some(t0 + s(100)));
    }

    #[test]
    fn a_hand_over_never_started_stops_counting_after_a_minute() {
        let t0 = Instant::now();
        let mut q = Queue::default();
        q.handed.insert(e("deleted"), t0);
        q.due.insert((t0, e("a")));
        q.at.insert(e("a"), t0);
        assert!(release(&mut q, t0 + Duration::from_secs(1), 1).is_empty());
        assert_eq!(next_due(&q, 1), None, "blocked by the limit");
        let got = release(&mut q, t0 + HANDED_TIMEOUT, 1);
        assert_eq!(got, vec![(e("a"), HANDED_TIMEOUT)]);
    }

    #[tokio::test]
    async fn rescheduling_replaces_and_the_stream_waits_for_room() {
        use futures::StreamExt;
        let lag =
            prometheus::Histogram::with_opts(prometheus::HistogramOpts::new("lag", "lag")).unwrap();
        let queue = RefreshQueue::new(1, lag.clone());
        let now = Instant::now();
        queue.schedule(k("a"), now + Duration::from_secs(3600));
        queue.schedule(k("a"), now);
        queue.schedule(k("b"), now);
        queue.forget(&k("gone"));
        let mut stream = Box::pin(queue.clone().stream());
        assert_eq!(stream.next().await, Some(k("a")));
        // "b" waits until "a" has started.
        let next = tokio::time::timeout(Duration::from_millis(100), stream.next()).await;
        assert!(next.is_err(), "handed over past the limit");
        queue.started(&k("a"));
        assert_eq!(stream.next().await, Some(k("b")));
        queue.forget(&k("b"));
        assert_eq!(
            queue.lock().due.len(),
            0,
            "the first schedule of a was replaced"
        );
        assert_eq!(lag.get_sample_count(), 2);
    }
}
