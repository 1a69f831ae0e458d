//! The profession matrix (domain §5): which documents and which clinical resource types each
//! profession sees in a record it may read. Professions are ANS TRE_G15 codes (the token's
//! `profession` claim); documents are matched by their TRE_A03 class or LOINC type. A
//! profession outside the matrix sees nothing. The default and its rationale are in
//! docs/consent.md, whose TOML block is [`DEFAULT_TOML`] itself.

use super::model::Code;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

/// Which documents a profession sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visible {
    All,
    /// Those with a category or a type among these codes (sorted, never empty).
    Only(Vec<Code>),
    Nothing,
}

/// The matrix: one entry per profession code. Deserialized from `[consent.profession_matrix]`
/// (see [`DEFAULT_TOML`]); a configured matrix replaces the default as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "BTreeMap<String, Entry>")]
pub struct ProfessionMatrix {
    professions: BTreeMap<String, Access>,
}

/// One profession as written in the configuration: `"*"` alone means everything.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// `system|code` of TRE_A03 classes or LOINC types.
    documents: Vec<String>,
    /// Clinical resource types.
    resources: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Grant<T> {
    All,
    Only(BTreeSet<T>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Access {
    documents: Grant<Code>,
    resources: Grant<String>,
}

/// Types that are not the matrix's business: documents and their bytes follow `documents`;
/// the others follow their own rules (the record and directory entries, Consent §4,
/// Communication §6, Appointment §7, the audit trail §9).
const NOT_IN_RESOURCES: &[&str] = &[
    "DocumentReference",
    "Binary",
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "RelatedPerson",
    "Consent",
    "Communication",
    "Appointment",
    "AuditEvent",
];

impl ProfessionMatrix {
    /// The documents `profession` sees.
    pub fn documents(&self, profession: &str) -> Visible {
        match self.professions.get(profession).map(|a| &a.documents) {
            Some(Grant::All) => Visible::All,
            Some(Grant::Only(codes)) if !codes.is_empty() => {
                Visible::Only(codes.iter().cloned().collect())
            }
            _ => Visible::Nothing,
        }
    }

    /// Whether `profession` sees resources of `resource_type`. A DocumentReference or a Binary
    /// is seen when some documents are ([`Self::documents`] says which).
    pub fn resources(&self, profession: &str, resource_type: &str) -> bool {
        if matches!(resource_type, "DocumentReference" | "Binary") {
            return self.documents(profession) != Visible::Nothing;
        }
        match self.professions.get(profession).map(|a| &a.resources) {
            Some(Grant::All) => true,
            Some(Grant::Only(types)) => types.contains(resource_type),
            None => false,
        }
    }
}

impl Default for ProfessionMatrix {
    fn default() -> Self {
        static DEFAULT: LazyLock<ProfessionMatrix> = LazyLock::new(|| {
            let mut table: toml::Table = DEFAULT_TOML.parse().expect("the default matrix is TOML");
            let matrix = table
                .remove("consent")
                .and_then(|mut consent| consent.as_table_mut()?.remove("profession_matrix"))
                .expect("the default is under [consent.profession_matrix]");
            matrix.try_into().expect("the default matrix is valid")
        });
        DEFAULT.clone()
    }
}

impl TryFrom<BTreeMap<String, Entry>> for ProfessionMatrix {
    type Error = String;

    fn try_from(entries: BTreeMap<String, Entry>) -> Result<Self, String> {
        let mut professions = BTreeMap::new();
        for (profession, entry) in entries {
            if profession.is_empty() || !profession.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "consent.profession_matrix: {profession:?} is not a profession code (ANS TRE_G15: digits, e.g. \"10\" for médecin)"
                ));
            }
            let at = format!("consent.profession_matrix.{profession}");
            let documents = grant(&entry.documents, &format!("{at}.documents"), |text| {
                let (system, code) = text
                    .split_once('|')
                    .filter(|(s, c)| !s.is_empty() && !c.is_empty() && !c.contains('|'))
                    .ok_or("is not \"system|code\" (a TRE_A03 class or a LOINC type)")?;
                Ok(Code {
                    system: system.to_owned(),
                    code: code.to_owned(),
                })
            })?;
            let resources = grant(&entry.resources, &format!("{at}.resources"), |name| {
                if NOT_IN_RESOURCES.contains(&name) {
                    return Err("is not governed by `resources` (documents follow `documents`; the record, directory entries, Consents, messages, appointments and the audit trail follow their own rules)");
                }
                if crate::fhir::registry::lookup(name).is_none() {
                    return Err("is not a resource type Carnet serves");
                }
                Ok(name.to_owned())
            })?;
            professions.insert(
                profession,
                Access {
                    documents,
                    resources,
                },
            );
        }
        Ok(ProfessionMatrix { professions })
    }
}

