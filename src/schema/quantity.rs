//! resource.Quantity: the amounts of the resource isolators (ace.md Isolators, "resource
//! isolators"; appc-requirements.md §2.5.8 and §3.1).
//!
//! The grammar is Kubernetes' (`^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$`, as copied into the
//! Go schema): binary suffixes `Ki Mi Gi Ti Pi Ei`, decimal `n u m k M G T P E`, exponents `e3`,
//! `E-3`. Policy (decision 12 in the `schema` module docs): the spec's decimal `K` (= 1000) is
//! accepted too, although Go refuses it, and JSON numbers are read by their text.
//!
//! The spec says quantities "MUST be integers in base units internally, no floats": a
//! [`Quantity`] holds its exact value as an integer count of nano-units. Only precision finer
//! than `1n` is lost, and it is rounded away from zero as Kubernetes does ("if you want some
//! resources, you should get some"). The text is kept as written, for `Display` and
//! serialization; equality and order are on the value, so `1k == 1000`.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use serde_json::Value;

use super::decode::{Cx, Decode, JsonPath};
use super::error::InvalidValue;

const EXPECTED: &str = "a resource quantity";

/// Nano-units per base unit.
const NANO: i128 = 1_000_000_000;

/// A resource amount (`500m`, `1.5Gi`, `1e3`), exact to the nano-unit.
///
/// `parse` and [`Quantity::from_integer`] are the only constructors. The range is about
/// ±1.7·10²⁹ base units (the value is an `i128` of nano-units); larger inputs are refused.
#[derive(Debug, Clone)]
pub struct Quantity {
    text: String,
    nanos: i128,
}

impl Quantity {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let nanos = parse_nanos(s).map_err(|why| InvalidValue::new(s, EXPECTED).because(why))?;
        Ok(Quantity {
            text: s.to_owned(),
            nanos,
        })
    }

    /// A whole number of base units (bytes, cores, operations), written without a suffix.
    pub fn from_integer(n: i64) -> Self {
        Quantity {
            text: n.to_string(),
            nanos: i128::from(n) * NANO,
        }
    }

    /// The exact value in nano-units (`1` is `1_000_000_000`, `300m` is `300_000_000`).
    pub fn as_nanos(&self) -> i128 {
        self.nanos
    }

    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// Base units rounded up (`1.5` gives 2, `1.5Gi` gives 1610612736); `None` when negative or
    /// above `u64::MAX`.
    pub fn to_integer_ceil(&self) -> Option<u64> {
        u64::try_from(div_ceil(self.nanos, NANO)).ok()
    }

    /// Bytes (or bytes per second) for memory and bandwidth limits: [`Self::to_integer_ceil`].
    pub fn to_bytes(&self) -> Option<u64> {
        self.to_integer_ceil()
    }

    /// Thousandths of a base unit rounded up, as Kubernetes' `MilliValue`: CPU millicores
    /// (`0.1m` gives 1, `2` gives 2000). `None` outside the `i64` range.
    pub fn to_milli(&self) -> Option<i64> {
        i64::try_from(div_ceil(self.nanos, NANO / 1000)).ok()
    }

    /// The text as written (also what `Display` and serialization produce).
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Division rounding toward positive infinity.
fn div_ceil(n: i128, d: i128) -> i128 {
    n.div_euclid(d) + i128::from(n.rem_euclid(d) != 0)
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl Hash for Quantity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.nanos.hash(state);
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Quantity {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantity::parse(s)
    }
}

impl TryFrom<&str> for Quantity {
    type Error = InvalidValue;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Quantity::parse(s)
    }
}

impl TryFrom<String> for Quantity {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Quantity::parse(&s)
    }
}

// Not `parsed_newtype!`: its `Decode` and `Deserialize` take strings only, and the Go schema
// reads JSON numbers too.
impl serde::Serialize for Quantity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = match Value::deserialize(d)? {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            other => {
                let msg = format!(
                    "expected a resource quantity, found {}",
                    super::decode::json_type(&other)
                );
                return Err(serde::de::Error::custom(msg));
            }
        };
        Quantity::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Decode for Quantity {
    fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => {
                // serde_json keeps integers exact but reads `1.5` and `1e3` as f64: say so.
                if n.is_f64() {
                    cx.warn(
                        path,
                        format!("quantity {n} read from a JSON float; write it as a string"),
                    );
                }
                n.to_string()
            }
            other => {
                cx.wrong_type(path, "a string or a number", other);
                return None;
            }
        };
        Quantity::parse(&text).map_err(|e| cx.invalid(path, e)).ok()
    }
}

