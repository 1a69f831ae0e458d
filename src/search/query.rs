//! Search parameters → a typed query: each criterion knows its index table, its modifier and
//! its values, already parsed and normalised, so the SQL side never sees raw client text.
//!
//! Parameters repeat for AND (`date=ge2024&date=lt2025`) and take comma-separated values for OR
//! (`status=current,superseded`); `\,` is a literal comma.

use super::extract::{date_range, normalize};
use super::registry::{lookup, ParamType, SearchParam};
use crate::fhir::outcome::OutcomeIssue;

/// A whole search: criteria (all must hold) and result controls.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    pub resource_type: String,
    pub criteria: Vec<Criterion>,
    pub count: u64,
    /// `_total`; when absent, the first page counts and the next ones do not (a count over a
    /// large result costs more than the page itself); across records, the first page counts
    /// up to [`super::COUNTED_UNASKED`] matches.
    pub total: Option<Total>,
    /// The opaque position of a next page, as the client sent it.
    pub cursor: Option<String>,
    /// `_summary=count`: no entries, only the total.
    pub count_only: bool,
    /// `_summary` / `_elements`, applied to each entry.
    pub summary: Option<String>,
    pub elements: Option<String>,
    /// Parameters ignored under `Prefer: handling=lenient`, for the OperationOutcome.
    pub ignored: Vec<String>,
    /// `_include` and `_revinclude`, in request order.
    pub includes: Vec<Include>,
    /// `_sort` keys before the id, which always breaks ties (ascending unless `_sort` names
    /// `_id`).
    pub sort: Vec<SortKey>,
    pub id_descending: bool,
}

/// One `_sort` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    pub by: SortBy,
    pub descending: bool,
}

/// What a sort key orders by: the resource's own column, or a parameter's values (the lowest
/// for ascending order, the highest for descending, as the specification says).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortBy {
    LastUpdated,
    Param { code: String, kind: ParamType },
}

/// Most `_sort` keys (besides `_id`).
pub const MAX_SORT_KEYS: usize = 3;

/// `_include=Source:param[:Target]` (the resources the page's matches refer to) or
/// `_revinclude=Source:param[:Target]` (the `Source` resources referring to them); with
/// `:iterate` also applied to what was included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    pub reverse: bool,
    pub iterate: bool,
    pub source_type: String,
    pub param: String,
    /// The referred types this include follows (the parameter's targets, or the one named).
    pub target_types: Vec<String>,
}

/// `_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Total {
    None,
    Estimate,
    Accurate,
}

/// One search parameter occurrence: its values are alternatives (OR).
#[derive(Debug, Clone, PartialEq)]
pub struct Criterion {
    /// The index key: the parameter code, or a derived key (`identifier:of-type`).
    pub key: String,
    pub test: Test,
}

/// What the index must contain for a resource to match.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// `:missing`: `true` → no value of the parameter at all.
    Missing {
        kind: ParamType,
        missing: bool,
    },
    String {
        mode: StringMode,
        values: Vec<String>,
    },
    Token {
        negate: bool,
        values: Vec<TokenMatch>,
    },
    /// `:text`: prefix of the normalised display text.
    TokenText(Vec<String>),
    Date(Vec<DateMatch>),
    Reference(Vec<ReferenceMatch>),
    Uri {
        mode: UriMode,
        values: Vec<String>,
    },
    /// `_id`.
    Id(Vec<String>),
    /// `_lastUpdated`, matched on the resource's own column.
    LastUpdated(Vec<DateMatch>),
    /// `patient.identifier=…`: the reference (the criterion's key) points to a resource of one
    /// of these types meeting its criterion.
    Chain(Vec<(String, Box<Criterion>)>),
    /// Any of these criteria (a patient compartment is "any of its reference parameters").
    AnyOf(Vec<Criterion>),
    /// `_has:Type:reference:param=…`: some `Type` resource referring to this one through
    /// `reference` meets `inner`.
    Has {
        source_type: String,
        reference: String,
        inner: Box<Criterion>,
    },
}

/// Chains and `_has` nest at most this deep: enough for real queries, bounded for the planner.
pub const MAX_DEPTH: usize = 3;

/// Most comma-separated alternatives in one parameter.
pub const MAX_VALUES: usize = 100;

/// Most criteria and includes in one search.
pub const MAX_CRITERIA: usize = 50;

/// Most bind parameters the criteria of one search may compile to: far below SQLite's 32766
/// and PostgreSQL's 65535 whatever the shape (chains and `_has` repeat their inner criterion
/// for every target type), and small enough for either planner. Checked on the parsed search,
/// before any SQL is built.
pub const MAX_BINDS: usize = 4000;

/// Most bytes of client values one search may bind (a value bound twice counts twice).
pub const MAX_BOUND_BYTES: usize = 256 * 1024;

/// Most parameters one search takes, those ignored (`handling=lenient`) or empty included:
/// each is parsed once per type a system search covers and may be echoed in a warning.
pub const MAX_PARAMS: usize = 1000;

/// Most bytes of a parameter's name: the longest real one, three `_has` or chain levels with
/// type modifiers, is far shorter. An unknown name is kept to be echoed when ignored, once per
/// type of a system search, so its length must be bounded even when lenient.
pub const MAX_NAME_BYTES: usize = 512;

/// Most bytes of one parameter, name and value, checked before it is parsed (a chain copies
/// its value for each type it may reach).
pub const MAX_PARAM_BYTES: usize = 32 * 1024;

/// Most bytes of the LIKE pattern a `:contains` value becomes (escapes and `%` included):
/// SQLite refuses patterns past 50,000 bytes when it runs them, and folding can lengthen a
/// value many times (`ﷺ` is 18 letters). A 2,700-character value in any script fits.
pub const MAX_CONTAINS_BYTES: usize = 32 * 1024;

