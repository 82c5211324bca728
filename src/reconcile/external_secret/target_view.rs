//! How a reconcile learns the state of the target Secret before deciding whether to sync: the
//! metadata cache and the memory of our last write, so that an untouched Secret needs no GET.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

use crate::api::{ANNOTATION_DATA_HASH, LABEL_MANAGED};
use crate::reconcile::hash::data_hash;

/// How a reconcile learns the state of the target Secret before deciding whether to sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TargetView {
    /// The cache shows our last write: nobody touched the Secret since.
    Untouched,
    /// Not in the complete cache and never written by us (or deleted since): most likely
    /// absent; the first write is made without force and falls back to a read if refused.
    PresumedAbsent,
    /// We wrote it, but the cache has not shown the write yet: its watch event is on its way
    /// and will bring another reconcile (a requeue or a store change can come first). Decided
    /// as untouched; if nothing is due, looked at again shortly, then read.
    AwaitingCache,
    /// Anything else: GET the Secret.
    Read,
}

/// `cached_rv`: the resourceVersion the Secret metadata cache holds (`None`: not cached);
/// `valid_rv`: the one our last write returned, unless the Secret was deleted since.
pub(super) fn target_view(
    cached_rv: Option<Option<&str>>,
    valid_rv: Option<&str>,
    lag_checked: bool,
    cache_ready: bool,
    writes_own_secret: bool,
    exists_uncached: bool,
) -> TargetView {
    match (cached_rv, valid_rv) {
        (Some(Some(c)), Some(v)) if c == v => TargetView::Untouched,
        (None, None) if cache_ready && writes_own_secret && !exists_uncached => {
            TargetView::PresumedAbsent
        }
        (None, Some(_)) if cache_ready && !lag_checked => TargetView::AwaitingCache,
        _ => TargetView::Read,
    }
}

/// How long a reconcile that found its own write missing from the cache waits before it
/// reads the Secret instead (normally the write's watch event comes within milliseconds).
pub(super) const CACHE_LAG_RECHECK: Duration = Duration::from_secs(2);

/// Labelled as ours, and its data is what its data-hash annotation says we wrote.
pub(super) fn is_valid_target(s: &Secret) -> bool {
    valid_target(
        s.metadata.labels.as_ref(),
        s.metadata.annotations.as_ref(),
        s.data.iter().flatten(),
    )
}

pub(super) fn valid_target<'a>(
    labels: Option<&BTreeMap<String, String>>,
    annotations: Option<&BTreeMap<String, String>>,
    data: impl Iterator<Item = (&'a String, &'a ByteString)>,
) -> bool {
    let annotated = annotations.and_then(|a| a.get(ANNOTATION_DATA_HASH));
    let labelled = labels
        .and_then(|l| l.get(LABEL_MANAGED))
        .is_some_and(|v| v == "true");
    labelled && annotated == Some(&data_hash(data.map(|(k, v)| (k, &v.0))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn how_the_target_is_looked_at() {
        use TargetView::*;
        // (cached rv, our last write's rv, already waited for the cache, cache ready,
        //  owner/orphan), view; then the same with the target known to exist uncached
        let cases = [
            (Some(Some("7")), Some("7"), false, true, true, Untouched),
            (Some(Some("7")), Some("7"), true, true, true, Untouched),
            // Someone wrote after us.
            (Some(Some("8")), Some("7"), false, true, true, Read),
            // Cached but never written by us (adopted, or written before a restart).
            (Some(Some("8")), None, false, true, true, Read),
            (Some(None), Some("7"), false, true, true, Read),
            (None, None, false, true, true, PresumedAbsent),
            (None, None, false, false, true, Read),
            // Merge and None: the Secret is not ours to create.
            (None, None, false, true, false, Read),
            // Our write's watch event has not arrived yet: wait once, then read.
            (None, Some("7"), false, true, true, AwaitingCache),
            (None, Some("7"), true, true, true, Read),
            (None, Some("7"), false, false, true, Read),
        ];
        for (cached, valid, checked, ready, own, want) in cases {
            assert_eq!(
                target_view(cached, valid, checked, ready, own, false),
                want,
                "{cached:?} {valid:?} {checked} {ready} {own}"
            );
            // A target found to exist though the cache does not show it is read, never
            // presumed absent again.
            let known = if want == PresumedAbsent { Read } else { want };
            assert_eq!(
                target_view(cached, valid, checked, ready, own, true),
                known,
                "{cached:?} {valid:?} {checked} {ready} {own} (exists uncached)"
            );
        }
    }
}
