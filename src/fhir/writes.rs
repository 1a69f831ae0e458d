//! The write interactions (create, update, delete): versioning and optimistic concurrency.

use super::conditional::Condition;
use super::incoming::{self, Incoming};
use super::json;
use super::outcome::OutcomeIssue;
use super::registry::ResourceKind;
use super::resource::{compartment_patient, is_valid_id, new_id, now_micros, stamp};
use crate::consent::WriteGrant;
use crate::search::sql;
use crate::store::{NewVersion, Store, StoreError, TokenQuery, Unit, Version};
use serde_json::Value;
use std::sync::Arc;

/// Why a write did not happen; nothing was stored.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("not found")]
    NotFound,
    /// `If-Match` named another version than the current one (or a concurrent write won).
    #[error("{0}")]
    PreconditionFailed(String),
    /// Update of an unknown id while client-assigned ids are not allowed.
    #[error("{0}")]
    NotAllowed(String),
    /// The resource is deleted.
    #[error("gone")]
    Gone,
    /// The content (e.g. a patched resource) is not acceptable.
    #[error("rejected")]
    Rejected {
        status: u16,
        issues: Vec<OutcomeIssue>,
    },
    /// The write would create a resource and the caller may not create.
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What applying a patch gave: nothing, or the HTTP status and issues of its refusal.
pub type PatchOutcome = Result<(), (u16, Vec<OutcomeIssue>)>;

/// The result of a (conditional) create.
#[derive(Debug)]
pub enum Created {
    New(Version),
    /// `If-None-Exist` matched this resource (one the caller may see); nothing was written.
    Existing(Version),
}

/// What a create that checks a condition did, inside its unit of work.
enum Install {
    Done(Version),
    /// The condition matched these resources; nothing was installed.
    Matched(Vec<Version>),
}

/// How many times a write without `If-Match` retries after losing a race. Writes to one
/// resource queue on its lock, so a race is only lost to a writer outside the server (the
/// bulk importer creating the same id).
const ATTEMPTS: usize = 4;

/// Runs `attempt` until it does not lose a race with another write: retried when the client
/// did not pin a version, 412 when it did (its version is no longer the current one), 409
/// when every attempt lost.
fn retrying<T>(
    pinned: bool,
    mut attempt: impl FnMut() -> Result<T, WriteError>,
) -> Result<T, WriteError> {
    for _ in 0..ATTEMPTS {
        match attempt() {
            Err(WriteError::Store(StoreError::Conflict)) if pinned => {
                return Err(WriteError::PreconditionFailed(
                    "The resource was changed by another request".into(),
                ))
            }
            Err(WriteError::Store(StoreError::Conflict)) => continue,
            other => return other,
        }
    }
    Err(rejected_as(
        409,
        "conflict",
        "The resource was changed concurrently; retry".into(),
    ))
}

fn cannot_create(name: &str) -> WriteError {
    WriteError::Forbidden(format!(
        "This write would create a {name} and the token's scopes do not allow creating {name}"
    ))
}

/// The writes one caller may make (built by `records::Records::writing`): the store, the
/// server settings a write depends on, and the consent engine's grant.
#[derive(Clone)]
pub struct WriteContext {
    pub store: Arc<Store>,
    pub base_url: String,
    pub update_create: bool,
    /// What the caller may find, whether it may create, and who it is recorded as.
    pub grant: WriteGrant,
}

impl WriteContext {
    /// Creates a new resource with a server-assigned id (any `id` in the body is ignored);
    /// with `unless` (`If-None-Exist`), only when no resource matches it, atomically.
    pub fn create(
        &self,
        incoming: Incoming,
        unless: Option<&Condition>,
    ) -> Result<Created, WriteError> {
        let id = new_id();
        let query = match unless {
            None => None,
            Some(Condition::Token(query)) => Some(query),
            // Ids are server-assigned, so `_id` can only find, never reserve, a resource.
            Some(condition @ Condition::Id(_)) => {
                if let Some(existing) = self.matching(incoming.kind, condition)?.pop() {
                    return Ok(Created::Existing(self.shown(existing)?));
                }
                None
            }
        };
        match self.install(&incoming, &id, "POST", query)? {
            Install::Done(version) => Ok(Created::New(self.shown(version)?)),
            Install::Matched(mut found) if found.len() == 1 => Ok(Created::Existing(
                self.shown(found.pop().expect("one match"))?,
            )),
            Install::Matched(_) => Err(several()),
        }
    }

