//! sprig's string functions (case, trimming, quoting, indenting, substrings, splitting
//! and joining string lists) and `hello`, with Go's rune and byte semantics.

use std::collections::BTreeMap;

use gotmpl::Value;

use super::args::{Plain, R, exec, int, limit, s, strslice, strv, strval, want};
use super::bounds::guard_estimate;
use crate::template::budget::MAX_OUTPUT;
use crate::template::bytes::{to_bytes, to_text};

pub(super) fn functions() -> Vec<(&'static str, Plain)> {
    vec![
        ("upper", upper),
        ("lower", lower),
        ("title", title),
        ("untitle", untitle),
        ("trim", |a| {
            want(a, "trim", 1, 1)?;
            Ok(s(strv(&a[0], "trim")?.trim().to_string()))
        }),
        ("trimAll", trim_all),
        ("trimall", trim_all),
        ("trimPrefix", |a| {
            want(a, "trimPrefix", 2, 2)?;
            let (p, v) = (strv(&a[0], "trimPrefix")?, strv(&a[1], "trimPrefix")?);
            Ok(s(v.strip_prefix(p).unwrap_or(v).to_string()))
        }),
        ("trimSuffix", |a| {
            want(a, "trimSuffix", 2, 2)?;
            let (p, v) = (strv(&a[0], "trimSuffix")?, strv(&a[1], "trimSuffix")?);
            Ok(s(v.strip_suffix(p).unwrap_or(v).to_string()))
        }),
        ("replace", replace),
        ("quote", |a| {
            Ok(s(a
                .iter()
                .filter(|v| !matches!(v, Value::Nil))
                .map(|v| go_quote(&strval(v)))
                .collect::<Vec<_>>()
                .join(" ")))
        }),
        ("squote", |a| {
            Ok(s(a
                .iter()
                .filter(|v| !matches!(v, Value::Nil))
                .map(|v| format!("'{v}'"))
                .collect::<Vec<_>>()
                .join(" ")))
        }),
        ("indent", |a| indent("indent", a, false)),
        ("nindent", |a| indent("nindent", a, true)),
        ("contains", |a| {
            want(a, "contains", 2, 2)?;
            Ok(Value::Bool(
                strv(&a[1], "contains")?.contains(strv(&a[0], "contains")?),
            ))
        }),
        ("hasPrefix", |a| {
            want(a, "hasPrefix", 2, 2)?;
            Ok(Value::Bool(
                strv(&a[1], "hasPrefix")?.starts_with(strv(&a[0], "hasPrefix")?),
            ))
        }),
        ("hasSuffix", |a| {
            want(a, "hasSuffix", 2, 2)?;
            Ok(Value::Bool(
                strv(&a[1], "hasSuffix")?.ends_with(strv(&a[0], "hasSuffix")?),
            ))
        }),
        ("split", |a| {
            want(a, "split", 2, 2)?;
            let parts = go_split(strv(&a[1], "split")?, strv(&a[0], "split")?, None);
            Ok(indexed_map(parts))
        }),
        ("splitn", |a| {
            want(a, "splitn", 3, 3)?;
            let n = int(&a[1], "splitn")?;
            let parts = go_split(strv(&a[2], "splitn")?, strv(&a[0], "splitn")?, Some(n));
            Ok(indexed_map(parts))
        }),
        ("splitList", |a| {
            want(a, "splitList", 2, 2)?;
            let parts = go_split(strv(&a[1], "splitList")?, strv(&a[0], "splitList")?, None);
            Ok(Value::List(parts.into_iter().map(s).collect()))
        }),
        ("join", |a| {
            want(a, "join", 2, 2)?;
            Ok(s(strslice(&a[1]).join(strv(&a[0], "join")?)))
        }),
        ("repeat", |a| {
            want(a, "repeat", 2, 2)?;
            let n = int(&a[0], "repeat")?.max(0) as usize;
            let v = strv(&a[1], "repeat")?;
            if n.saturating_mul(v.len()) > MAX_OUTPUT {
                return Err(limit(format!(
                    "repeat would produce more than {MAX_OUTPUT} bytes"
                )));
            }
            Ok(s(v.repeat(n)))
        }),
        ("substr", substr),
        ("trunc", |a| {
            want(a, "trunc", 2, 2)?;
            let c = int(&a[0], "trunc")?;
            let b = &to_bytes(strv(&a[1], "trunc")?);
            let len = b.len() as i64;
            let out = if c < 0 && len + c > 0 {
                &b[(len + c) as usize..]
            } else if c >= 0 && len > c {
                &b[..c as usize]
            } else {
                b
            };
            Ok(s(to_text(out)))
        }),
        ("cat", |a| {
            Ok(s(a
                .iter()
                .filter(|v| !matches!(v, Value::Nil))
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(" ")))
        }),
        ("nospace", |a| {
            want(a, "nospace", 1, 1)?;
            Ok(s(strv(&a[0], "nospace")?
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect::<String>()))
        }),
        ("plural", |a| {
            want(a, "plural", 3, 3)?;
            let n = int(&a[2], "plural")?;
            Ok(if n == 1 { a[0].clone() } else { a[1].clone() })
        }),
        ("sortAlpha", |a| {
            want(a, "sortAlpha", 1, 1)?;
            let mut v = strslice(&a[0]);
            v.sort();
            Ok(Value::List(v.into_iter().map(s).collect()))
        }),
        ("hello", |a| {
            want(a, "hello", 0, 0)?;
            Ok(s("Hello!"))
        }),
    ]
}

/// Go maps rune by rune; a rune whose case mapping is several runes stays as it is.
fn map_runes(v: &str, f: impl Fn(char) -> Option<char>) -> String {
    v.chars().map(|c| f(c).unwrap_or(c)).collect()
}

