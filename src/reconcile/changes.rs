//! Watch events passed on only when they change what a reconcile decides on, as kube-runtime's
//! `predicate_filter` passes them (the same one-hour memory), with smaller entries: an object
//! is remembered by its uid read as the 128-bit number it is, where kube's key held name,
//! namespace and uid as three strings, a third of the filter's memory per object.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;

/// How long an object's last hash is remembered without an event (kube-runtime's default).
const TTL: Duration = Duration::from_secs(3600);

/// Passes on the errors, the objects without a hash, and the objects whose `hash` differs from
/// the one of their previous event (or that had none within [`TTL`]).
pub(crate) fn changed_only<K, E>(
    stream: impl Stream<Item = Result<K, E>>,
    hash: impl Fn(&K) -> Option<u64>,
) -> impl Stream<Item = Result<K, E>>
where
    K: Resource,
{
    let mut seen = Seen::default();
    stream.filter(move |item| {
        let pass = match item {
            Ok(obj) => hash(obj).is_none_or(|h| seen.changed(key(obj.meta()), h, Instant::now())),
            Err(_) => true,
        };
        futures::future::ready(pass)
    })
}

/// Each object's last hash and when it was seen.
#[derive(Default)]
struct Seen {
    last: HashMap<u128, (u64, Instant)>,
    swept: Option<Instant>,
}

impl Seen {
    fn changed(&mut self, key: u128, hash: u64, now: Instant) -> bool {
        // Forgetting deleted objects: a sweep per TTL, as kube-runtime does.
        if self.swept.is_none_or(|at| now.duration_since(at) >= TTL) {
            self.last
                .retain(|_, (_, seen)| now.duration_since(*seen) < TTL);
            self.swept = Some(now);
        }
        match self.last.insert(key, (hash, now)) {
            Some((old, seen)) => old != hash || now.duration_since(seen) >= TTL,
            None => true,
        }
    }
}

/// An object's identity: its uid, a UUID, as a number (exact, so two objects never share an
/// entry); anything else that is not one hashed with its namespace and name, 128 bits wide.
fn key(meta: &ObjectMeta) -> u128 {
    let uid = meta.uid.as_deref().unwrap_or_default();
    if let Some(n) = uuid_value(uid) {
        return n;
    }
    let half = |salt: u8| {
        let mut h = DefaultHasher::new();
        (salt, uid, &meta.namespace, &meta.name).hash(&mut h);
        u128::from(h.finish())
    };
    half(0) << 64 | half(1)
}

/// The 128 bits of a UUID written as 32 hexadecimal digits, with or without dashes.
fn uuid_value(s: &str) -> Option<u128> {
    let mut n: u128 = 0;
    let mut digits = 0;
    for c in s.chars().filter(|c| *c != '-') {
        digits += 1;
        if digits > 32 {
            return None;
        }
        n = n << 4 | u128::from(c.to_digit(16)?);
    }
    (digits == 32).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(uid: Option<&str>, ns: &str, name: &str) -> ObjectMeta {
        ObjectMeta {
            uid: uid.map(Into::into),
            namespace: Some(ns.into()),
            name: Some(name.into()),
            ..Default::default()
        }
    }

    #[test]
    fn uids_are_read_as_numbers_and_others_hashed() {
        let a = "0f8fad5b-d9cb-469f-a165-70867728950e";
        assert_eq!(
            key(&meta(Some(a), "x", "y")),
            0x0f8fad5b_d9cb_469f_a165_70867728950e
        );
        // The namespace and name do not matter once there is a uid.
        assert_eq!(key(&meta(Some(a), "x", "y")), key(&meta(Some(a), "z", "w")));
        let cases = [
            ("a UUID", Some(a), true),
            (
                "without dashes",
                Some("0f8fad5bd9cb469fa16570867728950e"),
                true,
            ),
            (
                "a digit short",
                Some("0f8fad5b-d9cb-469f-a165-70867728950"),
                false,
            ),
            (
                "a digit more",
                Some("0f8fad5b-d9cb-469f-a165-70867728950e0"),
                false,
            ),
            (
                "not hexadecimal",
                Some("0f8fad5b-d9cb-469f-a165-70867728950g"),
                false,
            ),
            ("no uid", None, false),
        ];
        for (what, uid, parsed) in cases {
            assert_eq!(
                uuid_value(uid.unwrap_or_default()).is_some(),
                parsed,
                "{what}"
            );
        }
        // Without a uid, each object is its own entry.
        let keys: std::collections::HashSet<u128> = [("x", "y"), ("x", "z"), ("w", "y")]
            .map(|(ns, n)| key(&meta(None, ns, n)))
            .into();
        assert_eq!(keys.len(), 3);
    }

    #[test]
    fn passes_what_changed_or_was_forgotten() {
        let t0 = Instant::now();
        let mins = |m: u64| t0 + Duration::from_secs(60 * m);
        // (key, hash, at, passed on)
        let steps = [
            (1, 10, mins(0), true),
            (1, 10, mins(1), false),
            (2, 10, mins(1), true),
            (1, 11, mins(2), true),
            (1, 11, mins(3), false),
            // Unseen for the TTL: passed on again.
            (1, 11, mins(64), true),
            (1, 11, mins(65), false),
        ];
        let mut seen = Seen::default();
        for (i, (key, hash, at, want)) in steps.into_iter().enumerate() {
            assert_eq!(seen.changed(key, hash, at), want, "step {i}");
        }
        // The sweep at 64 minutes forgot key 2 (last seen at 1 minute).
        assert!(!seen.last.contains_key(&2));
    }
}
