//! Query-string parameters read by hand, so that every bad or unknown parameter gets
//! a problem response naming it (axum's `Query` rejection would not).

use crate::ApiError;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use std::collections::HashMap;

pub struct Params(HashMap<String, String>);

impl Params {
    /// Takes the parsed query, refusing parameters not in `known`.
    pub fn new(
        query: Result<Query<HashMap<String, String>>, QueryRejection>,
        known: &[&str],
    ) -> Result<Self, ApiError> {
        let Query(map) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
        if let Some(bad) = map.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(ApiError::invalid(bad, "unknown parameter"));
        }
        // No parameter of this API takes control characters; refused here, by name,
        // rather than reaching a database that cannot store them (PostgreSQL text
        // refuses NUL).
        if let Some((bad, _)) = map.iter().find(|(_, v)| v.chars().any(char::is_control)) {
            return Err(ApiError::invalid(
                bad,
                "must not contain control characters",
            ));
        }
        Ok(Self(map))
    }

    /// The parameter, if present and not empty (free-text filters, where an empty value
    /// means "no filter"; an enumerated parameter uses `raw`, so that empty is refused).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The parameter as given, even when empty (for parameters where an empty value
    /// must be refused rather than read as absent).
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// `limit`: 1 to `max`, default `default`.
    /// Present but empty is refused (it is not a number).
    pub fn limit(&self, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.0.get("limit").map(String::as_str) {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| ApiError::invalid("limit", format!("an integer from 1 to {max}"))),
        }
    }
}
