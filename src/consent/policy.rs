//! The reference policy: who may read and who may write one stored resource, decided one row
//! at a time in plain Rust, with no database.
//!
//! This is the specification of the consent engine, not its fast path. The restriction
//! compiled into SQL must select exactly the rows [`may_read`] accepts (a property test checks
//! it), and every write goes through [`may_write`]. Each rule cites its source:
//! `shared/carnet-domain.md` (§n) or `shared/interfaces.md`; where they are silent, the rule
//! says *decision* and why.
//!
//! Scopes are not consulted here: they are checked before, and a scope never widens a rule (§1).

use super::model::{
    Actor, Code, Directive, Facts, Guardianship, Labels, Period, Record, RecordState, Writer,
};
use super::writer_of;
use crate::auth::principal::{Principal, Purpose};
use std::borrow::Cow;
use std::collections::HashMap;

/// Resources in no record that form the shared directory: every principal reads them, only a
/// provisioning client writes them (interfaces, "Client kinds and principals"). *Decision*: the
/// directory is these three types only; any other resource outside a record is private to its
/// writer (see [`may_read`]), so that, say, a Subscription or a Bundle never leaks. Stored in
/// tables of their own (`store::tables`).
pub use crate::store::tables::DIRECTORY_TYPES;

/// What a provisioning client reads and writes, and what nobody else writes: records and the
/// links that grant guardianship (interfaces, "Client kinds and principals"). *Decision*:
/// RelatedPerson is written by provisioning alone, because a RelatedPerson may make its
/// holder a guardian.
pub const PROVISIONING_TYPES: [&str; 5] = [
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "RelatedPerson",
];

/// The part of the profession matrix the rules consult (§5): which professions see which
/// document classes and which resource types. A profession it does not know sees nothing.
pub trait Professions {
    /// Whether `profession` (TRE_G15) sees a DocumentReference with these class and type codes.
    fn sees_document(&self, profession: &str, classes: &[Code]) -> bool;
    /// Whether `profession` sees resources of `resource_type` (any type but DocumentReference).
    fn sees_type(&self, profession: &str, resource_type: &str) -> bool;
}

/// Everything besides the row and the caller that a decision consults, as of one instant.
#[derive(Debug, Clone)]
pub struct World<M> {
    /// The records, by Patient id.
    pub records: HashMap<String, Record>,
    /// Guardianships on file, by the RelatedPerson id of a legal guardian. Whether one is in
    /// force is decided here, from its period and the minor's `adult_at` (§8).
    pub guardianships: HashMap<String, Guardianship>,
    /// Organization ids by identifier (`system|value`): a feeding system is registered under an
    /// identifier, a block names `Organization/{id}`.
    pub organizations: HashMap<String, Vec<String>>,
    pub professions: M,
    /// Microseconds since the Unix epoch.
    pub now: i64,
}

impl<M> World<M> {
    /// The record of `patient_id`. *Decision*: a record whose Patient resource is not (yet)
    /// stored is open, with no directive and no birth date: nothing has closed it, and data
    /// fed before its Patient arrived is still its writer's to read.
    pub fn record(&self, patient_id: &str) -> Option<Cow<'_, Record>> {
        Some(match self.records.get(patient_id) {
            Some(record) => Cow::Borrowed(record),
            None => Cow::Owned(Record {
                patient_id: patient_id.to_owned(),
                active: true,
                adult_at: None,
                directives: Vec::new(),
            }),
        })
    }

    fn in_force(&self, period: &Period) -> bool {
        period.contains(self.now)
    }

    /// A guardian acts for a minor while the guardianship's period is in force and until
    /// `adult_at`, the instant of the 18th birthday, excluded (§8). *Decision*: without a birth
    /// date nobody can show the person is still a minor, so the guardianship does not hold.
    fn represents(&self, related_person_id: &str, record: &Record) -> bool {
        self.guardianships
            .get(related_person_id)
            .is_some_and(|g| g.minor == record.patient_id && self.in_force(&g.period))
            && record.adult_at.is_some_and(|adult_at| self.now < adult_at)
    }

    /// A permit naming the practitioner, in force; the general practitioner arrives here as
    /// one too (§4).
    fn authorizes(&self, record: &Record, practitioner_id: &str) -> bool {
        record.directives.iter().any(|directive| {
            matches!(directive, Directive::Authorize { practitioner, period }
                if practitioner == practitioner_id && self.in_force(period))
        })
    }

    fn refuses_break_glass(&self, record: &Record) -> bool {
        record.directives.iter().any(|directive| {
            matches!(directive, Directive::RefuseBreakGlass { period } if self.in_force(period))
        })
    }

    /// A block in force names the caller or the organization it acts for (§4). Only
    /// professionals and feeding systems act for an organization. *Decision*: a feeding system
    /// "acts for" its registered organization, so an establishment's block stops its feeds too.
    fn blocks(&self, record: &Record, principal: &Principal) -> bool {
        let blocked = |actor: &Actor| match (principal, actor) {
            (
                Principal::Professional {
                    practitioner_id, ..
                },
                Actor::Practitioner(id),
            ) => id == practitioner_id,
            (Principal::Professional { organization, .. }, Actor::Organization(id)) => {
                id == organization
            }
            (Principal::FeedingSystem { organization, .. }, Actor::Organization(id)) => self
                .organizations
                .get(organization)
                .is_some_and(|ids| ids.contains(id)),
            _ => false,
        };
        record.directives.iter().any(|directive| {
            matches!(directive, Directive::Block { actor, period }
                if self.in_force(period) && blocked(actor))
        })
    }
}

fn wrote(principal: &Principal, row: &Facts) -> bool {
    row.writer.as_ref() == Some(&writer_of(principal))
}

/// The author of a resource, for `MASQUE_PS` and for who may replace or delete it (§3, §5):
/// the practitioner who wrote it, or one it names as author. The names come from the body,
/// so whoever writes a resource chooses them.
fn authored_by(row: &Facts, practitioner_id: &str) -> bool {
    row.writer == Some(Writer::Practitioner(practitioner_id.to_owned()))
        || row.authors.iter().any(|author| author == practitioner_id)
}

/// The record header: the Patient resource itself.
fn is_header(row: &Facts) -> bool {
    row.resource_type == "Patient" && row.patient_id.as_deref() == Some(row.id.as_str())
}

/// The patient, their guardians and catalogue apps: the side that `INVISIBLE_PATIENT` hides
/// from and that directives are written by.
fn is_holder_side(principal: &Principal) -> bool {
    matches!(
        principal,
        Principal::Patient { .. } | Principal::Guardian { .. }
    )
}

/// Whether `principal` may read `row` (read, vread, history, search, includes, `$everything`:
/// a row it may not read is absent everywhere, §3).
///
/// Outside any record (no `patient_id`): the directory ([`DIRECTORY_TYPES`]) is read by every
/// principal, since it is no one's health data; any other such row only by its writer
/// (*decision*).
///
/// In a record, by principal:
/// - **Patient** (§5, §2): their own record in every state, minus `INVISIBLE_PATIENT` (§3).
/// - **Guardian** (§8): the record of a minor they represent until the 18th birthday, minus
///   `INVISIBLE_PATIENT` and `INVISIBLE_REPRESENTANTS_LEGAUX`. *Decision*: in every state,
///   opposed included: a guardian acts "with the minor's rights" (§8), and for a minor it is
///   the guardian who opposes (§4) and must be able to lift it.
/// - **Catalogue app** (§5): its launch patient's record, active only, minus
///   `INVISIBLE_PATIENT`. *Decision*: not a closed record — the holder reads it, apps do not.
/// - **Provisioning** (interfaces): Patient and RelatedPerson in every state (it opens and
///   closes records), and what it wrote itself (its oppositions); no clinical data.
/// - **Professional**: nothing if a block names them or their organization (§4: a block wins
///   over everything); nothing marked `MASQUE_PS` unless they are its author, break-glass
///   included (§3); then the record header while the record is not opposed (*decision*, below);
///   otherwise an active record (§2), if authorized — a permit naming them, the general
///   practitioner counting as one (§4) — or in break-glass unless a refusal is in force (§4,
///   §1), and only what their profession sees (§5 matrix: a DocumentReference by its class and
///   type codes, anything else by its type). *Decision*: what they wrote themselves gives no
///   read (§5: an unauthorized professional adds documents but reads nothing); the write's
///   answer is not a read.
/// - **Feeding system** (§5): what it wrote, in an active record only (§2: nobody but the
///   person reads an opposed record; a closed one is read by the holder alone), unless a block
///   names its organization; plus the record header (below).
///
/// The record header (the Patient resource) is read by every professional and feeding system,
/// authorized or not, while the record is active or closed: they find a record by INS and read
/// `Patient.active` to know whether it accepts data (§2, ANS PDSm4DMP TD0.2). Not when opposed:
/// nobody but the person reads an opposed record (§2).
pub fn may_read<M: Professions>(principal: &Principal, world: &World<M>, row: &Facts) -> bool {
    let Some(patient_id) = row.patient_id.as_deref() else {
        return DIRECTORY_TYPES.contains(&row.resource_type.as_str()) || wrote(principal, row);
    };
    let Some(record) = world.record(patient_id) else {
        return false;
    };
    let record = &*record;
    let state = record.state(world.now);
    let labels = row.labels;
    match principal {
        Principal::Patient { id } => {
            id == patient_id && !labels.contains(Labels::INVISIBLE_PATIENT)
        }
        Principal::Guardian { related_person_id } => {
            world.represents(related_person_id, record)
                && !labels.contains(Labels::INVISIBLE_PATIENT)
                && !labels.contains(Labels::INVISIBLE_REPRESENTANTS_LEGAUX)
        }
        Principal::CatalogueApp {
            patient_id: launch, ..
        } => {
            launch == patient_id
                && state == RecordState::Active
                && !labels.contains(Labels::INVISIBLE_PATIENT)
        }
        Principal::Provisioning { .. } => {
            matches!(row.resource_type.as_str(), "Patient" | "RelatedPerson")
                || wrote(principal, row)
        }
        Principal::FeedingSystem { .. } => {
            if world.blocks(record, principal) {
                false
            } else if is_header(row) {
                state != RecordState::Opposed
            } else {
                state == RecordState::Active && wrote(principal, row)
            }
        }
        Principal::Professional {
            practitioner_id,
            profession,
            purpose,
            ..
        } => {
            if world.blocks(record, principal)
                || (labels.contains(Labels::MASQUE_PS) && !authored_by(row, practitioner_id))
            {
                return false;
            }
            if is_header(row) {
                return state != RecordState::Opposed;
            }
            let break_glass =
                matches!(purpose, Purpose::BreakGlass { .. }) && !world.refuses_break_glass(record);
            state == RecordState::Active
                && (world.authorizes(record, practitioner_id) || break_glass)
                && professions_see(&world.professions, profession, row)
        }
    }
}

