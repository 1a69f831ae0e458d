//! A typed search → SQL over `resources` (alias `r`) and the index tables. Every client value
//! is a bind parameter; the text holds only names this module chooses.

use super::query::{
    above, Criterion, DateMatch, Include, Prefix, ReferenceMatch, Search, SortBy, SortKey,
    StringMode, SystemMatch, Test, TokenMatch, UriMode,
};
use super::registry::ParamType;
use super::visibility::{self, restricted, restricted_as};
use super::{Mark, Position};
use crate::consent::{InRecord, Restriction};
use crate::store::index::{cut, KEY_CHARS};
use crate::store::search::{KeyValue, SORT_KEYS};
use crate::store::tables::{self, Tables};
use crate::store::{
    Filed, HistoryPosition, HistoryScope, SystemMatch as Systems, TokenQuery, Version,
};

pub use crate::store::search::{Bind, Dialect, Sql};

/// A read query written here, with the caller's restriction rendered for every resource it
/// can reach. The store runs nothing else: only this module makes one, and each of its
/// functions takes the [`Restriction`] that only the consent engine makes.
#[derive(Debug, Clone)]
pub struct ReadSql {
    sql: Sql,
    planning: Planning,
}

impl ReadSql {
    /// The statement and its binds (to run it, or to `EXPLAIN` it in tests).
    pub fn sql(&self) -> &Sql {
        &self.sql
    }

    /// Whether the statement's plan may be kept for any values (see [`Planning`]).
    pub fn planning(&self) -> Planning {
        self.planning
    }
}

/// Whether one plan of a statement serves all its values, so that a connection may keep it
/// prepared (PostgreSQL switches a kept statement to a generic plan, made without the values,
/// from its sixth execution on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Planning {
    /// Its rows are bounded by one record or by the ids it is given: every plan of its shape
    /// reads a few rows.
    Kept,
    /// Across records: how many rows a condition matches depends on its value (a feeder's
    /// `status=current` matches most documents, `type=…` a few), and a generic plan made for
    /// the average value read 2,000,000 rows for a 20-row page (docs/performance.md, session
    /// 13). Planned anew for its values on each execution.
    ForItsValues,
}

impl Planning {
    /// How a statement under `restriction` is planned: kept when pinned to one record.
    fn of(restriction: &Restriction) -> Planning {
        match restriction.record() {
            Some(_) => Planning::Kept,
            None => Planning::ForItsValues,
        }
    }
}

/// Collects binds while the text is written.
pub(super) struct Builder {
    dialect: Dialect,
    planning: Planning,
    binds: Vec<Bind>,
}

impl Builder {
    fn new(dialect: Dialect, planning: Planning) -> Builder {
        Builder {
            dialect,
            planning,
            binds: Vec::new(),
        }
    }

    /// A marker for the bind, which [`Builder::finish`] turns into the backend's placeholder.
    fn bind(&mut self, value: Bind) -> String {
        self.binds.push(value);
        format!("{MARK}{}{MARK}", self.binds.len() - 1)
    }

    pub(super) fn text(&mut self, value: &str) -> String {
        self.bind(Bind::Text(value.to_owned()))
    }

    pub(super) fn int(&mut self, value: i64) -> String {
        self.bind(Bind::BigInt(value))
    }

    /// The statement: binds numbered in the order the text first uses them (numbered, since
    /// keyset conditions use a bind twice), those the text no longer uses dropped — a
    /// condition that its constants decided leaves its binds behind.
    pub(super) fn finish(self, text: String) -> ReadSql {
        let mut pending: Vec<Option<Bind>> = self.binds.into_iter().map(Some).collect();
        let mut slots: Vec<Option<usize>> = vec![None; pending.len()];
        let mut binds = Vec::new();
        let mut out = String::with_capacity(text.len());
        let mut parts = text.split(MARK);
        out.push_str(parts.next().unwrap_or_default());
        while let (Some(index), Some(rest)) = (parts.next(), parts.next()) {
            let index: usize = index.parse().expect("a bind marker holds its index");
            let slot = match slots[index] {
                Some(slot) => slot,
                None => {
                    binds.extend(pending[index].take());
                    slots[index] = Some(binds.len());
                    binds.len()
                }
            };
            out.push_str(&self.dialect.placeholder(slot));
            out.push_str(rest);
        }
        ReadSql {
            sql: Sql { text: out, binds },
            planning: self.planning,
        }
    }
}

/// Surrounds a bind's index in the text being written: no name or keyword this module writes
/// contains it, and client values never enter the text.
const MARK: char = '\u{1}';

/// One page of matches from `position`, in the search's order (its `_sort` keys, then the id),
/// or in reverse order before the position (the caller puts those back in order); `limit`
/// rows at most. Each row carries its sort key values, from which the next cursor is made.
pub fn page(
    search: &Search,
    restriction: &Restriction,
    base_url: &str,
    position: &Position,
    limit: i64,
    dialect: Dialect,
) -> ReadSql {
    let from = |mark, backwards| {
        page_from(
            search,
            restriction,
            base_url,
            mark,
            backwards,
            limit,
            dialect,
        )
    };
    match position {
        Position::Start => from(None, false),
        Position::After(mark) => from(Some(mark), false),
        Position::Before(mark) => from(Some(mark), true),
    }
}

/// Like [`page`]: after `mark`, or before it when `backwards` (from the very end without one).
pub fn page_from(
    search: &Search,
    restriction: &Restriction,
    base_url: &str,
    mark: Option<&Mark>,
    backwards: bool,
    limit: i64,
    dialect: Dialect,
) -> ReadSql {
    let mut b = Builder::new(dialect, Planning::of(restriction));
    let keys: Vec<Key> = search.sort.iter().map(Key::of).collect();
    // A search pinned to one record reads its rows in that record only, every table.
    let patient = restriction.record().map(|r| b.text(r.patient_id()));
    let patient = patient.as_deref();
    let mut columns = Vec::new();
    for i in 0..SORT_KEYS {
        let (text, number) = match keys.get(i) {
            Some(key) if key.numeric => (
                null_text(),
                key.expression(&mut b, &search.resource_type, patient),
            ),
            Some(key) => (
                key.expression(&mut b, &search.resource_type, patient),
                null_number(),
            ),
            None => (null_text(), null_number()),
        };
        columns.push(format!("{text} AS k{i}_t, {number} AS k{i}_n"));
    }
    let conditions = matching(&mut b, search, restriction, patient, base_url);
    let keyset = match mark {
        None => "TRUE".to_owned(),
        Some(mark) => keyset(&mut b, &keys, search.id_descending, mark, backwards),
    };
    let mut order: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let ascending = key.key.descending == backwards;
            let nulls = if backwards { "FIRST" } else { "LAST" };
            format!(
                "{} {} NULLS {nulls}",
                key.column(i),
                if ascending { "ASC" } else { "DESC" }
            )
        })
        .collect();
    let id_ascending = search.id_descending == backwards;
    order.push(format!(
        "m.id {}",
        if id_ascending { "ASC" } else { "DESC" }
    ));
    let limit = b.int(limit);
    let versions_in_record = match patient {
        Some(patient) => format!(" AND v.patient_id = {patient}"),
        None => String::new(),
    };
    // The page's rows first, their versions after: joined before the limit, the versions
    // would be read (or hashed) for every match, not for the page's.
    let order = order.join(", ");
    let set = tables::of(&search.resource_type);
    let (resources, versions) = (set.resources, set.versions);
    b.finish(format!(
        "SELECT {}, m.k0_t, m.k0_n, m.k1_t, m.k1_n, m.k2_t, m.k2_n \
         FROM (SELECT * FROM (SELECT r.patient_id, r.resource_type, r.id, r.version_id, \
         r.labels, r.writer, {} FROM {resources} r WHERE {}) m \
         WHERE {keyset} ORDER BY {order} LIMIT {limit}) m \
         JOIN {versions} v ON v.patient_id = m.patient_id \
         AND v.resource_type = m.resource_type AND v.id = m.id \
         AND v.version_id = m.version_id{versions_in_record} \
         ORDER BY {order}",
        version_columns("m"),
        columns.join(", "),
        conditions.join(" AND "),
    ))
}

