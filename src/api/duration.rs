//! Go `time.ParseDuration` and `Duration.String`, because ESO manifests carry Go durations
//! (`1h`, `1h0m0s`, `90s`, `1.5h`, `0`).

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error(
        "invalid duration {0:?}: expected a Go duration such as \"1h\", \"30m\" or \"1h30m0s\""
    )]
    Invalid(String),
    #[error("invalid duration {0:?}: missing unit (use ns, us, ms, s, m or h)")]
    MissingUnit(String),
    #[error("invalid duration {0:?}: unknown unit {1:?} (use ns, us, ms, s, m or h)")]
    UnknownUnit(String, String),
    #[error("invalid duration {0:?}: negative durations are not allowed")]
    Negative(String),
    #[error("invalid duration {0:?}: too large")]
    Overflow(String),
}

/// Parses a Go duration. Negative values are refused: no field here means anything by them.
pub fn parse(s: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid(s.to_string());
    let mut rest = s;
    let mut negative = false;
    if let Some(r) = rest.strip_prefix('-') {
        negative = true;
        rest = r;
    } else if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total_ns: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(a) => {
                let n = a.bytes().take_while(u8::is_ascii_digit).count();
                a.split_at(n)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = after
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map(|(i, _)| i)
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(DurationError::MissingUnit(s.to_string()));
        }
        let unit_ns: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            other => return Err(DurationError::UnknownUnit(s.to_string(), other.to_string())),
        };
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part
                .parse()
                .map_err(|_| DurationError::Overflow(s.to_string()))?
        };
        let mut ns = int
            .checked_mul(unit_ns)
            .ok_or_else(|| DurationError::Overflow(s.to_string()))?;
        if !frac_part.is_empty() {
            // Go keeps the fraction's precision up to the unit: 1.5h = 1h30m.
            let digits = frac_part.len().min(30) as u32;
            let frac: u128 = frac_part[..digits as usize]
                .parse()
                .map_err(|_| DurationError::Overflow(s.to_string()))?;
            ns += frac * unit_ns / 10u128.pow(digits);
        }
        total_ns = total_ns
            .checked_add(ns)
            .ok_or_else(|| DurationError::Overflow(s.to_string()))?;
        rest = after;
    }
    // Go's Duration is an int64 of nanoseconds.
    if total_ns > i64::MAX as u128 {
        return Err(DurationError::Overflow(s.to_string()));
    }
    if negative && total_ns > 0 {
        return Err(DurationError::Negative(s.to_string()));
    }
    Ok(Duration::from_nanos(total_ns as u64))
}

/// Formats like Go's `Duration.String()`: `1h0m0s`, `1m30s`, `1.5s`, `10ms`, `0s`.
pub fn format(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000_000_000 {
        let (unit, div) = if ns < 1_000 {
            ("ns", 1)
        } else if ns < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{}", frac(ns, div), unit);
    }
    let h = ns / 3_600_000_000_000;
    let m = (ns / 60_000_000_000) % 60;
    let s_ns = ns % 60_000_000_000;
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{}s", frac(s_ns, 1_000_000_000)));
    out
}

fn frac(v: u128, div: u128) -> String {
    let int = v / div;
    let rem = v % div;
    if rem == 0 {
        return int.to_string();
    }
    let width = div.to_string().len() - 1;
    let digits = format!("{rem:0width$}");
    format!("{int}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let cases: &[(&str, u64)] = &[
            ("0", 0),
            ("0s", 0),
            ("1h", 3_600_000),
            ("1h0m0s", 3_600_000),
            ("90s", 90_000),
            ("1.5h", 5_400_000),
            ("1h30m", 5_400_000),
            ("500ms", 500),
            ("2m3s", 123_000),
            ("+5m", 300_000),
            (".5s", 500),
            ("1.s", 1_000),
            ("-0", 0),
        ];
        for (s, ms) in cases {
            assert_eq!(parse(s).unwrap(), Duration::from_millis(*ms), "{s}");
        }
        assert_eq!(parse("1500us").unwrap(), Duration::from_micros(1500));
        assert_eq!(parse("3ns").unwrap(), Duration::from_nanos(3));
    }

    #[test]
    fn refuses_bad_durations() {
        for s in [
            "",
            "1",
            "h",
            "1x",
            "1hh",
            "-1h",
            "1h-2m",
            ".s",
            "1e3s",
            " 1h",
            "9999999999h",
        ] {
            assert!(parse(s).is_err(), "{s:?} should be refused");
        }
        assert!(matches!(
            parse("5").unwrap_err(),
            DurationError::MissingUnit(_)
        ));
        assert!(matches!(parse("5d").unwrap_err(), DurationError::UnknownUnit(_, u) if u == "d"));
        assert!(matches!(
            parse("-1s").unwrap_err(),
            DurationError::Negative(_)
        ));
    }

    #[test]
    fn formats_like_go() {
        let cases: &[(u64, &str)] = &[
            (0, "0s"),
            (3_600_000, "1h0m0s"),
            (90_000, "1m30s"),
            (1_500, "1.5s"),
            (10, "10ms"),
            (5_400_000, "1h30m0s"),
            (86_400_000, "24h0m0s"),
        ];
        for (ms, s) in cases {
            assert_eq!(format(Duration::from_millis(*ms)), *s);
        }
        assert_eq!(format(Duration::from_nanos(1500)), "1.5µs");
    }

    #[test]
    fn round_trips() {
        for s in ["1h0m0s", "1m30s", "0s", "2h45m10.5s"] {
            assert_eq!(format(parse(s).unwrap()), s);
        }
    }
}
