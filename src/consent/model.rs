//! The facts the consent engine decides on. They are extracted once, when a resource is
//! written, and stored beside it (the resource's row) or beside its record (the patient's
//! row and directive rows), so that a decision never parses a body.

/// The TRE_A07 visibility labels a resource carries, as a set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Labels(u8);

impl Labels {
    pub const NONE: Labels = Labels(0);
    /// Hidden from every professional but the resource's author; break-glass does not reveal it.
    pub const MASQUE_PS: Labels = Labels(1);
    /// Hidden from the patient, their guardians and catalogue apps.
    pub const INVISIBLE_PATIENT: Labels = Labels(2);
    /// Hidden from the guardians of a minor.
    pub const INVISIBLE_REPRESENTANTS_LEGAUX: Labels = Labels(4);

    /// The code system of the labels (ANS TRE_A07).
    pub const SYSTEM: &'static str = "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument";

    /// Every label with its TRE_A07 code.
    pub const ALL: [(Labels, &'static str); 3] = [
        (Labels::MASQUE_PS, "MASQUE_PS"),
        (Labels::INVISIBLE_PATIENT, "INVISIBLE_PATIENT"),
        (
            Labels::INVISIBLE_REPRESENTANTS_LEGAUX,
            "INVISIBLE_REPRESENTANTS_LEGAUX",
        ),
    ];

    /// As stored in the `labels` column (and compared in SQL with `&`).
    pub fn bits(self) -> i64 {
        i64::from(self.0)
    }

    /// From the `labels` column; unknown bits are kept (they can only hide more).
    pub fn from_bits(bits: i64) -> Labels {
        Labels((bits & 0xff) as u8)
    }

    pub fn contains(self, other: Labels) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn union(self, other: Labels) -> Labels {
        Labels(self.0 | other.0)
    }

    pub fn without(self, other: Labels) -> Labels {
        Labels(self.0 & !other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// Who wrote a resource: the principal that created it, kept for its whole life (only its
/// author may replace or delete it; a feeding system reads only what it wrote).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Writer {
    Patient(String),
    /// A guardian, by their RelatedPerson id.
    Guardian(String),
    Practitioner(String),
    /// A feeding system, by its client id.
    System(String),
    /// A catalogue app as launched for one patient: an app's writes for one patient are not
    /// its writes for another (what it wrote outside any record stays with that patient).
    App {
        client_id: String,
        patient_id: String,
    },
    /// A provisioning client, by its client id.
    Provisioning(String),
}

impl Writer {
    /// As stored in the `writer` column: `Patient/1`, `RelatedPerson/2`, `Practitioner/3`,
    /// `client/lab-biomed-75`, `app/x/{launch patient id}`, `provisioning/y`.
    pub fn key(&self) -> String {
        match self {
            Writer::Patient(id) => format!("Patient/{id}"),
            Writer::Guardian(id) => format!("RelatedPerson/{id}"),
            Writer::Practitioner(id) => format!("Practitioner/{id}"),
            Writer::System(id) => format!("client/{id}"),
            Writer::App {
                client_id,
                patient_id,
            } => format!("app/{client_id}/{patient_id}"),
            Writer::Provisioning(id) => format!("provisioning/{id}"),
        }
    }

    /// The inverse of [`Writer::key`].
    pub fn from_key(key: &str) -> Option<Writer> {
        let (kind, id) = key.split_once('/')?;
        let id = id.to_owned();
        Some(match kind {
            "Patient" => Writer::Patient(id),
            "RelatedPerson" => Writer::Guardian(id),
            "Practitioner" => Writer::Practitioner(id),
            "client" => Writer::System(id),
            "app" => {
                // A patient id holds no `/` (FHIR id syntax); a client id might.
                let (client_id, patient_id) = id.rsplit_once('/')?;
                Writer::App {
                    client_id: client_id.to_owned(),
                    patient_id: patient_id.to_owned(),
                }
            }
            "provisioning" => Writer::Provisioning(id),
            _ => return None,
        })
    }
}

/// Whom a directive names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Actor {
    Practitioner(String),
    Organization(String),
}

/// When a directive applies: `[start, end)`, microseconds since the Unix epoch; an open end
/// is unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Period {
    pub start: Option<i64>,
    pub end: Option<i64>,
}

impl Period {
    pub const ALWAYS: Period = Period {
        start: None,
        end: None,
    };

    pub fn contains(&self, now: i64) -> bool {
        self.start.is_none_or(|s| s <= now) && self.end.is_none_or(|e| now < e)
    }
}

/// A RelatedPerson that makes its holder a minor's legal representative (domain §8), while
/// `period` (`RelatedPerson.period`) is in force and the minor is under 18.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Guardianship {
    /// The minor's Patient id.
    pub minor: String,
    pub period: Period,
}

/// One rule of the patient's (domain §4, interfaces "Record lifecycle"), from an active
/// patient-privacy Consent or from `Patient.generalPractitioner`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Directive {
    /// General opt-out: deny, no actor, purpose, class or data. The record is opposed.
    Opposition { period: Period },
    /// Deny naming a Practitioner or an Organization: that party reads and writes nothing.
    Block { actor: Actor, period: Period },
    /// Deny with `provision.purpose = BTG`: break-glass is refused.
    RefuseBreakGlass { period: Period },
    /// Permit naming a Practitioner (also the general practitioner): they may read.
    Authorize {
        practitioner: String,
        period: Period,
    },
}

/// Whether a record accepts data and who reads it (domain §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordState {
    Active,
    /// The person opposed the record: every feed refused; nobody but the person reads.
    Opposed,
    /// Closed by the holder: feeds refused; professionals read nothing; the holder reads.
    Closed,
}

/// What the engine knows of one record (one patient).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub patient_id: String,
    /// `Patient.active`, true when absent.
    pub active: bool,
    /// The instant guardianship ends: 00:00 Europe/Paris on the 18th birthday
    /// (`Patient.birthDate`), microseconds since the Unix epoch; `None` without a birth date.
    pub adult_at: Option<i64>,
    /// Directives of active patient-privacy Consents, and the general practitioner(s).
    pub directives: Vec<Directive>,
}

impl Record {
    /// The record's state at `now`: an opposition in force wins over closure.
    pub fn state(&self, now: i64) -> RecordState {
        let opposed = self
            .directives
            .iter()
            .any(|d| matches!(d, Directive::Opposition { period } if period.contains(now)));
        match (opposed, self.active) {
            (true, _) => RecordState::Opposed,
            (false, false) => RecordState::Closed,
            (false, true) => RecordState::Active,
        }
    }
}

/// A coded value (`system|code`), e.g. a document's TRE_A03 class or LOINC type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code {
    pub system: String,
    pub code: String,
}

/// What a decision needs of one stored resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub resource_type: String,
    pub id: String,
    /// The patient whose compartment holds it (a Patient: itself).
    pub patient_id: Option<String>,
    pub labels: Labels,
    /// Who created it (`None` for rows written before writers were kept, or bulk imports).
    pub writer: Option<Writer>,
    /// The practitioners it names as authors (`DocumentReference.author` and the like).
    pub authors: Vec<String>,
    /// Its class and type codes (a DocumentReference's `category` and `type`).
    pub classes: Vec<Code>,
}