fn null_text() -> String {
    "CAST(NULL AS TEXT)".to_owned()
}

fn null_number() -> String {
    "CAST(NULL AS BIGINT)".to_owned()
}

/// A sort key as SQL: a column of the resource, or the lowest (highest, descending) value of a
/// parameter in its index table.
struct Key<'a> {
    key: &'a SortKey,
    numeric: bool,
}

impl<'a> Key<'a> {
    fn of(key: &'a SortKey) -> Key<'a> {
        let numeric = matches!(
            key.by,
            SortBy::LastUpdated
                | SortBy::Param {
                    kind: ParamType::Date,
                    ..
                }
        );
        Key { key, numeric }
    }

    /// `patient`: the placeholder of the record a pinned search is about.
    fn expression(&self, b: &mut Builder, resource_type: &str, patient: Option<&str>) -> String {
        let (code, kind) = match &self.key.by {
            SortBy::LastUpdated => return "r.last_updated".to_owned(),
            SortBy::Param { code, kind } => (code, *kind),
        };
        let aggregate = if self.key.descending { "MAX" } else { "MIN" };
        let column = match (kind, self.key.descending) {
            (ParamType::Date, false) => "x.low".to_owned(),
            (ParamType::Date, true) => "x.high".to_owned(),
            (ParamType::String, _) => whole("x.normalized"),
            (ParamType::Uri, _) => whole("x.uri"),
            (ParamType::Reference, _) => whole("x.url"),
            _ => whole("x.code"),
        };
        let table = tables::of(resource_type).index_of(kind);
        let kind_bind = b.text(resource_type);
        let code = b.text(code);
        let record = match patient {
            Some(patient) => format!(" AND x.patient_id = {patient}"),
            None => String::new(),
        };
        format!(
            "(SELECT {aggregate}({column}) FROM {table} x WHERE x.patient_id = r.patient_id \
             AND x.resource_type = {kind_bind} AND x.id = r.id AND x.param = {code}{record})"
        )
    }

    fn column(&self, i: usize) -> String {
        format!("m.k{i}_{}", if self.numeric { "n" } else { "t" })
    }
}

/// Rows strictly after `mark` in the order (or strictly before it, `backwards`): some key is
/// past the mark's value and every earlier key equals it; the id breaks the last tie. Missing
/// values sort last in both directions.
fn keyset(
    b: &mut Builder,
    keys: &[Key],
    id_descending: bool,
    mark: &Mark,
    backwards: bool,
) -> String {
    let mut alternatives = Vec::new();
    let mut equal_so_far: Vec<String> = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let column = key.column(i);
        let value = mark.keys.get(i).cloned().flatten();
        let later = key.key.descending == backwards;
        let past = match (&value, backwards) {
            (Some(v), false) => {
                let v = bind_key(b, v);
                let op = if later { ">" } else { "<" };
                format!("({column} {op} {v} OR {column} IS NULL)")
            }
            (Some(v), true) => {
                let v = bind_key(b, v);
                let op = if later { ">" } else { "<" };
                format!("({column} {op} {v} AND {column} IS NOT NULL)")
            }
            (None, false) => "FALSE".to_owned(),
            (None, true) => format!("{column} IS NOT NULL"),
        };
        let mut all = equal_so_far.clone();
        all.push(past);
        alternatives.push(format!("({})", all.join(" AND ")));
        equal_so_far.push(match &value {
            Some(v) => format!("{column} = {}", bind_key(b, v)),
            None => format!("{column} IS NULL"),
        });
    }
    let op = if id_descending == backwards { ">" } else { "<" };
    let mut all = equal_so_far;
    all.push(format!("m.id {op} {}", b.text(&mark.id)));
    alternatives.push(format!("({})", all.join(" AND ")));
    format!("({})", alternatives.join(" OR "))
}

fn bind_key(b: &mut Builder, value: &KeyValue) -> String {
    match value {
        KeyValue::Text(text) => b.text(text),
        KeyValue::Int(number) => b.int(*number),
    }
}

/// Columns of a version (alias `v`) and of its resource's current row (`current`: labels and
/// writer), in the order `store` reads them.
fn version_columns(current: &str) -> String {
    format!(
        "v.resource_type, v.id, v.version_id, v.last_updated, v.deleted, v.method, v.key_id, \
         v.body, v.patient_id, {current}.labels, {current}.writer"
    )
}

/// The current version `v` of the resource `r` (a join within one record).
const VERSION_OF_R: &str = "v.patient_id = r.patient_id AND v.resource_type = r.resource_type \
     AND v.id = r.id AND v.version_id = r.version_id";

/// The resource `r` of the version `v` (a join within one record).
const R_OF_VERSION: &str =
    "r.patient_id = v.patient_id AND r.resource_type = v.resource_type AND r.id = v.id";

/// The patient id of the record holding the resource of type `kind` and id `id` (SQL
/// expressions), probed in `resource_ids` while the statement runs: for a List's entries,
/// many targets in one statement. A read by id looks its record up first instead and names it
/// as a value (see [`Filed`]), which prunes when planning.
fn record_of(kind: &str, id: &str) -> String {
    format!(
        "(SELECT i.patient_id FROM resource_ids i WHERE i.resource_type = {kind} AND i.id = {id})"
    )
}

/// What rows without sort keys select in their place.
const NO_KEYS: &str = "CAST(NULL AS TEXT) AS k0_t, CAST(NULL AS BIGINT) AS k0_n, \
     CAST(NULL AS TEXT) AS k1_t, CAST(NULL AS BIGINT) AS k1_n, \
     CAST(NULL AS TEXT) AS k2_t, CAST(NULL AS BIGINT) AS k2_n";

