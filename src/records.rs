//! The one door to the data: the HTTP layer reaches stored resources only through a
//! [`Records`] handle opened for the request's caller. Each of its doors first asks the
//! consent engine, which refuses or gives the [`Restriction`] that every query behind the door
//! carries; the handles it returns ([`Reading`], [`HistoryReading`], [`WriteContext`]) hold
//! that restriction, so nothing behind them can read without it.

use crate::auth::principal::Principal;
use crate::auth::scopes::Interaction;
use crate::auth::Access;
use crate::consent::limiter::Slowed;
use crate::consent::{Denied, Engine, Restriction};
use crate::fhir::registry::ResourceKind;
use crate::fhir::writes::WriteContext;
use crate::search::query::Search;
use crate::search::record::{self, Named};
use crate::search::{sql, Page, Position};
use crate::store::{Filed, HistoryPosition, HistoryScope, Store, StoreError, Version};
use std::sync::Arc;

/// Why data could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A professional over the hourly patient limit (domain §5): 429, retry after this many
    /// seconds.
    #[error("too many patients this hour")]
    Slowed(u64),
}

impl From<Slowed> for DataError {
    fn from(slowed: Slowed) -> DataError {
        DataError::Slowed(slowed.retry_after)
    }
}

/// Who is about to be answered, for the hourly patient count of professionals and what a
/// List may show them.
#[derive(Clone)]
struct Reader {
    engine: Arc<Engine>,
    principal: Principal,
    store: Arc<Store>,
    base_url: String,
}

impl Reader {
    /// Counts the patients of `versions` before they are answered.
    fn answering<'a>(&self, versions: impl IntoIterator<Item = &'a Version>) -> Result<(), Slowed> {
        let patients = versions.into_iter().filter_map(|v| v.patient_id.as_deref());
        self.engine.touch(&self.principal, patients)
    }

    /// [`Reader::answering`], then each List loses the entries the caller may not see
    /// (domain §3: a hidden resource is absent from List entries). An entry naming a resource
    /// of this server that is missing or deleted goes too, so the two look the same.
    fn answer(&self, restriction: &Restriction, versions: &mut [Version]) -> Result<(), DataError> {
        self.answering(versions.iter())?;
        self.redact_lists(restriction, versions)
    }

    /// Takes out of each List the entries the caller may not see (see [`Reader::answer`]).
    fn redact_lists(
        &self,
        restriction: &Restriction,
        versions: &mut [Version],
    ) -> Result<(), DataError> {
        for version in versions {
            crate::search::lists::shown(&self.store, restriction, &self.base_url, version)?;
        }
        Ok(())
    }
}

/// What the server shares with every request: the store behind the door, and the settings its
/// handles need. The HTTP layer holds this, never the [`Store`] itself.
pub struct Door {
    store: Arc<Store>,
    engine: Arc<Engine>,
    base_url: String,
    update_create: bool,
}

impl Door {
    pub fn new(store: Arc<Store>, engine: Engine, base_url: &str, update_create: bool) -> Door {
        Door {
            store,
            engine: Arc::new(engine),
            base_url: base_url.to_owned(),
            update_create,
        }
    }

    /// The handle of one request, bound to its caller.
    pub fn open(&self, access: &Access) -> Records {
        Records {
            store: self.store.clone(),
            engine: self.engine.clone(),
            access: access.clone(),
            base_url: self.base_url.clone(),
            update_create: self.update_create,
        }
    }
}

/// The data one caller may reach, for one request.
#[derive(Clone)]
pub struct Records {
    store: Arc<Store>,
    engine: Arc<Engine>,
    access: Access,
    base_url: String,
    update_create: bool,
}

impl Records {
    /// Read, vread, instance history and Binary content of `kind`.
    pub fn reading(&self, kind: &'static ResourceKind) -> Result<Reading, Denied> {
        let restriction = self
            .engine
            .decide(&self.access, kind, &[Interaction::Read])?;
        Ok(Reading {
            store: self.store.clone(),
            restriction,
            kind,
            reader: self.reader(),
        })
    }

    fn reader(&self) -> Reader {
        Reader {
            engine: self.engine.clone(),
            principal: self.access.principal.clone(),
            store: self.store.clone(),
            base_url: self.base_url.clone(),
        }
    }

    /// A search of one type as parsed: the search to run (includes narrowed to what the caller
    /// may read) and its restriction, for [`Records::search`].
    pub fn searching(&self, search: Search) -> Result<(Search, Restriction), Denied> {
        self.engine.decide_search(&self.access, search)
    }

