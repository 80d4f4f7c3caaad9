//! RFC 7807 problem responses. Every error the API returns has a status, a title, a
//! human detail and, for validation errors, the name of the field that is wrong.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mailroom_store::StoreError;
use serde::Serialize;

/// The `Retry-After` of a 503 caused by the database (connection refused or reset,
/// pool timeout): long enough for a failover or restart to begin, short enough that a
/// client retrying on schedule does not wait long after it ends.
pub const STORAGE_RETRY_AFTER_SECS: u64 = 5;

#[derive(Debug, Serialize)]
pub struct ApiError {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The content rule that refused a message (RFC 7807 extension member).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<&'static str>,
    /// Seconds for a `Retry-After` header (429, 503).
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank",
            title,
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
            rule: None,
            retry_after: None,
        }
    }

    /// A problem with any status.
    pub fn status(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Self {
        Self::new(status, title, detail)
    }

    /// Names the input the problem is about.
    pub fn with_field(mut self, field: &str) -> Self {
        self.field = Some(field.to_string());
        self
    }

    pub fn with_rule(mut self, rule: &'static str) -> Self {
        self.rule = Some(rule);
        self
    }

    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn invalid(field: &str, detail: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid request", detail);
        e.field = Some(field.to_string());
        e
    }

    pub fn bad_json(err: &serde_path_to_error::Error<serde_json::Error>) -> Self {
        let inner = err.inner().to_string();
        let path = err.path().to_string();
        // serde names a missing field between backticks ("missing field `name`"), at
        // the path of the object that lacks it.
        // An unknown field's path already ends in its name.
        let field = match inner.strip_prefix("missing field `") {
            Some(rest) => {
                let name = rest.split('`').next().unwrap_or_default();
                if path == "." {
                    name.to_string()
                } else {
                    format!("{path}.{name}")
                }
            }
            None if path != "." => path,
            None => String::new(),
        };
        let mut e = Self::new(StatusCode::BAD_REQUEST, "Malformed JSON body", inner);
        e.field = (!field.is_empty()).then_some(field);
        e
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "a valid token is required: Authorization: Bearer <token>",
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", detail)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "Not found",
            format!("no such {what}"),
        )
    }

    pub fn conflict(what: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!("{what} already exists"),
        )
    }

    pub fn storage(err: StoreError) -> Self {
        match err {
            StoreError::Conflict(what) => Self::conflict(what),
            StoreError::NotFound(what) => Self::not_found(what),
            StoreError::Full => Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "Insufficient storage",
                "storage is full; try again later",
            ),
            StoreError::Closed | StoreError::Database(_) | StoreError::Unavailable(_) => {
                tracing::error!(error = %err, "storage error in API");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Storage unavailable",
                    "the database is temporarily unavailable; nothing was changed; try again later",
                )
                .with_retry_after(STORAGE_RETRY_AFTER_SECS)
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::storage(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(&self)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Parses a JSON body, turning serde's complaint into a problem naming the field.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    // Every request body is a JSON object; serde would also fill a struct from an array.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "Malformed JSON body",
            "the body must be a JSON object",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| ApiError::bad_json(&e))?;
    de.end().map_err(|e| {
        let mut p = ApiError::new(
            StatusCode::BAD_REQUEST,
            "Malformed JSON body",
            e.to_string(),
        );
        p.field = None;
        p
    })?;
    Ok(value)
}