/// The current resources `include` reaches from the `from_type` resources `ids`: those they
/// refer to, or (reverse) those referring to them; at most `limit` rows, possibly repeated.
/// No order: an `ORDER BY` tempts SQLite into walking the whole type in key order.
pub fn included(
    include: &Include,
    restriction: &Restriction,
    from_type: &str,
    ids: &[String],
    limit: i64,
    dialect: Dialect,
) -> ReadSql {
    let mut b = Builder::new(dialect, Planning::Kept);
    let source = b.text(&include.source_type);
    let param = b.text(&include.param);
    let references = tables::of(&include.source_type).references;
    // The included rows' types, by the tables holding them: a reference may reach the
    // directory's tables and the records' in one include (`DocumentReference:author`).
    let mut groups: Vec<(&Tables, Vec<String>)> = Vec::new();
    let reached = match include.reverse {
        true => std::slice::from_ref(&include.source_type),
        false => include.target_types.as_slice(),
    };
    for t in reached {
        let set = tables::of(t);
        match groups.iter_mut().find(|(s, _)| *s == set) {
            Some((_, types)) => types.push(t.clone()),
            None => groups.push((set, vec![t.clone()])),
        }
    }
    let (join, selection) = if include.reverse {
        let target = b.text(from_type);
        (
            "r.patient_id = x.patient_id AND r.resource_type = x.resource_type AND r.id = x.id",
            format!(
                "x.target_type = {target} AND x.target_id IN ({})",
                list(&mut b, ids)
            ),
        )
    } else {
        (
            "r.resource_type = x.target_type AND r.id = x.target_id",
            format!("x.id IN ({})", list(&mut b, ids)),
        )
    };
    // Included rows were not named by the caller: a listing.
    let listing = restriction.listing();
    let mut parts = Vec::new();
    for (set, types) in &groups {
        let targets = match include.reverse {
            true => String::new(),
            false => format!(" AND x.target_type IN ({})", list(&mut b, types)),
        };
        let one_type = match types.as_slice() {
            [one] => Some(one.as_str()),
            _ => None,
        };
        let (visible, in_record) = match (restriction.record(), one_type) {
            (Some(record), Some(t)) if super::record::stays_in_record(include, from_type) => {
                // Every table read in that record only.
                let patient = b.text(record.patient_id());
                (
                    visibility::pinned(&mut b, &listing, record, &patient, "r", t),
                    format!(" AND x.patient_id = {patient} AND v.patient_id = {patient}"),
                )
            }
            (_, Some(t)) => (restricted_as(&mut b, &listing, "r", t), String::new()),
            (_, None) => (restricted(&mut b, &listing, "r"), String::new()),
        };
        parts.push(format!(
            "SELECT {}, {NO_KEYS} FROM {references} x \
             JOIN {} r ON {join} \
             JOIN {} v ON {VERSION_OF_R} \
             WHERE x.resource_type = {source} AND x.param = {param} AND {selection}{targets}\
             {in_record} AND r.deleted = FALSE AND {visible}",
            version_columns("r"),
            set.resources,
            set.versions
        ));
    }
    let limit = b.int(limit);
    b.finish(match parts.as_slice() {
        // An include reaching no type reaches nothing.
        [] => format!(
            "SELECT {}, {NO_KEYS} FROM resources r JOIN resource_versions v ON {VERSION_OF_R} \
             WHERE FALSE LIMIT {limit}",
            version_columns("r")
        ),
        [one] => format!("{one} LIMIT {limit}"),
        _ => format!(
            "SELECT * FROM ({}) i LIMIT {limit}",
            parts.join(" UNION ALL ")
        ),
    })
}

/// Direct access: the current version of `resource_type/id`, filed in `filed`, deleted or
/// not, if visible.
pub fn current(
    restriction: &Restriction,
    resource_type: &str,
    id: &str,
    filed: &Filed,
    dialect: Dialect,
) -> ReadSql {
    let mut b = Builder::new(dialect, Planning::Kept);
    let (kind, id) = (b.text(resource_type), b.text(id));
    let visible = visibility::filed(&mut b, restriction, filed, "r", resource_type);
    let set = tables::of(resource_type);
    let (resources, versions) = (set.resources, set.versions);
    b.finish(format!(
        "SELECT {}, {NO_KEYS} FROM {resources} r \
         JOIN {versions} v ON {VERSION_OF_R} \
         WHERE r.resource_type = {kind} AND r.id = {id} AND {visible}",
        version_columns("r")
    ))
}

/// Which of `targets` (type, id) are current resources the caller may see, as a listing: a
/// List's entries show only those (domain §3). Entries may be the directory's or any record's.
pub fn visible_among(
    restriction: &Restriction,
    targets: &[(String, String)],
    dialect: Dialect,
) -> ReadSql {
    let mut b = Builder::new(dialect, Planning::Kept);
    let listing = restriction.listing();
    let mut parts = Vec::new();
    for set in tables::ALL {
        let pairs: Vec<String> = targets
            .iter()
            .filter(|(kind, _)| tables::of(kind) == set)
            .map(|(kind, id)| {
                let (kind, id) = (b.text(kind), b.text(id));
                format!(
                    "(r.patient_id = {} AND r.resource_type = {kind} AND r.id = {id})",
                    record_of(&kind, &id)
                )
            })
            .collect();
        if pairs.is_empty() {
            continue;
        }
        let visible = restricted(&mut b, &listing, "r");
        parts.push(format!(
            "SELECT {}, {NO_KEYS} FROM {} r \
             JOIN {} v ON {VERSION_OF_R} \
             WHERE ({}) AND r.deleted = FALSE AND {visible}",
            version_columns("r"),
            set.resources,
            set.versions,
            pairs.join(" OR ")
        ));
    }
    b.finish(match parts.is_empty() {
        true => format!(
            "SELECT {}, {NO_KEYS} FROM resources r JOIN resource_versions v ON {VERSION_OF_R} \
             WHERE FALSE",
            version_columns("r")
        ),
        false => parts.join(" UNION ALL "),
    })
}

/// Direct access: version `version_id` of `resource_type/id`, filed in `filed`, if its
/// resource is visible.
pub fn version(
    restriction: &Restriction,
    resource_type: &str,
    id: &str,
    version_id: i64,
    filed: &Filed,
    dialect: Dialect,
) -> ReadSql {
    let mut b = Builder::new(dialect, Planning::Kept);
    let (kind, id, number) = (b.text(resource_type), b.text(id), b.int(version_id));
    let record = b.text(filed.key());
    let visible = visibility::filed(&mut b, restriction, filed, "r", resource_type);
    let surviving = visibility::surviving("v", Some(resource_type), &record);
    let set = tables::of(resource_type);
    let (resources, versions) = (set.resources, set.versions);
    b.finish(format!(
        "SELECT {}, {NO_KEYS} FROM {versions} v \
         JOIN {resources} r ON {R_OF_VERSION} \
         WHERE v.patient_id = {record} AND v.resource_type = {kind} AND v.id = {id} \
         AND v.version_id = {number} AND {visible} AND {surviving}",
        version_columns("r")
    ))
}

/// The bytes of `binary` (a version of a Binary read from the store, which says where it is
/// filed), if the Binary is visible.
pub fn binary_content(restriction: &Restriction, binary: &Version, dialect: Dialect) -> ReadSql {
    let mut b = Builder::new(dialect, Planning::Kept);
    let (id, number) = (b.text(&binary.id), b.int(binary.version_id));
    let filed = Filed::of(binary);
    let record = b.text(filed.key());
    let visible = visibility::filed(&mut b, restriction, &filed, "r", "Binary");
    b.finish(format!(
        "SELECT c.key_id, c.content FROM binary_contents c \
         JOIN resources r ON r.patient_id = c.patient_id AND r.resource_type = 'Binary' \
         AND r.id = c.id \
         WHERE c.patient_id = {record} AND c.id = {id} AND c.version_id = {number} \
         AND {visible}"
    ))
}

/// The versions of `scope` its visible resources had, written at or after `since`
/// (microseconds) and before the `before` position, from the tables of `set`: the `FROM … WHERE`
/// of a history page and of its total.
fn history_rows(
    b: &mut Builder,
    restriction: &Restriction,
    scope: &HistoryScope,
    set: &Tables,
    since: Option<i64>,
    before: Option<&HistoryPosition>,
) -> String {
    let mut conditions = Vec::new();
    match scope {
        HistoryScope::System => {}
        HistoryScope::Type(kind) => conditions.push(format!("v.resource_type = {}", b.text(kind))),
        HistoryScope::Instance(kind, id, filed) => {
            let (kind, id) = (b.text(kind), b.text(id));
            conditions.push(format!("v.patient_id = {}", b.text(filed.key())));
            conditions.push(format!("v.resource_type = {kind}"));
            conditions.push(format!("v.id = {id}"));
        }
    }
    if let Some(since) = since {
        conditions.push(format!("v.last_updated >= {}", b.int(since)));
    }
    if let Some(before) = before {
        let last_updated = b.int(before.last_updated);
        conditions.push(format!("v.last_updated <= {last_updated}"));
        conditions.push(format!(
            "(v.last_updated, v.patient_id, v.resource_type, v.id, v.version_id) \
             < ({last_updated}, {}, {}, {}, {})",
            b.text(&before.patient_id),
            b.text(&before.resource_type),
            b.text(&before.id),
            b.int(before.version_id)
        ));
    }
    conditions.push(match scope {
        HistoryScope::System => restricted(b, restriction, "r"),
        HistoryScope::Type(kind) => restricted_as(b, restriction, "r", kind),
        HistoryScope::Instance(kind, _, filed) => {
            visibility::filed(b, restriction, filed, "r", kind)
        }
    });
    conditions.push(match scope {
        _ if set.is_directory() => "TRUE".to_owned(),
        HistoryScope::System => visibility::surviving("v", None, "v.patient_id"),
        HistoryScope::Type(kind) => visibility::surviving("v", Some(kind), "v.patient_id"),
        HistoryScope::Instance(kind, _, filed) => {
            let record = b.text(filed.key());
            visibility::surviving("v", Some(kind), &record)
        }
    });
    format!(
        "FROM {} v JOIN {} r ON {R_OF_VERSION} WHERE {}",
        set.versions,
        set.resources,
        conditions.join(" AND ")
    )
}

