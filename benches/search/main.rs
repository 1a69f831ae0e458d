//! Search benchmark (not a test): loads a synthetic French population into a database with
//! the bulk importer, starts the real server on it, and measures over HTTP the IHE MHD ITI-67
//! searches, `_include`/`_revinclude` searches, paging to page 50 and reads by id, as the
//! consent engine restricts them for a professional (the patient's general practitioner) and
//! for the patient. With `--baseline-binary`, a second server (an earlier build) runs on the
//! same database and every measurement alternates between the two, in blocks. Prints a
//! Markdown report; `docs/performance.md` keeps the results and the commands.
//!
//! ```text
//! cargo bench --bench search -- --database sqlite:///tmp/carnet-bench/carnet.db \
//!     [--patients 100000] [--documents 2000000] [--practitioners 300] [--samples 500] \
//!     [--paging-walks 10] [--read-seconds 10] [--connections 1,32] [--partitions 0] \
//!     [--baseline-binary PATH [--baseline-database URL]] [--skip-load | --load-only]
//! ```
//!
//! `--partitions N`: on PostgreSQL, the record tables hash-partitioned by patient id (the
//! scale-out layout, `[postgres] partitions`). `--baseline-database`: the baseline runs on a
//! database of its own (loaded by its own build, same data) when its schema differs.
//!
//! ```text
//! ```

// Shared with the workload bench, which uses other parts of them.
#[allow(dead_code)]
mod measure;
#[allow(dead_code)]
mod population;
#[allow(dead_code)]
mod server;

use measure::{entries, get, percentiles, reads, Pick, Throughput};
use population::{nir, Rng, Sizes, LOINC, NIR, TYPES};
use server::{Minter, Server, Setup, BASE};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

struct Options {
    database: String,
    sizes: Sizes,
    samples: usize,
    paging_walks: usize,
    read_seconds: u64,
    connections: Vec<usize>,
    baseline: Option<PathBuf>,
    baseline_database: Option<String>,
    partitions: u32,
    load: bool,
    measure: bool,
}

