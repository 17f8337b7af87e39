//! Runs chunks of [`Want`]s through the sender as a load runs batches
//! (`pipeline::dispatch`): a chunk starts when one more may be alive
//! (`Sender::admit_batch`), many are in flight as the controller allows, and each
//! finished chunk is handed to the caller's `done` in the order they finish.
//!
//! In: a channel of chunks (a reader thread fills it, so the input is streamed). Out:
//! `done(chunk, outcomes)` per chunk, a `None` outcome for a row a stop left unsettled.

use super::steps::{self, Want};
use crate::error::{Error, Result};
use crate::outcome::Outcome;
use crate::send::Sender;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::mpsc;

/// What a chunk's wants are sent as.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    Show,
    Delete,
}

/// Up to a request's worth of wants, and what the caller keeps beside each.
pub struct Chunk<T> {
    pub wants: Vec<Want>,
    pub extra: Vec<T>,
}

/// Sends every chunk `rx` gives; true when `shutdown` stopped it. `done` failing (a log
/// that cannot be written) stops the sending, and its error is returned.
pub async fn drive<T: Send + 'static>(
    sender: &Arc<Sender>,
    mode: Mode,
    mut rx: mpsc::Receiver<Chunk<T>>,
    mut done: impl FnMut(Chunk<T>, Vec<Option<Outcome>>) -> Result<()>,
    shutdown: impl Future<Output = ()>,
) -> Result<bool> {
    let mut tasks = tokio::task::JoinSet::new();
    let (mut interrupted, mut input_done) = (false, false);
    let mut failed: Option<Error> = None;
    tokio::pin!(shutdown);
    loop {
        let taking = !input_done && !sender.is_stopped();
        if tasks.is_empty() && !taking {
            break;
        }
        tokio::select! {
            _ = &mut shutdown, if !interrupted => {
                interrupted = true;
                sender.stop();
            }
            r = tasks.join_next(), if !tasks.is_empty() => {
                let Some(r) = r else { continue };
                let (chunk, outcomes) = r.map_err(|e| Error::Other(format!("a sender task failed: {e}")))?;
                if failed.is_none() {
                    if let Err(e) = done(chunk, outcomes) {
                        failed = Some(e);
                        sender.stop();
                    }
                }
            }
            c = async {
                let permit = sender.admit_batch().await;
                rx.recv().await.map(|c| (c, permit))
            }, if taking => {
                let Some((chunk, permit)) = c else {
                    input_done = true;
                    continue;
                };
                let s = sender.clone();
                tasks.spawn(async move {
                    let outcomes = match mode {
                        Mode::Show => steps::show(&s, &chunk.wants).await,
                        Mode::Delete => steps::delete(&s, &chunk.wants).await,
                    };
                    drop(permit);
                    (chunk, outcomes)
                });
            }
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(interrupted),
    }
}
