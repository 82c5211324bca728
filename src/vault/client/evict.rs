//! Which cached Vault clients to drop: a pure decision over what each cache entry is doing, so
//! that the cache stays bounded however many store identities pass through it (referent
//! ClusterSecretStores multiply by namespaces; admission logs in for stores this replica never
//! reconciles).

use std::time::{Duration, Instant};

/// How long a logged-in client may go unused before its token is revoked and it is dropped.
pub const IDLE_EVICT: Duration = Duration::from_secs(30 * 60);
/// Most entries kept; beyond it the least recently used idle ones go first.
pub const MAX_ENTRIES: usize = 4096;
/// How often a lookup that adds nothing sweeps anyway, so that idle entries go even when no
/// new store identity comes.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// How long a failed login answers further callers for the same store identity, so that many
/// ExternalSecrets of a misconfigured store cause one login attempt, not one each; after it the
/// entry may go.
pub const LOGIN_FAILURE_WINDOW: Duration = Duration::from_secs(5);

/// The bounds of the client cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub idle: Duration,
    pub max_entries: usize,
    pub failure_window: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            idle: IDLE_EVICT,
            max_entries: MAX_ENTRIES,
            failure_window: LOGIN_FAILURE_WINDOW,
        }
    }
}

/// One cache entry as the decision sees it.
#[derive(Debug, Clone, Copy)]
pub struct EntryState {
    pub last_used: Instant,
    pub logged_in: bool,
    /// When the last login failed, for an entry without a client.
    pub failed_at: Option<Instant>,
    /// Someone holds the entry or its client right now (a lookup or a call under way):
    /// dropping it would revoke a token in use, or lose a login about to finish.
    pub in_use: bool,
}

/// The entries to drop, by index into `entries`: idle logged-in clients, failed logins past
/// their window (a later lookup tries again), then the least recently used over the limit.
/// Entries in use and logins under way are never chosen.
pub fn to_evict(entries: &[EntryState], now: Instant, limits: Limits) -> Vec<usize> {
    let age = |t: Instant| now.saturating_duration_since(t);
    let mut out: Vec<usize> = Vec::new();
    let mut candidates: Vec<usize> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if e.in_use {
            continue;
        }
        let expired = match (e.logged_in, e.failed_at) {
            (true, _) => age(e.last_used) >= limits.idle,
            (false, Some(at)) => age(at) >= limits.failure_window,
            // A login under way.
            (false, None) => continue,
        };
        if expired {
            out.push(i);
        } else {
            candidates.push(i);
        }
    }
    let left = entries.len() - out.len();
    if left > limits.max_entries {
        candidates.sort_by_key(|&i| entries[i].last_used);
        out.extend(candidates.into_iter().take(left - limits.max_entries));
    }
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_goes() {
        let now = Instant::now() + Duration::from_secs(10_000);
        let secs = Duration::from_secs;
        let e = |used: u64, logged_in: bool, failed: Option<u64>, in_use: bool| EntryState {
            last_used: now - secs(used),
            logged_in,
            failed_at: failed.map(|f| now - secs(f)),
            in_use,
        };
        let limits = |max: usize| Limits {
            idle: secs(100),
            max_entries: max,
            failure_window: secs(5),
        };
        // (entries, limit, evicted)
        let cases: Vec<(&str, Vec<EntryState>, usize, Vec<usize>)> = vec![
            (
                "recently used stays, idle goes",
                vec![e(10, true, None, false), e(100, true, None, false)],
                10,
                vec![1],
            ),
            (
                "idle but in use stays",
                vec![e(500, true, None, true)],
                10,
                vec![],
            ),
            (
                "a failed login goes after its window",
                vec![e(1, false, Some(6), false), e(1, false, Some(1), false)],
                10,
                vec![0],
            ),
            (
                "a login under way stays, even over the limit",
                vec![e(900, false, None, false), e(900, false, None, false)],
                1,
                vec![],
            ),
            (
                "over the limit: least recently used first",
                vec![
                    e(30, true, None, false),
                    e(50, true, None, false),
                    e(10, true, None, false),
                    e(40, true, None, true),
                ],
                2,
                vec![0, 1],
            ),
            (
                "expired ones count toward bringing it under the limit",
                vec![
                    e(300, true, None, false),
                    e(20, true, None, false),
                    e(10, true, None, false),
                ],
                2,
                vec![0],
            ),
            (
                "all in use: over the limit for now",
                vec![e(50, true, None, true), e(60, true, None, true)],
                1,
                vec![],
            ),
        ];
        for (what, entries, max, want) in cases {
            assert_eq!(to_evict(&entries, now, limits(max)), want, "{what}");
        }
    }
}
