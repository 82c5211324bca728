//! Shared reads: identical reads (and capabilities checks) of one store identity in flight at
//! once, or finished a moment ago, share one Vault request.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;
use tokio::sync::OnceCell;

use super::StoreClient;
use crate::vault::VaultError;
use crate::vault::answers;
use crate::vault::http::Req;

/// How long a finished read answers identical reads of the same store, path and version by
/// default (the webhook's live checks, and syncs asked to see fresh data). ExternalSecrets
/// reading the same data come due at the same instant (see `reconcile::refresh::next_due`), so
/// a short window catches them all; it stays well under the shortest refresh interval people
/// use (1 s) so that each refresh still reads Vault.
pub const READ_SHARE_WINDOW: Duration = Duration::from_millis(500);
/// The longest any caller may let a finished read answer it ([`with_read_reuse`]): a twentieth
/// of the default refresh interval (an hour).
pub const MAX_READ_REUSE: Duration = Duration::from_secs(180);
/// Values kept past [`READ_SHARE_WINDOW`] per store identity, estimated in bytes: reuse saves
/// Vault reads, it must not turn into a cache of every secret.
const READ_REUSE_BUDGET: usize = 4 << 20;
/// A sweep is due at the latest this long after the last one...
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// ...or once the reads have doubled since it, and not below this many.
const SWEEP_MIN_ENTRIES: usize = 64;

/// Which earlier identical reads may answer a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadReuse {
    /// One in flight, or finished up to this long ago (clamped to
    /// [`READ_SHARE_WINDOW`]..=[`MAX_READ_REUSE`]).
    FinishedWithin(Duration),
    /// Only one that started at or after this instant: after a change someone made (a Vault
    /// write, then a `force-sync`), what Vault holds since then.
    StartedSince(Instant),
}

tokio::task_local! {
    static READ_REUSE: ReadReuse;
}

/// Runs `fut` letting its reads be answered by identical reads (same store identity, path and
/// version) as `reuse` allows. The reconciler uses it so that the ExternalSecrets reading one
/// secret, created seconds apart, cost one Vault read.
pub async fn with_read_reuse<F: std::future::Future>(reuse: ReadReuse, fut: F) -> F::Output {
    let reuse = match reuse {
        ReadReuse::FinishedWithin(d) => {
            ReadReuse::FinishedWithin(d.clamp(READ_SHARE_WINDOW, MAX_READ_REUSE))
        }
        since => since,
    };
    READ_REUSE.scope(reuse, fut).await
}

fn read_reuse() -> ReadReuse {
    READ_REUSE
        .try_with(|r| *r)
        .unwrap_or(ReadReuse::FinishedWithin(READ_SHARE_WINDOW))
}

pub(super) type ReadResult = Result<Option<Arc<Value>>, VaultError>;

/// A store identity's reads, in flight or finished, by call, path and query.
#[derive(Default)]
pub(super) struct Reads {
    slots: HashMap<String, Arc<ReadSlot>>,
    sweep: SweepSchedule,
}

/// When to sweep the reads. A sweep walks them all, so one per new read made a sync of a store
/// with many paths quadratic in them; sweeping when they have doubled, or a second on, costs a
/// constant per read, and lets them run over the budget by at most that much in between.
#[derive(Default)]
struct SweepSchedule {
    /// How many reads the last sweep left, and when it ran.
    left: usize,
    at: Option<Instant>,
}

impl SweepSchedule {
    fn due(&self, len: usize, now: Instant) -> bool {
        len >= (2 * self.left).max(SWEEP_MIN_ENTRIES)
            || self
                .at
                .is_none_or(|at| now.duration_since(at) >= SWEEP_EVERY)
    }
}

impl Reads {
    /// Before inserting a read: sweeps when due. Returns how many reads it walked.
    fn sweep_if_due(&mut self, now: Instant) -> usize {
        let len = self.slots.len();
        if !self.sweep.due(len, now) {
            return 0;
        }
        sweep_reads(&mut self.slots, now);
        self.sweep = SweepSchedule {
            left: self.slots.len(),
            at: Some(now),
        };
        len
    }
}

