//! Index values of a resource for one search parameter, following the FHIR R4 search rules
//! for each datatype (http://hl7.org/fhir/R4/search.html).
//!
//! Values are computed once at write time so that a search compares plain columns. Anything
//! that is not of the expected shape (a malformed date, a number where a string belongs, an
//! object where an array belongs) simply yields no value: indexing never fails a write, and
//! the validator is the one that reports bad content.

use super::registry::{ParamPath, ParamType, SearchParam};
use regex::Regex;
use serde_json::Value;
use std::sync::LazyLock;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// One indexed value. A resource has any number of them per parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexValue {
    /// `normalized` serves the default (starts-with) and `:contains` matches (see
    /// [`normalize`]); `exact` is the text as written, for `:exact`.
    String { normalized: String, exact: String },
    /// `system` is `None` for plain codes, strings, booleans and ContactPoints. `text` (already
    /// normalized) is what `:text` searches: Coding.display, CodeableConcept.text or
    /// Identifier.type.text. `code` is empty on the row carrying a CodeableConcept's own text
    /// (see [`extract`]), so it only ever matches `:text`.
    Token {
        system: Option<String>,
        code: String,
        text: Option<String>,
    },
    /// `[low, high)` in microseconds since the Unix epoch, UTC. An open Period bound is
    /// `i64::MIN` / `i64::MAX`.
    Date { low: i64, high: i64 },
    /// `target_type`/`target_id` are set for references to this server: relative (`Patient/1`)
    /// or absolute on its base URL (also with `/_history/2`). `url` is the reference as
    /// written, so external and contained (`#x`) references match on it alone.
    Reference {
        target_type: Option<String>,
        target_id: Option<String>,
        url: String,
    },
    /// As written: URIs are compared exactly (or by prefix for `:below`).
    Uri(String),
}

/// Key suffix of the rows `identifier:of-type=system|code|value` searches: one per coding of
/// an Identifier's type, with that coding's system and `"{code}|{value}"` as code.
pub const OF_TYPE: &str = ":of-type";
/// Key suffix of the token rows a reference parameter's `:identifier` modifier searches,
/// taken from Reference.identifier.
pub const IDENTIFIER: &str = ":identifier";

/// Canonical URL prefix that Reference.type may carry in front of a resource type.
const DEFINITION_PREFIX: &str = "http://hl7.org/fhir/StructureDefinition/";

/// The `(key, value)` rows of `param` for `resource`. The key is the parameter code, or the
/// code followed by [`OF_TYPE`] or [`IDENTIFIER`] for rows only those modifiers search.
///
/// CodeableConcept gives one token row per coding (text = its display) plus, when it has a
/// `text`, a row with no system, an empty code and that text: a concept written as text alone
/// is still found by `:text`, and the empty code never equals a searched code.
/// ContactPoint gives its value with no system, as the R4 token table says; `phone`/`email`
/// select by ContactPoint.system through the path filter instead.
/// `base_url` is the server's base (`https://host/fhir`), to recognise absolute references
/// to itself. Unsupported parameters give no rows.
pub fn extract(resource: &Value, param: &SearchParam, base_url: &str) -> Vec<(String, IndexValue)> {
    let mut rows = Rows {
        code: &param.code,
        rows: Vec::new(),
    };
    if param.unsupported.is_some() {
        return rows.rows;
    }
    for path in &param.paths {
        let Some(datatype) = path.datatypes.first() else {
            continue;
        };
        for node in nodes(resource, path) {
            match param.kind {
                ParamType::String => strings(node, datatype, &mut rows),
                ParamType::Token => tokens(node, datatype, &mut rows),
                ParamType::Date => dates(node, datatype, &mut rows),
                ParamType::Reference => reference(node, datatype, path, base_url, &mut rows),
                ParamType::Uri => {
                    if let Some(uri) = text(node) {
                        rows.push(IndexValue::Uri(uri.to_owned()));
                    }
                }
                // Not generated for any served type (see `registry_gen::indexable`).
                ParamType::Number
                | ParamType::Quantity
                | ParamType::Composite
                | ParamType::Special => {}
            }
        }
    }
    rows.rows
}

