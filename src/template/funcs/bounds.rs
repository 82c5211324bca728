//! Size and depth bounds on the values functions take and return, so a template
//! cannot grow a value without bound in a loop.

use gotmpl::Value;

use super::args::limit;
use crate::template::budget::MAX_OUTPUT;

/// Approximate printed size of a value, stopping early once past `cap`; shared
/// sub-values count every time they appear, as they would when printed.
pub(super) fn fits(v: &Value, cap: usize) -> bool {
    let mut left = cap;
    within(v, &mut left)
}

/// Deepest nesting of lists and maps a function may take or return: deeper values
/// would overflow the stack when printed or dropped.
pub(super) const MAX_DEPTH: usize = 64;

fn within(v: &Value, left: &mut usize) -> bool {
    within_depth(v, left, 0)
}

fn within_depth(v: &Value, left: &mut usize, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    let take = |left: &mut usize, n: usize| -> bool {
        if n > *left {
            false
        } else {
            *left -= n;
            true
        }
    };
    match v {
        Value::String(s) => take(left, s.len()),
        Value::List(l) => {
            take(left, 2 + l.len()) && l.iter().all(|x| within_depth(x, left, depth + 1))
        }
        Value::Map(m) => {
            take(left, 5 + m.len())
                && m.iter()
                    .all(|(k, x)| take(left, k.len() + 1) && within_depth(x, left, depth + 1))
        }
        _ => take(left, 24),
    }
}

pub(super) fn size(v: &Value) -> usize {
    let mut left = MAX_OUTPUT + 1;
    if within(v, &mut left) {
        MAX_OUTPUT + 1 - left
    } else {
        usize::MAX
    }
}

pub(super) fn guard_estimate(name: &str, est: usize) -> gotmpl::Result<()> {
    if est > MAX_OUTPUT {
        return Err(limit(format!(
            "{name} would produce more than {MAX_OUTPUT} bytes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::funcs::args::s;

    #[test]
    fn fits_stops_early_on_shared_structures() {
        let mut v = Value::List(vec![s("x".repeat(1000))].into());
        for _ in 0..40 {
            v = Value::List(vec![v.clone(), v].into());
        }
        assert!(!fits(&v, MAX_OUTPUT));
        assert!(fits(&s("abc"), 3));
        assert!(!fits(&s("abcd"), 3));
    }
}
