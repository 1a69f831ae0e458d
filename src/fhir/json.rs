//! Lossless JSON text handling.
//!
//! FHIR decimals keep their exact text (`1.50` is not `1.5`), but `serde_json::Value` stores
//! numbers as binary floats. Every JSON document the server rewrites (stamping `id`/`meta`,
//! `_elements`, pretty printing) therefore goes through [`parse_lossless`] and [`to_text`]:
//! numbers travel as marked strings in between and are written back verbatim.
//! Validation rejects control characters in client strings, so the marker cannot collide.

use serde_json::Value;

/// First character of a string that carries a number's source text.
const NUMBER_MARK: char = '\u{0}';
/// How the marker looks once serialized by serde_json.
const NUMBER_MARK_ESCAPED: &str = "\"\\u0000";

/// Parses JSON text, turning every number into a marked string holding its exact text.
pub fn parse_lossless(text: &str) -> serde_json::Result<Value> {
    let mut marked = String::with_capacity(text.len() + 64);
    let mut tokens = Tokens::new(text);
    let mut last = 0;
    while let Some(token) = tokens.next_token() {
        if let Token::Number(range) = token {
            if !is_json_number(&text[range.clone()]) {
                // Let serde_json describe the syntax error with its position.
                return serde_json::from_str(text);
            }
            marked.push_str(&text[last..range.start]);
            marked.push_str(NUMBER_MARK_ESCAPED);
            marked.push_str(&text[range.clone()]);
            marked.push('"');
            last = range.end;
        }
    }
    marked.push_str(&text[last..]);
    serde_json::from_str(&marked)
}

/// Serializes a value produced by [`parse_lossless`] (or built from it) back to JSON text.
pub fn to_text(value: &Value, pretty: bool) -> String {
    let text = if pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    }
    .expect("serializing a serde_json::Value cannot fail");
    unmark_numbers(&text)
}

/// Re-indents JSON text without reinterpreting any value.
pub fn pretty(text: &str) -> String {
    match parse_lossless(text) {
        Ok(value) => to_text(&value, true),
        Err(_) => text.to_owned(),
    }
}

/// The first key that appears twice in one JSON object, with its location (`name[0].given`);
/// serde_json would silently keep only the last value. Text that is not JSON gives `None`.
pub fn first_duplicate_key(text: &str) -> Option<String> {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

    /// Walks a JSON value; `Err(path)` carries the duplicate found.
    struct Walk(String);

    impl<'de> DeserializeSeed<'de> for Walk {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Walk {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut i = 0;
            while seq
                .next_element_seed(Walk(format!("{}[{i}]", self.0)))?
                .is_some()
            {
                i += 1;
            }
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                let path = if self.0.is_empty() {
                    key.clone()
                } else {
                    format!("{}.{key}", self.0)
                };
                if !seen.insert(key) {
                    return Err(serde::de::Error::custom(format!("\u{1}{path}")));
                }
                map.next_value_seed(Walk(path))?;
            }
            Ok(())
        }
    }

    let mut deserializer = serde_json::Deserializer::from_str(text);
    match Walk(String::new()).deserialize(&mut deserializer) {
        Err(e) => {
            let message = e.to_string();
            let start = message.find('\u{1}')? + 1;
            let end = message[start..]
                .find(" at line")
                .map_or(message.len(), |i| start + i);
            Some(message[start..end].to_owned())
        }
        Ok(()) => None,
    }
}

/// Marks a plain number (for values the server itself writes, e.g. `Bundle.total`).
pub fn number(n: impl std::fmt::Display) -> Value {
    Value::String(format!("{NUMBER_MARK}{n}"))
}

/// The JSON number grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
fn is_json_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    let int_start = i;
    let int_len = digits(&mut i);
    if int_len == 0 || (int_len > 1 && b[int_start] == b'0') {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

fn unmark_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut tokens = Tokens::new(text);
    let mut last = 0;
    while let Some(token) = tokens.next_token() {
        if let Token::String(range) = token {
            let s = &text[range.clone()];
            if s.starts_with(NUMBER_MARK_ESCAPED) {
                out.push_str(&text[last..range.start]);
                out.push_str(&s[NUMBER_MARK_ESCAPED.len()..s.len() - 1]);
                last = range.end;
            }
        }
    }
    out.push_str(&text[last..]);
    out
}

enum Token {
    String(std::ops::Range<usize>),
    Number(std::ops::Range<usize>),
}

/// A minimal scanner that finds string and number tokens in JSON text; other bytes are skipped.
/// It never needs to be a full parser: serde_json validates the text afterwards.
struct Tokens<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Tokens<'a> {
    fn new(text: &'a str) -> Self {
        Tokens {
            bytes: text.as_bytes(),
            pos: 0,
        }
    }

    fn next_token(&mut self) -> Option<Token> {
        while self.pos < self.bytes.len() {
            let start = self.pos;
            match self.bytes[start] {
                b'"' => {
                    self.pos += 1;
                    while self.pos < self.bytes.len() {
                        match self.bytes[self.pos] {
                            b'\\' => self.pos += 2,
                            b'"' => {
                                self.pos += 1;
                                break;
                            }
                            _ => self.pos += 1,
                        }
                    }
                    self.pos = self.pos.min(self.bytes.len());
                    return Some(Token::String(start..self.pos));
                }
                b'-' | b'0'..=b'9' => {
                    while self.pos < self.bytes.len()
                        && matches!(
                            self.bytes[self.pos],
                            b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                        )
                    {
                        self.pos += 1;
                    }
                    return Some(Token::Number(start..self.pos));
                }
                _ => self.pos += 1,
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_their_exact_text() {
        let text = r#"{"a":1.50,"b":[-0.0,1e5,12345678901234567890123],"c":"x\"1.0"}"#;
        let value = parse_lossless(text).unwrap();
        assert_eq!(to_text(&value, false), text);
    }

    #[test]
    fn pretty_printing_keeps_numbers_and_strings() {
        let text = r#"{"a":1.50,"s":"1.50 \\\" \u00e9"}"#;
        let pretty_text = pretty(text);
        assert!(pretty_text.contains("\"a\": 1.50"));
        let reparsed: Value = serde_json::from_str(&pretty_text).unwrap();
        assert_eq!(reparsed["s"], "1.50 \\\" é");
    }

    #[test]
    fn duplicate_keys_are_found_with_their_path() {
        assert_eq!(
            first_duplicate_key(r#"{"a":1,"b":{"c":[{"d":1,"d":2}]}}"#).as_deref(),
            Some("b.c[0].d")
        );
        assert_eq!(
            first_duplicate_key(r#"{"a":1,"a":1}"#).as_deref(),
            Some("a")
        );
        assert_eq!(
            first_duplicate_key(r#"{"a":{"a":1},"b":[{"a":1},{"a":2}]}"#),
            None
        );
    }

    #[test]
    fn server_numbers_are_written_bare() {
        let value = serde_json::json!({"total": number(42)});
        assert_eq!(to_text(&value, false), r#"{"total":42}"#);
    }

    #[test]
    fn invalid_json_is_still_rejected() {
        assert!(parse_lossless("{\"a\":1.2.3}").is_err());
        assert!(parse_lossless("{\"a\":01}").is_err());
        assert!(parse_lossless("{\"a\":1.}").is_err());
        assert!(parse_lossless("{\"a\":-}").is_err());
        assert!(parse_lossless("{\"a\":}").is_err());
    }
}