    /// Runs searches that [`Records::searching`] permitted.
    pub fn search(
        &self,
        searches: &[(Search, Restriction)],
        position: &Position,
    ) -> Result<Page, DataError> {
        let searches = searches
            .iter()
            .map(|(search, restriction)| self.pinned(search.clone(), restriction))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let mut page =
            crate::search::execute_all(&self.store, &searches, &self.base_url, position)?;
        let reader = self.reader();
        reader.answering(page.versions.iter().chain(&page.included))?;
        // Every search of a request is one caller's: their restrictions differ only in how
        // far record headers reach, and a List's entries are a listing anyway.
        if let Some((_, restriction)) = searches.first() {
            reader.redact_lists(restriction, &mut page.versions)?;
            reader.redact_lists(restriction, &mut page.included)?;
        }
        Ok(page)
    }

    /// A search naming one patient's record, pinned to it (see [`crate::search::record`]): by
    /// id, or by an identifier exactly one current Patient has; any other stays as it is.
    fn pinned(
        &self,
        search: Search,
        restriction: &Restriction,
    ) -> Result<(Search, Restriction), StoreError> {
        let Some((index, named)) = record::named(&search) else {
            return Ok((search, restriction.clone()));
        };
        match named {
            Named::Id(id) => {
                let pinned = restriction.in_record(&id, false);
                Ok((search, pinned))
            }
            Named::Identifier {
                system,
                value,
                chained,
            } => {
                let found = self.engine.in_record_of_identifier(
                    &self.store,
                    restriction,
                    (&system, &value),
                    chained,
                )?;
                Ok(match found {
                    Some((id, pinned)) => (record::by_id(search, index, &id), pinned),
                    None => (search, restriction.clone()),
                })
            }
        }
    }

    /// The types a system-level search without `_type` covers.
    pub fn searchable_types(&self) -> Vec<&'static ResourceKind> {
        self.engine.searchable_types(&self.access)
    }

    /// Whether the caller may search `kind` (before its parameters are read).
    pub fn may_search(&self, kind: &'static ResourceKind) -> Result<(), Denied> {
        self.engine
            .decide(&self.access, kind, &[Interaction::Search])
            .map(drop)
    }

    /// `Patient/{id}/$everything`: the compartment types the caller may search, and a check
    /// that the Patient is one they may see (see [`Engine::decide_everything`]).
    pub fn everything(&self) -> Result<Everything, Denied> {
        let (kinds, restriction) = self.engine.decide_everything(&self.access)?;
        Ok(Everything {
            store: self.store.clone(),
            restriction,
            kinds,
            reader: self.reader(),
        })
    }

    /// History of every resource of `kind`.
    pub fn type_history(&self, kind: &'static ResourceKind) -> Result<HistoryReading, Denied> {
        let restriction = self.engine.decide_type_history(&self.access, kind)?;
        Ok(self.history_of(HistoryScope::Type(kind.name.to_owned()), restriction))
    }

    /// History of the whole server.
    pub fn system_history(&self) -> Result<HistoryReading, Denied> {
        let restriction = self.engine.decide_system_history(&self.access)?;
        Ok(self.history_of(HistoryScope::System, restriction))
    }

    fn history_of(&self, scope: HistoryScope, restriction: Restriction) -> HistoryReading {
        HistoryReading {
            store: self.store.clone(),
            restriction,
            scope,
            reader: self.reader(),
        }
    }

    /// Writes of `kind` needing `interactions` (a conditional write also searches).
    pub fn writing(
        &self,
        kind: &'static ResourceKind,
        interactions: &[Interaction],
    ) -> Result<WriteContext, Denied> {
        let grant = self.engine.decide_write(&self.access, kind, interactions)?;
        Ok(WriteContext {
            store: self.store.clone(),
            base_url: self.base_url.clone(),
            update_create: self.update_create,
            grant,
        })
    }
}

/// Direct access to the resources of one type.
#[derive(Clone)]
pub struct Reading {
    store: Arc<Store>,
    restriction: Restriction,
    kind: &'static ResourceKind,
    reader: Reader,
}

impl Reading {
    /// The current version of `id`, deleted or not, if the caller may see it.
    pub fn read(&self, id: &str) -> Result<Option<Version>, DataError> {
        let (restriction, kind, dialect) =
            (&self.restriction, self.kind.name, self.store.dialect());
        let found = self.store.found_filed(kind, id, |filed| {
            sql::current(restriction, kind, id, filed, dialect)
        })?;
        let mut version = first(found);
        self.reader
            .answer(&self.restriction, version.as_mut_slice())?;
        Ok(version)
    }

