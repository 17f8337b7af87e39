//! The integration tests, as one binary (one link, shared helpers).

mod bad_input;
mod common;
mod load;
mod recovery;
mod sandbox;
mod secrets;