/// What a suffix multiplies by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scale {
    /// 10^n.
    Decimal(i32),
    /// 2^n, n a multiple of 10.
    Binary(u32),
}

fn parse_suffix(suffix: &str) -> Result<Scale, String> {
    let scale = match suffix {
        "Ki" => Scale::Binary(10),
        "Mi" => Scale::Binary(20),
        "Gi" => Scale::Binary(30),
        "Ti" => Scale::Binary(40),
        "Pi" => Scale::Binary(50),
        "Ei" => Scale::Binary(60),
        "n" => Scale::Decimal(-9),
        "u" => Scale::Decimal(-6),
        "m" => Scale::Decimal(-3),
        "" => Scale::Decimal(0),
        // `K` is the spec's spelling (ace.md lists "E, P, T, G, M, K"); Kubernetes has only `k`.
        "k" | "K" => Scale::Decimal(3),
        "M" => Scale::Decimal(6),
        "G" => Scale::Decimal(9),
        "T" => Scale::Decimal(12),
        "P" => Scale::Decimal(15),
        "E" => Scale::Decimal(18),
        _ => return parse_exponent(suffix),
    };
    Ok(scale)
}

/// `e3`, `E-3`, `e+6`: a decimal exponent, as Kubernetes reads a suffix not in its table.
fn parse_exponent(suffix: &str) -> Result<Scale, String> {
    let unknown = || format!("unknown suffix {suffix:?}");
    let digits = suffix.strip_prefix(['e', 'E']).ok_or_else(unknown)?;
    let unsigned = digits.strip_prefix(['+', '-']).unwrap_or(digits);
    if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return Err(unknown());
    }
    digits
        .parse()
        .map(Scale::Decimal)
        .map_err(|_| "exponent out of range".to_owned())
}

/// The whole parse: sign, mantissa digits, suffix, then the exact nano-unit value.
fn parse_nanos(s: &str) -> Result<i128, String> {
    if s.is_empty() {
        return Err("it is empty".into());
    }
    if s.chars().any(char::is_whitespace) {
        return Err("whitespace is not allowed".into());
    }
    let (negative, rest) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(end);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if frac.contains('.') {
        return Err("more than one decimal point".into());
    }
    if int.is_empty() && frac.is_empty() {
        return Err("expected a number, optionally followed by a suffix".into());
    }
    let scale = parse_suffix(suffix)?;
    let magnitude = magnitude_nanos(int, frac, scale).ok_or("too large")?;
    let nanos = i128::try_from(magnitude).map_err(|_| "too large")?;
    Ok(if negative { -nanos } else { nanos })
}

/// `int.frac × scale` in nano-units, computed on decimal digits so nothing is approximated;
/// digits below `1n` round the result up. `None` on overflow.
fn magnitude_nanos(int: &str, frac: &str, scale: Scale) -> Option<u128> {
    let mut digits: Vec<u8> = int
        .bytes()
        .chain(frac.bytes())
        .map(|b| b - b'0')
        .skip_while(|&d| d == 0)
        .collect();
    if digits.is_empty() {
        return Some(0);
    }
    let (pow2, pow10) = match scale {
        Scale::Decimal(e) => (0, i64::from(e)),
        Scale::Binary(b) => (b, 0),
    };
    for _ in 0..pow2 / 10 {
        multiply_digits(&mut digits, 1024);
    }
    let shift = 9 + pow10 - i64::try_from(frac.len()).ok()?;
    let mut round_up = false;
    if shift >= 0 {
        // u128::MAX has 39 digits; checking first keeps `1e2000000000` from allocating.
        if digits.len() as u64 + shift.unsigned_abs() > 39 {
            return None;
        }
        digits.resize(digits.len() + shift.unsigned_abs() as usize, 0);
    } else {
        let keep = digits
            .len()
            .saturating_sub(usize::try_from(shift.unsigned_abs()).unwrap_or(usize::MAX));
        round_up = digits[keep..].iter().any(|&d| d != 0);
        digits.truncate(keep);
    }
    let mut value: u128 = 0;
    for d in digits {
        value = value.checked_mul(10)?.checked_add(u128::from(d))?;
    }
    value.checked_add(u128::from(round_up))
}

