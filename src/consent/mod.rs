//! The consent engine: the only place that says yes or no.
//!
//! Every access to stored data starts with a decision here. A refusal is a [`Denied`]; a
//! permission is a [`Restriction`], the rows the caller may see, which the query builder
//! (`search::sql`) renders into every query it writes. A `Restriction` can only be made here,
//! and every query of the store takes one, so a path that forgets to ask does not compile.
//!
//! Today the decision applies the token's SMART scopes (a scope never widens a rule); the
//! record rules of the domain (§2–§5, §8) narrow the restriction further.

pub mod facts;
pub mod limiter;
pub mod matrix;
pub mod model;
pub mod policy;
pub mod writes;

use crate::auth::principal::{Principal, Purpose};
use crate::auth::scopes::Interaction;
use crate::auth::Access;
use crate::fhir::registry::{self, ResourceKind};
use crate::search::query::{patient_compartment_params, Criterion, ReferenceMatch, Search, Test};
use matrix::{ProfessionMatrix, Visible};
use model::Writer;

/// A refusal: the caller may not do this at all (403, with this text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied(pub String);

/// The rows a permitted caller may see: [`policy::may_read`] for one principal at one instant,
/// as the query builder renders it into SQL for each table alias ([`Restriction::rule`]).
/// Opaque outside this module: only a decision makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restriction {
    rule: Rule,
    /// The instant directive periods and guardianships are judged at (microseconds): the
    /// request's, so a revoked directive stops serving on the very next request.
    now: i64,
    /// For a write's lookups: a professional also reaches what they authored in an open record
    /// that does not block them, to replace or delete it (§5), without reading it.
    writing: bool,
    /// How far record headers reach for those who read headers of records they have no
    /// business in (see [`Headers`]).
    headers: Headers,
    /// A search pinned to one record (see [`InRecord`]).
    record: Option<InRecord>,
}

/// A search that names one patient reaches that patient's record only: its rows carry that
/// compartment patient id, and the facts of the record the rules depend on (opposition,
/// blocks, authorizations…) are asked of that id as a value, in the search's own statement —
/// uncorrelated subqueries both engines evaluate once — so the search is one round trip and
/// the query asks per row only what differs between rows (labels, type, class, writer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InRecord {
    patient_id: String,
    through_header: bool,
}

impl InRecord {
    /// The record's patient id.
    pub fn patient_id(&self) -> &str {
        &self.patient_id
    }

    /// The search named the record by its header (a chain on the patient's identifier): the
    /// header must be one the caller may list, as the chain would have required.
    pub fn through_header(&self) -> bool {
        self.through_header
    }
}

/// Feeding systems and professionals read the header (the Patient) of a record they have no
/// business in only when they name it: they find a record by INS, or read it by id, to feed it
/// (§2). A listing — a search not naming one patient, a type or system history, an include, a
/// chain, a `_has`, a conditional match on another criterion — shows only the headers of
/// records they have business in (see [`policy::may_list`]), so that no one walks the
/// national register of names, INS and birth dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Headers {
    /// The caller named the record: its header is found while the record is not opposed.
    Named,
    /// A listing: headers only of records the caller has business in.
    Listed,
}

/// What a [`Restriction`] keeps, per principal (see [`policy::may_read`], whose rules these
/// are, for each case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    Patient {
        id: String,
        writer: String,
    },
    Guardian {
        related_person_id: String,
        writer: String,
    },
    App {
        patient_id: String,
        writer: String,
    },
    Provisioning {
        writer: String,
    },
    Feeder {
        writer: String,
        /// The registered organization, `system|value` split.
        organization: (Option<String>, String),
    },
    Professional {
        practitioner_id: String,
        organization_id: String,
        writer: String,
        /// Break-glass declared: reads without authorization unless a directive refuses it.
        break_glass: bool,
        /// Which documents their profession sees.
        documents: Visible,
        /// Which other resource types their profession sees.
        types: Vec<&'static str>,
    },
}

impl Rule {
    /// Who the caller writes as (a writer key).
    pub fn writer(&self) -> &str {
        match self {
            Rule::Patient { writer, .. }
            | Rule::Guardian { writer, .. }
            | Rule::App { writer, .. }
            | Rule::Provisioning { writer }
            | Rule::Feeder { writer, .. }
            | Rule::Professional { writer, .. } => writer,
        }
    }
}