/// Search text in the form every string comparison uses, the same when indexed and when
/// searched: compatibility-decomposed (NFKD: `ﬁ`→`fi`, full-width letters → ASCII), lower case
/// in every script (`ς`→`σ`, `ß`→`ss`), without the diacritics of the combining diacritical
/// mark blocks nor the Arabic and Hebrew vowel marks (`Nguyễn`→`nguyen`, `Ἀθῆναι`→`αθηναι`,
/// `й`→`и`, `مُحَمَّد`→`محمد`; marks that are letters of their script, such as Devanagari vowel
/// signs or the Japanese voicing marks, stay), letters that do not decompose, or decompose to
/// a letter and a spacing mark, spelled as they are read (`œ`→`oe`, `ø`→`o`, `ł`→`l`,
/// `ŀ`→`l`), typographic apostrophes as `'`, recomposed (NFC), whitespace runs collapsed to
/// one space and trimmed. Hyphens and apostrophes stay: `Lévy-Durand` is `levy-durand`.
pub fn normalize(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let mut folded = String::with_capacity(text.len());
    // `Ŀ`/`ŀ` would decompose to `l` and a spacing middle dot: read them `l` first.
    let text = text.chars().map(|c| match c {
        'Ŀ' | 'ŀ' => 'l',
        c => c,
    });
    for c in text.nfkd().flat_map(char::to_lowercase) {
        if is_diacritic(c) {
            continue;
        }
        match fold(c) {
            Some(spelled) => folded.push_str(spelled),
            None => folded.push(c),
        }
    }
    let recomposed: String = folded.nfc().collect();
    recomposed.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Combining marks that are diacritics (accents, cedillas, tildes…, and the optional vowel
/// marks of Arabic and Hebrew) rather than letters.
fn is_diacritic(c: char) -> bool {
    matches!(c,
        '\u{300}'..='\u{36f}'     // Combining Diacritical Marks
        | '\u{591}'..='\u{5bd}' | '\u{5bf}' | '\u{5c1}' | '\u{5c2}' | '\u{5c4}' | '\u{5c5}'
        | '\u{5c7}'               // Hebrew cantillation marks and points (niqqud)
        | '\u{610}'..='\u{61a}' | '\u{64b}'..='\u{65f}' | '\u{670}' // Arabic harakat, small signs
        | '\u{1ab0}'..='\u{1aff}' // … Extended
        | '\u{1dc0}'..='\u{1dff}' // … Supplement
        | '\u{20d0}'..='\u{20ff}' // … for Symbols
        | '\u{fe20}'..='\u{fe2f}' // Combining Half Marks
    )
}

/// How a lower-case letter that has no decomposition is spelled, or a typographic apostrophe.
fn fold(c: char) -> Option<&'static str> {
    Some(match c {
        'æ' => "ae",
        'ð' | 'đ' => "d",
        'ħ' => "h",
        'ı' => "i",
        'ł' => "l",
        'ŋ' => "n",
        'ø' => "o",
        'œ' => "oe",
        'ß' => "ss",
        'ſ' => "s",
        'ŧ' => "t",
        'þ' => "th",
        'ς' => "σ",
        '\u{2018}' | '\u{2019}' | '\u{2bc}' => "'",
        _ => return None,
    })
}

/// The implicit range `[low, high)` of a FHIR date, dateTime or instant, in microseconds since
/// the Unix epoch: `2024` is the whole year, `2024-03-05T10:00` the minute,
/// `2024-03-05T10:00:00.25Z` a hundredth of a second. A time zone offset is applied. Dates
/// alone, and times without an offset (invalid in a resource, allowed in a search value where
/// FHIR leaves the zone to the server), are taken as UTC: one fixed rule keeps the index and
/// the queries consistent whatever the server's own zone. `None` when the text is not such a
/// date or names a day or time that does not exist.
pub fn date_range(text: &str) -> Option<(i64, i64)> {
    static DATE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(concat!(
            r"^(\d{4})(?:-(\d{2})(?:-(\d{2})",
            r"(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$",
        ))
        .expect("the date pattern is valid")
    });
    let parts = DATE.captures(text)?;
    // Two digits each (the pattern says so), or the start of the unit when absent.
    let field = |i: usize, absent: u8| {
        parts
            .get(i)
            .map_or(Some(absent), |m| m.as_str().parse().ok())
    };
    let year: i32 = parts[1].parse().ok()?;
    let month = Month::try_from(field(2, 1)?).ok()?;
    let date = Date::from_calendar_date(year, month, field(3, 1)?).ok()?;
    let (hour, minute, second) = (field(4, 0)?, field(5, 0)?, field(6, 0)?);
    let fraction = parts.get(7).map_or("", |m| m.as_str());
    let nanos = format!("{fraction:0<9}").parse::<u32>().ok()?;
    let time = Time::from_hms_nano(hour, minute, second, nanos).ok()?;
    let offset = match parts.get(8).map(|m| m.as_str()) {
        None | Some("Z") => UtcOffset::UTC,
        Some(zone) => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let hours = zone.get(1..3)?.parse::<i8>().ok()?;
            let minutes = zone.get(4..6)?.parse::<i8>().ok()?;
            // Real offsets run from -12:00 to +14:00; FHIR allows ±14:00 at most.
            if hours > 14 || minutes > 59 || (hours == 14 && minutes > 0) {
                return None;
            }
            UtcOffset::from_hms(sign * hours, sign * minutes, 0).ok()?
        }
    };
    let start = PrimitiveDateTime::new(date, time).assume_offset(offset);
    // The end of year 9999 is past what dates can hold: such a range is open-ended.
    let end = (|| {
        if parts.get(3).is_none() {
            // A year or a month: up to the first day of the next one.
            let (year, month) = match (parts.get(2), month) {
                (None, _) | (Some(_), Month::December) => (year.checked_add(1)?, Month::January),
                (Some(_), month) => (year, month.next()),
            };
            let first = Date::from_calendar_date(year, month, 1).ok()?;
            Some(PrimitiveDateTime::new(first, Time::MIDNIGHT).assume_offset(offset))
        } else {
            let step = match (parts.get(4), parts.get(6)) {
                (None, _) => time::Duration::DAY,
                (Some(_), None) => time::Duration::MINUTE,
                (Some(_), Some(_)) => {
                    let digits = u32::try_from(fraction.len()).ok()?;
                    time::Duration::nanoseconds(10i64.pow(9 - digits))
                }
            };
            start.checked_add(step)
        }
    })();
    let high = end.and_then(|end| micros(end, true)).unwrap_or(i64::MAX);
    Some((micros(start, false)?, high))
}

/// Microseconds since the epoch, rounded down for a low bound and up for a high one (a
/// nanosecond-precise instant still spans at least one microsecond).
fn micros(at: OffsetDateTime, round_up: bool) -> Option<i64> {
    let nanos = at.unix_timestamp_nanos();
    let micros = if round_up {
        (nanos + 999).div_euclid(1000)
    } else {
        nanos.div_euclid(1000)
    };
    i64::try_from(micros).ok()
}

/// Collects the rows of one parameter.
struct Rows<'a> {
    code: &'a str,
    rows: Vec<(String, IndexValue)>,
}

impl Rows<'_> {
    fn push(&mut self, value: IndexValue) {
        self.rows.push((self.code.to_owned(), value));
    }

    fn push_derived(&mut self, suffix: &str, value: IndexValue) {
        self.rows.push((format!("{}{suffix}", self.code), value));
    }
}

