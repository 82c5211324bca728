//! sprig's float math: `addf`, `add1f`, `subf`, `mulf`, `divf` (through decimals, as sprig
//! does with shopspring/decimal, so `addf 0.1 0.2` is 0.3), `maxf`, `minf`, `ceil`, `floor`,
//! `round`, and the conversions `float64` and `toDecimal`.

use std::str::FromStr as _;

use gotmpl::Value;
use rust_decimal::prelude::ToPrimitive as _;
use rust_decimal::{Decimal, RoundingStrategy};

use super::args::{Plain, R, int, want};

/// shopspring/decimal's `DivisionPrecision`: quotients keep 16 decimal places.
const DIVISION_PLACES: u32 = 16;

pub(super) fn functions() -> Vec<(&'static str, Plain)> {
    vec![
        ("add1f", |a| {
            want(a, "add1f", 1, 1)?;
            decimal_op(&a[0], &[Value::Int(1)], Op::Add)
        }),
        ("addf", |a| decimal_op(&Value::Float(0.0), a, Op::Add)),
        ("subf", |a| {
            want(a, "subf", 1, usize::MAX)?;
            decimal_op(&a[0], &a[1..], Op::Sub)
        }),
        ("mulf", |a| {
            want(a, "mulf", 1, usize::MAX)?;
            decimal_op(&a[0], &a[1..], Op::Mul)
        }),
        ("divf", |a| {
            want(a, "divf", 1, usize::MAX)?;
            decimal_op(&a[0], &a[1..], Op::Div)
        }),
        ("maxf", |a| {
            want(a, "maxf", 1, usize::MAX)?;
            Ok(Value::Float(
                a[1..]
                    .iter()
                    .fold(to_f64(&a[0]), |m, v| go_max(m, to_f64(v))),
            ))
        }),
        ("minf", |a| {
            want(a, "minf", 1, usize::MAX)?;
            Ok(Value::Float(
                a[1..]
                    .iter()
                    .fold(to_f64(&a[0]), |m, v| go_min(m, to_f64(v))),
            ))
        }),
        ("ceil", |a| {
            want(a, "ceil", 1, 1)?;
            Ok(Value::Float(to_f64(&a[0]).ceil()))
        }),
        ("floor", |a| {
            want(a, "floor", 1, 1)?;
            Ok(Value::Float(to_f64(&a[0]).floor()))
        }),
        ("round", round),
        ("float64", |a| {
            want(a, "float64", 1, 1)?;
            Ok(Value::Float(to_f64(&a[0])))
        }),
        ("toDecimal", |a| {
            want(a, "toDecimal", 1, 1)?;
            // Unix octal ("0755") to its value; anything else is 0.
            let text = match &a[0] {
                Value::String(s) => s.to_string(),
                other => other.to_string(),
            };
            Ok(Value::Int(parse_go_int(&text, 8).unwrap_or(0)))
        }),
    ]
}

/// Go's `strconv.ParseInt(s, base, 64)`: an optional sign, digits of the base only.
fn parse_go_int(s: &str, base: u32) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(base)) {
        return None;
    }
    i64::from_str_radix(s, base).ok()
}

/// spf13/cast's `ToFloat64` as sprig uses it: numbers, numeric strings, bools; else 0.
pub(super) fn to_f64(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::Uint(u) => *u as f64,
        Value::Float(f) => *f,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::String(s) => s.parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// Go's `math.Max`: NaN wins, +0 beats -0.
fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() { b } else { a }
    } else {
        a.max(b)
    }
}

fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() { a } else { b }
    } else {
        a.min(b)
    }
}

#[derive(Clone, Copy)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
}

/// `decimal.NewFromFloat`: the float's shortest decimal form.
fn to_decimal(f: f64) -> Option<Decimal> {
    Decimal::from_str(&format!("{f}")).ok()
}

/// sprig's `execDecimalOp`: each operand as its shortest decimal, the operation done in
/// decimal, the result back to a float. Values beyond a 96-bit decimal (about 7.9e28) are
/// computed in floats instead; a division by zero panics in Go and fails here.
fn decimal_op(first: &Value, rest: &[Value], op: Op) -> R {
    let floats: Vec<f64> = rest.iter().map(to_f64).collect();
    let start = to_f64(first);
    let exact = (|| {
        let mut acc = to_decimal(start)?;
        for &f in &floats {
            let d = to_decimal(f)?;
            acc = match op {
                Op::Add => acc.checked_add(d)?,
                Op::Sub => acc.checked_sub(d)?,
                Op::Mul => acc.checked_mul(d)?,
                Op::Div => acc.checked_div(d)?.round_dp_with_strategy(
                    DIVISION_PLACES,
                    RoundingStrategy::MidpointAwayFromZero,
                ),
            };
        }
        acc.to_f64()
    })();
    if let Some(x) = exact {
        return Ok(Value::Float(x));
    }
    if matches!(op, Op::Div) && floats.contains(&0.0) {
        return Err(super::args::exec("divf: decimal division by 0"));
    }
    let x = floats.iter().fold(start, |acc, &f| match op {
        Op::Add => acc + f,
        Op::Sub => acc - f,
        Op::Mul => acc * f,
        Op::Div => acc / f,
    });
    Ok(Value::Float(x))
}

