//! sprig's integer sequences: `until`, `untilStep` (lists) and `seq` (a space-separated
//! string, like the shell's). A sequence longer than the output cap is refused before it
//! is built.

use gotmpl::Value;

use super::args::{Plain, R, int, limit, s, want};
use crate::template::budget::MAX_OUTPUT;

pub(super) fn functions() -> Vec<(&'static str, Plain)> {
    vec![
        ("until", |a| {
            want(a, "until", 1, 1)?;
            let count = int(&a[0], "until")?;
            let step = if count < 0 { -1 } else { 1 };
            list(until_step(0, count, step)?)
        }),
        ("untilStep", |a| {
            want(a, "untilStep", 3, 3)?;
            let [start, stop, step] = [0, 1, 2].map(|i| int(&a[i], "untilStep"));
            list(until_step(start?, stop?, step?)?)
        }),
        ("seq", seq),
    ]
}

fn list(v: Vec<i64>) -> R {
    Ok(Value::List(v.into_iter().map(Value::Int).collect()))
}

/// sprig's `untilStep`: from `start` towards `stop` (exclusive) by `step`; nothing when the
/// step points away from `stop` or is zero.
fn until_step(start: i64, stop: i64, step: i64) -> gotmpl::Result<Vec<i64>> {
    let forward = stop >= start;
    if (forward && step <= 0) || (!forward && step >= 0) {
        return Ok(Vec::new());
    }
    let span = stop.abs_diff(start);
    let n = span.div_ceil(step.unsigned_abs());
    if n > MAX_OUTPUT as u64 {
        return Err(limit(format!(
            "a sequence of {n} numbers exceeds {MAX_OUTPUT} items"
        )));
    }
    Ok((0..n as i64).map(|i| start + i * step).collect())
}

/// sprig's `seq`: `seq END` (from 1), `seq START END`, `seq START STEP END`, ends included.
fn seq(a: &[Value]) -> R {
    let p = a
        .iter()
        .map(|v| int(v, "seq"))
        .collect::<gotmpl::Result<Vec<i64>>>()?;
    let nums = match p[..] {
        [end] => {
            let inc = if end < 1 { -1 } else { 1 };
            until_step(1, end.saturating_add(inc), inc)?
        }
        [start, end] => {
            let step = if end < start { -1 } else { 1 };
            until_step(start, end.saturating_add(step), step)?
        }
        [start, step, end] => {
            let inc = if end < start { -1 } else { 1 };
            if end < start && step > 0 {
                Vec::new()
            } else {
                until_step(start, end.saturating_add(inc), step)?
            }
        }
        _ => Vec::new(),
    };
    let text: Vec<String> = nums.iter().map(i64::to_string).collect();
    Ok(s(text.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, args: &[i64]) -> R {
        let f = functions().into_iter().find(|(n, _)| *n == name).unwrap().1;
        f(&args.iter().map(|&i| Value::Int(i)).collect::<Vec<_>>())
    }

    fn ints(v: Value) -> Vec<i64> {
        let Value::List(l) = v else { panic!("a list") };
        l.iter()
            .map(|x| match x {
                Value::Int(i) => *i,
                _ => panic!("an int"),
            })
            .collect()
    }

    #[test]
    fn sprig_sequence_cases() {
        // sprig's numeric_test.go: TestUntil, TestUntilStep, TestSeq.
        assert_eq!(ints(call("until", &[5]).unwrap()), [0, 1, 2, 3, 4]);
        assert_eq!(ints(call("until", &[-5]).unwrap()), [0, -1, -2, -3, -4]);
        let steps: &[([i64; 3], &[i64])] = &[
            ([0, 5, 1], &[0, 1, 2, 3, 4]),
            ([3, 6, 1], &[3, 4, 5]),
            ([0, -10, -2], &[0, -2, -4, -6, -8]),
            ([3, 0, 1], &[]),
            ([3, 99, 0], &[]),
            ([3, 99, -1], &[]),
            ([3, 0, 0], &[]),
        ];
        for (args, want) in steps {
            assert_eq!(ints(call("untilStep", args).unwrap()), *want, "{args:?}");
        }
        let seqs: &[(&[i64], &str)] = &[
            (&[0, 1, 3], "0 1 2 3"),
            (&[0, 3, 10], "0 3 6 9"),
            (&[3, 3, 2], ""),
            (&[3, -3, 2], "3"),
            (&[], ""),
            (&[0, 4], "0 1 2 3 4"),
            (&[5], "1 2 3 4 5"),
            (&[-5], "1 0 -1 -2 -3 -4 -5"),
            (&[0], "1 0"),
            (&[0, 1, 2, 3], ""),
            (&[0, -4], "0 -1 -2 -3 -4"),
        ];
        for (args, want) in seqs {
            assert_eq!(call("seq", args).unwrap().as_str(), Some(*want), "{args:?}");
        }
    }

    #[test]
    fn huge_sequences_are_refused_before_they_are_built() {
        for (name, args) in [
            ("until", vec![i64::MAX]),
            ("untilStep", vec![i64::MIN, i64::MAX, 1]),
        ] {
            let err = call(name, &args).unwrap_err().to_string();
            assert!(err.contains("exceeds"), "{name}: {err}");
        }
    }
}