fn options() -> Options {
    let mut options = Options {
        database: String::new(),
        sizes: Sizes {
            patients: 100_000,
            documents: 2_000_000,
            practitioners: 300,
        },
        samples: 500,
        paging_walks: 10,
        read_seconds: 10,
        connections: vec![1, 32],
        baseline: None,
        baseline_database: None,
        partitions: 0,
        load: true,
        measure: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().expect("a value after the option");
        let number = |v: String| v.parse::<usize>().expect("a number");
        match arg.as_str() {
            "--database" => options.database = value(),
            "--patients" => options.sizes.patients = number(value()),
            "--documents" => options.sizes.documents = number(value()),
            "--practitioners" => options.sizes.practitioners = number(value()),
            "--samples" => options.samples = number(value()),
            "--paging-walks" => options.paging_walks = number(value()),
            "--read-seconds" => options.read_seconds = number(value()) as u64,
            "--connections" => {
                options.connections = value().split(',').map(|c| number(c.to_owned())).collect()
            }
            "--baseline-binary" => options.baseline = Some(value().into()),
            "--baseline-database" => options.baseline_database = Some(value()),
            "--partitions" => options.partitions = number(value()) as u32,
            "--skip-load" => options.load = false,
            "--load-only" => options.measure = false,
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

/// Who asks.
#[derive(Clone, Copy)]
enum Caller {
    /// The patient's general practitioner (authorized by `Patient.generalPractitioner`).
    Professional,
    /// The patient, through the portal.
    Patient,
}

/// A server and the caller it is measured for.
struct Variant<'a> {
    label: &'static str,
    server: &'a Server,
    caller: Caller,
}

struct Tokens {
    feeder: String,
    /// By general practitioner.
    professionals: Vec<String>,
    /// By patient, for the patients the run samples.
    patients: HashMap<usize, String>,
}

impl Tokens {
    fn of(&self, caller: Caller, patient: usize, sizes: &Sizes) -> &str {
        match caller {
            Caller::Professional => &self.professionals[sizes.gp_of(patient)],
            Caller::Patient => &self.patients[&patient],
        }
    }
}

/// Latencies and answers of one variant.
#[derive(Default)]
struct Timings {
    latencies: Vec<f64>,
    entries: usize,
}

/// Runs `plan` (a patient and a path each; the first `WARM_UP` are warm-up) on every variant,
/// in blocks of `BLOCK` requests, the variants' order rotating from block to block.
fn alternate(
    variants: &[Variant],
    plan: &[(usize, String)],
    tokens: &Tokens,
    sizes: &Sizes,
) -> Vec<Timings> {
    const WARM_UP: usize = 50;
    const BLOCK: usize = 50;
    let agents: Vec<ureq::Agent> = variants.iter().map(|_| measure::agent()).collect();
    let mut timings: Vec<Timings> = variants.iter().map(|_| Timings::default()).collect();
    let (warm_up, measured) = plan.split_at(WARM_UP.min(plan.len()));
    for (v, variant) in variants.iter().enumerate() {
        for (patient, path) in warm_up {
            let token = tokens.of(variant.caller, *patient, sizes);
            get(&agents[v], token, &format!("{}/{path}", variant.server.url));
        }
    }
    for (b, block) in measured.chunks(BLOCK).enumerate() {
        for r in 0..variants.len() {
            let v = (b + r) % variants.len();
            let variant = &variants[v];
            for (patient, path) in block {
                let token = tokens.of(variant.caller, *patient, sizes);
                let (ms, bundle) =
                    get(&agents[v], token, &format!("{}/{path}", variant.server.url));
                timings[v].latencies.push(ms);
                timings[v].entries += entries(&bundle);
            }
        }
    }
    timings
}

/// `| p50 | p99 |` and, after the first variant (the baseline when there is one), the p99
/// overhead over it.
fn row(name: &str, samples: usize, timings: &[Timings], baseline: bool) -> String {
    let per_answer: Vec<String> = timings
        .iter()
        .map(|t| format!("{:.1}", t.entries as f64 / t.latencies.len() as f64))
        .collect();
    let mut cells = vec![name.to_owned(), samples.to_string(), per_answer.join(" / ")];
    let (_, reference) = percentiles(&timings[0].latencies);
    for (v, t) in timings.iter().enumerate() {
        let (p50, p99) = percentiles(&t.latencies);
        cells.push(format!("{p50:.1}"));
        cells.push(format!("{p99:.1}"));
        if baseline && v > 0 {
            cells.push(format!("{:+.0} %", (p99 / reference - 1.0) * 100.0));
        }
    }
    format!("| {} |", cells.join(" | "))
}

fn header(first: &str, variants: &[Variant], baseline: bool) -> String {
    let labels: Vec<&str> = variants.iter().map(|v| v.label).collect();
    let mut cells = vec![
        first.to_owned(),
        "samples".to_owned(),
        format!("entries per answer ({})", labels.join(" / ")),
    ];
    for (v, variant) in variants.iter().enumerate() {
        cells.push(format!("{} p50 ms", variant.label));
        cells.push(format!("{} p99 ms", variant.label));
        if baseline && v > 0 {
            cells.push(format!("{} p99 vs baseline", variant.label));
        }
    }
    let rule = vec!["---"; cells.len()].join("|");
    format!("| {} |\n|{rule}|", cells.join(" | "))
}

fn main() {
    let options = options();
    let sizes = options.sizes;
    if options.load {
        let store = carnet::store::Store::open(&options.database, options.partitions)
            .expect("the database opens");
        population::load(&store, &sizes, BASE);
    }
    if !options.measure {
        return;
    }
    let setup = Setup::new(&options.database, options.partitions);
    let (current, baseline) = setup.start_both(
        "consent",
        options.baseline.as_deref(),
        options.baseline_database.as_deref(),
    );
    let minter = Minter::new(&setup);
    let mut rng = Rng(0x5eed_0000_beef_0002);

    // What each family asks, planned up front: every variant gets the same requests.
    let samples = options.samples + 50;
    let mut plan_of = |path: &dyn Fn(usize, &mut Rng) -> String| -> Vec<(usize, String)> {
        (0..samples)
            .map(|_| {
                let i = rng.below(sizes.patients);
                (i, path(i, &mut rng))
            })
            .collect()
    };
    let families: Vec<(&str, Vec<(usize, String)>)> = vec![
        (
            "ITI-67 `patient.identifier` + `status` + `type` + `date=ge`",
            plan_of(&|i: usize, rng: &mut Rng| {
                let (code, _) = TYPES[rng.below(TYPES.len())];
                format!(
                    "DocumentReference?patient.identifier={NIR}|{}&status=current&type={LOINC}|{code}&date=ge2019-01-01",
                    nir(i)
                )
            }),
        ),
        (
            "ITI-67 `patient.identifier` + `status=current`",
            plan_of(&|i: usize, _: &mut Rng| {
                format!(
                    "DocumentReference?patient.identifier={NIR}|{}&status=current",
                    nir(i)
                )
            }),
        ),
        (
            "`patient=` + `_include=DocumentReference:patient`",
            plan_of(&|i: usize, _: &mut Rng| {
                format!("DocumentReference?patient=Patient/p{i}&_include=DocumentReference:patient")
            }),
        ),
        (
            "`Patient?identifier=` (INS) + `_revinclude=DocumentReference:patient`",
            plan_of(&|i: usize, _: &mut Rng| {
                format!(
                    "Patient?identifier={NIR}|{}&_revinclude=DocumentReference:patient",
                    nir(i)
                )
            }),
        ),
    ];
    // Reads by id: the patient variant reads the documents of a pool of patients.
    let read_pool: Vec<usize> = (0..1000).map(|_| rng.below(sizes.patients)).collect();

    let mut tokens = Tokens {
        feeder: minter.feeder(),
        professionals: (0..sizes.practitioners)
            .map(|k| minter.professional(k))
            .collect(),
        patients: HashMap::new(),
    };
    for &i in families
        .iter()
        .flat_map(|(_, plan)| plan.iter().map(|(i, _)| i))
        .chain(&read_pool)
    {
        tokens
            .patients
            .entry(i)
            .or_insert_with(|| minter.patient(i));
    }
    eprintln!(
        "{} tokens minted",
        1 + tokens.professionals.len() + tokens.patients.len()
    );

    let with_baseline = baseline.is_some();
    let mut variants = Vec::new();
    if let Some(server) = &baseline {
        variants.push(Variant {
            label: "baseline",
            server,
            caller: Caller::Professional,
        });
    }
    variants.push(Variant {
        label: "professional",
        server: &current,
        caller: Caller::Professional,
    });
    variants.push(Variant {
        label: "patient",
        server: &current,
        caller: Caller::Patient,
    });

    println!("\n{}", header("query", &variants, with_baseline));
    for (name, plan) in &families {
        let timings = alternate(&variants, plan, &tokens, &sizes);
        println!("{}", row(name, options.samples, &timings, with_baseline));
    }

    if options.paging_walks > 0 {
        paging(&baseline, &current, &tokens, options.paging_walks);
    }

    println!("\n| reads by id | connections | requests | errors | requests/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|---|");
    let pick_professional = |rng: &mut Rng| {
        let j = rng.below(sizes.documents);
        let token = tokens.of(Caller::Professional, sizes.owner_of(j), &sizes);
        (token, format!("DocumentReference/d{j}"))
    };
    let pick_patient = |rng: &mut Rng| loop {
        let i = read_pool[rng.below(read_pool.len())];
        if let Some(j) = sizes.document_of(i, rng.below(sizes.documents.div_ceil(sizes.patients))) {
            break (
                tokens.of(Caller::Patient, i, &sizes),
                format!("DocumentReference/d{j}"),
            );
        }
    };
    let pickers: Vec<&Pick> = variants
        .iter()
        .map(|v| match v.caller {
            Caller::Patient => &pick_patient as &Pick,
            _ => &pick_professional as &Pick,
        })
        .collect();
    const PASSES: u64 = 2;
    let slice = Duration::from_secs(options.read_seconds) / PASSES as u32;
    for &connections in &options.connections {
        let mut totals: Vec<Throughput> = variants.iter().map(|_| Throughput::default()).collect();
        for (v, variant) in variants.iter().enumerate() {
            reads(
                &variant.server.url,
                connections,
                Duration::from_secs(2),
                1,
                pickers[v],
            );
        }
        for pass in 0..PASSES as usize {
            for r in 0..variants.len() {
                let v = (pass + r) % variants.len();
                let seed = 0x7ead_0000 + pass as u64;
                totals[v].add(reads(
                    &variants[v].server.url,
                    connections,
                    slice,
                    seed,
                    pickers[v],
                ));
            }
        }
        for (variant, total) in variants.iter().zip(&totals) {
            let (p50, p99) = percentiles(&total.latencies);
            println!(
                "| {} | {connections} | {} | {} | {:.0} | {p50:.2} | {p99:.2} |",
                variant.label,
                total.requests,
                total.errors,
                total.per_second()
            );
        }
    }
    drop(baseline);
    drop(current);
    index_sizes(&options);
}

/// The 50th page of a search across patients (20 per page), following `next` links: the
/// feeding system's token (a professional may not search across patients, and a patient
/// sees one record), on each server, walks alternating.
fn paging(baseline: &Option<Server>, current: &Server, tokens: &Tokens, walks: usize) {
    let mut servers: Vec<&Server> = baseline.iter().collect();
    servers.push(current);
    let agent = measure::agent();
    let mut last_pages: Vec<Vec<f64>> = servers.iter().map(|_| Vec::new()).collect();
    let mut all_pages: Vec<Vec<f64>> = servers.iter().map(|_| Vec::new()).collect();
    for walk in 0..walks {
        let (code, _) = TYPES[walk % TYPES.len()];
        for r in 0..servers.len() {
            let s = (walk + r) % servers.len();
            let server = servers[s];
            let mut url = format!(
                "{}/DocumentReference?status=current&type={LOINC}|{code}&_count=20",
                server.url
            );
            for page in 0..50 {
                let (ms, bundle) = get(&agent, &tokens.feeder, &url);
                all_pages[s].push(ms);
                if page == 49 {
                    last_pages[s].push(ms);
                    break;
                }
                // Links name the configured base; this server listens elsewhere.
                url = bundle["link"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|l| l["relation"] == "next")
                    .map(|l| l["url"].as_str().unwrap().replacen(BASE, &server.url, 1))
                    .expect("50 pages");
            }
        }
    }
    println!("\n| paging, feeding system's token | server | walks | page-50 p50 ms | page-50 p99 ms | all pages p50 ms | all pages p99 ms |");
    println!("|---|---|---|---|---|---|---|");
    for (s, server) in servers.iter().enumerate() {
        let (p50, p99) = percentiles(&last_pages[s]);
        let (all50, all99) = percentiles(&all_pages[s]);
        println!(
            "| page 50 of `status=current&type=…&_count=20` (following `next`) | {} | {walks} | {p50:.1} | {p99:.1} | {all50:.1} | {all99:.1} |",
            server.name
        );
    }
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
    let tables = "'resources', 'resource_versions', 'binary_contents', 'search_tokens', \
                  'search_strings', 'search_dates', 'search_references', 'search_uris', \
                  'records', 'directives', 'access_terms', 'resource_ids'";
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
                // A partitioned table's own size is 0: its partitions hold the rows.
                "SELECT c.relname::text AS name, \
                 CAST(COALESCE((SELECT SUM(pg_total_relation_size(t.relid)) \
                 FROM pg_partition_tree(c.oid) t), pg_total_relation_size(c.oid)) AS BIGINT) \
                 AS bytes \
                 FROM pg_class c WHERE c.relname IN ({tables}) ORDER BY 1"
            ))
            .load(&mut conn)
            .unwrap()
        }
    };
    let sizes_of = &options.sizes;
    let resources = (sizes_of.patients + sizes_of.documents + sizes_of.practitioners) as f64;
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
