//! What a written resource tells the consent engine, extracted once at write time (model.rs
//! says why): its visibility labels, authors and document classes, a Consent's directives, a
//! Patient's record, a RelatedPerson's ward. Pure functions of validated FHIR R4 JSON; the
//! rules are documented in docs/consent.md.

use super::model::{Actor, Code, Directive, Guardianship, Labels, Period, Record};
use crate::fhir::resource::is_valid_id;
use crate::store::{AccessRows, RecordRow};
use serde_json::Value;

/// The scope that makes a Consent a privacy directive (the only scope Carnet enforces).
const CONSENT_SCOPE: &str = "http://terminology.hl7.org/CodeSystem/consentscope";
/// Purpose-of-use codes, among them `BTG` (break the glass).
const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";

/// The TRE_A07 labels in `meta.security` and, for a DocumentReference, in
/// `securityLabel[].coding[]`. Codes of other systems (v3-Confidentiality...) are not labels.
pub fn labels_of(resource: &Value) -> Labels {
    let meta = items(resource.pointer("/meta/security"));
    let document = match resource_type(resource) {
        "DocumentReference" => items(resource.get("securityLabel")),
        _ => &[],
    };
    let in_concepts = document.iter().flat_map(|label| items(label.get("coding")));
    meta.iter()
        .chain(in_concepts)
        .filter(|coding| text(coding, "system") == Some(Labels::SYSTEM))
        .filter_map(|coding| {
            let code = text(coding, "code")?;
            Labels::ALL
                .iter()
                .find(|(_, known)| *known == code)
                .map(|(label, _)| *label)
        })
        .fold(Labels::NONE, Labels::union)
}

/// A DocumentReference's class and type codes (`category[].coding[]`, `type.coding[]`), the
/// keys of the profession matrix. Codings without both a system and a code match nothing and
/// are left out; other resource types have none.
pub fn classes_of(resource: &Value) -> Vec<Code> {
    if resource_type(resource) != "DocumentReference" {
        return Vec::new();
    }
    let categories = items(resource.get("category"))
        .iter()
        .flat_map(|category| items(category.get("coding")));
    let types = resource
        .get("type")
        .map_or(&[][..], |kind| items(kind.get("coding")));
    let mut codes = Vec::new();
    for coding in categories.chain(types) {
        if let (Some(system), Some(code)) = (text(coding, "system"), text(coding, "code")) {
            let code = Code {
                system: system.to_owned(),
                code: code.to_owned(),
            };
            if !codes.contains(&code) {
                codes.push(code);
            }
        }
    }
    codes
}

/// The elements through which each clinical type names who wrote it (FHIR R4). Their
/// Practitioners count as the resource's authors: `MASQUE_PS` does not hide it from them.
/// A dotted path descends into a backbone element (`Immunization.performer.actor`).
const AUTHOR_ELEMENTS: &[(&str, &[&str])] = &[
    ("AllergyIntolerance", &["recorder", "asserter"]),
    ("Communication", &["sender"]),
    ("Composition", &["author"]),
    ("Condition", &["recorder", "asserter"]),
    ("DiagnosticReport", &["performer", "resultsInterpreter"]),
    ("DocumentReference", &["author"]),
    ("Immunization", &["performer.actor"]),
    ("List", &["source"]),
    ("MedicationRequest", &["requester"]),
    ("MedicationStatement", &["informationSource"]),
    ("Observation", &["performer"]),
];

/// The Practitioner ids a resource names as its authors ([`AUTHOR_ELEMENTS`]). A reference to
/// a contained PractitionerRole (how IHE MHD feeds carry the author) counts through its
/// `practitioner`. Authors given only by identifier, or outside this server, are not counted:
/// they cannot be matched against a caller, and leaving them out can only hide more.
pub fn authors_of(resource: &Value, base_url: &str) -> Vec<String> {
    let kind = resource_type(resource);
    let Some((_, paths)) = AUTHOR_ELEMENTS.iter().find(|(name, _)| *name == kind) else {
        return Vec::new();
    };
    let mut authors: Vec<String> = Vec::new();
    for path in *paths {
        let mut nodes = vec![resource];
        for step in path.split('.') {
            nodes = nodes
                .into_iter()
                .flat_map(|node| match node.get(step) {
                    Some(Value::Array(values)) => values.iter().collect(),
                    Some(value) => vec![value],
                    None => Vec::new(),
                })
                .collect();
        }
        for reference in nodes {
            if let Some(id) = practitioner_behind(resource, reference, base_url) {
                if !authors.iter().any(|known| known == id) {
                    authors.push(id.to_owned());
                }
            }
        }
    }
    authors
}

/// The Practitioner a Reference designates: directly, or through a contained PractitionerRole.
fn practitioner_behind<'a>(
    resource: &'a Value,
    reference: &'a Value,
    base_url: &str,
) -> Option<&'a str> {
    if let Some(local) = text(reference, "reference").and_then(|r| r.strip_prefix('#')) {
        let role = items(resource.get("contained"))
            .iter()
            .find(|c| text(c, "id") == Some(local) && resource_type(c) == "PractitionerRole")?;
        return practitioner_behind(resource, role.get("practitioner")?, base_url);
    }
    match local_reference(reference, base_url)? {
        ("Practitioner", id) => Some(id),
        _ => None,
    }
}

/// The Binaries a DocumentReference's attachments point to (`content.attachment.url` as
/// `Binary/{id}`, relative or on this server): a Binary is visible through them.
pub fn binaries_of(resource: &Value, base_url: &str) -> Vec<String> {
    if resource_type(resource) != "DocumentReference" {
        return Vec::new();
    }
    let mut binaries: Vec<String> = Vec::new();
    for content in items(resource.get("content")) {
        let Some(url) = content.get("attachment").and_then(|a| text(a, "url")) else {
            continue;
        };
        let reference = serde_json::json!({ "reference": url });
        if let Some(("Binary", id)) = local_reference(&reference, base_url) {
            if !binaries.iter().any(|known| known == id) {
                binaries.push(id.to_owned());
            }
        }
    }
    binaries
}

/// Everything the consent engine keeps of a resource besides its row (see
/// [`crate::store::AccessRows`]); a privacy Consent Carnet cannot enforce is an error naming
/// the element at fault (`element: why`).
pub fn access_rows(
    resource_type_name: &str,
    id: &str,
    resource: &Value,
    base_url: &str,
) -> Result<AccessRows, String> {
    let mut rows = AccessRows::default();
    match resource_type_name {
        "Patient" => {
            let record = record_of(resource, id, base_url);
            rows.record = Some(RecordRow {
                active: record.active,
                adult_at: record.adult_at,
            });
            rows.directives = record.directives;
        }
        "Consent" => rows.directives = directives_of(resource, base_url)?,
        "RelatedPerson" => rows.guardian_of = guardian_of(resource, base_url),
        _ => {}
    }
    rows.terms.extend(
        authors_of(resource, base_url)
            .into_iter()
            .map(|id| ("author", id)),
    );
    rows.terms.extend(
        classes_of(resource)
            .into_iter()
            .map(|c| ("class", format!("{}|{}", c.system, c.code))),
    );
    rows.terms.extend(
        binaries_of(resource, base_url)
            .into_iter()
            .map(|id| ("binary", id)),
    );
    Ok(rows)
}

