//! Paging cursors: the position after which the next page starts, bound to the query and the
//! caller that produced it and authenticated with a server secret, so that a client can
//! neither forge a position nor carry a cursor over to another query or another caller.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;

/// The cursor for the page after `after`, for the query and caller described by `binding`.
pub fn seal(secret: &[u8], binding: &str, after: &str) -> String {
    let tag = hmac::sign(&key(secret), &message(binding, after));
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(after),
        URL_SAFE_NO_PAD.encode(tag.as_ref())
    )
}

/// The position a cursor carries, if it was sealed by this server for this `binding`.
pub fn open(secret: &[u8], binding: &str, cursor: &str) -> Option<String> {
    let (after, tag) = cursor.split_once('.')?;
    let after = String::from_utf8(URL_SAFE_NO_PAD.decode(after).ok()?).ok()?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    hmac::verify(&key(secret), &message(binding, &after), &tag).ok()?;
    Some(after)
}

fn key(secret: &[u8]) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, secret)
}

/// Length-prefixed so that no (binding, position) pair can be shifted into another.
fn message(binding: &str, after: &str) -> Vec<u8> {
    format!("{}:{binding}{after}", binding.len()).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_opens_only_for_its_query_and_secret() {
        let cursor = seal(b"secret", "Patient?family=levy|client-a", "abc");
        assert_eq!(
            open(b"secret", "Patient?family=levy|client-a", &cursor).as_deref(),
            Some("abc")
        );
        assert_eq!(
            open(b"secret", "Patient?family=lev|client-a", &cursor),
            None
        );
        assert_eq!(
            open(b"secret", "Patient?family=levy|client-b", &cursor),
            None
        );
        assert_eq!(
            open(b"other", "Patient?family=levy|client-a", &cursor),
            None
        );
        let (_, tag) = cursor.split_once('.').unwrap();
        let moved = format!("{}.{tag}", URL_SAFE_NO_PAD.encode("zzz"));
        assert_eq!(
            open(b"secret", "Patient?family=levy|client-a", &moved),
            None
        );
        assert_eq!(open(b"secret", "x", "garbage"), None);
    }
}