    /// Version `version_id` of `id`, if the caller may see the resource.
    pub fn vread(&self, id: &str, version_id: i64) -> Result<Option<Version>, DataError> {
        let (restriction, kind, dialect) =
            (&self.restriction, self.kind.name, self.store.dialect());
        let found = self.store.found_filed(kind, id, |filed| {
            sql::version(restriction, kind, id, version_id, filed, dialect)
        })?;
        let mut version = first(found);
        self.reader
            .answer(&self.restriction, version.as_mut_slice())?;
        Ok(version)
    }

    /// The bytes of a Binary version the caller may see.
    pub fn binary_content(&self, binary: &Version) -> Result<Option<Vec<u8>>, StoreError> {
        let sql = sql::binary_content(&self.restriction, binary, self.store.dialect());
        self.store.content(&sql)
    }

    /// The history of the resource whose `current` version [`Reading::read`] gave.
    pub fn history(&self, current: &Version) -> HistoryReading {
        let scope = HistoryScope::Instance(
            self.kind.name.to_owned(),
            current.id.clone(),
            Filed::of(current),
        );
        HistoryReading {
            store: self.store.clone(),
            restriction: self.restriction.clone(),
            scope,
            reader: self.reader.clone(),
        }
    }
}

/// What `Patient/{id}/$everything` may cover; its searches still go through
/// [`Records::searching`], one per type.
pub struct Everything {
    store: Arc<Store>,
    restriction: Restriction,
    /// The compartment types the token may search, the Patient first.
    pub kinds: Vec<&'static ResourceKind>,
    reader: Reader,
}

impl Everything {
    /// Whether `Patient/{id}` exists, is not deleted, and the caller may see it: otherwise
    /// the operation answers as for a missing patient.
    /// A professional over the hourly patient limit is slowed before learning even that.
    pub fn holder_visible(&self, id: &str) -> Result<bool, DataError> {
        let (restriction, dialect) = (&self.restriction, self.store.dialect());
        let found = self.store.found_filed("Patient", id, |filed| {
            sql::current(restriction, "Patient", id, filed, dialect)
        })?;
        let holder = first(found).filter(|v| !v.deleted);
        self.reader.answering(&holder)?;
        Ok(holder.is_some())
    }
}

/// One page of history, newest first.
#[derive(Debug)]
pub struct HistoryPage {
    pub versions: Vec<Version>,
    /// Pass as `before` to get the next (older) page; `None` on the last page.
    pub next: Option<HistoryPosition>,
    /// Versions matching the scope and `since`, all pages together.
    pub total: i64,
}

/// The history of an instance, a type or the server, as far as the caller may see it.
#[derive(Clone)]
pub struct HistoryReading {
    store: Arc<Store>,
    restriction: Restriction,
    scope: HistoryScope,
    reader: Reader,
}

impl HistoryReading {
    /// The bytes of a Binary version this history lists.
    pub fn binary_content(&self, binary: &Version) -> Result<Option<Vec<u8>>, StoreError> {
        let sql = sql::binary_content(&self.restriction, binary, self.store.dialect());
        self.store.content(&sql)
    }

    /// One page of versions, newest first, written at or after `since` (microseconds) and
    /// older than the `before` cursor.
    pub fn page(
        &self,
        since: Option<i64>,
        before: Option<&HistoryPosition>,
        limit: i64,
    ) -> Result<HistoryPage, DataError> {
        let dialect = self.store.dialect();
        let count = sql::history_count(&self.restriction, &self.scope, since, dialect);
        let total = self.store.count(&count)?;
        let page = sql::history(
            &self.restriction,
            &self.scope,
            since,
            before,
            limit + 1,
            dialect,
        );
        let rows = self.store.found(&page)?;
        let more = rows.len() as i64 > limit;
        let mut versions: Vec<Version> = rows
            .into_iter()
            .take(limit as usize)
            .map(|found| found.version)
            .collect();
        let next = versions.last().map(HistoryPosition::of);
        self.reader.answer(&self.restriction, &mut versions)?;
        Ok(HistoryPage {
            versions,
            next: if more { next } else { None },
            total,
        })
    }
}

fn first(found: Vec<crate::store::search::Found>) -> Option<Version> {
    found.into_iter().next().map(|f| f.version)
}
