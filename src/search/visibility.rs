//! A caller's [`Restriction`] as SQL: the one function that renders it for a `resources` row
//! alias, used by every read path of the query builder (`sql.rs`). Each branch is the SQL
//! twin of a branch of `consent::policy::may_read`, which the property test holds it to.
//!
//! What a query already fixes is not asked again per row: the resource type of an alias the
//! query holds to one type, and, for a search pinned to one record, the record itself: the
//! facts of that record (opposition, blocks, authorizations…) are asked of the pinned id as a
//! value — subqueries that depend on no row, which both engines evaluate once per statement —
//! and the rules that name a patient compare ids before writing any SQL. What is left per row
//! is a few column predicates.

use super::sql::Builder;
use crate::consent::matrix::Visible;
use crate::consent::policy::{DIRECTORY_TYPES, PROVISIONING_TYPES};
use crate::consent::{Headers, InRecord, Restriction, Rule};
use crate::store::tables::DIRECTORY;
use crate::store::{Filed, OUTSIDE_RECORDS};

/// The rows of alias `a` (a `resources` row) the caller may see.
pub(super) fn restricted(b: &mut Builder, restriction: &Restriction, a: &str) -> String {
    render(b, restriction, a, None)
}

/// [`restricted`] for an alias the query already holds to `resource_type`: only the branches
/// a row of that type can take are written (no Binary branch for a document, no document
/// class test for a Patient…), which keeps the statement small.
pub(super) fn restricted_as(
    b: &mut Builder,
    restriction: &Restriction,
    a: &str,
    resource_type: &str,
) -> String {
    render(b, restriction, a, Some(resource_type))
}

/// The rows of alias `a`, of `resource_type`, that a search pinned to one record may return:
/// in that record (`a.patient_id` is `patient`, the placeholder of the pinned id) and visible
/// by the rules, the record's facts asked of the pinned id.
pub(super) fn pinned(
    b: &mut Builder,
    restriction: &Restriction,
    record: &InRecord,
    patient: &str,
    a: &str,
    resource_type: &str,
) -> String {
    // The record's facts are asked of the pinned id itself, not of the row's column: a value
    // the planner sees prunes every table they read when planning, and the subqueries depend
    // on no row.
    let record_row = Record {
        a,
        patient: patient.to_owned(),
        now: restriction.now(),
        headers: restriction.headers(),
        resource_type: Some(resource_type),
        pinned: Some(record),
    };
    Cond::Sql(format!("{a}.patient_id = {patient}"))
        .and(b, |b| in_record(b, restriction, &record_row))
        .text()
}

/// The rows of alias `a`, of `resource_type`, filed in `filed` (a read by id) that the caller
/// may see: only the branch of a row in a record, or of one outside records, with the record
/// named by value (see [`Filed`]).
pub(super) fn filed(
    b: &mut Builder,
    restriction: &Restriction,
    filed: &Filed,
    a: &str,
    resource_type: &str,
) -> String {
    if filed.key() == OUTSIDE_RECORDS {
        return Cond::Sql(format!("{a}.patient_id = ''"))
            .and(b, |b| outside(b, restriction, a, Some(resource_type)))
            .text();
    }
    let patient = b.text(filed.key());
    let record = Record {
        a,
        patient: patient.clone(),
        now: restriction.now(),
        headers: restriction.headers(),
        resource_type: Some(resource_type),
        pinned: None,
    };
    Cond::Sql(format!("{a}.patient_id = {patient}"))
        .and(b, |b| in_record(b, restriction, &record))
        .text()
}

fn render(b: &mut Builder, restriction: &Restriction, a: &str, t: Option<&str>) -> String {
    let record = Record {
        a,
        patient: format!("{a}.patient_id"),
        now: restriction.now(),
        headers: restriction.headers(),
        resource_type: t,
        pinned: None,
    };
    // Rows outside any record carry the empty patient id (`store::OUTSIDE_RECORDS`).
    let inside =
        Cond::Sql(format!("{a}.patient_id <> ''")).and(b, |b| in_record(b, restriction, &record));
    let outside =
        Cond::Sql(format!("{a}.patient_id = ''")).and(b, |b| outside(b, restriction, a, t));
    format!("({})", inside.or(b, |_| outside).text())
}

