//! A caller's [`Restriction`] as SQL: the one function that renders it for a `resources` row
//! alias, used by every read path of the query builder (`sql.rs`). Each branch is the SQL
//! twin of a branch of `consent::policy::may_read`, which the property test holds it to.

use super::sql::Builder;
use crate::consent::matrix::Visible;
use crate::consent::policy::{DIRECTORY_TYPES, PROVISIONING_TYPES};
use crate::consent::{Headers, Restriction, Rule};

/// The rows of alias `a` (a `resources` row) the caller may see.
pub(super) fn restricted(b: &mut Builder, restriction: &Restriction, a: &str) -> String {
    render(b, restriction, a, true)
}

/// [`restricted`] for an alias the query already holds to `resource_type`: the branch that
/// sees a Binary through a document (a second rendering of the whole restriction) is left out
/// where the row cannot be a Binary, which halves what the database prepares and plans.
pub(super) fn restricted_as(
    b: &mut Builder,
    restriction: &Restriction,
    a: &str,
    resource_type: &str,
) -> String {
    render(b, restriction, a, resource_type == "Binary")
}

/// [`restricted`]; `binaries`: whether a Binary may be seen through a document (not when `a`
/// is that document already, which is never a Binary).
fn render(b: &mut Builder, restriction: &Restriction, a: &str, binaries: bool) -> String {
    let now = restriction.now();
    let record = Record {
        a,
        now,
        headers: restriction.headers(),
    };
    let (in_record, wrote) = match restriction.rule() {
        Rule::Patient { id, writer } => (
            format!("({a}.patient_id = {} AND ({a}.labels & 2) = 0)", b.text(id)),
            writer,
        ),
        Rule::Guardian {
            related_person_id,
            writer,
        } => (
            format!(
                "(EXISTS (SELECT 1 FROM guardians {a}_g JOIN records {a}_m \
                 ON {a}_m.patient_id = {a}_g.patient_id \
                 WHERE {a}_g.related_person_id = {} AND {a}_g.patient_id = {a}.patient_id \
                 AND {} AND {a}_m.adult_at IS NOT NULL AND {} < {a}_m.adult_at) \
                 AND ({a}.labels & 6) = 0)",
                b.text(related_person_id),
                in_force(b, &format!("{a}_g"), now),
                b.int(now)
            ),
            writer,
        ),
        Rule::App { patient_id, writer } => (
            format!(
                "({a}.patient_id = {} AND {} AND ({a}.labels & 2) = 0)",
                b.text(patient_id),
                record.active(b)
            ),
            writer,
        ),
        Rule::Provisioning { writer } => {
            let types = list(b, &PROVISIONING_TYPES[..]);
            (
                format!(
                    "({a}.resource_type IN ({types}) OR {a}.writer = {})",
                    b.text(writer)
                ),
                writer,
            )
        }
        Rule::Feeder {
            writer,
            organization,
        } => {
            let blocked = record.organization_blocked(b, organization);
            let header = record.header_readable(b, writer, "FALSE");
            let active = record.active(b);
            (
                format!(
                    "(NOT {blocked} AND ({header} OR ({active} AND {a}.writer = {})))",
                    b.text(writer)
                ),
                writer,
            )
        }
        Rule::Professional {
            practitioner_id,
            organization_id,
            writer,
            break_glass,
            documents,
            types,
        } => {
            let pid = b.text(practitioner_id);
            let blocked = format!(
                "EXISTS (SELECT 1 FROM directives {a}_b WHERE {a}_b.patient_id = {a}.patient_id \
                 AND {a}_b.kind = 'block' AND {} \
                 AND (({a}_b.actor_type = 'Practitioner' AND {a}_b.actor_id = {pid}) \
                 OR ({a}_b.actor_type = 'Organization' AND {a}_b.actor_id = {})))",
                in_force(b, &format!("{a}_b"), now),
                b.text(organization_id)
            );
            let authored = format!(
                "({a}.writer = {} OR EXISTS (SELECT 1 FROM access_terms {a}_au \
                 WHERE {a}_au.resource_type = {a}.resource_type AND {a}_au.id = {a}.id \
                 AND {a}_au.kind = 'author' AND {a}_au.value = {pid}))",
                b.text(writer)
            );
            let active = record.active(b);
            let authorized = format!(
                "EXISTS (SELECT 1 FROM directives {a}_p WHERE {a}_p.patient_id = {a}.patient_id \
                 AND {a}_p.kind = 'authorize' AND {a}_p.actor_id = {pid} AND {})",
                in_force(b, &format!("{a}_p"), now)
            );
            let emergency = match break_glass {
                true => format!(
                    "NOT EXISTS (SELECT 1 FROM directives {a}_r \
                     WHERE {a}_r.patient_id = {a}.patient_id \
                     AND {a}_r.kind = 'refuse-break-glass' AND {})",
                    in_force(b, &format!("{a}_r"), now)
                ),
                false => "FALSE".to_owned(),
            };
            let header = record.header_readable(b, writer, &format!("{authorized} OR {emergency}"));
            let document = match documents {
                Visible::All => "TRUE".to_owned(),
                Visible::Nothing => "FALSE".to_owned(),
                Visible::Only(codes) => {
                    let codes: Vec<String> = codes
                        .iter()
                        .map(|c| format!("{}|{}", c.system, c.code))
                        .collect();
                    format!(
                        "EXISTS (SELECT 1 FROM access_terms {a}_c \
                         WHERE {a}_c.resource_type = {a}.resource_type AND {a}_c.id = {a}.id \
                         AND {a}_c.kind = 'class' AND {a}_c.value IN ({}))",
                        list(b, &codes)
                    )
                }
            };
            let other_types = match types.is_empty() {
                true => "FALSE".to_owned(),
                false => format!("{a}.resource_type IN ({})", list(b, types)),
            };
            // A write's lookup also reaches what they authored in an open record (§5).
            let own = match restriction.writing() {
                true => format!(" OR ({authored} AND {active})"),
                false => String::new(),
            };
            (
                format!(
                    "(NOT {blocked} AND (((({a}.labels & 1) = 0 OR {authored}) \
                     AND ({header} OR ({active} AND ({authorized} OR {emergency}) \
                     AND (({a}.resource_type = 'DocumentReference' AND {document}) \
                     OR {other_types})))){own}))"
                ),
                writer,
            )
        }
    };
    let directory = list(b, &DIRECTORY_TYPES[..]);
    let wrote = b.text(wrote);
    let binary = match binaries {
        true => binary_through_document(b, restriction, a),
        false => "FALSE".to_owned(),
    };
    // Outside any record, a writer reads what it wrote, except a Binary some document points
    // to: its bytes belong to that document's record from then on.
    format!(
        "(({a}.patient_id IS NOT NULL AND {in_record}) OR ({a}.patient_id IS NULL AND \
         ({a}.resource_type IN ({directory}) OR ({a}.writer = {wrote} AND NOT {}) \
         OR {binary})))",
        pointed_to(a)
    )
}