/// Most URIs a `:above` value stands for (itself and its path prefixes).
pub const MAX_ABOVE_URIS: usize = 32;

/// What a criterion adds to a compiled query, at most.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    pub binds: usize,
    pub bytes: usize,
}

impl std::ops::Add for Cost {
    type Output = Cost;
    fn add(self, other: Cost) -> Cost {
        Cost {
            binds: self.binds + other.binds,
            bytes: self.bytes + other.bytes,
        }
    }
}

impl Cost {
    fn of(binds: usize, bytes: usize) -> Cost {
        Cost { binds, bytes }
    }

    fn sum<T>(items: &[T], each: impl Fn(&T) -> Cost) -> Cost {
        items.iter().map(each).fold(Cost::default(), |a, b| a + b)
    }
}

/// An upper bound of the binds and bound bytes `criterion` compiles to (`search::sql`): a
/// keyed comparison binds a value at most twice (key and whole value, or a range's two ends),
/// an index probe its type and parameter, each chain target its type and a nested search.
pub fn cost(criterion: &Criterion) -> Cost {
    // An index probe: the resource type and the parameter.
    let probe = Cost::of(2, 128);
    let text = |v: &String| Cost::of(2, 2 * v.len() + 8);
    match &criterion.test {
        Test::Id(ids) => Cost::sum(ids, |id| Cost::of(1, id.len())),
        Test::LastUpdated(dates) => Cost::sum(dates, |_| Cost::of(2, 16)),
        Test::Date(dates) => probe + Cost::sum(dates, |_| Cost::of(2, 16)),
        Test::Missing { .. } => probe,
        Test::String { values, .. } | Test::TokenText(values) => probe + Cost::sum(values, text),
        Test::Token { values, .. } => {
            probe
                + Cost::sum(values, |v| {
                    let system = match &v.system {
                        SystemMatch::Is(system) => text(system),
                        _ => Cost::default(),
                    };
                    system + v.code.as_ref().map_or(Cost::default(), text)
                })
        }
        Test::Reference(references) => {
            probe
                + Cost::sum(references, |r| match r {
                    ReferenceMatch::Local { id, .. } => Cost::of(2, id.len() + 64),
                    ReferenceMatch::Url(url) => text(url),
                })
        }
        Test::Uri { mode, values } => {
            probe
                + Cost::sum(values, |v| match mode {
                    UriMode::Above => Cost::sum(&above(v), |u| text(&(*u).to_owned())),
                    _ => text(v),
                })
        }
        Test::AnyOf(criteria) => Cost::sum(criteria, cost),
        Test::Chain(targets) => {
            probe + Cost::sum(targets, |(_, inner)| Cost::of(2, 128) + cost(inner))
        }
        Test::Has { inner, .. } => Cost::of(4, 256) + cost(inner),
    }
}