/// A row in a record (`record.a.patient_id` not empty) the caller may see.
fn in_record(b: &mut Builder, restriction: &Restriction, record: &Record) -> Cond {
    let a = record.a;
    // Facts of the row kept with it (access terms) are in its record: the correlation
    // carries the patient id, as a table distributed by patient needs.
    let patient = &record.patient;
    let labels_clear = |mask: u8| Cond::Sql(format!("({a}.labels & {mask}) = 0"));
    match restriction.rule() {
        Rule::Patient { id, .. } => match record.pinned {
            Some(pinned) if pinned.patient_id() != id => Cond::Const(false),
            Some(_) => labels_clear(2),
            None => {
                Cond::Sql(format!("{a}.patient_id = {}", b.text(id))).and(b, |_| labels_clear(2))
            }
        },
        Rule::Guardian {
            related_person_id, ..
        } => record
            .guarded(b, related_person_id)
            .and(b, |_| labels_clear(6)),
        Rule::App { patient_id, .. } => match record.pinned {
            Some(pinned) if pinned.patient_id() != patient_id => Cond::Const(false),
            Some(_) => record.active(b).and(b, |_| labels_clear(2)),
            None => Cond::Sql(format!("{a}.patient_id = {}", b.text(patient_id)))
                .and(b, |b| record.active(b))
                .and(b, |_| labels_clear(2)),
        },
        Rule::Provisioning { writer } => {
            let written = |b: &mut Builder| Cond::Sql(format!("{a}.writer = {}", b.text(writer)));
            match record.resource_type {
                Some(t) if PROVISIONING_TYPES.contains(&t) => Cond::Const(true),
                Some(_) => written(b),
                None => Cond::Sql(format!(
                    "{a}.resource_type IN ({})",
                    list(b, &PROVISIONING_TYPES[..])
                ))
                .or(b, written),
            }
        }
        Rule::Feeder {
            writer,
            organization,
        } => record
            .organization_blocked(b, organization)
            .not()
            .and(b, |b| {
                record.header(b, writer, Cond::Const(false)).or(b, |b| {
                    record
                        .active(b)
                        .and(b, |b| Cond::Sql(format!("{a}.writer = {}", b.text(writer))))
                })
            }),
        Rule::Professional {
            practitioner_id,
            organization_id,
            writer,
            break_glass,
            documents,
            types,
        } => {
            let opened = |b: &mut Builder| {
                record
                    .authorized(b, practitioner_id)
                    .or(b, |b| record.emergency(b, *break_glass))
            };
            let profession_sees = |b: &mut Builder| {
                let document = |b: &mut Builder| match documents {
                    Visible::All => Cond::Const(true),
                    Visible::Nothing => Cond::Const(false),
                    Visible::Only(codes) => {
                        let codes: Vec<String> = codes
                            .iter()
                            .map(|c| format!("{}|{}", c.system, c.code))
                            .collect();
                        Cond::Sql(format!(
                            "EXISTS (SELECT 1 FROM access_terms {a}_c \
                             WHERE {a}_c.resource_type = {a}.resource_type AND {a}_c.id = {a}.id \
                             AND {a}_c.patient_id = {patient} \
                             AND {a}_c.kind = 'class' AND {a}_c.value IN ({}))",
                            list(b, &codes)
                        ))
                    }
                };
                let other_types = |b: &mut Builder| match types.is_empty() {
                    true => Cond::Const(false),
                    false => Cond::Sql(format!("{a}.resource_type IN ({})", list(b, types))),
                };
                match record.resource_type {
                    Some("DocumentReference") => document(b),
                    Some(t) => Cond::Const(types.contains(&t)),
                    None => Cond::Sql(format!("{a}.resource_type = 'DocumentReference'"))
                        .and(b, document)
                        .or(b, other_types),
                }
            };
            let authored = |b: &mut Builder| {
                Cond::Sql(format!(
                    "({a}.writer = {} OR EXISTS (SELECT 1 FROM access_terms {a}_au \
                     WHERE {a}_au.resource_type = {a}.resource_type AND {a}_au.id = {a}.id \
                     AND {a}_au.patient_id = {patient} \
                     AND {a}_au.kind = 'author' AND {a}_au.value = {}))",
                    b.text(writer),
                    b.text(practitioner_id)
                ))
            };
            let readable = |b: &mut Builder| {
                let also = opened(b);
                let header = record.header(b, writer, also);
                let unmasked = labels_clear(1).or(b, authored);
                header
                    .or(b, |b| {
                        record.active(b).and(b, opened).and(b, profession_sees)
                    })
                    .and(b, |_| unmasked)
            };
            // A write's lookup also reaches what they authored in an open record (§5).
            let own = |b: &mut Builder| match restriction.writing() {
                true => authored(b).and(b, |b| record.active(b)),
                false => Cond::Const(false),
            };
            record
                .professional_blocked(b, practitioner_id, organization_id)
                .not()
                .and(b, |b| readable(b).or(b, own))
        }
    }
}

