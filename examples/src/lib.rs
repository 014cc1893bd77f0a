//! Runnable examples of eventsource: see the `[[example]]` targets in Cargo.toml.