    /// `version` as the caller may be answered it: a List without the entries they may not
    /// see (domain §3), like any read.
    fn shown(&self, mut version: Version) -> Result<Version, WriteError> {
        let reading = self.grant.restriction.reading();
        crate::search::lists::shown(&self.store, &reading, &self.base_url, &mut version)?;
        Ok(version)
    }

    /// The bytes of a Binary version this caller just wrote (for the write's answer).
    pub fn binary_content(&self, binary: &Version) -> Result<Option<Vec<u8>>, StoreError> {
        let sql = sql::binary_content(&self.grant.restriction, binary, self.store.dialect());
        self.store.content(&sql)
    }

    /// Current resources matching `condition` that the caller may see (two at most: enough
    /// to tell 0, 1, many).
    fn matching(
        &self,
        kind: &ResourceKind,
        condition: &Condition,
    ) -> Result<Vec<Version>, WriteError> {
        let (restriction, dialect) = (&self.grant.restriction, self.store.dialect());
        Ok(self.store.unit(|unit| {
            let filed;
            let criteria = match condition {
                Condition::Id(id) => {
                    filed = unit.filed(kind.name, id)?;
                    sql::Criteria::Id(id, &filed)
                }
                Condition::Token(query) => sql::Criteria::Token(query),
            };
            let sql = sql::conditional(restriction, kind.name, criteria, 2, dialect);
            unit.versions(&sql)
        })?)
    }

    /// The current version of `kind/id`, deleted or not, if the caller may see it; read inside
    /// `unit` (under the resource's lock for a write).
    fn current(
        &self,
        unit: &mut Unit<'_>,
        kind: &ResourceKind,
        id: &str,
    ) -> Result<Option<Version>, StoreError> {
        let filed = unit.filed(kind.name, id)?;
        let sql = sql::current(
            &self.grant.restriction,
            kind.name,
            id,
            &filed,
            self.store.dialect(),
        );
        Ok(unit.versions(&sql)?.pop())
    }

    /// `PUT [type]?criteria`: updates the one match, creates when there is none.
    pub fn conditional_update(
        &self,
        incoming: Incoming,
        condition: &Condition,
        if_match: Option<i64>,
    ) -> Result<(Version, bool), WriteError> {
        let ids: Vec<String> = self
            .matching(incoming.kind, condition)?
            .into_iter()
            .map(|v| v.id)
            .collect();
        let name = incoming.kind.name;
        match (ids.as_slice(), condition) {
            ([], _) if if_match.is_some() => Err(WriteError::PreconditionFailed(
                "If-Match given but nothing matches the criteria".into(),
            )),
            // `_id` names the resource: creating it is an update-as-create of that id.
            ([], Condition::Id(id)) => {
                if incoming.id.as_ref().is_some_and(|body_id| body_id != id) {
                    return Err(rejected(
                        400,
                        format!("The body's id is not the _id of the criteria ({id})"),
                    ));
                }
                let id = id.clone();
                self.update(incoming, &id, None)
            }
            ([], Condition::Token(_)) if !self.grant.may_create => Err(cannot_create(name)),
            ([], Condition::Token(query)) => match incoming.id.clone() {
                None => {
                    let id = new_id();
                    match self.install(&incoming, &id, "PUT", Some(query))? {
                        Install::Matched(_) => Err(WriteError::PreconditionFailed(
                            "A matching resource was created concurrently; retry".into(),
                        )),
                        Install::Done(version) => Ok((self.shown(version)?, true)),
                    }
                }
                // A client id with no match: update-as-create, never an update of a resource
                // the criteria did not select.
                Some(_) if !self.update_create => Err(WriteError::NotAllowed(format!(
                    "Nothing matches the criteria and this server assigns {name} ids itself"
                ))),
                Some(id) => match self
                    .store
                    .unit(|unit| self.current(unit, incoming.kind, &id))?
                {
                    Some(c) if !c.deleted => Err(rejected(
                        409,
                        format!("{name}/{id} exists but does not match the criteria"),
                    )),
                    _ => self.update(incoming, &id, None),
                },
            },
            ([id], _) => {
                if incoming.id.as_ref().is_some_and(|body_id| body_id != id) {
                    return Err(rejected(
                        400,
                        format!("The criteria match {name}/{id}, not the id in the body"),
                    ));
                }
                let id = id.clone();
                self.update(incoming, &id, if_match)
            }
            _ => Err(several()),
        }
    }