/// A row outside any record (`a.patient_id` empty) the caller may see: the directory; what
/// the caller wrote, except a Binary some document points to: its bytes belong to that
/// document's record from then on; and a Binary seen through a document.
fn outside(b: &mut Builder, restriction: &Restriction, a: &str, t: Option<&str>) -> Cond {
    if t.is_some_and(|t| DIRECTORY_TYPES.contains(&t)) {
        return Cond::Const(true);
    }
    let binary = t.is_none_or(|t| t == "Binary");
    let directory = match t {
        Some(_) => Cond::Const(false),
        None => Cond::Sql(format!(
            "{a}.resource_type IN ({})",
            list(b, &DIRECTORY_TYPES[..])
        )),
    };
    let wrote = b.text(restriction.rule().writer());
    let written = Cond::Sql(format!("{a}.writer = {wrote}")).and(b, |_| match binary {
        true => Cond::Sql(pointed_to(a)).not(),
        false => Cond::Const(true),
    });
    directory.or(b, |_| written).or(b, |b| match binary {
        true => Cond::Sql(binary_through_document(b, restriction, a)),
        false => Cond::Const(false),
    })
}

/// The version `v` (a `resource_versions` row) survives its document's deletions: a deletion
/// hides a DocumentReference's versions up to it for good (§10), even once a new version is
/// written at that id. Other types keep their history, deletions included: nothing to ask
/// where the query holds `v` to another type (`resource_type`).
/// `patient`: the SQL of the record's patient id (a value where the query names it).
pub(super) fn surviving(v: &str, resource_type: Option<&str>, patient: &str) -> String {
    if resource_type.is_some_and(|t| t != "DocumentReference") {
        return "TRUE".to_owned();
    }
    format!(
        "({v}.resource_type <> 'DocumentReference' OR NOT EXISTS (SELECT 1 \
         FROM resource_versions {v}_x WHERE {v}_x.patient_id = {patient} \
         AND {v}_x.resource_type = {v}.resource_type AND {v}_x.id = {v}.id AND {v}_x.deleted = TRUE AND {v}_x.version_id >= {v}.version_id))"
    )
}

/// `a` is a Binary a document of its own writer points to: a document anyone else writes
/// takes nothing from the Binary's writer.
fn pointed_to(a: &str) -> String {
    format!(
        "({a}.resource_type = 'Binary' AND EXISTS (SELECT 1 FROM access_terms {a}_q \
         JOIN resources {a}_qd ON {a}_qd.patient_id = {a}_q.patient_id \
         AND {a}_qd.resource_type = {a}_q.resource_type AND {a}_qd.id = {a}_q.id \
         WHERE {a}_q.kind = 'binary' AND {a}_q.value = {a}.id AND {a}_qd.writer = {a}.writer))"
    )
}

/// A Binary outside any record is visible through a current DocumentReference the caller may
/// see whose attachment points to it (domain §3: a hidden document's Binary is hidden too),
/// written by the Binary's own writer: a document anyone else writes cannot lend its
/// visibility to bytes it does not own.
fn binary_through_document(b: &mut Builder, restriction: &Restriction, a: &str) -> String {
    let d = format!("{a}_d");
    let visible = render(b, restriction, &d, Some("DocumentReference"));
    format!(
        "({a}.resource_type = 'Binary' AND EXISTS (SELECT 1 FROM access_terms {a}_t \
         JOIN resources {d} ON {d}.patient_id = {a}_t.patient_id \
         AND {d}.resource_type = {a}_t.resource_type AND {d}.id = {a}_t.id \
         WHERE {a}_t.kind = 'binary' AND {a}_t.value = {a}.id AND {d}.deleted = FALSE \
         AND {d}.writer = {a}.writer AND {visible}))"
    )
}

