//! The integration tests, as one binary (one link, shared helpers).

mod bad_input;
mod common;
mod hostile;
mod inputs;
mod load;
mod options;
mod recovery;
mod report;
mod sandbox;
mod secrets;
mod shard;
mod unattended;
