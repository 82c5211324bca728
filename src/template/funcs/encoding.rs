//! sprig's `b64enc`, `b64dec`, `b32enc`, `b32dec` and `hexdec`. Like sprig, the
//! decoders return Go's error text instead of failing.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use data_encoding::BASE32;

use super::args::{Plain, one, s, strv, want};
use crate::template::bytes::{to_bytes, to_text};

pub(super) fn functions() -> Vec<(&'static str, Plain)> {
    vec![
        ("b64enc", |a| {
            want(a, "b64enc", 1, 1)?;
            Ok(s(B64.encode(to_bytes(strv(&a[0], "b64enc")?))))
        }),
        ("b64dec", |a| {
            want(a, "b64dec", 1, 1)?;
            Ok(s(b64dec(strv(&a[0], "b64dec")?)))
        }),
        ("b32enc", |a| {
            one(a, "b32enc", |v| BASE32.encode(&to_bytes(v)))
        }),
        ("b32dec", |a| one(a, "b32dec", b32dec)),
        ("hexdec", |a| one(a, "hexdec", hexdec)),
    ]
}

/// sprig's `b64dec`: the decoded bytes, or, as sprig does, Go's error text instead of
/// failing.
fn b64dec(v: &str) -> String {
    go_b64_decode(v).map_or_else(|e| e, |bytes| to_text(&bytes))
}

/// Go's `base64.StdEncoding.DecodeString`, with its error text. Go's decoder skips line
/// breaks (wrapped base64, as in PEM bodies).
pub(super) fn go_b64_decode(v: &str) -> Result<Vec<u8>, String> {
    let kept: Vec<usize> = v
        .char_indices()
        .filter(|(_, c)| !matches!(c, '\r' | '\n'))
        .map(|(i, _)| i)
        .collect();
    let filtered: String = v.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
    B64.decode(&filtered).map_err(|e| {
        use base64::DecodeError as E;
        let at = match e {
            E::InvalidByte(o, _) | E::InvalidLastSymbol(o, _) => o,
            E::InvalidLength(n) => n,
            E::InvalidPadding => filtered.find('=').unwrap_or(filtered.len()),
        };
        // The offset counts the input as given, line breaks included.
        let at = kept.get(at).copied().unwrap_or(v.len());
        format!("illegal base64 data at input byte {at}")
    })
}

/// sprig's `b32dec`: the decoded bytes, or Go's error text.
fn b32dec(v: &str) -> String {
    let filtered: Vec<u8> = to_bytes(v)
        .into_iter()
        .filter(|c| !matches!(c, b'\r' | b'\n'))
        .collect();
    let alphabet = |c: &u8| c.is_ascii_uppercase() || (b'2'..=b'7').contains(c) || *c == b'=';
    if let Some(at) = filtered.iter().position(|c| !alphabet(c)) {
        return format!("illegal base32 data at input byte {at}");
    }
    match BASE32.decode(&filtered) {
        Ok(out) => to_text(&out),
        Err(e) => format!("illegal base32 data at input byte {}", e.position),
    }
}

/// sprig's `hexdec`: the decoded bytes, or Go's `encoding/hex` error text.
fn hexdec(v: &str) -> String {
    let b = to_bytes(v);
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len() / 2);
    for pair in b.chunks(2) {
        let hi = match nibble(pair[0]) {
            Some(h) => h,
            None => return invalid_hex_byte(pair[0]),
        };
        let Some(&lo) = pair.get(1) else {
            return "encoding/hex: odd length hex string".into();
        };
        match nibble(lo) {
            Some(l) => out.push(hi << 4 | l),
            None => return invalid_hex_byte(lo),
        }
    }
    to_text(&out)
}

/// Go's `InvalidByteError`, formatted with `%#U`.
fn invalid_hex_byte(c: u8) -> String {
    let printable = (0x20..0x7f).contains(&c) || (c >= 0xa1 && c != 0xad);
    if printable {
        format!("encoding/hex: invalid byte: U+{:04X} '{}'", c, c as char)
    } else {
        format!("encoding/hex: invalid byte: U+{c:04X}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoders_return_go_error_text() {
        assert_eq!(hexdec("6869"), "hi");
        assert_eq!(hexdec("6x"), "encoding/hex: invalid byte: U+0078 'x'");
        assert_eq!(hexdec("686"), "encoding/hex: odd length hex string");
        assert_eq!(b32dec("NBUQ===="), "hi");
        assert_eq!(b32dec("N!"), "illegal base32 data at input byte 1");
    }
}
