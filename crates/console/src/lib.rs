//! The embedded web console: the hand-written HTML, CSS, SVG and ES-module JavaScript
//! under `assets/`, compiled into the binary (`include_bytes!`, see [`assets`]) and
//! served under `/ui/` by [`router`], with `/` redirecting there.
//!
//! The console is a client of the public HTTP API (`/v1/...`): it signs in through
//! `POST /v1/session` and then calls the same routes a script would, with the session
//! cookie and the `X-CSRF-Token` header. Nothing here reads the store or holds a rule;
//! this crate only owns the assets and how they are served (content types, caching,
//! security headers). There is no build step: the files in `assets/` are what the
//! browser runs.

pub mod assets;
mod serve;

pub use serve::{CONTENT_SECURITY_POLICY, router};