/// The URIs a `uri:above` value stands for: its path prefixes cut at each `/` (never a bare
/// scheme or authority-less stub) and itself.
pub fn above(value: &str) -> Vec<&str> {
    let mut uris: Vec<&str> = value
        .char_indices()
        .filter(|(_, c)| *c == '/')
        .map(|(i, _)| &value[..i])
        .filter(|p| !p.is_empty() && !p.ends_with(':') && !p.ends_with('/'))
        .collect();
    uris.push(value);
    uris
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringMode {
    /// Default: starts with, ignoring case and accents.
    Prefix,
    Exact,
    Contains,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriMode {
    Exact,
    /// The value is a prefix of the resource's URI.
    Below,
    /// The resource's URI is a prefix of the value.
    Above,
}

/// Which systems a token value accepts (the same rule as conditional writes).
pub use crate::store::SystemMatch;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenMatch {
    pub system: SystemMatch,
    /// `None` for `system|` (any code of that system).
    pub code: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

/// A date value: its prefix and its implicit range `[low, high)` in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateMatch {
    pub prefix: Prefix,
    pub low: i64,
    pub high: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReferenceMatch {
    /// A resource of this server; `target_type` is `None` for a bare id.
    Local {
        target_type: Option<String>,
        id: String,
    },
    /// Any other reference, compared as written.
    Url(String),
}

/// The reference parameters that put a resource of `resource_type` in a patient's compartment
/// (CompartmentDefinition `patient` of R4, for the types served here).
pub fn patient_compartment_params(resource_type: &str) -> &'static [&'static str] {
    match resource_type {
        "AllergyIntolerance" => &["patient", "recorder", "asserter"],
        "Appointment" => &["actor"],
        "AuditEvent" => &["patient"],
        "Communication" => &["subject", "sender", "recipient"],
        "Consent" => &["patient"],
        "DocumentReference" => &["subject", "author"],
        "List" => &["subject", "source"],
        "Patient" => &["link"],
        "RelatedPerson" => &["patient"],
        _ => &[],
    }
}

/// The key of the criterion [`patient_compartment`] makes (no client parameter has it: the
/// compartment comes from the path).
pub const COMPARTMENT: &str = "_compartment";

/// The criterion "in the compartment of `Patient/{patient_id}`", or `None` when no resource of
/// the type can be. The patient itself belongs to its own compartment.
pub fn patient_compartment(resource_type: &str, patient_id: &str) -> Option<Criterion> {
    let patient = || ReferenceMatch::Local {
        target_type: Some("Patient".to_owned()),
        id: patient_id.to_owned(),
    };
    let mut any: Vec<Criterion> = patient_compartment_params(resource_type)
        .iter()
        .map(|code| Criterion {
            key: (*code).to_owned(),
            test: Test::Reference(vec![patient()]),
        })
        .collect();
    if resource_type == "Patient" {
        any.push(Criterion {
            key: "_id".to_owned(),
            test: Test::Id(vec![patient_id.to_owned()]),
        });
    }
    (!any.is_empty()).then(|| Criterion {
        key: COMPARTMENT.to_owned(),
        test: Test::AnyOf(any),
    })
}

/// Parameters that shape the result rather than select resources.
const RESULT_PARAMS: [&str; 7] = [
    "_count",
    "_total",
    "_cursor",
    "_summary",
    "_elements",
    "_format",
    "_pretty",
];

/// Known parameters this server does not support yet: refused (or ignored when lenient) with
/// this reason rather than silently ignored.
fn not_yet(name: &str) -> Option<&'static str> {
    match name {
        "_contained" | "_containedType" => Some("contained resources are not searched"),
        "_list" | "_query" | "_filter" | "_text" | "_content" | "_type" => {
            Some("this parameter is not supported")
        }
        _ => None,
    }
}

/// Parses `params` for a search on `resource_type`. `strict` refuses unknown or unsupported
/// parameters (the default); lenient ignores them and lists them in [`Search::ignored`].
pub fn parse(
    resource_type: &str,
    params: &[(String, String)],
    strict: bool,
    default_count: u64,
    max_count: u64,
) -> Result<Search, OutcomeIssue> {
    let mut search = Search {
        resource_type: resource_type.to_owned(),
        criteria: Vec::new(),
        count: default_count,
        total: None,
        cursor: None,
        count_only: false,
        summary: None,
        elements: None,
        ignored: Vec::new(),
        includes: Vec::new(),
        sort: Vec::new(),
        id_descending: false,
    };
    if let Some((name, _)) = params.get(MAX_PARAMS) {
        return Err(too_costly(
            &shown(name),
            format!("a search takes at most {MAX_PARAMS} parameters"),
        ));
    }
    let mut spent = Cost::default();
    for (name, value) in params {
        refuse_control_characters(name, value)?;
        if name.len() > MAX_NAME_BYTES {
            return Err(too_costly(
                &shown(name),
                format!("a search parameter name takes at most {MAX_NAME_BYTES} bytes"),
            ));
        }
        if value.is_empty() {
            // "Empty parameters are not an error": the search runs as if it were absent.
            continue;
        }
        // A cursor is the server's own (authenticated) text, as long as the sort values it
        // carries.
        if name != "_cursor" && name.len() + value.len() > MAX_PARAM_BYTES {
            return Err(too_costly(
                name,
                format!("a search parameter takes at most {MAX_PARAM_BYTES} bytes"),
            ));
        }
        if RESULT_PARAMS.contains(&name.as_str()) {
            result_param(&mut search, name, value, max_count)?;
            continue;
        }
        if name == "_sort" {
            if !search.sort.is_empty() || search.id_descending {
                return Err(invalid(name, "_sort is given twice".to_owned()));
            }
            match sort(resource_type, value) {
                Ok((keys, id_descending)) => {
                    search.sort = keys;
                    search.id_descending = id_descending;
                }
                Err(Refusal::Unknown(_)) if !strict => search.ignored.push(name.clone()),
                Err(Refusal::Unknown(issue) | Refusal::Invalid(issue)) => return Err(issue),
            }
            continue;
        }
        if let Some(reverse) = include_kind(name) {
            match include(name, value, reverse) {
                Ok(include) => search.includes.push(include),
                Err(Refusal::Unknown(_)) if !strict => search.ignored.push(name.clone()),
                Err(Refusal::Unknown(issue) | Refusal::Invalid(issue)) => return Err(issue),
            }
            continue;
        }
        match criterion(resource_type, name, value, 0) {
            Ok(criterion) => {
                spent = spent + cost(&criterion);
                if spent.binds > MAX_BINDS || spent.bytes > MAX_BOUND_BYTES {
                    return Err(too_costly(
                        name,
                        format!(
                            "the search is too large to run (at most {MAX_BINDS} values to \
                             compare and {MAX_BOUND_BYTES} bytes of them, chains and _has \
                             counting once per type they reach)"
                        ),
                    ));
                }
                search.criteria.push(criterion)
            }
            Err(Refusal::Unknown(issue)) if !strict => {
                let _ = issue;
                search.ignored.push(name.clone());
            }
            Err(Refusal::Unknown(issue) | Refusal::Invalid(issue)) => return Err(issue),
        }
    }
    if search.criteria.len() + search.includes.len() > MAX_CRITERIA {
        return Err(invalid(
            "_search",
            format!("a search takes at most {MAX_CRITERIA} criteria and includes"),
        ));
    }
    Ok(search)
}

/// `_sort=a,-b`: the keys, and whether `_id` (always the last key) is descending.
fn sort(resource_type: &str, value: &str) -> Result<(Vec<SortKey>, bool), Refusal> {
    let mut keys = Vec::new();
    for item in value.split(',') {
        let (descending, code) = match item.strip_prefix('-') {
            Some(code) => (true, code),
            None => (false, item),
        };
        let by = match code {
            "_id" => return Ok((keys, descending)),
            "_lastUpdated" => SortBy::LastUpdated,
            _ => {
                let param = lookup(resource_type, code)
                    .filter(|p| p.unsupported.is_none())
                    .ok_or_else(|| {
                        unknown(
                            "_sort",
                            format!("{resource_type} has no search parameter `{code}`"),
                        )
                    })?;
                match param.kind {
                    ParamType::String
                    | ParamType::Token
                    | ParamType::Date
                    | ParamType::Uri
                    | ParamType::Reference => SortBy::Param {
                        code: code.to_owned(),
                        kind: param.kind,
                    },
                    _ => return Err(unknown("_sort", format!("`{code}` cannot be sorted on"))),
                }
            }
        };
        keys.push(SortKey { by, descending });
        if keys.len() > MAX_SORT_KEYS {
            return Err(Refusal::Invalid(invalid(
                "_sort",
                format!("_sort takes at most {MAX_SORT_KEYS} keys besides _id"),
            )));
        }
    }
    Ok((keys, false))
}

/// `Some(reverse)` for the include parameters.
fn include_kind(name: &str) -> Option<bool> {
    match name {
        "_include" | "_include:iterate" | "_include:recurse" => Some(false),
        "_revinclude" | "_revinclude:iterate" | "_revinclude:recurse" => Some(true),
        _ => None,
    }
}

fn include(name: &str, value: &str, reverse: bool) -> Result<Include, Refusal> {
    let iterate = name.ends_with(":iterate") || name.ends_with(":recurse");
    let mut parts = value.split(':');
    let (Some(source_type), Some(code), target, None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refusal::Invalid(invalid(
            name,
            format!("`{value}` is not Type:parameter or Type:parameter:TargetType"),
        )));
    };
    if code == "*" {
        return Err(unknown(
            name,
            "wildcard includes are not supported".to_owned(),
        ));
    }
    let param = lookup(source_type, code)
        .filter(|p| p.kind == ParamType::Reference && p.unsupported.is_none())
        .ok_or_else(|| {
            unknown(
                name,
                format!("`{code}` is not a reference parameter of {source_type}"),
            )
        })?;
    let target_types: Vec<String> = param
        .targets
        .iter()
        .filter(|t| target.is_none_or(|wanted| wanted == t.as_str()))
        .filter(|t| crate::fhir::registry::lookup(t).is_some())
        .cloned()
        .collect();
    if target_types.is_empty() {
        return Err(unknown(
            name,
            format!("`{value}` refers to no type served here"),
        ));
    }
    Ok(Include {
        reverse,
        iterate,
        source_type: source_type.to_owned(),
        param: code.to_owned(),
        target_types,
    })
}