/// The table sets a history reads: the type's, or both for the whole server.
fn history_sets(scope: &HistoryScope) -> Vec<&'static Tables> {
    match scope {
        HistoryScope::System => tables::ALL.to_vec(),
        HistoryScope::Type(kind) | HistoryScope::Instance(kind, ..) => vec![tables::of(kind)],
    }
}

/// How a history statement is planned: an instance's is bounded by its id; a type's or the
/// system's reads across records (its rows are never narrowed to a pinned record).
fn history_planning(scope: &HistoryScope) -> Planning {
    match scope {
        HistoryScope::Instance(..) => Planning::Kept,
        HistoryScope::System | HistoryScope::Type(_) => Planning::ForItsValues,
    }
}

/// One page of history, newest first (see [`HistoryPosition`]), `limit` versions at most,
/// from just after `before`.
pub fn history(
    restriction: &Restriction,
    scope: &HistoryScope,
    since: Option<i64>,
    before: Option<&HistoryPosition>,
    limit: i64,
    dialect: Dialect,
) -> ReadSql {
    let mut b = Builder::new(dialect, history_planning(scope));
    let parts: Vec<String> = history_sets(scope)
        .into_iter()
        .map(|set| {
            let rows = history_rows(&mut b, restriction, scope, set, since, before);
            format!("SELECT {}, {NO_KEYS} {rows}", version_columns("r"))
        })
        .collect();
    let limit = b.int(limit);
    let text = match parts.as_slice() {
        [one] => format!(
            "{one} ORDER BY v.last_updated DESC, v.patient_id DESC, v.resource_type DESC, \
             v.id DESC, v.version_id DESC LIMIT {limit}"
        ),
        _ => format!(
            "SELECT * FROM ({}) h ORDER BY h.last_updated DESC, h.patient_id DESC, \
             h.resource_type DESC, h.id DESC, h.version_id DESC LIMIT {limit}",
            parts.join(" UNION ALL ")
        ),
    };
    b.finish(text)
}

/// How many versions a history covers, all pages together.
pub fn history_count(
    restriction: &Restriction,
    scope: &HistoryScope,
    since: Option<i64>,
    dialect: Dialect,
) -> ReadSql {
    let mut b = Builder::new(dialect, history_planning(scope));
    let counts: Vec<String> = history_sets(scope)
        .into_iter()
        .map(|set| {
            let rows = history_rows(&mut b, restriction, scope, set, since, None);
            format!("(SELECT COUNT(*) {rows})")
        })
        .collect();
    b.finish(format!(
        "SELECT CAST({} AS BIGINT) AS n",
        counts.join(" + ")
    ))
}

/// What a conditional interaction's criteria select: an id (filed where its lookup says), or
/// a token value.
#[derive(Debug, Clone, Copy)]
pub enum Criteria<'a> {
    Id(&'a str, &'a Filed),
    Token(&'a TokenQuery),
}

/// The current, visible resources of `resource_type` a conditional interaction's criteria
/// select, in id order (`limit`: two tell none, one and several apart).
pub fn conditional(
    restriction: &Restriction,
    resource_type: &str,
    criteria: Criteria<'_>,
    limit: i64,
    dialect: Dialect,
) -> ReadSql {
    // An id names one resource; a token value may match any number, in any record (the match
    // runs under `restriction.matching`, never pinned).
    let planning = match criteria {
        Criteria::Id(..) => Planning::Kept,
        Criteria::Token(_) => Planning::ForItsValues,
    };
    let mut b = Builder::new(dialect, planning);
    let kind = b.text(resource_type);
    let (selection, visible) = match criteria {
        Criteria::Id(id, filed) => {
            let matching = restriction.matching(resource_type, None);
            let id = format!("r.id = {}", b.text(id));
            (
                id,
                visibility::filed(&mut b, &matching, filed, "r", resource_type),
            )
        }
        Criteria::Token(query) => {
            let matching = restriction.matching(resource_type, Some(&query.param));
            let selection = token_selection(&mut b, query);
            (
                selection,
                restricted_as(&mut b, &matching, "r", resource_type),
            )
        }
    };
    let limit = b.int(limit);
    let set = tables::of(resource_type);
    let (resources, versions) = (set.resources, set.versions);
    b.finish(format!(
        "SELECT {}, {NO_KEYS} FROM {resources} r \
         JOIN {versions} v ON {VERSION_OF_R} \
         WHERE r.resource_type = {kind} AND r.deleted = FALSE AND {selection} AND {visible} \
         ORDER BY r.id LIMIT {limit}",
        version_columns("r")
    ))
}

/// `r` has the token value of `query` (long values compared whole, see `store::index::cut`).
fn token_selection(b: &mut Builder, query: &TokenQuery) -> String {
    let kind = b.text(&query.resource_type);
    let param = b.text(&query.param);
    let mut parts = vec![equals(b, "x.code", &query.code)];
    match &query.system {
        Systems::Any => {}
        Systems::Absent => parts.push("x.system IS NULL".to_owned()),
        Systems::Is(system) => parts.push(equals(b, "x.system", system)),
    }
    format!(
        "r.id IN (SELECT x.id FROM {} x WHERE x.resource_type = {kind} \
         AND x.param = {param} AND {})",
        tables::of(&query.resource_type).tokens,
        parts.join(" AND ")
    )
}

fn list(b: &mut Builder, values: &[String]) -> String {
    let placeholders: Vec<String> = values.iter().map(|v| b.text(v)).collect();
    placeholders.join(", ")
}

/// How many resources match (all pages).
pub fn count(
    search: &Search,
    restriction: &Restriction,
    base_url: &str,
    dialect: Dialect,
) -> ReadSql {
    count_up_to(search, restriction, base_url, None, dialect)
}

/// How many resources match, counting `at_most` at most (`None`: all of them).
pub fn count_up_to(
    search: &Search,
    restriction: &Restriction,
    base_url: &str,
    at_most: Option<i64>,
    dialect: Dialect,
) -> ReadSql {
    let mut b = Builder::new(dialect, Planning::of(restriction));
    let patient = restriction.record().map(|r| b.text(r.patient_id()));
    let conditions = matching(&mut b, search, restriction, patient.as_deref(), base_url);
    let resources = tables::of(&search.resource_type).resources;
    let conditions = conditions.join(" AND ");
    let text = match at_most {
        None => format!("SELECT COUNT(*) AS n FROM {resources} r WHERE {conditions}"),
        // In id order, like a page: PostgreSQL then walks the type's ids and stops at the
        // bound, where without an order it read and sorted every row of the rarest criterion
        // first (2.2 s against 0.16 s for 1,001 of 267,500 matches, session 13).
        Some(at_most) => {
            let limit = b.int(at_most);
            format!(
                "SELECT COUNT(*) AS n FROM (SELECT r.id FROM {resources} r WHERE {conditions} \
                 ORDER BY r.id LIMIT {limit}) c"
            )
        }
    };
    b.finish(text)
}

