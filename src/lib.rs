//! czload: load CSV and NDJSON files into Corezoid processes as tasks.
//!
//! ```text
//! input files ─► source ─► mapping ─► batcher ─► signer ─► sender ─► journal
//! (CSV/NDJSON,    rows      ops        request    URL +     HTTP,      results log,
//!  gzip, stdin)                        bodies     body      retries    retry file,
//!                                                                      summary
//! ```

pub mod cli;
pub mod config;
pub mod error;
pub mod sandbox;
pub mod batch;
pub mod mapping;
pub mod retry;
pub mod sign;
pub mod source;

pub use error::{Error, Result};
