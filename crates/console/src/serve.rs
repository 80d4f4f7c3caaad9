//! Serving the embedded assets: `/ui/…` answers the file with its content type, a
//! strong `ETag` (a matching `If-None-Match` is `304`), `Cache-Control: no-cache` (the
//! browser keeps the file but asks before reuse, so an upgraded binary is seen at
//! once) and a strict Content-Security-Policy; `/` and `/ui` redirect to `/ui/`.

use crate::assets;
use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// Only this origin's files run or load; no inline script or style, no framing, no
/// plugins, forms only post back here.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The console's routes: `/`, `/ui`, `/ui/` and `/ui/{*path}`. Stateless, so it merges
/// into any router (`app(state).merge(mailroom_console::router())`).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(|h: HeaderMap| async move { file("", &h) }))
        .route(
            "/ui/{*path}",
            get(|Path(p): Path<String>, h: HeaderMap| async move { file(&p, &h) }),
        )
}

fn file(path: &str, request: &HeaderMap) -> Response {
    let Some(asset) = assets::find(path) else {
        let mut response = (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "not found\n",
        )
            .into_response();
        security_headers(response.headers_mut());
        return response;
    };
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == asset.etag || t.trim() == "*")
        });
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.body,
        )
            .into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    security_headers(headers);
    response
}

fn security_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get_path(path: &str, if_none_match: Option<&str>) -> Response {
        let mut req = Request::get(path);
        if let Some(tag) = if_none_match {
            req = req.header(header::IF_NONE_MATCH, tag);
        }
        router::<()>()
            .oneshot(req.body(Body::empty()).expect("request"))
            .await
            .expect("infallible")
    }

    #[tokio::test]
    async fn root_and_bare_ui_redirect_to_the_console() {
        for path in ["/", "/ui"] {
            let r = get_path(path, None).await;
            assert!(r.status().is_redirection(), "{path}: {}", r.status());
            assert_eq!(r.headers()[header::LOCATION], "/ui/");
        }
    }

    #[tokio::test]
    async fn index_and_modules_carry_type_csp_and_validators() {
        let r = get_path("/ui/", None).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert_eq!(
            r.headers()[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
        assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let body = to_bytes(r.into_body(), 1 << 20).await.expect("body");
        assert!(
            std::str::from_utf8(&body)
                .expect("utf-8")
                .contains("app.js")
        );

        let r = get_path("/ui/pages/overview.js", None).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        let r = get_path("/ui/style.css", None).await;
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/css; charset=utf-8");
        let r = get_path("/ui/logo.svg", None).await;
        assert_eq!(r.headers()[header::CONTENT_TYPE], "image/svg+xml");
    }

    #[tokio::test]
    async fn a_matching_etag_is_not_modified_and_a_stale_one_gets_the_file() {
        let tag = get_path("/ui/app.js", None).await.headers()[header::ETAG].clone();
        let tag = tag.to_str().expect("ascii").to_string();
        let r = get_path("/ui/app.js", Some(&tag)).await;
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(r.headers()[header::ETAG], tag.as_str());
        let body = to_bytes(r.into_body(), 1 << 20).await.expect("body");
        assert!(body.is_empty());
        let r = get_path("/ui/app.js", Some("\"0000000000000000\"")).await;
        assert_eq!(r.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn unknown_files_and_path_tricks_are_404() {
        for path in [
            "/ui/nope.js",
            "/ui/../Cargo.toml",
            "/ui/pages/",
            "/ui/%2e%2e/src/lib.rs",
        ] {
            let r = get_path(path, None).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
            assert_eq!(
                r.headers()[header::CONTENT_SECURITY_POLICY],
                CONTENT_SECURITY_POLICY
            );
        }
    }
}
