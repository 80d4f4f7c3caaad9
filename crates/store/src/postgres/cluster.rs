//! Node heartbeats, singleton roles, the directory version, readiness.
