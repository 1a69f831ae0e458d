//! FHIR search: the parameter registry generated from the R4 definitions, what each resource
//! contributes to the index tables, parsing of search requests, and their compilation to SQL.
//!
//! The index is written with the resource (same transaction); a search reads it with one SQL
//! query per page (and one count), paged by a keyset on the resource id.

pub mod cursor;
pub mod extract;
pub mod index;
pub mod lists;
pub mod query;
pub mod record;
pub mod registry;
#[cfg(test)]
mod registry_gen;
pub mod sql;
mod visibility;

use crate::consent::Restriction;
use crate::store::search::{Found, KeyValue};
use crate::store::{Store, StoreError, Version};
use query::{Search, Total};

/// A place in the result order: a resource's sort key values and id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mark {
    pub resource_type: String,
    pub keys: Vec<Option<KeyValue>>,
    pub id: String,
}

/// Where a page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// The first page.
    Start,
    /// Just after this place (a `next` link).
    After(Mark),
    /// Just before this place (a `previous` link).
    Before(Mark),
}

impl Position {
    /// The text a cursor carries.
    pub fn encode(&self) -> String {
        let (direction, mark) = match self {
            Position::Start => return String::new(),
            Position::After(mark) => ("a", mark),
            Position::Before(mark) => ("b", mark),
        };
        serde_json::to_string(&(direction, mark)).expect("a mark serializes")
    }

    /// The position of a cursor's text (already authenticated).
    pub fn decode(text: &str) -> Option<Position> {
        match serde_json::from_str::<(String, Mark)>(text).ok()? {
            (direction, mark) if direction == "a" => Some(Position::After(mark)),
            (direction, mark) if direction == "b" => Some(Position::Before(mark)),
            _ => None,
        }
    }
}

/// How many matches the first page of a search not pinned to one record (by `patient=`, a
/// compartment…) counts when the client did not ask for a total: past this many it carries
/// none (FHIR leaves `Bundle.total` optional), and `_total=accurate` counts them all. Counting
/// every match, the consent restriction checked on each, took 15 s for the 267,500 of a
/// feeding system's `status=current&type=…` among 2,000,000 documents (docs/performance.md,
/// session 13).
pub const COUNTED_UNASKED: i64 = 1000;

/// Whether a page carries the search's total.
#[derive(Debug, Clone, Copy)]
enum Counting {
    No,
    All,
    /// Only when there are this many matches or fewer.
    UpTo(i64),
}

/// Most resources `_include`/`_revinclude` add to one page; past it the page says so.
pub const MAX_INCLUDED: usize = 1000;

/// Ids of resources whose includes one query looks up.
const INCLUDE_IDS_PER_QUERY: usize = 500;

/// `:iterate` follows includes this many times at most.
const MAX_ITERATIONS: usize = 4;

/// One page of results.
#[derive(Debug)]
pub struct Page {
    pub versions: Vec<Version>,
    /// What `_include` and `_revinclude` added (never a match again).
    pub included: Vec<Version>,
    /// Whether includes were cut at [`MAX_INCLUDED`].
    pub truncated: bool,
    /// All matches, when asked for.
    pub total: Option<i64>,
    /// Where the next and previous pages start, when there are such pages.
    pub next: Option<Position>,
    pub previous: Option<Position>,
}

