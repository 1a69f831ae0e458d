//! Reading request bodies within the configured size limit.

use super::error::ApiError;
use actix_web::web::{Bytes, BytesMut, Payload};
use actix_web::HttpRequest;
use futures_util::StreamExt;

/// Reads the whole body; 413 as soon as it exceeds `limit` bytes (declared or actual).
pub async fn read(req: &HttpRequest, mut payload: Payload, limit: u64) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            413,
            "too-costly",
            format!("The request body exceeds the limit of {limit} bytes"),
        )
    };
    let declared = req
        .headers()
        .get("Content-Length")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(super::edges::payload_error)?;
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