/// A list of the configuration: `["*"]` grants everything, anything else is read item by item.
fn grant<T: Ord>(
    items: &[String],
    at: &str,
    read: impl Fn(&str) -> Result<T, &'static str>,
) -> Result<Grant<T>, String> {
    if items.iter().any(|item| item == "*") {
        return match items.len() {
            1 => Ok(Grant::All),
            _ => Err(format!("{at}: \"*\" means everything and stands alone")),
        };
    }
    items
        .iter()
        .map(|item| read(item).map_err(|why| format!("{at}: {item:?} {why}")))
        .collect::<Result<_, _>>()
        .map(Grant::Only)
}

/// The default matrix, as it would be written in `carnet.toml` (docs/consent.md explains it).
pub const DEFAULT_TOML: &str = r#"# médecin: every document and every clinical resource type.
[consent.profession_matrix.10]
documents = ["*"]
resources = ["*"]

# pharmacien: what is prescribed, dispensed and administered, vaccinations, pharmaceutical
# care, the medical summary (allergies, treatments) and rapid diagnostic tests.
[consent.profession_matrix.21]
documents = [
    "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument|42",  # Prescription
    "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument|43",  # Dispensation
    "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument|45",  # Traitement administré
    "http://loinc.org|60591-5",   # Synthèse médicale
    "http://loinc.org|11369-6",   # Historique des vaccinations
    "http://loinc.org|87273-9",   # Note de vaccination
    "http://loinc.org|96874-3",   # COVID-19 Attestation de vaccination
    "http://loinc.org|56445-0",   # Bilan médicamenteux (Officine)
    "http://loinc.org|61357-0",   # Intervention pharmaceutique
    "http://loinc.org|78601-2",   # CR d'entretien pharmaceutique
    "http://loinc.org|93024-8",   # CR de consultation pharmaceutique
    "http://loinc.org|75468-9",   # Renouvellement ordonnance par pharmacien correspondant
    "http://loinc.org|80820-4",   # Formulaire de conciliation médicamenteuse (Hôpital)
    "http://loinc.org|96173-0",   # Test rapide d'orientation diagnostique
]
resources = ["AllergyIntolerance"]

# chirurgien-dentiste: dental records and imaging, treatments (anticoagulants, bisphosphonates
# matter before an extraction) and the medical summary.
[consent.profession_matrix.40]
documents = [
    "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument|31",  # Imagerie médicale
    "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument|42",  # Prescription
    "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument|43",  # Dispensation
    "http://loinc.org|60591-5",   # Synthèse médicale
    "http://loinc.org|28617-9",   # Bilan bucco-dentaire
    "http://loinc.org|83836-7",   # Schéma dentaire
    "http://loinc.org|18748-4",   # CR d'imagerie médicale
    "http://loinc.org|101881-1",  # Carte d'implant
]
resources = ["AllergyIntolerance"]

# sage-femme: pregnancy, birth and post-partum follow-up (with its biology and ultrasound),
# care plans, treatments and vaccinations of mother and newborn.
[consent.profession_matrix.50]
documents = [
    "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument|31",  # Imagerie médicale
    "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument|42",  # Prescription
    "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument|43",  # Dispensation
    "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument|44",  # Plan de soins, protocole de soins
    "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument|45",  # Traitement administré
    "http://loinc.org|60591-5",   # Synthèse médicale
    "http://loinc.org|11369-6",   # Historique des vaccinations
    "http://loinc.org|87273-9",   # Note de vaccination
    "http://loinc.org|96874-3",   # COVID-19 Attestation de vaccination
    "http://loinc.org|11502-2",   # CR d'examens biologiques
    "http://loinc.org|18748-4",   # CR d'imagerie médicale
    "http://loinc.org|89233-1",   # CR de grossesse
    "http://loinc.org|57055-6",   # Synthèse antepartum
    "http://loinc.org|15508-5",   # CR d'accouchement
    "http://loinc.org|57057-2",   # Synthèse Salle de Naissance Mère
    "http://loinc.org|57075-4",   # Synthèse Salle de Naissance Enfant
    "http://loinc.org|78489-2",   # Synthèse Enfant en Maternité
    "http://loinc.org|89235-6",   # Synthèse Suites de Couches Mère
    "http://loinc.org|97694-4",   # Note d'évaluation en médecine maternelle et fœtale
    "http://loinc.org|100967-9",  # Rythme cardiaque fœtal
    "http://loinc.org|59283-2",   # CR d'examen de l'enfant
]
resources = ["AllergyIntolerance"]