/// Runs one search per type (a system-level search: one type after the other in the order
/// given, paged as one list), each with the restriction the consent engine gave it: matches,
/// totals, chains, `_has` and includes cover only what the caller may see. Pages are keyed
/// on the sort values and the id, so a write elsewhere in the result set never shifts a
/// page: no match is skipped or repeated.
pub fn execute_all(
    store: &Store,
    searches: &[(Search, Restriction)],
    base_url: &str,
    position: &Position,
) -> Result<Page, StoreError> {
    let dialect = store.dialect();
    let Some((first, first_restriction)) = searches.first() else {
        return Ok(Page {
            versions: Vec::new(),
            included: Vec::new(),
            truncated: false,
            total: Some(0),
            next: None,
            previous: None,
        });
    };
    let within_one_record = searches.iter().all(|(_, r)| r.record().is_some());
    let counting = match (first.total, position) {
        (Some(Total::None), _) => Counting::No,
        (Some(_), _) => Counting::All,
        (None, Position::Start) if within_one_record || first.count_only => Counting::All,
        (None, Position::Start) => Counting::UpTo(COUNTED_UNASKED),
        (None, _) => Counting::No,
    };
    // The total, or `None` past `at_most` matches.
    let count = |at_most: Option<i64>| -> Result<Option<i64>, StoreError> {
        let mut total = 0;
        for (search, restriction) in searches {
            // One more than is left, to tell "exactly at the bound" from "past it".
            let left = at_most.map(|at_most| at_most - total + 1);
            let sql = sql::count_up_to(search, restriction, base_url, left, dialect);
            total += store.count(&sql)?;
            if at_most.is_some_and(|at_most| total > at_most) {
                return Ok(None);
            }
        }
        Ok(Some(total))
    };
    if first.count_only {
        return Ok(Page {
            versions: Vec::new(),
            included: Vec::new(),
            truncated: false,
            total: count(None)?,
            next: None,
            previous: None,
        });
    }
    let limit = first.count as usize;
    let (mark, backwards) = match position {
        Position::Start => (None, false),
        Position::After(mark) => (Some(mark), false),
        Position::Before(mark) => (Some(mark), true),
    };
    let start = match mark {
        Some(mark) => searches
            .iter()
            .position(|(s, _)| s.resource_type == mark.resource_type)
            .unwrap_or(0),
        None if backwards => searches.len() - 1,
        None => 0,
    };
    let order: Vec<usize> = if backwards {
        (0..=start).rev().collect()
    } else {
        (start..searches.len()).collect()
    };
    let mut found: Vec<(usize, Found)> = Vec::new();
    for (step, index) in order.into_iter().enumerate() {
        let from = if step == 0 { mark } else { None };
        let wanted = (limit + 1 - found.len()) as i64;
        let (search, restriction) = &searches[index];
        let sql = sql::page_from(
            search,
            restriction,
            base_url,
            from,
            backwards,
            wanted,
            dialect,
        );
        found.extend(store.found(&sql)?.into_iter().map(|f| (index, f)));
        if found.len() > limit {
            break;
        }
    }
    let more = found.len() > limit;
    // A first page that holds every match (every search was read from its start, and fewer
    // rows came than it asked for) is its own total: no second statement to count them.
    let total = match (counting, position, more) {
        (Counting::No, ..) => None,
        (_, Position::Start, false) => Some(found.len() as i64),
        (Counting::All, ..) => count(None)?,
        (Counting::UpTo(at_most), ..) => count(Some(at_most))?,
    };
    found.truncate(limit);
    if backwards {
        found.reverse();
    }
    let mark = |(index, f): &(usize, Found)| Mark {
        resource_type: f.version.resource_type.clone(),
        keys: f.keys[..searches[*index].0.sort.len()].to_vec(),
        id: f.version.id.clone(),
    };
    let first_mark = found.first().map(mark);
    let last_mark = found.last().map(mark);
    let (next, previous) = match position {
        Position::Start => (last_mark.filter(|_| more).map(Position::After), None),
        Position::After(after) => (
            last_mark.filter(|_| more).map(Position::After),
            Some(Position::Before(
                first_mark.unwrap_or_else(|| after.clone()),
            )),
        ),
        Position::Before(before) => (
            Some(Position::After(last_mark.unwrap_or_else(|| before.clone()))),
            first_mark.filter(|_| more).map(Position::Before),
        ),
    };
    let versions: Vec<Version> = found.into_iter().map(|(_, f)| f.version).collect();
    // The matches of a search over several types come from several records: their includes
    // are not pinned to the first search's.
    let include_restriction = match searches.len() {
        1 => first_restriction.clone(),
        _ => first_restriction.listing(),
    };
    let (included, truncated) = included(store, first, &include_restriction, &versions)?;
    Ok(Page {
        versions,
        included,
        truncated,
        total,
        next,
        previous,
    })
}

/// Applies the includes to the matches, then the `:iterate` ones to what they added, until
/// nothing new comes or the bounds are reached; only what `restriction` lets the caller see.
fn included(
    store: &Store,
    search: &Search,
    restriction: &Restriction,
    matches: &[Version],
) -> Result<(Vec<Version>, bool), StoreError> {
    let key = |v: &Version| (v.resource_type.clone(), v.id.clone());
    let mut seen: std::collections::HashSet<(String, String)> = matches.iter().map(key).collect();
    let mut frontier: Vec<(String, String)> = matches.iter().map(key).collect();
    let mut included = Vec::new();
    // What an `:iterate` round follows may have left the record a pinned search is about.
    let iterated = restriction.listing();
    for round in 0..MAX_ITERATIONS {
        let mut added = Vec::new();
        for include in search.includes.iter().filter(|i| round == 0 || i.iterate) {
            let from_types: Vec<&String> = if include.reverse {
                include.target_types.iter().collect()
            } else {
                vec![&include.source_type]
            };
            for from_type in from_types {
                let ids: Vec<String> = frontier
                    .iter()
                    .filter(|(t, _)| t == from_type)
                    .map(|(_, id)| id.clone())
                    .collect();
                // A page may be large (search.max_count) and so may what an include added:
                // a bounded number of ids per query keeps the binds far below the backends'
                // limits.
                for ids in ids.chunks(INCLUDE_IDS_PER_QUERY) {
                    let room = MAX_INCLUDED + 1 - included.len() - added.len();
                    let sql = sql::included(
                        include,
                        match round {
                            0 => restriction,
                            _ => &iterated,
                        },
                        from_type,
                        ids,
                        room as i64,
                        store.dialect(),
                    );
                    for Found { version, .. } in store.found(&sql)? {
                        if seen.insert(key(&version)) {
                            added.push(version);
                        }
                    }
                    if included.len() + added.len() > MAX_INCLUDED {
                        break;
                    }
                }
                if included.len() + added.len() > MAX_INCLUDED {
                    added.truncate(MAX_INCLUDED - included.len());
                    included.extend(added);
                    return Ok((included, true));
                }
            }
        }
        if added.is_empty() {
            break;
        }
        frontier = added.iter().map(key).collect();
        included.extend(added);
    }
    Ok((included, false))
}
