//! The one boundary every stored body and binary crosses on its way to and from the database.
//!
//! Each stored value carries the id of the key that encoded it, so encryption at rest (a later
//! step: per-patient AES-256-GCM data keys) can be introduced and rotated row by row.

/// Key id of bodies stored without encryption.
pub const PLAIN: &str = "plain";

/// An encoded value and the key that encoded it.
pub struct Encoded {
    pub key_id: String,
    pub bytes: Vec<u8>,
}

/// A stored value could not be decoded (unknown key id).
#[derive(Debug, thiserror::Error)]
#[error("no key {0:?} to decode a stored value")]
pub struct UnknownKey(pub String);

/// Encodes a body for storage.
pub fn encode(plain: Vec<u8>) -> Encoded {
    Encoded {
        key_id: PLAIN.to_owned(),
        bytes: plain,
    }
}

/// Decodes a stored body.
pub fn decode(key_id: &str, bytes: Vec<u8>) -> Result<Vec<u8>, UnknownKey> {
    match key_id {
        PLAIN => Ok(bytes),
        other => Err(UnknownKey(other.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_unknown_key() {
        let e = encode(b"{}".to_vec());
        assert_eq!(decode(&e.key_id, e.bytes).unwrap(), b"{}");
        assert!(decode("k-missing", vec![]).is_err());
    }
}
