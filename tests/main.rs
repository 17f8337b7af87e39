//! The integration tests, as one binary (one link, shared helpers).

mod bad_input;
mod check;
mod common;
mod deploy;
mod hostile;
mod inputs;
mod load;
mod metrics;
mod options;
mod raw;
mod reading;
mod recovery;
mod report;
mod resume_matrix;
mod retry_matrix;
mod sandbox;
mod sandbox_api;
mod secrets;
mod shard;
mod sheet;
mod sync;
mod terminal;
mod toolchain;
mod unattended;
mod words;
mod words_logs;
