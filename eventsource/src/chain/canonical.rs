//! Canonical JSON: one spelling for every way of writing the same JSON value, so that a
//! payload hashes the same whether it is read back from SQLite (the text as appended) or
//! from PostgreSQL (`jsonb`, which drops whitespace and duplicate keys, reorders keys and
//! respells numbers).
//!
//! The form (version 1 of the chain's encoding):
//! - no whitespace outside strings;
//! - object members sorted by the UTF-8 bytes of their (unescaped) keys; of duplicate
//!   keys, the last one is kept (as `jsonb` and `serde_json` keep it);
//! - strings with only `"` and `\` escaped as `\"` and `\\`, control characters below
//!   U+0020 as `\b \f \n \r \t` or `\u00xx` (lowercase hex), everything else as UTF-8;
//! - numbers as exact decimals, never through floating point: the significant digits
//!   without leading or trailing zeros, then `e` and the power of ten when it is not 0,
//!   with `-` in front of a non-zero negative: `100`, `1e2` and `100.0` are all `1e2`,
//!   `-0.50` is `-5e-1`, `0.0` is `0`;
//! - `true`, `false`, `null` as written.

use std::fmt;

/// Deeper nesting than this is refused (`serde_json` refuses it when appending).
const MAX_DEPTH: usize = 128;

/// Why a text could not be put in canonical form: it is not JSON (a row edited by hand),
/// or a number's exponent is out of range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalError {
    /// Which text: `"JSON"` until the caller names it (`"the payload"`,
    /// `"the metadata"`).
    pub what: &'static str,
    /// Byte offset in the text.
    pub offset: usize,
    /// What was wrong there.
    pub reason: &'static str,
}

impl fmt::Display for CanonicalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is not JSON: {} at byte {}",
            self.what, self.reason, self.offset
        )
    }
}

impl std::error::Error for CanonicalError {}

/// Appends the canonical form of the JSON `text` to `out`.
pub(crate) fn canonicalize(text: &str, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    let mut parser = Parser {
        bytes: text.as_bytes(),
        at: 0,
    };
    parser.value(out, 0)?;
    parser.whitespace();
    if parser.at != parser.bytes.len() {
        return Err(parser.error("trailing characters after the JSON value"));
    }
    Ok(())
}

struct Parser<'t> {
    bytes: &'t [u8],
    at: usize,
}