fn result_param(
    search: &mut Search,
    name: &str,
    value: &str,
    max_count: u64,
) -> Result<(), OutcomeIssue> {
    match name {
        "_count" => {
            let count: u64 = value
                .parse()
                .map_err(|_| invalid(name, format!("_count must be a number, not `{value}`")))?;
            search.count = count.min(max_count);
            if count == 0 {
                search.count_only = true;
            }
        }
        "_total" => {
            search.total = match value {
                "none" => Some(Total::None),
                "estimate" => Some(Total::Estimate),
                "accurate" => Some(Total::Accurate),
                _ => {
                    return Err(invalid(
                        name,
                        "_total must be none, estimate or accurate".to_owned(),
                    ))
                }
            }
        }
        "_cursor" => search.cursor = Some(value.to_owned()),
        "_summary" if value == "count" => search.count_only = true,
        "_summary" => search.summary = Some(value.to_owned()),
        "_elements" => search.elements = Some(value.to_owned()),
        _ => {} // _format and _pretty are read by content negotiation.
    }
    Ok(())
}

/// Control characters have no place in a search: PostgreSQL cannot even compare text holding
/// U+0000, and a name echoed in an OperationOutcome must stay printable. Refused in a name, and
/// in a value unless it is one a FHIR string may hold (tab, carriage return, line feed).
pub fn refuse_control_characters(name: &str, value: &str) -> Result<(), OutcomeIssue> {
    let where_ = if name.chars().any(char::is_control) {
        "name"
    } else if value
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n'))
    {
        "value"
    } else {
        return Ok(());
    };
    Err(invalid(
        &printable(name),
        format!("a search parameter {where_} holds a control character"),
    ))
}

/// A parameter name as an OperationOutcome may echo it: printable, and its start only when
/// it is longer than a real name.
fn shown(name: &str) -> String {
    match name.char_indices().nth(64) {
        Some((end, _)) => format!("{}…", printable(&name[..end])),
        None => printable(name),
    }
}

/// `text` with each control character spelled `\u{…}`, for messages about client input.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c.is_control() {
            true => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            false => out.push(c),
        }
    }
    out
}

enum Refusal {
    /// Unknown or unsupported: ignored when lenient.
    Unknown(OutcomeIssue),
    /// Known but malformed: always refused.
    Invalid(OutcomeIssue),
}

impl Refusal {
    /// The same refusal about `name`: the parameter as the client wrote it, when the refusal
    /// came from the part of a chain or `_has` it was split into.
    fn at(self, name: &str) -> Refusal {
        match self {
            Refusal::Unknown(issue) => Refusal::Unknown(issue.at(name.to_owned())),
            Refusal::Invalid(issue) => Refusal::Invalid(issue.at(name.to_owned())),
        }
    }
}

fn invalid(name: &str, message: String) -> OutcomeIssue {
    OutcomeIssue::error("invalid", message).at(name.to_owned())
}

fn too_costly(name: &str, message: String) -> OutcomeIssue {
    OutcomeIssue::error("too-costly", message).at(name.to_owned())
}

fn unknown(name: &str, message: String) -> Refusal {
    Refusal::Unknown(OutcomeIssue::error("not-supported", message).at(name.to_owned()))
}

