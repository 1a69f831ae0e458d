//! The synthetic population and its bulk load: general practitioners, patients (each with one
//! of them as `generalPractitioner`, which authorizes that practitioner on the record) and
//! their DocumentReferences, loaded with `Store::import` (index rows and consent facts alike).

use carnet::fhir::resource::stamp;
use carnet::search::index::rows;
use carnet::store::{NewVersion, Store};
use serde_json::{json, Value};
use std::time::Instant;

pub const NIR: &str = "urn:oid:1.2.250.1.213.1.4.8";
const RPPS: &str = "urn:oid:1.2.250.1.71.4.2.1";
pub const LOINC: &str = "http://loinc.org";
pub const TYPES: [(&str, &str); 6] = [
    ("11488-4", "Consult note"),
    ("18842-5", "Discharge summary"),
    ("11502-2", "Laboratory report"),
    ("18748-4", "Diagnostic imaging study"),
    ("34133-9", "Summary of episode note"),
    ("57833-6", "Prescription for medication"),
];
const FAMILIES: [&str; 12] = [
    "Martin",
    "Bernard",
    "Lévy-Durand",
    "Lefèvre",
    "Lévêque",
    "Œuvray",
    "Dubois",
    "Nguyen",
    "Moreau",
    "Müller",
    "D'Arcy",
    "Fontaine",
];
const GIVEN: [&str; 8] = [
    "Éloïse",
    "François",
    "Zoé",
    "Jean-Noël",
    "Anh",
    "Chloé",
    "Loïc",
    "Inès",
];

/// The sizes of the population.
#[derive(Clone, Copy)]
pub struct Sizes {
    pub patients: usize,
    pub documents: usize,
    /// General practitioners, `gp0`…: patient `i` has `gp{i % practitioners}`.
    pub practitioners: usize,
}

impl Sizes {
    /// The general practitioner of patient `i`.
    pub fn gp_of(&self, patient: usize) -> usize {
        patient % self.practitioners
    }

    /// The patient document `j` belongs to.
    pub fn owner_of(&self, document: usize) -> usize {
        document % self.patients
    }

    /// The `k`-th document of patient `i`, if there are that many.
    pub fn document_of(&self, patient: usize, k: usize) -> Option<usize> {
        let j = patient + k * self.patients;
        (j < self.documents).then_some(j)
    }
}

/// A deterministic generator (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

pub fn nir(i: usize) -> String {
    format!("{}{:012}", 1 + i % 2, i)
}

fn practitioner(k: usize, rng: &mut Rng) -> Value {
    json!({
        "resourceType": "Practitioner",
        "identifier": [{"system": RPPS, "value": format!("810{:08}", k)}],
        "name": [{"family": FAMILIES[rng.below(FAMILIES.len())], "given": [GIVEN[rng.below(GIVEN.len())]], "prefix": ["Dr"]}],
    })
}

fn patient(i: usize, sizes: &Sizes, rng: &mut Rng) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": NIR, "value": nir(i)}],
        "name": [{"family": FAMILIES[rng.below(FAMILIES.len())], "given": [GIVEN[rng.below(GIVEN.len())]]}],
        "gender": if i.is_multiple_of(2) { "male" } else { "female" },
        "birthDate": format!("{}-{:02}-{:02}", 1930 + rng.below(90), 1 + rng.below(12), 1 + rng.below(28)),
        "generalPractitioner": [{"reference": format!("Practitioner/gp{}", sizes.gp_of(i))}],
    })
}

/// Document `j` (of patient `sizes.owner_of(j)`), without id.
pub fn document(j: usize, sizes: &Sizes, rng: &mut Rng) -> Value {
    let (code, display) = TYPES[rng.below(TYPES.len())];
    let status = match rng.below(20) {
        0 => "entered-in-error",
        1..=3 => "superseded",
        _ => "current",
    };
    json!({
        "resourceType": "DocumentReference",
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": format!("urn:oid:1.2.250.1.999.{j}")},
        "status": status,
        "type": {"coding": [{"system": LOINC, "code": code, "display": display}]},
        "category": [{"coding": [{"system": LOINC, "code": "LP173421-1", "display": "Report"}]}],
        "subject": {"reference": format!("Patient/p{}", sizes.owner_of(j))},
        "date": format!("{}-{:02}-{:02}T{:02}:{:02}:00Z", 2015 + rng.below(11), 1 + rng.below(12), 1 + rng.below(28), rng.below(24), rng.below(60)),
        "author": [{"reference": format!("Practitioner/pr{}", rng.below(5000))}],
        "description": format!("{display} — compte rendu {j}"),
        "content": [{"attachment": {"contentType": "application/pdf", "url": format!("Binary/b{j}")}}],
    })
}

fn version(
    resource_type: &str,
    id: String,
    mut document: Value,
    patient: Option<&str>,
    at: i64,
    base: &str,
) -> NewVersion {
    stamp(&mut document, &id, 1, at);
    let index = rows(resource_type, &document, base);
    let access = carnet::consent::facts::access_rows(resource_type, &id, &document, base)
        .expect("the generated resources express no directive Carnet refuses");
    NewVersion {
        resource_type: resource_type.to_owned(),
        id,
        version_id: 1,
        last_updated: at,
        deleted: false,
        method: "POST",
        patient_id: patient.map(str::to_owned),
        labels: carnet::consent::facts::labels_of(&document),
        // As if the benchmark's own feeding system had written it.
        writer: Some(carnet::consent::model::Writer::System("bench".to_owned())),
        body: document.to_string().into_bytes(),
        content: None,
        index,
        access,
        revives: false,
    }
}

pub fn load(store: &Store, sizes: &Sizes, base: &str) {
    const BATCH: usize = 2000;
    let mut rng = Rng(0x5eed_0000_cafe_0001);
    let started = Instant::now();
    let mut at = 1_700_000_000_000_000i64;
    let mut batch = Vec::with_capacity(BATCH);
    let flush = |batch: &mut Vec<NewVersion>| {
        store.import(batch).expect("import");
        batch.clear();
    };
    for k in 0..sizes.practitioners {
        at += 1;
        let doc = practitioner(k, &mut rng);
        batch.push(version(
            "Practitioner",
            format!("gp{k}"),
            doc,
            None,
            at,
            base,
        ));
    }
    flush(&mut batch);
    for i in 0..sizes.patients {
        at += 1;
        let id = format!("p{i}");
        let doc = patient(i, sizes, &mut rng);
        batch.push(version("Patient", id.clone(), doc, Some(&id), at, base));
        if batch.len() == BATCH {
            flush(&mut batch);
        }
    }
    flush(&mut batch);
    eprintln!(
        "{} practitioners and {} patients in {:.0?}",
        sizes.practitioners,
        sizes.patients,
        started.elapsed()
    );
    for j in 0..sizes.documents {
        at += 1;
        let owner = format!("p{}", sizes.owner_of(j));
        let doc = document(j, sizes, &mut rng);
        batch.push(version(
            "DocumentReference",
            format!("d{j}"),
            doc,
            Some(&owner),
            at,
            base,
        ));
        if batch.len() == BATCH {
            flush(&mut batch);
        }
        if j > 0 && j.is_multiple_of(200_000) {
            eprintln!("{j} documents in {:.0?}", started.elapsed());
        }
    }
    flush(&mut batch);
    store.analyze().expect("analyze");
    eprintln!("loaded and analysed in {:.0?}", started.elapsed());
}
