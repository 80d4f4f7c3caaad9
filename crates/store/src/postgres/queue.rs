//! Claims under owned, fenced leases, outcomes, operator actions on the queue.
