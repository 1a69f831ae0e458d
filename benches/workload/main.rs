//! Workload benchmark (not a test): the requests a national record serves most — a read by
//! id, a patient's current documents, the chained ITI-67 search by INS, and a document
//! created by a feeding system — each for a bounded time at 1 and 16 connections, with the
//! consent restriction on (a professional reads, the feeding system writes). With
//! `--baseline-binary`, an earlier build runs beside this one on the same data and every cell
//! alternates between the two; the report gives both, their ratio, and each server's resident
//! memory before and after. Prints Markdown; `docs/performance.md` keeps the results.
//!
//! ```text
//! cargo bench --bench workload -- --database sqlite:///tmp/carnet-work/carnet.db \
//!     [--patients 2000] [--documents 20000] [--practitioners 300] [--seconds 15] \
//!     [--passes 3] [--connections 1,16] [--only read,search,chained,create] \
//!     [--baseline-binary PATH [--baseline-database URL]] [--skip-load | --load-only]
//! ```
//!
//! The data set is loaded with the bulk importer (this build's). Creates add documents to
//! the patients of the data set: reload it (or copy it first) before comparing runs.

// The search bench's modules, of which this one uses a part.
#[allow(dead_code)]
#[path = "../search/measure.rs"]
mod measure;
#[allow(dead_code)]
#[path = "../search/population.rs"]
mod population;
#[allow(dead_code)]
#[path = "../search/server.rs"]
mod server;

use measure::{creates, percentiles, reads, Pick, PickCreate, Throughput};
use population::{document, nir, Rng, Sizes, NIR};
use server::{Minter, Server, Setup, BASE};
use std::path::PathBuf;
use std::time::Duration;

struct Options {
    database: String,
    sizes: Sizes,
    seconds: u64,
    passes: u32,
    connections: Vec<usize>,
    only: Vec<String>,
    baseline: Option<PathBuf>,
    baseline_database: Option<String>,
    load: bool,
    measure: bool,
}

fn options() -> Options {
    let mut options = Options {
        database: String::new(),
        sizes: Sizes {
            patients: 2_000,
            documents: 20_000,
            practitioners: 300,
        },
        seconds: 15,
        passes: 3,
        connections: vec![1, 16],
        only: WORKLOADS.iter().map(|w| w.to_string()).collect(),
        baseline: None,
        baseline_database: None,
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
            "--seconds" => options.seconds = number(value()) as u64,
            "--passes" => options.passes = number(value()) as u32,
            "--connections" => {
                options.connections = value().split(',').map(|c| number(c.to_owned())).collect()
            }
            "--only" => options.only = value().split(',').map(str::to_owned).collect(),
            "--baseline-binary" => options.baseline = Some(value().into()),
            "--baseline-database" => options.baseline_database = Some(value()),
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
    for name in &options.only {
        assert!(
            WORKLOADS.contains(&name.as_str()),
            "unknown workload {name}"
        );
    }
    options
}

/// The workloads, in the order they run.
const WORKLOADS: [&str; 4] = ["read", "search", "chained", "create"];

/// What one workload sends.
enum Load<'a> {
    Get(&'a Pick<'a>),
    Create(&'a PickCreate<'a>),
}

impl Load<'_> {
    fn run(&self, url: &str, connections: usize, duration: Duration, seed: u64) -> Throughput {
        match self {
            Load::Get(pick) => reads(url, connections, duration, seed, pick),
            Load::Create(pick) => creates(url, connections, duration, seed, pick),
        }
    }
}

