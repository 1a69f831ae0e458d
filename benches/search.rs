//! Search benchmark (not a test): loads a synthetic French population into a fresh database
//! with the bulk importer, starts the real server on it, and measures over HTTP the IHE MHD
//! ITI-67 searches, `_include` searches and paging to page 50. Prints a Markdown report;
//! `docs/performance.md` keeps the results and the commands.
//!
//! ```text
//! cargo bench --bench search -- --database sqlite:///tmp/carnet-bench/carnet.db \
//!     [--patients 100000] [--documents 2000000] [--samples 500] [--skip-load]
//! ```

use carnet::fhir::resource::stamp;
use carnet::search::index::rows;
use carnet::store::{NewVersion, Store};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NIR: &str = "urn:oid:1.2.250.1.213.1.4.8";
const LOINC: &str = "http://loinc.org";
const TYPES: [(&str, &str); 6] = [
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
const BASE: &str = "http://127.0.0.1:18090/fhir";

struct Options {
    database: String,
    patients: usize,
    documents: usize,
    samples: usize,
    load: bool,
}

fn options() -> Options {
    let mut options = Options {
        database: String::new(),
        patients: 100_000,
        documents: 2_000_000,
        samples: 500,
        load: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().expect("a value after the option");
        match arg.as_str() {
            "--database" => options.database = value(),
            "--patients" => options.patients = value().parse().expect("a number"),
            "--documents" => options.documents = value().parse().expect("a number"),
            "--samples" => options.samples = value().parse().expect("a number"),
            "--skip-load" => options.load = false,
            "--bench" => {}
            other => panic!("unknown option {other}"),
        }
    }
    assert!(
        !options.database.is_empty(),
        "--database sqlite://PATH or postgres://… is required"
    );
    options
}

/// A deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn nir(i: usize) -> String {
    format!("{}{:012}", 1 + i % 2, i)
}

fn patient(i: usize, rng: &mut Rng) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": NIR, "value": nir(i)}],
        "name": [{"family": FAMILIES[rng.below(FAMILIES.len())], "given": [GIVEN[rng.below(GIVEN.len())]]}],
        "gender": if i.is_multiple_of(2) { "male" } else { "female" },
        "birthDate": format!("{}-{:02}-{:02}", 1930 + rng.below(90), 1 + rng.below(12), 1 + rng.below(28)),
    })
}

