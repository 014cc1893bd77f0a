//! Canonical JSON: one spelling for every way of writing the same JSON value, so that a
//! payload hashes the same whether it is read back from SQLite (the text as appended) or
//! from PostgreSQL (`jsonb`, which drops whitespace and duplicate keys, reorders keys and
//! respells numbers).
//!
//! The form (version 1 of the chain's encoding):
//! - no whitespace outside strings;
//! - strings with only `"` and `\` escaped as `\"` and `\\`, control characters below
//!   U+0020 as `\b \f \n \r \t` or `\u00xx` (lowercase hex), a lone surrogate escape
//!   (which `serde_json` accepts and `jsonb` refuses) as `\udxxx`, everything else as
//!   UTF-8;
//! - object members sorted by the bytes of their keys in this canonical string form; of
//!   duplicate keys, the last one is kept (as `jsonb` and `serde_json` keep it);
//! - numbers as exact decimals, never through floating point: the significant digits
//!   without leading or trailing zeros, then `e` and the power of ten when it is not 0,
//!   with `-` in front of a non-zero negative: `100`, `1e2` and `100.0` are all `1e2`,
//!   `-0.50` is `-5e-1`, `0.0` is `0`;
//! - `true`, `false`, `null` as written.
//!
//! It runs in one pass without allocating per value: the buffers of a [`Canonicalizer`]
//! are reused from one text to the next.

use std::fmt;

/// Deeper nesting than this is refused (`serde_json` refuses it when appending).
const MAX_DEPTH: usize = 128;

/// Why a text could not be put in canonical form: it is not JSON (a row edited by hand),
/// or a number's exponent is out of range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalError {
    /// Which text: `"the text"` until the caller names it (`"the payload"`,
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

/// One member of an object being written: where its canonical key (between the quotes)
/// and the whole `"key":value` are in the output.
#[derive(Debug, Clone, Copy)]
struct Member {
    key: (usize, usize),
    all: (usize, usize),
}

/// The buffers of canonicalization, kept between texts.
#[derive(Debug, Default)]
pub(crate) struct Canonicalizer {
    members: Vec<Member>,
    scratch: Vec<u8>,
}

impl Canonicalizer {
    /// Appends the canonical form of the JSON `text` to `out`.
    pub(crate) fn canonicalize(
        &mut self,
        text: &str,
        out: &mut Vec<u8>,
    ) -> Result<(), CanonicalError> {
        self.members.clear();
        let mut parser = Parser {
            bytes: text.as_bytes(),
            at: 0,
            members: &mut self.members,
            scratch: &mut self.scratch,
        };
        parser.value(out, 0)?;
        parser.whitespace();
        if parser.at != parser.bytes.len() {
            return Err(parser.error("trailing characters after the JSON value"));
        }
        Ok(())
    }
}

/// Appends the canonical form of the JSON `text` to `out` (with buffers of its own).
#[cfg(test)]
pub(crate) fn canonicalize(text: &str, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    Canonicalizer::default().canonicalize(text, out)
}

struct Parser<'t, 'b> {
    bytes: &'t [u8],
    at: usize,
    members: &'b mut Vec<Member>,
    scratch: &'b mut Vec<u8>,
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl Parser<'_, '_> {
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
            Some(b'"') => self.string(out),
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
        // This object's members, written in input order after `base` on the shared
        // stack; reordered below only when needed.
        let base = self.members.len();
        let mut sorted = true;
        loop {
            self.whitespace();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a string key in an object"));
            }
            let from = out.len();
            self.string(out)?;
            let key = (from + 1, out.len() - 1);
            self.expect(b':', "expected : after an object key")?;
            out.push(b':');
            self.value(out, depth + 1)?;
            if let Some(last) = self.members[base..].last() {
                sorted &= out[last.key.0..last.key.1] < out[key.0..key.1];
            }
            self.members.push(Member {
                key,
                all: (from, out.len()),
            });
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
            // Moved aside, then written back in key order. Stable: of equal keys the last
            // one in the input ends up last, and is kept.
            let shift = start + 1;
            self.scratch.clear();
            self.scratch.extend_from_slice(&out[shift..]);
            out.truncate(shift);
            let scratch: &[u8] = self.scratch;
            let members = &mut self.members[base..];
            members.sort_by(|a, b| {
                scratch[a.key.0 - shift..a.key.1 - shift]
                    .cmp(&scratch[b.key.0 - shift..b.key.1 - shift])
            });
            let mut first = true;
            for (i, m) in members.iter().enumerate() {
                let key = &scratch[m.key.0 - shift..m.key.1 - shift];
                if members
                    .get(i + 1)
                    .is_some_and(|next| &scratch[next.key.0 - shift..next.key.1 - shift] == key)
                {
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                out.extend_from_slice(&scratch[m.all.0 - shift..m.all.1 - shift]);
            }
        }
        self.members.truncate(base);
        out.push(b'}');
        Ok(())
    }