/// The conditions every match meets: its type, not deleted, visible, and each criterion.
/// `patient`: the placeholder of the record's patient id when `restriction` is pinned.
fn matching(
    b: &mut Builder,
    search: &Search,
    restriction: &Restriction,
    patient: Option<&str>,
    base_url: &str,
) -> Vec<String> {
    let t = &search.resource_type;
    let mut conditions = vec![
        format!("r.resource_type = {}", b.text(t)),
        "r.deleted = FALSE".to_owned(),
    ];
    match (restriction.record(), patient) {
        (Some(record), Some(patient)) => {
            conditions.push(visibility::pinned(b, restriction, record, patient, "r", t));
            if record.through_header() {
                conditions.push(visible_header(b, restriction, record, patient));
            }
        }
        _ => conditions.push(restricted_as(b, restriction, "r", t)),
    }
    let on = On {
        alias: "r",
        resource_type: &search.resource_type,
        depth: 0,
        base_url,
        restriction,
        patient,
    };
    let driver = search.criteria.iter().position(selective);
    for (i, criterion) in search.criteria.iter().enumerate() {
        conditions.push(condition(b, criterion, &on, Some(i) == driver));
    }
    conditions
}

/// The header of the record a search is pinned to is one the caller may list (see
/// [`crate::consent::InRecord::through_header`]).
fn visible_header(
    b: &mut Builder,
    restriction: &Restriction,
    record: &InRecord,
    patient: &str,
) -> String {
    let visible = visibility::pinned(b, &restriction.listing(), record, patient, "rh", "Patient");
    format!(
        "EXISTS (SELECT 1 FROM resources rh WHERE rh.patient_id = {patient} \
         AND rh.resource_type = 'Patient' AND rh.id = {patient} AND rh.deleted = FALSE AND {visible})"
    )
}

/// Criteria that narrow a search to a few resources (a patient, an identifier, an id): one of
/// them drives the query as `id IN (…)`, and every other criterion is checked per candidate
/// with an `EXISTS` probe on (type, id, param). Materialising `IN` lists for broad criteria
/// such as `status=current` would cost a pass over most of the type on every search.
fn selective(criterion: &Criterion) -> bool {
    match &criterion.test {
        Test::Id(_) | Test::Reference(_) | Test::Chain(_) | Test::Has { .. } | Test::AnyOf(_) => {
            true
        }
        Test::Token { negate: false, .. } => {
            criterion.key.contains("identifier") || criterion.key.ends_with(":of-type")
        }
        _ => false,
    }
}

/// The resource a condition is about: its alias in the SQL, its type, and how deep in chains
/// it sits (each level gets its own alias).
struct On<'a> {
    alias: &'a str,
    resource_type: &'a str,
    depth: usize,
    base_url: &'a str,
    /// What the caller may see, at every depth: a chain or `_has` through a hidden resource
    /// matches nothing.
    restriction: &'a Restriction,
    /// The placeholder of the patient whose record holds the resource, when the search is
    /// pinned to one: its index rows are looked up in that record only (one shard, once
    /// distributed by patient).
    patient: Option<&'a str>,
}

/// A criterion as SQL: when it `drives`, an uncorrelated `id IN (SELECT … FROM index)` that
/// both engines turn into an index lookup on (type, param, value); otherwise an `EXISTS` probe
/// of the candidate's own index rows.
fn condition(b: &mut Builder, criterion: &Criterion, on: &On, drives: bool) -> String {
    let key = criterion.key.as_str();
    let r = on.alias;
    let set = tables::of(on.resource_type);
    let has_row =
        |b: &mut Builder, table: &str, key: &str, cond: &dyn Fn(&mut Builder) -> String| {
            rows_of(b, on, table, key, drives, cond)
        };
    match &criterion.test {
        Test::Id(ids) => {
            let list: Vec<String> = ids.iter().map(|id| b.text(id)).collect();
            format!("{r}.id IN ({})", list.join(", "))
        }
        Test::LastUpdated(dates) => {
            let (low, high) = (
                format!("{r}.last_updated"),
                format!("({r}.last_updated + 1)"),
            );
            any(dates.iter().map(|d| date_condition(b, &low, &high, d)))
        }
        Test::Missing { kind, missing } => {
            let found = has_row(b, set.index_of(*kind), key, &|_: &mut Builder| {
                "TRUE".to_owned()
            });
            negated(found, *missing)
        }
        Test::String { mode, values } => has_row(b, set.strings, key, &|b: &mut Builder| {
            any(values.iter().map(|v| string_condition(b, *mode, v)))
        }),
        Test::Token { negate, values } => {
            let found = has_row(b, set.tokens, key, &|b: &mut Builder| {
                any(values.iter().map(|v| token_condition(b, v)))
            });
            negated(found, *negate)
        }
        Test::TokenText(values) => has_row(b, set.tokens, key, &|b: &mut Builder| {
            any(values.iter().map(|v| prefix_condition(b, "x.text", v)))
        }),
        Test::Date(dates) => has_row(b, set.dates, key, &|b: &mut Builder| {
            any(dates
                .iter()
                .map(|d| date_condition(b, "x.low", "x.high", d)))
        }),
        Test::Reference(references) => has_row(b, set.references, key, &|b: &mut Builder| {
            let matches = any(references
                .iter()
                .map(|r| reference_condition(b, r, on.base_url)));
            // A List shows only the entries its reader may see (`lists::redact`): it is not
            // found by one it does not show either.
            match (on.resource_type, key) {
                // An entry may be the directory's: its rows are looked for in both sets.
                ("List", "item") => {
                    let listing = on.restriction.listing();
                    let visible_in = |b: &mut Builder, set: &Tables| {
                        let visible = restricted(b, &listing, "li");
                        format!(
                            "EXISTS (SELECT 1 FROM {} li \
                             WHERE li.resource_type = x.target_type AND li.id = x.target_id \
                             AND li.deleted = FALSE AND {visible})",
                            set.resources
                        )
                    };
                    let records = visible_in(b, &tables::RECORDS);
                    let directory = visible_in(b, &tables::DIRECTORY);
                    format!("({matches} AND ({records} OR {directory}))")
                }
                _ => matches,
            }
        }),
        Test::Uri { mode, values } => has_row(b, set.uris, key, &|b: &mut Builder| {
            any(values.iter().map(|v| uri_condition(b, *mode, v)))
        }),
        Test::AnyOf(criteria) => any(criteria.iter().map(|c| condition(b, c, on, drives))),
        Test::Chain(targets) => has_row(b, set.references, key, &|b: &mut Builder| {
            any(targets.iter().map(|(target_type, inner)| {
                let kind = b.text(target_type);
                let nested = nested(b, target_type, inner, on);
                format!("(x.target_type = {kind} AND x.target_id IN ({nested}))")
            }))
        }),
        Test::Has {
            source_type,
            reference,
            inner,
        } => {
            let source = b.text(source_type);
            let param = b.text(reference);
            let target = b.text(on.resource_type);
            let nested = nested(b, source_type, inner, on);
            let rows = format!(
                "FROM {} x WHERE x.resource_type = {source} AND x.param = {param} \
                 AND x.target_type = {target} AND x.id IN ({nested})",
                tables::of(source_type).references
            );
            match drives {
                true => format!("{r}.id IN (SELECT x.target_id {rows})"),
                false => format!("EXISTS (SELECT 1 {rows} AND x.target_id = {r}.id)"),
            }
        }
    }
}

