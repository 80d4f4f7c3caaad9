//! Whether this store's writes are being refused (disk full, read-only file system or
//! database, I/O error), for readiness. The writers note each refusal; `ping` reports
//! the last one for [`REFUSAL_SHOWN_FOR`] after it, so a node whose database answers
//! reads but takes no writes is not "ready". It turns ready again by itself once no
//! write has been refused for that long (the delivery recorder retries refused
//! outcomes every few seconds, so while it holds some the state is kept fresh).

use crate::StoreError;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a refused write keeps the store "not ready".
pub const REFUSAL_SHOWN_FOR: Duration = Duration::from_secs(10);

#[derive(Default)]
pub(crate) struct WriteHealth {
    last: Mutex<Option<(Instant, StoreError)>>,
}

impl WriteHealth {
    /// Notes the result of a write: a refusal (see [`StoreError::refuses_writes`]) is
    /// kept; anything else changes nothing.
    pub(crate) fn note<T>(&self, result: &Result<T, StoreError>) {
        if let Err(e) = result
            && e.refuses_writes()
        {
            *self.last.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((Instant::now(), e.clone()));
        }
    }

    /// The refusal seen within the last [`REFUSAL_SHOWN_FOR`], if any.
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        match &*self.last.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((at, e)) if at.elapsed() < REFUSAL_SHOWN_FOR => Err(e.clone()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refusals_are_kept() {
        let h = WriteHealth::default();
        h.note::<()>(&Err(StoreError::Conflict("x")));
        h.note::<()>(&Err(StoreError::Database("syntax".into())));
        h.note(&Ok(()));
        assert!(h.check().is_ok());
        h.note::<()>(&Err(StoreError::Full));
        assert!(matches!(h.check(), Err(StoreError::Full)));
        h.note(&Ok(()));
        assert!(
            matches!(h.check(), Err(StoreError::Full)),
            "shown for a while"
        );
        *h.last.lock().unwrap() = Some((Instant::now() - REFUSAL_SHOWN_FOR, StoreError::Full));
        assert!(h.check().is_ok(), "and then no longer");
    }
}