impl Parser<'_> {
    fn error(&self, reason: &'static str) -> CanonicalError {
        CanonicalError {
            what: "the text",
            offset: self.at,
            reason,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8, reason: &'static str) -> Result<(), CanonicalError> {
        self.whitespace();
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.error(reason))
        }
    }

    fn value(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<(), CanonicalError> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        self.whitespace();
        match self.peek() {
            Some(b'{') => self.object(out, depth),
            Some(b'[') => self.array(out, depth),
            Some(b'"') => {
                let mut decoded = Vec::new();
                self.string(&mut decoded)?;
                write_string(&decoded, out);
                Ok(())
            }
            Some(b'-' | b'0'..=b'9') => self.number(out),
            Some(b't') => self.literal(b"true", out),
            Some(b'f') => self.literal(b"false", out),
            Some(b'n') => self.literal(b"null", out),
            _ => Err(self.error("expected a JSON value")),
        }
    }

    fn literal(&mut self, word: &'static [u8], out: &mut Vec<u8>) -> Result<(), CanonicalError> {
        if self.bytes[self.at..].starts_with(word) {
            self.at += word.len();
            out.extend_from_slice(word);
            Ok(())
        } else {
            Err(self.error("expected true, false or null"))
        }
    }

    fn array(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<(), CanonicalError> {
        self.at += 1;
        out.push(b'[');
        self.whitespace();
        if self.peek() == Some(b']') {
            self.at += 1;
            out.push(b']');
            return Ok(());
        }
        loop {
            self.value(out, depth + 1)?;
            self.whitespace();
            match self.peek() {
                Some(b',') => {
                    self.at += 1;
                    out.push(b',');
                }
                Some(b']') => {
                    self.at += 1;
                    out.push(b']');
                    return Ok(());
                }
                _ => return Err(self.error("expected , or ] in an array")),
            }
        }
    }

    fn object(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<(), CanonicalError> {
        self.at += 1;
        let start = out.len();
        out.push(b'{');
        self.whitespace();
        if self.peek() == Some(b'}') {
            self.at += 1;
            out.push(b'}');
            return Ok(());
        }
        // Each member: its unescaped key and where its canonical `"key":value` is in
        // `out`. Written in input order; reordered below only when needed.
        let mut members: Vec<(Vec<u8>, usize, usize)> = Vec::new();
        let mut sorted = true;
        loop {
            self.whitespace();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a string key in an object"));
            }
            let mut key = Vec::new();
            self.string(&mut key)?;
            self.expect(b':', "expected : after an object key")?;
            let from = out.len();
            write_string(&key, out);
            out.push(b':');
            self.value(out, depth + 1)?;
            if let Some((last, ..)) = members.last() {
                sorted &= *last < key;
            }
            members.push((key, from, out.len()));
            self.whitespace();
            match self.peek() {
                Some(b',') => {
                    self.at += 1;
                    out.push(b',');
                }
                Some(b'}') => {
                    self.at += 1;
                    break;
                }
                _ => return Err(self.error("expected , or } in an object")),
            }
        }
        if !sorted {
            // Stable: of equal keys the last one in the input ends up last, and is kept.
            let written = out.split_off(start + 1);
            members.sort_by(|a, b| a.0.cmp(&b.0));
            let base = start + 1;
            let mut first = true;
            for (i, (key, from, to)) in members.iter().enumerate() {
                if members.get(i + 1).is_some_and(|next| next.0 == *key) {
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                out.extend_from_slice(&written[from - base..to - base]);
            }
        }
        out.push(b'}');
        Ok(())
    }

    /// Reads a string (the cursor at its opening quote) into `into`, unescaped, as
    /// UTF-8; a lone surrogate escape (which `serde_json` lets through and `jsonb`
    /// refuses) as [`LONE_SURROGATE`] and its two bytes, which no UTF-8 text contains.
    fn string(&mut self, into: &mut Vec<u8>) -> Result<(), CanonicalError> {
        self.at += 1;
        loop {
            let run = self.at;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.at += 1;
            }
            // The text is a `str` and the run stops only at ASCII bytes: valid UTF-8.
            into.extend_from_slice(&self.bytes[run..self.at]);
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.at += 1;
                    let escaped = self.peek().ok_or_else(|| self.error("unfinished escape"))?;
                    self.at += 1;
                    let c = match escaped {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => match self.unicode_escape()? {
                            Ok(c) => c,
                            Err(unit) => {
                                into.push(LONE_SURROGATE);
                                into.extend_from_slice(&unit.to_be_bytes());
                                continue;
                            }
                        },
                        _ => return Err(self.error("invalid escape in a string")),
                    };
                    let mut buf = [0u8; 4];
                    into.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                Some(_) => return Err(self.error("control character in a string")),
                None => return Err(self.error("unterminated string")),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, CanonicalError> {
        let digits = self
            .bytes
            .get(self.at..self.at + 4)
            .ok_or_else(|| self.error("short \\u escape"))?;
        let mut value = 0;
        for &d in digits {
            let v = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return Err(self.error("invalid hex digit in a \\u escape")),
            };
            value = value * 16 + u32::from(v);
        }
        self.at += 4;
        Ok(value)
    }

    /// The character of a `\u` escape (the cursor after the `u`), with its low
    /// surrogate; `Err(unit)` for a lone surrogate.
    fn unicode_escape(&mut self) -> Result<Result<char, u16>, CanonicalError> {
        let high = self.hex4()?;
        if (0xD800..0xDC00).contains(&high) && self.bytes[self.at..].starts_with(b"\\u") {
            let save = self.at;
            self.at += 2;
            let low = self.hex4()?;
            if (0xDC00..0xE000).contains(&low) {
                let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                return Ok(char::from_u32(code).ok_or(0xFFFF));
            }
            // Not a pair: the second escape is read on its own.
            self.at = save;
        }
        Ok(char::from_u32(high).ok_or_else(|| u16::try_from(high).unwrap_or(0xFFFF)))
    }

    /// Skips a run of digits; returns where it starts and ends.
    fn digits(&mut self) -> std::ops::Range<usize> {
        let from = self.at;
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        from..self.at
    }

    fn number(&mut self, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.at += 1;
        }
        let bytes = self.bytes;
        let integer = &bytes[self.digits()];
        if integer.is_empty() {
            return Err(self.error("expected digits in a number"));
        }
        if integer.len() > 1 && integer[0] == b'0' {
            return Err(self.error("leading zero in a number"));
        }
        let mut fraction: &[u8] = &[];
        if self.peek() == Some(b'.') {
            self.at += 1;
            fraction = &bytes[self.digits()];
            if fraction.is_empty() {
                return Err(self.error("expected digits after the decimal point"));
            }
        }
        let mut exponent: i64 = 0;
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            let sign = match self.peek() {
                Some(b'-') => {
                    self.at += 1;
                    -1
                }
                Some(b'+') => {
                    self.at += 1;
                    1
                }
                _ => 1,
            };
            let digits = &bytes[self.digits()];
            if digits.is_empty() {
                return Err(self.error("expected digits in an exponent"));
            }
            for &d in digits {
                exponent = exponent
                    .checked_mul(10)
                    .and_then(|e| e.checked_add(i64::from(d - b'0')))
                    .ok_or_else(|| self.error("exponent out of range"))?;
            }
            exponent *= sign;
        }
        // All significant digits, and the power of ten of the last one.
        let all = integer.iter().chain(fraction);
        let mut significant: Vec<u8> = all.copied().skip_while(|&d| d == b'0').collect();
        let fraction_len =
            i64::try_from(fraction.len()).map_err(|_| self.error("number too long"))?;
        let mut power = exponent
            .checked_sub(fraction_len)
            .ok_or_else(|| self.error("exponent out of range"))?;
        while significant.last() == Some(&b'0') {
            significant.pop();
            power = power
                .checked_add(1)
                .ok_or_else(|| self.error("exponent out of range"))?;
        }
        if significant.is_empty() {
            out.push(b'0');
            return Ok(());
        }
        if negative {
            out.push(b'-');
        }
        out.extend_from_slice(&significant);
        if power != 0 {
            out.push(b'e');
            out.extend_from_slice(power.to_string().as_bytes());
        }
        Ok(())
    }
}

