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

/// [`parse`] for a command-line flag (clap takes the error as text).
pub fn parse_flag(s: &str) -> Result<Duration, String> {
    parse(s).map_err(|e| e.to_string())
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
    // Read byte by byte (units and digits are ASCII; a multi-byte character is never taken for
    // either), the integer part straight into a number: every ExternalSecret admitted has one.
    let bytes = rest.as_bytes();
    let mut i = 0;
    let mut total_ns: u128 = 0;
    while i < bytes.len() {
        let int_start = i;
        // In a u64 while it fits (u128 arithmetic costs several times as much); a longer
        // number is read again as a u128, `None` past that.
        let mut small = Some(0u64);
        while let Some(d) = bytes.get(i).filter(|b| b.is_ascii_digit()) {
            small = small
                .and_then(|n| n.checked_mul(10))
                .and_then(|n| n.checked_add(u64::from(d - b'0')));
            i += 1;
        }
        let int_len = i - int_start;
        let int: Option<u128> = match small {
            Some(n) => Some(u128::from(n)),
            None => rest[int_start..i].parse().ok(),
        };
        let mut frac_part = "";
        if bytes.get(i) == Some(&b'.') {
            i += 1;
            let frac_start = i;
            while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            frac_part = &rest[frac_start..i];
        }
        if int_len == 0 && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_start = i;
        while bytes
            .get(i)
            .is_some_and(|b| !b.is_ascii_digit() && *b != b'.')
        {
            i += 1;
        }
        let unit = &rest[unit_start..i];
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
        let int = int.ok_or_else(|| DurationError::Overflow(s.to_string()))?;
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
        assert_eq!(parse("2µs1μs").unwrap(), Duration::from_micros(3));
        assert_eq!(parse("0001h").unwrap(), Duration::from_secs(3600));
        assert_eq!(
            parse("9223372036854775807ns").unwrap(),
            Duration::from_nanos(i64::MAX as u64)
        );
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
        for s in [
            "9223372036854775808ns",
            "2562048h",
            "184467440737095516165h",
            "1000000000000000000000000000000000000000s",
        ] {
            assert!(
                matches!(parse(s).unwrap_err(), DurationError::Overflow(_)),
                "{s}"
            );
        }
        // The unit is checked before the number's size, as before.
        assert!(matches!(
            parse("1000000000000000000000000000000000000000").unwrap_err(),
            DurationError::MissingUnit(_)
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
