//! Go's `time.ParseDuration` and `Duration.String`, as sprig's `dateModify`, `ago`,
//! `duration` and `durationRound` use them.

/// Go's `time.ParseDuration`, in nanoseconds.
pub(super) fn parse_duration(s: &str) -> Result<i64, String> {
    let err = || format!("time: invalid duration {s:?}");
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(err());
    }
    let mut total: f64 = 0.0;
    let mut whole: i128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, r) = rest.split_at(int_len);
        let (frac_part, r) = match r.strip_prefix('.') {
            Some(r) => {
                let n = r.bytes().take_while(u8::is_ascii_digit).count();
                r.split_at(n)
            }
            None => ("", r),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(err());
        }
        let unit_len = r
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(r.len(), |(i, _)| i);
        let (unit, r) = r.split_at(unit_len);
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("time: missing unit in duration {s:?}")),
            u => return Err(format!("time: unknown unit {u:?} in duration {s:?}")),
        };
        let i: i128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| err())?
        };
        whole = whole
            .checked_add(i.checked_mul(scale).ok_or_else(err)?)
            .ok_or_else(err)?;
        if !frac_part.is_empty() {
            total += format!("0.{frac_part}").parse::<f64>().map_err(|_| err())? * scale as f64;
        }
        rest = r;
    }
    let ns = whole + total as i128;
    let ns = if neg { -ns } else { ns };
    i64::try_from(ns).map_err(|_| err())
}

/// Go's `Duration.String`: "1h2m3.5s", "1.5ms", "0s".
pub(super) fn duration_string(d: i64) -> String {
    if d == 0 {
        return "0s".into();
    }
    let neg = d < 0;
    let u = d.unsigned_abs();
    let sign = if neg { "-" } else { "" };
    if u < 1_000_000_000 {
        let (unit, scale) = match u {
            0..1_000 => return format!("{sign}{u}ns"),
            1_000..1_000_000 => ("µs", 1_000),
            _ => ("ms", 1_000_000),
        };
        return format!("{sign}{}{unit}", frac(u, scale));
    }
    let secs = u / 1_000_000_000;
    let sub = u % 1_000_000_000;
    let mut out = String::from(sign);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&frac(s * 1_000_000_000 + sub, 1_000_000_000));
    out.push('s');
    out
}

/// `n / scale` with the fraction's trailing zeros dropped.
fn frac(n: u64, scale: u64) -> String {
    let width = scale.ilog10() as usize;
    let f = format!("{:0width$}", n % scale);
    let f = f.trim_end_matches('0');
    if f.is_empty() {
        format!("{}", n / scale)
    } else {
        format!("{}.{f}", n / scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_go_does() {
        let parsed = [
            ("-1.5h", Ok(-5_400_000_000_000)),
            ("2h5s", Ok(7_205_000_000_000)),
            ("1h2m3.5s", Ok(3_723_500_000_000)),
            ("300ms", Ok(300_000_000)),
            ("1µs", Ok(1_000)),
            ("0", Ok(0)),
            (".5s", Ok(500_000_000)),
            ("", Err("time: invalid duration \"\"")),
            ("1", Err("time: missing unit in duration \"1\"")),
            ("1d", Err("time: unknown unit \"d\" in duration \"1d\"")),
            ("9999999999h", Err("time: invalid duration \"9999999999h\"")),
        ];
        for (s, want) in parsed {
            assert_eq!(parse_duration(s), want.map_err(String::from), "{s:?}");
        }
        let printed = [
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (1_500_000, "1.5ms"),
            (125_000_000_000, "2m5s"),
            (9_257_000_000_000, "2h34m17s"),
            (-5_000_000_000, "-5s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_723_500_000_000, "1h2m3.5s"),
        ];
        for (d, want) in printed {
            assert_eq!(duration_string(d), want, "{d}");
        }
    }
}