/// Whether `principal` may see `row` in a listing (see [`super::Headers`]): a search that
/// does not name one patient, a type or system history, an include, a chain, a `_has`.
/// [`may_read`], except that feeding systems and professionals see the header of a record
/// only if they have business in it: `fed` (they wrote something into it, a deleted entry
/// included), or, for a professional, an authorization or break-glass that opens it.
/// *Decision*: finding a record by INS or id is for feeding it (§2, TD0.2); walking the
/// register of every person's name, INS and birth date is not.
pub fn may_list<M: Professions>(
    principal: &Principal,
    world: &World<M>,
    row: &Facts,
    fed: bool,
) -> bool {
    if !may_read(principal, world, row) {
        return false;
    }
    if !is_header(row) {
        return true;
    }
    let Some(record) = world.record(&row.id) else {
        return false;
    };
    match principal {
        Principal::FeedingSystem { .. } => fed,
        Principal::Professional {
            practitioner_id,
            purpose,
            ..
        } => {
            fed || world.authorizes(&record, practitioner_id)
                || (matches!(purpose, Purpose::BreakGlass { .. })
                    && !world.refuses_break_glass(&record))
        }
        _ => true,
    }
}

/// The profession matrix applied to one row (§5).
fn professions_see<M: Professions>(matrix: &M, profession: &str, row: &Facts) -> bool {
    if row.resource_type == "DocumentReference" {
        matrix.sees_document(profession, &row.classes)
    } else {
        matrix.sees_type(profession, &row.resource_type)
    }
}

/// One version of a resource as a write sees it: its facts and, for a Consent, the directives
/// it expresses (empty for any other resource, or for a Consent that expresses none, such as
/// an inactive one).
#[derive(Debug, Clone, Copy)]
pub struct Version<'a> {
    pub facts: &'a Facts,
    pub directives: &'a [Directive],
}

impl<'a> Version<'a> {
    /// A version that expresses no directive.
    pub fn of(facts: &'a Facts) -> Version<'a> {
        Version {
            facts,
            directives: &[],
        }
    }
}

/// What an update changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    /// Only the visibility labels (the metadata update of §10, or an update that changes
    /// nothing else): anyone who may set those labels may make it, author or not (§5).
    Relabel,
    /// Anything else: the resource is replaced, which only its author may do (§5).
    Replace,
}

/// A write to decide.
#[derive(Debug, Clone, Copy)]
pub enum WriteAction<'a> {
    Create {
        row: Version<'a>,
    },
    Update {
        old: Version<'a>,
        new: Version<'a>,
        edit: Edit,
    },
    Delete {
        old: Version<'a>,
    },
    /// A version written over a deletion (`old`, the tombstone: it keeps the patient, labels
    /// and writer): a creation in the record as it is now, by its new writer (the deleted
    /// content stays hidden for good, §10), whose labels are judged as changes from `old`'s,
    /// so that a deletion never lifts a label its writer may not remove (§5).
    Revive {
        old: Version<'a>,
        new: Version<'a>,
    },
}

/// Why a write is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The caller may not even see the resource: answer exactly as if it did not exist.
    #[error("not found")]
    NotFound,
    /// 403, with a text that says why.
    #[error("{0}")]
    Forbidden(String),
    /// 403 `forbidden`: the record is opposed or closed (interfaces, "Record lifecycle").
    #[error("the record does not accept data")]
    RecordClosedToData,
}

fn forbidden(text: impl Into<String>) -> Refusal {
    Refusal::Forbidden(text.into())
}

/// Whether `principal` may make this write. Checked in this order, so that the first failing
/// step gives the answer:
/// 1. the caller reaches the row — a create names a record the caller may write into, an update
///    or delete names a row the caller may see ([`may_read`], or for a professional a row they
///    authored in an active record where no block names them: §5 lets any professional replace
///    or delete their own documents). Otherwise `NotFound`, so nothing is revealed;
/// 2. a resource never moves to another record (issue 12: the patient id never changes);
/// 3. the caller may make this kind of write on this type (§4, §5, interfaces);
/// 4. the record accepts it (§2, interfaces): an active record accepts every write allowed by
///    step 3; a closed one only the holder's (or guardian's) Consent and Patient changes; an
///    opposed one only the person's Consent changes, so that they can lift the opposition;
///    provisioning administers records in every state. Otherwise `RecordClosedToData`;
/// 5. the labels changed are ones the caller may set (§3, §5; see [`settable`]).
pub fn may_write<M: Professions>(
    principal: &Principal,
    world: &World<M>,
    action: WriteAction<'_>,
) -> Result<(), Refusal> {
    match action {
        WriteAction::Create { row } => {
            let record = enters(principal, world, row.facts)?;
            may_create(principal, row)?;
            finish(principal, world, record.as_deref(), Labels::NONE, row.facts)
        }
        WriteAction::Revive { old, new } => {
            stays(old.facts, new.facts)?;
            let record = enters(principal, world, new.facts)?;
            may_create(principal, new)?;
            if old.facts.labels != new.facts.labels {
                may_relabel(principal, world, record.as_deref(), old.facts)?;
            }
            finish(
                principal,
                world,
                record.as_deref(),
                old.facts.labels,
                new.facts,
            )
        }
        WriteAction::Update { old, new, edit } => {
            let record = reaches(principal, world, old.facts)?;
            stays(old.facts, new.facts)?;
            match edit {
                Edit::Relabel => may_relabel(principal, world, record.as_deref(), old.facts)?,
                Edit::Replace => {
                    may_replace(principal, old, new)?;
                    if old.facts.labels != new.facts.labels {
                        may_relabel(principal, world, record.as_deref(), old.facts)?;
                    }
                }
            }
            finish(
                principal,
                world,
                record.as_deref(),
                old.facts.labels,
                new.facts,
            )
        }
        WriteAction::Delete { old } => {
            let record = reaches(principal, world, old.facts)?;
            may_delete(principal, old)?;
            accepts(
                principal,
                world,
                record.as_deref(),
                &old.facts.resource_type,
            )
        }
    }
}

/// Step 2: a resource never moves to another record (nor changes type).
fn stays(old: &Facts, new: &Facts) -> Result<(), Refusal> {
    if new.patient_id != old.patient_id || new.resource_type != old.resource_type {
        return Err(forbidden(
            "a resource stays in the record it was written in",
        ));
    }
    Ok(())
}

/// Steps 4 and 5 for a write whose new version is `new` and whose labels were `before`.
fn finish<M>(
    principal: &Principal,
    world: &World<M>,
    record: Option<&Record>,
    before: Labels,
    new: &Facts,
) -> Result<(), Refusal> {
    accepts(principal, world, record, &new.resource_type)?;
    let changed = before.without(new.labels).union(new.labels.without(before));
    // What the patient (or a guardian) wrote is theirs to read: nobody hides it from them
    // (§3: INVISIBLE_PATIENT holds back what professionals produced).
    let holders_own = matches!(new.writer, Some(Writer::Patient(_) | Writer::Guardian(_)));
    if holders_own
        && new
            .labels
            .without(before)
            .contains(Labels::INVISIBLE_PATIENT)
    {
        return Err(forbidden(
            "INVISIBLE_PATIENT cannot hide from the patient what the patient's side wrote",
        ));
    }
    // Likewise a guardian's own entries stay theirs to read (and to correct).
    if matches!(new.writer, Some(Writer::Guardian(_)))
        && new
            .labels
            .without(before)
            .contains(Labels::INVISIBLE_REPRESENTANTS_LEGAUX)
    {
        return Err(forbidden(
            "INVISIBLE_REPRESENTANTS_LEGAUX cannot hide from a guardian what they wrote",
        ));
    }
    if settable(principal, &new.resource_type).contains(changed) {
        Ok(())
    } else {
        Err(forbidden(format!(
            "a {} may not set or remove these visibility labels on a {}",
            principal.kind_name(),
            new.resource_type
        )))
    }
}

/// Step 1 for a create: the record it goes into, if any, and whether the caller may write
/// there at all. A patient or an app writes only into its own record, a guardian only into a
/// minor's they represent (§5, §8); a blocked professional or feeding system writes nothing
/// (§4). The record header itself is created before its record exists.
fn enters<'w, M>(
    principal: &Principal,
    world: &'w World<M>,
    row: &Facts,
) -> Result<Option<Cow<'w, Record>>, Refusal> {
    let Some(patient_id) = row.patient_id.as_deref() else {
        return Ok(None);
    };
    if is_header(row) {
        return Ok(None);
    }
    match principal {
        Principal::Patient { id } if id != patient_id => {
            return Err(forbidden("a patient writes only into their own record"))
        }
        Principal::CatalogueApp {
            patient_id: launch, ..
        } if launch != patient_id => {
            return Err(forbidden(
                "an app writes only into the record of its launch patient",
            ))
        }
        Principal::Guardian { related_person_id }
            if world
                .guardianships
                .get(related_person_id)
                .map(|g| g.minor.as_str())
                != Some(patient_id) =>
        {
            return Err(forbidden(
                "a guardian writes only into the record of a minor they represent",
            ))
        }
        _ => {}
    }
    let record = world
        .record(patient_id)
        .ok_or_else(|| forbidden(format!("Patient/{patient_id} has no record")))?;
    if let Principal::Guardian { related_person_id } = principal {
        if !world.represents(related_person_id, &record) {
            return Err(forbidden(
                "this guardianship does not hold now: it acts only during its period \
                 (RelatedPerson.period) and while the person is certainly a minor",
            ));
        }
    }
    if world.blocks(&record, principal) {
        return Err(forbidden(
            "the record's holder does not allow you to write into it",
        ));
    }
    Ok(Some(record))
}