/// sprig's `round`: to `places` decimals, up from `roundOn` (0.5 unless given) of the
/// fraction, which Go's `math.Modf` takes with the sign of the value.
fn round(a: &[Value]) -> R {
    want(a, "round", 2, 3)?;
    let round_on = a.get(2).map_or(0.5, to_f64);
    let val = to_f64(&a[0]);
    let pow = 10f64.powf(int(&a[1], "round")? as f64);
    let digit = pow * val;
    let frac = digit.fract();
    let r = if frac >= round_on {
        digit.ceil()
    } else {
        digit.floor()
    };
    Ok(Value::Float(r / pow))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, args: &[Value]) -> R {
        let f = functions().into_iter().find(|(n, _)| *n == name).unwrap().1;
        f(args)
    }

    fn f(x: f64) -> Value {
        Value::Float(x)
    }

    fn st(x: &str) -> Value {
        Value::String(x.into())
    }

    #[test]
    fn sprig_numeric_cases() {
        // sprig's numeric_test.go: TestAdd1f, TestAddf, TestDivf, TestMulf, TestSubf,
        // TestMaxf, TestMinf, TestCeil, TestFloor, TestRound, TestToFloat64, TestToDecimal
        // (a pipeline's value is the last argument).
        let i = Value::Int;
        let cases: &[(&str, Vec<Value>, Value)] = &[
            ("add1f", vec![f(3.4)], f(4.4)),
            ("addf", vec![f(1.5), f(2.2), i(3)], f(6.7)),
            ("divf", vec![i(5), i(4), i(2)], f(0.625)),
            ("mulf", vec![f(1.2), st("2.4"), i(10), st("4")], f(115.2)),
            ("subf", vec![f(4.5), i(1), i(3)], f(0.5)),
            (
                "maxf",
                vec![i(1), i(2), i(3), f(345.7), i(5), i(6), i(7)],
                f(345.7),
            ),
            (
                "minf",
                vec![f(1.4), i(2), i(3), f(345.6), i(5), i(6), i(7)],
                f(1.4),
            ),
            ("minf", vec![i(345)], f(345.0)),
            ("ceil", vec![i(123)], f(123.0)),
            ("ceil", vec![st("123")], f(123.0)),
            ("ceil", vec![f(123.01)], f(124.0)),
            ("ceil", vec![st("123.01")], f(124.0)),
            ("floor", vec![i(123)], f(123.0)),
            ("floor", vec![st("123.9999")], f(123.0)),
            ("floor", vec![f(123.9999)], f(123.0)),
            ("round", vec![f(123.5555), i(3)], f(123.556)),
            ("round", vec![st("123.55555"), i(3)], f(123.556)),
            ("round", vec![f(123.500001), i(0)], f(124.0)),
            ("round", vec![f(123.49999999), i(0)], f(123.0)),
            ("round", vec![f(123.2329999), i(2), f(0.3)], f(123.23)),
            ("round", vec![f(123.233), i(2), f(0.3)], f(123.24)),
            ("float64", vec![st("102")], f(102.0)),
            ("float64", vec![i(102)], f(102.0)),
            ("float64", vec![f(102.1234)], f(102.1234)),
            ("float64", vec![Value::Bool(true)], f(1.0)),
            ("float64", vec![st("frankie")], f(0.0)),
            ("toDecimal", vec![st("777")], i(511)),
            ("toDecimal", vec![i(777)], i(511)),
            ("toDecimal", vec![i(770)], i(504)),
            ("toDecimal", vec![i(755)], i(493)),
            // Not sprig's tables: the decimal detour, and a digit octal lacks.
            ("addf", vec![f(0.1), f(0.2)], f(0.3)),
            ("toDecimal", vec![st("8")], i(0)),
        ];
        for (name, args, want) in cases {
            assert_eq!(&call(name, args).unwrap(), want, "{name} {args:?}");
        }
        let err = call("divf", &[Value::Int(1), Value::Int(0)]).unwrap_err();
        assert!(err.to_string().contains("division by 0"), "{err}");
        // Beyond a decimal's range the arithmetic is done in floats.
        assert_eq!(call("mulf", &[f(1e30), f(2.0)]).unwrap(), f(2e30));
    }
}