pub(super) struct ReadSlot {
    started: Instant,
    cell: OnceCell<ReadResult>,
    done: OnceLock<Instant>,
    /// Estimated size of the value, once read.
    size: OnceLock<usize>,
}

impl ReadSlot {
    fn new(started: Instant) -> Self {
        ReadSlot {
            started,
            cell: OnceCell::new(),
            done: OnceLock::new(),
            size: OnceLock::new(),
        }
    }

    /// Joinable under `reuse`: still running or finished successfully, recently enough.
    ///
    /// `done` is set inside the read's future, a moment before the cell stores its result; a
    /// slot seen in that moment is still in flight, not finished without a value.
    fn shareable(&self, now: Instant, reuse: ReadReuse) -> bool {
        match reuse {
            ReadReuse::StartedSince(t) if self.started < t => false,
            ReadReuse::StartedSince(_) => !matches!(self.cell.get(), Some(Err(_))),
            ReadReuse::FinishedWithin(max_age) => match self.cell.get() {
                None => true,
                Some(Ok(_)) => self
                    .done
                    .get()
                    .is_some_and(|t| now.duration_since(*t) < max_age),
                Some(Err(_)) => false,
            },
        }
    }

    /// Finished successfully less than `max_age` ago, or still running.
    fn recent(&self, now: Instant, max_age: Duration) -> bool {
        self.shareable(now, ReadReuse::FinishedWithin(max_age))
    }
}

/// A rough size of a JSON value in memory, for [`READ_REUSE_BUDGET`].
fn value_size(v: &Value) -> usize {
    match v {
        Value::String(s) => 24 + s.len(),
        Value::Array(a) => 24 + a.iter().map(value_size).sum::<usize>(),
        Value::Object(o) => {
            24 + o
                .iter()
                .map(|(k, v)| 48 + k.len() + value_size(v))
                .sum::<usize>()
        }
        _ => 24,
    }
}

/// Drops reads nobody may reuse any more, then the oldest reused values over the budget.
fn sweep_reads(reads: &mut HashMap<String, Arc<ReadSlot>>, now: Instant) {
    reads.retain(|_, s| s.recent(now, MAX_READ_REUSE));
    let kept: usize = reads
        .values()
        .filter(|s| !s.recent(now, READ_SHARE_WINDOW))
        .filter_map(|s| s.size.get())
        .sum();
    if kept <= READ_REUSE_BUDGET {
        return;
    }
    let mut old: Vec<(Instant, String, usize)> = reads
        .iter()
        .filter(|(_, s)| !s.recent(now, READ_SHARE_WINDOW))
        .filter_map(|(k, s)| Some((*s.done.get()?, k.clone(), *s.size.get()?)))
        .collect();
    old.sort_unstable_by_key(|(t, _, _)| *t);
    let mut over = kept - READ_REUSE_BUDGET;
    for (_, k, size) in old {
        if over == 0 {
            break;
        }
        reads.remove(&k);
        over = over.saturating_sub(size);
    }
}

impl StoreClient {
    /// Deduplicated GET: identical concurrent reads share one Vault request, and so do reads
    /// within [`READ_SHARE_WINDOW`] of a successful one (or the longer age the caller allows,
    /// see [`with_read_reuse`]). `extract` takes what the caller needs from the answer once,
    /// for every sharer; an answer of the wrong shape is an error, and errors are not reused.
    pub(super) async fn shared_get(
        &self,
        call: &'static str,
        path: String,
        query: Option<String>,
        extract: impl FnOnce(&Value) -> Result<Value, VaultError>,
    ) -> ReadResult {
        let key = format!("{call} {path}?{}", query.as_deref().unwrap_or(""));
        self.shared(key, async {
            match self.get_json(call, &path, query.as_deref()).await {
                Ok(Some(body)) => extract(&body).map(|v| Some(Arc::new(v))),
                other => other,
            }
        })
        .await
    }

