//! Rebuilds the crate when a migration file changes: `sqlx::migrate!` embeds the
//! migrations at compile time, and cargo does not otherwise see new files there.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
