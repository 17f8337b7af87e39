//! The integration tests, as one binary (one link, shared helpers).

mod common;
mod hostile;
mod load;
mod recovery;
mod sandbox;