# infirmier: prescriptions to carry out, care plans, nursing records, administered treatments,
# vital signs, vaccinations and the liaison letters that hand a patient over to home care.
[consent.profession_matrix.60]
documents = [
    "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument|42",  # Prescription
    "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument|44",  # Plan de soins, protocole de soins
    "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument|45",  # Traitement administré
    "http://loinc.org|60591-5",   # Synthèse médicale
    "http://loinc.org|11369-6",   # Historique des vaccinations
    "http://loinc.org|87273-9",   # Note de vaccination
    "http://loinc.org|96874-3",   # COVID-19 Attestation de vaccination
    "http://loinc.org|96163-1",   # Bilan de soins infirmiers
    "http://loinc.org|11506-3",   # CR ou fiche de suivi de soins par auxiliaire médical
    "http://loinc.org|18776-5",   # Plan personnalisé de soins
    "http://loinc.org|29274-8",   # Mesures de signes vitaux
    "http://loinc.org|80565-5",   # CR d'administration de médicaments
    "http://loinc.org|11490-0",   # Lettre de liaison à la sortie d'un établissement de soins
    "http://loinc.org|18761-7",   # Note de transfert
]
resources = ["AllergyIntolerance"]
"#;

#[cfg(test)]
mod tests {
    use super::*;

    const A03: &str =
        "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument";
    const LOINC: &str = "http://loinc.org";

    fn code(system: &str, code: &str) -> Code {
        Code {
            system: system.into(),
            code: code.into(),
        }
    }

    fn parse(text: &str) -> Result<ProfessionMatrix, String> {
        toml::from_str(text).map_err(|e: toml::de::Error| e.message().to_owned())
    }

    /// Whether `visible` lets a document with these codes through.
    fn sees(visible: &Visible, codes: &[Code]) -> bool {
        match visible {
            Visible::All => true,
            Visible::Only(allowed) => codes.iter().any(|c| allowed.contains(c)),
            Visible::Nothing => false,
        }
    }

    #[test]
    fn the_default_decides_documents_by_class_or_type() {
        let matrix = ProfessionMatrix::default();
        let prescription = [code(A03, "42"), code(LOINC, "57833-6")];
        let consultation = [code(A03, "10"), code(LOINC, "11488-4")];
        let vaccination = [code(A03, "10"), code(LOINC, "87273-9")];
        let dental_chart = [code(A03, "11"), code(LOINC, "83836-7")];
        let biology = [code(A03, "10"), code(LOINC, "11502-2")];
        let care_plan = [code(A03, "44"), code(LOINC, "18776-5")];
        let reimbursement = [code(A03, "60")];
        // The same code in another system is another code.
        let lookalike = [code("urn:other", "42")];
        let cases: [(&str, &[Code], bool); 24] = [
            ("10", &consultation, true),
            ("10", &reimbursement, true),
            ("10", &lookalike, true),
            ("21", &prescription, true),
            ("21", &vaccination, true),
            ("21", &consultation, false),
            ("21", &biology, false),
            ("21", &lookalike, false),
            ("40", &dental_chart, true),
            ("40", &prescription, true),
            ("40", &vaccination, false),
            ("40", &care_plan, false),
            ("50", &biology, true),
            ("50", &care_plan, true),
            ("50", &consultation, false),
            ("50", &reimbursement, false),
            ("60", &care_plan, true),
            ("60", &vaccination, true),
            ("60", &biology, false),
            ("60", &dental_chart, false),
            // Professions outside the matrix see nothing.
            ("70", &prescription, false),
            ("", &prescription, false),
            ("10 ", &consultation, false),
            ("ten", &consultation, false),
        ];
        for (profession, codes, expected) in cases {
            assert_eq!(
                sees(&matrix.documents(profession), codes),
                expected,
                "{profession} {codes:?}"
            );
        }
        assert_eq!(matrix.documents("10"), Visible::All);
        assert_eq!(matrix.documents("86"), Visible::Nothing);
    }