/// The relationships (v3-RoleCode) that make a RelatedPerson a minor's legal representative:
/// a guardian, or a parent (natural or adoptive). Others — an emergency contact, a sibling, a
/// step-parent — act for nobody.
const LEGAL_REPRESENTATIVES: [&str; 10] = [
    "GUARD", "PRN", "NPRN", "MTH", "FTH", "NMTH", "NFTH", "ADOPTP", "ADOPTM", "ADOPTF",
];
const ROLE_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-RoleCode";

/// The patient a RelatedPerson makes its holder a guardian of (`RelatedPerson.patient`), and
/// for when (`RelatedPerson.period`, read as a directive's period is); `None` when the
/// RelatedPerson is inactive, points elsewhere, is not a legal representative
/// ([`LEGAL_REPRESENTATIVES`]), or has a period that never applies. Whether the patient is
/// still a minor is the record's business ([`Record::adult_at`]).
pub fn guardian_of(related_person: &Value, base_url: &str) -> Option<Guardianship> {
    if related_person.get("active").and_then(Value::as_bool) == Some(false) {
        return None;
    }
    let representative = items(related_person.get("relationship"))
        .iter()
        .flat_map(|concept| items(concept.get("coding")))
        .any(|c| {
            text(c, "system") == Some(ROLE_CODE)
                && text(c, "code").is_some_and(|code| LEGAL_REPRESENTATIVES.contains(&code))
        });
    if !representative {
        return None;
    }
    let period = match related_person.get("period") {
        Some(period) => period_of(period, "RelatedPerson.period").ok()?,
        None => Period::ALWAYS,
    };
    match local_reference(related_person.get("patient")?, base_url)? {
        ("Patient", id) => Some(Guardianship {
            minor: id.to_owned(),
            period,
        }),
        _ => None,
    }
}

/// A Patient's record, without the directives of its Consents (the caller adds them): open
/// unless `active` is false, the end of guardianship from `birthDate`, and an authorization
/// for each general practitioner that is a Practitioner of this server (domain §4). A
/// PractitionerRole or Organization as general practitioner authorizes nobody: it names no
/// one person who could be matched against a caller.
pub fn record_of(patient: &Value, patient_id: &str, base_url: &str) -> Record {
    let mut directives = Vec::new();
    for practitioner in items(patient.get("generalPractitioner")) {
        if let Some(("Practitioner", id)) = local_reference(practitioner, base_url) {
            let directive = Directive::Authorize {
                practitioner: id.to_owned(),
                period: Period::ALWAYS,
            };
            if !directives.contains(&directive) {
                directives.push(directive);
            }
        }
    }
    Record {
        patient_id: patient_id.to_owned(),
        active: patient
            .get("active")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        adult_at: text(patient, "birthDate").and_then(clock::adult_at),
        directives,
    }
}

/// The directives of a Consent. Only an `active` Consent of scope patient-privacy has any;
/// other Consents (drafts, treatment or research consents) are `Ok` and empty. An active
/// privacy Consent whose provision Carnet cannot enforce exactly is an error naming the element
/// at fault, so that it is refused rather than stored and ignored.
///
/// Understood shapes (domain §4, IHE PCF), each with an optional `period`:
/// - a provision that is itself a directive: deny with nothing else (opposition), deny naming
///   Practitioners or Organizations (block), deny with purpose BTG (refuse break-glass),
///   permit naming Practitioners (authorize);
/// - a base `permit` with no actor, purpose or period (the record's own rules, IHE PCF's
///   basic opt-in), alone or with nested provisions that are each such a directive.
pub fn directives_of(consent: &Value, base_url: &str) -> Result<Vec<Directive>, String> {
    let privacy = consent
        .get("scope")
        .map(|scope| items(scope.get("coding")))
        .unwrap_or_default()
        .iter()
        .any(|c| {
            text(c, "system") == Some(CONSENT_SCOPE) && text(c, "code") == Some("patient-privacy")
        });
    if text(consent, "status") != Some("active") || !privacy {
        return Ok(Vec::new());
    }
    if consent.get("modifierExtension").is_some() {
        return Err("Consent.modifierExtension: Carnet does not know what it changes, so it cannot enforce this Consent".into());
    }
    if !matches!(
        consent
            .get("patient")
            .and_then(|p| local_reference(p, base_url)),
        Some(("Patient", _))
    ) {
        return Err("Consent.patient: an active patient-privacy Consent must name the patient whose record it rules, as a reference to a Patient of this server (Patient/{id})".into());
    }
    let provision = consent.get("provision").ok_or(
        "Consent.provision: an active patient-privacy Consent must state its rule in provision (Carnet does not enforce policyRule alone)",
    )?;
    let root = Provision::read(provision, "Consent.provision".into(), base_url)?;
    if root.exceptions.is_empty() {
        if root.is_base() {
            return Ok(Vec::new());
        }
        return root.directives();
    }
    if !root.is_base() {
        return Err(format!(
            "Consent.provision.provision: Carnet understands nested provisions only under a base permit without actor, purpose or period; it cannot enforce exceptions to this {}",
            root.rule.name()
        ));
    }
    let mut directives = Vec::new();
    for (i, nested) in root.exceptions.iter().enumerate() {
        let exception = Provision::read(
            nested,
            format!("Consent.provision.provision[{i}]"),
            base_url,
        )?;
        if !exception.exceptions.is_empty() {
            return Err(format!(
                "{}.provision: Carnet does not understand exceptions to exceptions",
                exception.path
            ));
        }
        directives.extend(exception.directives()?);
    }
    Ok(directives)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    Permit,
    Deny,
}

impl Rule {
    fn name(self) -> &'static str {
        match self {
            Rule::Permit => "permit",
            Rule::Deny => "deny",
        }
    }
}

/// Provision elements that narrow a rule to some data or action. Carnet's directives apply to
/// the whole record, so a provision narrowed by any of them cannot be enforced as written.
const NARROWING: &[(&str, &str)] = &[
    ("action", "action"),
    ("securityLabel", "security label"),
    ("class", "resource class"),
    ("code", "code"),
    ("dataPeriod", "data period"),
    ("data", "data reference"),
];

/// One provision, checked and read.
struct Provision<'a> {
    /// Where it is in the Consent, for error messages.
    path: String,
    rule: Rule,
    period: Period,
    actors: Vec<Actor>,
    /// `purpose = BTG` (only that purpose is understood).
    break_glass: bool,
    /// Nested provisions.
    exceptions: &'a [Value],
}