/// The values a path reaches, arrays flattened, filtered by the path's `where`.
fn nodes<'a>(resource: &'a Value, path: &ParamPath) -> Vec<&'a Value> {
    let mut current = vec![resource];
    for step in &path.steps {
        current = current
            .into_iter()
            .filter_map(|value| value.get(step))
            .flat_map(|value| match value {
                Value::Array(items) => items.iter().collect(),
                other => vec![other],
            })
            .collect();
    }
    if let Some((property, expected)) = &path.filter {
        current.retain(|value| value.get(property).and_then(text) == Some(expected.as_str()));
    }
    current
}

/// A non-empty JSON string. Strings starting with U+0000 stand for numbers kept losslessly
/// by `fhir::json` and are not text.
fn text(value: &Value) -> Option<&str> {
    value
        .as_str()
        .filter(|s| !s.is_empty() && !s.starts_with('\u{0}'))
}

/// The texts of a property holding a string or an array of strings.
fn texts<'a>(value: &'a Value, property: &str) -> Vec<&'a str> {
    match value.get(property) {
        Some(Value::Array(items)) => items.iter().filter_map(text).collect(),
        Some(other) => text(other).into_iter().collect(),
        None => Vec::new(),
    }
}

fn strings(node: &Value, datatype: &str, rows: &mut Rows) {
    let parts: &[&str] = match datatype {
        "HumanName" => &["family", "given", "prefix", "suffix", "text"],
        "Address" => &[
            "line",
            "city",
            "district",
            "state",
            "postalCode",
            "country",
            "text",
        ],
        _ => &[],
    };
    let values: Vec<&str> = if parts.is_empty() {
        text(node).into_iter().collect()
    } else {
        parts.iter().flat_map(|part| texts(node, part)).collect()
    };
    for exact in values {
        let normalized = normalize(exact);
        if !normalized.is_empty() {
            let exact = exact.to_owned();
            rows.push(IndexValue::String { normalized, exact });
        }
    }
}

fn tokens(node: &Value, datatype: &str, rows: &mut Rows) {
    match datatype {
        "Coding" => coding(node, rows),
        "CodeableConcept" => {
            for each in node
                .get("coding")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                coding(each, rows);
            }
            if let Some(words) = text(&node["text"]) {
                rows.push(token(None, "", Some(words)));
            }
        }
        "Identifier" => {
            let Some(value) = text(&node["value"]) else {
                return;
            };
            rows.push(token(
                text(&node["system"]),
                value,
                text(&node["type"]["text"]),
            ));
            let type_codings = node["type"]["coding"].as_array().into_iter().flatten();
            for type_coding in type_codings {
                if let Some(type_code) = text(&type_coding["code"]) {
                    let code = format!("{type_code}|{value}");
                    let system = text(&type_coding["system"]);
                    rows.push_derived(OF_TYPE, token(system, &code, None));
                }
            }
        }
        "ContactPoint" => {
            if let Some(value) = text(&node["value"]) {
                rows.push(token(None, value, None));
            }
        }
        "boolean" => {
            if let Some(flag) = node.as_bool() {
                rows.push(token(None, if flag { "true" } else { "false" }, None));
            }
        }
        _ => {
            if let Some(code) = text(node) {
                rows.push(token(None, code, None));
            }
        }
    }
}

/// A Coding's row; one with a display but no code is kept for `:text`.
fn coding(node: &Value, rows: &mut Rows) {
    let code = text(&node["code"]);
    let display = text(&node["display"]);
    if code.is_some() || display.is_some() {
        rows.push(token(text(&node["system"]), code.unwrap_or(""), display));
    }
}

fn token(system: Option<&str>, code: &str, words: Option<&str>) -> IndexValue {
    IndexValue::Token {
        system: system.map(str::to_owned),
        code: code.to_owned(),
        text: words.map(normalize).filter(|words| !words.is_empty()),
    }
}

fn dates(node: &Value, datatype: &str, rows: &mut Rows) {
    let mut push = |range: Option<(i64, i64)>| {
        if let Some((low, high)) = range {
            rows.push(IndexValue::Date { low, high });
        }
    };
    match datatype {
        "Period" => push(period(node)),
        "Timing" => {
            for event in node
                .get("event")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                push(text(event).and_then(date_range));
            }
            if let Some(bounds) = node["repeat"].get("boundsPeriod") {
                push(period(bounds));
            }
        }
        _ => push(text(node).and_then(date_range)),
    }
}

/// From the start of `start` to the end of `end`; a missing bound is open, a malformed one
/// (or an end before the start) voids the Period.
fn period(node: &Value) -> Option<(i64, i64)> {
    let bound = |key: &str| match node.get(key) {
        None | Some(Value::Null) => Some(None),
        Some(value) => text(value).and_then(date_range).map(Some),
    };
    let (start, end) = (bound("start")?, bound("end")?);
    if start.is_none() && end.is_none() {
        return None;
    }
    let low = start.map_or(i64::MIN, |(low, _)| low);
    let high = end.map_or(i64::MAX, |(_, high)| high);
    (low < high).then_some((low, high))
}

