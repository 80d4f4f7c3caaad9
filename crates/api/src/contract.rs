//! The rules every route shares, so that the server answers what its OpenAPI document
//! (`openapi.json`) says, whatever the handler:
//!
//! - **Query parameters** are the ones the document declares for the operation: an
//!   undeclared one, or one given more than once, is a `422` problem naming it (before
//!   the handler runs). The document is read once, at first use.
//! - **Every error is a problem.** Responses the framework makes itself (`405` with an
//!   empty body, `413` for a body over the limit, a path or body that cannot be read)
//!   are rewritten as `application/problem+json` with the same status and headers
//!   (`Allow` stays), naming the field where there is one.
//!
//! It does not validate bodies or values: handlers do, naming the field.

use crate::ApiError;
use crate::openapi::SPEC;
use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

/// Declared query parameter names by (method, path template).
type Declared = HashMap<(Method, String), HashSet<String>>;

static DECLARED: LazyLock<Declared> = LazyLock::new(|| declared_query_params(SPEC));

/// Reads the query parameters each operation of an OpenAPI document declares
/// (operation-level and path-level `parameters` with `in: query`).
fn declared_query_params(spec: &str) -> Declared {
    let mut out = Declared::new();
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(spec) else {
        return out;
    };
    let Some(paths) = doc.get("paths").and_then(|p| p.as_object()) else {
        return out;
    };
    let query_names = |params: Option<&serde_json::Value>| -> Vec<String> {
        params
            .and_then(|p| p.as_array())
            .into_iter()
            .flatten()
            .filter(|p| p.get("in").and_then(|i| i.as_str()) == Some("query"))
            .filter_map(|p| p.get("name").and_then(|n| n.as_str()).map(str::to_string))
            .collect()
    };
    for (path, item) in paths {
        let Some(item) = item.as_object() else {
            continue;
        };
        let shared = query_names(item.get("parameters"));
        for (method, op) in item {
            let Ok(method) = Method::from_bytes(method.to_ascii_uppercase().as_bytes()) else {
                continue;
            };
            let mut names: HashSet<String> = shared.iter().cloned().collect();
            names.extend(query_names(op.get("parameters")));
            out.insert((method, path.clone()), names);
        }
    }
    out
}

/// Checks a query string against the declared names: the first undeclared or
/// repeated parameter is the problem.
fn check_query(query: &str, declared: &HashSet<String>) -> Result<(), ApiError> {
    let mut seen = HashSet::new();
    for (name, _) in form_urlencoded::parse(query.as_bytes()) {
        if !declared.contains(name.as_ref()) {
            let known = {
                let mut k: Vec<&str> = declared.iter().map(String::as_str).collect();
                k.sort_unstable();
                k
            };
            let detail = if known.is_empty() {
                "unknown query parameter; this operation takes none".to_string()
            } else {
                format!("unknown query parameter; known: {}", known.join(", "))
            };
            return Err(ApiError::invalid(&name, detail));
        }
        if !seen.insert(name.to_string()) {
            return Err(ApiError::invalid(
                &name,
                "given more than once; give each query parameter at most once",
            ));
        }
    }
    Ok(())
}

/// Route layer: refuses undeclared and repeated query parameters.
pub async fn query_rules(req: Request, next: Next) -> Response {
    if let (Some(query), Some(path)) = (req.uri().query(), req.extensions().get::<MatchedPath>()) {
        let key = (req.method().clone(), path.as_str().to_string());
        // HEAD is answered by the GET handler.
        let key = if key.0 == Method::HEAD && !DECLARED.contains_key(&key) {
            (Method::GET, key.1)
        } else {
            key
        };
        if let Some(declared) = DECLARED.get(&key)
            && let Err(problem) = check_query(query, declared)
        {
            return problem.into_response();
        }
    }
    next.run(req).await
}

/// Longest framework error text kept as the problem's detail.
const MAX_DETAIL: usize = 4096;

/// Outer layer: rewrites any error response that is not already a problem.
pub async fn problem_bodies(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_problem(&response) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_DETAIL * 4)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let title = status.canonical_reason().unwrap_or("Error");
    let (field, detail) = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allow = parts
                .headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            (
                Some("method"),
                format!("this path does not take that method; allowed: {allow}"),
            )
        }
        StatusCode::PAYLOAD_TOO_LARGE => (Some("body"), non_empty(text, "the body is too large")),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (Some("Content-Type"), non_empty(text, title)),
        StatusCode::BAD_REQUEST if text.starts_with("Invalid URL") => (Some("path"), text),
        _ => (None, non_empty(text, title)),
    };
    let mut problem = ApiError::status(status, static_title(status), truncate(detail));
    if let Some(f) = field {
        problem = problem.with_field(f);
    }
    let mut out = problem.into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

fn is_problem(response: &Response<Body>) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/problem+json"))
}

fn non_empty(text: String, fallback: &str) -> String {
    if text.is_empty() {
        fallback.to_string()
    } else {
        text
    }
}

fn truncate(mut text: String) -> String {
    if text.len() > MAX_DETAIL {
        let mut cut = MAX_DETAIL;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// The problem title for a status the framework produced.
fn static_title(status: StatusCode) -> &'static str {
    match status {
        StatusCode::METHOD_NOT_ALLOWED => "Method not allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "Payload too large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "Unsupported media type",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::BAD_REQUEST => "Bad request",
        s if s.is_server_error() => "Server error",
        _ => "Request refused",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{"paths": {
        "/a/{id}": {
            "parameters": [{"name": "tenant", "in": "query"}],
            "get": {"parameters": [{"name": "limit", "in": "query"},
                                   {"name": "id", "in": "path"}]},
            "delete": {}
        }}}"#;

    #[test]
    fn declared_params_include_path_level_ones() {
        let d = declared_query_params(DOC);
        let get = &d[&(Method::GET, "/a/{id}".to_string())];
        assert!(get.contains("tenant") && get.contains("limit") && !get.contains("id"));
        let del = &d[&(Method::DELETE, "/a/{id}".to_string())];
        assert_eq!(del.len(), 1);
    }

    #[test]
    fn unknown_and_repeated_params_are_named() {
        let known: HashSet<String> = ["limit".to_string(), "after".to_string()].into();
        assert!(check_query("limit=5&after=3", &known).is_ok());
        assert!(check_query("", &known).is_ok());
        let e = check_query("limit=5&bogus=1", &known).unwrap_err();
        assert_eq!((e.status, e.field.as_deref()), (422, Some("bogus")));
        assert!(e.detail.contains("after, limit"), "{}", e.detail);
        let e = check_query("limit=5&limit=6", &known).unwrap_err();
        assert_eq!((e.status, e.field.as_deref()), (422, Some("limit")));
        let e = check_query("x%20y=1", &HashSet::new()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("x y"));
    }

    #[test]
    fn the_served_document_parses() {
        assert!(DECLARED.contains_key(&(Method::GET, "/v1/events".to_string())));
        assert!(DECLARED[&(Method::GET, "/v1/events".to_string())].contains("after"));
    }
}
