//! The HTTP surface: routes, content negotiation, headers and errors.

mod body;
pub mod error;
pub mod interactions;
pub mod negotiate;
pub mod panics;
mod respond;

use crate::config::Config;
use crate::fhir::writes::WriteContext;
use crate::store::Store;
use actix_web::web;
use std::sync::Arc;

/// What every request handler shares.
pub struct AppState {
    pub config: Config,
    pub store: Arc<Store>,
    /// Built once at start: it describes the running server.
    pub capability_statement: serde_json::Value,
}

impl AppState {
    /// The write interactions over this server's store and settings.
    pub fn writes(&self) -> WriteContext<'_> {
        WriteContext {
            store: &self.store,
            base_url: self.config.base(),
            update_create: self.config.update_create,
        }
    }
}

/// Registers the FHIR routes under `/fhir`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    use interactions::*;
    cfg.service(
        web::scope("/fhir")
            .route("/metadata", web::get().to(metadata))
            .route("/_history", web::get().to(history_system))
            .route("/{type}", web::post().to(create))
            .route("/{type}", web::put().to(conditional_update))
            .route("/{type}", web::delete().to(conditional_delete))
            .route("/{type}", web::patch().to(conditional_patch))
            .route("/{type}/_history", web::get().to(history_type))
            .route("/{type}/{id}", web::get().to(read))
            .route("/{type}/{id}", web::put().to(update))
            .route("/{type}/{id}", web::delete().to(delete))
            .route("/{type}/{id}", web::patch().to(patch))
            .route("/{type}/{id}/_history", web::get().to(history_instance))
            .route("/{type}/{id}/_history/{vid}", web::get().to(vread)),
    )
    .route("/docs", web::get().to(crate::docs::page))
    .route("/docs/openapi.json", web::get().to(crate::docs::openapi))
    .default_service(web::to(unknown));
}