    /// `fetch`, or the answer of an identical call (`key`) of this store identity in flight, or
    /// finished as recently as [`shared_get`](Self::shared_get) allows.
    pub(super) async fn shared(
        &self,
        key: String,
        fetch: impl std::future::Future<Output = ReadResult>,
    ) -> ReadResult {
        let reuse = read_reuse();
        let slot = {
            let now = Instant::now();
            let mut reads = self.reads.lock();
            match reads.slots.get(&key) {
                Some(s) if s.shareable(now, reuse) => s.clone(),
                _ => {
                    // Only an insert sweeps: only an insert can take memory over the budget.
                    reads.sweep_if_due(now);
                    let s = Arc::new(ReadSlot::new(now));
                    reads.slots.insert(key, s.clone());
                    s
                }
            }
        };
        slot.cell
            .get_or_init(|| async {
                let r = fetch.await;
                if let Ok(Some(v)) = &r {
                    let _ = slot.size.set(value_size(v));
                }
                let _ = slot.done.set(Instant::now());
                r
            })
            .await
            .clone()
    }

    /// GET returning the body, `None` on 404.
    async fn get_json(&self, call: &str, path: &str, query: Option<&str>) -> ReadResult {
        let reply = self
            .call(Req {
                call,
                method: Method::GET,
                path,
                query,
                token: None,
                namespace: None,
                body: None,
            })
            .await?;
        match reply.status {
            200..=299 => Ok(Some(Arc::new(reply.body))),
            // KV v2 answers a deleted or destroyed version with 404 and its metadata.
            _ if reply.is_vault_not_found() && answers::deleted_version(&reply.body).is_some() => {
                Ok(Some(Arc::new(reply.body)))
            }
            _ if reply.is_vault_not_found() => Ok(None),
            _ => Err(self.status_error(call, &Method::GET, path, &reply)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_drop_expired_reads_then_the_oldest_over_the_budget() {
        let now = Instant::now();
        let slot = |ago: Duration, size: usize, result: ReadResult| {
            let s = ReadSlot::new(now - ago);
            s.done.set(now - ago).unwrap();
            s.size.set(size).unwrap();
            s.cell.set(result).unwrap();
            Arc::new(s)
        };
        let ok = || Ok(Some(Arc::new(Value::Null)));
        let secs = Duration::from_secs;
        let mb = 1 << 20;
        /// A read in the cache: key, age, estimated size, and whether it succeeded.
        type Entry = (&'static str, Duration, usize, bool);
        // (the cache, the keys left after a sweep)
        let cases: [(&[Entry], &[&str]); 4] = [
            (
                &[("a", secs(1), mb, true), ("b", secs(2), mb, true)],
                &["a", "b"],
            ),
            // Past the longest reuse, or failed: gone whatever the budget.
            (
                &[
                    ("a", secs(1), 10, true),
                    ("old", MAX_READ_REUSE + secs(1), 10, true),
                    ("bad", secs(0), 10, false),
                ],
                &["a"],
            ),
            // 6 MiB kept against a budget of 4: the oldest goes, which brings it down to 4.
            (
                &[
                    ("new", secs(1), 2 * mb, true),
                    ("mid", secs(5), 2 * mb, true),
                    ("oldest", secs(9), 2 * mb, true),
                ],
                &["mid", "new"],
            ),
            // Within the share window, a read is not yet "kept": it does not count.
            (
                &[
                    ("now", Duration::ZERO, 8 * mb, true),
                    ("a", secs(3), mb, true),
                ],
                &["a", "now"],
            ),
        ];
        for (entries, left) in cases {
            let mut reads: HashMap<String, Arc<ReadSlot>> = entries
                .iter()
                .map(|(k, ago, size, good)| {
                    let r = if *good {
                        ok()
                    } else {
                        Err(VaultError::bad_answer("x"))
                    };
                    (k.to_string(), slot(*ago, *size, r))
                })
                .collect();
            sweep_reads(&mut reads, now);
            let mut keys: Vec<&str> = reads.keys().map(String::as_str).collect();
            keys.sort();
            assert_eq!(keys, left, "{entries:?}");
        }
    }

    #[test]
    fn sweeps_are_due_when_the_reads_have_doubled_or_a_second_on() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        let after = |left, ago| SweepSchedule {
            left,
            at: Some(now - ago),
        };
        // (schedule, reads now, due)
        let cases = [
            (SweepSchedule::default(), 0, true),
            (after(0, ms(10)), 63, false),
            (after(0, ms(10)), 64, true),
            (after(100, ms(10)), 199, false),
            (after(100, ms(10)), 200, true),
            (after(100, ms(999)), 101, false),
            (after(100, ms(1000)), 101, true),
        ];
        for (i, (schedule, len, due)) in cases.into_iter().enumerate() {
            assert_eq!(schedule.due(len, now), due, "case {i}");
        }
    }

    #[test]
    fn sweeps_walk_a_constant_number_of_reads_per_insert() {
        // 100,000 distinct reads within a second, none expired: sweeping on every insert walked
        // five billion entries here.
        let now = Instant::now();
        let mut reads = Reads::default();
        let mut walked = 0;
        for i in 0..100_000 {
            walked += reads.sweep_if_due(now);
            let s = ReadSlot::new(now);
            s.cell.set(Ok(Some(Arc::new(Value::Null)))).unwrap();
            s.done.set(now).unwrap();
            reads.slots.insert(format!("read {i}"), Arc::new(s));
        }
        assert_eq!(reads.slots.len(), 100_000);
        assert!(walked <= 2 * 100_000, "{walked} entries walked");
    }

    #[test]
    fn read_slots_are_joined_until_they_age_or_fail() {
        let now = Instant::now();
        let age = Duration::from_secs(1);
        let slot = |done: Option<Duration>, result: Option<ReadResult>| {
            let s = ReadSlot::new(now - Duration::from_secs(2));
            if let Some(ago) = done {
                s.done.set(now - ago).unwrap();
            }
            if let Some(r) = result {
                s.cell.set(r).unwrap();
            }
            s
        };
        let ok = || Some(Ok(Some(Arc::new(Value::Null))));
        let err = || Some(Err(VaultError::bad_answer("x")));
        let cases = [
            ("in flight", slot(None, None), true),
            // The moment between the read's end and its result being stored.
            ("finishing", slot(Some(Duration::ZERO), None), true),
            ("fresh", slot(Some(Duration::from_millis(900)), ok()), true),
            (
                "fresh, not found",
                slot(Some(Duration::ZERO), Some(Ok(None))),
                true,
            ),
            (
                "too old",
                slot(Some(Duration::from_millis(1000)), ok()),
                false,
            ),
            ("failed", slot(Some(Duration::ZERO), err()), false),
        ];
        for (what, s, want) in cases {
            assert_eq!(s.recent(now, age), want, "{what}");
        }
    }

    #[test]
    fn after_a_change_only_reads_started_since_are_joined() {
        let now = Instant::now();
        let change = now - Duration::from_millis(100);
        let slot = |started: Instant, result: Option<ReadResult>| {
            let s = ReadSlot::new(started);
            if let Some(r) = result {
                let _ = s.done.set(now);
                s.cell.set(r).unwrap();
            }
            s
        };
        let ok = || Some(Ok(Some(Arc::new(Value::Null))));
        let err = || Some(Err(VaultError::bad_answer("x")));
        let before = change - Duration::from_millis(10);
        let since = ReadReuse::StartedSince(change);
        let cases = [
            (
                "in flight, started before the change",
                slot(before, None),
                false,
            ),
            (
                "finished a moment ago, started before",
                slot(before, ok()),
                false,
            ),
            ("in flight, started since", slot(change, None), true),
            ("finished, started since", slot(now, ok()), true),
            ("failed, started since", slot(now, err()), false),
        ];
        for (what, s, want) in cases {
            assert_eq!(s.shareable(now, since), want, "{what}");
        }
    }
}