/// Step 1 for an update or a delete: the caller must see the row (or, for a professional, be
/// its author where they may still write); otherwise it answers as missing.
fn reaches<'w, M: Professions>(
    principal: &Principal,
    world: &'w World<M>,
    row: &Facts,
) -> Result<Option<Cow<'w, Record>>, Refusal> {
    let record = row.patient_id.as_deref().and_then(|id| world.record(id));
    let author_may_write = match (principal, record.as_deref()) {
        (
            Principal::Professional {
                practitioner_id, ..
            },
            Some(record),
        ) => {
            authored_by(row, practitioner_id)
                && record.state(world.now) == RecordState::Active
                && !world.blocks(record, principal)
        }
        _ => false,
    };
    if may_read(principal, world, row) || author_may_write {
        Ok(record)
    } else {
        Err(Refusal::NotFound)
    }
}

/// Step 3 for a create.
fn may_create(principal: &Principal, row: Version<'_>) -> Result<(), Refusal> {
    let resource_type = row.facts.resource_type.as_str();
    if resource_type == "AuditEvent" {
        // §9: the trail is written by the server and never through the API.
        return Err(forbidden("AuditEvents are written by the server alone"));
    }
    if resource_type == "Consent" {
        return may_change_directives(principal, None, Some(row));
    }
    writes_type(principal, resource_type)
}

/// Who writes which types at all: provisioning writes [`PROVISIONING_TYPES`] and nothing else
/// (interfaces); nobody else writes those (the holder's own header aside, see
/// [`may_replace`]); a catalogue app adds within its scopes (§5).
fn writes_type(principal: &Principal, resource_type: &str) -> Result<(), Refusal> {
    let provisioning = PROVISIONING_TYPES.contains(&resource_type);
    match principal {
        Principal::Provisioning { .. } if !provisioning => Err(forbidden(format!(
            "a provisioning client writes no clinical data ({resource_type})"
        ))),
        Principal::Provisioning { .. } => Ok(()),
        _ if provisioning => Err(forbidden(format!(
            "only the provisioning client writes {resource_type} resources"
        ))),
        _ => Ok(()),
    }
}

/// Step 3 for a change of labels (§5 "change visibility labels"): the patient and the
/// guardian on anything they see; a professional when authorized, on what they see — an
/// unauthorized one ("other professional: —"), author or not, and break-glass alone are not
/// enough (labels are set at creation by whoever writes); a feeding system on what it wrote
/// (it sees nothing else); never an app or a provisioning client.
fn may_relabel<M>(
    principal: &Principal,
    world: &World<M>,
    record: Option<&Record>,
    old: &Facts,
) -> Result<(), Refusal> {
    let allowed = match principal {
        Principal::Patient { .. } | Principal::Guardian { .. } => true,
        Principal::FeedingSystem { .. } => wrote(principal, old),
        Principal::Professional {
            practitioner_id, ..
        } => record.is_some_and(|record| world.authorizes(record, practitioner_id)),
        Principal::CatalogueApp { .. } | Principal::Provisioning { .. } => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(forbidden(format!(
            "a {} may not change the visibility labels of this {}",
            principal.kind_name(),
            old.resource_type
        )))
    }
}

/// Step 3 for a replacement (§5 "delete / replace"): a Consent by the rules of directives; the
/// record header by the holder or a guardian (closing the record, choosing the general
/// practitioner: interfaces) or provisioning; anything else by its author alone — the patient
/// or guardian who wrote it, the professional who wrote it or is named its author, the feeding
/// system that wrote it. *Decision*: "own entries" means written by that same person: a
/// guardian does not replace the minor's entries, nor the minor a guardian's.
fn may_replace(principal: &Principal, old: Version<'_>, new: Version<'_>) -> Result<(), Refusal> {
    let resource_type = old.facts.resource_type.as_str();
    if resource_type == "Consent" {
        return may_change_directives(principal, Some(old), Some(new));
    }
    if resource_type == "Patient" && is_holder_side(principal) {
        return Ok(());
    }
    writes_type(principal, resource_type)?;
    if matches!(principal, Principal::Provisioning { .. }) || is_own(principal, old.facts) {
        Ok(())
    } else {
        Err(forbidden(format!(
            "only its author may replace this {resource_type}"
        )))
    }
}

/// Step 3 for a delete: as for a replacement, except that a record is closed, never deleted
/// (§2), and provisioning deletes nothing (*decision*, matching its scopes: it closes records,
/// and lifts an opposition by updating it).
fn may_delete(principal: &Principal, old: Version<'_>) -> Result<(), Refusal> {
    let resource_type = old.facts.resource_type.as_str();
    if resource_type == "Consent" {
        return may_change_directives(principal, Some(old), None);
    }
    if resource_type == "Patient" {
        return Err(forbidden(
            "a record is closed (Patient.active = false), not deleted",
        ));
    }
    if matches!(principal, Principal::Provisioning { .. }) {
        return Err(forbidden("a provisioning client deletes nothing"));
    }
    writes_type(principal, resource_type)?;
    if is_own(principal, old.facts) {
        Ok(())
    } else {
        Err(forbidden(format!(
            "only its author may delete this {resource_type}"
        )))
    }
}

/// Whether the caller is the author of a row for replacing or deleting it (§5). Catalogue
/// apps replace and delete nothing (§5: "—").
fn is_own(principal: &Principal, row: &Facts) -> bool {
    match principal {
        Principal::Professional {
            practitioner_id, ..
        } => authored_by(row, practitioner_id),
        Principal::CatalogueApp { .. } => false,
        _ => wrote(principal, row),
    }
}

/// Step 3 for a Consent, from its `old` and `new` versions (`None`: created, or deleted) (§4,
/// §5 "write Consent directives", interfaces "Record lifecycle"):
/// - the patient and the guardian write any directive, and change or delete any Consent of the
///   record, including one a professional or provisioning wrote (§4: the patient can revoke);
/// - a professional writes only a permit naming themselves, and changes or deletes only such a
///   Consent that they wrote (*decision*: "their own authorization" is both);
/// - provisioning writes only an opposition, and changes (to lift it) only the ones it wrote;
/// - feeding systems and apps write no directive.
fn may_change_directives(
    principal: &Principal,
    old: Option<Version<'_>>,
    new: Option<Version<'_>>,
) -> Result<(), Refusal> {
    let (allowed, why) = match principal {
        Principal::Patient { .. } | Principal::Guardian { .. } => return Ok(()),
        Principal::Professional {
            practitioner_id, ..
        } => (
            limited_to(principal, old, new, |directive| {
                matches!(directive, Directive::Authorize { practitioner, .. }
                    if practitioner == practitioner_id)
            }),
            "a professional writes only a permit naming themselves, and revokes only such a \
             Consent they wrote",
        ),
        Principal::Provisioning { .. } => (
            new.is_some()
                && limited_to(principal, old, new, |directive| {
                    matches!(directive, Directive::Opposition { .. })
                }),
            "a provisioning client writes only oppositions, and lifts only its own",
        ),
        Principal::FeedingSystem { .. } | Principal::CatalogueApp { .. } => (
            false,
            "only the patient or their guardian writes directives",
        ),
    };
    if allowed {
        Ok(())
    } else {
        Err(forbidden(why))
    }
}

/// A Consent change confined to one kind of directive: the old version was written by the
/// caller and expresses such directives only (at least one); the new one expresses such
/// directives only, and at least one when it is created (none when revoked).
fn limited_to(
    principal: &Principal,
    old: Option<Version<'_>>,
    new: Option<Version<'_>>,
    kind: impl Fn(&Directive) -> bool,
) -> bool {
    let old_ok = old.is_none_or(|old| {
        wrote(principal, old.facts)
            && !old.directives.is_empty()
            && old.directives.iter().all(&kind)
    });
    let new_ok = new.is_none_or(|new| {
        new.directives.iter().all(&kind) && (old.is_some() || !new.directives.is_empty())
    });
    old_ok && new_ok
}

/// Step 4: whether the record accepts this write in its state (§2, interfaces).
fn accepts<M>(
    principal: &Principal,
    world: &World<M>,
    record: Option<&Record>,
    resource_type: &str,
) -> Result<(), Refusal> {
    let Some(record) = record else {
        return Ok(());
    };
    let accepted = match record.state(world.now) {
        RecordState::Active => true,
        _ if matches!(principal, Principal::Provisioning { .. }) => true,
        RecordState::Closed => {
            is_holder_side(principal) && matches!(resource_type, "Consent" | "Patient")
        }
        RecordState::Opposed => is_holder_side(principal) && resource_type == "Consent",
    };
    if accepted {
        Ok(())
    } else {
        Err(Refusal::RecordClosedToData)
    }
}

/// The labels a principal may set or remove on a resource type (§3, §5):
/// - patient: `MASQUE_PS`, and `INVISIBLE_REPRESENTANTS_LEGAUX` ("the minor", §3);
/// - guardian: `MASQUE_PS`;
/// - professional, feeding system: `INVISIBLE_PATIENT` and `INVISIBLE_REPRESENTANTS_LEGAUX`,
///   except on a Consent (*decision*: a directive stays visible to the person who may revoke
///   it, so nobody else hides it from them);
/// - app, provisioning: none.
///
/// *Decision*: the record header carries no labels: hiding it would hide the record itself.
pub fn settable(principal: &Principal, resource_type: &str) -> Labels {
    if resource_type == "Patient" {
        return Labels::NONE;
    }
    let invisible = Labels::INVISIBLE_PATIENT.union(Labels::INVISIBLE_REPRESENTANTS_LEGAUX);
    match principal {
        Principal::Patient { .. } => {
            Labels::MASQUE_PS.union(Labels::INVISIBLE_REPRESENTANTS_LEGAUX)
        }
        Principal::Guardian { .. } => Labels::MASQUE_PS,
        Principal::Professional { .. } | Principal::FeedingSystem { .. } => {
            if resource_type == "Consent" {
                Labels::NONE
            } else {
                invisible
            }
        }
        Principal::CatalogueApp { .. } | Principal::Provisioning { .. } => Labels::NONE,
    }
}