/// The version `v` (a `resource_versions` row) survives its document's deletions: a deletion
/// hides a DocumentReference's versions up to it for good (§10), even once a new version is
/// written at that id. Other types keep their history, deletions included.
pub(super) fn surviving(v: &str) -> String {
    format!(
        "({v}.resource_type <> 'DocumentReference' OR NOT EXISTS (SELECT 1 \
         FROM resource_versions {v}_x WHERE {v}_x.resource_type = {v}.resource_type \
         AND {v}_x.id = {v}.id AND {v}_x.deleted = TRUE AND {v}_x.version_id >= {v}.version_id))"
    )
}

/// `a` is a Binary a document of its own writer points to: a document anyone else writes
/// takes nothing from the Binary's writer.
fn pointed_to(a: &str) -> String {
    format!(
        "({a}.resource_type = 'Binary' AND EXISTS (SELECT 1 FROM access_terms {a}_q \
         JOIN resources {a}_qd ON {a}_qd.resource_type = {a}_q.resource_type \
         AND {a}_qd.id = {a}_q.id \
         WHERE {a}_q.kind = 'binary' AND {a}_q.value = {a}.id AND {a}_qd.writer = {a}.writer))"
    )
}

/// A Binary outside any record is visible through a current DocumentReference the caller may
/// see whose attachment points to it (domain §3: a hidden document's Binary is hidden too),
/// written by the Binary's own writer: a document anyone else writes cannot lend its
/// visibility to bytes it does not own.
fn binary_through_document(b: &mut Builder, restriction: &Restriction, a: &str) -> String {
    let d = format!("{a}_d");
    let visible = render(b, restriction, &d, false);
    format!(
        "({a}.resource_type = 'Binary' AND EXISTS (SELECT 1 FROM access_terms {a}_t \
         JOIN resources {d} ON {d}.resource_type = {a}_t.resource_type AND {d}.id = {a}_t.id \
         WHERE {a}_t.kind = 'binary' AND {a}_t.value = {a}.id AND {d}.deleted = FALSE \
         AND {d}.writer = {a}.writer AND {visible}))"
    )
}

