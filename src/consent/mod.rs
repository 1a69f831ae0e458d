//! The consent engine: the only place that says yes or no.
//!
//! Every access to stored data starts with a decision here. A refusal is a [`Denied`]; a
//! permission is a [`Restriction`], the rows the caller may see, which the query builder
//! (`search::sql`) renders into every query it writes. A `Restriction` can only be made here,
//! and every query of the store takes one, so a path that forgets to ask does not compile.
//!
//! Today the decision applies the token's SMART scopes (a scope never widens a rule); the
//! record rules of the domain (§2–§5, §8) narrow the restriction further.

pub mod facts;
pub mod matrix;
pub mod model;
pub mod policy;

use crate::auth::principal::Principal;
use crate::auth::scopes::Interaction;
use crate::auth::Access;
use crate::fhir::registry::{self, ResourceKind};
use crate::search::query::{Criterion, Search, Test};
use model::Writer;

/// A refusal: the caller may not do this at all (403, with this text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied(pub String);

/// The rows a permitted caller may see. Opaque outside this module; the query builder renders
/// it for each table alias through [`Restriction::rule`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restriction {
    rule: Rule,
}

/// What a [`Restriction`] keeps, as the query builder renders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// Every row the query selects: the scopes already bounded the types.
    ScopesOnly,
}

impl Restriction {
    /// What the query builder renders.
    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    fn scopes_only() -> Restriction {
        Restriction {
            rule: Rule::ScopesOnly,
        }
    }
}

/// The scope-only restriction, for unit tests of the query builder.
#[cfg(test)]
pub(crate) fn scopes_only_for_tests() -> Restriction {
    Restriction::scopes_only()
}

/// What a permitted write may do: read its target with the restriction, create or not, and
/// record who wrote it.
#[derive(Debug, Clone)]
pub struct WriteGrant {
    /// The rows the write may find (its target, a conditional match).
    pub restriction: Restriction,
    /// An update or conditional update that would create is refused otherwise.
    pub may_create: bool,
    /// Kept on every resource this write creates.
    pub writer: Writer,
}

/// May `access` do each of `interactions` on `kind`? The restriction to read it with if so.
/// Read, vread, instance history and Binary content ask for `Read`; searches and type history
/// for `Search`.
pub fn decide(
    access: &Access,
    kind: &ResourceKind,
    interactions: &[Interaction],
) -> Result<Restriction, Denied> {
    match interactions
        .iter()
        .find(|i| !access.scope_allows(kind.name, **i))
    {
        None => Ok(Restriction::scopes_only()),
        Some(missing) => Err(Denied(format!(
            "the token's scopes do not allow {} on {} (needs the `{}` permission)",
            interaction_name(*missing),
            kind.name,
            letter(*missing)
        ))),
    }
}

/// A write of `interactions` (create, update, delete; conditional forms add search and read)
/// on `kind`.
pub fn decide_write(
    access: &Access,
    kind: &ResourceKind,
    interactions: &[Interaction],
) -> Result<WriteGrant, Denied> {
    let restriction = decide(access, kind, interactions)?;
    Ok(WriteGrant {
        restriction,
        may_create: access.scope_allows(kind.name, Interaction::Create),
        writer: writer_of(&access.principal),
    })
}

/// History of the whole server lists every type's versions: the token must be allowed to search
/// them all.
pub fn decide_system_history(access: &Access) -> Result<Restriction, Denied> {
    for kind in registry::all() {
        decide(access, kind, &[Interaction::Search])?;
    }
    Ok(Restriction::scopes_only())
}

/// The types a system-level search without `_type` covers: those the token may search.
pub fn searchable_types(access: &Access) -> Vec<&'static ResourceKind> {
    registry::all()
        .iter()
        .filter(|k| access.scope_allows(k.name, Interaction::Search))
        .collect()
}

/// A search of `search.resource_type`: chains and `_has` search other types, and includes
/// return them, so the token must allow searching those types too. Includes keep only the
/// types the token may read. Gives the search to run and its restriction.
pub fn decide_search(access: &Access, mut search: Search) -> Result<(Search, Restriction), Denied> {
    let kind = known(&search.resource_type)?;
    let restriction = decide(access, kind, &[Interaction::Search])?;
    let mut types = Vec::new();
    for criterion in &search.criteria {
        searched_types(criterion, &mut types);
    }
    for name in types {
        decide(access, known(name)?, &[Interaction::Search])?;
    }
    for include in &mut search.includes {
        if include.reverse {
            decide(access, known(&include.source_type)?, &[Interaction::Read])?;
        } else {
            include
                .target_types
                .retain(|t| access.scope_allows(t, Interaction::Read));
            if include.target_types.is_empty() {
                return Err(Denied(format!(
                    "the token's scopes allow reading none of the types {}:{} refers to",
                    include.source_type, include.param
                )));
            }
        }
    }
    Ok((search, restriction))
}

/// The types a criterion searches besides its own: chain targets and `_has` sources.
fn searched_types<'a>(criterion: &'a Criterion, out: &mut Vec<&'a str>) {
    match &criterion.test {
        Test::Chain(targets) => {
            for (target, inner) in targets {
                out.push(target);
                searched_types(inner, out);
            }
        }
        Test::Has {
            source_type, inner, ..
        } => {
            out.push(source_type);
            searched_types(inner, out);
        }
        _ => {}
    }
}

/// A type the parser accepted is registered; refuse rather than panic if not.
fn known(name: &str) -> Result<&'static ResourceKind, Denied> {
    registry::lookup(name).ok_or_else(|| Denied(format!("{name} is not served here")))
}

/// Who a write by `principal` is recorded as written by.
pub fn writer_of(principal: &Principal) -> Writer {
    match principal {
        Principal::Patient { id } => Writer::Patient(id.clone()),
        Principal::Guardian { related_person_id } => Writer::Guardian(related_person_id.clone()),
        Principal::Professional {
            practitioner_id, ..
        } => Writer::Practitioner(practitioner_id.clone()),
        Principal::FeedingSystem { client_id, .. } => Writer::System(client_id.clone()),
        Principal::CatalogueApp { client_id, .. } => Writer::App(client_id.clone()),
        Principal::Provisioning { client_id } => Writer::Provisioning(client_id.clone()),
    }
}

fn interaction_name(interaction: Interaction) -> &'static str {
    match interaction {
        Interaction::Create => "create",
        Interaction::Read => "read",
        Interaction::Update => "update",
        Interaction::Delete => "delete",
        Interaction::Search => "search",
    }
}

fn letter(interaction: Interaction) -> char {
    match interaction {
        Interaction::Create => 'c',
        Interaction::Read => 'r',
        Interaction::Update => 'u',
        Interaction::Delete => 'd',
        Interaction::Search => 's',
    }
}