impl Restriction {
    /// What the query builder renders.
    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// The instant the restriction is judged at.
    pub fn now(&self) -> i64 {
        self.now
    }

    /// Whether this is a write's lookup (see the field).
    pub fn writing(&self) -> bool {
        self.writing
    }

    /// How far record headers reach (see [`Headers`]).
    pub fn headers(&self) -> Headers {
        self.headers
    }

    /// The same restriction for rows the caller did not name: includes, chains, `_has`
    /// (narrower, never wider).
    pub fn listing(&self) -> Restriction {
        Restriction {
            headers: Headers::Listed,
            record: None,
            ..self.clone()
        }
    }

    /// The record a search is pinned to, if it is (see [`InRecord`]).
    pub fn record(&self) -> Option<&InRecord> {
        self.record.as_ref()
    }

    /// This restriction pinned to the record of `patient_id`, a search naming it by id (see
    /// [`InRecord`]): narrower, never wider — the same rules, for that record's rows only.
    /// `through_header`: the search named the record by its header (see
    /// [`InRecord::through_header`]).
    pub fn in_record(&self, patient_id: &str, through_header: bool) -> Restriction {
        Restriction {
            record: Some(InRecord {
                patient_id: patient_id.to_owned(),
                through_header,
            }),
            ..self.clone()
        }
    }

    /// The restriction a conditional interaction's match on `param` of `resource_type` runs
    /// under: what the caller may read (a match is answered, or acted on, as something found),
    /// never a write's wider reach; a Patient named by its id or one identifier is named, any
    /// other criterion lists.
    pub fn matching(&self, resource_type: &str, param: Option<&str>) -> Restriction {
        let reading = self.reading();
        match (resource_type, param) {
            ("Patient", None | Some("identifier")) => reading,
            _ => reading.listing(),
        }
    }

    /// The same restriction for reading: without a write's reach to what the caller authored
    /// but may not read (narrower, never wider). A patch reads what it changes.
    pub fn reading(&self) -> Restriction {
        Restriction {
            writing: false,
            record: None,
            ..self.clone()
        }
    }
}

/// The consent engine's settings and state, shared by every request.
#[derive(Debug, Clone)]
pub struct Engine {
    pub matrix: ProfessionMatrix,
    /// Distinct patients each professional read this hour (domain §5).
    pub patients_per_hour: std::sync::Arc<limiter::PatientsPerHour>,
}

impl Engine {
    pub fn new(matrix: ProfessionMatrix, professional_patients_per_hour: u32) -> Engine {
        Engine {
            matrix,
            patients_per_hour: std::sync::Arc::new(limiter::PatientsPerHour::new(
                professional_patients_per_hour,
            )),
        }
    }

    /// Records the patients whose resources `principal` is about to be answered; a
    /// professional over the hourly limit is refused ([`limiter::Slowed`]: 429).
    pub fn touch<'a>(
        &self,
        principal: &Principal,
        patients: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), limiter::Slowed> {
        let Principal::Professional {
            practitioner_id, ..
        } = principal
        else {
            return Ok(());
        };
        self.patients_per_hour.touch(practitioner_id, patients)
    }
}

impl Default for Engine {
    /// The default matrix and limit of `[consent]`.
    fn default() -> Engine {
        let settings = crate::config::Consent::default();
        Engine::new(
            settings.profession_matrix,
            settings.professional_patients_per_hour,
        )
    }
}

/// The profession matrix, as the reference policy consults it.
impl policy::Professions for ProfessionMatrix {
    fn sees_document(&self, profession: &str, classes: &[model::Code]) -> bool {
        match self.documents(profession) {
            Visible::All => true,
            Visible::Only(codes) => classes.iter().any(|c| codes.contains(c)),
            Visible::Nothing => false,
        }
    }

    fn sees_type(&self, profession: &str, resource_type: &str) -> bool {
        self.resources(profession, resource_type)
    }
}

