//! Diesel table definitions, shared by both backends (see `migrations/`).

diesel::table! {
    resources (resource_type, id) {
        resource_type -> Text,
        id -> Text,
        version_id -> BigInt,
        last_updated -> BigInt,
        deleted -> Bool,
        patient_id -> Nullable<Text>,
    }
}

diesel::table! {
    resource_versions (seq) {
        seq -> BigInt,
        resource_type -> Text,
        id -> Text,
        version_id -> BigInt,
        last_updated -> BigInt,
        deleted -> Bool,
        method -> Text,
        patient_id -> Nullable<Text>,
        key_id -> Text,
        body -> Binary,
    }
}

diesel::table! {
    binary_contents (id, version_id) {
        id -> Text,
        version_id -> BigInt,
        key_id -> Text,
        content -> Binary,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    resources,
    resource_versions,
    binary_contents,
    search_tokens
);

diesel::table! {
    search_tokens (resource_type, id, param, code) {
        resource_type -> Text,
        id -> Text,
        param -> Text,
        system -> Nullable<Text>,
        code -> Text,
        patient_id -> Nullable<Text>,
    }
}
