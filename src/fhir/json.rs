//! Lossless JSON text handling.
//!
//! FHIR decimals keep their exact text (`1.50` is not `1.5`), but `serde_json::Value` stores
//! numbers as binary floats. Every JSON document the server rewrites (stamping `id`/`meta`,
//! `_elements`) therefore goes through [`parse_lossless`] and [`to_text`]:
//! numbers travel as marked strings in between and are written back verbatim.
//! Validation rejects control characters in client strings, so the marker cannot collide with
//! a client's value; [`to_text`] writes any other string starting with it as a plain string.

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
///
/// One pass, straight into the output: a marked string whose rest is a JSON number is written
/// as that bare number; every other string (a server message echoing a client's NUL, say) is
/// written as an escaped string, so the text is valid JSON whatever the value holds. Recursion
/// follows the value's nesting, which intake and patching bound to [`MAX_DEPTH`].
pub fn to_text(value: &Value, pretty: bool) -> String {
    let mut out = String::new();
    write_value(&mut out, value, pretty.then_some(0));
    out
}

/// JSON text indented as [`to_text`] indents a value (two spaces a level, `": "` after a
/// key, empty containers kept as `{}`/`[]`), written from the text itself: one pass, no
/// parsing, so numbers and strings keep their exact text (`_pretty` on stored bodies and on
/// the Bundles written around them), whatever the depth (a parser stops at [`MAX_DEPTH`],
/// and a Bundle nests deeper than its resources). Whitespace outside strings is dropped.
pub fn indent(text: &str) -> String {
    fn newline(out: &mut String, level: usize) {
        out.push('\n');
        out.extend(std::iter::repeat_n("  ", level));
    }
    let mut out = String::with_capacity(text.len() * 2);
    let mut level = 0usize;
    let mut chars = text.chars().peekable();
    let (mut in_string, mut escaped) = (false, false);
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
                match chars.next_if(|&next| next == if c == '{' { '}' } else { ']' }) {
                    Some(close) => out.push(close),
                    None => {
                        level += 1;
                        newline(&mut out, level);
                    }
                }
            }
            '}' | ']' => {
                level = level.saturating_sub(1);
                newline(&mut out, level);
                out.push(c);
            }
            ',' => {
                out.push(',');
                newline(&mut out, level);
            }
            ':' => out.push_str(": "),
            c if c.is_ascii_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// Deepest nesting of arrays and objects in any document the server builds from client
/// input; the same as serde_json's parser recursion limit (128 levels, counting the root).
pub const MAX_DEPTH: usize = 127;

/// How deeply `value` nests arrays and objects (a scalar is 0); stops as soon as the depth
/// passes `limit`. Iterative, so it is safe on any value, however deep.
pub fn depth(value: &Value, limit: usize) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(value, 0)];
    while let Some((value, level)) = pending.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(fields) => Box::new(fields.values()),
            _ => continue,
        };
        deepest = deepest.max(level + 1);
        if deepest > limit {
            break;
        }
        pending.extend(children.map(|child| (child, level + 1)));
    }
    deepest
}

/// Appends `value`; `indent` is the current indentation level when pretty printing.
fn write_value(out: &mut String, value: &Value, indent: Option<usize>) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => match s.strip_prefix(NUMBER_MARK) {
            Some(number) if is_json_number(number) => out.push_str(number),
            _ => write_string(out, s),
        },
        Value::Array(items) => {
            write_container(out, ('[', ']'), items.iter().map(|v| (None, v)), indent)
        }
        Value::Object(fields) => write_container(
            out,
            ('{', '}'),
            fields.iter().map(|(k, v)| (Some(k.as_str()), v)),
            indent,
        ),
    }
}

fn write_container<'a>(
    out: &mut String,
    (open, close): (char, char),
    members: impl ExactSizeIterator<Item = (Option<&'a str>, &'a Value)>,
    indent: Option<usize>,
) {
    out.push(open);
    let empty = members.len() == 0;
    let inner = indent.map(|i| i + 1);
    for (i, (key, value)) in members.enumerate() {
        if i > 0 {
            out.push(',');
        }
        if let Some(level) = inner {
            out.push('\n');
            out.extend(std::iter::repeat_n("  ", level));
        }
        if let Some(key) = key {
            write_string(out, key);
            out.push(':');
            if indent.is_some() {
                out.push(' ');
            }
        }
        write_value(out, value, inner);
    }
    if let (Some(level), false) = (indent, empty) {
        out.push('\n');
        out.extend(std::iter::repeat_n("  ", level));
    }
    out.push(close);
}

/// A JSON string literal: `"` and `\\` escaped, every control character (U+0000–U+001F) as
/// `\n`-style or `\u00XX` escapes; everything else, U+2028/U+2029 included, is valid as is.
pub fn write_string(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let mut last = 0;
    for (i, c) in s.char_indices() {
        let escape = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            '\u{8}' => "\\b",
            '\u{c}' => "\\f",
            c if c < ' ' => "",
            _ => continue,
        };
        out.push_str(&s[last..i]);
        if escape.is_empty() {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push_str(escape);
        }
        last = i + c.len_utf8();
    }
    out.push_str(&s[last..]);
    out.push('"');
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

