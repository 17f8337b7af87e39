//! The sending stage: request bodies in, one outcome per row out.
//!
//! - `sender`: the state of all senders, and one attempt's way out (pause, breaker, slot,
//!   pacer, signature, POST);
//! - `settle`: what becomes of a batch's rows after each attempt (settled, resent, split,
//!   ambiguous);
//! - `http`: the `Transport` trait a request goes through, and reqwest's implementation
//!   (the tests' scripted one is `scripted`);
//! - `breaker`: an unreachable server pauses every sender, one probe at a time;
//! - `control`: the rate and the requests in flight (`--rate`, `--concurrency`);
//! - `gate`: the in-flight limit as permits, resized as `control` says;
//! - `retry`: pure decisions from an answer (done, retry, reject, stop the run);
//! - `answer`: reading the server's answer body;
//! - `matching`: which answer is which row's;
//! - `outcomes`: what came of each request, by kind over time, for the report.

pub mod answer;
pub mod breaker;
pub mod control;
mod gate;
pub mod http;
mod matching;
pub mod outcomes;
pub mod retry;
#[cfg(test)]
mod scripted;
mod sender;
#[cfg(test)]
mod sender_tests;
mod settle;

pub use control::{ControlConfig, Rate, RateReport};
pub use http::{Reply, Transport};
pub use outcomes::Outcomes;
pub use sender::{SendConfig, SendStats, Sender, SyncApi};