    /// Applies `patch` to the current version of `kind/id` and stores the result, which is
    /// validated like any incoming resource. Retries on a concurrent write unless `if_match`.
    pub fn patch(
        &self,
        kind: &'static ResourceKind,
        id: &str,
        patch: &dyn Fn(&mut Value) -> PatchOutcome,
        if_match: Option<i64>,
    ) -> Result<Version, WriteError> {
        let version = retrying(if_match.is_some(), || {
            self.store.locked(kind.name, id, |unit| {
                self.patch_held(unit, kind, id, patch, if_match)
            })
        })?;
        self.shown(version)
    }

    /// [`WriteContext::patch`] under the resource's lock: reads, patches and installs.
    fn patch_held(
        &self,
        unit: &mut Unit<'_>,
        kind: &'static ResourceKind,
        id: &str,
        patch: &dyn Fn(&mut Value) -> PatchOutcome,
        if_match: Option<i64>,
    ) -> Result<Version, WriteError> {
        // A patch reads what it changes (its `test` operations, its answer): an author who may
        // replace or delete a document they may not read cannot patch it.
        let reading = self.grant.restriction.reading();
        let filed = unit.filed(kind.name, id)?;
        let sql = sql::current(&reading, kind.name, id, &filed, self.store.dialect());
        let current = match unit.versions(&sql)?.pop() {
            None => return Err(WriteError::NotFound),
            Some(v) if v.deleted => return Err(WriteError::Gone),
            Some(v) => v,
        };
        if let Some(wanted) = if_match.filter(|w| *w != current.version_id) {
            return Err(WriteError::PreconditionFailed(format!(
                "If-Match names version {wanted} but the current version is {}",
                current.version_id
            )));
        }
        let mut document = json::parse_lossless(&String::from_utf8_lossy(&current.body))
            .map_err(|e| WriteError::Store(StoreError::Corrupt(e.to_string())))?;
        // The patch applies to what the caller reads: a List's hidden entries are neither
        // tested, copied, moved nor counted by it, and are put back (at the end) when stored.
        let hidden = match kind.name {
            "List" => crate::search::lists::redact(
                |query| unit.versions(query),
                &reading,
                &self.base_url,
                self.store.dialect(),
                &mut document,
            )?,
            _ => Vec::new(),
        };
        patch(&mut document).map_err(|(status, issues)| WriteError::Rejected { status, issues })?;
        if kind.name == "List" {
            crate::search::lists::restore(&mut document, hidden);
        }
        if document["resourceType"] != kind.name || document["id"] != id {
            return Err(WriteError::Rejected {
                status: 400,
                issues: vec![OutcomeIssue::error(
                    "invalid",
                    "A patch may not change resourceType or id",
                )],
            });
        }
        let incoming = incoming::parse(json::to_text(&document, false).as_bytes(), kind.name)
            .map_err(|r| WriteError::Rejected {
                status: 422,
                issues: r.issues,
            })?;
        let last_updated = now_micros().max(current.last_updated + 1);
        let next = current.version_id + 1;
        let (new, version) = self.prepare(&incoming, id, next, last_updated, "PATCH")?;
        same_patient(&current, &new)?;
        self.allowed(unit, Some(&current), Some(&new))?;
        unit.install(Some(current.version_id), new)?;
        Ok(version)
    }

