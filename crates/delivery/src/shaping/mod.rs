//! Traffic shaping as data: which site (MX host set) and provider a destination
//! belongs to, the provider profile and per-domain overrides that set its limits,
//! token buckets for message and connection rates, the 1/N concurrency feedback,
//! response rules (a pattern on the remote reply → an action with a duration and a
//! threshold) and the egress warm-up schedule. Everything here is pure: no sockets,
//! no store, the clock passed in as milliseconds, so the decisions are tested
//! without I/O and shown in the API as they are. Applying them (the worker, the
//! store role `ShapingStore`) happens elsewhere.

pub mod bucket;
pub mod feedback;
pub mod limits;
pub mod profile;
pub mod rules;
pub mod site;
pub mod warmup;

pub use bucket::TokenBucket;
pub use feedback::Feedback;
pub use limits::{ActiveThrottle, Limits, limits_in_force};
pub use profile::{Profile, Profiles};
pub use rules::{Rule, RuleAction, RuleScope, RuleSet};
pub use site::{Site, site_for};
pub use warmup::{AddressState, Schedule, WarmupSchedule, pick_address};