impl Engine {
    /// The restriction of `principal` now.
    fn restriction(&self, principal: &Principal) -> Restriction {
        let writer = writer_of(principal).key();
        let rule = match principal {
            Principal::Patient { id } => Rule::Patient {
                id: id.clone(),
                writer,
            },
            Principal::Guardian { related_person_id } => Rule::Guardian {
                related_person_id: related_person_id.clone(),
                writer,
            },
            Principal::CatalogueApp { patient_id, .. } => Rule::App {
                patient_id: patient_id.clone(),
                writer,
            },
            Principal::Provisioning { .. } => Rule::Provisioning { writer },
            Principal::FeedingSystem { organization, .. } => Rule::Feeder {
                writer,
                organization: match organization.split_once('|') {
                    Some((system, value)) => (Some(system.to_owned()), value.to_owned()),
                    None => (None, organization.clone()),
                },
            },
            Principal::Professional {
                practitioner_id,
                profession,
                organization,
                purpose,
            } => Rule::Professional {
                practitioner_id: practitioner_id.clone(),
                organization_id: organization.clone(),
                writer,
                break_glass: matches!(purpose, Purpose::BreakGlass { .. }),
                documents: self.matrix.documents(profession),
                types: registry::all()
                    .iter()
                    .map(|k| k.name)
                    .filter(|t| *t != "DocumentReference")
                    .filter(|t| self.matrix.resources(profession, t))
                    .collect(),
            },
        };
        Restriction {
            rule,
            now: crate::fhir::resource::now_micros(),
            writing: false,
            headers: Headers::Named,
            record: None,
        }
    }

    /// [`Restriction::in_record`] for the record of the one current Patient with the identifier
    /// `system|value`, found by the identifier lookup first (one probe, not one per record);
    /// `None` when not exactly one Patient has it (the search then runs unpinned).
    pub fn in_record_of_identifier(
        &self,
        store: &crate::store::Store,
        restriction: &Restriction,
        (system, value): (&str, &str),
        through_header: bool,
    ) -> Result<Option<(String, Restriction)>, crate::store::StoreError> {
        match store.patients_with_identifier(system, value)?.as_slice() {
            [patient_id] => {
                let pinned = restriction.in_record(patient_id, through_header);
                Ok(Some((patient_id.clone(), pinned)))
            }
            _ => Ok(None),
        }
    }
}

/// What a permitted write may do: read its target with the restriction, create or not, and
/// record who wrote it.
#[derive(Debug, Clone)]
pub struct WriteGrant {
    /// The rows the write may find (its target, a conditional match).
    pub restriction: Restriction,
    /// An update or conditional update that would create is refused otherwise.
    pub may_create: bool,
    /// Kept on every resource this write creates.
    pub writer: Writer,
    /// Who writes, for the decision on each version ([`WriteGrant::check`]).
    principal: Principal,
    engine: Engine,
}

impl WriteGrant {
    /// May the caller create `new`, replace `old` by `new`, or delete `old`? Decided inside
    /// the write's unit of work, on the record as it is now.
    pub fn check(
        &self,
        unit: &mut crate::store::Unit<'_>,
        old: Option<&crate::store::Version>,
        new: Option<&crate::store::NewVersion>,
    ) -> Result<(), writes::Verdict> {
        self.engine
            .check_write(unit, &self.principal, self.restriction.now, old, new)
    }
}

impl Engine {
    /// May `access` do each of `interactions` on `kind`? The restriction to read it with if so.
    /// Read, vread, instance history and Binary content ask for `Read`; searches and type history
    /// for `Search`.
    pub fn decide(
        &self,
        access: &Access,
        kind: &ResourceKind,
        interactions: &[Interaction],
    ) -> Result<Restriction, Denied> {
        match interactions
            .iter()
            .find(|i| !access.scope_allows(kind.name, **i))
        {
            None => Ok(self.restriction(&access.principal)),
            Some(missing) => Err(Denied(format!(
                "the token's scopes do not allow {} on {} (needs the `{}` permission)",
                interaction_name(*missing),
                kind.name,
                letter(*missing)
            ))),
        }
    }

    /// A write of `interactions` (create, update, delete; conditional forms add search and read)
    /// on `kind`.
    pub fn decide_write(
        &self,
        access: &Access,
        kind: &ResourceKind,
        interactions: &[Interaction],
    ) -> Result<WriteGrant, Denied> {
        let mut restriction = self.decide(access, kind, interactions)?;
        // A conditional write searches (its criteria): across records, which a professional
        // may not do (§5); they name the resource by id instead.
        let conditional_change = interactions.contains(&Interaction::Search)
            && !interactions.contains(&Interaction::Create);
        if matches!(access.principal, Principal::Professional { .. }) && conditional_change {
            return Err(Denied(
                "a professional's search must name one patient, and a conditional update, \
                 patch or delete searches across records: address the resource by its id"
                    .to_owned(),
            ));
        }
        restriction.writing = true;
        Ok(WriteGrant {
            restriction,
            may_create: access.scope_allows(kind.name, Interaction::Create),
            writer: writer_of(&access.principal),
            principal: access.principal.clone(),
            engine: self.clone(),
        })
    }