    /// The one current resource matching `condition` (conditional patch):
    /// none → [`WriteError::NotFound`], several → 412.
    pub fn single_match(
        &self,
        kind: &ResourceKind,
        condition: &Condition,
    ) -> Result<String, WriteError> {
        match self.matching(kind, condition)?.as_slice() {
            [] => Err(WriteError::NotFound),
            [version] => Ok(version.id.clone()),
            _ => Err(several()),
        }
    }

    /// `DELETE [type]?criteria`: deletes the one match; nothing to do when there is none.
    /// `Ok(false)`: nothing matched.
    pub fn conditional_delete(
        &self,
        kind: &'static ResourceKind,
        condition: &Condition,
    ) -> Result<bool, WriteError> {
        match self.matching(kind, condition)?.as_slice() {
            [] => Ok(false),
            [version] => self.delete(kind, &version.id, None),
            _ => Err(several()),
        }
    }

    /// Updates (or, where allowed, creates) `kind/id`; `if_match` pins the expected version.
    /// Returns the new version and whether it was created.
    pub fn update(
        &self,
        incoming: Incoming,
        id: &str,
        if_match: Option<i64>,
    ) -> Result<(Version, bool), WriteError> {
        let name = incoming.kind.name;
        let (version, created) = retrying(if_match.is_some(), || {
            self.store.locked(name, id, |unit| {
                self.update_held(unit, &incoming, id, if_match)
            })
        })?;
        Ok((self.shown(version)?, created))
    }

    /// [`WriteContext::update`] under the resource's lock.
    fn update_held(
        &self,
        unit: &mut Unit<'_>,
        incoming: &Incoming,
        id: &str,
        if_match: Option<i64>,
    ) -> Result<(Version, bool), WriteError> {
        let current = self.current(unit, incoming.kind, id)?;
        let (expected, version_id, after) = match (&current, if_match) {
            (None, Some(_)) => {
                return Err(WriteError::PreconditionFailed(format!(
                    "If-Match given but {}/{id} does not exist",
                    incoming.kind.name
                )))
            }
            (None, None) if !self.update_create => {
                return Err(WriteError::NotAllowed(format!(
                    "{}/{id} does not exist and this server assigns ids itself: use POST to create",
                    incoming.kind.name
                )))
            }
            (None, None) if !self.grant.may_create => {
                return Err(cannot_create(incoming.kind.name))
            }
            // Writing over a deletion brings the resource back: that is a creation.
            (Some(c), _) if c.deleted && !self.grant.may_create => {
                return Err(cannot_create(incoming.kind.name))
            }
            (None, None) => (None, 1, 0),
            (Some(c), Some(wanted)) if c.version_id != wanted => {
                return Err(WriteError::PreconditionFailed(format!(
                    "If-Match names version {wanted} but the current version is {}",
                    c.version_id
                )))
            }
            (Some(c), _) => (Some(c.version_id), c.version_id + 1, c.last_updated),
        };
        // Versions of one resource never share or go back in time, whatever the clock does.
        let last_updated = now_micros().max(after + 1);
        let (mut new, version) = self.prepare(incoming, id, version_id, last_updated, "PUT")?;
        if let Some(current) = &current {
            same_patient(current, &new)?;
            new.revives = current.deleted;
        }
        self.allowed(unit, current.as_ref(), Some(&new))?;
        match unit.install(expected, new) {
            // The id is held by a resource the caller does not see: client-assigned ids are
            // one namespace, and nothing else is said of that resource.
            Err(StoreError::Conflict) if current.is_none() => Err(rejected_as(
                409,
                "conflict",
                format!(
                    "The id {id} is not available for a new {}: choose another",
                    incoming.kind.name
                ),
            )),
            Err(e) => Err(e.into()),
            Ok(()) => Ok((version, expected.is_none())),
        }
    }