    #[test]
    fn the_default_decides_resource_types() {
        let matrix = ProfessionMatrix::default();
        let cases = [
            ("10", "AllergyIntolerance", true),
            ("10", "List", true),
            ("10", "DocumentReference", true),
            ("21", "AllergyIntolerance", true),
            ("21", "List", false),
            ("21", "DocumentReference", true),
            ("21", "Binary", true),
            ("60", "AllergyIntolerance", true),
            ("99", "AllergyIntolerance", false),
            ("99", "DocumentReference", false),
            ("99", "Binary", false),
        ];
        for (profession, resource_type, expected) in cases {
            assert_eq!(
                matrix.resources(profession, resource_type),
                expected,
                "{profession} {resource_type}"
            );
        }
    }

    #[test]
    fn a_configured_matrix_replaces_the_default() {
        let matrix = parse(&format!(
            r#"
"60" = {{ documents = ["{A03}|44", "{LOINC}|96163-1", "{A03}|44"], resources = [] }}
"21" = {{ documents = [], resources = ["*"] }}
"#
        ))
        .unwrap();
        assert_eq!(
            matrix.documents("60"),
            Visible::Only(vec![code(LOINC, "96163-1"), code(A03, "44")])
        );
        assert!(!matrix.resources("60", "AllergyIntolerance"));
        assert!(matrix.resources("60", "DocumentReference"));
        assert_eq!(matrix.documents("21"), Visible::Nothing);
        assert!(!matrix.resources("21", "DocumentReference"));
        assert!(matrix.resources("21", "AllergyIntolerance"));
        assert_eq!(matrix.documents("10"), Visible::Nothing);
        assert!(!matrix.resources("10", "AllergyIntolerance"));
    }

    #[test]
    fn invalid_matrices_are_refused_with_the_key_at_fault() {
        let cases = [
            (r#""" = { documents = [], resources = [] }"#, "\"\" is not a profession code"),
            (r#""1a" = { documents = [], resources = [] }"#, "\"1a\" is not a profession code"),
            (r#"" 10" = { documents = [], resources = [] }"#, "\" 10\" is not a profession code"),
            (r#""10" = { documents = [], resources = [], see = [] }"#, "unknown field `see`"),
            (r#""10" = { documents = [] }"#, "missing field `resources`"),
            (r#""10" = { documents = ["42"], resources = [] }"#, "consent.profession_matrix.10.documents: \"42\" is not \"system|code\""),
            (r#""10" = { documents = ["|42"], resources = [] }"#, "\"|42\" is not"),
            (r#""10" = { documents = ["http://loinc.org|"], resources = [] }"#, "is not \"system|code\""),
            (r#""10" = { documents = ["a|b|c"], resources = [] }"#, "is not \"system|code\""),
            (r#""10" = { documents = ["*", "a|b"], resources = [] }"#, "consent.profession_matrix.10.documents: \"*\" means everything and stands alone"),
            (r#""10" = { documents = [], resources = ["Allergyintolerance"] }"#, "consent.profession_matrix.10.resources: \"Allergyintolerance\" is not a resource type Carnet serves"),
            (r#""10" = { documents = [], resources = ["DocumentReference"] }"#, "\"DocumentReference\" is not governed by `resources`"),
            (r#""10" = { documents = [], resources = ["Communication"] }"#, "\"Communication\" is not governed by `resources`"),
            (r#""10" = { documents = "*", resources = [] }"#, "invalid type"),
        ];
        for (text, expected) in cases {
            let error = parse(text).expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn the_documented_default_is_the_default() {
        let doc = include_str!("../../docs/consent.md");
        assert!(
            doc.contains(DEFAULT_TOML),
            "docs/consent.md must quote DEFAULT_TOML verbatim"
        );
        let default = ProfessionMatrix::default();
        assert_eq!(
            default.professions.keys().collect::<Vec<_>>(),
            ["10", "21", "40", "50", "60"]
        );
    }
}
