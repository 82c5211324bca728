//! sprig's regular expression functions, with Go's RE2 syntax (see `goregex`).

use gotmpl::Value;

use super::args::{Plain, R, exec, int, s, strv, want};
use super::bounds::guard_estimate;

pub(super) fn functions() -> Vec<(&'static str, Plain)> {
    vec![
        ("regexMatch", |a| {
            want(a, "regexMatch", 2, 2)?;
            // sprig's regexMatch reports an invalid pattern as "no match".
            Ok(Value::Bool(
                regex("regexMatch", &a[0])
                    .map(|r| r.is_match(strv(&a[1], "regexMatch").unwrap_or("")))
                    .unwrap_or(false),
            ))
        }),
        ("mustRegexMatch", |a| {
            want(a, "mustRegexMatch", 2, 2)?;
            Ok(Value::Bool(
                regex("mustRegexMatch", &a[0])?.is_match(strv(&a[1], "mustRegexMatch")?),
            ))
        }),
        ("regexFind", |a| regex_find("regexFind", a)),
        ("mustRegexFind", |a| regex_find("mustRegexFind", a)),
        ("regexFindAll", |a| regex_find_all("regexFindAll", a)),
        ("mustRegexFindAll", |a| {
            regex_find_all("mustRegexFindAll", a)
        }),
        ("regexReplaceAll", |a| {
            regex_replace("regexReplaceAll", a, false)
        }),
        ("mustRegexReplaceAll", |a| {
            regex_replace("mustRegexReplaceAll", a, false)
        }),
        ("regexReplaceAllLiteral", |a| {
            regex_replace("regexReplaceAllLiteral", a, true)
        }),
        ("mustRegexReplaceAllLiteral", |a| {
            regex_replace("mustRegexReplaceAllLiteral", a, true)
        }),
        ("regexSplit", |a| regex_split("regexSplit", a)),
        ("mustRegexSplit", |a| regex_split("mustRegexSplit", a)),
        ("regexQuoteMeta", |a| {
            want(a, "regexQuoteMeta", 1, 1)?;
            Ok(s(crate::goregex::quote_meta(strv(
                &a[0],
                "regexQuoteMeta",
            )?)))
        }),
    ]
}

fn regex(name: &str, pattern: &Value) -> gotmpl::Result<regex::Regex> {
    crate::goregex::builder(strv(pattern, name)?)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            exec(format!(
                "{name}: invalid pattern: {}",
                crate::goregex::message(&e)
            ))
        })
}

fn regex_find(name: &str, a: &[Value]) -> R {
    want(a, name, 2, 2)?;
    let r = regex(name, &a[0])?;
    Ok(s(r
        .find(strv(&a[1], name)?)
        .map(|m| m.as_str().to_string())
        .unwrap_or_default()))
}

fn regex_find_all(name: &str, a: &[Value]) -> R {
    want(a, name, 3, 3)?;
    let r = regex(name, &a[0])?;
    let n = int(&a[2], name)?;
    let limit = if n < 0 { usize::MAX } else { n as usize };
    Ok(Value::List(
        r.find_iter(strv(&a[1], name)?)
            .take(limit)
            .map(|m| s(m.as_str()))
            .collect(),
    ))
}

fn regex_replace(name: &str, a: &[Value], literal: bool) -> R {
    want(a, name, 3, 3)?;
    let r = regex(name, &a[0])?;
    let (src, repl) = (strv(&a[1], name)?, strv(&a[2], name)?);
    let hits = r.find_iter(src).count();
    guard_estimate(
        name,
        src.len()
            .saturating_add(hits.saturating_mul(repl.len() * 2)),
    )?;
    Ok(s(if literal {
        r.replace_all(src, regex::NoExpand(repl)).into_owned()
    } else {
        r.replace_all(src, repl).into_owned()
    }))
}

fn regex_split(name: &str, a: &[Value]) -> R {
    want(a, name, 3, 3)?;
    let r = regex(name, &a[0])?;
    let n = int(&a[2], name)?;
    let v = strv(&a[1], name)?;
    let parts: Vec<Value> = if n < 0 {
        r.split(v).map(s).collect()
    } else {
        r.splitn(v, n as usize).map(s).collect()
    };
    Ok(Value::List(parts.into()))
}
