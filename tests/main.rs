//! The integration tests, as one binary (one link, shared helpers).

mod bad_input;
mod check;
mod common;
mod hostile;
mod inputs;
mod load;
mod options;
mod raw;
mod recovery;
mod report;
mod sandbox;
mod secrets;
mod shard;
mod sheet;
mod sync;
mod toolchain;
mod unattended;
