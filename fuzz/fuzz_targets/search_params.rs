//! A search query string (`[type]?…`, or the form body of `POST [type]/_search`): decoded,
//! parsed into a typed query (strict and lenient), its cursor opened, and compiled to SQL
//! for both backends.
#![no_main]

use carnet::search::{cursor, query, sql, Position};
use carnet::store::search::Dialect;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

const BASE_URL: &str = "http://127.0.0.1:8080/fhir";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (kind, query_string) = common::split_type(text);
    let Ok(params) = serde_urlencoded::from_str::<Vec<(String, String)>>(query_string) else {
        return;
    };
    for strict in [true, false] {
        let Ok(search) = query::parse(kind.name, &params, strict, 20, 100) else {
            continue;
        };
        if let Some(sealed) = &search.cursor {
            let _ = cursor::open(b"fuzz secret", "binding", sealed).as_deref().and_then(Position::decode);
        }
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            let _ = sql::page(&search, BASE_URL, &Position::Start, 21, dialect);
            let _ = sql::count(&search, BASE_URL, dialect);
        }
    }
});
