//! The sending stage: request bodies in, one outcome per row out.
//!
//! - `sender`: attempts over HTTP, retries of only the ops that need them, stops;
//! - `breaker`: an unreachable server pauses every sender, one probe at a time;
//! - `control`: the rate and the requests in flight (`--rate`, `--concurrency`);
//! - `gate`: the in-flight limit as permits, resized as `control` says;
//! - `retry`: pure decisions from an answer (done, retry, reject, stop the run);
//! - `answer`: reading the server's answer body;
//! - `matching`: which answer is which row's.

pub mod answer;
pub mod breaker;
pub mod control;
mod gate;
mod http;
mod matching;
pub mod retry;
mod sender;

pub use control::{ControlConfig, Rate, RateReport};
pub use sender::{SendConfig, SendStats, Sender, SyncApi};
