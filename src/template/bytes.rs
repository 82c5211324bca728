//! Go strings are bytes; template values here are UTF-8. A byte that is not part of
//! valid UTF-8 travels through templates as one private-use character (U+10FF00 plus
//! the byte) and turns back into that byte in the output, so binary values such as a
//! keystore survive `{{ .keystore }}`, `b64enc`, `b64dec` and the hashes unchanged.

const BASE: u32 = 0x10FF00;

/// Bytes as template text: valid UTF-8 as is, every other byte escaped.
pub(crate) fn to_text(mut b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    loop {
        match std::str::from_utf8(b) {
            Ok(s) => {
                out.push_str(s);
                return out;
            }
            Err(e) => {
                let (good, rest) = b.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(good).unwrap_or_default());
                let bad = e.error_len().unwrap_or(rest.len());
                for &x in &rest[..bad] {
                    out.push(char::from_u32(BASE + u32::from(x)).unwrap_or('\u{fffd}'));
                }
                b = &rest[bad..];
            }
        }
    }
}

/// Template text back to bytes, escaped bytes restored.
pub(crate) fn to_bytes(s: &str) -> Vec<u8> {
    if !s.chars().any(is_escape) {
        return s.as_bytes().to_vec();
    }
    let mut out = Vec::with_capacity(s.len());
    let mut buf = [0u8; 4];
    for c in s.chars() {
        if is_escape(c) {
            out.push((c as u32 - BASE) as u8);
        } else {
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    out
}

fn is_escape(c: char) -> bool {
    (BASE..=BASE + 0xFF).contains(&(c as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_any_bytes() {
        let samples: [&[u8]; 4] = [
            b"plain",
            "h\u{e9}llo".as_bytes(),
            &[0xff, 0xfe, b'a', 0xc3],
            &[0u8, 0x80, 0xe2, 0x82],
        ];
        for s in samples {
            assert_eq!(to_bytes(&to_text(s)), s);
        }
        assert_eq!(to_text(b"plain"), "plain");
    }
}