impl<'a> Provision<'a> {
    fn read(value: &'a Value, path: String, base_url: &str) -> Result<Provision<'a>, String> {
        if value.get("modifierExtension").is_some() {
            return Err(format!(
                "{path}.modifierExtension: Carnet does not know what it changes, so it cannot enforce this provision"
            ));
        }
        let rule = match text(value, "type") {
            Some("permit") => Rule::Permit,
            Some("deny") => Rule::Deny,
            _ => {
                return Err(format!(
                    "{path}.type: say permit or deny; Carnet does not guess what a provision means"
                ))
            }
        };
        if let Some((element, what)) = NARROWING.iter().find(|(e, _)| value.get(*e).is_some()) {
            return Err(format!(
                "{path}.{element}: Carnet cannot limit a directive by {what}; its directives cover the whole record"
            ));
        }
        let period = match value.get("period") {
            Some(period) => period_of(period, &format!("{path}.period"))?,
            None => Period::ALWAYS,
        };
        let mut actors = Vec::new();
        for (i, actor) in items(value.get("actor")).iter().enumerate() {
            let at = format!("{path}.actor[{i}].reference");
            let named = actor
                .get("reference")
                .and_then(|r| local_reference(r, base_url));
            actors.push(match (named, rule) {
                (Some(("Practitioner", id)), _) => Actor::Practitioner(id.to_owned()),
                (Some(("Organization", id)), Rule::Deny) => Actor::Organization(id.to_owned()),
                (Some(("Organization", _)), Rule::Permit) => {
                    return Err(format!(
                        "{at}: a permit can only name Practitioners; Carnet authorizes professionals one by one, not a whole Organization"
                    ))
                }
                _ => {
                    let whom = match rule {
                        Rule::Deny => "Practitioner or Organization",
                        Rule::Permit => "Practitioner",
                    };
                    return Err(format!(
                        "{at}: must reference a {whom} of this server (`Practitioner/{{id}}`); Carnet cannot enforce a {} for anyone else",
                        rule.name()
                    ));
                }
            });
        }
        let purposes = items(value.get("purpose"));
        for (i, purpose) in purposes.iter().enumerate() {
            if text(purpose, "system") != Some(ACT_REASON) || text(purpose, "code") != Some("BTG") {
                return Err(format!(
                    "{path}.purpose[{i}]: the only purpose Carnet enforces is break-glass ({ACT_REASON}|BTG), in a deny"
                ));
            }
        }
        if rule == Rule::Permit && !purposes.is_empty() {
            return Err(format!(
                "{path}.purpose: Carnet cannot limit an authorization to a purpose of use"
            ));
        }
        Ok(Provision {
            path,
            rule,
            period,
            actors,
            break_glass: !purposes.is_empty(),
            exceptions: items(value.get("provision")),
        })
    }

    /// The record's own rules, agreed to: a permit that names no one and says nothing else.
    fn is_base(&self) -> bool {
        self.rule == Rule::Permit
            && self.actors.is_empty()
            && !self.break_glass
            && self.period == Period::ALWAYS
    }

    /// The directives of a provision without exceptions.
    fn directives(&self) -> Result<Vec<Directive>, String> {
        let period = self.period;
        match (self.rule, self.actors.is_empty(), self.break_glass) {
            (Rule::Deny, true, false) => Ok(vec![Directive::Opposition { period }]),
            (Rule::Deny, true, true) => Ok(vec![Directive::RefuseBreakGlass { period }]),
            (Rule::Deny, false, false) => Ok(self
                .actors
                .iter()
                .map(|actor| Directive::Block {
                    actor: actor.clone(),
                    period,
                })
                .collect()),
            (Rule::Deny, false, true) => Err(format!(
                "{}: Carnet cannot refuse break-glass to some actors only; block them (a deny naming only the actor) or refuse break-glass to everyone (a deny naming only the purpose)",
                self.path
            )),
            (Rule::Permit, false, _) => Ok(self
                .actors
                .iter()
                .filter_map(|actor| match actor {
                    Actor::Practitioner(id) => Some(Directive::Authorize {
                        practitioner: id.clone(),
                        period,
                    }),
                    // `read` refuses an Organization in a permit.
                    Actor::Organization(_) => None,
                })
                .collect()),
            (Rule::Permit, true, _) => Err(format!(
                "{}.actor: a permit must name the Practitioners it authorizes; Carnet does not open a record to everyone",
                self.path
            )),
        }
    }
}

/// A `provision.period`, its bounds read as [`clock::range`] says. An empty or backward period
/// is refused: it would never apply, which is surely not what its author meant.
fn period_of(period: &Value, path: &str) -> Result<Period, String> {
    let bound = |name: &str| -> Result<Option<(i64, Option<i64>)>, String> {
        match period.get(name) {
            None => Ok(None),
            Some(value) => {
                let written = value.as_str().unwrap_or_default();
                clock::range(written)
                    .map(Some)
                    .ok_or_else(|| format!("{path}.{name}: `{written}` is not a FHIR dateTime"))
            }
        }
    };
    let start = bound("start")?.map(|(first, _)| first);
    // Inclusive in FHIR: the end covers every instant its precision names.
    let end = bound("end")?.and_then(|(_, after)| after);
    if let (Some(start), Some(end)) = (start, end) {
        if end <= start {
            return Err(format!("{path}: end is before start"));
        }
    }
    Ok(Period { start, end })
}

/// The type and id a Reference names on this server: `Practitioner/1` or
/// `{base_url}/Practitioner/1`, a `/_history/{version}` suffix allowed. Contained (`#x`),
/// conditional (`?…`), `urn:` and foreign references, and references by identifier only, name
/// nothing here.
/// The `(type, id)` a Reference names on this server: `Type/id`, `{base_url}/Type/id`, with
/// an optional `/_history/n`; `None` for contained, conditional, `urn:` or foreign ones.
pub fn local_reference<'a>(reference: &'a Value, base_url: &str) -> Option<(&'a str, &'a str)> {
    let written = text(reference, "reference")?;
    let base = base_url.trim_end_matches('/');
    let relative = match written.strip_prefix(base).and_then(|r| r.strip_prefix('/')) {
        Some(relative) => relative,
        None if written.contains(':') => return None,
        None => written,
    };
    let mut parts = relative.split('/');
    let (kind, id) = (parts.next()?, parts.next()?);
    match (parts.next(), parts.next(), parts.next()) {
        (None, _, _) => {}
        (Some("_history"), Some(version), None) if !version.is_empty() => {}
        _ => return None,
    }
    let is_type = kind.starts_with(|c: char| c.is_ascii_uppercase())
        && kind.chars().all(|c| c.is_ascii_alphabetic());
    (is_type && is_valid_id(id)).then_some((kind, id))
}