    /// History of the whole server lists every type's versions: the token must be allowed to search
    /// them all.
    pub fn decide_system_history(&self, access: &Access) -> Result<Restriction, Denied> {
        across_patients(access)?;
        for kind in registry::all() {
            self.decide(access, kind, &[Interaction::Search])?;
        }
        Ok(self.restriction(&access.principal).listing())
    }

    /// History of every resource of `kind`: across patients, so not for a professional.
    pub fn decide_type_history(
        &self,
        access: &Access,
        kind: &ResourceKind,
    ) -> Result<Restriction, Denied> {
        let restriction = self.decide(access, kind, &[Interaction::Search])?;
        across_patients(access)?;
        Ok(restriction.listing())
    }

    /// The types a system-level search without `_type` covers: those the token may search.
    pub fn searchable_types(&self, access: &Access) -> Vec<&'static ResourceKind> {
        registry::all()
            .iter()
            .filter(|k| access.scope_allows(k.name, Interaction::Search))
            .collect()
    }

    /// `Patient/{id}/$everything`: the types of the patient compartment the token may search
    /// (the Patient first, then the others by name; the rest are left out, not refused), and
    /// the restriction under which the Patient itself must be visible for the operation to
    /// answer at all. That check reads the record rules, not the scopes: a token may search
    /// the patient's documents without being allowed to read the Patient, and the operation
    /// still answers 404 for a patient the caller may not see. Refused when the token may
    /// search no type of the compartment.
    pub fn decide_everything(
        &self,
        access: &Access,
    ) -> Result<(Vec<&'static ResourceKind>, Restriction), Denied> {
        let mut kinds: Vec<&'static ResourceKind> = registry::all()
            .iter()
            .filter(|k| k.name == "Patient" || !patient_compartment_params(k.name).is_empty())
            .filter(|k| access.scope_allows(k.name, Interaction::Search))
            .collect();
        kinds.sort_by_key(|k| (k.name != "Patient", k.name));
        if kinds.is_empty() {
            return Err(Denied(
                "the token's scopes allow searching no type of the patient compartment".to_owned(),
            ));
        }
        Ok((kinds, self.restriction(&access.principal)))
    }

    /// A search of `search.resource_type`: chains and `_has` search other types, and includes
    /// return them, so the token must allow searching those types too. Includes keep only the
    /// types the token may read. Gives the search to run and its restriction.
    pub fn decide_search(
        &self,
        access: &Access,
        mut search: Search,
    ) -> Result<(Search, Restriction), Denied> {
        let kind = known(&search.resource_type)?;
        let mut restriction = self.decide(access, kind, &[Interaction::Search])?;
        if !names_one_header(&search) {
            restriction = restriction.listing();
        }
        if matches!(access.principal, Principal::Professional { .. }) && !names_one_patient(&search)
        {
            return Err(Denied(format!(
                "a professional's search must name one patient: add patient=, subject=, \
                 patient.identifier= (or search Patient/{{id}}/{})",
                search.resource_type
            )));
        }
        let mut types = Vec::new();
        for criterion in &search.criteria {
            searched_types(criterion, &mut types);
        }
        for name in types {
            self.decide(access, known(name)?, &[Interaction::Search])?;
        }
        for include in &mut search.includes {
            if include.reverse {
                self.decide(access, known(&include.source_type)?, &[Interaction::Read])?;
            } else {
                include
                    .target_types
                    .retain(|t| access.scope_allows(t, Interaction::Read));
                if include.target_types.is_empty() {
                    return Err(Denied(format!(
                        "the token's scopes allow reading none of the types {}:{} refers to",
                        include.source_type, include.param
                    )));
                }
            }
        }
        Ok((search, restriction))
    }
}