fn criterion(
    resource_type: &str,
    name: &str,
    value: &str,
    depth: usize,
) -> Result<Criterion, Refusal> {
    if depth > MAX_DEPTH {
        return Err(Refusal::Invalid(invalid(
            name,
            format!("chains and _has nest at most {MAX_DEPTH} levels"),
        )));
    }
    if let Some(rest) = name.strip_prefix("_has:") {
        return has(resource_type, name, rest, value, depth);
    }
    if let Some((reference, rest)) = name.split_once('.') {
        return chain(resource_type, name, reference, rest, value, depth);
    }
    let (code, modifier) = match name.split_once(':') {
        Some((code, modifier)) => (code, Some(modifier)),
        None => (name, None),
    };
    if let Some(reason) = not_yet(code) {
        return Err(unknown(name, reason.to_owned()));
    }
    let param = lookup(resource_type, code).ok_or_else(|| {
        unknown(
            name,
            format!("{resource_type} has no search parameter `{code}`"),
        )
    })?;
    if let Some(reason) = &param.unsupported {
        return Err(unknown(
            name,
            format!("`{code}` is not supported: {reason}"),
        ));
    }
    let bad = |message: String| Refusal::Invalid(invalid(name, message));
    if value.is_empty() {
        return Err(bad(format!("`{name}` has an empty value")));
    }
    if modifier == Some("missing") {
        let missing = match value {
            "true" => true,
            "false" => false,
            _ => return Err(bad(":missing takes true or false".to_owned())),
        };
        return Ok(Criterion {
            key: code.to_owned(),
            test: Test::Missing {
                kind: param.kind,
                missing,
            },
        });
    }
    let values = split_values(value);
    if values.iter().any(String::is_empty) {
        return Err(bad(format!("`{name}` has an empty alternative")));
    }
    if values.len() > MAX_VALUES {
        return Err(bad(format!(
            "`{name}` has more than {MAX_VALUES} alternatives"
        )));
    }
    // Only tokens give `|` a meaning; elsewhere `\|` is just a `|`.
    let values: Vec<String> = match param.kind {
        ParamType::Token | ParamType::Reference => values,
        _ => values.into_iter().map(|v| v.replace("\\|", "|")).collect(),
    };
    let key = code.to_owned();
    let test = match (code, param.kind) {
        ("_id", _) => {
            no_modifier(name, modifier)?;
            Test::Id(values)
        }
        ("_lastUpdated", _) => {
            no_modifier(name, modifier)?;
            Test::LastUpdated(dates(name, &values)?)
        }
        (_, ParamType::String) => string_test(name, modifier, values)?,
        (_, ParamType::Token) => return token_criterion(name, code, param, modifier, values),
        (_, ParamType::Date) => {
            no_modifier(name, modifier)?;
            Test::Date(dates(name, &values)?)
        }
        (_, ParamType::Reference) => {
            return reference_criterion(name, code, param, modifier, values)
        }
        (_, ParamType::Uri) => {
            let mode = match modifier {
                None => UriMode::Exact,
                Some("below") => UriMode::Below,
                Some("above") => UriMode::Above,
                Some(other) => return Err(bad_modifier(name, other)),
            };
            if mode == UriMode::Above && values.iter().any(|v| above(v).len() > MAX_ABOVE_URIS) {
                return Err(Refusal::Invalid(too_costly(
                    name,
                    format!(":above takes URIs of at most {MAX_ABOVE_URIS} path segments"),
                )));
            }
            Test::Uri { mode, values }
        }
        _ => {
            return Err(unknown(
                name,
                format!("`{code}` has a parameter type this server does not search"),
            ))
        }
    };
    Ok(Criterion { key, test })
}

/// `reference[:Type].rest`: `rest` is a criterion on each type the reference may point to.
fn chain(
    resource_type: &str,
    name: &str,
    reference: &str,
    rest: &str,
    value: &str,
    depth: usize,
) -> Result<Criterion, Refusal> {
    let (code, wanted) = match reference.split_once(':') {
        Some((code, kind)) => (code, Some(kind)),
        None => (reference, None),
    };
    let param = lookup(resource_type, code)
        .filter(|p| p.kind == ParamType::Reference && p.unsupported.is_none())
        .ok_or_else(|| {
            unknown(
                name,
                format!("`{code}` is not a reference parameter of {resource_type}"),
            )
        })?;
    let candidates: Vec<&String> = param
        .targets
        .iter()
        .filter(|t| wanted.is_none_or(|w| w == t.as_str()))
        .filter(|t| crate::fhir::registry::lookup(t).is_some())
        .collect();
    let mut targets = Vec::new();
    for target in candidates {
        // A target type without the chained parameter cannot match; skip it.
        match criterion(target, rest, value, depth + 1) {
            Ok(inner) => targets.push((target.clone(), Box::new(inner))),
            Err(Refusal::Unknown(_)) => continue,
            Err(invalid @ Refusal::Invalid(_)) => return Err(invalid.at(name)),
        }
    }
    if targets.is_empty() {
        return Err(unknown(
            name,
            format!("no type `{reference}` refers to has a search parameter `{rest}`"),
        ));
    }
    Ok(Criterion {
        key: code.to_owned(),
        test: Test::Chain(targets),
    })
}

/// `_has:Type:reference:rest`: `rest` (a parameter, or another `_has:…`) is a criterion on
/// `Type`, whose `reference` must point to the resource.
fn has(
    resource_type: &str,
    name: &str,
    rest: &str,
    value: &str,
    depth: usize,
) -> Result<Criterion, Refusal> {
    let mut parts = rest.splitn(3, ':');
    let (Some(source_type), Some(reference), Some(inner_name)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(Refusal::Invalid(invalid(
            name,
            "_has takes _has:Type:reference:parameter".to_owned(),
        )));
    };
    if crate::fhir::registry::lookup(source_type).is_none() {
        return Err(unknown(name, format!("{source_type} is not served here")));
    }
    let refers = lookup(source_type, reference).is_some_and(|p| {
        p.kind == ParamType::Reference
            && p.unsupported.is_none()
            && p.targets.iter().any(|t| t == resource_type)
    });
    if !refers {
        return Err(unknown(
            name,
            format!("`{reference}` of {source_type} does not refer to {resource_type}"),
        ));
    }
    let inner =
        criterion(source_type, inner_name, value, depth + 1).map_err(|refusal| refusal.at(name))?;
    Ok(Criterion {
        key: "_has".to_owned(),
        test: Test::Has {
            source_type: source_type.to_owned(),
            reference: reference.to_owned(),
            inner: Box::new(inner),
        },
    })
}

