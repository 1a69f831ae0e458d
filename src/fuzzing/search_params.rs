//! A search query string (`[type]?…`, or the form body of `POST [type]/_search`): decoded,
//! parsed into a typed query (strict and lenient), its cursor opened, decided by the consent
//! engine for a professional (the most elaborate restriction) and compiled to SQL for both
//! backends (its page, its count, and its count bounded as an unasked total's), with the
//! record it names (if any) looked up and the search rewritten to it. A `_cursor` is also
//! opened as a history page's position and compiled into that page.

use crate::auth::principal::{Principal, Purpose};
use crate::auth::{scopes, Access};
use crate::consent::Engine;
use crate::search::{cursor, query, record, sql, Position, COUNTED_UNASKED};
use crate::store::search::Dialect;
use crate::store::{HistoryPosition, HistoryScope};

use super::common;

const BASE_URL: &str = "http://127.0.0.1:8080/fhir";

/// A pharmacist in break-glass: every clause of a restriction (blocks, authorization,
/// emergency, the profession matrix's document classes and types). Their searches must name
/// one patient; the others are compiled for a feeding system.
fn professional() -> Access {
    Access {
        principal: Principal::Professional {
            practitioner_id: "p1".into(),
            profession: "21".into(),
            organization: "o1".into(),
            purpose: Purpose::BreakGlass {
                reason: "fuzz".into(),
            },
        },
        scopes: scopes::parse_scopes("user/*.cruds").expect("valid scopes"),
    }
}

fn feeding_system() -> Access {
    Access {
        principal: Principal::FeedingSystem {
            client_id: "lab".into(),
            organization: "https://finess.esante.gouv.fr|750000001".into(),
        },
        scopes: scopes::parse_scopes("system/*.cruds").expect("valid scopes"),
    }
}

/// One input, run as the fuzz target runs it: panics where the server would misbehave.
pub fn run(data: &[u8]) {
    let Some((kind, params)) = common::query_input(data) else {
        return;
    };
    for (_, value) in params.iter().filter(|(key, _)| key == "_cursor") {
        if let Some(position) = HistoryPosition::from_cursor(value) {
            let texts = [&position.resource_type, &position.id, &position.patient_id];
            assert!(
                texts.iter().all(|t| !t.chars().any(char::is_control)),
                "a history position holds no control character: {position:?}"
            );
            if let Ok(restriction) = Engine::default().decide_system_history(&feeding_system()) {
                for dialect in [Dialect::Sqlite, Dialect::Postgres] {
                    let scope = HistoryScope::System;
                    let _ = sql::history(&restriction, &scope, None, Some(&position), 21, dialect);
                }
            }
        }
    }
    for strict in [true, false] {
        let Ok(search) = query::parse(kind.name, &params, strict, 20, 100) else {
            continue;
        };
        if let Some(sealed) = &search.cursor {
            let _ = cursor::open(b"fuzz secret", "binding", sealed)
                .as_deref()
                .and_then(Position::decode);
        }
        let engine = Engine::default();
        let decided = engine
            .decide_search(&professional(), search.clone())
            .or_else(|_| engine.decide_search(&feeding_system(), search));
        let Ok((search, restriction)) = decided else {
            continue;
        };
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            let _ = sql::page(
                &search,
                &restriction,
                BASE_URL,
                &Position::Start,
                21,
                dialect,
            );
            // Every match (`_total`), or up to the bound a first page counts when not asked.
            for at_most in [None, Some(COUNTED_UNASKED + 1)] {
                let _ = sql::count_up_to(&search, &restriction, BASE_URL, at_most, dialect);
            }
            // A search naming one record: its patient found (by id, or by identifier through
            // the lookup table, which then names an id) with the record's facts, and the search
            // rewritten to that patient.
            if let Some((index, named)) = record::named(&search) {
                let id = match &named {
                    record::Named::Id(id) => id.as_str(),
                    record::Named::Identifier { .. } => "p1",
                };
                let pinned = record::by_id(search.clone(), index, "p1");
                let in_record = restriction.in_record(id, false);
                let _ = sql::count(&pinned, &in_record, BASE_URL, dialect);
                let _ = sql::page(&pinned, &in_record, BASE_URL, &Position::Start, 20, dialect);
            }
        }
    }
}