/// A professional reads one patient's record at a time (domain §5: no cross-patient search,
/// no bulk export): a listing across patients is refused.
fn across_patients(access: &Access) -> Result<(), Denied> {
    match access.principal {
        Principal::Professional { .. } => Err(Denied(
            "a professional reads one patient's record at a time: search with the patient \
             named, or read a resource's own history"
                .to_owned(),
        )),
        _ => Ok(()),
    }
}

/// Whether a search names one patient (domain §5: a professional may not search across
/// patients): a reference to one patient (`patient=`, `subject=Patient/…`), a chain to one
/// patient by identifier (`patient.identifier=`), the patient compartment, or, on Patient, one
/// `_id` or one identifier.
fn names_one_patient(search: &Search) -> bool {
    search.criteria.iter().any(
        |criterion| match (criterion.key.as_str(), &criterion.test) {
            (crate::search::query::COMPARTMENT, _) => true,
            ("patient", Test::Reference(references)) => references.len() == 1,
            // A subject may be a Device or a Group, whose documents take their record from
            // another element (their author): only a Patient subject names one record.
            ("subject", Test::Reference(references)) => matches!(
                references.as_slice(),
                [ReferenceMatch::Local { target_type: Some(t), .. }] if t == "Patient"
            ),
            ("patient" | "subject", Test::Chain(targets)) => {
                targets.len() == 1
                    && targets[0].0 == "Patient"
                    && targets[0].1.key == "identifier"
                    && one_token(&targets[0].1.test)
            }
            _ => false,
        },
    ) || names_one_header(search)
}

/// Whether a search of Patient names one: one `_id`, one `system|value` identifier (an INS), or the
/// patient's compartment (`Patient/{id}/Patient`, `$everything`: the patient and the records
/// that link to it as the same person).
fn names_one_header(search: &Search) -> bool {
    search.resource_type == "Patient"
        && search.criteria.iter().any(
            |criterion| match (criterion.key.as_str(), &criterion.test) {
                (crate::search::query::COMPARTMENT, _) => true,
                ("_id", Test::Id(ids)) => ids.len() == 1,
                ("identifier", test) => one_token(test),
                _ => false,
            },
        )
}

/// One identifier, `system|value`, not negated: an identifier names one person only within
/// its system (the same local number may be two patients' in two hospitals).
fn one_token(test: &Test) -> bool {
    matches!(test, Test::Token { negate: false, values }
        if values.len() == 1
            && values[0].code.is_some()
            && matches!(values[0].system, crate::store::SystemMatch::Is(_)))
}

/// The types a criterion searches besides its own: chain targets and `_has` sources.
fn searched_types<'a>(criterion: &'a Criterion, out: &mut Vec<&'a str>) {
    match &criterion.test {
        Test::Chain(targets) => {
            for (target, inner) in targets {
                out.push(target);
                searched_types(inner, out);
            }
        }
        Test::Has {
            source_type, inner, ..
        } => {
            out.push(source_type);
            searched_types(inner, out);
        }
        _ => {}
    }
}

/// A type the parser accepted is registered; refuse rather than panic if not.
fn known(name: &str) -> Result<&'static ResourceKind, Denied> {
    registry::lookup(name).ok_or_else(|| Denied(format!("{name} is not served here")))
}

/// Who a write by `principal` is recorded as written by.
pub fn writer_of(principal: &Principal) -> Writer {
    match principal {
        Principal::Patient { id } => Writer::Patient(id.clone()),
        Principal::Guardian { related_person_id } => Writer::Guardian(related_person_id.clone()),
        Principal::Professional {
            practitioner_id, ..
        } => Writer::Practitioner(practitioner_id.clone()),
        Principal::FeedingSystem { client_id, .. } => Writer::System(client_id.clone()),
        Principal::CatalogueApp {
            client_id,
            patient_id,
        } => Writer::App {
            client_id: client_id.clone(),
            patient_id: patient_id.clone(),
        },
        Principal::Provisioning { client_id } => Writer::Provisioning(client_id.clone()),
    }
}

fn interaction_name(interaction: Interaction) -> &'static str {
    match interaction {
        Interaction::Create => "create",
        Interaction::Read => "read",
        Interaction::Update => "update",
        Interaction::Delete => "delete",
        Interaction::Search => "search",
    }
}

fn letter(interaction: Interaction) -> char {
    match interaction {
        Interaction::Create => 'c',
        Interaction::Read => 'r',
        Interaction::Update => 'u',
        Interaction::Delete => 'd',
        Interaction::Search => 's',
    }
}