#[cfg(test)]
mod tests {
    //! Decision tables: each table is a piece of the specification, one row or cell per case.
    //! `Y`/`N`: reads or not. For writes: `OK`, `NF` (answers as missing), `FB` (403 forbidden),
    //! `CL` (403, the record does not accept data).

    use super::*;

    const NOW: i64 = 1_800_000_000_000_000;
    const YEAR: i64 = 365 * 24 * 3600 * 1_000_000;
    const PAT: &str = "pat";
    const Y: bool = true;
    const N: bool = false;
    const NONE: Labels = Labels::NONE;
    const MPS: Labels = Labels::MASQUE_PS;
    const IP: Labels = Labels::INVISIBLE_PATIENT;
    const IRL: Labels = Labels::INVISIBLE_REPRESENTANTS_LEGAUX;

    /// The test matrix: médecins (10) see everything; pharmaciens (21) see prescriptions
    /// (class `PRESC`) and MedicationRequest; other professions see nothing.
    #[derive(Debug, Clone)]
    struct Matrix;

    impl Professions for Matrix {
        fn sees_document(&self, profession: &str, classes: &[Code]) -> bool {
            match profession {
                "10" => true,
                "21" => classes.iter().any(|class| class.code == "PRESC"),
                _ => false,
            }
        }

        fn sees_type(&self, profession: &str, resource_type: &str) -> bool {
            match profession {
                "10" => true,
                "21" => resource_type == "MedicationRequest",
                _ => false,
            }
        }
    }