fn no_modifier(name: &str, modifier: Option<&str>) -> Result<(), Refusal> {
    match modifier {
        None => Ok(()),
        Some(other) => Err(bad_modifier(name, other)),
    }
}

fn bad_modifier(name: &str, modifier: &str) -> Refusal {
    Refusal::Invalid(invalid(
        name,
        format!("modifier `:{modifier}` does not apply to this parameter"),
    ))
}

fn string_test(name: &str, modifier: Option<&str>, values: Vec<String>) -> Result<Test, Refusal> {
    let mode = match modifier {
        None => StringMode::Prefix,
        Some("exact") => StringMode::Exact,
        Some("contains") => StringMode::Contains,
        Some(other) => return Err(bad_modifier(name, other)),
    };
    let values: Vec<String> = match mode {
        StringMode::Exact => values,
        _ => values.iter().map(|v| normalize(v)).collect(),
    };
    if mode == StringMode::Contains && values.iter().any(|v| like_bytes(v) > MAX_CONTAINS_BYTES) {
        return Err(Refusal::Invalid(too_costly(
            name,
            format!(":contains takes values of at most {MAX_CONTAINS_BYTES} bytes once folded"),
        )));
    }
    Ok(Test::String { mode, values })
}

/// Bytes of the LIKE pattern `%value%` with `%`, `_` and `\` escaped (see `search::sql`).
fn like_bytes(value: &str) -> usize {
    let escapes = value
        .bytes()
        .filter(|b| matches!(b, b'%' | b'_' | b'\\'))
        .count();
    value.len() + escapes + 2
}

fn token_criterion(
    name: &str,
    code: &str,
    param: &SearchParam,
    modifier: Option<&str>,
    values: Vec<String>,
) -> Result<Criterion, Refusal> {
    let key = code.to_owned();
    if values.iter().any(|v| v == "|") {
        // Index rows with an empty code carry only a display text: `|` must not find them.
        return Err(Refusal::Invalid(invalid(
            name,
            "a token needs a code or a system".to_owned(),
        )));
    }
    let test = match modifier {
        None => Test::Token {
            negate: false,
            values: values.iter().map(|v| token_match(v)).collect(),
        },
        Some("not") => Test::Token {
            negate: true,
            values: values.iter().map(|v| token_match(v)).collect(),
        },
        Some("text") => Test::TokenText(values.iter().map(|v| normalize(v)).collect()),
        Some("of-type")
            if param
                .paths
                .iter()
                .any(|p| p.datatypes.iter().any(|d| d == "Identifier")) =>
        {
            // system|type-code|value: the index keeps `type-code|value` as the code.
            let mut matches = Vec::new();
            for value in &values {
                let parts = split_pipes(value, 3);
                let [system, type_code, identifier] = &parts[..] else {
                    return Err(Refusal::Invalid(invalid(
                        name,
                        ":of-type takes system|code|value".to_owned(),
                    )));
                };
                if type_code.is_empty() || identifier.is_empty() {
                    return Err(Refusal::Invalid(invalid(
                        name,
                        ":of-type takes system|code|value".to_owned(),
                    )));
                }
                matches.push(TokenMatch {
                    system: if system.is_empty() {
                        SystemMatch::Any
                    } else {
                        SystemMatch::Is(system.to_owned())
                    },
                    code: Some(format!("{type_code}|{identifier}")),
                });
            }
            return Ok(Criterion {
                key: format!("{code}:of-type"),
                test: Test::Token {
                    negate: false,
                    values: matches,
                },
            });
        }
        Some(other) => return Err(bad_modifier(name, other)),
    };
    Ok(Criterion { key, test })
}

/// `code`, `|code`, `system|code`, `system|`; `\|` is a `|` inside the system or code.
fn token_match(value: &str) -> TokenMatch {
    let parts = split_pipes(value, 2);
    match parts.as_slice() {
        [system, code] if system.is_empty() => TokenMatch {
            system: SystemMatch::Absent,
            code: Some(code.clone()),
        },
        [system, code] if code.is_empty() => TokenMatch {
            system: SystemMatch::Is(system.clone()),
            code: None,
        },
        [system, code, ..] => TokenMatch {
            system: SystemMatch::Is(system.clone()),
            code: Some(code.clone()),
        },
        [code] => TokenMatch {
            system: SystemMatch::Any,
            code: Some(code.clone()),
        },
        [] => TokenMatch {
            system: SystemMatch::Any,
            code: Some(String::new()),
        },
    }
}

/// Splits on unescaped `|` into at most `max` parts (the last keeps any further `|`), and
/// turns each `\|` back into `|`.
fn split_pipes(value: &str, max: usize) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                parts.last_mut().expect("one part").push('|');
                chars.next();
            }
            '|' if parts.len() < max => parts.push(String::new()),
            c => parts.last_mut().expect("one part").push(c),
        }
    }
    parts
}

fn reference_criterion(
    name: &str,
    code: &str,
    param: &SearchParam,
    modifier: Option<&str>,
    values: Vec<String>,
) -> Result<Criterion, Refusal> {
    let target_type = match modifier {
        None => None,
        Some("identifier") => {
            return Ok(Criterion {
                key: format!("{code}:identifier"),
                test: Test::Token {
                    negate: false,
                    values: values.iter().map(|v| token_match(v)).collect(),
                },
            })
        }
        Some(kind) if param.targets.iter().any(|t| t == kind) => Some(kind.to_owned()),
        Some(other) => return Err(bad_modifier(name, other)),
    };
    let mut matches = Vec::new();
    for value in values {
        let reference = match (value.split_once('/'), &target_type) {
            _ if value.contains("://") => ReferenceMatch::Url(value),
            (Some((kind, id)), wanted) if !id.contains('/') => {
                if wanted.as_deref().is_some_and(|w| w != kind) {
                    return Err(Refusal::Invalid(invalid(
                        name,
                        format!(
                            "`{value}` is not a {}",
                            wanted.as_deref().unwrap_or_default()
                        ),
                    )));
                }
                ReferenceMatch::Local {
                    target_type: Some(kind.to_owned()),
                    id: id.to_owned(),
                }
            }
            (None, wanted) => ReferenceMatch::Local {
                target_type: wanted.clone(),
                id: value,
            },
            _ => {
                return Err(Refusal::Invalid(invalid(
                    name,
                    format!("`{value}` is not a reference (Type/id, id or URL)"),
                )))
            }
        };
        matches.push(reference);
    }
    Ok(Criterion {
        key: code.to_owned(),
        test: Test::Reference(matches),
    })
}

