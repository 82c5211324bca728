//! sprig's date functions: `now`, `date`, `dateInZone`, `htmlDate`, `dateModify`, `toDate`,
//! `ago`, `duration`, `durationRound`, `unixEpoch` and their aliases, with Go's layouts and
//! duration syntax (`go_time.rs`). Go's local zone is UTC here, as in a container with no
//! zone configured (ESO's image sets none).

use gotmpl::Value;
use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::args::{Plain, R, exec, s, strv, want, wrong_type};
use super::go_duration::{duration_string, parse_duration};
use super::go_time::{GoTime, format, parse};

pub(super) fn functions() -> Vec<(&'static str, Plain)> {
    vec![
        ("now", |a| {
            want(a, "now", 0, 0)?;
            Ok(s(GoTime::utc(Timestamp::now()).to_go_string()))
        }),
        ("date", |a| {
            want(a, "date", 2, 2)?;
            in_zone(strv(&a[0], "date")?, &a[1], "Local")
        }),
        ("dateInZone", date_in_zone),
        ("date_in_zone", date_in_zone),
        ("htmlDate", |a| {
            want(a, "htmlDate", 1, 1)?;
            in_zone("2006-01-02", &a[0], "Local")
        }),
        ("htmlDateInZone", |a| {
            want(a, "htmlDateInZone", 2, 2)?;
            in_zone("2006-01-02", &a[0], strv(&a[1], "htmlDateInZone")?)
        }),
        ("dateModify", |a| modify(a, "dateModify", false)),
        ("date_modify", |a| modify(a, "date_modify", false)),
        ("mustDateModify", |a| modify(a, "mustDateModify", true)),
        ("must_date_modify", |a| modify(a, "must_date_modify", true)),
        ("toDate", |a| {
            want(a, "toDate", 2, 2)?;
            let t = parse(strv(&a[0], "toDate")?, strv(&a[1], "toDate")?)
                .unwrap_or_else(|_| GoTime::zero());
            Ok(s(t.to_go_string()))
        }),
        ("mustToDate", |a| {
            want(a, "mustToDate", 2, 2)?;
            let t = parse(strv(&a[0], "mustToDate")?, strv(&a[1], "mustToDate")?).map_err(exec)?;
            Ok(s(t.to_go_string()))
        }),
        ("ago", |a| {
            want(a, "ago", 1, 1)?;
            let since = since(&loose_time(&a[0])?);
            Ok(s(duration_string(round_to_second(since))))
        }),
        ("duration", |a| {
            want(a, "duration", 1, 1)?;
            let secs = match &a[0] {
                Value::String(t) => t.parse::<i64>().unwrap_or(0),
                Value::Int(i) => *i,
                _ => 0,
            };
            Ok(s(duration_string(secs.wrapping_mul(1_000_000_000))))
        }),
        ("durationRound", |a| {
            want(a, "durationRound", 1, 1)?;
            let d = match &a[0] {
                Value::String(t) => match GoTime::from_go_string(t) {
                    Some(t) => since(&t),
                    None => parse_duration(t).unwrap_or(0),
                },
                Value::Int(i) => *i,
                _ => 0,
            };
            Ok(s(round_duration(d)))
        }),
        ("unixEpoch", |a| {
            want(a, "unixEpoch", 1, 1)?;
            Ok(s(strict_time(&a[0], "unixEpoch")?
                .ts
                .as_second()
                .to_string()))
        }),
    ]
}

fn date_in_zone(a: &[Value]) -> R {
    want(a, "dateInZone", 3, 3)?;
    in_zone(
        strv(&a[0], "dateInZone")?,
        &a[1],
        strv(&a[2], "dateInZone")?,
    )
}

/// `dateInZone`: the time (or now, for what is neither a time nor a number) formatted in
/// `zone`, or in UTC when the zone is unknown, as sprig falls back.
fn in_zone(layout: &str, date: &Value, zone: &str) -> R {
    let t = loose_time(date)?;
    let tz = match zone {
        "" | "Local" | "UTC" => TimeZone::UTC,
        name => TimeZone::get(name).unwrap_or(TimeZone::UTC),
    };
    Ok(s(format(&t.in_zone(&tz), layout)))
}

