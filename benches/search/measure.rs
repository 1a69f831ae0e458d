//! Timing over HTTP: one request at a time (latency), or N keep-alive connections for a while
//! (throughput).

use crate::population::Rng;
use serde_json::Value;
use std::time::{Duration, Instant};

pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build()
}

/// Milliseconds of one GET, and its answer.
pub fn get(agent: &ureq::Agent, token: &str, url: &str) -> (f64, Value) {
    let started = Instant::now();
    let reply = agent
        .get(url)
        .set("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let body: Value = reply.into_json().unwrap();
    (started.elapsed().as_secs_f64() * 1000.0, body)
}

/// The entries of a search answer.
pub fn entries(bundle: &Value) -> usize {
    bundle["entry"].as_array().map_or(0, Vec::len)
}

/// p50 and p99 (nearest rank) of milliseconds.
pub fn percentiles(samples: &[f64]) -> (f64, f64) {
    let mut samples = samples.to_vec();
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    (at(0.50), at(0.99))
}

/// Chooses a request: the token and the path.
pub type Pick<'a> = dyn Fn(&mut Rng) -> (&'a str, String) + Sync + 'a;

/// What N connections did for a while.
#[derive(Default)]
pub struct Throughput {
    pub requests: usize,
    pub errors: usize,
    pub seconds: f64,
    pub latencies: Vec<f64>,
}

impl Throughput {
    pub fn add(&mut self, other: Throughput) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.seconds += other.seconds;
        self.latencies.extend(other.latencies);
    }

    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
}

/// `connections` threads, each with its own keep-alive connection, GET `{url}/{path}` with
/// the token `pick` chooses, for `duration`. Answers other than 200 count as errors.
pub fn reads<'a>(
    url: &str,
    connections: usize,
    duration: Duration,
    seed: u64,
    pick: &Pick<'a>,
) -> Throughput {
    drive(url, connections, duration, seed, &|agent, url, rng| {
        let (token, path) = pick(rng);
        let answer = agent
            .get(&format!("{url}/{path}"))
            .set("Authorization", &format!("Bearer {token}"))
            .call();
        accepted(answer, 200)
    })
}

/// Chooses a creation: the token, the type's path and the body.
pub type PickCreate<'a> = dyn Fn(&mut Rng) -> (&'a str, String, String) + Sync + 'a;

/// [`reads`] for creations: POST the body `pick` chooses; answers other than 201 count as
/// errors.
pub fn creates<'a>(
    url: &str,
    connections: usize,
    duration: Duration,
    seed: u64,
    pick: &PickCreate<'a>,
) -> Throughput {
    drive(url, connections, duration, seed, &|agent, url, rng| {
        let (token, path, body) = pick(rng);
        let answer = agent
            .post(&format!("{url}/{path}"))
            .set("Authorization", &format!("Bearer {token}"))
            .set("Content-Type", "application/fhir+json")
            .send_string(&body);
        accepted(answer, 201)
    })
}

/// Whether `answer` has the status `expected`; its body is read so the connection is reused.
fn accepted(answer: Result<ureq::Response, ureq::Error>, expected: u16) -> bool {
    match answer {
        Ok(reply) => {
            let status = reply.status();
            let _ = reply.into_string();
            status == expected
        }
        Err(_) => false,
    }
}

/// `connections` threads, each with its own keep-alive connection, sending what `send` sends
/// (true when answered as expected) for `duration`.
fn drive(
    url: &str,
    connections: usize,
    duration: Duration,
    seed: u64,
    send: &(dyn Fn(&ureq::Agent, &str, &mut Rng) -> bool + Sync),
) -> Throughput {
    let started = Instant::now();
    let deadline = started + duration;
    let results: Vec<Throughput> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..connections)
            .map(|t| {
                scope.spawn(move || {
                    let agent = agent();
                    let mut rng = Rng(seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(t as u64 + 1)));
                    let mut done = Throughput::default();
                    while Instant::now() < deadline {
                        let sent = Instant::now();
                        match send(&agent, url, &mut rng) {
                            true => {
                                done.latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                                done.requests += 1;
                            }
                            false => done.errors += 1,
                        }
                    }
                    done
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let mut total = Throughput::default();
    for result in results {
        total.add(result);
    }
    total.seconds = started.elapsed().as_secs_f64();
    total
}