fn resource_type(resource: &Value) -> &str {
    text(resource, "resourceType").unwrap_or_default()
}

/// A non-empty string property.
fn text<'a>(value: &'a Value, property: &str) -> Option<&'a str> {
    value
        .get(property)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The items of an array property (nothing when absent or not an array).
fn items(value: Option<&Value>) -> &[Value] {
    value.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// FHIR dates and dateTimes as instants. A date or a time without an offset is French civil
/// time (Europe/Paris, from the tz database bundled in the binary, so that every machine agrees
/// whatever its own zone files).
mod clock {
    use regex::Regex;
    use std::sync::LazyLock;
    use time::{Date, Duration, Month, PrimitiveDateTime, Time, UtcOffset};

    static PARIS: LazyLock<jiff::tz::TimeZone> = LazyLock::new(|| {
        jiff::tz::TimeZoneDatabase::bundled()
            .get("Europe/Paris")
            .expect("the bundled tz database has Europe/Paris")
    });

    /// How finely a date or dateTime was written.
    #[derive(Debug, Clone, Copy)]
    enum Precision {
        Year,
        Month,
        Day,
        /// To the second, with this many fraction digits.
        Second(usize),
    }

    /// A FHIR `date` or `dateTime` as written: its first instant in local terms.
    struct Written {
        local: PrimitiveDateTime,
        precision: Precision,
        offset: Option<UtcOffset>,
        /// `:60`, read as the first instant of the next minute.
        leap_second: bool,
    }

    fn parse(text: &str) -> Option<Written> {
        static DATE_TIME: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(concat!(
                r"^(\d{4})(?:-(\d{2})(?:-(\d{2})",
                r"(?:T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})?)?)?)?$",
            ))
            .expect("the dateTime pattern is valid")
        });
        let parts = DATE_TIME.captures(text)?;
        let number = |i: usize, absent: u8| -> Option<u8> {
            parts
                .get(i)
                .map_or(Some(absent), |m| m.as_str().parse().ok())
        };
        let year: i32 = parts[1].parse().ok()?;
        let date =
            Date::from_calendar_date(year, Month::try_from(number(2, 1)?).ok()?, number(3, 1)?)
                .ok()?;
        let fraction = parts.get(7).map_or("", |m| m.as_str());
        // Nanoseconds are as fine as `time` goes; further digits cannot matter to a microsecond.
        let nanos: u32 = format!("{:0<9}", &fraction[..fraction.len().min(9)])
            .parse()
            .ok()?;
        let second = number(6, 0)?;
        let time = Time::from_hms_nano(number(4, 0)?, number(5, 0)?, second.min(59), nanos).ok()?;
        let precision = match (parts.get(2), parts.get(3), parts.get(4)) {
            (None, _, _) => Precision::Year,
            (Some(_), None, _) => Precision::Month,
            (Some(_), Some(_), None) => Precision::Day,
            (Some(_), Some(_), Some(_)) => Precision::Second(fraction.len()),
        };
        let offset = match parts.get(8).map(|m| m.as_str()) {
            None => None,
            Some("Z") => Some(UtcOffset::UTC),
            Some(zone) => {
                let sign: i8 = if zone.starts_with('-') { -1 } else { 1 };
                let hours: i8 = zone[1..3].parse().ok()?;
                let minutes: i8 = zone[4..6].parse().ok()?;
                // FHIR offsets run from -14:00 to +14:00.
                if hours > 14 || minutes > 59 || (hours == 14 && minutes > 0) {
                    return None;
                }
                Some(UtcOffset::from_hms(sign * hours, sign * minutes, 0).ok()?)
            }
        };
        Some(Written {
            local: PrimitiveDateTime::new(date, time),
            precision,
            offset,
            leap_second: second == 60,
        })
    }

    /// Nanoseconds since the epoch of a local time, at `offset` or else in Paris. In Paris, a
    /// time in the hour skipped in spring is read in summer time (02:30 is 03:30), a time in the
    /// hour repeated in autumn as its first occurrence; midnight is never either.
    fn instant(local: PrimitiveDateTime, offset: Option<UtcOffset>) -> Option<i128> {
        if let Some(offset) = offset {
            return Some(local.assume_offset(offset).unix_timestamp_nanos());
        }
        let civil = jiff::civil::DateTime::new(
            i16::try_from(local.year()).ok()?,
            local.month() as i8,
            i8::try_from(local.day()).ok()?,
            i8::try_from(local.hour()).ok()?,
            i8::try_from(local.minute()).ok()?,
            i8::try_from(local.second()).ok()?,
            i32::try_from(local.nanosecond()).ok()?,
        )
        .ok()?;
        Some(PARIS.to_timestamp(civil).ok()?.as_nanosecond())
    }

    /// Microseconds, rounded down (`up` false) or up.
    fn micros(nanos: i128, up: bool) -> Option<i64> {
        let micros = if up {
            (nanos + 999).div_euclid(1000)
        } else {
            nanos.div_euclid(1000)
        };
        i64::try_from(micros).ok()
    }

    /// The instants a date or dateTime covers, `[first, after)` in microseconds since the epoch:
    /// `2026` is the whole year, `2026-03` the month, `2026-03-29` the day (23 hours in Paris
    /// that day), `2026-03-29T10:00:00+02:00` one second. `after` is `None` past year 9999.
    pub fn range(text: &str) -> Option<(i64, Option<i64>)> {
        let written = parse(text)?;
        let leap = if written.leap_second {
            1_000_000_000
        } else {
            0
        };
        let first = instant(written.local, written.offset)? + leap;
        let after = match written.precision {
            Precision::Second(digits) => Some(first + 10i128.pow(9 - digits.min(9) as u32)),
            coarse => next(written.local.date(), coarse)
                .and_then(|date| instant(date.midnight(), written.offset)),
        };
        Some((micros(first, false)?, after.and_then(|a| micros(a, true))))
    }

    /// The first day after the year, month or day that `date` starts.
    fn next(date: Date, precision: Precision) -> Option<Date> {
        match precision {
            Precision::Year => Date::from_calendar_date(date.year() + 1, Month::January, 1).ok(),
            Precision::Month => {
                let last = date.month().length(date.year());
                date.replace_day(last).ok()?.next_day()
            }
            Precision::Day | Precision::Second(_) => date.checked_add(Duration::DAY),
        }
    }

    /// When guardianship ends: 00:00 in Paris on the 18th birthday. A birthDate of only a
    /// year or a month is read as its first possible day: a guardian reads a record only
    /// while the person is certainly a minor (as without a birth date, where guardianship does
    /// not hold at all), so uncertainty ends guardianship early rather than opening an adult's
    /// record to someone else. Someone born on 29 February comes of age on 1 March when the
    /// 18th year has no 29 February.
    pub fn adult_at(birth_date: &str) -> Option<i64> {
        let written = parse(birth_date)?;
        let born = written.local.date();
        let year = born.year() + 18;
        let birthday = Date::from_calendar_date(year, born.month(), born.day())
            .or_else(|_| Date::from_calendar_date(year, Month::March, 1))
            .ok()?;
        micros(instant(birthday.midnight(), None)?, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::format_description::well_known::Rfc3339;
    use time::OffsetDateTime;

    const BASE: &str = "http://127.0.0.1:8080/fhir";

    /// Microseconds since the epoch of an RFC 3339 instant.
    fn at(text: &str) -> i64 {
        let instant = OffsetDateTime::parse(text, &Rfc3339).unwrap();
        i64::try_from(instant.unix_timestamp_nanos() / 1000).unwrap()
    }

    fn privacy(provision: Value) -> Value {
        json!({
            "resourceType": "Consent",
            "status": "active",
            "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": "Patient/p1"},
            "provision": provision,
        })
    }

    fn practitioner(id: &str) -> Actor {
        Actor::Practitioner(id.into())
    }

    fn actor(reference: &str) -> Value {
        json!({"role": {"text": "x"}, "reference": {"reference": reference}})
    }

    fn btg() -> Value {
        json!({"system": ACT_REASON, "code": "BTG"})
    }

    #[test]
    fn labels_come_from_meta_security_and_document_security_labels() {
        let label = |code: &str| json!({"system": Labels::SYSTEM, "code": code});
        let confidentiality = json!({"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"});
        let cases = [
            (json!({"resourceType": "AllergyIntolerance"}), Labels::NONE),
            (
                json!({"resourceType": "AllergyIntolerance", "meta": {"security": [label("MASQUE_PS"), confidentiality.clone()]}}),
                Labels::MASQUE_PS,
            ),
            (
                json!({"resourceType": "DocumentReference", "securityLabel": [{"coding": [confidentiality.clone(), label("INVISIBLE_PATIENT")]}],
                    "meta": {"security": [label("INVISIBLE_REPRESENTANTS_LEGAUX")]}}),
                Labels::INVISIBLE_PATIENT.union(Labels::INVISIBLE_REPRESENTANTS_LEGAUX),
            ),
            // securityLabel is a DocumentReference element: elsewhere it means nothing.
            (
                json!({"resourceType": "List", "securityLabel": [{"coding": [label("MASQUE_PS")]}]}),
                Labels::NONE,
            ),
            // The right code in another system, or an unknown code, is no label.
            (
                json!({"resourceType": "DocumentReference", "securityLabel": [{"coding": [{"system": "urn:other", "code": "MASQUE_PS"}, label("MASQUÉ")]}]}),
                Labels::NONE,
            ),
            (
                json!({"resourceType": "DocumentReference", "meta": {"security": [label("MASQUE_PS"), label("MASQUE_PS")]},
                    "securityLabel": [{"coding": [label("MASQUE_PS")]}, {"coding": [label("INVISIBLE_PATIENT")]}]}),
                Labels::MASQUE_PS.union(Labels::INVISIBLE_PATIENT),
            ),
        ];
        for (resource, expected) in cases {
            assert_eq!(labels_of(&resource), expected, "{resource}");
        }
    }

    #[test]
    fn classes_are_a_documents_category_and_type_codes() {
        let a03 =
            "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument";
        let code = |system: &str, code: &str| Code {
            system: system.into(),
            code: code.into(),
        };
        let cases = [
            (
                json!({"resourceType": "DocumentReference",
                    "category": [{"coding": [{"system": a03, "code": "10"}, {"code": "no-system"}]}, {"coding": [{"system": a03, "code": "11"}]}],
                    "type": {"coding": [{"system": "http://loinc.org", "code": "11488-4"}, {"system": "http://loinc.org"}]}}),
                vec![
                    code(a03, "10"),
                    code(a03, "11"),
                    code("http://loinc.org", "11488-4"),
                ],
            ),
            (
                json!({"resourceType": "DocumentReference", "category": [{"text": "no coding"}],
                    "type": {"coding": [{"system": a03, "code": "10"}]}}),
                vec![code(a03, "10")],
            ),
            (
                json!({"resourceType": "DocumentReference", "category": [{"coding": [{"system": a03, "code": "10"}]}],
                    "type": {"coding": [{"system": a03, "code": "10"}]}}),
                vec![code(a03, "10")],
            ),
            (json!({"resourceType": "DocumentReference"}), vec![]),
            (
                json!({"resourceType": "Composition", "type": {"coding": [{"system": "http://loinc.org", "code": "11488-4"}]}}),
                vec![],
            ),
        ];
        for (resource, expected) in cases {
            assert_eq!(classes_of(&resource), expected, "{resource}");
        }
    }

    #[test]
    fn authors_are_the_practitioners_of_each_types_author_elements() {
        let p = |id: &str| json!({"reference": format!("Practitioner/{id}")});
        let cases = [
            (
                json!({"resourceType": "DocumentReference", "author": [p("a"), {"reference": format!("{BASE}/Practitioner/b")},
                    {"reference": "Organization/o"}, {"reference": "https://elsewhere.example/fhir/Practitioner/c"},
                    {"identifier": {"system": "https://rpps.esante.gouv.fr", "value": "10000000001"}}, p("a")]}),
                vec!["a", "b"],
            ),
            // IHE MHD: the author is a contained PractitionerRole.
            (
                json!({"resourceType": "DocumentReference", "author": [{"reference": "#role"}, {"reference": "#nobody"}, {"reference": "#person"}],
                    "contained": [
                        {"resourceType": "PractitionerRole", "id": "role", "practitioner": {"reference": "Practitioner/r"}},
                        {"resourceType": "Practitioner", "id": "person"}]}),
                vec!["r"],
            ),
            (
                json!({"resourceType": "Communication", "sender": p("s"), "recipient": [p("not-an-author")]}),
                vec!["s"],
            ),
            (
                json!({"resourceType": "AllergyIntolerance", "recorder": p("r"), "asserter": p("a")}),
                vec!["r", "a"],
            ),
            (
                json!({"resourceType": "AllergyIntolerance", "asserter": {"reference": "Patient/p1"}}),
                vec![],
            ),
            (
                json!({"resourceType": "Observation", "performer": [p("o1"), p("o2")]}),
                vec!["o1", "o2"],
            ),
            (
                json!({"resourceType": "Condition", "recorder": p("c")}),
                vec!["c"],
            ),
            (
                json!({"resourceType": "Composition", "author": [p("w")]}),
                vec!["w"],
            ),
            (json!({"resourceType": "List", "source": p("l")}), vec!["l"]),
            (
                json!({"resourceType": "MedicationStatement", "informationSource": p("m")}),
                vec!["m"],
            ),
            (
                json!({"resourceType": "Immunization", "performer": [{"actor": p("i1")}, {"actor": p("i2")}]}),
                vec!["i1", "i2"],
            ),
            (
                json!({"resourceType": "Appointment", "participant": [{"actor": p("x")}]}),
                vec![],
            ),
            // A versioned reference still names the practitioner.
            (
                json!({"resourceType": "Condition", "asserter": {"reference": "Practitioner/v/_history/3"}}),
                vec!["v"],
            ),
        ];
        for (resource, expected) in cases {
            assert_eq!(authors_of(&resource, BASE), expected, "{resource}");
        }
    }

    #[test]
    fn local_references_are_relative_or_under_the_base() {
        let cases = [
            ("Practitioner/1", Some(("Practitioner", "1"))),
            (
                "http://127.0.0.1:8080/fhir/Organization/o-2",
                Some(("Organization", "o-2")),
            ),
            ("Patient/1/_history/4", Some(("Patient", "1"))),
            ("Patient/1/_history/", None),
            ("Patient/1/extra", None),
            ("http://127.0.0.1:8080/fhirx/Patient/1", None),
            ("https://other.example/fhir/Patient/1", None),
            ("urn:uuid:0b1c1e6c-7a2b-4a36-9bd8-6a7d1f1f0c10", None),
            ("Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|1", None),
            ("#contained", None),
            ("patient/1", None),
            ("Patient/..", None),
            ("Patient", None),
        ];
        for (reference, expected) in cases {
            assert_eq!(
                local_reference(&json!({ "reference": reference }), &format!("{BASE}/")),
                expected,
                "{reference}"
            );
        }
    }

    #[test]
    fn a_guardianship_holds_during_its_period() {
        let person = |period: Value| {
            json!({"resourceType": "RelatedPerson", "patient": {"reference": "Patient/child"},
                "relationship": [{"coding": [{"system": ROLE_CODE, "code": "GUARD"}]}],
                "period": period})
        };
        let ended = guardian_of(
            &person(json!({"start": "2018-01-01", "end": "2019-12-31"})),
            BASE,
        )
        .expect("a legal representative");
        assert_eq!(ended.minor, "child");
        // The end day is included: the period ends at the midnight after it, in Paris
        // (2019-12-31T23:00Z).
        assert_eq!(ended.period.end, Some(1_577_833_200_000_000));
        assert!(!ended.period.contains(1_577_833_200_000_000));
        assert!(ended.period.contains(1_577_833_199_999_999));
        let open = guardian_of(&person(json!({"start": "2018-01-01"})), BASE).unwrap();
        assert_eq!(open.period.end, None);
        // A period that never applies makes no guardian.
        let backward = person(json!({"start": "2020-01-01", "end": "2019-01-01"}));
        assert_eq!(guardian_of(&backward, BASE), None);
        let garbled = person(json!({"start": "yesterday"}));
        assert_eq!(guardian_of(&garbled, BASE), None);
    }

    #[test]
    fn guardians_are_active_related_persons_of_a_patient() {
        let role = |code: &str| json!([{"coding": [{"system": ROLE_CODE, "code": code}]}]);
        let cases = [
            (
                json!({"resourceType": "RelatedPerson", "patient": {"reference": "Patient/child"}, "relationship": role("GUARD")}),
                Some("child"),
            ),
            (
                json!({"resourceType": "RelatedPerson", "active": true, "patient": {"reference": format!("{BASE}/Patient/child")}, "relationship": role("MTH")}),
                Some("child"),
            ),
            (
                json!({"resourceType": "RelatedPerson", "active": false, "patient": {"reference": "Patient/child"}, "relationship": role("GUARD")}),
                None,
            ),
            (
                json!({"resourceType": "RelatedPerson", "patient": {"reference": "Group/g"}, "relationship": role("GUARD")}),
                None,
            ),
            (
                json!({"resourceType": "RelatedPerson", "patient": {"identifier": {"value": "x"}}, "relationship": role("GUARD")}),
                None,
            ),
            // An emergency contact, or no relationship at all, represents nobody.
            (
                json!({"resourceType": "RelatedPerson", "patient": {"reference": "Patient/child"}, "relationship": role("ECON")}),
                None,
            ),
            (
                json!({"resourceType": "RelatedPerson", "patient": {"reference": "Patient/child"}}),
                None,
            ),
        ];
        for (person, expected) in cases {
            assert_eq!(
                guardian_of(&person, BASE).map(|g| g.minor).as_deref(),
                expected,
                "{person}"
            );
        }
    }

    #[test]
    fn a_record_is_open_unless_inactive_and_authorizes_its_general_practitioners() {
        let patient = json!({"resourceType": "Patient", "birthDate": "2010-05-04",
            "generalPractitioner": [{"reference": "Practitioner/gp"}, {"reference": "Organization/o"},
                {"reference": "PractitionerRole/r"}, {"reference": format!("{BASE}/Practitioner/gp")}, {"reference": "Practitioner/gp2"}]});
        let record = record_of(&patient, "p1", BASE);
        let authorize = |id: &str| Directive::Authorize {
            practitioner: id.into(),
            period: Period::ALWAYS,
        };
        assert_eq!(
            record,
            Record {
                patient_id: "p1".into(),
                active: true,
                adult_at: Some(at("2028-05-03T22:00:00Z")),
                directives: vec![authorize("gp"), authorize("gp2")],
            }
        );
        let cases = [
            (json!({"resourceType": "Patient"}), (true, None)),
            (
                json!({"resourceType": "Patient", "active": true}),
                (true, None),
            ),
            (
                json!({"resourceType": "Patient", "active": false, "birthDate": "2000"}),
                (false, Some(at("2017-12-31T23:00:00Z"))),
            ),
            (
                json!({"resourceType": "Patient", "_birthDate": {"extension": [{"url": "x", "valueString": "unknown"}]}}),
                (true, None),
            ),
        ];
        for (patient, (active, adult_at)) in cases {
            let record = record_of(&patient, "p", BASE);
            assert_eq!(
                (record.active, record.adult_at),
                (active, adult_at),
                "{patient}"
            );
            assert!(record.directives.is_empty());
        }
    }

    #[test]
    fn adulthood_starts_at_midnight_in_paris_on_the_18th_birthday() {
        let cases = [
            // Winter (UTC+1) and summer (UTC+2) time.
            ("2008-01-15", "2026-01-14T23:00:00Z"),
            ("2008-07-14", "2026-07-13T22:00:00Z"),
            // Last Sundays of March and October 2026: midnight comes before the 02:00/03:00 change.
            ("2008-03-29", "2026-03-28T23:00:00Z"),
            ("2008-03-30", "2026-03-29T22:00:00Z"),
            ("2008-10-25", "2026-10-24T22:00:00Z"),
            ("2008-10-26", "2026-10-25T23:00:00Z"),
            // 29 February: 1 March when the 18th year has none (it never does: 18 is not a multiple of 4).
            ("2008-02-29", "2026-02-28T23:00:00Z"),
            ("2012-02-29", "2030-02-28T23:00:00Z"),
            ("2008-02-28", "2026-02-27T23:00:00Z"),
            ("2008-03-01", "2026-02-28T23:00:00Z"),
            // Partial dates: the earliest possible birthday.
            ("2008", "2025-12-31T23:00:00Z"),
            ("2008-02", "2026-01-31T23:00:00Z"),
            ("2009-02", "2027-01-31T23:00:00Z"),
            ("2008-06", "2026-05-31T22:00:00Z"),
            ("2008-12", "2026-11-30T23:00:00Z"),
            // Before 1996 French summer time ended in September: the tz database knows.
            ("1977-09-30", "1995-09-29T23:00:00Z"),
            ("1977-09-20", "1995-09-19T22:00:00Z"),
        ];
        for (birth_date, expected) in cases {
            assert_eq!(
                clock::adult_at(birth_date),
                Some(at(expected)),
                "{birth_date}"
            );
        }
        for invalid in [
            "",
            "2008-02-30",
            "2008-13",
            "08-01-01",
            "2008-1-1",
            "9999-12-31",
        ] {
            assert_eq!(clock::adult_at(invalid), None, "{invalid}");
        }
    }

    #[test]
    fn dates_cover_their_whole_precision_in_paris_and_date_times_their_offset() {
        let cases = [
            (
                "2026",
                ("2025-12-31T23:00:00Z", Some("2026-12-31T23:00:00Z")),
            ),
            (
                "2026-02",
                ("2026-01-31T23:00:00Z", Some("2026-02-28T23:00:00Z")),
            ),
            (
                "2028-02",
                ("2028-01-31T23:00:00Z", Some("2028-02-29T23:00:00Z")),
            ),
            (
                "2026-12",
                ("2026-11-30T23:00:00Z", Some("2026-12-31T23:00:00Z")),
            ),
            (
                "2026-03",
                ("2026-02-28T23:00:00Z", Some("2026-03-31T22:00:00Z")),
            ),
            // A 23-hour day and a 25-hour day.
            (
                "2026-03-29",
                ("2026-03-28T23:00:00Z", Some("2026-03-29T22:00:00Z")),
            ),
            (
                "2026-10-25",
                ("2026-10-24T22:00:00Z", Some("2026-10-25T23:00:00Z")),
            ),
            // With an offset, the offset rules; the range is the second written.
            (
                "2026-03-29T10:00:00+02:00",
                ("2026-03-29T08:00:00Z", Some("2026-03-29T08:00:01Z")),
            ),
            (
                "2026-03-29T10:00:00Z",
                ("2026-03-29T10:00:00Z", Some("2026-03-29T10:00:01Z")),
            ),
            (
                "2026-03-29T10:00:00.5-03:30",
                ("2026-03-29T13:30:00.5Z", Some("2026-03-29T13:30:00.6Z")),
            ),
            (
                "2026-03-29T10:00:00.123456789Z",
                (
                    "2026-03-29T10:00:00.123456Z",
                    Some("2026-03-29T10:00:00.123457Z"),
                ),
            ),
            (
                "2016-12-31T23:59:60Z",
                ("2017-01-01T00:00:00Z", Some("2017-01-01T00:00:01Z")),
            ),
            // Without an offset (not valid FHIR, read anyway): Paris, the skipped hour as summer time.
            (
                "2026-07-01T12:00:00",
                ("2026-07-01T10:00:00Z", Some("2026-07-01T10:00:01Z")),
            ),
            (
                "2026-03-29T02:30:00",
                ("2026-03-29T01:30:00Z", Some("2026-03-29T01:30:01Z")),
            ),
            (
                "2026-10-25T02:30:00",
                ("2026-10-25T00:30:00Z", Some("2026-10-25T00:30:01Z")),
            ),
            // The end of year 9999 is past what dates hold: open.
            ("9999", ("9998-12-31T23:00:00Z", None)),
        ];
        for (text, (first, after)) in cases {
            assert_eq!(
                clock::range(text),
                Some((at(first), after.map(at))),
                "{text}"
            );
        }
        for invalid in [
            "2026-02-29",
            "2026-03-29T24:00:00Z",
            "2026-03-29T10:00Z",
            "2026-03-29T10:00:00+15:00",
            "x",
        ] {
            assert_eq!(clock::range(invalid), None, "{invalid}");
        }
    }

    #[test]
    fn only_active_privacy_consents_have_directives() {
        let opposition = json!({"type": "deny"});
        let mut draft = privacy(opposition.clone());
        draft["status"] = json!("draft");
        let mut inactive = privacy(opposition.clone());
        inactive["status"] = json!("inactive");
        let mut treatment = privacy(opposition.clone());
        treatment["scope"] = json!({"coding": [{"system": CONSENT_SCOPE, "code": "treatment"}]});
        let mut other_system = privacy(opposition.clone());
        other_system["scope"] =
            json!({"coding": [{"system": "urn:other", "code": "patient-privacy"}]});
        // Unenforceable provisions do not matter where nothing is enforced.
        let mut research = privacy(json!({"type": "permit", "class": [{"code": "x"}]}));
        research["scope"] = json!({"coding": [{"system": CONSENT_SCOPE, "code": "research"}]});
        for consent in [draft, inactive, treatment, other_system, research] {
            assert_eq!(directives_of(&consent, BASE), Ok(vec![]), "{consent}");
        }
        assert_eq!(
            directives_of(&privacy(opposition), BASE),
            Ok(vec![Directive::Opposition {
                period: Period::ALWAYS
            }])
        );
    }

    #[test]
    fn provisions_map_to_directives() {
        let block = |actor: Actor| Directive::Block {
            actor,
            period: Period::ALWAYS,
        };
        let authorize = |id: &str| Directive::Authorize {
            practitioner: id.into(),
            period: Period::ALWAYS,
        };
        let july = Period {
            start: Some(at("2026-06-30T22:00:00Z")),
            end: Some(at("2026-07-31T22:00:00Z")),
        };
        let cases = [
            (
                json!({"type": "deny"}),
                vec![Directive::Opposition {
                    period: Period::ALWAYS,
                }],
            ),
            (
                json!({"type": "deny", "period": {"start": "2026-07"}}),
                vec![Directive::Opposition {
                    period: Period {
                        start: july.start,
                        end: None,
                    },
                }],
            ),
            (
                json!({"type": "deny", "actor": [actor("Practitioner/x"), actor(&format!("{BASE}/Organization/o"))]}),
                vec![
                    block(practitioner("x")),
                    block(Actor::Organization("o".into())),
                ],
            ),
            (
                json!({"type": "deny", "purpose": [btg()]}),
                vec![Directive::RefuseBreakGlass {
                    period: Period::ALWAYS,
                }],
            ),
            (
                json!({"type": "permit", "actor": [actor("Practitioner/a")], "period": {"start": "2026-07-01", "end": "2026-07-31"}}),
                vec![Directive::Authorize {
                    practitioner: "a".into(),
                    period: july,
                }],
            ),
            (
                json!({"type": "permit", "actor": [actor("Practitioner/a"), actor("Practitioner/b")]}),
                vec![authorize("a"), authorize("b")],
            ),
            // The record's own rules, agreed to: nothing to add.
            (json!({"type": "permit"}), vec![]),
            // IHE PCF: a base permit with exceptions.
            (
                json!({"type": "permit", "provision": [
                    {"type": "deny", "actor": [actor("Practitioner/x")]},
                    {"type": "deny", "purpose": [btg()], "period": {"end": "2026-07-31"}},
                    {"type": "permit", "actor": [actor("Practitioner/a")]},
                    {"type": "deny", "period": {"start": "2026-07-01"}}]}),
                vec![
                    block(practitioner("x")),
                    Directive::RefuseBreakGlass {
                        period: Period {
                            start: None,
                            end: july.end,
                        },
                    },
                    authorize("a"),
                    Directive::Opposition {
                        period: Period {
                            start: july.start,
                            end: None,
                        },
                    },
                ],
            ),
            // The actor's role says how they take part; the rule is the same.
            (
                json!({"type": "deny", "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
                    "reference": {"reference": "Practitioner/x"}}]}),
                vec![block(practitioner("x"))],
            ),
        ];
        for (provision, expected) in cases {
            assert_eq!(
                directives_of(&privacy(provision.clone()), BASE),
                Ok(expected),
                "{provision}"
            );
        }
    }

    #[test]
    fn unenforceable_provisions_are_refused_naming_the_element() {
        let cases = [
            (
                json!({"type": "permit", "actor": [actor("Organization/o")]}),
                "Consent.provision.actor[0].reference",
            ),
            (
                json!({"type": "permit", "actor": [actor("Practitioner/a"), actor("Organization/o")]}),
                "Consent.provision.actor[1].reference",
            ),
            (
                json!({"type": "deny", "actor": [actor("PractitionerRole/r")]}),
                "Consent.provision.actor[0].reference",
            ),
            (
                json!({"type": "deny", "actor": [actor("Patient/p2")]}),
                "Consent.provision.actor[0].reference",
            ),
            (
                json!({"type": "deny", "actor": [actor("https://other.example/fhir/Practitioner/x")]}),
                "Consent.provision.actor[0].reference",
            ),
            (
                json!({"type": "deny", "actor": [{"role": {"text": "x"}, "reference": {"identifier": {"value": "10000000001"}}}]}),
                "Consent.provision.actor[0].reference",
            ),
            (
                json!({"type": "deny", "class": [{"system": "http://hl7.org/fhir/resource-types", "code": "DocumentReference"}]}),
                "Consent.provision.class",
            ),
            (
                json!({"type": "deny", "actor": [actor("Practitioner/x")], "code": [{"text": "x"}]}),
                "Consent.provision.code",
            ),
            (
                json!({"type": "deny", "data": [{"meaning": "instance", "reference": {"reference": "DocumentReference/d"}}]}),
                "Consent.provision.data",
            ),
            (
                json!({"type": "deny", "action": [{"text": "access"}]}),
                "Consent.provision.action",
            ),
            (
                json!({"type": "deny", "securityLabel": [{"code": "R"}]}),
                "Consent.provision.securityLabel",
            ),
            (
                json!({"type": "deny", "dataPeriod": {"start": "2020"}}),
                "Consent.provision.dataPeriod",
            ),
            (
                json!({"type": "deny", "purpose": [{"system": ACT_REASON, "code": "HRESCH"}]}),
                "Consent.provision.purpose[0]",
            ),
            (
                json!({"type": "deny", "purpose": [{"code": "BTG"}]}),
                "Consent.provision.purpose[0]",
            ),
            (
                json!({"type": "deny", "purpose": [btg()], "actor": [actor("Practitioner/x")]}),
                "Consent.provision:",
            ),
            (
                json!({"type": "permit", "purpose": [btg()], "actor": [actor("Practitioner/x")]}),
                "Consent.provision.purpose",
            ),
            (
                json!({"type": "permit", "period": {"start": "2026"}}),
                "Consent.provision.actor",
            ),
            (
                json!({"actor": [actor("Practitioner/x")]}),
                "Consent.provision.type",
            ),
            (
                json!({"type": "deny", "period": {"start": "2026-08", "end": "2026-07"}}),
                "Consent.provision.period",
            ),
            (
                json!({"type": "deny", "period": {"start": "soon"}}),
                "Consent.provision.period.start",
            ),
            (
                json!({"type": "deny", "modifierExtension": [{"url": "x", "valueBoolean": true}]}),
                "Consent.provision.modifierExtension",
            ),
            // Exceptions Carnet cannot honour exactly.
            (
                json!({"type": "deny", "provision": [{"type": "permit", "actor": [actor("Practitioner/a")]}]}),
                "Consent.provision.provision",
            ),
            (
                json!({"type": "permit", "actor": [actor("Practitioner/a")], "provision": [{"type": "deny", "class": [{"code": "x"}]}]}),
                "Consent.provision.provision",
            ),
            (
                json!({"type": "permit", "period": {"start": "2026"}, "provision": [{"type": "deny", "actor": [actor("Practitioner/x")]}]}),
                "Consent.provision.provision",
            ),
            (
                json!({"type": "permit", "provision": [{"type": "deny", "actor": [actor("Practitioner/x")]}, {"type": "deny", "class": [{"code": "x"}]}]}),
                "Consent.provision.provision[1].class",
            ),
            (
                json!({"type": "permit", "provision": [{"type": "permit"}]}),
                "Consent.provision.provision[0].actor",
            ),
            (
                json!({"type": "permit", "provision": [{"type": "deny", "actor": [actor("Practitioner/x")],
                "provision": [{"type": "permit", "period": {"start": "2026"}}]}]}),
                "Consent.provision.provision[0].provision",
            ),
        ];
        for (provision, element) in cases {
            let error =
                directives_of(&privacy(provision.clone()), BASE).expect_err(&provision.to_string());
            assert!(error.starts_with(element), "{provision}: {error}");
        }
        let mut no_provision = privacy(json!(null));
        no_provision.as_object_mut().unwrap().remove("provision");
        no_provision["policyRule"] = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]});
        assert!(directives_of(&no_provision, BASE)
            .unwrap_err()
            .starts_with("Consent.provision:"));
        let mut modified = privacy(json!({"type": "deny"}));
        modified["modifierExtension"] = json!([{"url": "x", "valueBoolean": true}]);
        assert!(directives_of(&modified, BASE)
            .unwrap_err()
            .starts_with("Consent.modifierExtension:"));
    }
}