/// sprig's `date` argument: a time, Unix seconds, or anything else meaning now.
fn loose_time(v: &Value) -> gotmpl::Result<GoTime> {
    match v {
        Value::String(t) => {
            Ok(GoTime::from_go_string(t).unwrap_or_else(|| GoTime::utc(Timestamp::now())))
        }
        Value::Int(i) => Timestamp::from_second(*i)
            .map(GoTime::utc)
            .map_err(|_| exec(format!("unix time {i} is out of range"))),
        _ => Ok(GoTime::utc(Timestamp::now())),
    }
}

/// An argument Go declares as `time.Time`: anything else fails as Go's call would.
fn strict_time(v: &Value, name: &str) -> gotmpl::Result<GoTime> {
    match v {
        Value::String(t) => GoTime::from_go_string(t),
        _ => None,
    }
    .ok_or_else(|| wrong_type(name, "time.Time", v))
}

fn modify(a: &[Value], name: &str, must: bool) -> R {
    want(a, name, 2, 2)?;
    let d = strv(&a[0], name)?;
    let t = strict_time(&a[1], name)?;
    let d = match parse_duration(d) {
        Ok(d) => d,
        Err(e) if must => return Err(exec(e)),
        Err(_) => return Ok(s(t.to_go_string())),
    };
    let ts =
        t.ts.checked_add(jiff::SignedDuration::from_nanos(d))
            .map_err(|_| exec(format!("{name}: time out of range")))?;
    Ok(s(GoTime { ts, ..t }.to_go_string()))
}

/// `time.Since`, in nanoseconds.
fn since(t: &GoTime) -> i64 {
    let d = Timestamp::now().duration_since(t.ts);
    i64::try_from(d.as_nanos()).unwrap_or(if d.is_negative() { i64::MIN } else { i64::MAX })
}

/// Go's `Duration.Round(time.Second)`: halves away from zero.
fn round_to_second(d: i64) -> i64 {
    const S: i64 = 1_000_000_000;
    let r = d % S;
    let down = d - r;
    if r.abs() * 2 < S {
        down
    } else {
        down.saturating_add(if d < 0 { -S } else { S })
    }
}