fn reference(node: &Value, datatype: &str, path: &ParamPath, base_url: &str, rows: &mut Rows) {
    if datatype != "Reference" {
        // canonical, uri, url: a URL to compare, whose target type cannot be told.
        if let (Some(url), None) = (text(node), &path.only_target) {
            rows.push(IndexValue::Reference {
                target_type: None,
                target_id: None,
                url: url.to_owned(),
            });
        }
        return;
    }
    let literal = text(&node["reference"]);
    let local = literal.and_then(|url| local_target(url, base_url));
    if let Some(only) = &path.only_target {
        // Reference.type, then the tail of an external URL, stand in for `resolve() is X`
        // when the reference does not point here; an unknown type never matches.
        let declared = text(&node["type"]).map(|t| t.strip_prefix(DEFINITION_PREFIX).unwrap_or(t));
        let guessed = literal.and_then(external_type);
        let known = local
            .as_ref()
            .map(|(t, _)| t.as_str())
            .or(declared)
            .or(guessed);
        if known != Some(only.as_str()) {
            return;
        }
    }
    if let Some(url) = literal {
        let (target_type, target_id) = local.unzip();
        rows.push(IndexValue::Reference {
            target_type,
            target_id,
            url: url.to_owned(),
        });
    }
    let identifier = &node["identifier"];
    if let Some(value) = text(&identifier["value"]) {
        let words = text(&identifier["type"]["text"]);
        rows.push_derived(IDENTIFIER, token(text(&identifier["system"]), value, words));
    }
}

/// Type and id of a reference to this server: `Patient/1`, `Patient/1/_history/2`, or either
/// behind `base_url`.
fn local_target(reference: &str, base_url: &str) -> Option<(String, String)> {
    let base = base_url.trim_end_matches('/');
    let relative = match reference
        .strip_prefix(base)
        .and_then(|r| r.strip_prefix('/'))
    {
        Some(rest) if !base.is_empty() => rest,
        _ => reference,
    };
    let parts: Vec<&str> = relative.split('/').collect();
    let (resource_type, id) = match parts.as_slice() {
        [resource_type, id] | [resource_type, id, "_history", _] => (*resource_type, *id),
        _ => return None,
    };
    if parts.get(3).is_some_and(|version| !is_id(version)) || !is_type(resource_type) || !is_id(id)
    {
        return None;
    }
    Some((resource_type.to_owned(), id.to_owned()))
}

/// Resource type named by the `…/Type/id` tail of an absolute URL to another server.
fn external_type(url: &str) -> Option<&str> {
    let url = match url.find("/_history/") {
        Some(at) => &url[..at],
        None => url,
    };
    let mut tail = url.rsplit('/');
    let (id, resource_type) = (tail.next()?, tail.next()?);
    (url.contains("://") && is_id(id) && is_type(resource_type)).then_some(resource_type)
}

fn is_type(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name.chars().all(|c| c.is_ascii_alphanumeric())
}

