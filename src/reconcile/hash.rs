//! Stable hashes: of a Secret's data (the `data-hash` annotation that reveals tampering) and of
//! an ExternalSecret's labels and annotations (part of `syncedResourceVersion`).
//!
//! ESO hashes with its own scheme; only consistency within vaultgate matters, because the
//! annotation is compared with a hash vaultgate computes itself.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// Hex sha256 of the data map: keys in order, each key and value length-prefixed so that no two
/// different maps produce the same byte stream.
pub fn data_hash<'a, I, V>(data: I) -> String
where
    I: IntoIterator<Item = (&'a String, V)>,
    V: AsRef<[u8]>,
{
    // Collect into a BTreeMap so callers may pass any iteration order.
    let sorted: BTreeMap<&String, V> = data.into_iter().collect();
    let mut h = Sha256::new();
    for (k, v) in sorted {
        h.update((k.len() as u64).to_be_bytes());
        h.update(k.as_bytes());
        let v = v.as_ref();
        h.update((v.len() as u64).to_be_bytes());
        h.update(v);
    }
    hex(&h.finalize())
}

/// Short hex hash of labels and annotations, ignoring kubectl's last-applied annotation (it
/// changes with every `kubectl apply` without changing what the user asked for).
pub fn meta_hash(
    labels: Option<&BTreeMap<String, String>>,
    annotations: Option<&BTreeMap<String, String>>,
) -> String {
    let mut h = Sha256::new();
    for (tag, entries) in meta_parts(labels, annotations) {
        h.update([tag]);
        for (k, v) in entries {
            h.update((k.len() as u64).to_be_bytes());
            h.update(k.as_bytes());
            h.update((v.len() as u64).to_be_bytes());
            h.update(v.as_bytes());
        }
    }
    // 128 bits are plenty to notice a change; shorter values read better in `kubectl get -o yaml`.
    hex(&h.finalize()[..16])
}

/// kubectl's client-side-apply annotation: never copied onto the Secret (it describes the
/// ExternalSecret, and it can be large).
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What [`meta_hash`] covers: the labels and the annotations, each tagged, without kubectl's
/// last-applied annotation. Shared with checks that need the same notion of "changed" without
/// a SHA-256.
pub fn meta_parts<'a>(
    labels: Option<&'a BTreeMap<String, String>>,
    annotations: Option<&'a BTreeMap<String, String>>,
) -> [(u8, impl Iterator<Item = (&'a String, &'a String)>); 2] {
    fn counted(map: Option<&BTreeMap<String, String>>) -> impl Iterator<Item = (&String, &String)> {
        map.into_iter()
            .flatten()
            .filter(|(k, _)| *k != LAST_APPLIED)
    }
    [(b'l', counted(labels)), (b'a', counted(annotations))]
}

/// A deterministic number in `[0, 1)` derived from a string (an object's uid): the same object
/// always gets the same refresh offset, different objects get spread ones.
pub fn unit_fraction(seed: &str) -> f64 {
    let d = Sha256::digest(seed.as_bytes());
    let n = u64::from_be_bytes(d[..8].try_into().expect("8 bytes"));
    (n >> 11) as f64 / (1u64 << 53) as f64
}

/// Lower-case hex. By table rather than `write!("{b:02x}")` per byte: the formatter's machinery
/// per byte made the two hashes of every sync cost more than their SHA-256s.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn data_hash_is_stable_and_sensitive() {
        let a = map(&[("a", "1"), ("b", "2")]);
        let h = data_hash(&a);
        assert_eq!(h.len(), 64);
        assert_eq!(h, data_hash(&a.clone()));
        // Known value: pins the scheme, so that an upgrade does not re-sync every Secret.
        assert_eq!(
            data_hash(&map(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let cases = [
            map(&[("a", "1"), ("b", "3")]),
            map(&[("a", "1")]),
            map(&[("a", "1"), ("b", "2"), ("c", "")]),
            // Moving bytes between key and value must change the hash.
            map(&[("a1", ""), ("b", "2")]),
            map(&[("a", "1b"), ("", "2")]),
        ];
        for (i, c) in cases.iter().enumerate() {
            assert_ne!(data_hash(c), h, "case {i}");
        }
    }

    #[test]
    fn data_hash_accepts_byte_strings() {
        use k8s_openapi::ByteString;
        let bs: BTreeMap<String, ByteString> = [("a".to_string(), ByteString(b"1".to_vec()))]
            .into_iter()
            .collect();
        assert_eq!(
            data_hash(bs.iter().map(|(k, v)| (k, &v.0))),
            data_hash(&map(&[("a", "1")]))
        );
    }

    #[test]
    fn hex_is_lower_case_two_digits_per_byte() {
        for (bytes, want) in [
            (&[][..], ""),
            (&[0x00][..], "00"),
            (&[0x0f, 0xa0][..], "0fa0"),
            (&[0xff, 0x10, 0x09][..], "ff1009"),
        ] {
            assert_eq!(hex(bytes), want, "{bytes:?}");
        }
    }

    #[test]
    fn meta_hash_ignores_last_applied() {
        let l: BTreeMap<String, String> = [("app".to_string(), "x".to_string())].into();
        let mut a: BTreeMap<String, String> = BTreeMap::new();
        let base = meta_hash(Some(&l), Some(&a));
        a.insert(super::LAST_APPLIED.into(), "{}".into());
        assert_eq!(meta_hash(Some(&l), Some(&a)), base);
        assert_eq!(meta_hash(Some(&l), None), base);
        a.insert("note".into(), "y".into());
        assert_ne!(meta_hash(Some(&l), Some(&a)), base);
        // A label and an annotation with the same text are different things.
        assert_ne!(meta_hash(Some(&l), None), meta_hash(None, Some(&l)));
        assert_eq!(meta_hash(None, None).len(), 32);
    }

    #[test]
    fn unit_fraction_spreads() {
        let xs: Vec<f64> = (0..1000)
            .map(|i| unit_fraction(&format!("uid-{i}")))
            .collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        assert_eq!(unit_fraction("same"), unit_fraction("same"));
        // Roughly uniform: every tenth of the range gets some.
        for bucket in 0..10 {
            let n = xs
                .iter()
                .filter(|x| (**x * 10.0) as usize == bucket)
                .count();
            assert!((50..150).contains(&n), "bucket {bucket}: {n}");
        }
    }
}