/// The ids of current `resource_type` resources meeting `inner`, one level deeper.
fn nested(b: &mut Builder, resource_type: &str, inner: &Criterion, on: &On) -> String {
    let alias = format!("r{}", on.depth + 1);
    let kind = b.text(resource_type);
    let deeper = On {
        alias: &alias,
        resource_type,
        depth: on.depth + 1,
        base_url: on.base_url,
        restriction: on.restriction,
        // A chain or `_has` reaches resources of any record.
        patient: None,
    };
    let driver = selective(inner);
    let condition = condition(b, inner, &deeper, driver);
    // Chains and `_has` reach rows the caller did not name: a listing.
    let visible = restricted_as(b, &on.restriction.listing(), &alias, resource_type);
    format!(
        "SELECT {alias}.id FROM {} {alias} WHERE {alias}.resource_type = {kind} \
         AND {alias}.deleted = FALSE AND {condition} AND {visible}",
        tables::of(resource_type).resources
    )
}

/// The resource has a row of `table` for `key` meeting `condition` (on alias `x`): as the ids
/// the index yields when the criterion `drives`, else as a probe of the resource's own rows.
fn rows_of(
    b: &mut Builder,
    on: &On,
    table: &str,
    key: &str,
    drives: bool,
    condition: &dyn Fn(&mut Builder) -> String,
) -> String {
    let kind = b.text(on.resource_type);
    let key = b.text(key);
    let condition = condition(b);
    let r = on.alias;
    let record = match on.patient {
        Some(patient) => format!(" AND x.patient_id = {patient}"),
        None => String::new(),
    };
    match drives {
        true => format!(
            "{r}.id IN (SELECT x.id FROM {table} x WHERE x.resource_type = {kind} \
             AND x.param = {key}{record} AND {condition})"
        ),
        false => format!(
            "EXISTS (SELECT 1 FROM {table} x WHERE x.patient_id = {r}.patient_id \
             AND x.resource_type = {kind} AND x.id = {r}.id AND x.param = {key}{record} \
             AND {condition})"
        ),
    }
}

/// The negation of a probe (`negated` criteria never drive).
fn negated(found: String, negate: bool) -> String {
    match negate {
        true => format!("NOT {found}"),
        false => found,
    }
}

fn any(alternatives: impl Iterator<Item = String>) -> String {
    let all: Vec<String> = alternatives.collect();
    format!("({})", all.join(" OR "))
}

fn string_condition(b: &mut Builder, mode: StringMode, value: &str) -> String {
    match mode {
        StringMode::Exact => format!("x.exact = {}", b.text(value)),
        StringMode::Prefix => starts_with(b, "x.normalized", value),
        StringMode::Contains => {
            let pattern = format!("%{}%", escape_like(value));
            format!(
                "{} LIKE {} ESCAPE '\\'",
                whole("x.normalized"),
                b.text(&pattern)
            )
        }
    }
}

/// The whole value of a keyed column (see `store::index::cut`): its `_full` twin when the
/// value was cut, else the column itself.
fn whole(column: &str) -> String {
    format!("COALESCE({column}_full, {column})")
}

/// A keyed `column` holds `value`: the key matches (the index serves it) and, when the key
/// could be a cut, so does the whole value. Values shorter than a key compare as before.
fn equals(b: &mut Builder, column: &str, value: &str) -> String {
    let (key, full) = cut(value);
    let key_bind = b.text(key);
    match full {
        None if value.chars().nth(KEY_CHARS - 1).is_none() => format!("{column} = {key_bind}"),
        None => format!("({column} = {key_bind} AND {column}_full IS NULL)"),
        Some(full) => format!(
            "({column} = {key_bind} AND {column}_full = {})",
            b.text(full)
        ),
    }
}

/// A keyed `column`'s whole value starts with `prefix`: a range on the key when the prefix
/// fits in one, else the key's equality confirmed on the whole value.
fn starts_with(b: &mut Builder, column: &str, prefix: &str) -> String {
    match cut(prefix) {
        (_, None) => prefix_condition(b, column, prefix),
        (key, Some(_)) => {
            let key = b.text(key);
            let length = prefix.chars().count();
            format!(
                "({column} = {key} AND substr({column}_full, 1, {length}) = {})",
                b.text(prefix)
            )
        }
    }
}

/// `column` starts with `prefix`, as a range so that a byte-ordered index serves it.
fn prefix_condition(b: &mut Builder, column: &str, prefix: &str) -> String {
    let low = b.text(prefix);
    let high = b.text(&format!("{prefix}\u{10FFFF}"));
    format!("({column} >= {low} AND {column} < {high})")
}

