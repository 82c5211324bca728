//! More of sprig's functions as ESO registers them: Go's `path` functions (`ext`, `base`,
//! `dir`, `clean`, `isAbs`; the `os…` forms are the same on Linux), `b32enc`, `b32dec`,
//! `hexdec`, `adler32sum`, `hello`, and the `must…` list functions that only differ from
//! their plain forms in how Go reports a wrong type (both fail the template here).
//!
//! Like sprig, `b32dec` and `hexdec` return Go's error text instead of failing.

use data_encoding::BASE32;

use super::bytes::{to_bytes, to_text};
use super::funcs::{Plain, s, strv, want};

/// Names that run an already registered function.
pub(super) const ALIASES: &[(&str, &str)] = &[
    ("biggest", "max"),
    ("mustAppend", "append"),
    ("mustPush", "push"),
    ("mustPrepend", "prepend"),
    ("mustFirst", "first"),
    ("mustRest", "rest"),
    ("mustLast", "last"),
    ("mustInitial", "initial"),
    ("mustReverse", "reverse"),
    ("mustUniq", "uniq"),
    ("mustHas", "has"),
    ("mustCompact", "compact"),
];

pub(super) fn functions() -> Vec<(&'static str, Plain)> {
    vec![
        ("hello", |a| {
            want(a, "hello", 0, 0)?;
            Ok(s("Hello!"))
        }),
        ("ext", |a| one(a, "ext", |p| ext(p).to_string())),
        ("osExt", |a| one(a, "osExt", |p| ext(p).to_string())),
        ("base", |a| one(a, "base", base)),
        ("osBase", |a| one(a, "osBase", base)),
        ("dir", |a| one(a, "dir", dir)),
        ("osDir", |a| one(a, "osDir", dir)),
        ("clean", |a| one(a, "clean", clean)),
        ("osClean", |a| one(a, "osClean", clean)),
        ("isAbs", |a| {
            want(a, "isAbs", 1, 1)?;
            Ok(gotmpl::Value::Bool(strv(&a[0], "isAbs")?.starts_with('/')))
        }),
        ("osIsAbs", |a| {
            want(a, "osIsAbs", 1, 1)?;
            Ok(gotmpl::Value::Bool(
                strv(&a[0], "osIsAbs")?.starts_with('/'),
            ))
        }),
        ("b32enc", |a| {
            one(a, "b32enc", |v| BASE32.encode(&to_bytes(v)))
        }),
        ("b32dec", |a| one(a, "b32dec", b32dec)),
        ("hexdec", |a| one(a, "hexdec", hexdec)),
        ("adler32sum", |a| {
            one(a, "adler32sum", |v| adler32(&to_bytes(v)).to_string())
        }),
    ]
}

fn one(a: &[gotmpl::Value], name: &str, f: impl Fn(&str) -> String) -> super::funcs::R {
    want(a, name, 1, 1)?;
    Ok(s(f(strv(&a[0], name)?)))
}

/// Go's `path.Ext`: the suffix from the last dot of the last element.
pub(crate) fn ext(p: &str) -> &str {
    for (i, c) in p.char_indices().rev() {
        match c {
            '/' => return "",
            '.' => return &p[i..],
            _ => {}
        }
    }
    ""
}

/// Go's `path.Base`.
pub(crate) fn base(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/".into();
    }
    match trimmed.rfind('/') {
        Some(i) => trimmed[i + 1..].to_string(),
        None => trimmed.to_string(),
    }
}

/// Go's `path.Dir`: everything up to the last slash, cleaned.
pub(crate) fn dir(p: &str) -> String {
    let cut = p.rfind('/').map_or(0, |i| i + 1);
    clean(&p[..cut])
}

/// Go's `path.Clean`: the shortest equivalent path, by lexical processing.
pub(crate) fn clean(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let b = p.as_bytes();
    let n = b.len();
    let rooted = b[0] == b'/';
    let mut out: Vec<u8> = Vec::with_capacity(n);
    let (mut r, mut dotdot) = (0, 0);
    if rooted {
        out.push(b'/');
        r = 1;
        dotdot = 1;
    }
    while r < n {
        if b[r] == b'/' || (b[r] == b'.' && (r + 1 == n || b[r + 1] == b'/')) {
            r += 1;
        } else if b[r] == b'.' && b[r + 1] == b'.' && (r + 2 == n || b[r + 2] == b'/') {
            r += 2;
            if out.len() > dotdot {
                out.pop();
                while out.len() > dotdot && out[out.len() - 1] != b'/' {
                    out.pop();
                }
                // Drop the separator before the removed element too.
                if out.len() > dotdot && out[out.len() - 1] == b'/' {
                    out.pop();
                }
            } else if !rooted {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(b"..");
                dotdot = out.len();
            }
        } else {
            if (rooted && out.len() != 1) || (!rooted && !out.is_empty()) {
                out.push(b'/');
            }
            while r < n && b[r] != b'/' {
                out.push(b[r]);
                r += 1;
            }
        }
    }
    if out.is_empty() {
        return ".".into();
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
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
pub(crate) fn hexdec(v: &str) -> String {
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

/// Adler-32 (RFC 1950), as Go's `hash/adler32` computes it.
fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65521;
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_functions_follow_go() {
        for (p, want) in [
            ("foo/bar/baz.exe", ".exe"),
            ("a.b/c", ""),
            ("x.tar.gz", ".gz"),
            ("", ""),
        ] {
            assert_eq!(ext(p), want, "ext {p:?}");
        }
        for (p, want) in [("", "."), ("/", "/"), ("a/b/", "b"), ("/a//b", "b")] {
            assert_eq!(base(p), want, "base {p:?}");
        }
        for (p, want) in [
            ("", "."),
            ("a/c", "a/c"),
            ("a//c", "a/c"),
            ("a/c/.", "a/c"),
            ("a/c/b/..", "a/c"),
            ("/../a/c", "/a/c"),
            ("../../a", "../../a"),
            ("a/../..", ".."),
            ("/abc/def/../../..", "/"),
            ("abc/def/../../..", ".."),
            ("./", "."),
        ] {
            assert_eq!(clean(p), want, "clean {p:?}");
        }
        for (p, want) in [("a/b/c", "a/b"), ("abc", "."), ("/a", "/"), ("", ".")] {
            assert_eq!(dir(p), want, "dir {p:?}");
        }
    }

    #[test]
    fn decoders_return_go_error_text() {
        assert_eq!(hexdec("6869"), "hi");
        assert_eq!(hexdec("6x"), "encoding/hex: invalid byte: U+0078 'x'");
        assert_eq!(hexdec("686"), "encoding/hex: odd length hex string");
        assert_eq!(b32dec("NBUQ===="), "hi");
        assert_eq!(b32dec("N!"), "illegal base32 data at input byte 1");
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
    }
}