    /// Deletes `kind/id`. `Ok(false)`: it was already deleted.
    pub fn delete(
        &self,
        kind: &'static ResourceKind,
        id: &str,
        if_match: Option<i64>,
    ) -> Result<bool, WriteError> {
        retrying(if_match.is_some(), || {
            self.store.locked(kind.name, id, |unit| {
                let Some(current) = self.current(unit, kind, id)? else {
                    return Err(WriteError::NotFound);
                };
                if let Some(wanted) = if_match.filter(|w| *w != current.version_id) {
                    return Err(WriteError::PreconditionFailed(format!(
                        "If-Match names version {wanted} but the current version is {}",
                        current.version_id
                    )));
                }
                if current.deleted {
                    return Ok(false);
                }
                let new = NewVersion {
                    resource_type: kind.name.to_owned(),
                    id: id.to_owned(),
                    version_id: current.version_id + 1,
                    last_updated: now_micros().max(current.last_updated + 1),
                    deleted: true,
                    method: "DELETE",
                    // A deletion stays in its patient's compartment, with its labels.
                    patient_id: current.patient_id.clone(),
                    labels: current.labels,
                    writer: current.writer.clone(),
                    body: Vec::new(),
                    content: None,
                    index: Default::default(),
                    access: Default::default(),
                    revives: false,
                };
                self.allowed(unit, Some(&current), None)?;
                unit.install(Some(current.version_id), new)?;
                Ok(true)
            })
        })
    }

    /// Stores the first version of a new resource; with `unless`, only if no current resource
    /// the caller may see matches that query, checked atomically with the write.
    fn install(
        &self,
        incoming: &Incoming,
        id: &str,
        method: &'static str,
        unless: Option<&TokenQuery>,
    ) -> Result<Install, WriteError> {
        let (new, version) = self.prepare(incoming, id, 1, now_micros(), method)?;
        self.store.unit(|unit| {
            if let Some(query) = unless {
                unit.lock_condition(&format!(
                    "{}|{}|{}",
                    query.resource_type, query.param, query.code
                ))?;
                let sql = sql::conditional(
                    &self.grant.restriction,
                    &query.resource_type,
                    sql::Criteria::Token(query),
                    2,
                    self.store.dialect(),
                );
                let found = unit.versions(&sql)?;
                if !found.is_empty() {
                    return Ok(Install::Matched(found));
                }
            }
            self.allowed(unit, None, Some(&new))?;
            unit.install(None, new)?;
            Ok(Install::Done(version))
        })
    }

    /// The consent engine's decision on this write (see `consent::WriteGrant::check`).
    fn allowed(
        &self,
        unit: &mut Unit<'_>,
        old: Option<&Version>,
        new: Option<&NewVersion>,
    ) -> Result<(), WriteError> {
        use crate::consent::policy::Refusal;
        use crate::consent::writes::Verdict;
        // Writing over a deletion is decided as a creation from the deletion's labels.
        self.grant
            .check(unit, old, new)
            .map_err(|verdict| match verdict {
                Verdict::Store(e) => WriteError::Store(e),
                Verdict::Refused(Refusal::NotFound) => WriteError::NotFound,
                Verdict::Refused(Refusal::Forbidden(message)) => WriteError::Forbidden(message),
                Verdict::Refused(Refusal::RecordClosedToData) => WriteError::Forbidden(
                    "the record does not accept data: its holder closed it or opposed it"
                        .to_owned(),
                ),
            })
    }

