//! Engagement events (opens, clicks) and unsubscribes.