/// Multiplies a big-endian vector of decimal digits by `factor` in place.
fn multiply_digits(digits: &mut Vec<u8>, factor: u32) {
    let mut carry = 0u32;
    for d in digits.iter_mut().rev() {
        let x = u32::from(*d) * factor + carry;
        *d = (x % 10) as u8;
        carry = x / 10;
    }
    while carry > 0 {
        digits.insert(0, (carry % 10) as u8);
        carry /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::decode::{decode_document, decode_value};
    use proptest::prelude::*;

    fn nanos(s: &str) -> i128 {
        Quantity::parse(s)
            .unwrap_or_else(|e| panic!("{s:?}: {e}"))
            .as_nanos()
    }

    // Facts re-authored from Kubernetes' quantity tests (the Go schema's copy, §3.1).
    #[test]
    fn canonical_values() {
        const G: i128 = NANO;
        for (s, want) in [
            ("0", 0),
            ("0n", 0),
            ("0Ki", 0),
            ("-0", 0),
            ("1", G),
            ("+1", G),
            ("1.", G),
            (".5", G / 2),
            ("1.5Gi", 1_610_612_736 * G),
            ("0.5Ki", 512 * G),
            ("1Ki", 1024 * G),
            ("1Mi", (1 << 20) * G),
            ("1Ei", (1 << 60) * G),
            ("300m", 300_000_000),
            ("0.3", 300_000_000),
            ("0.1m", 100_000),
            ("100u", 100_000),
            ("1n", 1),
            ("1e3", 1000 * G),
            ("1E3", 1000 * G),
            ("1e+3", 1000 * G),
            ("1e-3", 1_000_000),
            ("1k", 1000 * G),
            ("1K", 1000 * G),
            ("1.1k", 1100 * G),
            ("1M", 1_000_000 * G),
            ("1G", 1_000_000_000 * G),
            ("1E", 1_000_000_000_000_000_000 * G),
            ("20m", 20_000_000),
            ("-1.5", -3 * G / 2),
            ("-0.5Ki", -512 * G),
        ] {
            assert_eq!(nanos(s), want, "{s}");
        }
    }

    #[test]
    fn precision_below_nano_rounds_away_from_zero() {
        assert_eq!(nanos("0.1n"), 1);
        assert_eq!(nanos("1.0000000001"), NANO + 1);
        assert_eq!(nanos("-0.1n"), -1);
        assert_eq!(nanos("1e-2000000000"), 1);
        assert_eq!(nanos("0.0000000000000000000000000000000000000000001"), 1);
    }

    #[test]
    fn invalid_quantities() {
        for s in [
            "", " 1", "1 ", "1.2.3", "--1", "+-1", "1Kb", "1X", "1.1.M", "1+1.0M", "0.1mi",
            "0.1am", "aoeu", ".5i", "1i", "-3.01i", "-3.01e-", ".", "-", "1e", "e3", "1KiB", "1kb",
            "1e3k", "1e1.5", "1Ki1",
        ] {
            assert!(Quantity::parse(s).is_err(), "{s:?} accepted");
        }
    }

    #[test]
    fn error_messages_name_the_reason() {
        let msg = |s: &str| {
            Quantity::parse(s)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert_eq!(
            msg("1X"),
            r#""1X" is not a resource quantity (unknown suffix "X")"#
        );
        assert_eq!(
            msg("1Kb"),
            r#""1Kb" is not a resource quantity (unknown suffix "Kb")"#
        );
        assert_eq!(
            msg(" 1"),
            r#"" 1" is not a resource quantity (whitespace is not allowed)"#
        );
        assert_eq!(
            msg("1.2.3"),
            r#""1.2.3" is not a resource quantity (more than one decimal point)"#
        );
        assert_eq!(msg(""), r#""" is not a resource quantity (it is empty)"#);
        assert!(msg("1e99999999999").ends_with("(exponent out of range)"));
        assert!(msg("1e40").ends_with("(too large)"));
        assert!(msg("1Ei1").contains("unknown suffix"));
    }

    #[test]
    fn range_limits() {
        assert!(Quantity::parse("100000000000000000000000000000").is_ok()); // 1e29
        assert!(Quantity::parse("1e30").is_err());
        assert!(Quantity::parse("0e99999").is_ok_and(|q| q.is_zero()));
    }

    #[test]
    fn conversions_round_up() {
        let q = |s: &str| Quantity::parse(s).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(q("1.5Gi").to_bytes(), Some(1_610_612_736));
        assert_eq!(q("1G").to_bytes(), Some(1_000_000_000));
        assert_eq!(q("1.5").to_integer_ceil(), Some(2));
        assert_eq!(q("1n").to_integer_ceil(), Some(1));
        assert_eq!(q("0").to_integer_ceil(), Some(0));
        assert_eq!(q("-1").to_integer_ceil(), None);
        assert_eq!(q("16Ei").to_integer_ceil(), None);
        assert_eq!(q("15Ei").to_integer_ceil(), Some(15 << 60));
        assert_eq!(q("0.1m").to_milli(), Some(1));
        assert_eq!(q("300m").to_milli(), Some(300));
        assert_eq!(q("2").to_milli(), Some(2000));
        assert_eq!(q("-1.5m").to_milli(), Some(-1));
        assert_eq!(q("1e28").to_milli(), None);
    }

    #[test]
    fn equality_and_order_are_on_the_value() {
        let q = |s: &str| Quantity::parse(s).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(q("1k"), q("1000"));
        assert_eq!(q("1K"), q("1e3"));
        assert_eq!(q("1Ki"), q("1024"));
        assert_eq!(q("0.5"), q("500m"));
        assert!(q("1Ki") > q("1k"));
        assert!(q("-1") < q("0"));
        assert!(q("999m") < q("1"));
        assert_eq!(q("1k").to_string(), "1k");
        assert_eq!(Quantity::from_integer(1024), q("1Ki"));
        assert_eq!(Quantity::from_integer(-3).to_string(), "-3");
    }

    #[test]
    fn decodes_strings_and_json_numbers() {
        let d = decode_document::<Quantity>("1024").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.value, Quantity::from_integer(1024));
        assert!(d.warnings.is_empty());
        let d = decode_document::<Quantity>("1.5").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.value.as_nanos(), 1_500_000_000);
        assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
        let d = decode_document::<Quantity>("1e3").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.value, Quantity::from_integer(1000));
        let e = decode_document::<Quantity>(r#""1X""#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            e,
            r#"(top level): "1X" is not a resource quantity (unknown suffix "X")"#
        );
        let e = decode_document::<Quantity>("true")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            e,
            "(top level): expected a string or a number, found a boolean"
        );
    }

    #[test]
    fn serde_round_trip() {
        let q: Quantity = serde_json::from_str(r#""1.5Gi""#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            serde_json::to_string(&q).ok().as_deref(),
            Some(r#""1.5Gi""#)
        );
        let n: Quantity = serde_json::from_str("42").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(n, Quantity::from_integer(42));
        assert!(serde_json::from_str::<Quantity>(r#""1X""#).is_err());
        assert!(serde_json::from_str::<Quantity>("null").is_err());
    }

    const SUFFIXES: &[&str] = &[
        "", "n", "u", "m", "k", "K", "M", "G", "T", "Ki", "Mi", "Gi", "Ti", "Pi", "e3", "E-2",
        "e+1",
    ];

    proptest! {
        #[test]
        fn round_trips_through_json(
            sign in prop::sample::select(vec!["", "+", "-"]),
            int in 0u64..1_000_000,
            frac in prop::option::of("[0-9]{1,12}"),
            suffix in prop::sample::select(SUFFIXES),
        ) {
            let text = match &frac {
                Some(f) => format!("{sign}{int}.{f}{suffix}"),
                None => format!("{sign}{int}{suffix}"),
            };
            let q = Quantity::parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let json = serde_json::to_value(&q).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back = decode_value::<Quantity>(&json).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&back.value, &q);
            prop_assert_eq!(back.value.to_string(), text);
        }

        #[test]
        fn order_follows_the_number(a in 0u64..1u64 << 40, b in 0u64..1u64 << 40,
                                    suffix in prop::sample::select(SUFFIXES)) {
            let qa = Quantity::parse(&format!("{a}{suffix}")).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let qb = Quantity::parse(&format!("{b}{suffix}")).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(qa.cmp(&qb), a.cmp(&b));
            let base = Quantity::from_integer(i64::try_from(a).unwrap_or(i64::MAX));
            prop_assert_eq!(Quantity::parse(&a.to_string()).ok(), Some(base));
        }

        #[test]
        fn binary_suffixes_are_exact(n in 0u64..1_000_000, i in 0usize..5) {
            let suffix = ["Ki", "Mi", "Gi", "Ti", "Pi"][i];
            let q = Quantity::parse(&format!("{n}{suffix}")).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(q.as_nanos(), i128::from(n) * (1i128 << (10 * (i + 1))) * NANO);
        }
    }
}