    /// The callers of the tables. PAT is a minor (adult in a year) whose guardian is `rp`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Who {
        Patient,
        OtherPatient,
        Guardian,
        OtherGuardian,
        /// p1, médecin at `hosp`; authorized wherever a table says so.
        Doctor,
        /// p2, médecin at `clinic`, never authorized.
        Stranger,
        /// p2 declaring an emergency.
        Emergency,
        /// p3, pharmacien at `clinic`, authorized wherever a table says so.
        Pharmacist,
        /// The feeding system `lab`, registered under organization `org-lab`.
        Lab,
        OtherLab,
        /// An app launched for PAT.
        App,
        OtherApp,
        Provisioning,
    }

    fn principal(who: Who) -> Principal {
        let professional =
            |id: &str, profession: &str, organization: &str, purpose| Principal::Professional {
                practitioner_id: id.to_owned(),
                profession: profession.to_owned(),
                organization: organization.to_owned(),
                purpose,
            };
        let feeder = |id: &str| Principal::FeedingSystem {
            client_id: id.to_owned(),
            organization: format!("https://finess.esante.gouv.fr|{id}"),
        };
        let app = |patient: &str| Principal::CatalogueApp {
            client_id: "app".to_owned(),
            patient_id: patient.to_owned(),
        };
        match who {
            Who::Patient => Principal::Patient { id: PAT.to_owned() },
            Who::OtherPatient => Principal::Patient {
                id: "other".to_owned(),
            },
            Who::Guardian => Principal::Guardian {
                related_person_id: "rp".to_owned(),
            },
            Who::OtherGuardian => Principal::Guardian {
                related_person_id: "rp-other".to_owned(),
            },
            Who::Doctor => professional("p1", "10", "hosp", Purpose::Treatment),
            Who::Stranger => professional("p2", "10", "clinic", Purpose::Treatment),
            Who::Emergency => professional(
                "p2",
                "10",
                "clinic",
                Purpose::BreakGlass {
                    reason: "unconscious in the ER".to_owned(),
                },
            ),
            Who::Pharmacist => professional("p3", "21", "clinic", Purpose::Treatment),
            Who::Lab => feeder("lab"),
            Who::OtherLab => feeder("lab2"),
            Who::App => app(PAT),
            Who::OtherApp => app("other"),
            Who::Provisioning => Principal::Provisioning {
                client_id: "insurer".to_owned(),
            },
        }
    }

    /// Whom a row says wrote it.
    fn writer(who: Who) -> Option<Writer> {
        Some(writer_of(&principal(who)))
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum State {
        Active,
        Closed,
        Opposed,
    }
    use State::{Active, Closed, Opposed};

    fn auth(practitioner: &str) -> Directive {
        Directive::Authorize {
            practitioner: practitioner.to_owned(),
            period: Period::ALWAYS,
        }
    }

    fn auth_during(practitioner: &str, start: Option<i64>, end: Option<i64>) -> Directive {
        Directive::Authorize {
            practitioner: practitioner.to_owned(),
            period: Period { start, end },
        }
    }

    fn block(practitioner: &str) -> Directive {
        Directive::Block {
            actor: Actor::Practitioner(practitioner.to_owned()),
            period: Period::ALWAYS,
        }
    }

    fn block_org(id: &str) -> Directive {
        Directive::Block {
            actor: Actor::Organization(id.to_owned()),
            period: Period::ALWAYS,
        }
    }

    fn no_btg() -> Directive {
        Directive::RefuseBreakGlass {
            period: Period::ALWAYS,
        }
    }

    fn opposition() -> Directive {
        Directive::Opposition {
            period: Period::ALWAYS,
        }
    }

    fn record(patient_id: &str, state: State, mut directives: Vec<Directive>) -> Record {
        if state == Opposed {
            directives.push(opposition());
        }
        Record {
            patient_id: patient_id.to_owned(),
            active: state != Closed,
            adult_at: Some(NOW + YEAR),
            directives,
        }
    }

    /// PAT's record in `state` with `directives`, and an active record `other` with no
    /// directive.
    fn world(state: State, directives: Vec<Directive>) -> World<Matrix> {
        let records = [
            record(PAT, state, directives),
            record("other", Active, vec![]),
        ];
        World {
            records: records
                .into_iter()
                .map(|record| (record.patient_id.clone(), record))
                .collect(),
            guardianships: [("rp", PAT), ("rp-other", "other")]
                .into_iter()
                .map(|(rp, patient)| {
                    let guardianship = Guardianship {
                        minor: patient.to_owned(),
                        period: Period::ALWAYS,
                    };
                    (rp.to_owned(), guardianship)
                })
                .collect(),
            organizations: [(
                "https://finess.esante.gouv.fr|lab".to_owned(),
                vec!["org-lab".to_owned()],
            )]
            .into_iter()
            .collect(),
            professions: Matrix,
            now: NOW,
        }
    }

    fn class(code: &str) -> Code {
        Code {
            system:
                "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument"
                    .to_owned(),
            code: code.to_owned(),
        }
    }

    fn row(resource_type: &str, id: &str, patient: Option<&str>, by: Option<Writer>) -> Facts {
        Facts {
            resource_type: resource_type.to_owned(),
            id: id.to_owned(),
            patient_id: patient.map(str::to_owned),
            labels: NONE,
            writer: by,
            authors: vec![],
            classes: vec![],
        }
    }

    /// A lab report in PAT's record.
    fn document(by: Who, labels: Labels) -> Facts {
        Facts {
            labels,
            classes: vec![class("CR-BIO")],
            ..row("DocumentReference", "d1", Some(PAT), writer(by))
        }
    }

    fn header(patient: &str) -> Facts {
        row("Patient", patient, Some(patient), writer(Who::Provisioning))
    }

    fn reads(who: Who, world: &World<Matrix>, row: &Facts) -> bool {
        may_read(&principal(who), world, row)
    }

    /// Checks a table whose columns are callers and whose rows are cases.
    fn check_grid<C: std::fmt::Debug, const W: usize>(
        columns: [Who; W],
        table: &[(C, [bool; W])],
        decide: impl Fn(&C, Who) -> bool,
    ) {
        for (case, expected) in table {
            for (who, expected) in columns.iter().zip(expected) {
                assert_eq!(decide(case, *who), *expected, "{who:?} on {case:?}");
            }
        }
    }

    // ---- Reading ------------------------------------------------------------------------

    /// §2: who reads a lab report (written by the lab, no label; p1 authorized) in each state.
    #[test]
    fn read_by_record_state() {
        #[rustfmt::skip]
        let table = [
            //                    active closed opposed
            (Who::Patient,       [Y,     Y,     Y]),
            (Who::Guardian,      [Y,     Y,     Y]),
            (Who::Doctor,        [Y,     N,     N]),
            (Who::Emergency,     [Y,     N,     N]),
            (Who::Stranger,      [N,     N,     N]),
            (Who::Lab,           [Y,     N,     N]),
            (Who::OtherLab,      [N,     N,     N]),
            (Who::App,           [Y,     N,     N]),
            (Who::OtherApp,      [N,     N,     N]),
            (Who::OtherPatient,  [N,     N,     N]),
            (Who::OtherGuardian, [N,     N,     N]),
            (Who::Provisioning,  [N,     N,     N]),
        ];
        for (who, expected) in table {
            for (state, expected) in [Active, Closed, Opposed].into_iter().zip(expected) {
                let world = world(state, vec![auth("p1")]);
                assert_eq!(
                    reads(who, &world, &document(Who::Lab, NONE)),
                    expected,
                    "{who:?} in a {state:?} record"
                );
            }
        }
    }

    /// §4: directives and break-glass, for the lab report in an active record.
    #[test]
    fn read_by_directive() {
        #[rustfmt::skip]
        let table: Vec<(Who, Vec<Directive>, bool)> = vec![
            (Who::Doctor,     vec![],                                 N),
            // A permit naming them; the general practitioner arrives as one too (§4).
            (Who::Doctor,     vec![auth("p1")],                       Y),
            (Who::Doctor,     vec![auth("p2")],                       N),
            // Deny wins over permit, for the person or their organization.
            (Who::Doctor,     vec![auth("p1"), block("p1")],          N),
            (Who::Doctor,     vec![auth("p1"), block_org("hosp")],    N),
            (Who::Doctor,     vec![auth("p1"), block_org("clinic")],  Y),
            (Who::Doctor,     vec![auth("p1"), block("p2")],          Y),
            (Who::Doctor,     vec![auth("p1"), no_btg()],             Y),
            // Break-glass: unless refused; a block still wins.
            (Who::Emergency,  vec![],                                 Y),
            (Who::Emergency,  vec![no_btg()],                         N),
            (Who::Emergency,  vec![block("p2")],                      N),
            (Who::Emergency,  vec![block_org("clinic")],              N),
            (Who::Emergency,  vec![auth("p2"), block("p2")],          N),
            (Who::Stranger,   vec![],                                 N),
            (Who::Stranger,   vec![no_btg()],                         N),
            // Authorized, but the matrix does not show a lab report to a pharmacist.
            (Who::Pharmacist, vec![auth("p3")],                       N),
            // An establishment's block stops its feeding systems.
            (Who::Lab,        vec![block_org("org-lab")],             N),
            (Who::Lab,        vec![block_org("hosp")],                Y),
            // Directives bind professionals only.
            (Who::Patient,    vec![block("p1"), no_btg()],            Y),
            (Who::Guardian,   vec![block("p1"), block_org("org-lab")], Y),
        ];
        for (who, directives, expected) in table {
            let world = world(Active, directives.clone());
            assert_eq!(
                reads(who, &world, &document(Who::Lab, NONE)),
                expected,
                "{who:?} with {directives:?}"
            );
        }
    }

    /// §3: labels × caller, on the lab report in an active record where p1 is authorized.
    #[test]
    fn read_by_label() {
        let columns = [
            Who::Patient,
            Who::Guardian,
            Who::Doctor,
            Who::Emergency,
            Who::Lab,
            Who::App,
        ];
        #[rustfmt::skip]
        let table = [
            //               patient guardian doctor emergency lab app
            (NONE,          [Y,      Y,       Y,     Y,        Y,  Y]),
            (MPS,           [Y,      Y,       N,     N,        Y,  Y]),
            (IP,            [N,      N,       Y,     Y,        Y,  N]),
            (IRL,           [Y,      N,       Y,     Y,        Y,  Y]),
            (MPS.union(IP), [N,      N,       N,     N,        Y,  N]),
            (IP.union(IRL), [N,      N,       Y,     Y,        Y,  N]),
        ];
        let world = world(Active, vec![auth("p1")]);
        check_grid(columns, &table, |labels, who| {
            reads(who, &world, &document(Who::Lab, *labels))
        });
    }

    /// §3: `MASQUE_PS` hides from every professional but the author, break-glass included;
    /// being the author grants no read by itself.
    #[test]
    fn masque_ps_and_authorship() {
        let columns = [Who::Doctor, Who::Emergency, Who::Stranger];
        #[rustfmt::skip]
        let table = [
            // (writer, named authors)  doctor emergency stranger
            ((Who::Lab, vec![]),      [N,     N,        N]),
            ((Who::Doctor, vec![]),   [Y,     N,        N]),
            ((Who::Lab, vec!["p1"]),  [Y,     N,        N]),
            ((Who::Lab, vec!["p2"]),  [N,     Y,        N]),
            ((Who::Stranger, vec![]), [N,     Y,        N]),
        ];
        let world = world(Active, vec![auth("p1")]);
        check_grid(columns, &table, |(by, authors), who| {
            let row = Facts {
                authors: authors.iter().map(|a| a.to_string()).collect(),
                ..document(*by, MPS)
            };
            reads(who, &world, &row)
        });
    }

    /// §5: a feeding system reads what it wrote, and nothing else.
    #[test]
    fn feeding_system_reads_what_it_wrote() {
        let columns = [Who::Lab, Who::OtherLab];
        #[rustfmt::skip]
        let table = [
            // written by    lab lab2
            (Who::Lab,      [Y,  N]),
            (Who::OtherLab, [N,  Y]),
            (Who::Doctor,   [N,  N]),
            (Who::Patient,  [N,  N]),
        ];
        let world = world(Active, vec![]);
        check_grid(columns, &table, |by, who| {
            reads(who, &world, &document(*by, NONE))
        });
        let unknown = Facts {
            writer: None,
            ..document(Who::Lab, NONE)
        };
        assert!(!reads(Who::Lab, &world, &unknown));
    }

    /// §5: the matrix, for an authorized pharmacist and an authorized médecin.
    #[test]
    fn profession_matrix() {
        let directives = vec![auth("p1"), auth("p3")];
        let world = world(Active, directives);
        let prescription = Facts {
            classes: vec![class("PRESC")],
            ..document(Who::Lab, NONE)
        };
        let medication = row("MedicationRequest", "m1", Some(PAT), writer(Who::Lab));
        let condition = row("Condition", "c1", Some(PAT), writer(Who::Lab));
        let columns = [Who::Pharmacist, Who::Doctor];
        #[rustfmt::skip]
        let table = [
            //                          pharmacist doctor
            (document(Who::Lab, NONE), [N,         Y]),
            (prescription,             [Y,         Y]),
            (medication,               [Y,         Y]),
            (condition,                [N,         Y]),
            (header(PAT),              [Y,         Y]),
        ];
        check_grid(columns, &table, |row, who| reads(who, &world, row));
    }

    /// §2, TD0.2: the record header, for finding a record by INS and reading `Patient.active`.
    #[test]
    fn record_header() {
        #[rustfmt::skip]
        let table = [
            //                    active closed opposed
            (Who::Patient,       [Y,     Y,     Y]),
            (Who::Guardian,      [Y,     Y,     Y]),
            (Who::Doctor,        [Y,     Y,     N]),
            (Who::Stranger,      [Y,     Y,     N]),
            (Who::Emergency,     [Y,     Y,     N]),
            (Who::Pharmacist,    [Y,     Y,     N]),
            (Who::Lab,           [Y,     Y,     N]),
            (Who::OtherLab,      [Y,     Y,     N]),
            (Who::App,           [Y,     N,     N]),
            (Who::OtherApp,      [N,     N,     N]),
            (Who::Provisioning,  [Y,     Y,     Y]),
            (Who::OtherPatient,  [N,     N,     N]),
            (Who::OtherGuardian, [N,     N,     N]),
        ];
        for (who, expected) in table {
            for (state, expected) in [Active, Closed, Opposed].into_iter().zip(expected) {
                let world = world(state, vec![]);
                assert_eq!(
                    reads(who, &world, &header(PAT)),
                    expected,
                    "{who:?} in a {state:?} record"
                );
            }
        }
        let blocked = world(Active, vec![block("p2"), block_org("org-lab")]);
        assert!(!reads(Who::Stranger, &blocked, &header(PAT)));
        assert!(!reads(Who::Lab, &blocked, &header(PAT)));
        assert!(reads(Who::Doctor, &blocked, &header(PAT)));
    }

    /// Decision: in a listing, the header of an open record only for those with business in
    /// it; a named lookup (INS, id) finds it for any professional or feeding system.
    #[test]
    fn record_header_in_listings() {
        let world = world(Active, vec![auth("p1")]);
        #[rustfmt::skip]
        let table = [
            //                    named  listed  listed, fed
            (Who::Patient,       [Y,     Y,      Y]),
            (Who::Guardian,      [Y,     Y,      Y]),
            (Who::Doctor,        [Y,     Y,      Y]),
            (Who::Stranger,      [Y,     N,      Y]),
            (Who::Emergency,     [Y,     Y,      Y]),
            (Who::Pharmacist,    [Y,     N,      Y]),
            (Who::Lab,           [Y,     N,      Y]),
            (Who::OtherLab,      [Y,     N,      Y]),
            (Who::App,           [Y,     Y,      Y]),
            (Who::OtherApp,      [N,     N,      N]),
            (Who::Provisioning,  [Y,     Y,      Y]),
            (Who::OtherPatient,  [N,     N,      N]),
        ];
        for (who, [named, listed, fed]) in table {
            let principal = principal(who);
            let header = header(PAT);
            assert_eq!(
                may_read(&principal, &world, &header),
                named,
                "{who:?} named"
            );
            assert_eq!(
                may_list(&principal, &world, &header, false),
                listed,
                "{who:?} listed"
            );
            assert_eq!(
                may_list(&principal, &world, &header, true),
                fed,
                "{who:?} fed"
            );
        }
        // Only headers: the rest of a listing is read as it is anywhere.
        let document = document(Who::Lab, NONE);
        assert!(may_list(&principal(Who::Lab), &world, &document, false));
        let refused = super::tests::world(Active, vec![no_btg()]);
        assert!(!may_list(
            &principal(Who::Emergency),
            &refused,
            &header(PAT),
            false
        ));
    }

    /// §8: a guardianship acts during its period (`RelatedPerson.period`), `[start, end)`.
    #[test]
    fn a_guardianship_holds_during_its_period() {
        let mut world = world(Active, vec![]);
        let document = document(Who::Lab, NONE);
        assert!(reads(Who::Guardian, &world, &document));
        for period in [
            Period {
                start: None,
                end: Some(NOW),
            },
            Period {
                start: Some(NOW + 1),
                end: None,
            },
        ] {
            world.guardianships.get_mut("rp").unwrap().period = period;
            assert!(!reads(Who::Guardian, &world, &document), "{period:?}");
            assert!(!reads(Who::Guardian, &world, &header(PAT)), "{period:?}");
        }
    }

    /// Outside records: the directory is everyone's; anything else is its writer's.
    #[test]
    fn outside_records() {
        let organization = row("Organization", "o1", None, None);
        let practitioner_role = row("PractitionerRole", "pr1", None, writer(Who::Provisioning));
        let subscription = row("Subscription", "s1", None, writer(Who::Patient));
        let imported = row("Bundle", "b1", None, None);
        let columns = [
            Who::Patient,
            Who::OtherPatient,
            Who::Guardian,
            Who::Doctor,
            Who::Lab,
            Who::App,
            Who::Provisioning,
        ];
        #[rustfmt::skip]
        let table = [
            //                   patient other guardian doctor lab app provisioning
            (organization,      [Y,      Y,    Y,       Y,     Y,  Y,  Y]),
            (practitioner_role, [Y,      Y,    Y,       Y,     Y,  Y,  Y]),
            (subscription,      [Y,      N,    N,       N,     N,  N,  N]),
            (imported,          [N,      N,    N,       N,     N,  N,  N]),
        ];
        let world = world(Active, vec![]);
        check_grid(columns, &table, |row, who| reads(who, &world, row));
    }

    /// Interfaces: provisioning reads records and guardianships, and its own oppositions.
    #[test]
    fn provisioning_reads_no_clinical_data() {
        let world = world(Opposed, vec![]);
        let related = row("RelatedPerson", "rp", Some(PAT), writer(Who::Provisioning));
        let its_opposition = row("Consent", "c1", Some(PAT), writer(Who::Provisioning));
        let patients_consent = row("Consent", "c2", Some(PAT), writer(Who::Patient));
        assert!(reads(Who::Provisioning, &world, &related));
        assert!(reads(Who::Provisioning, &world, &its_opposition));
        assert!(!reads(Who::Provisioning, &world, &patients_consent));
        let observation = row("Observation", "o1", Some(PAT), writer(Who::Lab));
        assert!(!reads(Who::Provisioning, &world, &observation));
    }

    /// Directive periods are `[start, end)`.
    #[test]
    fn periods_start_included_end_excluded() {
        #[rustfmt::skip]
        let table = [
            // (start, end)                   in force
            ((None, Some(NOW)),               N),
            ((None, Some(NOW + 1)),           Y),
            ((Some(NOW), None),               Y),
            ((Some(NOW + 1), None),           N),
            ((Some(NOW - 10), Some(NOW + 10)), Y),
        ];
        for ((start, end), expected) in table {
            let world = world(Active, vec![auth_during("p1", start, end)]);
            assert_eq!(
                reads(Who::Doctor, &world, &document(Who::Lab, NONE)),
                expected,
                "authorization {start:?}..{end:?}"
            );
            let period = Period { start, end };
            let block = Directive::Block {
                actor: Actor::Practitioner("p1".to_owned()),
                period,
            };
            let world = self::world(Active, vec![auth("p1"), block]);
            assert_eq!(
                reads(Who::Doctor, &world, &document(Who::Lab, NONE)),
                !expected,
                "block {start:?}..{end:?}"
            );
            let refusal = Directive::RefuseBreakGlass { period };
            let world = self::world(Active, vec![refusal]);
            assert_eq!(
                reads(Who::Emergency, &world, &document(Who::Lab, NONE)),
                !expected,
                "refusal of break-glass {start:?}..{end:?}"
            );
        }
    }

    /// §8: guardianship ends at the instant of the 18th birthday.
    #[test]
    fn guardian_until_the_eighteenth_birthday() {
        let mut world = world(Active, vec![]);
        let adult_at = NOW + 5;
        world.records.get_mut(PAT).unwrap().adult_at = Some(adult_at);
        let table = [(adult_at - 1, Y), (adult_at, N), (adult_at + 1, N)];
        for (now, expected) in table {
            world.now = now;
            assert_eq!(
                reads(Who::Guardian, &world, &document(Who::Lab, NONE)),
                expected,
                "at {now}"
            );
            let new = document(Who::Guardian, NONE);
            let create = may_write(
                &principal(Who::Guardian),
                &world,
                WriteAction::Create {
                    row: Version::of(&new),
                },
            );
            assert_eq!(create.is_ok(), expected, "create at {now}");
        }
        // The minor, now an adult, still reads everything.
        assert!(reads(Who::Patient, &world, &document(Who::Lab, IRL)));
    }

    /// §8, decision: without a birth date, guardianship cannot be shown to hold.
    #[test]
    fn guardian_without_birth_date_reads_nothing() {
        let mut world = world(Active, vec![]);
        world.records.get_mut(PAT).unwrap().adult_at = None;
        assert!(!reads(Who::Guardian, &world, &document(Who::Lab, NONE)));
        assert!(!reads(Who::Guardian, &world, &header(PAT)));
    }

    /// Decision: a record whose Patient is not stored is open, without directives: its writer
    /// reads what it fed; nobody is authorized; no guardianship holds (no birth date).
    #[test]
    fn a_record_without_its_patient_is_open_and_unauthorized() {
        let world = world(Active, vec![]);
        let stray = row("AllergyIntolerance", "o1", Some("ghost"), writer(Who::Lab));
        assert!(reads(Who::Lab, &world, &stray));
        for who in [Who::Patient, Who::Doctor, Who::Guardian, Who::Provisioning] {
            assert!(!reads(who, &world, &stray), "{who:?}");
        }
    }

    // ---- Writing ------------------------------------------------------------------------

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Out {
        Ok,
        Nf,
        Fb,
        Cl,
    }
    const OK: Out = Out::Ok;
    const NF: Out = Out::Nf;
    const FB: Out = Out::Fb;
    const CL: Out = Out::Cl;

    fn out(result: Result<(), Refusal>) -> Out {
        match result {
            Ok(()) => Out::Ok,
            Err(Refusal::NotFound) => Out::Nf,
            Err(Refusal::Forbidden(text)) => {
                assert!(!text.is_empty());
                Out::Fb
            }
            Err(Refusal::RecordClosedToData) => Out::Cl,
        }
    }

    fn create(who: Who, world: &World<Matrix>, row: &Facts, directives: &[Directive]) -> Out {
        let row = Version {
            facts: row,
            directives,
        };
        out(may_write(
            &principal(who),
            world,
            WriteAction::Create { row },
        ))
    }

    fn update(who: Who, world: &World<Matrix>, old: &Facts, new: &Facts, edit: Edit) -> Out {
        let action = WriteAction::Update {
            old: Version::of(old),
            new: Version::of(new),
            edit,
        };
        out(may_write(&principal(who), world, action))
    }

    fn revive(who: Who, world: &World<Matrix>, tombstone: &Facts, new: &Facts) -> Out {
        let action = WriteAction::Revive {
            old: Version::of(tombstone),
            new: Version::of(new),
        };
        out(may_write(&principal(who), world, action))
    }

    /// §5, §10: a version written over a deletion is a creation by its new writer (the deleted
    /// content stays hidden), judged from the deletion's labels: deleting and rewriting never
    /// lifts a label the writer may not remove.
    #[test]
    fn writing_over_a_deletion() {
        let world = world(Active, vec![auth("p1")]);
        let masked = document(Who::Lab, MPS);
        #[rustfmt::skip]
        let cases = [
            (Who::Lab,      document(Who::Lab, NONE),     FB),
            (Who::Lab,      document(Who::Lab, MPS),      OK),
            (Who::Patient,  document(Who::Patient, NONE), OK),
            (Who::Doctor,   document(Who::Doctor, MPS),   OK),
            (Who::Doctor,   document(Who::Doctor, NONE),  FB),
            (Who::OtherApp, document(Who::OtherApp, MPS), FB),
        ];
        for (who, new, expected) in cases {
            assert_eq!(
                revive(who, &world, &masked, &new),
                expected,
                "{who:?} {:?}",
                new.labels
            );
        }
        let closed = super::tests::world(Closed, vec![]);
        assert_eq!(
            revive(Who::Lab, &closed, &masked, &document(Who::Lab, MPS)),
            CL
        );
    }

    fn update_consent(
        who: Who,
        world: &World<Matrix>,
        old: (&Facts, &[Directive]),
        new: &[Directive],
    ) -> Out {
        let action = WriteAction::Update {
            old: Version {
                facts: old.0,
                directives: old.1,
            },
            new: Version {
                facts: old.0,
                directives: new,
            },
            edit: Edit::Replace,
        };
        out(may_write(&principal(who), world, action))
    }

    fn delete(who: Who, world: &World<Matrix>, old: &Facts, directives: &[Directive]) -> Out {
        let old = Version {
            facts: old,
            directives,
        };
        out(may_write(
            &principal(who),
            world,
            WriteAction::Delete { old },
        ))
    }

    /// §2, §5: adding a document (no label) to PAT's record, by its writer, in each state.
    #[test]
    fn create_by_record_state() {
        #[rustfmt::skip]
        let table = [
            //                    active closed opposed
            (Who::Patient,       [OK,    CL,    CL]),
            (Who::Guardian,      [OK,    CL,    CL]),
            (Who::Doctor,        [OK,    CL,    CL]),
            // Feeding needs no authorization (§5).
            (Who::Stranger,      [OK,    CL,    CL]),
            (Who::Emergency,     [OK,    CL,    CL]),
            (Who::Pharmacist,    [OK,    CL,    CL]),
            (Who::Lab,           [OK,    CL,    CL]),
            (Who::App,           [OK,    CL,    CL]),
            (Who::OtherPatient,  [FB,    FB,    FB]),
            (Who::OtherGuardian, [FB,    FB,    FB]),
            (Who::OtherApp,      [FB,    FB,    FB]),
            (Who::Provisioning,  [FB,    FB,    FB]),
        ];
        for (who, expected) in table {
            for (state, expected) in [Active, Closed, Opposed].into_iter().zip(expected) {
                let world = world(state, vec![]);
                assert_eq!(
                    create(who, &world, &document(who, NONE), &[]),
                    expected,
                    "{who:?} in a {state:?} record"
                );
            }
        }
    }

    /// §4: a block stops writes too; an establishment's block stops its feeding systems.
    #[test]
    fn blocked_parties_write_nothing() {
        let world = world(Active, vec![auth("p1"), block("p1"), block_org("org-lab")]);
        assert_eq!(
            create(Who::Doctor, &world, &document(Who::Doctor, NONE), &[]),
            FB
        );
        assert_eq!(create(Who::Lab, &world, &document(Who::Lab, NONE), &[]), FB);
        assert_eq!(
            create(Who::OtherLab, &world, &document(Who::OtherLab, NONE), &[]),
            OK
        );
        // Their own documents answer as missing.
        let own = document(Who::Doctor, NONE);
        assert_eq!(update(Who::Doctor, &world, &own, &own, Edit::Replace), NF);
        assert_eq!(delete(Who::Doctor, &world, &own, &[]), NF);
        let fed = document(Who::Lab, NONE);
        assert_eq!(delete(Who::Lab, &world, &fed, &[]), NF);
    }

    /// §4, §5: who writes which Consent, by the directives it expresses, in each state.
    #[test]
    fn create_consent() {
        #[rustfmt::skip]
        let table: Vec<(Who, Vec<Directive>, [Out; 3])> = vec![
            // who, directives of the new Consent            active closed opposed
            (Who::Patient,      vec![block("p1")],             [OK,    OK,    OK]),
            (Who::Patient,      vec![opposition()],            [OK,    OK,    OK]),
            (Who::Guardian,     vec![auth("p1")],              [OK,    OK,    OK]),
            (Who::OtherPatient, vec![block("p1")],             [FB,    FB,    FB]),
            (Who::Stranger,     vec![auth("p2")],              [OK,    CL,    CL]),
            (Who::Emergency,    vec![auth("p2")],              [OK,    CL,    CL]),
            (Who::Stranger,     vec![auth("p1")],              [FB,    FB,    FB]),
            (Who::Stranger,     vec![auth("p2"), block("p1")], [FB,    FB,    FB]),
            (Who::Stranger,     vec![],                        [FB,    FB,    FB]),
            (Who::Lab,          vec![auth("p1")],              [FB,    FB,    FB]),
            (Who::App,          vec![block("p1")],             [FB,    FB,    FB]),
            (Who::Provisioning, vec![opposition()],            [OK,    OK,    OK]),
            (Who::Provisioning, vec![block("p1")],             [FB,    FB,    FB]),
            (Who::Provisioning, vec![],                        [FB,    FB,    FB]),
        ];
        for (who, directives, expected) in table {
            for (state, expected) in [Active, Closed, Opposed].into_iter().zip(expected) {
                let world = world(state, vec![]);
                let consent = row("Consent", "c1", Some(PAT), writer(who));
                assert_eq!(
                    create(who, &world, &consent, &directives),
                    expected,
                    "{who:?} writing {directives:?} in a {state:?} record"
                );
            }
        }
    }

    /// §3, §5: labels a new document may carry, by its writer.
    #[test]
    fn create_with_labels() {
        let columns = [
            Who::Patient,
            Who::Guardian,
            Who::Doctor,
            Who::Stranger,
            Who::Lab,
            Who::App,
        ];
        #[rustfmt::skip]
        let table = [
            //               patient guardian doctor stranger lab app
            (MPS,           [OK,     OK,      FB,    FB,      FB, FB]),
            (IP,            [FB,     FB,      OK,    OK,      OK, FB]),
            (IRL,           [OK,     FB,      OK,    OK,      OK, FB]),
            (IP.union(IRL), [FB,     FB,      OK,    OK,      OK, FB]),
        ];
        let world = world(Active, vec![auth("p1")]);
        for (labels, expected) in table {
            for (who, expected) in columns.iter().zip(expected) {
                let new = document(*who, labels);
                assert_eq!(
                    create(*who, &world, &new, &[]),
                    expected,
                    "{who:?} {labels:?}"
                );
            }
        }
    }

    /// §5 "change visibility labels": adding one label to the lab's report; p1 authorized,
    /// p2 in break-glass.
    #[test]
    fn relabel() {
        let columns = [
            Who::Patient,
            Who::Guardian,
            Who::Doctor,
            Who::Emergency,
            Who::Stranger,
            Who::Lab,
            Who::OtherLab,
            Who::App,
            Who::Provisioning,
        ];
        #[rustfmt::skip]
        let table = [
            // added  patient guardian doctor emergency stranger lab lab2 app provisioning
            (MPS,    [OK,     OK,      FB,    FB,       NF,      FB, NF,  FB, NF]),
            (IP,     [FB,     FB,      OK,    FB,       NF,      OK, NF,  FB, NF]),
            (IRL,    [OK,     FB,      OK,    FB,       NF,      OK, NF,  FB, NF]),
        ];
        let world = world(Active, vec![auth("p1")]);
        let old = document(Who::Lab, NONE);
        for (label, expected) in table {
            for (who, expected) in columns.iter().zip(expected) {
                let new = document(Who::Lab, label);
                assert_eq!(
                    update(*who, &world, &old, &new, Edit::Relabel),
                    expected,
                    "{who:?} adding {label:?}"
                );
            }
        }
    }

    /// Removing labels: only from what one sees, only the labels one may set; a feeding
    /// system keeps the patient's `MASQUE_PS` while it changes its own labels.
    #[test]
    fn relabel_removals() {
        let world = world(Active, vec![auth("p1")]);
        #[rustfmt::skip]
        let cases = [
            // who            before          after  outcome
            (Who::Patient,  MPS,            NONE,  OK),
            (Who::Patient,  IP,             NONE,  NF),
            (Who::Guardian, IRL,            NONE,  NF),
            (Who::Doctor,   IP,             NONE,  OK),
            (Who::Doctor,   MPS.union(IP),  MPS,   NF),
            (Who::Lab,      MPS.union(IP),  MPS,   OK),
            (Who::Lab,      MPS.union(IP),  NONE,  FB),
            (Who::Patient,  MPS.union(IRL), IRL,   OK),
        ];
        for (who, before, after, expected) in cases {
            let old = document(Who::Lab, before);
            let new = document(Who::Lab, after);
            assert_eq!(
                update(who, &world, &old, &new, Edit::Relabel),
                expected,
                "{who:?}: {before:?} -> {after:?}"
            );
        }
        // §5 "other professional: —": the author does not relabel their own document without
        // authorization, by a label change or by a replacement.
        let own = document(Who::Stranger, NONE);
        let hidden = document(Who::Stranger, IP);
        for edit in [Edit::Relabel, Edit::Replace] {
            assert_eq!(
                update(Who::Stranger, &world, &own, &hidden, edit),
                FB,
                "{edit:?}"
            );
        }
        assert_eq!(update(Who::Stranger, &world, &own, &own, Edit::Replace), OK);
    }

    /// §5 "delete / replace": by the entry's writer; the same table holds for both.
    #[test]
    fn replace_and_delete_by_author() {
        let columns = [
            Who::Patient,
            Who::Guardian,
            Who::Doctor,
            Who::Stranger,
            Who::Emergency,
            Who::Lab,
            Who::OtherLab,
            Who::App,
        ];
        #[rustfmt::skip]
        let table = [
            // written by    patient guardian doctor stranger emergency lab lab2 app
            (Who::Patient,  [OK,     FB,      FB,    NF,      FB,       NF, NF,  FB]),
            (Who::Guardian, [FB,     OK,      FB,    NF,      FB,       NF, NF,  FB]),
            (Who::Doctor,   [FB,     FB,      OK,    NF,      FB,       NF, NF,  FB]),
            (Who::Stranger, [FB,     FB,      FB,    OK,      OK,       NF, NF,  FB]),
            (Who::Lab,      [FB,     FB,      FB,    NF,      FB,       OK, NF,  FB]),
            (Who::App,      [FB,     FB,      FB,    NF,      FB,       NF, NF,  FB]),
        ];
        let world = world(Active, vec![auth("p1")]);
        for (by, expected) in table {
            for (who, expected) in columns.iter().zip(expected) {
                let old = document(by, NONE);
                let new = Facts {
                    classes: vec![class("CR-BIO"), class("AMENDED")],
                    ..old.clone()
                };
                assert_eq!(
                    update(*who, &world, &old, &new, Edit::Replace),
                    expected,
                    "{who:?} replacing what {by:?} wrote"
                );
                assert_eq!(
                    delete(*who, &world, &old, &[]),
                    expected,
                    "{who:?} deleting what {by:?} wrote"
                );
            }
        }
    }

    /// §5: a professional named as author replaces the document a system sent for them.
    #[test]
    fn named_author_replaces() {
        let world = world(Active, vec![]);
        let old = Facts {
            authors: vec!["p2".to_owned()],
            ..document(Who::Lab, NONE)
        };
        assert_eq!(update(Who::Stranger, &world, &old, &old, Edit::Replace), OK);
        assert_eq!(update(Who::Doctor, &world, &old, &old, Edit::Replace), NF);
        // In a closed record the author no longer reaches it.
        let closed = self::world(Closed, vec![]);
        assert_eq!(delete(Who::Stranger, &closed, &old, &[]), NF);
    }

    #[test]
    fn a_resource_never_moves_to_another_record() {
        let world = world(Active, vec![]);
        let old = document(Who::Patient, NONE);
        let moved = Facts {
            patient_id: Some("other".to_owned()),
            ..old.clone()
        };
        assert_eq!(
            update(Who::Patient, &world, &old, &moved, Edit::Replace),
            FB
        );
        let lab = document(Who::Lab, NONE);
        let moved = Facts {
            patient_id: Some("other".to_owned()),
            ..lab.clone()
        };
        assert_eq!(update(Who::Lab, &world, &lab, &moved, Edit::Replace), FB);
        let unfiled = Facts {
            patient_id: None,
            ..lab.clone()
        };
        assert_eq!(update(Who::Lab, &world, &lab, &unfiled, Edit::Replace), FB);
    }

    /// §4: the patient revokes any directive; a professional only the authorization they
    /// recorded for themselves.
    #[test]
    fn revoking_directives() {
        let world = world(Active, vec![auth("p2")]);
        let recorded_by_p2 = row("Consent", "c1", Some(PAT), writer(Who::Stranger));
        let given_by_patient = row("Consent", "c2", Some(PAT), writer(Who::Patient));
        let p2 = [auth("p2")];
        #[rustfmt::skip]
        let cases: Vec<(Who, &Facts, Vec<Directive>, Out)> = vec![
            // who, the Consent (expressing auth("p2")), its new directives, outcome
            (Who::Stranger, &recorded_by_p2,   vec![],                                  OK),
            (Who::Stranger, &recorded_by_p2,   vec![auth_during("p2", None, Some(NOW + 9))], OK),
            (Who::Stranger, &recorded_by_p2,   vec![auth("p1")],                        FB),
            (Who::Stranger, &recorded_by_p2,   vec![block("p1")],                       FB),
            (Who::Stranger, &given_by_patient, vec![],                                  FB),
            (Who::Patient,  &recorded_by_p2,   vec![],                                  OK),
            (Who::Guardian, &recorded_by_p2,   vec![],                                  OK),
            (Who::Doctor,   &recorded_by_p2,   vec![],                                  NF),
            (Who::Lab,      &recorded_by_p2,   vec![],                                  NF),
        ];
        for (who, old, new, expected) in cases {
            assert_eq!(
                update_consent(who, &world, (old, &p2), &new),
                expected,
                "{who:?} changing {} to {new:?}",
                old.id
            );
        }
        assert_eq!(delete(Who::Stranger, &world, &recorded_by_p2, &p2), OK);
        assert_eq!(delete(Who::Stranger, &world, &given_by_patient, &p2), FB);
        assert_eq!(delete(Who::Patient, &world, &recorded_by_p2, &p2), OK);
        let mixed = [auth("p2"), block("p1")];
        assert_eq!(delete(Who::Stranger, &world, &recorded_by_p2, &mixed), FB);
        // Once blocked, not even that.
        let blocked = self::world(Active, vec![auth("p2"), block("p2")]);
        assert_eq!(delete(Who::Stranger, &blocked, &recorded_by_p2, &p2), NF);
    }

    /// Interfaces "Record lifecycle": an opposed record accepts only the person's Consent
    /// changes, so they (or provisioning, for its own) can lift it.
    #[test]
    fn opposed_record_accepts_only_the_person_s_consents() {
        let world = world(Opposed, vec![]);
        let opposition_by_patient = row("Consent", "c1", Some(PAT), writer(Who::Patient));
        let opposition_by_insurer = row("Consent", "c2", Some(PAT), writer(Who::Provisioning));
        let opposed = [opposition()];
        assert_eq!(
            update_consent(
                Who::Patient,
                &world,
                (&opposition_by_patient, &opposed),
                &[]
            ),
            OK
        );
        assert_eq!(
            delete(Who::Patient, &world, &opposition_by_insurer, &opposed),
            OK
        );
        assert_eq!(
            update_consent(
                Who::Guardian,
                &world,
                (&opposition_by_patient, &opposed),
                &[]
            ),
            OK
        );
        assert_eq!(
            update_consent(
                Who::Provisioning,
                &world,
                (&opposition_by_insurer, &opposed),
                &[]
            ),
            OK
        );
        assert_eq!(
            update_consent(
                Who::Provisioning,
                &world,
                (&opposition_by_patient, &opposed),
                &[]
            ),
            NF
        );
        assert_eq!(
            delete(Who::Provisioning, &world, &opposition_by_insurer, &opposed),
            FB
        );
        let own = document(Who::Patient, NONE);
        assert_eq!(update(Who::Patient, &world, &own, &own, Edit::Replace), CL);
        assert_eq!(
            update(
                Who::Patient,
                &world,
                &own,
                &document(Who::Patient, MPS),
                Edit::Relabel
            ),
            CL
        );
        assert_eq!(
            update(
                Who::Patient,
                &world,
                &header(PAT),
                &header(PAT),
                Edit::Replace
            ),
            CL
        );
        assert_eq!(
            update(
                Who::Provisioning,
                &world,
                &header(PAT),
                &header(PAT),
                Edit::Replace
            ),
            OK
        );
    }

    /// §2: a closed record accepts the holder's Consent and Patient changes (reopening it)
    /// and provisioning's administration; nothing else.
    #[test]
    fn closed_record_accepts_the_holder_s_header_and_consents() {
        let world = world(Closed, vec![]);
        assert_eq!(
            update(
                Who::Patient,
                &world,
                &header(PAT),
                &header(PAT),
                Edit::Replace
            ),
            OK
        );
        assert_eq!(
            update(
                Who::Guardian,
                &world,
                &header(PAT),
                &header(PAT),
                Edit::Replace
            ),
            OK
        );
        assert_eq!(
            update(
                Who::Provisioning,
                &world,
                &header(PAT),
                &header(PAT),
                Edit::Replace
            ),
            OK
        );
        assert_eq!(
            update(
                Who::Doctor,
                &world,
                &header(PAT),
                &header(PAT),
                Edit::Replace
            ),
            FB
        );
        let consent = row("Consent", "c1", Some(PAT), writer(Who::Patient));
        assert_eq!(delete(Who::Patient, &world, &consent, &[block("p1")]), OK);
        let own = document(Who::Patient, NONE);
        assert_eq!(update(Who::Patient, &world, &own, &own, Edit::Replace), CL);
        assert_eq!(delete(Who::Patient, &world, &own, &[]), CL);
        let fed = document(Who::Lab, NONE);
        assert_eq!(delete(Who::Lab, &world, &fed, &[]), NF);
    }

    /// §2, interfaces: records and guardianships are written by provisioning alone; a record
    /// is closed, never deleted.
    #[test]
    fn records_are_provisioned() {
        let world = world(Active, vec![]);
        let newcomer = header("newcomer");
        assert_eq!(create(Who::Provisioning, &world, &newcomer, &[]), OK);
        for who in [Who::Patient, Who::Doctor, Who::Lab, Who::App] {
            assert_eq!(create(who, &world, &newcomer, &[]), FB, "{who:?}");
        }
        let related = row("RelatedPerson", "rp2", Some(PAT), writer(Who::Provisioning));
        assert_eq!(create(Who::Provisioning, &world, &related, &[]), OK);
        assert_eq!(create(Who::Patient, &world, &related, &[]), FB);
        assert_eq!(
            update(Who::Patient, &world, &related, &related, Edit::Replace),
            FB
        );
        assert_eq!(
            update(Who::Provisioning, &world, &related, &related, Edit::Replace),
            OK
        );
        assert_eq!(delete(Who::Patient, &world, &header(PAT), &[]), FB);
        assert_eq!(delete(Who::Provisioning, &world, &header(PAT), &[]), FB);
        assert_eq!(delete(Who::Provisioning, &world, &related, &[]), FB);
        // A RelatedPerson may come before its Patient.
        let early = row("RelatedPerson", "rp3", Some("ghost"), None);
        assert_eq!(create(Who::Provisioning, &world, &early, &[]), OK);
    }

    /// Decision: the header carries no labels; a Consent carries none from professionals.
    #[test]
    fn labels_on_headers_and_directives() {
        let world = world(Active, vec![auth("p1")]);
        let masked = Facts {
            labels: MPS,
            ..header(PAT)
        };
        assert_eq!(
            update(Who::Patient, &world, &header(PAT), &masked, Edit::Relabel),
            FB
        );
        let consent = row("Consent", "c1", Some(PAT), writer(Who::Doctor));
        let hidden = Facts {
            labels: IP,
            ..consent.clone()
        };
        let own = [auth("p1")];
        let create_hidden = Version {
            facts: &hidden,
            directives: &own,
        };
        assert_eq!(
            out(may_write(
                &principal(Who::Doctor),
                &world,
                WriteAction::Create { row: create_hidden }
            )),
            FB
        );
        assert_eq!(
            update(Who::Doctor, &world, &consent, &hidden, Edit::Relabel),
            FB
        );
        let patients = row("Consent", "c2", Some(PAT), writer(Who::Patient));
        let masked = Facts {
            labels: MPS,
            ..patients.clone()
        };
        assert_eq!(
            update(Who::Patient, &world, &patients, &masked, Edit::Relabel),
            OK
        );
    }

    /// Outside records: the directory is provisioning's; other rows are their writer's.
    #[test]
    fn writes_outside_records() {
        let world = world(Active, vec![]);
        let organization = row("Organization", "o1", None, writer(Who::Provisioning));
        assert_eq!(create(Who::Provisioning, &world, &organization, &[]), OK);
        assert_eq!(
            update(
                Who::Provisioning,
                &world,
                &organization,
                &organization,
                Edit::Replace
            ),
            OK
        );
        assert_eq!(delete(Who::Provisioning, &world, &organization, &[]), FB);
        for who in [Who::Doctor, Who::Lab, Who::Patient] {
            assert_eq!(create(who, &world, &organization, &[]), FB, "{who:?}");
            assert_eq!(
                update(who, &world, &organization, &organization, Edit::Replace),
                FB,
                "{who:?}"
            );
        }
        let subscription = row("Subscription", "s1", None, writer(Who::Patient));
        assert_eq!(create(Who::Patient, &world, &subscription, &[]), OK);
        assert_eq!(
            update(
                Who::Patient,
                &world,
                &subscription,
                &subscription,
                Edit::Replace
            ),
            OK
        );
        assert_eq!(delete(Who::Patient, &world, &subscription, &[]), OK);
        assert_eq!(delete(Who::OtherPatient, &world, &subscription, &[]), NF);
        assert_eq!(create(Who::Provisioning, &world, &subscription, &[]), FB);
    }

    /// §9: the audit trail is never written through the API.
    #[test]
    fn audit_events_are_the_server_s() {
        let world = world(Active, vec![auth("p1")]);
        let event = row("AuditEvent", "a1", Some(PAT), None);
        for who in [Who::Patient, Who::Doctor, Who::Lab, Who::Provisioning] {
            assert_eq!(create(who, &world, &event, &[]), FB, "{who:?}");
        }
        assert_eq!(delete(Who::Patient, &world, &event, &[]), FB);
    }

    /// §5: a catalogue app adds within its launch patient's active record, and changes nothing.
    #[test]
    fn catalogue_app_writes() {
        let world = world(Active, vec![]);
        let own = document(Who::App, NONE);
        assert_eq!(create(Who::App, &world, &own, &[]), OK);
        assert_eq!(update(Who::App, &world, &own, &own, Edit::Replace), FB);
        assert_eq!(delete(Who::App, &world, &own, &[]), FB);
        let hidden = document(Who::App, IP);
        assert_eq!(
            update(Who::App, &world, &hidden, &hidden, Edit::Replace),
            NF
        );
    }
}