/// How many elements (values and object members) JSON `text` holds, counted from its
/// structural characters outside strings without parsing; stops counting past `limit`.
/// Exact for valid JSON up to ±1; any text gives some count.
pub fn count_elements(text: &str, limit: usize) -> usize {
    let bytes = text.as_bytes();
    let (mut count, mut i) = (1, 0);
    while i < bytes.len() && count <= limit {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            // A new value follows each of these (an empty container over-counts by one).
            b',' | b'[' | b'{' => count += 1,
            _ => {}
        }
        i += 1;
    }
    count
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

enum Token {
    String,
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
                    return Some(Token::String);
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
        let pretty_text = indent(text);
        assert!(pretty_text.contains("\"a\": 1.50"));
        let reparsed: Value = serde_json::from_str(&pretty_text).unwrap();
        assert_eq!(reparsed["s"], "1.50 \\\" é");
    }

    #[test]
    fn indenting_text_gives_what_indenting_its_value_gives() {
        let texts = [
            r#"{"resourceType":"Patient","a":1.50,"e":[],"o":{},"s":"x\"{[,:]}\\","n":[[],[{}],{"k":[1,2]}]}"#,
            r#"[]"#,
            r#"{"k":"\u0000\n"}"#,
            r#"{ "spaced" : [ 1 , { } ] }"#,
        ];
        for text in texts {
            let value = parse_lossless(text).unwrap();
            assert_eq!(indent(text), to_text(&value, true), "{text}");
        }
        // Deeper than any parser here accepts, still indented.
        let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
        let indented = indent(&deep);
        assert!(indented.contains(&format!("\n{}[]", "  ".repeat(299))));
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

    /// A small deterministic generator (xorshift), enough to explore values without a crate.
    struct Random(u64);

    impl Random {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn string(&mut self) -> String {
            const CHARS: &[char] = &[
                '\u{0}', '\u{1}', '\u{1f}', '\u{7f}', '\n', '\t', '\r', '\u{8}', '\u{c}', '"',
                '\\', '/', 'a', 'é', '1', '.', '-', 'e', '\u{2028}', '\u{2029}', '\u{fffd}', '😀',
            ];
            (0..self.below(8))
                .map(|_| CHARS[self.below(CHARS.len() as u64) as usize])
                .collect()
        }
        fn value(&mut self, depth: usize) -> Value {
            match self.below(if depth > 4 { 4 } else { 6 }) {
                0 => Value::Null,
                1 => Value::Bool(self.below(2) == 0),
                2 => number(self.next() as i64 as f64 / 1000.0),
                3 => Value::String(self.string()),
                4 => Value::Array((0..self.below(4)).map(|_| self.value(depth + 1)).collect()),
                _ => Value::Object(
                    (0..self.below(4))
                        .map(|_| (self.string(), self.value(depth + 1)))
                        .collect(),
                ),
            }
        }
    }

    #[test]
    fn any_value_is_written_as_valid_json_that_reads_back_equal() {
        let mut random = Random(0x9e37_79b9_7f4a_7c15);
        for _ in 0..5_000 {
            let value = random.value(0);
            for pretty in [false, true] {
                let text = to_text(&value, pretty);
                let plain: Result<Value, _> = serde_json::from_str(&text);
                assert!(plain.is_ok(), "not JSON: {text}");
                assert_eq!(parse_lossless(&text).unwrap(), value, "{text}");
            }
        }
    }

    #[test]
    fn the_layout_is_serde_json_s() {
        let mut random = Random(42);
        for _ in 0..2_000 {
            let mut plain = random.value(0);
            unmark(&mut plain);
            assert_eq!(
                to_text(&plain, false),
                serde_json::to_string(&plain).unwrap()
            );
            assert_eq!(
                to_text(&plain, true),
                serde_json::to_string_pretty(&plain).unwrap()
            );
        }
    }

    /// Drops the number marks, turning marked strings into plain ones.
    fn unmark(value: &mut Value) {
        match value {
            Value::String(s) => *s = s.replace(NUMBER_MARK, "?"),
            Value::Array(items) => items.iter_mut().for_each(unmark),
            Value::Object(fields) => fields.values_mut().for_each(unmark),
            _ => {}
        }
    }

    #[test]
    fn strings_that_look_marked_stay_strings() {
        let value =
            serde_json::json!({"a": "\u{0}", "b": "\u{0}1]}", "c": "\u{0}12", "d": "\u{2028}"});
        let text = to_text(&value, false);
        assert_eq!(
            text,
            "{\"a\":\"\\u0000\",\"b\":\"\\u00001]}\",\"c\":12,\"d\":\"\u{2028}\"}"
        );
    }

    #[test]
    fn elements_are_counted_without_parsing() {
        assert_eq!(count_elements("1", 10), 1);
        assert_eq!(count_elements(r#"{"a":[1,2,"x,[{"],"b":{"c":1}}"#, 100), 7);
        assert_eq!(count_elements(&"[".repeat(1000), 10), 11);
    }

    #[test]
    fn depth_counts_nesting_and_stops_early() {
        assert_eq!(depth(&serde_json::json!(1), 10), 0);
        assert_eq!(depth(&serde_json::json!({"a": [1, {"b": []}]}), 10), 4);
        let mut deep = Value::Null;
        for _ in 0..100_000 {
            deep = Value::Array(vec![deep]);
        }
        assert_eq!(depth(&deep, MAX_DEPTH), MAX_DEPTH + 1);
        std::mem::forget(deep); // dropping it would recurse 100,000 levels
    }
}