/// Marks a lone surrogate in a decoded string: a byte no UTF-8 text contains, followed
/// by the code unit's two bytes.
const LONE_SURROGATE: u8 = 0xFF;

/// Writes a decoded string as a canonical JSON string.
fn write_string(s: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let mut bytes = s.iter().copied();
    while let Some(b) = bytes.next() {
        match b {
            LONE_SURROGATE => {
                let (high, low) = (bytes.next().unwrap_or(0), bytes.next().unwrap_or(0));
                out.extend_from_slice(b"\\u");
                for nibble in [high >> 4, high & 0xf, low >> 4, low & 0xf] {
                    out.push(HEX[usize::from(nibble)]);
                }
            }
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..0x20 => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(text: &str) -> String {
        let mut out = Vec::new();
        canonicalize(text, &mut out).unwrap_or_else(|e| panic!("{text}: {e}"));
        String::from_utf8(out).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn numbers_are_exact_decimals() {
        for (text, expected) in [
            ("100", "1e2"),
            ("1e2", "1e2"),
            ("100.0", "1e2"),
            ("1.00E+2", "1e2"),
            ("0", "0"),
            ("-0", "0"),
            ("-0.0e-7", "0"),
            ("0.5", "5e-1"),
            ("-0.50", "-5e-1"),
            ("1.5", "15e-1"),
            ("12", "12"),
            ("9007199254740993", "9007199254740993"),
            (
                "123456789012345678901234567890",
                "12345678901234567890123456789e1",
            ),
            ("0.000001", "1e-6"),
            ("1e-7", "1e-7"),
        ] {
            assert_eq!(canon(text), expected, "{text}");
        }
    }

    #[test]
    fn objects_are_sorted_and_deduplicated() {
        assert_eq!(
            canon(r#" { "b" : 1 , "a" : [ 1 , { "d":null,"c":true } ] , "b" : 2 } "#),
            r#"{"a":[1,{"c":true,"d":null}],"b":2}"#
        );
        assert_eq!(canon(r#"{"a":1,"a":2}"#), r#"{"a":2}"#);
        assert_eq!(canon(r#"{"aa":1,"b":2}"#), r#"{"aa":1,"b":2}"#);
        assert_eq!(canon("{}"), "{}");
        assert_eq!(canon("[]"), "[]");
    }

    #[test]
    fn strings_are_unescaped_then_escaped_minimally() {
        assert_eq!(canon(r#""\u0041\/\u00e9\ud83d\ude00""#), "\"A/é😀\"");
        assert_eq!(canon("\"\\\"\\\\\\n\\u0001\""), "\"\\\"\\\\\\n\\u0001\"");
        // Lone surrogates (JSON that serde_json accepts and jsonb refuses) keep their
        // escape, distinct from the same text escaped.
        assert_eq!(canon(r#""\uD800x""#), r#""\ud800x""#);
        assert_eq!(canon(r#""\ud800\u0041""#), r#""\ud800A""#);
        assert_ne!(canon(r#""\ud800""#), canon(r#""\\ud800""#));
    }

    #[test]
    fn what_is_not_json_is_an_error() {
        for text in [
            "",
            "{",
            "[1,]",
            "01",
            "1.",
            "1e",
            "tru",
            r#"{"a" 1}"#,
            r#""\x""#,
            "1 2",
            "\"a\u{1}\"",
        ] {
            let mut out = Vec::new();
            assert!(
                canonicalize(text, &mut out).is_err(),
                "{text:?} was accepted"
            );
        }
        let deep = "[".repeat(MAX_DEPTH + 2) + &"]".repeat(MAX_DEPTH + 2);
        assert!(canonicalize(&deep, &mut Vec::new()).is_err());
    }
}
