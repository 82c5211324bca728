//! sprig's path functions as ESO registers them: Go's `path` functions (`ext`, `base`,
//! `dir`, `clean`, `isAbs`); the `os…` forms are the same on Linux.

use super::args::{Plain, one, strv, want};

pub(super) fn functions() -> Vec<(&'static str, Plain)> {
    vec![
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
    ]
}

/// Go's `path.Ext`: the suffix from the last dot of the last element.
fn ext(p: &str) -> &str {
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
fn base(p: &str) -> String {
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
fn dir(p: &str) -> String {
    let cut = p.rfind('/').map_or(0, |i| i + 1);
    clean(&p[..cut])
}

/// Go's `path.Clean`: the shortest equivalent path, by lexical processing.
fn clean(p: &str) -> String {
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
}