/// The FHIR `id` syntax: 1 to 64 of `A-Z a-z 0-9 - .`.
fn is_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::super::registry::{lookup, params_of, resource_types};
    use super::*;
    use serde_json::json;

    const BASE: &str = "https://carnet.example.fr/fhir";
    const INS_NIR: &str = "urn:oid:1.2.250.1.213.1.4.8";
    const RPPS: &str = "urn:oid:1.2.250.1.71.4.2.1";

    /// Rows of the standard parameter `code` of the resource's type.
    fn rows(resource: &Value, code: &str) -> Vec<(String, IndexValue)> {
        let resource_type = resource["resourceType"].as_str().unwrap();
        let param = lookup(resource_type, code).unwrap_or_else(|| panic!("no {code}"));
        extract(resource, param, BASE)
    }

    fn values(resource: &Value, code: &str) -> Vec<IndexValue> {
        let rows = rows(resource, code);
        assert!(rows.iter().all(|(key, _)| key == code), "{rows:?}");
        rows.into_iter().map(|(_, value)| value).collect()
    }

    fn string(exact: &str) -> IndexValue {
        let normalized = normalize(exact);
        IndexValue::String {
            normalized,
            exact: exact.to_owned(),
        }
    }

    fn token(system: Option<&str>, code: &str, text: Option<&str>) -> IndexValue {
        IndexValue::Token {
            system: system.map(str::to_owned),
            code: code.to_owned(),
            text: text.map(str::to_owned),
        }
    }

    fn reference(target: Option<(&str, &str)>, url: &str) -> IndexValue {
        IndexValue::Reference {
            target_type: target.map(|(t, _)| t.to_owned()),
            target_id: target.map(|(_, id)| id.to_owned()),
            url: url.to_owned(),
        }
    }

    /// Microseconds of a UTC date-time written `2024-03-05T10:00:00Z`.
    fn at(text: &str) -> i64 {
        date_range(text).unwrap().0
    }

    fn range(low: &str, high: &str) -> IndexValue {
        IndexValue::Date {
            low: at(low),
            high: at(high),
        }
    }

    fn patient() -> Value {
        json!({
            "resourceType": "Patient",
            "id": "p1",
            "meta": {
                "lastUpdated": "2024-05-02T08:15:30.123Z",
                "tag": [{
                    "system": "https://carnet.example.fr/tags",
                    "code": "import",
                    "display": "Importé"
                }]
            },
            "identifier": [{
                "system": INS_NIR,
                "value": "279035121518989",
                "type": {
                    "coding": [{
                        "system": "http://interopsante.org/CodeSystem/v2-0203", "code": "INS-NIR"
                    }],
                    "text": "NIR définitif"
                }
            }],
            "active": true,
            "name": [
                {
                    "use": "official", "family": "Lévy-Durand",
                    "given": ["Éloïse", "Françoise"], "prefix": ["Mme"]
                },
                {"use": "maiden", "family": "Œuvray", "text": "Éloïse  Œuvray"}
            ],
            "telecom": [
                {"system": "phone", "value": "+33 6 12 34 56 78", "use": "mobile"},
                {"system": "email", "value": "eloise.levy@example.fr"}
            ],
            "gender": "female",
            "birthDate": "1979-03-05",
            "deceasedBoolean": false,
            "address": [{
                "line": ["12 rue de l’Église", "Bâtiment B"],
                "city": "Saint-Étienne",
                "postalCode": "42000",
                "country": "France"
            }],
            "managingOrganization": {"reference": "Organization/chu-se"}
        })
    }

    fn document() -> Value {
        json!({
            "resourceType": "DocumentReference",
            "id": "d1",
            "status": "current",
            "type": {
                "coding": [{
                    "system": "http://loinc.org", "code": "11488-4", "display": "Consult note"
                }],
                "text": "Compte rendu de consultation"
            },
            "category": [{"text": "Cardiologie"}],
            "subject": {"reference": "Patient/p1"},
            "date": "2024-06-12T09:30:00+02:00",
            "author": [
                {"reference": "Practitioner/dr-moreau"},
                {"reference": "https://carnet.example.fr/fhir/PractitionerRole/pr1/_history/3"},
                {"reference": "https://annuaire.example.org/fhir/Organization/42"},
                {"reference": "#auteur"},
                {"identifier": {"system": RPPS, "value": "10101234567"}, "display": "Dr Zoé Moreau"}
            ],
            "description": "Compte rendu – consultation de cardiologie",
            "content": [{"attachment": {
                "contentType": "application/pdf", "url": "Binary/b1", "language": "fr-FR"
            }}],
            "context": {"period": {"start": "2024-06-01"}}
        })
    }

    #[test]
    fn normalize_folds_case_accents_and_spaces() {
        assert_eq!(normalize("  Lévy-Durand  "), "levy-durand");
        assert_eq!(normalize("Éloïse"), "eloise");
        assert_eq!(normalize("FRANÇOISE"), "francoise");
        assert_eq!(normalize("Œuvray"), "oeuvray");
        assert_eq!(normalize("Lætitia Strauß Øster"), "laetitia strauss oster");
        assert_eq!(normalize("Jean \t\n  Pierre"), "jean pierre");
        assert_eq!(normalize("d’Arc"), "d'arc");
        assert_eq!(normalize("D'ARTAGNAN"), "d'artagnan");
        assert_eq!(normalize("Łódź Ÿvelines Ĳssel"), "lodz yvelines ijssel");
        // Decomposed input (e + combining acute) folds the same way.
        assert_eq!(normalize("E\u{301}loi\u{308}se"), "eloise");
        assert_eq!(normalize("   "), "");
    }

    #[test]
    fn normalize_folds_every_script_by_decomposition() {
        assert_eq!(normalize("Nguyễn Thị Ánh"), "nguyen thi anh");
        assert_eq!(normalize("NGUYỄN"), normalize("nguyen"));
        assert_eq!(
            normalize("Ἀθηνᾶ ΟΔΥΣΣΕΥΣ Οδυσσεύς"),
            "αθηνα οδυσσευσ οδυσσευσ"
        );
        assert_eq!(normalize("Йордан ПЁТР"), "иордан петр");
        assert_eq!(normalize("İlknur Çağlar"), "ilknur caglar");
        assert_eq!(normalize("ﬁlippo ＬＥＶＹ"), "filippo levy");
        assert_eq!(normalize("Đặng Ðoàn"), "dang doan");
        // Marks that are letters of their script stay; syllables are recomposed.
        assert_eq!(normalize("김민준"), "김민준");
        assert_eq!(normalize("がくと"), "がくと");
        assert_eq!(normalize("कुमार"), "कुमार");
        assert_eq!(normalize("محمد"), "محمد");
    }

    /// Arabic vowel signs (harakat, shadda, sukun) and Hebrew points (niqqud) are optional
    /// marks over the letters, written or not from one record to the next: they fold away
    /// like Latin accents, the letters stay.
    #[test]
    fn normalize_drops_arabic_and_hebrew_vowel_marks() {
        assert_eq!(normalize("مُحَمَّد"), "محمد");
        assert_eq!(normalize("فَاطِمَةُ"), normalize("فاطمة"));
        assert_eq!(normalize("אַבְרָהָם"), "אברהם");
        assert_eq!(normalize("ﬠברהם"), "עברהם");
        assert_ne!(normalize("محمد"), normalize("محمود"));
    }

    /// `Ŀ`/`ŀ` decompose (NFKD) to `l` and a middle dot, which is no combining mark: folded
    /// before decomposition, as the Latin table always did, they read `l`.
    #[test]
    fn normalize_folds_l_with_middle_dot_before_decomposing() {
        assert_eq!(normalize("Ŀela Paŀlàs"), "lela pallas");
        assert_eq!(normalize("Ŀ"), normalize("l"));
    }

    #[test]
    fn date_range_follows_the_precision() {
        assert_eq!(
            date_range("2024"),
            Some((at("2024-01-01T00:00:00Z"), at("2025-01-01T00:00:00Z")))
        );
        assert_eq!(
            date_range("2024-02"),
            Some((at("2024-02-01T00:00:00Z"), at("2024-03-01T00:00:00Z")))
        );
        assert_eq!(
            date_range("2024-12"),
            Some((at("2024-12-01T00:00:00Z"), at("2025-01-01T00:00:00Z")))
        );
        assert_eq!(
            date_range("2024-03-05"),
            Some((at("2024-03-05T00:00:00Z"), at("2024-03-06T00:00:00Z")))
        );
        assert_eq!(
            date_range("2024-03-05T10:00"),
            Some((at("2024-03-05T10:00:00Z"), at("2024-03-05T10:01:00Z")))
        );
        let second = at("2024-03-05T10:00:00Z");
        assert_eq!(
            date_range("2024-03-05T10:00:00Z"),
            Some((second, second + 1_000_000))
        );
        assert_eq!(
            date_range("2024-03-05T10:00:00.25Z"),
            Some((second + 250_000, second + 260_000))
        );
        assert_eq!(
            date_range("2024-03-05T10:00:00.123456789Z"),
            Some((second + 123_456, second + 123_457))
        );
        // Offsets are applied; no offset means UTC.
        assert_eq!(
            date_range("2024-03-05T12:00:00+02:00"),
            date_range("2024-03-05T10:00:00Z")
        );
        assert_eq!(
            date_range("2024-03-05T08:30:00-01:30"),
            date_range("2024-03-05T10:00:00Z")
        );
        assert_eq!(
            date_range("2024-03-05T10:00:00"),
            date_range("2024-03-05T10:00:00Z")
        );
        assert_eq!(at("1970-01-01T00:00:00Z"), 0);
        assert_eq!(at("1969-12-31T23:59:59.9999995Z"), -1);
    }

    #[test]
    fn date_range_rejects_what_is_not_a_date() {
        for bad in [
            "",
            "hier",
            "24",
            "2024-3-5",
            "2024-13",
            "2024-02-30",
            "2024-03-05T25:00:00Z",
            "2024-03-05T10:60",
            "2024-03-05T10",
            "2024-03-05 10:00:00",
            "2024-03-05T10:00:00+2",
            "2024-03-05Z",
            "2024-03-05T10:00:00.Z",
            "2024-03-05T10:00:00.1234567890Z",
            "２０２４",
            "2024-03-05T10:00:00+99:00",
            "2024-03-05T10:00:00+25:00",
            "2024-03-05T10:00:00-14:30",
            "2024-03-05T10:00:00+01:75",
        ] {
            assert_eq!(date_range(bad), None, "{bad}");
        }
        // Extremes do not overflow: a range ending after year 9999 is open-ended.
        assert_eq!(date_range("9999").map(|(_, high)| high), Some(i64::MAX));
        assert_eq!(
            date_range("9999-12-31T23:59:59.999999999-14:00").map(|(_, high)| high),
            Some(i64::MAX)
        );
        assert!(date_range("9999-12-31T10:00:00-14:00").is_some());
        assert!(date_range("0000-01-01T00:00:00+14:00").is_some());
    }

    #[test]
    fn strings_from_names_addresses_and_text() {
        let patient = patient();
        assert_eq!(
            values(&patient, "name"),
            [
                "Lévy-Durand",
                "Éloïse",
                "Françoise",
                "Mme",
                "Œuvray",
                "Éloïse  Œuvray"
            ]
            .map(string)
        );
        assert_eq!(
            values(&patient, "family"),
            ["Lévy-Durand", "Œuvray"].map(string)
        );
        assert_eq!(
            values(&patient, "given"),
            ["Éloïse", "Françoise"].map(string)
        );
        let IndexValue::String { normalized, .. } = &values(&patient, "family")[0] else {
            panic!()
        };
        assert_eq!(normalized, "levy-durand");
        assert_eq!(
            values(&patient, "address"),
            [
                "12 rue de l’Église",
                "Bâtiment B",
                "Saint-Étienne",
                "42000",
                "France"
            ]
            .map(string)
        );
        assert_eq!(values(&patient, "address-city"), [string("Saint-Étienne")]);
        assert_eq!(
            values(&document(), "description"),
            [string("Compte rendu – consultation de cardiologie")]
        );
        let list = json!({"resourceType": "List", "note": [{"text": "Liste **révisée**"}]});
        assert_eq!(values(&list, "notes"), [string("Liste **révisée**")]);
    }

    #[test]
    fn identifiers_with_their_type() {
        let rows = rows(&patient(), "identifier");
        assert_eq!(
            rows,
            [
                (
                    "identifier".to_owned(),
                    token(Some(INS_NIR), "279035121518989", Some("nir definitif"))
                ),
                (
                    "identifier:of-type".to_owned(),
                    token(
                        Some("http://interopsante.org/CodeSystem/v2-0203"),
                        "INS-NIR|279035121518989",
                        None
                    )
                ),
            ]
        );
        let no_value = json!({"resourceType": "Patient", "identifier": [{"system": INS_NIR}]});
        assert!(values(&no_value, "identifier").is_empty());
    }

    #[test]
    fn codes_codings_and_concepts() {
        let patient = patient();
        assert_eq!(values(&patient, "gender"), [token(None, "female", None)]);
        assert_eq!(values(&patient, "active"), [token(None, "true", None)]);
        assert_eq!(values(&patient, "_id"), [token(None, "p1", None)]);
        assert_eq!(
            values(&patient, "_tag"),
            [token(
                Some("https://carnet.example.fr/tags"),
                "import",
                Some("importe")
            )]
        );
        let document = document();
        assert_eq!(
            values(&document, "type"),
            [
                token(Some("http://loinc.org"), "11488-4", Some("consult note")),
                token(None, "", Some("compte rendu de consultation")),
            ]
        );
        // Text alone still answers `:text`.
        assert_eq!(
            values(&document, "category"),
            [token(None, "", Some("cardiologie"))]
        );
        assert_eq!(values(&document, "status"), [token(None, "current", None)]);
        assert_eq!(
            values(&document, "contenttype"),
            [token(None, "application/pdf", None)]
        );
        assert_eq!(values(&document, "language"), [token(None, "fr-FR", None)]);
        let audit = json!({
            "resourceType": "AuditEvent",
            "type": {
                "system": "http://dicom.nema.org/resources/ontology/DCM",
                "code": "110110",
                "display": "Patient Record"
            },
            "agent": [{"altId": "jdupont", "name": "Jean Dupont"}]
        });
        assert_eq!(
            values(&audit, "type"),
            [token(
                Some("http://dicom.nema.org/resources/ontology/DCM"),
                "110110",
                Some("patient record")
            )]
        );
        assert_eq!(values(&audit, "altid"), [token(None, "jdupont", None)]);
        assert_eq!(values(&audit, "agent-name"), [string("Jean Dupont")]);
    }

    #[test]
    fn contact_points_by_system() {
        let patient = patient();
        let phone = token(None, "+33 6 12 34 56 78", None);
        let email = token(None, "eloise.levy@example.fr", None);
        assert_eq!(values(&patient, "telecom"), [phone.clone(), email.clone()]);
        assert_eq!(values(&patient, "phone"), [phone]);
        assert_eq!(values(&patient, "email"), [email]);
        let role = json!({
            "resourceType": "PractitionerRole",
            "telecom": {"system": "phone", "value": "04 77 00 00 00"}
        });
        assert_eq!(
            values(&role, "phone"),
            [token(None, "04 77 00 00 00", None)]
        );
    }

    #[test]
    fn dates_instants_and_periods() {
        let patient = patient();
        assert_eq!(
            values(&patient, "birthdate"),
            [range("1979-03-05T00:00:00Z", "1979-03-06T00:00:00Z")]
        );
        let updated = at("2024-05-02T08:15:30.123Z");
        assert_eq!(
            values(&patient, "_lastUpdated"),
            [IndexValue::Date {
                low: updated,
                high: updated + 1000
            }]
        );
        let document = document();
        assert_eq!(
            values(&document, "date"),
            [range("2024-06-12T07:30:00Z", "2024-06-12T07:30:01Z")]
        );
        // Open end.
        assert_eq!(
            values(&document, "period"),
            [IndexValue::Date {
                low: at("2024-06-01T00:00:00Z"),
                high: i64::MAX
            }]
        );
        let role = |period: Value| json!({"resourceType": "PractitionerRole", "period": period});
        assert_eq!(
            values(&role(json!({"end": "2023-12-31"})), "date"),
            [IndexValue::Date {
                low: i64::MIN,
                high: at("2024-01-01T00:00:00Z")
            }]
        );
        assert_eq!(
            values(&role(json!({"start": "2020-09", "end": "2023"})), "date"),
            [range("2020-09-01T00:00:00Z", "2024-01-01T00:00:00Z")]
        );
        for broken in [
            json!({}),
            json!({"start": "bientôt"}),
            json!({"start": "2024", "end": "2020"}),
            json!("2024"),
        ] {
            assert!(values(&role(broken.clone()), "date").is_empty(), "{broken}");
        }
        let appointment = json!({
            "resourceType": "Appointment",
            "start": "2024-09-16T14:00:00+02:00",
            "end": "2024-09-16T14:30:00+02:00"
        });
        assert_eq!(
            values(&appointment, "date"),
            [range("2024-09-16T12:00:00Z", "2024-09-16T12:00:01Z")]
        );
        let dead =
            json!({"resourceType": "Patient", "deceasedDateTime": "2024-01-15T23:30:00+01:00"});
        assert_eq!(
            values(&dead, "death-date"),
            [range("2024-01-15T22:30:00Z", "2024-01-15T22:30:01Z")]
        );
        assert!(values(&patient, "death-date").is_empty());
    }

    #[test]
    fn timings_give_events_and_bounds() {
        let param = SearchParam {
            code: "when".into(),
            kind: ParamType::Date,
            paths: vec![ParamPath {
                steps: vec!["timing".into()],
                datatypes: vec!["Timing".into()],
                only_target: None,
                filter: None,
            }],
            targets: Vec::new(),
            unsupported: None,
        };
        let resource = json!({"timing": {
            "event": ["2024-03-05T08:00:00+01:00", "pas une date"],
            "repeat": {"boundsPeriod": {"start": "2024-03-01", "end": "2024-03-31"}}
        }});
        let values: Vec<_> = extract(&resource, &param, BASE)
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(
            values,
            [
                range("2024-03-05T07:00:00Z", "2024-03-05T07:00:01Z"),
                range("2024-03-01T00:00:00Z", "2024-04-01T00:00:00Z"),
            ]
        );
    }

    #[test]
    fn references_local_absolute_external_and_by_identifier() {
        let document = document();
        assert_eq!(
            values(&document, "subject"),
            [reference(Some(("Patient", "p1")), "Patient/p1")]
        );
        assert_eq!(
            values(&document, "patient"),
            [reference(Some(("Patient", "p1")), "Patient/p1")]
        );
        let author = "https://carnet.example.fr/fhir/PractitionerRole/pr1/_history/3";
        assert_eq!(
            rows(&document, "author"),
            [
                (
                    "author".to_owned(),
                    reference(
                        Some(("Practitioner", "dr-moreau")),
                        "Practitioner/dr-moreau"
                    )
                ),
                (
                    "author".to_owned(),
                    reference(Some(("PractitionerRole", "pr1")), author)
                ),
                (
                    "author".to_owned(),
                    reference(None, "https://annuaire.example.org/fhir/Organization/42")
                ),
                ("author".to_owned(), reference(None, "#auteur")),
                (
                    "author:identifier".to_owned(),
                    token(Some(RPPS), "10101234567", None)
                ),
            ]
        );
        // A trailing slash on the base changes nothing.
        let param = lookup("DocumentReference", "author").unwrap();
        assert_eq!(
            extract(&document, param, "https://carnet.example.fr/fhir/")[1].1,
            rows(&document, "author")[1].1
        );
        assert_eq!(
            values(&patient(), "organization"),
            [reference(
                Some(("Organization", "chu-se")),
                "Organization/chu-se"
            )]
        );
    }

    #[test]
    fn only_target_keeps_references_of_that_type() {
        let group =
            json!({"resourceType": "DocumentReference", "subject": {"reference": "Group/g1"}});
        assert_eq!(values(&group, "subject").len(), 1);
        assert!(values(&group, "patient").is_empty());
        let appointment = json!({
            "resourceType": "Appointment",
            "participant": [
                {"actor": {"reference": "Patient/p1"}, "status": "accepted"},
                {"actor": {"reference": "Practitioner/dr-moreau"}, "status": "tentative"},
                {
                    "actor": {"reference": "https://annuaire.example.org/fhir/Location/cab-12"},
                    "status": "accepted"
                },
                {
                    "actor": {
                        "type": "Patient",
                        "identifier": {"system": INS_NIR, "value": "279035121518989"}
                    },
                    "status": "accepted"
                }
            ]
        });
        assert_eq!(rows(&appointment, "actor").len(), 4);
        assert_eq!(
            rows(&appointment, "patient"),
            [
                (
                    "patient".to_owned(),
                    reference(Some(("Patient", "p1")), "Patient/p1")
                ),
                (
                    "patient:identifier".to_owned(),
                    token(Some(INS_NIR), "279035121518989", None)
                ),
            ]
        );
        assert_eq!(
            values(&appointment, "practitioner"),
            [reference(
                Some(("Practitioner", "dr-moreau")),
                "Practitioner/dr-moreau"
            )]
        );
        assert_eq!(
            values(&appointment, "location"),
            [reference(
                None,
                "https://annuaire.example.org/fhir/Location/cab-12"
            )]
        );
        assert_eq!(values(&appointment, "part-status").len(), 4);
        let audit = json!({
            "resourceType": "AuditEvent",
            "agent": [
                {"who": {"reference": "Practitioner/dr-moreau"}},
                {"who": {"reference": "Patient/p1"}}
            ],
            "entity": [
                {"what": {"reference": "DocumentReference/d1"}},
                {"what": {"reference": "Patient/p1/_history/4"}}
            ]
        });
        assert_eq!(values(&audit, "agent").len(), 2);
        assert_eq!(values(&audit, "entity").len(), 2);
        assert_eq!(
            values(&audit, "patient"),
            [
                reference(Some(("Patient", "p1")), "Patient/p1"),
                reference(Some(("Patient", "p1")), "Patient/p1/_history/4"),
            ]
        );
        let related =
            json!({"resourceType": "RelatedPerson", "patient": {"reference": "Patient/p1"}});
        assert_eq!(
            values(&related, "patient"),
            [reference(Some(("Patient", "p1")), "Patient/p1")]
        );
    }

    #[test]
    fn canonicals_and_uris() {
        let communication = json!({
            "resourceType": "Communication",
            "instantiatesCanonical": ["https://carnet.example.fr/fhir/Questionnaire/suivi|2.0"],
            "instantiatesUri": ["https://protocoles.example.fr/suivi"],
            "subject": {"reference": "Patient/p1"},
            "sent": "2024-06-12T10:00:00+02:00"
        });
        assert_eq!(
            values(&communication, "instantiates-canonical"),
            [reference(
                None,
                "https://carnet.example.fr/fhir/Questionnaire/suivi|2.0"
            )]
        );
        assert_eq!(
            values(&communication, "instantiates-uri"),
            [IndexValue::Uri(
                "https://protocoles.example.fr/suivi".into()
            )]
        );
        assert_eq!(values(&communication, "patient").len(), 1);
        assert_eq!(values(&communication, "sent").len(), 1);
        assert_eq!(
            values(&document(), "location"),
            [IndexValue::Uri("Binary/b1".into())]
        );
        let profile = "https://carnet.example.fr/StructureDefinition/consent";
        let profiled = json!({"resourceType": "Consent", "meta": {"profile": [profile]}});
        assert_eq!(
            values(&profiled, "_profile"),
            [IndexValue::Uri(
                "https://carnet.example.fr/StructureDefinition/consent".into()
            )]
        );
    }

    #[test]
    fn wrong_shapes_give_no_value() {
        let odd = json!({
            "resourceType": "Patient",
            "name": "Lévy",
            "birthDate": 1979,
            "gender": ["female"],
            "active": "yes",
            "identifier": [{"system": INS_NIR, "value": "\u{0}279035121518989"}, 12, null],
            "telecom": [{"system": "phone", "value": {"nested": true}}],
            "managingOrganization": "Organization/chu-se",
            "address": [{"line": [1, null, ""], "city": ""}]
        });
        for code in [
            "name",
            "birthdate",
            "active",
            "identifier",
            "telecom",
            "phone",
            "organization",
            "address",
            "_lastUpdated",
        ] {
            assert!(rows(&odd, code).is_empty(), "{code}");
        }
        // An array where one value was expected is still a list of values.
        assert_eq!(values(&odd, "gender"), [token(None, "female", None)]);
        for not_a_resource in [json!(null), json!([]), json!("Patient"), json!(3)] {
            let param = lookup("Patient", "name").unwrap();
            assert!(extract(&not_a_resource, param, BASE).is_empty());
        }
        let unsupported = lookup("Patient", "phonetic").unwrap();
        assert!(extract(&patient(), unsupported, BASE).is_empty());
        let bad_references = json!({"resourceType": "DocumentReference", "author": [
            {"reference": "patient/1"}, {"reference": "Patient/"}, {"reference": "Patient/1/2"},
            {"reference": 7}, {"identifier": {"value": 7}}
        ]});
        assert_eq!(
            values(&bad_references, "author"),
            [
                reference(None, "patient/1"),
                reference(None, "Patient/"),
                reference(None, "Patient/1/2")
            ]
        );
    }

    #[test]
    fn no_parameter_panics_on_odd_shapes() {
        let shapes = [
            json!(null),
            json!(-7.5),
            json!("\u{0}12.50"),
            json!(true),
            json!([]),
            json!([null, 1, "a", {}, [["deep"]]]),
            json!({"start": {"end": 1}, "coding": "x", "reference": ["Patient/1"]}),
        ];
        for resource_type in resource_types() {
            for param in params_of(resource_type) {
                for path in &param.paths {
                    // The odd value at every depth of the path.
                    for depth in 1..=path.steps.len() {
                        for shape in &shapes {
                            let mut value = shape.clone();
                            for step in path.steps[..depth].iter().rev() {
                                value = json!({ step: value });
                            }
                            extract(&value, param, BASE);
                        }
                    }
                }
            }
        }
    }
}