/// A condition as it is written: a constant where what the query fixes already decides it,
/// else SQL. Combining folds constants, so a decided branch leaves nothing in the statement
/// (binds it made are dropped with it: see `Builder::finish`).
enum Cond {
    Const(bool),
    Sql(String),
}

impl Cond {
    fn and(self, b: &mut Builder, other: impl FnOnce(&mut Builder) -> Cond) -> Cond {
        match self {
            Cond::Const(false) => Cond::Const(false),
            Cond::Const(true) => other(b),
            Cond::Sql(left) => match other(b) {
                Cond::Const(true) => Cond::Sql(left),
                Cond::Const(false) => Cond::Const(false),
                Cond::Sql(right) => Cond::Sql(format!("({left} AND {right})")),
            },
        }
    }

    fn or(self, b: &mut Builder, other: impl FnOnce(&mut Builder) -> Cond) -> Cond {
        match self {
            Cond::Const(true) => Cond::Const(true),
            Cond::Const(false) => other(b),
            Cond::Sql(left) => match other(b) {
                Cond::Const(false) => Cond::Sql(left),
                Cond::Const(true) => Cond::Const(true),
                Cond::Sql(right) => Cond::Sql(format!("({left} OR {right})")),
            },
        }
    }

    fn not(self) -> Cond {
        match self {
            Cond::Const(value) => Cond::Const(!value),
            Cond::Sql(text) => Cond::Sql(format!("NOT {text}")),
        }
    }

    fn text(self) -> String {
        match self {
            Cond::Const(true) => "TRUE".to_owned(),
            Cond::Const(false) => "FALSE".to_owned(),
            Cond::Sql(text) => text,
        }
    }
}

/// The record facts of the row `a` belongs to (whose patient id is the SQL `patient`: the
/// row's column, or a value where the query names the record), judged at `now`.
struct Record<'a> {
    a: &'a str,
    patient: String,
    now: i64,
    headers: Headers,
    /// The type of `a`'s rows, when the query holds the alias to one.
    resource_type: Option<&'a str>,
    /// The record a search is pinned to (`patient` is then its id's placeholder).
    pinned: Option<&'a InRecord>,
}

