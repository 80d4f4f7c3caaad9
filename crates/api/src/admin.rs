//! `POST /v1/admin/reload` (operator): re-read the configuration file the server was
//! started with and apply what can change live. The API crate knows no configuration:
//! the binary installs the reload itself as a [`Reloader`] extension; without one the
//! route answers 503.

use crate::ApiError;
use crate::auth::Principal;
use axum::http::StatusCode;
use axum::{Extension, Json};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What a reload returns: a JSON report of what changed live and what waits for a
/// restart, or why nothing changed (a bad file: the error names the key).
pub type ReloadFuture = Pin<Box<dyn Future<Output = Result<serde_json::Value, String>> + Send>>;

/// The reload the binary installs (`Router::layer(Extension(Reloader(..)))`).
#[derive(Clone)]
pub struct Reloader(pub Arc<dyn Fn() -> ReloadFuture + Send + Sync>);

pub async fn reload(
    p: Principal,
    reloader: Option<Extension<Reloader>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    p.require_operator()?;
    let Some(Extension(reloader)) = reloader else {
        return Err(ApiError::status(
            StatusCode::SERVICE_UNAVAILABLE,
            "Reload unavailable",
            "this server runs without a configuration file reloader",
        ));
    };
    match (reloader.0)().await {
        Ok(report) => Ok(Json(report)),
        Err(why) => Err(ApiError::status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Configuration not reloaded",
            format!("nothing was changed: {why}"),
        )
        .with_field("config")),
    }
}
