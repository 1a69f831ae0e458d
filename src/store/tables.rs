//! Which tables hold a resource type's rows. A record's data lives in tables keyed by the
//! patient id (partitioned by it here, distributed by it on Citus); the directory
//! (Organization, Practitioner, PractitionerRole), which belongs to no record and which every
//! record's queries join to, lives in tables of its own: reference tables on Citus, copied to
//! every node, so a record's query joins them where it runs (docs/scale-out.md).
//!
//! Both sets have the same columns (the directory's patient id is always empty), so one
//! statement reads either: only the table names change.

use crate::search::registry::ParamType;

/// The types whose rows are the directory's: no one's health data, read by every principal
/// and written by provisioning alone (`consent::policy`, which says why these three).
pub const DIRECTORY_TYPES: [&str; 3] = ["Organization", "Practitioner", "PractitionerRole"];

/// The tables of one set: current rows, versions, and one index table per parameter kind.
#[derive(Debug, PartialEq, Eq)]
pub struct Tables {
    pub resources: &'static str,
    pub versions: &'static str,
    pub tokens: &'static str,
    pub strings: &'static str,
    pub dates: &'static str,
    pub references: &'static str,
    pub uris: &'static str,
}

/// The records' tables.
pub const RECORDS: Tables = Tables {
    resources: "resources",
    versions: "resource_versions",
    tokens: "search_tokens",
    strings: "search_strings",
    dates: "search_dates",
    references: "search_references",
    uris: "search_uris",
};

/// The directory's tables.
pub const DIRECTORY: Tables = Tables {
    resources: "directory_resources",
    versions: "directory_versions",
    tokens: "directory_tokens",
    strings: "directory_strings",
    dates: "directory_dates",
    references: "directory_references",
    uris: "directory_uris",
};

/// Both sets, for what reads every type (system history, `carnet reindex`).
pub const ALL: [&Tables; 2] = [&RECORDS, &DIRECTORY];

/// Whether `resource_type` is the directory's.
pub fn is_directory(resource_type: &str) -> bool {
    DIRECTORY_TYPES.contains(&resource_type)
}

/// The tables holding the rows of `resource_type`.
pub fn of(resource_type: &str) -> &'static Tables {
    match is_directory(resource_type) {
        true => &DIRECTORY,
        false => &RECORDS,
    }
}

impl Tables {
    /// The index table of parameters of `kind`.
    pub fn index_of(&self, kind: ParamType) -> &'static str {
        match kind {
            ParamType::String => self.strings,
            ParamType::Date => self.dates,
            ParamType::Reference => self.references,
            ParamType::Uri => self.uris,
            _ => self.tokens,
        }
    }

    /// Whether these are the directory's tables.
    pub fn is_directory(&self) -> bool {
        self == &DIRECTORY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_types_have_their_own_tables() {
        for t in DIRECTORY_TYPES {
            assert_eq!(of(t), &DIRECTORY);
        }
        for t in [
            "Patient",
            "DocumentReference",
            "Binary",
            "RelatedPerson",
            "Consent",
        ] {
            assert_eq!(of(t), &RECORDS);
        }
    }
}