fn escape_like(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

fn token_condition(b: &mut Builder, value: &TokenMatch) -> String {
    let mut parts = Vec::new();
    if let Some(code) = &value.code {
        parts.push(equals(b, "x.code", code));
    }
    match &value.system {
        SystemMatch::Any => {}
        SystemMatch::Absent => parts.push("x.system IS NULL".to_owned()),
        SystemMatch::Is(system) => parts.push(equals(b, "x.system", system)),
    }
    format!("({})", parts.join(" AND "))
}

/// The prefixes compare the resource's range `[low, high)` with the value's `[from, to)` as
/// the R4 prefix table says, literally (an open end is infinite): `gt` — the range above the
/// value overlaps the resource's (`high > to`); `ge` — that, or the value contains the
/// resource's range; `lt`/`le` likewise below. So a birth year 1978 is not `ge1978-12`.
/// `ge` is written `high > from AND (high > to OR low >= from)` (the same set, since every
/// range is non-empty) to keep a range condition an index on `high` can serve.
fn date_condition(b: &mut Builder, low: &str, high: &str, value: &DateMatch) -> String {
    let (from, to) = (value.low, value.high);
    match value.prefix {
        Prefix::Eq => format!("({low} >= {} AND {high} <= {})", b.int(from), b.int(to)),
        Prefix::Ne => format!("NOT ({low} >= {} AND {high} <= {})", b.int(from), b.int(to)),
        Prefix::Gt => format!("{high} > {}", b.int(to)),
        Prefix::Lt => format!("{low} < {}", b.int(from)),
        Prefix::Ge => {
            let (from, to) = (b.int(from), b.int(to));
            format!("({high} > {from} AND ({high} > {to} OR {low} >= {from}))")
        }
        Prefix::Le => {
            let (from, to) = (b.int(from), b.int(to));
            format!("({low} < {to} AND ({low} < {from} OR {high} <= {to}))")
        }
        Prefix::Sa => format!("{low} >= {}", b.int(to)),
        Prefix::Eb => format!("{high} <= {}", b.int(from)),
        Prefix::Ap => {
            // Approximately: within a tenth of the distance to now, and at least a day.
            const DAY: i64 = 86_400_000_000;
            let now = crate::fhir::resource::now_micros();
            let margin = ((now - from).abs() / 10).max(DAY);
            format!(
                "({low} < {} AND {high} > {})",
                b.int(to.saturating_add(margin)),
                b.int(from.saturating_sub(margin))
            )
        }
    }
}

fn reference_condition(b: &mut Builder, reference: &ReferenceMatch, base_url: &str) -> String {
    let local = |url: &str| -> Option<(String, String)> {
        let rest = url.strip_prefix(base_url)?.strip_prefix('/')?;
        let mut steps = rest.split('/');
        let (kind, id) = (steps.next()?, steps.next()?);
        Some((kind.to_owned(), id.to_owned()))
    };
    match reference {
        ReferenceMatch::Local { target_type, id } => {
            let id = format!("x.target_id = {}", b.text(id));
            match target_type {
                Some(kind) => format!("({id} AND x.target_type = {})", b.text(kind)),
                None => id,
            }
        }
        ReferenceMatch::Url(url) => match local(url) {
            Some((kind, id)) => format!(
                "(x.target_id = {} AND x.target_type = {})",
                b.text(&id),
                b.text(&kind)
            ),
            None => equals(b, "x.url", url),
        },
    }
}

fn uri_condition(b: &mut Builder, mode: UriMode, value: &str) -> String {
    match mode {
        UriMode::Exact => equals(b, "x.uri", value),
        UriMode::Below => starts_with(b, "x.uri", value),
        UriMode::Above => {
            // The value and every path prefix of it (bounded when parsed).
            any(above(value).into_iter().map(|p| equals(b, "x.uri", p)))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::search::query::parse;

    /// A patient's restriction: what a search of their record carries.
    fn all() -> Restriction {
        let access = crate::auth::Access {
            principal: crate::auth::principal::Principal::Patient { id: "p".into() },
            scopes: crate::auth::scopes::parse_scopes("patient/*.rs").unwrap(),
        };
        let kind = crate::fhir::registry::lookup("DocumentReference").unwrap();
        crate::consent::Engine::default()
            .decide(&access, kind, &[crate::auth::scopes::Interaction::Search])
            .unwrap()
    }

    /// What the restriction adds to a query at each alias it is rendered for (the search's own
    /// and each level of chains and `_has`): a fixed amount, whatever the client sent.
    fn restriction_cost() -> (usize, usize) {
        let empty = search(&[]);
        let sql = count(&empty, &all(), "http://h/fhir", Dialect::Sqlite);
        let binds = sql.sql().binds.len();
        let bytes = sql
            .sql()
            .binds
            .iter()
            .map(|b| match b {
                Bind::Text(t) => t.len(),
                _ => 8,
            })
            .sum::<usize>();
        let aliases = crate::search::query::MAX_DEPTH + 1;
        (binds * aliases, bytes * aliases)
    }

    /// A general practitioner's restriction (a médecin, not in break-glass).
    pub(crate) fn professional() -> Restriction {
        let access = crate::auth::Access {
            principal: crate::auth::principal::Principal::Professional {
                practitioner_id: "pr".into(),
                profession: "10".into(),
                organization: "o".into(),
                purpose: crate::auth::principal::Purpose::Treatment,
            },
            scopes: crate::auth::scopes::parse_scopes("user/*.rs").unwrap(),
        };
        let kind = crate::fhir::registry::lookup("DocumentReference").unwrap();
        crate::consent::Engine::default()
            .decide(&access, kind, &[crate::auth::scopes::Interaction::Search])
            .unwrap()
    }

    /// Pinned to one record, a professional's ITI-67 search asks the record's facts of the
    /// pinned id, not of each row: every directive and record lookup names the id as a value,
    /// as unpinned searches name the row's column.
    #[test]
    fn a_search_pinned_to_one_record_asks_its_facts_of_the_pinned_id() {
        let iti67 = search(&[("patient", "Patient/p"), ("status", "current")]);
        let general = page(
            &iti67,
            &professional(),
            "http://h/fhir",
            &Position::Start,
            20,
            Dialect::Postgres,
        );
        let text = &general.sql().text;
        assert!(text.contains("r_b.patient_id = r.patient_id"), "{text}");
        let restriction = professional().in_record("p", false);
        let pinned = page(
            &iti67,
            &restriction,
            "http://h/fhir",
            &Position::Start,
            20,
            Dialect::Postgres,
        );
        let sql = pinned.sql();
        let text = &sql.text;
        let id = sql.binds.iter().position(|b| *b == Bind::Text("p".into()));
        let id = format!("${}", id.expect("the pinned id is bound") + 1);
        let names_id = |alias: &str| {
            let equals = format!("{alias}.patient_id = {id}");
            text.match_indices(&equals).any(|(at, _)| {
                !text[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_')
                    && !text[at + equals.len()..].starts_with(|c: char| c.is_ascii_digit())
            })
        };
        assert!(names_id("r"), "{text}");
        // Blocks, authorizations, the record's state, oppositions.
        for fact in ["r_b", "r_p", "r_s", "r_o"] {
            assert!(names_id(fact), "{fact}: {text}");
            assert!(
                !text.contains(&format!("{fact}.patient_id = r.")),
                "{fact}: {text}"
            );
        }
    }

    /// Statements across records are planned for their values; those bounded by one record or
    /// by ids may be kept (see [`Planning`]).
    #[test]
    fn statements_across_records_are_planned_for_their_values() {
        let feeder = search(&[("status", "current"), ("type", "http://loinc.org|11502-2")]);
        let across = professional();
        let pinned = professional().in_record("p", false);
        let page_of = |restriction: &Restriction| {
            page(
                &feeder,
                restriction,
                "http://h/fhir",
                &Position::Start,
                20,
                Dialect::Postgres,
            )
            .planning()
        };
        let count_of = |restriction: &Restriction| {
            count(&feeder, restriction, "http://h/fhir", Dialect::Postgres).planning()
        };
        assert_eq!(page_of(&across), Planning::ForItsValues);
        assert_eq!(count_of(&across), Planning::ForItsValues);
        assert_eq!(page_of(&pinned), Planning::Kept);
        assert_eq!(count_of(&pinned), Planning::Kept);
        let token = TokenQuery {
            resource_type: "DocumentReference".into(),
            param: "identifier".into(),
            system: Systems::Any,
            code: "x".into(),
        };
        let by_token = conditional(
            &across,
            "DocumentReference",
            Criteria::Token(&token),
            2,
            Dialect::Postgres,
        );
        assert_eq!(by_token.planning(), Planning::ForItsValues);
        let filed = Filed::outside_records();
        let by_id = conditional(
            &across,
            "DocumentReference",
            Criteria::Id("d", &filed),
            2,
            Dialect::Postgres,
        );
        assert_eq!(by_id.planning(), Planning::Kept);
        let history_of = |scope: &HistoryScope| {
            history(&across, scope, None, None, 20, Dialect::Postgres).planning()
        };
        assert_eq!(history_of(&HistoryScope::System), Planning::ForItsValues);
        assert_eq!(
            history_of(&HistoryScope::Type("DocumentReference".into())),
            Planning::ForItsValues
        );
        let instance =
            HistoryScope::Instance("DocumentReference".into(), "d".into(), filed.clone());
        assert_eq!(history_of(&instance), Planning::Kept);
        assert_eq!(
            current(&across, "DocumentReference", "d", &filed, Dialect::Postgres).planning(),
            Planning::Kept
        );
    }

    /// A patient's search pinned to another patient's record matches nothing, by
    /// construction: the ids are compared before any SQL is written.
    #[test]
    fn a_patient_search_pinned_to_another_record_matches_nothing() {
        let iti67 = search(&[("patient", "Patient/q"), ("status", "current")]);
        let restriction = all();
        let other = count(
            &iti67,
            &restriction.in_record("q", false),
            "http://h/fhir",
            Dialect::Postgres,
        );
        let text = &other.sql().text;
        assert!(text.contains("r.deleted = FALSE AND FALSE AND"), "{text}");
        let own = count(
            &iti67,
            &restriction.in_record("p", false),
            "http://h/fhir",
            Dialect::Postgres,
        );
        let text = &own.sql().text;
        assert!(!text.contains("AND FALSE"), "{text}");
    }

    /// Every table a search pinned to one record reads — the resource, its versions, its index
    /// rows for each criterion and sort key, its access terms, what an include through the
    /// record reference adds — is read in that record: each alias is tied to the patient id,
    /// which is what lets a database distributed by patient run the query on one shard.
    #[test]
    fn a_search_pinned_to_one_record_reads_every_table_in_that_record() {
        let restriction = professional().in_record("p", false);
        let iti67 = search(&[
            ("patient", "Patient/p"),
            ("status", "current"),
            ("type", "http://loinc.org|11488-4"),
            ("_sort", "-date"),
        ]);
        let include = Include {
            reverse: false,
            iterate: false,
            source_type: "DocumentReference".into(),
            param: "patient".into(),
            target_types: vec!["Patient".into()],
        };
        let revinclude = Include {
            reverse: true,
            iterate: false,
            source_type: "DocumentReference".into(),
            param: "patient".into(),
            target_types: vec!["Patient".into()],
        };
        let base = "http://h/fhir";
        let statements = [
            page(
                &iti67,
                &restriction,
                base,
                &Position::Start,
                20,
                Dialect::Postgres,
            ),
            count(&iti67, &restriction, base, Dialect::Postgres),
            included(
                &include,
                &restriction,
                "DocumentReference",
                &["d1".into()],
                10,
                Dialect::Postgres,
            ),
            included(
                &revinclude,
                &restriction,
                "Patient",
                &["p".into()],
                10,
                Dialect::Postgres,
            ),
        ];
        for statement in &statements {
            let text = &statement.sql().text;
            let words: Vec<&str> = text.split_whitespace().collect();
            // Each table read under an alias, and how often: the alias must be tied to the
            // patient as often (`x` is the index table of each criterion in turn).
            let mut aliases: std::collections::BTreeMap<&str, usize> = Default::default();
            for triple in words.windows(3) {
                if matches!(triple[0], "FROM" | "JOIN") && !triple[1].starts_with('(') {
                    *aliases.entry(triple[2]).or_default() += 1;
                }
            }
            assert!(aliases.values().sum::<usize>() >= 3, "{text}");
            for (alias, tables) in aliases {
                let tied = text
                    .match_indices(&format!("{alias}.patient_id = "))
                    .filter(|(at, _)| {
                        !text[..*at].ends_with(|c: char| c.is_alphanumeric() || c == '_')
                    })
                    .count();
                assert!(
                    tied >= tables,
                    "{alias}: {tables} tables read, {tied} in the record: {text}"
                );
            }
        }
    }

    /// A condition its constants decide leaves none of its binds behind, and the binds
    /// left are numbered in the order the text uses them.
    #[test]
    fn binds_of_decided_conditions_are_dropped() {
        let restriction = professional().in_record("p", false);
        let sql = count(
            &search(&[("patient", "Patient/p")]),
            &restriction,
            "http://h/fhir",
            Dialect::Postgres,
        );
        let sql = sql.sql();
        for n in 1..=sql.binds.len() {
            assert!(
                sql.text.contains(&format!("${n}")),
                "${n} unused: {}",
                sql.text
            );
        }
        assert!(!sql.text.contains(&format!("${}", sql.binds.len() + 1)));
    }

    /// A DocumentReference search of `pairs`.
    pub(crate) fn search(pairs: &[(&str, &str)]) -> Search {
        let params: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse("DocumentReference", &params, true, 20, 100).unwrap()
    }

    #[test]
    fn client_values_are_always_bound() {
        let s = search(&[("description", "x' OR 1=1 --"), ("status", "current")]);
        let after = Position::After(Mark {
            resource_type: "DocumentReference".into(),
            keys: vec![],
            id: "abc".into(),
        });
        let sql = page(&s, &all(), "http://h/fhir", &after, 21, Dialect::Postgres);
        assert!(!sql.sql().text.contains("OR 1=1"));
        assert!(sql.sql().text.contains("$1"));
        assert_eq!(sql.sql().text.matches('$').count(), sql.sql().binds.len());
        let sql = count(&s, &all(), "http://h/fhir", Dialect::Sqlite);
        assert_eq!(sql.sql().text.matches('?').count(), sql.sql().binds.len());
    }

    /// The branch that sees a Binary through a document renders the restriction a second time:
    /// only where the row may be a Binary (docs/performance.md, 2026-12-06).
    #[test]
    fn the_binary_branch_is_rendered_only_where_a_binary_may_match() {
        let through_document = "_t.kind = 'binary'";
        let s = search(&[("status", "current")]);
        let documents = count(&s, &all(), "http://h/fhir", Dialect::Postgres);
        assert!(!documents.sql().text.contains(through_document));
        let outside = Filed::outside_records();
        let binary = current(&all(), "Binary", "b1", &outside, Dialect::Postgres);
        assert!(binary.sql().text.contains(through_document));
        let document = current(
            &all(),
            "DocumentReference",
            "d1",
            &outside,
            Dialect::Postgres,
        );
        assert!(!document.sql().text.contains(through_document));
        let system = history(
            &all(),
            &HistoryScope::System,
            None,
            None,
            10,
            Dialect::Postgres,
        );
        assert!(system.sql().text.contains(through_document));
    }

    #[test]
    fn binds_follow_the_placeholders_in_text_order() {
        let s = search(&[("description", "compte"), ("status", "current")]);
        let sql = count(&s, &all(), "http://h/fhir", Dialect::Postgres);
        let numbers: Vec<usize> = sql
            .sql()
            .text
            .split('$')
            .skip(1)
            .map(|rest| {
                rest.split(|c: char| !c.is_ascii_digit())
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        assert_eq!(numbers, (1..=sql.sql().binds.len()).collect::<Vec<_>>());
    }

    /// `query::cost` bounds what each criterion compiles to, whatever its shape, so that the
    /// budget checked at parse time holds for the SQL.
    #[test]
    fn parse_time_cost_bounds_the_compiled_binds() {
        use crate::search::query::{cost, Cost};
        let long = "é".repeat(300);
        let shapes: Vec<Vec<(&str, String)>> = vec![
            vec![("description", format!("a,{long},b"))],
            vec![("description:contains", long.clone())],
            vec![("description:exact", long.clone())],
            vec![("status:not", "current,superseded".into())],
            vec![("type", format!("http://loinc.org|1,|2,{long}|{long},x|"))],
            vec![("type:text", "compte,rendu".into())],
            vec![(
                "date",
                "ge2024,le2025-03,ap2024,ne2020,sa2019,eb2030".into(),
            )],
            vec![("subject", format!("Patient/1,2,https://x.org/{long}"))],
            vec![("subject:identifier", "urn:s|1,2".into())],
            vec![("patient.identifier", "urn:s|1,2,3".into())],
            vec![("subject.organization.name", "a,b".into())],
            vec![("_has:List:item:code", "a,b".into())],
            vec![
                ("_id", "a,b,c".into()),
                ("_lastUpdated", "ge2024,lt2025".into()),
            ],
            vec![
                ("relatesto:missing", "true".into()),
                ("_sort", "-date,description".into()),
            ],
        ];
        for pairs in shapes {
            let params: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            let search = parse("DocumentReference", &params, true, 20, 100).unwrap();
            let spent = search
                .criteria
                .iter()
                .map(cost)
                .fold(Cost::default(), |a, b| a + b);
            let mark = Mark {
                resource_type: "DocumentReference".into(),
                keys: vec![Some(KeyValue::Int(1)), Some(KeyValue::Text("x".into()))],
                id: "abc".into(),
            };
            for sql in [
                page(
                    &search,
                    &all(),
                    "http://h/fhir",
                    &Position::After(mark),
                    21,
                    Dialect::Sqlite,
                ),
                count(&search, &all(), "http://h/fhir", Dialect::Postgres),
            ] {
                // The search itself adds its type, sort keys, keyset and limit, and the
                // caller's restriction.
                let (restriction_binds, restriction_bytes) = restriction_cost();
                assert!(
                    sql.sql().binds.len() <= spent.binds + 16 + restriction_binds,
                    "{pairs:?}: {}",
                    sql.sql().binds.len()
                );
                let bytes: usize = sql
                    .sql()
                    .binds
                    .iter()
                    .map(|b| match b {
                        Bind::Text(t) => t.len(),
                        _ => 8,
                    })
                    .sum();
                assert!(
                    bytes <= spent.bytes + 256 + restriction_bytes,
                    "{pairs:?}: {bytes}"
                );
            }
        }
    }

    #[test]
    fn absolute_references_to_this_server_are_local() {
        let s = search(&[("subject", "http://h/fhir/Patient/7")]);
        let sql = count(&s, &all(), "http://h/fhir", Dialect::Sqlite);
        assert!(sql.sql().binds.contains(&Bind::Text("7".into())));
        assert!(sql.sql().binds.contains(&Bind::Text("Patient".into())));
    }
}