impl Record<'_> {
    /// An opposition in force (§2).
    fn opposed(&self, b: &mut Builder) -> Cond {
        let (a, patient) = (self.a, &self.patient);
        Cond::Sql(format!(
            "EXISTS (SELECT 1 FROM directives {a}_o WHERE {a}_o.patient_id = {patient} \
             AND {a}_o.kind = 'opposition' AND {})",
            in_force(b, &format!("{a}_o"), self.now)
        ))
    }

    /// Open and not opposed. A record without its Patient resource counts as open: nothing
    /// closed it.
    fn active(&self, b: &mut Builder) -> Cond {
        let (a, patient) = (self.a, &self.patient);
        Cond::Sql(format!(
            "COALESCE((SELECT {a}_s.active FROM records {a}_s \
             WHERE {a}_s.patient_id = {patient}), TRUE)"
        ))
        .and(b, |b| self.opposed(b).not())
    }

    /// The record header (the Patient itself) of a record that is not opposed; in a listing,
    /// only if the caller has business in the record (see [`Headers`]): `writer` fed it, or
    /// `also` holds.
    fn header(&self, b: &mut Builder, writer: &str, also: Cond) -> Cond {
        let a = self.a;
        let row = match self.resource_type {
            Some("Patient") => Cond::Sql(format!("{a}.id = {a}.patient_id")),
            Some(_) => return Cond::Const(false),
            None => Cond::Sql(format!(
                "({a}.resource_type = 'Patient' AND {a}.id = {a}.patient_id)"
            )),
        };
        row.and(b, |b| self.opposed(b).not())
            .and(b, |b| match self.headers {
                Headers::Named => Cond::Const(true),
                Headers::Listed => also.or(b, |b| self.fed_by(b, writer)),
            })
    }

    /// `writer` wrote something into the record (a deleted entry counts: it fed it).
    fn fed_by(&self, b: &mut Builder, writer: &str) -> Cond {
        let (a, patient) = (self.a, &self.patient);
        Cond::Sql(format!(
            "EXISTS (SELECT 1 FROM resources {a}_w WHERE {a}_w.patient_id = {patient} \
             AND {a}_w.writer = {})",
            b.text(writer)
        ))
    }

    /// A guardianship of `related_person_id` over the record in force, its minor not yet
    /// of age (§8).
    fn guarded(&self, b: &mut Builder, related_person_id: &str) -> Cond {
        let (a, patient) = (self.a, &self.patient);
        Cond::Sql(format!(
            "EXISTS (SELECT 1 FROM guardians {a}_g JOIN records {a}_m \
             ON {a}_m.patient_id = {a}_g.patient_id \
             WHERE {a}_g.related_person_id = {} AND {a}_g.patient_id = {patient} \
             AND {} AND {a}_m.adult_at IS NOT NULL AND {} < {a}_m.adult_at)",
            b.text(related_person_id),
            in_force(b, &format!("{a}_g"), self.now),
            b.int(self.now)
        ))
    }

    /// A block in force names the professional or their organization (§4).
    fn professional_blocked(
        &self,
        b: &mut Builder,
        practitioner_id: &str,
        organization_id: &str,
    ) -> Cond {
        let (a, patient) = (self.a, &self.patient);
        Cond::Sql(format!(
            "EXISTS (SELECT 1 FROM directives {a}_b WHERE {a}_b.patient_id = {patient} \
             AND {a}_b.kind = 'block' AND {} \
             AND (({a}_b.actor_type = 'Practitioner' AND {a}_b.actor_id = {}) \
             OR ({a}_b.actor_type = 'Organization' AND {a}_b.actor_id = {})))",
            in_force(b, &format!("{a}_b"), self.now),
            b.text(practitioner_id),
            b.text(organization_id)
        ))
    }

    /// An authorization in force names the professional (§4).
    fn authorized(&self, b: &mut Builder, practitioner_id: &str) -> Cond {
        let (a, patient) = (self.a, &self.patient);
        Cond::Sql(format!(
            "EXISTS (SELECT 1 FROM directives {a}_p WHERE {a}_p.patient_id = {patient} \
             AND {a}_p.kind = 'authorize' AND {a}_p.actor_id = {} AND {})",
            b.text(practitioner_id),
            in_force(b, &format!("{a}_p"), self.now)
        ))
    }

    /// Break-glass declared and no refusal of it in force (§4).
    fn emergency(&self, b: &mut Builder, break_glass: bool) -> Cond {
        let (a, patient) = (self.a, &self.patient);
        if !break_glass {
            return Cond::Const(false);
        }
        Cond::Sql(format!(
            "NOT EXISTS (SELECT 1 FROM directives {a}_r WHERE {a}_r.patient_id = {patient} \
             AND {a}_r.kind = 'refuse-break-glass' AND {})",
            in_force(b, &format!("{a}_r"), self.now)
        ))
    }

    /// A block in force names an Organization with this identifier (a feeding system's
    /// registered organization).
    fn organization_blocked(
        &self,
        b: &mut Builder,
        (system, value): &(Option<String>, String),
    ) -> Cond {
        let (a, patient) = (self.a, &self.patient);
        let system = match system {
            Some(system) => format!("{a}_i.system = {}", b.text(system)),
            None => "TRUE".to_owned(),
        };
        Cond::Sql(format!(
            "EXISTS (SELECT 1 FROM directives {a}_k WHERE {a}_k.patient_id = {patient} \
             AND {a}_k.kind = 'block' AND {a}_k.actor_type = 'Organization' AND {} \
             AND {a}_k.actor_id IN (SELECT {a}_i.id FROM {} {a}_i \
             WHERE {a}_i.resource_type = 'Organization' AND {a}_i.param = 'identifier' \
             AND {system} AND {a}_i.code = {}))",
            in_force(b, &format!("{a}_k"), self.now),
            DIRECTORY.tokens,
            b.text(value)
        ))
    }
}

/// The directive `d` applies at `now`: `[start, end)`, open ends unbounded.
fn in_force(b: &mut Builder, d: &str, now: i64) -> String {
    let now = b.int(now);
    format!(
        "({d}.period_start IS NULL OR {d}.period_start <= {now}) \
         AND ({d}.period_end IS NULL OR {now} < {d}.period_end)"
    )
}

fn list(b: &mut Builder, values: &[impl AsRef<str>]) -> String {
    let placeholders: Vec<String> = values.iter().map(|v| b.text(v.as_ref())).collect();
    placeholders.join(", ")
}
