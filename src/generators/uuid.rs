//! The UUID generator: a random (version 4, RFC 9562) UUID under the key `uuid`, as ESO.

use std::collections::BTreeMap;

use rand::Rng;

/// 122 random bits with the version (4) and variant (10) bits set, in the 8-4-4-4-12 form.
pub fn generate(rng: &mut impl Rng) -> BTreeMap<String, Vec<u8>> {
    let mut b: [u8; 16] = rng.random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = data_encoding::HEXLOWER.encode(&b);
    let s = format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    );
    BTreeMap::from([("uuid".to_string(), s.into_bytes())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_version_4_and_differ() {
        let mut rng = rand::rng();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let out = generate(&mut rng);
            let s = String::from_utf8(out["uuid"].clone()).unwrap();
            assert_eq!(s.len(), 36, "{s}");
            let parts: Vec<&str> = s.split('-').collect();
            assert_eq!(
                parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
                [8, 4, 4, 4, 12]
            );
            assert!(parts[2].starts_with('4'), "{s}");
            assert!("89ab".contains(&parts[3][..1]), "{s}");
            assert!(seen.insert(s));
        }
    }
}