/// The record facts of the row `a` belongs to, judged at `now`.
struct Record<'a> {
    a: &'a str,
    now: i64,
    headers: Headers,
}

impl Record<'_> {
    /// An opposition in force (§2).
    fn opposed(&self, b: &mut Builder) -> String {
        let a = self.a;
        format!(
            "EXISTS (SELECT 1 FROM directives {a}_o WHERE {a}_o.patient_id = {a}.patient_id \
             AND {a}_o.kind = 'opposition' AND {})",
            in_force(b, &format!("{a}_o"), self.now)
        )
    }

    /// Open and not opposed. A record without its Patient resource counts as open: nothing
    /// closed it.
    fn active(&self, b: &mut Builder) -> String {
        let a = self.a;
        format!(
            "(COALESCE((SELECT {a}_s.active FROM records {a}_s \
             WHERE {a}_s.patient_id = {a}.patient_id), TRUE) AND NOT {})",
            self.opposed(b)
        )
    }

    /// The record header (the Patient itself) of a record that is not opposed; in a listing,
    /// only if the caller has business in the record (see [`Headers`]): `writer` fed it, or
    /// `also` holds.
    fn header_readable(&self, b: &mut Builder, writer: &str, also: &str) -> String {
        let a = self.a;
        let opposed = self.opposed(b);
        let listed = match self.headers {
            Headers::Named => String::new(),
            Headers::Listed => format!(" AND ({also} OR {})", self.fed_by(b, writer)),
        };
        format!(
            "({a}.resource_type = 'Patient' AND {a}.id = {a}.patient_id AND NOT {opposed}{listed})"
        )
    }

    /// `writer` wrote something into the record (a deleted entry counts: it fed it).
    fn fed_by(&self, b: &mut Builder, writer: &str) -> String {
        let a = self.a;
        format!(
            "EXISTS (SELECT 1 FROM resources {a}_w WHERE {a}_w.patient_id = {a}.patient_id \
             AND {a}_w.writer = {})",
            b.text(writer)
        )
    }

    /// A block in force names an Organization with this identifier (a feeding system's
    /// registered organization).
    fn organization_blocked(
        &self,
        b: &mut Builder,
        (system, value): &(Option<String>, String),
    ) -> String {
        let a = self.a;
        let system = match system {
            Some(system) => format!("{a}_i.system = {}", b.text(system)),
            None => "TRUE".to_owned(),
        };
        format!(
            "EXISTS (SELECT 1 FROM directives {a}_k WHERE {a}_k.patient_id = {a}.patient_id \
             AND {a}_k.kind = 'block' AND {a}_k.actor_type = 'Organization' AND {} \
             AND {a}_k.actor_id IN (SELECT {a}_i.id FROM search_tokens {a}_i \
             WHERE {a}_i.resource_type = 'Organization' AND {a}_i.param = 'identifier' \
             AND {system} AND {a}_i.code = {}))",
            in_force(b, &format!("{a}_k"), self.now),
            b.text(value)
        )
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