fn dates(name: &str, values: &[String]) -> Result<Vec<DateMatch>, Refusal> {
    values
        .iter()
        .map(|value| {
            let (prefix, text) = date_prefix(value);
            let (low, high) = date_range(text).ok_or_else(|| {
                Refusal::Invalid(invalid(
                    name,
                    format!("`{value}` is not a FHIR date, dateTime or instant"),
                ))
            })?;
            Ok(DateMatch { prefix, low, high })
        })
        .collect()
}

fn date_prefix(value: &str) -> (Prefix, &str) {
    let prefixes = [
        ("eq", Prefix::Eq),
        ("ne", Prefix::Ne),
        ("gt", Prefix::Gt),
        ("lt", Prefix::Lt),
        ("ge", Prefix::Ge),
        ("le", Prefix::Le),
        ("sa", Prefix::Sa),
        ("eb", Prefix::Eb),
        ("ap", Prefix::Ap),
    ];
    prefixes
        .iter()
        .find_map(|(text, prefix)| value.strip_prefix(text).map(|rest| (*prefix, rest)))
        .unwrap_or((Prefix::Eq, value))
}

/// Splits on commas not escaped with `\`, and unescapes `\,`, `\|`… back to the character
/// (`\|` is kept escaped for tokens: `|` still separates system and code).
fn split_values(value: &str) -> Vec<String> {
    let mut values = vec![String::new()];
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(',') => values.last_mut().expect("one value").push(','),
                Some('$') => values.last_mut().expect("one value").push('$'),
                Some('\\') => values.last_mut().expect("one value").push('\\'),
                Some(other) => {
                    let last = values.last_mut().expect("one value");
                    last.push('\\');
                    last.push(other);
                }
                None => values.last_mut().expect("one value").push('\\'),
            },
            ',' => values.push(String::new()),
            c => values.last_mut().expect("one value").push(c),
        }
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn one(resource_type: &str, name: &str, value: &str) -> Test {
        let search = parse(resource_type, &params(&[(name, value)]), true, 20, 100).unwrap();
        search.criteria[0].test.clone()
    }

    fn refused(resource_type: &str, name: &str, value: &str) -> OutcomeIssue {
        parse(resource_type, &params(&[(name, value)]), true, 20, 100).unwrap_err()
    }

    #[test]
    fn values_split_on_unescaped_commas() {
        assert_eq!(split_values("a,b\\,c"), vec!["a", "b,c"]);
        assert_eq!(split_values("a\\|b"), vec!["a\\|b"]);
    }

    #[test]
    fn tokens_take_every_system_form() {
        let Test::Token { negate, values } = one(
            "Patient",
            "identifier",
            "urn:oid:1.2.250.1.213.1.4.8|184,|x,sys|",
        ) else {
            panic!()
        };
        assert!(!negate);
        assert_eq!(
            values[0].system,
            SystemMatch::Is("urn:oid:1.2.250.1.213.1.4.8".into())
        );
        assert_eq!(values[0].code.as_deref(), Some("184"));
        assert_eq!(values[1].system, SystemMatch::Absent);
        assert_eq!(values[2].code, None);
        assert!(matches!(
            one("DocumentReference", "status:not", "current"),
            Test::Token { negate: true, .. }
        ));
    }

    #[test]
    fn strings_are_normalised_except_exact() {
        assert_eq!(
            one("Patient", "family", "Lévy"),
            Test::String {
                mode: StringMode::Prefix,
                values: vec!["levy".into()]
            }
        );
        assert_eq!(
            one("Patient", "family:exact", "Lévy"),
            Test::String {
                mode: StringMode::Exact,
                values: vec!["Lévy".into()]
            }
        );
    }

    #[test]
    fn dates_carry_prefix_and_range() {
        let Test::Date(values) = one("DocumentReference", "date", "ge2024-03") else {
            panic!()
        };
        assert_eq!(values[0].prefix, Prefix::Ge);
        assert!(values[0].high > values[0].low);
        assert_eq!(
            refused("DocumentReference", "date", "ge2024-13").code,
            "invalid"
        );
    }

    #[test]
    fn references_take_type_id_bare_id_and_urls() {
        let Test::Reference(values) = one(
            "DocumentReference",
            "subject",
            "Patient/1,2,https://other.example/fhir/Patient/3",
        ) else {
            panic!()
        };
        assert_eq!(
            values[0],
            ReferenceMatch::Local {
                target_type: Some("Patient".into()),
                id: "1".into()
            }
        );
        assert_eq!(
            values[1],
            ReferenceMatch::Local {
                target_type: None,
                id: "2".into()
            }
        );
        assert!(matches!(values[2], ReferenceMatch::Url(_)));
        assert!(matches!(
            one("DocumentReference", "subject:Patient", "7"),
            Test::Reference(v) if v[0] == ReferenceMatch::Local { target_type: Some("Patient".into()), id: "7".into() }
        ));
    }

    #[test]
    fn unknown_and_unsupported_parameters_are_refused_unless_lenient() {
        assert_eq!(refused("Patient", "shoe-size", "42").code, "not-supported");
        assert_eq!(
            refused("Patient", "_sort", "shoe-size").code,
            "not-supported"
        );
        assert_eq!(
            refused("Patient", "_sort", "a,b,c,d,e").code,
            "not-supported"
        );
        let sorted = parse(
            "Patient",
            &params(&[("_sort", "-birthdate,family,-_id")]),
            true,
            20,
            100,
        )
        .unwrap();
        assert_eq!(sorted.sort.len(), 2);
        assert!(sorted.sort[0].descending && !sorted.sort[1].descending && sorted.id_descending);
        assert_eq!(
            refused("Patient", "family:sounds-like", "x")
                .expression
                .as_deref(),
            Some("family:sounds-like")
        );
        let lenient = parse(
            "Patient",
            &params(&[("shoe-size", "42"), ("family", "x")]),
            false,
            20,
            100,
        )
        .unwrap();
        assert_eq!(lenient.ignored, vec!["shoe-size"]);
        assert_eq!(lenient.criteria.len(), 1);
        // Malformed values of known parameters are refused even when lenient.
        assert!(parse(
            "Patient",
            &params(&[("birthdate", "yesterday")]),
            false,
            20,
            100
        )
        .is_err());
    }

    #[test]
    fn patient_compartment_params_are_the_official_ones() {
        let Some(dir) =
            crate::fhir::hl7_source::dir("patient_compartment_params_are_the_official_ones")
        else {
            return;
        };
        let path = dir.join("compartmentdefinition-patient.json");
        let definition: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        for resource in definition["resource"].as_array().unwrap() {
            let code = resource["code"].as_str().unwrap();
            if crate::fhir::registry::lookup(code).is_none() {
                continue;
            }
            let official: Vec<&str> = resource["param"]
                .as_array()
                .map(|p| p.iter().map(|v| v.as_str().unwrap()).collect())
                .unwrap_or_default();
            assert_eq!(
                patient_compartment_params(code),
                official.as_slice(),
                "{code}"
            );
        }
    }

    #[test]
    fn escaped_pipes_stay_in_the_code() {
        let Test::Token { values, .. } = one("Patient", "identifier", "urn:s|a\\|b1") else {
            panic!()
        };
        assert_eq!(values[0].system, SystemMatch::Is("urn:s".into()));
        assert_eq!(values[0].code.as_deref(), Some("a|b1"));
        assert_eq!(
            one("Patient", "family", "a\\|b\\,c"),
            Test::String {
                mode: StringMode::Prefix,
                values: vec!["a|b,c".into()]
            }
        );
    }

    #[test]
    fn oversized_searches_and_misplaced_modifiers_are_refused() {
        let many = vec!["x"; MAX_VALUES + 1].join(",");
        assert_eq!(refused("Patient", "identifier", &many).code, "invalid");
        let repeated: Vec<(String, String)> = (0..=MAX_CRITERIA)
            .map(|_| ("name".to_owned(), "a".to_owned()))
            .collect();
        assert!(parse("Patient", &repeated, true, 20, 100).is_err());
        assert_eq!(
            refused("Patient", "gender:of-type", "a|b|c").code,
            "invalid"
        );
        assert!(matches!(
            one("Patient", "identifier:of-type", "http://t|MR|12"),
            Test::Token { .. }
        ));
        // The last representable year is still a year.
        assert!(matches!(
            one("Patient", "_lastUpdated", "ge9999-12-31"),
            Test::LastUpdated(_)
        ));
    }

    #[test]
    fn empty_parameters_are_ignored_and_control_characters_refused() {
        let s = parse(
            "Patient",
            &params(&[("family", ""), ("gender", "female"), ("_sort", "")]),
            true,
            20,
            100,
        )
        .unwrap();
        assert_eq!(s.criteria.len(), 1);
        assert!(s.sort.is_empty());
        let issue = refused("Patient", "family", "a\u{0}");
        assert_eq!(
            (issue.code, issue.expression.as_deref()),
            ("invalid", Some("family"))
        );
        let issue = parse("Patient", &params(&[("\u{1}x", "1")]), false, 20, 100).unwrap_err();
        assert_eq!(issue.expression.as_deref(), Some("\\u{0001}x"));
    }

    #[test]
    fn searches_are_costed_before_they_are_built() {
        let slashes = "/".repeat(MAX_PARAM_BYTES);
        assert_eq!(
            refused("Patient", "_profile:above", &slashes).code,
            "too-costly"
        );
        // A LIKE pattern SQLite would refuse to run: escapes and folding lengthen it.
        for long in ["%".repeat(20_000), "ﷺ".repeat(2_000)] {
            assert_eq!(
                refused("Patient", "family:contains", &long).code,
                "too-costly"
            );
        }
        let deep = format!("http://x.org/{}", "s/".repeat(MAX_ABOVE_URIS));
        let issue = refused("Patient", "_profile:above", &deep);
        assert_eq!(issue.expression.as_deref(), Some("_profile:above"));
        assert_eq!(
            above("http://x.org/a/b"),
            vec!["http://x.org", "http://x.org/a", "http://x.org/a/b"]
        );
        let values = vec!["v"; MAX_VALUES].join(",");
        let many: Vec<(String, String)> = (0..MAX_CRITERIA)
            .map(|_| ("name".to_owned(), values.clone()))
            .collect();
        let issue = parse("Patient", &many, true, 20, 100).unwrap_err();
        assert_eq!(
            (issue.code, issue.expression.as_deref()),
            ("too-costly", Some("name"))
        );
    }

    #[test]
    fn count_is_capped_and_zero_means_count_only() {
        let s = parse("Patient", &params(&[("_count", "500")]), true, 20, 100).unwrap();
        assert_eq!(s.count, 100);
        let s = parse("Patient", &params(&[("_count", "0")]), true, 20, 100).unwrap();
        assert!(s.count_only);
    }
}