fn main() {
    let options = options();
    let sizes = options.sizes;
    if options.load {
        let store = carnet::store::Store::open(&options.database, 0).expect("the database opens");
        population::load(&store, &sizes, BASE);
    }
    if !options.measure {
        return;
    }
    let setup = Setup::new(&options.database, 0);
    let (current, baseline) = setup.start_both(
        "current",
        options.baseline.as_deref(),
        options.baseline_database.as_deref(),
    );
    let minter = Minter::new(&setup);
    let professionals: Vec<String> = (0..sizes.practitioners)
        .map(|k| minter.professional(k))
        .collect();
    let writer = minter.writer();
    let professional_of = |i: usize| professionals[sizes.gp_of(i)].as_str();

    let read = |rng: &mut Rng| {
        let j = rng.below(sizes.documents);
        (
            professional_of(sizes.owner_of(j)),
            format!("DocumentReference/d{j}"),
        )
    };
    let search = |rng: &mut Rng| {
        let i = rng.below(sizes.patients);
        (
            professional_of(i),
            format!("DocumentReference?patient=Patient/p{i}&status=current"),
        )
    };
    let chained = |rng: &mut Rng| {
        let i = rng.below(sizes.patients);
        (
            professional_of(i),
            format!("DocumentReference?patient.identifier={NIR}|{}", nir(i)),
        )
    };
    let create = |rng: &mut Rng| {
        // A document number past the data set's, for a random patient of it.
        let j = sizes.documents + rng.below(1 << 40);
        let body = document(j, &sizes, rng).to_string();
        (writer.as_str(), "DocumentReference".to_owned(), body)
    };
    let loads: Vec<(&str, Load)> = vec![
        ("read", Load::Get(&read)),
        ("search", Load::Get(&search)),
        ("chained", Load::Get(&chained)),
        ("create", Load::Create(&create)),
    ];

    let mut servers: Vec<&Server> = baseline.iter().collect();
    servers.push(&current);
    let memory_before: Vec<Option<u64>> = servers.iter().map(|s| s.rss_kib()).collect();
    let mut peak: Vec<u64> = vec![0; servers.len()];
    println!(
        "\n{} patients, {} documents; {} s per cell in {} passes, servers alternating",
        sizes.patients, sizes.documents, options.seconds, options.passes
    );
    println!("\n| workload | connections | server | requests/s | p50 ms | p99 ms | errors | vs baseline |");
    println!("|---|---|---|---|---|---|---|---|");
    let slice = Duration::from_secs(options.seconds) / options.passes;
    for (name, load) in &loads {
        if !options.only.iter().any(|o| o == name) {
            continue;
        }
        for &connections in &options.connections {
            // Warm-up: every server's pool and caches, off the record.
            for server in &servers {
                load.run(&server.url, connections, Duration::from_secs(1), 1);
            }
            let mut totals: Vec<Throughput> =
                servers.iter().map(|_| Throughput::default()).collect();
            for pass in 0..options.passes as usize {
                for r in 0..servers.len() {
                    let s = (pass + r) % servers.len();
                    let seed = 0x3017_0000 + pass as u64;
                    totals[s].add(load.run(&servers[s].url, connections, slice, seed));
                    peak[s] = peak[s].max(servers[s].rss_kib().unwrap_or(0));
                }
            }
            let reference = totals[0].per_second();
            for (s, (server, total)) in servers.iter().zip(&totals).enumerate() {
                let (p50, p99) = match total.latencies.is_empty() {
                    true => (f64::NAN, f64::NAN),
                    false => percentiles(&total.latencies),
                };
                let ratio = match (baseline.is_some(), s) {
                    (true, s) if s > 0 => format!("{:.2}×", total.per_second() / reference),
                    _ => String::new(),
                };
                println!(
                    "| {name} | {connections} | {} | {:.0} | {p50:.2} | {p99:.2} | {} | {ratio} |",
                    server.name,
                    total.per_second(),
                    total.errors
                );
            }
        }
    }
    println!("\n| server | RSS before MiB | RSS peak MiB | RSS after MiB |");
    println!("|---|---|---|---|");
    for (s, server) in servers.iter().enumerate() {
        let mib =
            |kib: Option<u64>| kib.map_or("?".to_owned(), |k| format!("{:.0}", k as f64 / 1024.0));
        println!(
            "| {} | {} | {} | {} |",
            server.name,
            mib(memory_before[s]),
            mib(Some(peak[s])),
            mib(server.rss_kib())
        );
    }
}