/// sprig's `durationRound`: the largest whole unit, years and months of 365 and 30 days.
fn round_duration(d: i64) -> String {
    let u = d.unsigned_abs();
    const SEC: u64 = 1_000_000_000;
    let units: [(u64, &str); 6] = [
        (SEC * 3600 * 24 * 365, "y"),
        (SEC * 3600 * 24 * 30, "mo"),
        (SEC * 3600 * 24, "d"),
        (SEC * 3600, "h"),
        (SEC * 60, "m"),
        (SEC, "s"),
    ];
    units.iter().find(|(size, _)| u > *size).map_or_else(
        || "0s".to_string(),
        |(size, unit)| format!("{}{unit}", u / size),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::funcs::args::strval;

    fn call(name: &str, args: &[Value]) -> gotmpl::Result<String> {
        let f = functions()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| f)
            .unwrap();
        f(args).map(|v| strval(&v))
    }

    fn st(x: &str) -> Value {
        s(x)
    }

    /// sprig's `13 Jun 19 20:39:39 GMT`, as `time.Parse` gives it.
    const JUNE: &str = "2019-06-13 20:39:39 +0000 GMT";

    #[test]
    fn sprig_date_cases() {
        // sprig's date_test.go: TestToDate, TestUnixEpoch, TestDateInZone, TestDurationRound.
        let cases: &[(&str, Vec<Value>, &str)] = &[
            (
                "toDate",
                vec![st("2006-01-02"), st("2017-12-31")],
                "2017-12-31 00:00:00 +0000 UTC",
            ),
            (
                "date",
                vec![st("02/01/2006"), st("2017-12-31 00:00:00 +0000 UTC")],
                "31/12/2017",
            ),
            ("unixEpoch", vec![st(JUNE)], "1560458379"),
            (
                "date_in_zone",
                vec![st("02 Jan 06 15:04 -0700"), st(JUNE), st("UTC")],
                "13 Jun 19 20:39 +0000",
            ),
            (
                "date_in_zone",
                vec![
                    st("02 Jan 06 15:04 -0700"),
                    Value::Int(1560458379),
                    st("UTC"),
                ],
                "13 Jun 19 20:39 +0000",
            ),
            (
                "date_in_zone",
                vec![st("02 Jan 06 15:04 -0700"), st(JUNE), st("foobar")],
                "13 Jun 19 20:39 +0000",
            ),
            (
                "dateInZone",
                vec![st("2006-01-02 15:04 MST"), st(JUNE), st("America/New_York")],
                "2019-06-13 16:39 EDT",
            ),
            ("htmlDate", vec![Value::Int(0)], "1970-01-01"),
            (
                "htmlDateInZone",
                vec![Value::Int(0), st("Asia/Tokyo")],
                "1970-01-01",
            ),
            ("durationRound", vec![st("2h5s")], "2h"),
            ("durationRound", vec![st("24h5s")], "1d"),
            ("durationRound", vec![st("2400h5s")], "3mo"),
            ("durationRound", vec![st("-9000h")], "1y"),
            ("durationRound", vec![st("nonsense")], "0s"),
            ("duration", vec![Value::Int(95)], "1m35s"),
            ("duration", vec![st("3661")], "1h1m1s"),
            ("duration", vec![Value::Bool(true)], "0s"),
            // sprig's docs: `now | date_modify "-1.5h"`.
            (
                "dateModify",
                vec![st("-1.5h"), st(JUNE)],
                "2019-06-13 19:09:39 +0000 GMT",
            ),
            ("date_modify", vec![st("bogus"), st(JUNE)], JUNE),
            (
                "toDate",
                vec![st("2006-01-02"), st("not a date")],
                "0001-01-01 00:00:00 +0000 UTC",
            ),
        ];
        for (name, args, want) in cases {
            assert_eq!(
                call(name, args).map_err(|e| e.to_string()).as_deref(),
                Ok(*want),
                "{name} {args:?}"
            );
        }
    }

    #[test]
    fn strict_forms_fail_as_go_does() {
        let cases: &[(&str, Vec<Value>, &str)] = &[
            (
                "mustDateModify",
                vec![st("bogus"), st(JUNE)],
                "time: invalid duration \"bogus\"",
            ),
            (
                "mustToDate",
                vec![st("2006-01-02"), st("2017-13-01")],
                "parsing time \"2017-13-01\": month out of range",
            ),
            (
                "dateModify",
                vec![st("1h"), st("yesterday")],
                "dateModify: wrong type for value; expected time.Time; got string",
            ),
            (
                "unixEpoch",
                vec![Value::Int(3)],
                "unixEpoch: wrong type for value; expected time.Time; got int",
            ),
        ];
        for (name, args, want) in cases {
            let err = call(name, args).unwrap_err().to_string();
            assert!(err.contains(want), "{name}: {err}");
        }
    }

    #[test]
    fn now_and_ago_follow_the_clock() {
        // sprig's TestAgo: times 125 s and 2h34m17s in the past, and 5 s ahead.
        let before = Timestamp::now();
        let now = GoTime::from_go_string(&call("now", &[]).unwrap()).unwrap();
        assert!(now.ts >= before && now.ts <= Timestamp::now());
        // A stall of more than half a second between the two clock reads moves the answer
        // by one second, so that neighbour is accepted too.
        for (secs, want, stalled) in [
            (-125, "2m5s", "2m6s"),
            (-9257, "2h34m17s", "2h34m18s"),
            (5, "-5s", "-4s"),
        ] {
            let t = GoTime::utc(Timestamp::now() + jiff::SignedDuration::from_secs(secs));
            let got = call("ago", &[st(&t.to_go_string())]).unwrap();
            assert!(got == want || got == stalled, "{got}, want {want}");
        }
        // Text that is not a time means now, as in sprig (around New Year either year will do).
        let year = |ts| format(&GoTime::utc(ts), "2006");
        let before = year(Timestamp::now());
        let got = call("date", &[st("2006"), st("2017-12-31")]).unwrap();
        assert!(got == before || got == year(Timestamp::now()), "{got}");
    }
}