fn document(j: usize, patients: usize, rng: &mut Rng) -> Value {
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
        "subject": {"reference": format!("Patient/p{}", j % patients)},
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
    patient: &str,
    at: i64,
) -> NewVersion {
    stamp(&mut document, &id, 1, at);
    let index = rows(resource_type, &document, BASE);
    let access = carnet::consent::facts::access_rows(resource_type, &id, &document, BASE)
        .expect("the generated resources express no directive Carnet refuses");
    NewVersion {
        resource_type: resource_type.to_owned(),
        id,
        version_id: 1,
        last_updated: at,
        deleted: false,
        method: "POST",
        patient_id: Some(patient.to_owned()),
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

fn load(store: &Store, options: &Options) {
    const BATCH: usize = 2000;
    let mut rng = Rng(0x5eed_0000_cafe_0001);
    let started = Instant::now();
    let mut at = 1_700_000_000_000_000i64;
    let mut batch = Vec::with_capacity(BATCH);
    let flush = |batch: &mut Vec<NewVersion>| {
        store.import(batch).expect("import");
        batch.clear();
    };
    for i in 0..options.patients {
        at += 1;
        let id = format!("p{i}");
        batch.push(version(
            "Patient",
            id.clone(),
            patient(i, &mut rng),
            &id,
            at,
        ));
        if batch.len() == BATCH {
            flush(&mut batch);
        }
    }
    flush(&mut batch);
    eprintln!("{} patients in {:.0?}", options.patients, started.elapsed());
    for j in 0..options.documents {
        at += 1;
        let owner = format!("p{}", j % options.patients);
        let doc = document(j, options.patients, &mut rng);
        batch.push(version(
            "DocumentReference",
            format!("d{j}"),
            doc,
            &owner,
            at,
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

struct Server {
    child: Child,
    dir: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn carnet(dir: &std::path::Path, database: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_carnet"));
    command
        .args(args)
        .current_dir(dir)
        .env("CARNET_LISTEN", "127.0.0.1:18090")
        .env("CARNET_BASE_URL", BASE)
        .env("CARNET_DATABASE_URL", database)
        .env("CARNET_AUTH__LOCAL_ISSUER", "true")
        .env("CARNET_AUTH__LOCAL_ISSUER_KEY", dir.join("key.p8"))
        .env("CARNET_LOG", "warn");
    command
}

fn start(database: &str) -> (Server, String) {
    let dir = std::env::temp_dir().join(format!("carnet-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("carnet.toml"),
        "[[clients]]\nclient_id = \"bench\"\nkind = \"feeder\"\n\
         organization = \"https://finess.esante.gouv.fr|750000001\"\nscopes = \"system/*.rs\"\n",
    )
    .unwrap();
    let child = carnet(&dir, database, &["serve"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server { child, dir };
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(5))
        .build();
    let deadline = Instant::now() + Duration::from_secs(120);
    while agent.get(&format!("{BASE}/metadata")).call().is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = carnet(
        &server.dir,
        database,
        &["token", "--client-id", "bench", "--scope", "system/*.rs"],
    )
    .output()
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    (server, token)
}

/// Milliseconds of one GET, and its Bundle.
fn get(agent: &ureq::Agent, token: &str, url: &str) -> (f64, Value) {
    let started = Instant::now();
    let reply = agent
        .get(url)
        .set("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let bundle: Value = reply.into_json().unwrap();
    (started.elapsed().as_secs_f64() * 1000.0, bundle)
}

fn percentiles(mut samples: Vec<f64>) -> (f64, f64) {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    (at(0.50), at(0.99))
}

fn main() {
    let options = options();
    let store = Store::open(&options.database).expect("the database opens");
    if options.load {
        load(&store, &options);
    }
    drop(store);
    let (_server, token) = start(&options.database);
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build();
    let mut rng = Rng(0x5eed_0000_beef_0002);
    let mut report = Vec::new();

    let mut measure = |name: &str, samples: usize, url: &mut dyn FnMut(&mut Rng) -> String| {
        // Warm up the caches a little, as a running server would be.
        for _ in 0..samples.min(50) {
            get(&agent, &token, &url(&mut rng));
        }
        let mut latencies = Vec::with_capacity(samples);
        let mut entries = 0;
        for _ in 0..samples {
            let (ms, bundle) = get(&agent, &token, &url(&mut rng));
            entries += bundle["entry"].as_array().map_or(0, Vec::len);
            latencies.push(ms);
        }
        let (p50, p99) = percentiles(latencies);
        report.push(format!(
            "| {name} | {samples} | {:.1} | {p50:.1} | {p99:.1} |",
            entries as f64 / samples as f64
        ));
    };
    let patients = options.patients;
    measure(
        "ITI-67 `patient.identifier` + `status` + `type` + `date=ge`",
        options.samples,
        &mut |rng| {
            let i = rng.below(patients);
            let (code, _) = TYPES[rng.below(TYPES.len())];
            format!(
            "{BASE}/DocumentReference?patient.identifier={NIR}|{}&status=current&type={LOINC}|{code}&date=ge2019-01-01",
            nir(i)
        )
        },
    );
    measure(
        "ITI-67 `patient.identifier` + `status=current`",
        options.samples,
        &mut |rng| {
            format!(
                "{BASE}/DocumentReference?patient.identifier={NIR}|{}&status=current",
                nir(rng.below(patients))
            )
        },
    );
    measure(
        "`patient=` + `_include=DocumentReference:patient`",
        options.samples,
        &mut |rng| {
            format!(
                "{BASE}/DocumentReference?patient=Patient/p{}&_include=DocumentReference:patient",
                rng.below(patients)
            )
        },
    );
    measure(
        "`Patient?identifier=` (INS) + `_revinclude=DocumentReference:patient`",
        options.samples,
        &mut |rng| {
            format!(
                "{BASE}/Patient?identifier={NIR}|{}&_revinclude=DocumentReference:patient",
                nir(rng.below(patients))
            )
        },
    );

    // Paging: the 50th page of a broad search (20 per page), reached by following next links.
    let mut page_50 = Vec::new();
    for walk in 0..10 {
        let (code, _) = TYPES[walk % TYPES.len()];
        let mut url =
            format!("{BASE}/DocumentReference?status=current&type={LOINC}|{code}&_count=20");
        let mut last = 0.0;
        for _ in 0..50 {
            let (ms, bundle) = get(&agent, &token, &url);
            last = ms;
            url = bundle["link"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["relation"] == "next")
                .map(|l| l["url"].as_str().unwrap().to_owned())
                .expect("50 pages");
        }
        page_50.push(last);
    }
    let (p50, p99) = percentiles(page_50);
    report.push(format!(
        "| page 50 of `status=current&type=…&_count=20` (following `next`) | 10 | 20 | {p50:.1} | {p99:.1} |"
    ));

    println!("\n| query | samples | entries per answer | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|");
    for line in &report {
        println!("{line}");
    }
    index_sizes(&options);
}

/// Bytes on disk per table (tables and their indexes) and per resource.
fn index_sizes(options: &Options) {
    use diesel::prelude::*;
    use diesel::sql_types::{BigInt, Text};
    #[derive(QueryableByName)]
    struct Size {
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = BigInt)]
        bytes: i64,
    }
    let tables = "'resources', 'resource_versions', 'search_tokens', 'search_strings', \
                  'search_dates', 'search_references', 'search_uris'";
    let sizes: Vec<Size> = match options.database.strip_prefix("sqlite://") {
        Some(path) => {
            let mut conn = diesel::SqliteConnection::establish(path).unwrap();
            diesel::sql_query(format!(
                "SELECT COALESCE(i.tbl_name, s.name) AS name, SUM(s.pgsize) AS bytes FROM dbstat s \
                 LEFT JOIN sqlite_master i ON i.name = s.name \
                 WHERE COALESCE(i.tbl_name, s.name) IN ({tables}) GROUP BY 1 ORDER BY 1"
            ))
            .load(&mut conn)
            .unwrap()
        }
        None => {
            let mut conn = diesel::PgConnection::establish(&options.database).unwrap();
            diesel::sql_query(format!(
                "SELECT relname::text AS name, pg_total_relation_size(oid) AS bytes FROM pg_class \
                 WHERE relname IN ({tables}) ORDER BY 1"
            ))
            .load(&mut conn)
            .unwrap()
        }
    };
    let resources = (options.patients + options.documents) as f64;
    println!("\n| table (with its indexes) | MiB | bytes per resource |");
    println!("|---|---|---|");
    let mut total = 0;
    for size in &sizes {
        total += size.bytes;
        println!(
            "| {} | {:.0} | {:.0} |",
            size.name,
            size.bytes as f64 / 1048576.0,
            size.bytes as f64 / resources
        );
    }
    println!(
        "| all | {:.0} | {:.0} |",
        total as f64 / 1048576.0,
        total as f64 / resources
    );
}
