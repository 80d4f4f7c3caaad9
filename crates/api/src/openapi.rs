//! The OpenAPI description of this API, served at `/v1/openapi.json`. It is kept as a
//! file (`crates/api/openapi.json`) and a test checks that every route the router
//! serves is described there.

use axum::http::header;
use axum::response::IntoResponse;

pub const SPEC: &str = include_str!("../openapi.json");

pub async fn spec() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], SPEC)
}
