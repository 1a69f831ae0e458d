//! An acknowledged write survives `kill -9`.

use crate::harness::{allergy, Server};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[test]
fn acknowledged_creates_survive_kill_9_byte_for_byte() {
    creates_survive_kill_9(2, Duration::from_millis(1500));
}

/// `writers` clients create resources for `running`, then the server is killed (`kill -9`)
/// and restarted: every create it acknowledged is there, byte for byte.
pub fn creates_survive_kill_9(writers: usize, running: Duration) {
    let mut s = Server::start();
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let base = s.base.clone();
    let authorization = format!("Bearer {}", s.default_token);
    let writers: Vec<_> = (0..writers)
        .map(|w| {
            let (acknowledged, stop, base) = (acknowledged.clone(), stop.clone(), base.clone());
            let authorization = authorization.clone();
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new()
                    .timeout(Duration::from_secs(10))
                    .build();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let body = allergy(&format!("{w}{i:06}")).to_string();
                    // A request cut by the crash is simply not acknowledged.
                    if let Ok(r) = agent
                        .post(&format!("{base}/AllergyIntolerance"))
                        .set("Content-Type", "application/fhir+json")
                        .set("Authorization", &authorization)
                        .send_string(&body)
                    {
                        if r.status() == 201 {
                            let text = r.into_string().unwrap();
                            acknowledged.lock().unwrap().push(text);
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(running);
    s.crash_and_restart();
    stop.store(true, Ordering::Relaxed);
    writers.into_iter().for_each(|t| t.join().unwrap());
    let acknowledged = acknowledged.lock().unwrap();
    assert!(
        acknowledged.len() > 10,
        "only {} writes acknowledged",
        acknowledged.len()
    );
    for body in acknowledged.iter() {
        let id = serde_json::from_str::<serde_json::Value>(body).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let read = s.get(&format!("/AllergyIntolerance/{id}"));
        assert_eq!(read.status, 200, "lost {id}");
        assert_eq!(&read.body, body);
    }
}
