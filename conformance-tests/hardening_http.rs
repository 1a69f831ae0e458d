//! Hardening of the HTTP surface (issue 11): concurrent writes to one resource, slow clients,
//! errors raised before Carnet's handlers, and content negotiation edges.

use crate::harness::{patient, Reply, Server};
use serde_json::{json, Value};
use std::sync::Arc;

/// How many writers race on one resource.
const RACERS: usize = 40;

/// Runs `RACERS` copies of `request` at once and returns their replies.
fn race(
    s: &Arc<Server>,
    request: impl Fn(&Server, usize) -> Reply + Send + Sync + 'static,
) -> Vec<Reply> {
    let request = Arc::new(request);
    let barrier = Arc::new(std::sync::Barrier::new(RACERS));
    let threads: Vec<_> = (0..RACERS)
        .map(|i| {
            let (s, request, barrier) = (s.clone(), request.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                request(&s, i)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// Every reply is a 200, or a 409/412 OperationOutcome; returns how many were 200.
fn accepted(replies: &[Reply]) -> usize {
    for reply in replies {
        if reply.status != 200 {
            let issue = reply.outcome(reply.status);
            assert!([409, 412].contains(&reply.status), "{}", reply.body);
            assert_eq!(issue["code"], "conflict", "{}", reply.body);
        }
    }
    replies.iter().filter(|r| r.status == 200).count()
}

fn history_total(s: &Server, id: &str) -> i64 {
    s.get(&format!("/Patient/{id}/_history?_count=1")).json()["total"]
        .as_i64()
        .unwrap()
}

#[test]
fn forty_parallel_puts_without_if_match_all_land() {
    let s = Arc::new(Server::start());
    let p = s.create(&patient("1"));
    let id = p["id"].as_str().unwrap().to_owned();
    let replies = race(&s, move |s, i| {
        let mut p = p.clone();
        p["name"][0]["family"] = json!(format!("Racer{i}"));
        s.send(
            "PUT",
            &format!("/Patient/{}", p["id"].as_str().unwrap()),
            &p,
            &[],
        )
    });
    let ok = accepted(&replies);
    assert_eq!(ok, RACERS, "no write without If-Match is refused here");
    assert_eq!(history_total(&s, &id), 1 + ok as i64);
    let current = s.get(&format!("/Patient/{id}")).json();
    assert_eq!(current["meta"]["versionId"], (1 + ok).to_string());
    // Every version number was given once: the answers name 2..=41 exactly.
    let mut versions: Vec<i64> = replies
        .iter()
        .map(|r| {
            r.json()["meta"]["versionId"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    versions.sort();
    assert_eq!(versions, (2..=1 + RACERS as i64).collect::<Vec<_>>());
}

#[test]
fn forty_parallel_patches_without_if_match_lose_no_element() {
    let s = Arc::new(Server::start());
    let id = s.create(&patient("1"))["id"].as_str().unwrap().to_owned();
    let target = format!("/Patient/{id}");
    let replies = race(&s, move |s, i| {
        // Even racers send JSON Patch, odd ones FHIRPath Patch: both read-modify-write.
        if i % 2 == 0 {
            let ops =
                json!([{"op": "add", "path": "/name/-", "value": {"family": format!("Racer{i}")}}]);
            s.request(
                "PATCH",
                &target,
                &[("Content-Type", "application/json-patch+json")],
                Some(&ops.to_string()),
            )
        } else {
            let parameters = json!({"resourceType": "Parameters", "parameter": [{
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "add"},
                    {"name": "path", "valueString": "Patient"},
                    {"name": "name", "valueString": "name"},
                    {"name": "value", "valueHumanName": {"family": format!("Racer{i}")}}
                ]
            }]});
            s.send("PATCH", &target, &parameters, &[])
        }
    });
    let ok = accepted(&replies);
    let current = s.get(&format!("/Patient/{id}")).json();
    let names = current["name"].as_array().unwrap();
    assert_eq!(
        names.len(),
        1 + ok,
        "one name per accepted patch: {current}"
    );
    for (i, reply) in replies.iter().enumerate() {
        let family = json!(format!("Racer{i}"));
        let present = names.iter().any(|n| n["family"] == family);
        assert_eq!(present, reply.status == 200, "racer {i}: {}", reply.status);
    }
    assert_eq!(history_total(&s, &id), 1 + ok as i64);
    assert_eq!(current["meta"]["versionId"], (1 + ok).to_string());
}

#[test]
fn if_match_still_pins_the_version_under_the_lock() {
    let s = Arc::new(Server::start());
    let p = s.create(&patient("1"));
    let id = p["id"].as_str().unwrap().to_owned();
    let replies = race(&s, move |s, i| {
        let ops =
            json!([{"op": "add", "path": "/name/-", "value": {"family": format!("Racer{i}")}}]);
        s.request(
            "PATCH",
            &format!("/Patient/{}", p["id"].as_str().unwrap()),
            &[
                ("Content-Type", "application/json-patch+json"),
                ("If-Match", "W/\"1\""),
            ],
            Some(&ops.to_string()),
        )
    });
    let mut statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    statuses.sort();
    assert_eq!(statuses[0], 200);
    assert!(statuses[1..].iter().all(|s| *s == 412), "{statuses:?}");
    for reply in replies.iter().filter(|r| r.status == 412) {
        assert_eq!(reply.outcome(412)["code"], "conflict");
    }
    assert_eq!(history_total(&s, &id), 2);
    assert_eq!(
        s.get(&format!("/Patient/{id}")).json()["name"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

/// An answer read off a raw connection.
#[derive(Debug)]
struct RawReply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl RawReply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts an OperationOutcome body in FHIR JSON; returns its first issue.
    fn outcome(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{self:?}");
        assert!(
            self.header("Content-Type")
                .is_some_and(|t| t.starts_with("application/fhir+json")),
            "{self:?}"
        );
        let body: Value =
            serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"));
        assert_eq!(body["resourceType"], "OperationOutcome", "{self:?}");
        let issue = body["issue"][0].clone();
        assert!(
            issue["code"].is_string() && issue["diagnostics"].is_string(),
            "{self:?}"
        );
        issue
    }
}

fn connect(s: &Server) -> std::net::TcpStream {
    let address = s.authority().to_owned();
    let stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    stream
}

/// Reads one answer until the server closes the connection.
fn read_reply(stream: &mut std::net::TcpStream) -> RawReply {
    let mut bytes = Vec::new();
    let _ = std::io::Read::read_to_end(stream, &mut bytes);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no answer: {text:?}"));
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    RawReply {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// Sends `head` (request line and headers, without the blank line; `Connection: close` and
/// the default token are added) and `body` on a fresh connection; returns the answer.
fn raw(s: &Server, head: &[u8], body: &[u8]) -> RawReply {
    let mut stream = connect(s);
    let mut request = head.to_vec();
    request.extend_from_slice(
        format!(
            "\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Bearer {}\r\n\r\n",
            s.default_token
        )
        .as_bytes(),
    );
    request.extend_from_slice(body);
    let _ = std::io::Write::write_all(&mut stream, &request);
    read_reply(&mut stream)
}

/// Writes `bytes` one at a time, `pause` apart, until they run out or the server hangs up.
fn trickle(mut stream: std::net::TcpStream, bytes: Vec<u8>, pause: std::time::Duration) {
    std::thread::spawn(move || {
        for byte in bytes {
            if std::io::Write::write_all(&mut stream, &[byte]).is_err() {
                return;
            }
            std::thread::sleep(pause);
        }
    });
}

#[test]
fn a_body_trickling_in_is_cut_off_with_408() {
    let s = Server::start_with(&[("CARNET_LIMITS__BODY_TIMEOUT_SECONDS", "1")]);
    let body = patient("1").to_string();
    let mut stream = connect(&s);
    let head = format!(
        "POST /fhir/Patient HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/fhir+json\r\nContent-Length: {}\r\n\r\n",
        s.default_token,
        body.len()
    );
    std::io::Write::write_all(&mut stream, head.as_bytes()).unwrap();
    // One byte every 100 ms: the whole body would take far longer than the 1 s allowed.
    trickle(
        stream.try_clone().unwrap(),
        body.into_bytes(),
        std::time::Duration::from_millis(100),
    );
    let reply = read_reply(&mut stream);
    assert_eq!(reply.outcome(408)["code"], "timeout");
    assert_eq!(s.version_count(), 0, "nothing was stored");
    assert_eq!(s.get("/metadata").status, 200);
}

#[test]
fn a_head_trickling_in_is_cut_off_with_408() {
    let s = Server::start_with(&[("CARNET_LIMITS__HEADER_TIMEOUT_SECONDS", "1")]);
    let stream = connect(&s);
    let head = format!(
        "GET /fhir/metadata HTTP/1.1\r\n{}",
        "X-Slow: y\r\n".repeat(100)
    );
    trickle(
        stream.try_clone().unwrap(),
        head.into_bytes(),
        std::time::Duration::from_millis(100),
    );
    let mut stream = stream;
    // actix-http answers a late head itself and closes the connection; the connection
    // wrapper gives that answer its OperationOutcome.
    assert_eq!(read_reply(&mut stream).outcome(408)["code"], "timeout");
    assert_eq!(s.get("/metadata").status, 200);
}

#[test]
fn the_head_timeout_is_the_configured_one() {
    // 30 s allowed; the head takes about 6 s, longer than actix's own default of 5 s.
    let s = Server::start_with(&[("CARNET_LIMITS__HEADER_TIMEOUT_SECONDS", "30")]);
    let mut stream = connect(&s);
    let parts = [
        "GET /fhir/metadata HTTP/1.1\r\n",
        "Host: 127.0.0.1\r\n",
        "X-Slow: 1\r\n",
    ];
    for part in parts.iter().chain(["X-Slow: 2\r\n"; 3].iter()) {
        std::io::Write::write_all(&mut stream, part.as_bytes()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1200));
    }
    std::io::Write::write_all(&mut stream, b"Connection: close\r\n\r\n").unwrap();
    assert_eq!(read_reply(&mut stream).status, 200);
}

#[test]
fn timeouts_must_be_positive() {
    let (ok, stderr) = crate::harness::run_carnet(
        &["migrate"],
        &[
            ("CARNET_DATABASE_URL", "sqlite://./carnet.db"),
            ("CARNET_LIMITS__BODY_TIMEOUT_SECONDS", "0"),
        ],
    );
    assert!(!ok);
    assert!(stderr.contains("limits.body_timeout_seconds"), "{stderr}");
}

#[test]
fn errors_before_the_handlers_are_operation_outcomes() {
    let s = Server::start();
    let cases: [(&[u8], &[u8], u16); 6] = [
        // Bytes that are not UTF-8 where a header value must be ASCII.
        (
            b"PUT /fhir/Patient/x HTTP/1.1\r\nContent-Type: application/fhir+json\r\nContent-Length: 2\r\nIf-Match: W/\"\xc3\xa9\"",
            b"{}",
            400,
        ),
        (b"GET /fhir/metadata HTTP/1.1\r\nAccept: application/\xff", b"", 400),
        // Malformed percent-encoding in the path.
        (b"GET /fhir/Patient/%FF%FE HTTP/1.1", b"", 404),
        (b"GET /fhir/%zz HTTP/1.1", b"", 404),
        // No such route, no such method.
        (b"GET /nope HTTP/1.1", b"", 404),
        (b"TRACE /fhir/Patient HTTP/1.1", b"", 405),
    ];
    for (head, body, status) in cases {
        let reply = raw(&s, head, body);
        reply.outcome(status);
        if status == 405 {
            assert!(reply.header("Allow").is_some(), "{reply:?}");
        }
    }
    assert_eq!(s.version_count(), 0, "nothing was stored");
    assert_eq!(s.get("/metadata").status, 200);
}

#[test]
fn requests_the_http_codec_refuses_are_operation_outcomes_and_change_nothing() {
    // actix-http answers these itself, before any application code (the URI is over 64 KiB,
    // the head over 128 KiB, the length ambiguous); src/http/connection.rs gives those answers
    // their OperationOutcome.
    let s = Server::start();
    let long = "a".repeat(100 * 1024);
    let big: String = (0..90)
        .map(|i| format!("\r\nX-Pad-{i}: {}", "b".repeat(12_000)))
        .collect();
    let cases: [(Vec<u8>, &[u8], u16, &str); 3] = [
        (format!("GET /fhir/Patient?family={long} HTTP/1.1").into_bytes(), b"", 400, "structure"),
        (format!("GET /fhir/metadata HTTP/1.1{big}").into_bytes(), b"", 431, "too-costly"),
        (
            b"POST /fhir/Patient HTTP/1.1\r\nContent-Type: application/fhir+json\r\nContent-Length: 2\r\nContent-Length: 3".to_vec(),
            b"{}",
            400,
            "structure",
        ),
    ];
    for (head, body, status, code) in cases {
        assert_eq!(raw(&s, &head, body).outcome(status)["code"], code);
    }
    assert_eq!(s.version_count(), 0);
    assert_eq!(s.get("/metadata").status, 200);
}

#[test]
fn a_body_in_another_charset_is_415() {
    let s = Server::start();
    let id = s.create(&patient("1"))["id"].as_str().unwrap().to_owned();
    let utf16 = [("Content-Type", "application/fhir+json; charset=utf-16")];
    let body = patient("2").to_string();
    let reply = s.request("POST", "/Patient", &utf16, Some(&body));
    assert_eq!(reply.outcome(415)["code"], "not-supported");
    let ops = json!([{"op": "add", "path": "/active", "value": true}]).to_string();
    s.request("PATCH", &format!("/Patient/{id}"), &utf16, Some(&ops))
        .outcome(415);
    let utf8 = [("Content-Type", "application/fhir+json; charset=\"UTF-8\"")];
    assert_eq!(
        s.request("POST", "/Patient", &utf8, Some(&body)).status,
        201
    );
    assert_eq!(s.version_count(), 2, "only the UTF-8 body was stored");
}

#[test]
fn accept_with_q_0_is_not_acceptable() {
    let s = Server::start();
    let id = s.create(&patient("1"))["id"].as_str().unwrap().to_owned();
    let read = |accept: &str| {
        s.request(
            "GET",
            &format!("/Patient/{id}"),
            &[("Accept", accept)],
            None,
        )
    };
    for refused in [
        "application/fhir+json;q=0",
        "application/fhir+json; q=0.0, application/json;q=0",
        "*/*;q=0",
        "application/fhir+json;q=0, application/*;q=0",
    ] {
        assert_eq!(
            read(refused).outcome(406)["code"],
            "not-supported",
            "{refused}"
        );
    }
    let plain = read("application/fhir+json;q=0, application/json");
    assert_eq!(plain.status, 200);
    assert!(plain
        .header("Content-Type")
        .unwrap()
        .starts_with("application/json"));
    let preferred = read("application/json;q=0.5, application/fhir+json;q=0.9");
    assert!(preferred
        .header("Content-Type")
        .unwrap()
        .starts_with("application/fhir+json"));
    let preferred = read("application/fhir+json;q=0.1, application/json;q=0.9");
    assert!(preferred
        .header("Content-Type")
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(s.get("/metadata").status, 200);
}

#[test]
fn head_answers_like_get_without_a_body() {
    let s = Server::start();
    let id = s.create(&patient("1"))["id"].as_str().unwrap().to_owned();
    let exact = [
        format!("/Patient/{id}"),
        format!("/Patient/{id}/_history/1"),
        "/metadata".to_owned(),
        "/Patient/unknown".to_owned(),
    ];
    let varying = [
        "/Patient?gender=female".to_owned(),
        format!("/Patient/{id}/_history"),
        "/Patient/_history".to_owned(),
        "/_history".to_owned(),
    ];
    for (path, same_length) in exact
        .iter()
        .map(|p| (p, true))
        .chain(varying.iter().map(|p| (p, false)))
    {
        let get = s.get(path);
        let head = raw(&s, format!("HEAD /fhir{path} HTTP/1.1").as_bytes(), b"");
        assert_eq!(head.status, get.status, "{path}: {head:?}");
        assert_eq!(head.body, "", "{path}");
        for name in ["Content-Type", "ETag", "Last-Modified"] {
            assert_eq!(head.header(name), get.header(name), "{path}: {name}");
        }
        if same_length {
            let length = get.bytes.len().to_string();
            assert_eq!(
                head.header("Content-Length"),
                Some(length.as_str()),
                "{path}"
            );
        }
    }
    assert_eq!(s.version_count(), 1);
}

#[test]
fn a_trailing_slash_names_the_same_type_level_path() {
    let s = Server::start();
    let id = s.create(&patient("1"))["id"].as_str().unwrap().to_owned();
    let found = |path: &str| {
        let bundle = s.get(path).json();
        assert_eq!(bundle["resourceType"], "Bundle", "{path}");
        bundle["total"].as_i64().unwrap()
    };
    assert_eq!(found("/Patient/?gender=female"), 1);
    assert_eq!(found("/Patient/?gender=male"), 0);
    assert_eq!(found("/Patient/_history/"), 1);
    assert_eq!(found(&format!("/Patient/{id}/_history/")), 1);
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let posted = s.request("POST", "/Patient/_search/", &form, Some("gender=female"));
    assert_eq!(posted.json()["total"], 1);
    assert_eq!(
        s.get("/Patient/?unknown-parameter=1").outcome(400)["code"],
        "not-supported"
    );
}

#[test]
fn a_patch_sent_as_application_json_is_read_by_its_shape() {
    let s = Server::start();
    let id = s.create(&patient("1"))["id"].as_str().unwrap().to_owned();
    let json_type = [("Content-Type", "application/json")];
    let target = format!("/Patient/{id}");
    let ops = json!([{"op": "replace", "path": "/gender", "value": "other"}]);
    let patched = s.request("PATCH", &target, &json_type, Some(&ops.to_string()));
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.json()["gender"], "other");
    let parameters = json!({"resourceType": "Parameters", "parameter": [{
        "name": "operation",
        "part": [
            {"name": "type", "valueCode": "replace"},
            {"name": "path", "valueString": "Patient.gender"},
            {"name": "value", "valueCode": "male"}
        ]
    }]});
    let patched = s.request("PATCH", &target, &json_type, Some(&parameters.to_string()));
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.json()["gender"], "male");
    // Neither an array nor a Parameters: refused, nothing changed.
    let other = s.request(
        "PATCH",
        &target,
        &json_type,
        Some(r#"{"resourceType": "Patient"}"#),
    );
    assert_eq!(other.outcome(400)["expression"][0], "resourceType");
    assert_eq!(history_total(&s, &id), 3);
}

#[test]
fn a_body_cut_short_is_a_400_operation_outcome() {
    let s = Server::start();
    let mut stream = connect(&s);
    let head = format!(
        "POST /fhir/Patient HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/fhir+json\r\nContent-Length: 100\r\n\r\n{{\"resourceType\"",
        s.default_token
    );
    std::io::Write::write_all(&mut stream, head.as_bytes()).unwrap();
    // The client stops sending long before the announced 100 bytes.
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let reply = read_reply(&mut stream);
    assert_eq!(reply.outcome(400)["code"], "invalid");
    assert_eq!(s.version_count(), 0);
    assert_eq!(s.get("/metadata").status, 200);
}

/// Splits what a keep-alive connection answered into responses, framed by `Content-Length`
/// (`head`: that response answers a HEAD and has no body, whatever its length says).
fn split_pipelined(mut bytes: &[u8], heads: &[bool]) -> Vec<(String, Vec<u8>)> {
    let mut replies = Vec::new();
    for &head in heads {
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(bytes)));
        let text = String::from_utf8_lossy(&bytes[..end]).into_owned();
        let length: usize = text
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        let body_length = if head {
            0
        } else {
            length.min(bytes.len() - end - 4)
        };
        replies.push((text, bytes[end + 4..end + 4 + body_length].to_vec()));
        bytes = &bytes[end + 4 + body_length..];
    }
    assert!(
        bytes.is_empty(),
        "bytes after the last response: {:?}",
        String::from_utf8_lossy(bytes)
    );
    replies
}

/// HEAD and GET pipelined on one connection, in both orders: each answer is framed as its own
/// request asks (no body after the HEAD's head, the GET's whole body after its head).
/// (actix-http's codec keeps one "the request was HEAD" flag, set by the last request decoded.)
#[test]
fn pipelined_head_and_get_keep_their_framing() {
    let s = Server::start();
    let id = s.create(&patient("1"))["id"].as_str().unwrap().to_owned();
    let get = s.get(&format!("/Patient/{id}"));
    let auth = format!("Host: x\r\nAuthorization: Bearer {}\r\n", s.default_token);
    for (first, second) in [("GET", "HEAD"), ("HEAD", "GET")] {
        let mut stream = connect(&s);
        let request = format!(
            "{first} /fhir/Patient/{id} HTTP/1.1\r\n{auth}\r\n\
             {second} /fhir/Patient/{id} HTTP/1.1\r\n{auth}Connection: close\r\n\r\n"
        );
        std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
        let mut bytes = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stream, &mut bytes);
        let replies = split_pipelined(&bytes, &[first == "HEAD", second == "HEAD"]);
        for ((head, body), method) in replies.iter().zip([first, second]) {
            assert!(head.starts_with("HTTP/1.1 200"), "{first}+{second}: {head}");
            let expected: &[u8] = if method == "HEAD" { b"" } else { &get.bytes };
            assert_eq!(body, expected, "{first}+{second}: the {method} answer");
        }
    }
    assert_eq!(s.version_count(), 1);
}

/// A write that cannot get the database in time (SQLite's write lock held elsewhere past
/// busy_timeout, as by a long `carnet reindex`; on PostgreSQL, the pool exhausted past its
/// timeout) is a 503 OperationOutcome (`transient`): the server is busy, not broken.
#[test]
fn a_write_that_cannot_get_the_database_in_time_is_503() {
    use diesel::{Connection, RunQueryDsl};
    let s = Server::start();
    if crate::harness::dialect(&s) != carnet::store::search::Dialect::Sqlite {
        return; // The pool's 30 s timeout is not worth a test run; the mapping is shared.
    }
    let mut p = s.create(&patient("1"));
    let id = p["id"].as_str().unwrap().to_owned();
    let path = s.dir().join("carnet.db");
    let mut other = diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
    diesel::sql_query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .unwrap();
    p["gender"] = json!("male");
    let reply = s.send("PUT", &format!("/Patient/{id}"), &p, &[]);
    diesel::sql_query("ROLLBACK").execute(&mut other).unwrap();
    let issue = reply.outcome(503);
    assert_eq!(issue["code"], "transient", "{}", reply.body);
    let current = s.get(&format!("/Patient/{id}")).json();
    assert_eq!(current["meta"]["versionId"], "1");
    assert_eq!(current["gender"], "female");
    assert_eq!(
        s.send("PUT", &format!("/Patient/{id}"), &p, &[]).status,
        200
    );
}

/// A request the codec refuses after others on the same keep-alive connection is answered with
/// an OperationOutcome too, not only a connection's first request.
#[test]
fn a_refused_request_after_others_on_a_connection_is_an_operation_outcome() {
    let s = Server::start();
    let id = s.create(&patient("1"))["id"].as_str().unwrap().to_owned();
    let auth = format!("Host: x\r\nAuthorization: Bearer {}\r\n", s.default_token);
    let mut stream = connect(&s);
    let request = format!(
        "GET /fhir/Patient/{id} HTTP/1.1\r\n{auth}\r\n\
         HEAD /fhir/Patient/{id} HTTP/1.1\r\n{auth}\r\n\
         POST /fhir/Patient HTTP/1.1\r\n{auth}Content-Length: 2\r\nContent-Length: 3\r\n\r\n{{}}"
    );
    std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
    let mut bytes = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stream, &mut bytes);
    let replies = split_pipelined(&bytes, &[false, true, false]);
    assert!(replies[0].0.starts_with("HTTP/1.1 200"), "{}", replies[0].0);
    assert!(replies[1].0.starts_with("HTTP/1.1 200"), "{}", replies[1].0);
    let (head, body) = &replies[2];
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let outcome: Value =
        serde_json::from_slice(body).unwrap_or_else(|_| panic!("{head}: {body:?}"));
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["code"], "structure");
    assert_eq!(s.version_count(), 1);
    assert_eq!(s.get(&format!("/Patient/{id}")).status, 200);
}

/// A Binary whose bytes mimic a bare error head is sent as it is, whether its answer is the
/// first on a connection or follows others, read or answered to HEAD.
#[test]
fn a_binary_that_mimics_a_bare_error_head_is_never_rewritten() {
    let s = Server::start();
    let mimic = b"HTTP/1.1 400 X\r\ncontent-length: 0\r\n\r\n";
    let created = s.request_bytes(
        "POST",
        "/Binary",
        &[("Content-Type", "application/octet-stream")],
        Some(mimic),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let auth = format!("Host: x\r\nAuthorization: Bearer {}\r\n", s.default_token);
    let read = format!("GET /fhir/Binary/{id} HTTP/1.1\r\n{auth}\r\n");
    let head = format!("HEAD /fhir/Binary/{id} HTTP/1.1\r\n{auth}\r\n");
    let mut stream = connect(&s);
    let request = format!("{read}{head}{read}{head}GET /fhir/metadata HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
    let mut bytes = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stream, &mut bytes);
    let replies = split_pipelined(&bytes, &[false, true, false, true, false]);
    for (i, (head, body)) in replies.iter().enumerate().take(4) {
        assert!(head.starts_with("HTTP/1.1 200"), "{i}: {head}");
        let expected: &[u8] = if i % 2 == 0 { mimic } else { b"" };
        assert_eq!(body, expected, "{i}");
    }
    assert!(replies[4].0.starts_with("HTTP/1.1 200"), "{}", replies[4].0);
}

/// Writers queued on one hot resource do not take the connections every other request needs:
/// with the resource's lock held (here by another session, as by a slow write), ten writers to
/// it wait, and a read of another resource is still answered at once (PostgreSQL, whose
/// readers and writers share one pool of 8 connections).
#[test]
fn writers_queued_on_a_hot_resource_leave_connections_for_reads() {
    use diesel::{Connection, PgConnection, RunQueryDsl};
    let s = Arc::new(Server::start());
    let Ok(admin) = std::env::var("CARNET_TEST_DATABASE_URL") else {
        return; // SQLite: writers have their own connection, readers theirs.
    };
    if !admin.starts_with("postgres") {
        return;
    }
    let hot = s.create(&patient("1"))["id"].as_str().unwrap().to_owned();
    let cold = s.create(&patient("2"))["id"].as_str().unwrap().to_owned();
    let (prefix, _) = admin.rsplit_once('/').unwrap();
    let name = s.dir().file_name().unwrap().to_str().unwrap();
    let mut other = PgConnection::establish(&format!("{prefix}/{name}")).unwrap();
    // The resource's advisory lock key: FNV-1a of "resource␟Patient␟{id}" (store::db).
    let mut key: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in format!("resource\u{1f}Patient\u{1f}{hot}").bytes() {
        key ^= u64::from(byte);
        key = key.wrapping_mul(0x0100_0000_01b3);
    }
    diesel::sql_query(format!("SELECT pg_advisory_lock({})", key as i64))
        .execute(&mut other)
        .unwrap();
    let writers: Vec<_> = (0..10)
        .map(|i| {
            let (s, hot) = (s.clone(), hot.clone());
            std::thread::spawn(move || {
                let ops =
                    json!([{"op": "add", "path": "/name/-", "value": {"family": format!("W{i}")}}]);
                s.request(
                    "PATCH",
                    &format!("/Patient/{hot}"),
                    &[("Content-Type", "application/json-patch+json")],
                    Some(&ops.to_string()),
                )
                .status
            })
        })
        .collect();
    // Wait until a writer waits on the lock: the others are queued behind it by then.
    #[derive(diesel::QueryableByName)]
    struct Waiting {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    loop {
        let waiting: Waiting = diesel::sql_query(
            "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
        )
        .get_result(&mut other)
        .unwrap();
        if waiting.n > 0 {
            break;
        }
        std::thread::yield_now();
    }
    let read = s.get(&format!("/Patient/{cold}"));
    diesel::sql_query("SELECT pg_advisory_unlock_all()")
        .execute(&mut other)
        .unwrap();
    assert_eq!(read.status, 200, "{}", read.body);
    let statuses: Vec<u16> = writers.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(statuses, [200; 10]);
    let names = s.get(&format!("/Patient/{hot}")).json()["name"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(names, 11);
}

/// Pooled connections are not tested each time they leave the pool (a round trip per
/// request): when the database drops them (a restart, an administrator), the request that
/// finds one lost is still answered — a read is run again on another connection, a write
/// whose transaction could not begin is begun again — and the other lost connections are
/// checked before their next use (PostgreSQL).
#[test]
fn requests_are_answered_after_the_database_drops_every_connection() {
    let s = Server::start();
    if !s.database_url().starts_with("postgres") {
        return; // SQLite: no server to drop connections.
    }
    let id = s.create(&patient("1"))["id"].as_str().unwrap().to_owned();
    // Several requests at once first, so that the pool holds several connections.
    std::thread::scope(|scope| {
        for _ in 0..6 {
            scope.spawn(|| assert_eq!(s.get(&format!("/Patient/{id}")).status, 200));
        }
    });
    s.drop_database_connections();
    let read = s.get(&format!("/Patient/{id}"));
    assert_eq!(read.status, 200, "{}", read.body);
    s.drop_database_connections();
    let search = s.get(&format!("/Patient?_id={id}"));
    assert_eq!(search.status, 200, "{}", search.body);
    assert_eq!(search.json()["total"], 1);
    s.drop_database_connections();
    let created = s.send("POST", "/Patient", &patient("2"), &[]);
    assert_eq!(created.status, 201, "{}", created.body);
    s.drop_database_connections();
    let ops = json!([{"op": "add", "path": "/active", "value": true}]);
    let patched = s.request(
        "PATCH",
        &format!("/Patient/{id}"),
        &[("Content-Type", "application/json-patch+json")],
        Some(&ops.to_string()),
    );
    assert_eq!(patched.status, 200, "{}", patched.body);
}
