//! Which changes of an ExternalSecret call for a reconcile.

use crate::api::ExternalSecret;
use crate::reconcile::hash::meta_parts;

/// What of an ExternalSecret can call for a reconcile when it changes: the version a sync is
/// recorded against (generation, labels and annotations, as `syncedResourceVersion`; a
/// `force-sync` annotation changes it), finalizers and deletion. Status is left out: it is
/// ours, and without this every sync's status write brought one more reconcile that found
/// nothing to do.
pub(crate) fn trigger_hash(es: &ExternalSecret) -> Option<u64> {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let m = &es.metadata;
    let mut h = DefaultHasher::new();
    m.generation.hash(&mut h);
    // What `meta_hash` covers (the synced version's part), hashed here directly: a SHA-256 and
    // its hex string for every watch event of every ExternalSecret were most of this check.
    for (tag, entries) in meta_parts(m.labels.as_ref(), m.annotations.as_ref()) {
        tag.hash(&mut h);
        entries.for_each(|e| e.hash(&mut h));
    }
    m.finalizers.hash(&mut h);
    m.deletion_timestamp
        .as_ref()
        .map(|t| t.0.as_nanosecond())
        .hash(&mut h);
    Some(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::desired;
    use k8s_openapi::jiff::Timestamp;

    #[test]
    fn what_changes_trigger_a_reconcile() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        let base = {
            let mut e = ExternalSecret::new("app", Default::default());
            e.metadata.namespace = Some("ns".into());
            e.metadata.generation = Some(1);
            e.metadata.resource_version = Some("10".into());
            e.metadata.labels = Some([("team".to_string(), "a".to_string())].into());
            e
        };
        type Change = fn(&mut ExternalSecret);
        // (what changed, whether it triggers)
        let cases: [(&str, Change, bool); 11] = [
            ("nothing", |_| {}, false),
            (
                "status (our own write) and the resourceVersion with it",
                |e| {
                    e.metadata.resource_version = Some("11".into());
                    e.status = Some(crate::api::ExternalSecretStatus {
                        synced_resource_version: Some("1".into()),
                        ..Default::default()
                    });
                },
                false,
            ),
            (
                "managedFields",
                |e| e.metadata.managed_fields = Some(vec![Default::default()]),
                false,
            ),
            (
                "spec (generation)",
                |e| e.metadata.generation = Some(2),
                true,
            ),
            (
                "a label",
                |e| e.metadata.labels = Some([("team".to_string(), "b".to_string())].into()),
                true,
            ),
            (
                "force-sync annotation",
                |e| {
                    e.metadata.annotations =
                        Some([("force-sync".to_string(), "1".to_string())].into())
                },
                true,
            ),
            (
                "a finalizer",
                |e| e.metadata.finalizers = Some(vec![desired::FINALIZER.into()]),
                true,
            ),
            (
                "deletion",
                |e| e.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH)),
                true,
            ),
            ("labels emptied", |e| e.metadata.labels = None, true),
            (
                "a label moved to the annotations",
                |e| e.metadata.annotations = e.metadata.labels.take(),
                true,
            ),
            (
                "only kubectl's last-applied annotation (not part of the synced version)",
                |e| {
                    e.metadata.annotations = Some(
                        [(
                            crate::reconcile::hash::LAST_APPLIED.to_string(),
                            "{}".to_string(),
                        )]
                        .into(),
                    )
                },
                false,
            ),
        ];
        let before = trigger_hash(&base);
        assert!(before.is_some());
        for (what, change, triggers) in cases {
            let mut e = base.clone();
            change(&mut e);
            assert_eq!(trigger_hash(&e) != before, triggers, "{what}");
        }
    }
}