fn single<I: Iterator<Item = char>>(mut it: I) -> Option<char> {
    let c = it.next()?;
    it.next().is_none().then_some(c)
}

fn upper(a: &[Value]) -> R {
    want(a, "upper", 1, 1)?;
    Ok(s(map_runes(strv(&a[0], "upper")?, |c| {
        single(c.to_uppercase())
    })))
}

fn lower(a: &[Value]) -> R {
    want(a, "lower", 1, 1)?;
    Ok(s(map_runes(strv(&a[0], "lower")?, |c| {
        single(c.to_lowercase())
    })))
}

/// Go's `strings.Title`: the first letter of every word upper-cased.
fn title(a: &[Value]) -> R {
    want(a, "title", 1, 1)?;
    let is_sep = |c: char| {
        if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else if c.is_alphanumeric() {
            false
        } else {
            c.is_whitespace()
        }
    };
    let mut prev = ' ';
    let out = strv(&a[0], "title")?
        .chars()
        .map(|c| {
            let r = if is_sep(prev) {
                single(c.to_uppercase()).unwrap_or(c)
            } else {
                c
            };
            prev = c;
            r
        })
        .collect::<String>();
    Ok(s(out))
}

fn untitle(a: &[Value]) -> R {
    want(a, "untitle", 1, 1)?;
    let v = strv(&a[0], "untitle")?;
    let mut cs = v.chars();
    Ok(s(match cs.next() {
        Some(c) => single(c.to_lowercase()).unwrap_or(c).to_string() + cs.as_str(),
        None => String::new(),
    }))
}

fn trim_all(a: &[Value]) -> R {
    want(a, "trimAll", 2, 2)?;
    let cut: Vec<char> = strv(&a[0], "trimAll")?.chars().collect();
    Ok(s(strv(&a[1], "trimAll")?
        .trim_matches(|c| cut.contains(&c))
        .to_string()))
}

fn replace(a: &[Value]) -> R {
    want(a, "replace", 3, 3)?;
    let (old, new, src) = (
        strv(&a[0], "replace")?,
        strv(&a[1], "replace")?,
        strv(&a[2], "replace")?,
    );
    let hits = if old.is_empty() {
        src.chars().count() + 1
    } else {
        src.matches(old).count()
    };
    guard_estimate(
        "replace",
        src.len().saturating_add(hits.saturating_mul(new.len())),
    )?;
    if old.is_empty() {
        // Go inserts `new` before every rune and at the end.
        let mut out = String::new();
        for c in src.chars() {
            out.push_str(new);
            out.push(c);
        }
        out.push_str(new);
        return Ok(s(out));
    }
    Ok(s(src.replace(old, new)))
}

fn indent(name: &str, a: &[Value], newline: bool) -> R {
    want(a, name, 2, 2)?;
    let n = int(&a[0], name)?.max(0) as usize;
    let v = strv(&a[1], name)?;
    let lines = v.matches('\n').count() + 1;
    guard_estimate(name, v.len().saturating_add(n.saturating_mul(lines)))?;
    let pad = " ".repeat(n);
    let body = format!("{pad}{}", v.replace('\n', &format!("\n{pad}")));
    Ok(s(if newline { format!("\n{body}") } else { body }))
}

/// Go's `strings.Split` / `SplitN`: an empty separator splits into runes.
fn go_split(v: &str, sep: &str, n: Option<i64>) -> Vec<String> {
    match n {
        Some(0) => Vec::new(),
        Some(n) if n > 0 => {
            let n = n as usize;
            if sep.is_empty() {
                let mut out: Vec<String> = Vec::new();
                let mut it = v.char_indices();
                while out.len() + 1 < n {
                    match it.next() {
                        Some((_, c)) => out.push(c.to_string()),
                        None => return out,
                    }
                }
                let rest = it.as_str();
                if !rest.is_empty() {
                    out.push(rest.to_string());
                }
                out
            } else {
                v.splitn(n, sep).map(str::to_string).collect()
            }
        }
        _ => {
            if sep.is_empty() {
                v.chars().map(|c| c.to_string()).collect()
            } else {
                v.split(sep).map(str::to_string).collect()
            }
        }
    }
}

fn indexed_map(parts: Vec<String>) -> Value {
    let m: BTreeMap<String, Value> = parts
        .into_iter()
        .enumerate()
        .map(|(i, p)| (format!("_{i}"), s(p)))
        .collect();
    Value::from(m)
}

/// sprig's `substr start end s` on bytes, as Go slices strings.
fn substr(a: &[Value]) -> R {
    want(a, "substr", 3, 3)?;
    let (start, end) = (int(&a[0], "substr")?, int(&a[1], "substr")?);
    let b = &to_bytes(strv(&a[2], "substr")?);
    let len = b.len() as i64;
    let oob = || exec("substr: slice bounds out of range");
    let out = if start < 0 {
        if end < 0 || end > len {
            return Err(oob());
        }
        &b[..end as usize]
    } else if end < 0 || end > len {
        if start > len {
            return Err(oob());
        }
        &b[start as usize..]
    } else {
        if start > end {
            return Err(oob());
        }
        &b[start as usize..end as usize]
    };
    Ok(s(to_text(out)))
}

/// Go's `strconv.Quote`.
fn go_quote(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() || (c.is_whitespace() && c != ' ') => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32))
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_quote_escapes_like_strconv() {
        assert_eq!(go_quote("a\"b\\c\n\t\u{1}é"), "\"a\\\"b\\\\c\\n\\t\\x01é\"");
        assert_eq!(go_quote("\u{a0}"), "\"\\u00a0\"");
    }
}