    /// Reads a string (the cursor at its opening quote) and writes it in canonical form.
    fn string(&mut self, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
        self.at += 1;
        out.push(b'"');
        loop {
            let run = self.at;
            self.at += self.bytes[run..]
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                .unwrap_or(self.bytes.len() - run);
            // Bytes other than `"`, `\` and controls need no escape; the text is a `str`
            // and the run stops only at ASCII bytes, so it is whole UTF-8.
            out.extend_from_slice(&self.bytes[run..self.at]);
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    out.push(b'"');
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
                                out.extend_from_slice(b"\\u");
                                for shift in [12, 8, 4, 0] {
                                    out.push(HEX[usize::from((unit >> shift) & 0xf)]);
                                }
                                continue;
                            }
                        },
                        _ => return Err(self.error("invalid escape in a string")),
                    };
                    write_char(c, out);
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
    fn digits(&mut self) -> (usize, usize) {
        let from = self.at;
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        (from, self.at)
    }

    fn number(&mut self, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.at += 1;
        }
        let integer = self.digits();
        if integer.0 == integer.1 {
            return Err(self.error("expected digits in a number"));
        }
        if integer.1 - integer.0 > 1 && self.bytes[integer.0] == b'0' {
            return Err(self.error("leading zero in a number"));
        }
        let mut fraction = (self.at, self.at);
        if self.peek() == Some(b'.') {
            self.at += 1;
            fraction = self.digits();
            if fraction.0 == fraction.1 {
                return Err(self.error("expected digits after the decimal point"));
            }
        }
        let mut exponent: i64 = 0;
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            let negative_exponent = match self.peek() {
                Some(b'-') => {
                    self.at += 1;
                    true
                }
                Some(b'+') => {
                    self.at += 1;
                    false
                }
                _ => false,
            };
            let digits = self.digits();
            if digits.0 == digits.1 {
                return Err(self.error("expected digits in an exponent"));
            }
            for &d in &self.bytes[digits.0..digits.1] {
                exponent = exponent
                    .checked_mul(10)
                    .and_then(|e| e.checked_add(i64::from(d - b'0')))
                    .ok_or_else(|| self.error("exponent out of range"))?;
            }
            if negative_exponent {
                exponent = -exponent;
            }
        }
        // The significant digits of integer and fraction, and the power of ten of the
        // last one.
        let bytes = self.bytes;
        let all = bytes[integer.0..integer.1]
            .iter()
            .chain(&bytes[fraction.0..fraction.1]);
        let total = (integer.1 - integer.0) + (fraction.1 - fraction.0);
        let Some(lead) = all.clone().position(|&d| d != b'0') else {
            out.push(b'0');
            return Ok(());
        };
        let trailing = all.clone().rev().take_while(|&&d| d == b'0').count();
        let fraction_len =
            i64::try_from(fraction.1 - fraction.0).map_err(|_| self.error("number too long"))?;
        let trailing_len = i64::try_from(trailing).map_err(|_| self.error("number too long"))?;
        let power = exponent
            .checked_sub(fraction_len)
            .and_then(|p| p.checked_add(trailing_len))
            .ok_or_else(|| self.error("exponent out of range"))?;
        if negative {
            out.push(b'-');
        }
        out.extend(all.skip(lead).take(total - lead - trailing));
        if power != 0 {
            out.push(b'e');
            write_i64(power, out);
        }
        Ok(())
    }
}

/// Writes `c` as it stands in a canonical string.
fn write_char(c: char, out: &mut Vec<u8>) {
    match c {
        '"' => out.extend_from_slice(b"\\\""),
        '\\' => out.extend_from_slice(b"\\\\"),
        '\u{8}' => out.extend_from_slice(b"\\b"),
        '\u{c}' => out.extend_from_slice(b"\\f"),
        '\n' => out.extend_from_slice(b"\\n"),
        '\r' => out.extend_from_slice(b"\\r"),
        '\t' => out.extend_from_slice(b"\\t"),
        '\0'..='\u{1f}' => {
            let b = c as u8;
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        }
        _ => {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
}

/// Writes `n` in decimal without allocating.
fn write_i64(n: i64, out: &mut Vec<u8>) {
    if n < 0 {
        out.push(b'-');
    }
    let mut digits = [0u8; 20];
    let mut rest = n.unsigned_abs();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
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
            ("-12.3400e-2", "-1234e-4"),
            ("1e-9223372036854775807", "1e-9223372036854775807"),
            ("10e9223372036854775806", "1e9223372036854775807"),
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
        // Keys compare without their quotes: "a" before "a!" ('"' would sort after '!').
        assert_eq!(canon(r#"{"a!":2,"a":1}"#), r#"{"a":1,"a!":2}"#);
        assert_eq!(canon(r#"{"a":1,"a!":2}"#), r#"{"a":1,"a!":2}"#);
        assert_eq!(canon("[true, false, null]"), "[true,false,null]");
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
        // Keys are compared in their canonical form, escapes and all.
        assert_eq!(
            canon(r#"{"\u0062":1,"a\n":2,"a":3}"#),
            r#"{"a":3,"a\n":2,"b":1}"#
        );
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
            "10e9223372036854775807",
        ] {
            let mut out = Vec::new();
            assert!(
                canonicalize(text, &mut out).is_err(),
                "{text:?} was accepted"
            );
        }
        let deep = "[".repeat(MAX_DEPTH + 2) + &"]".repeat(MAX_DEPTH + 2);
        assert!(canonicalize(&deep, &mut Vec::new()).is_err());
        // The deepest nesting accepted, in arrays and in objects.
        let deepest = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(canonicalize(&deepest, &mut Vec::new()).is_ok());
        let objects = |n: usize| "{\"a\":".repeat(n) + "1" + &"}".repeat(n);
        assert!(canonicalize(&objects(MAX_DEPTH), &mut Vec::new()).is_ok());
        assert!(canonicalize(&objects(MAX_DEPTH + 1), &mut Vec::new()).is_err());
    }
}