    /// Version `version_id` of `incoming` as `id`: what to store, and what to answer.
    fn prepare(
        &self,
        incoming: &Incoming,
        id: &str,
        version_id: i64,
        last_updated: i64,
        method: &'static str,
    ) -> Result<(NewVersion, Version), WriteError> {
        let kind = incoming.kind;
        if !is_valid_id(id) {
            return Err(rejected(400, format!("{id:?} is not a valid resource id")));
        }
        let mut document = incoming.document.clone();
        if let Some(at) = unresolved_subject(kind.name, &document, &self.base_url) {
            return Err(WriteError::Rejected {
                status: 422,
                issues: vec![OutcomeIssue::error(
                    "invalid",
                    format!(
                        "{at} must reference a resource of this server by id (such as \
                         Patient/{{id}}): a person named otherwise (by identifier, urn:uuid, a \
                         contained resource or another server) has no record here, so the \
                         record's state and the patient's directives could not apply"
                    ),
                )
                .at(at)],
            });
        }
        stamp(&mut document, id, version_id, last_updated);
        let patient_id = compartment_patient(kind, id, &document, &self.base_url);
        let index = crate::search::index::rows(kind.name, &document, &self.base_url);
        let labels = crate::consent::facts::labels_of(&document);
        let access = crate::consent::facts::access_rows(kind.name, id, &document, &self.base_url)
            .map_err(|why| {
            let (element, text) = why.split_once(": ").unwrap_or((kind.name, &why));
            WriteError::Rejected {
                status: 422,
                issues: vec![
                    OutcomeIssue::error("business-rule", text.to_owned()).at(element.to_owned())
                ],
            }
        })?;
        let body = json::to_text(&document, false).into_bytes();
        let writer = Some(self.grant.writer.clone());
        let new = NewVersion {
            resource_type: kind.name.to_owned(),
            id: id.to_owned(),
            version_id,
            last_updated,
            deleted: false,
            method,
            patient_id: patient_id.clone(),
            labels,
            writer: writer.clone(),
            body: body.clone(),
            content: incoming.content.clone(),
            index,
            access,
            revives: false,
        };
        let version = Version {
            resource_type: kind.name.to_owned(),
            id: id.to_owned(),
            version_id,
            last_updated,
            deleted: false,
            method: method.to_owned(),
            body,
            patient_id,
            labels,
            writer,
        };
        Ok((new, version))
    }
}

fn rejected(status: u16, message: String) -> WriteError {
    rejected_as(status, "invalid", message)
}

fn rejected_as(status: u16, code: &'static str, message: String) -> WriteError {
    WriteError::Rejected {
        status,
        issues: vec![OutcomeIssue::error(code, message)],
    }
}

/// A resource stays in the compartment it was created in: its patient id is the future
/// distribution key, and moving health data between records is not an update.
fn same_patient(current: &Version, new: &NewVersion) -> Result<(), WriteError> {
    if current.patient_id == new.patient_id {
        return Ok(());
    }
    let name = &new.resource_type;
    Err(WriteError::Rejected {
        status: 422,
        issues: vec![OutcomeIssue::error(
            "business-rule",
            format!(
                "{name}/{} belongs to {}: an update cannot move it to {}",
                new.id,
                describe(&current.patient_id),
                describe(&new.patient_id)
            ),
        )
        .at(name.clone())],
    })
}

fn describe(patient: &Option<String>) -> String {
    match patient {
        Some(id) => format!("the record of Patient/{id}"),
        None => "no patient record".to_owned(),
    }
}

fn several() -> WriteError {
    WriteError::PreconditionFailed(
        "The criteria match more than one resource: make them more selective".into(),
    )
}

/// The first `subject` or `patient` of `document` (the elements that put a resource in a
/// patient's record) that names nothing on this server, by its path.
fn unresolved_subject(resource_type: &str, document: &Value, base_url: &str) -> Option<String> {
    ["subject", "patient"].into_iter().find_map(|element| {
        let value = document.get(element)?;
        let items: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            single => vec![single],
        };
        let repeated = value.is_array();
        items.iter().enumerate().find_map(|(i, item)| {
            let local = crate::consent::facts::local_reference(item, base_url).is_some();
            (!local).then(|| match repeated {
                true => format!("{resource_type}.{element}[{i}]"),
                false => format!("{resource_type}.{element}"),
            })
        })
    })
}
