//! Diesel table definitions, shared by both backends (see `migrations/`).

diesel::table! {
    resources (patient_id, resource_type, id) {
        resource_type -> Text,
        id -> Text,
        version_id -> BigInt,
        last_updated -> BigInt,
        deleted -> Bool,
        patient_id -> Text,
        labels -> BigInt,
        writer -> Nullable<Text>,
    }
}

diesel::table! {
    resource_versions (patient_id, resource_type, id, version_id) {
        resource_type -> Text,
        id -> Text,
        version_id -> BigInt,
        last_updated -> BigInt,
        deleted -> Bool,
        method -> Text,
        patient_id -> Text,
        key_id -> Text,
        body -> Binary,
    }
}

diesel::table! {
    /// The directory's current rows (see `store::tables`): the columns of `resources`.
    directory_resources (patient_id, resource_type, id) {
        resource_type -> Text,
        id -> Text,
        version_id -> BigInt,
        last_updated -> BigInt,
        deleted -> Bool,
        patient_id -> Text,
        labels -> BigInt,
        writer -> Nullable<Text>,
    }
}

diesel::table! {
    /// The directory's versions: the columns of `resource_versions`.
    directory_versions (patient_id, resource_type, id, version_id) {
        resource_type -> Text,
        id -> Text,
        version_id -> BigInt,
        last_updated -> BigInt,
        deleted -> Bool,
        method -> Text,
        patient_id -> Text,
        key_id -> Text,
        body -> Binary,
    }
}

diesel::table! {
    binary_contents (patient_id, id, version_id) {
        patient_id -> Text,
        id -> Text,
        version_id -> BigInt,
        key_id -> Text,
        content -> Binary,
    }
}

diesel::table! {
    resource_ids (resource_type, id) {
        resource_type -> Text,
        id -> Text,
        patient_id -> Text,
    }
}

diesel::table! {
    patient_identifiers (system, value, patient_id) {
        system -> Text,
        value -> Text,
        patient_id -> Text,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    directory_resources,
    directory_versions,
    resources,
    resource_ids,
    resource_versions,
    binary_contents,
    search_tokens,
    search_strings,
    search_dates,
    search_references,
    search_uris
);

diesel::table! {
    search_tokens (resource_type, id, param, code) {
        resource_type -> Text,
        id -> Text,
        param -> Text,
        system -> Nullable<Text>,
        system_full -> Nullable<Text>,
        code -> Text,
        code_full -> Nullable<Text>,
        patient_id -> Text,
        text -> Nullable<Text>,
    }
}

diesel::table! {
    search_strings (resource_type, id, param, normalized) {
        resource_type -> Text,
        id -> Text,
        param -> Text,
        normalized -> Text,
        normalized_full -> Nullable<Text>,
        exact -> Text,
        patient_id -> Text,
    }
}

diesel::table! {
    search_dates (resource_type, id, param, low) {
        resource_type -> Text,
        id -> Text,
        param -> Text,
        low -> BigInt,
        high -> BigInt,
        patient_id -> Text,
    }
}

diesel::table! {
    search_references (resource_type, id, param, url) {
        resource_type -> Text,
        id -> Text,
        param -> Text,
        target_type -> Nullable<Text>,
        target_id -> Nullable<Text>,
        url -> Text,
        url_full -> Nullable<Text>,
        patient_id -> Text,
    }
}

diesel::table! {
    search_uris (resource_type, id, param, uri) {
        resource_type -> Text,
        id -> Text,
        param -> Text,
        uri -> Text,
        uri_full -> Nullable<Text>,
        patient_id -> Text,
    }
}

diesel::table! {
    server_secrets (name) {
        name -> Text,
        secret -> Binary,
    }
}
