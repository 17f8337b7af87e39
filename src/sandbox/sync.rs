//! The Sync API (docs/protocol.md, Sync API): the process's replies to created tasks.
//!
//! In: the answers of an applied request, the data of each create, the body's `timeout`
//! and `--sync-delay-ms`. Out: the answers after the wait, each create's carrying the
//! process's reply (`{"replied":true,"fields":N,"data":{...}}`, computed from the task's
//! data) or "Timeout for create task"; `false` when a request without `timeout` would wait
//! past 60 s (the caller answers 504). The tasks stay created either way, as on Corezoid.

use super::ops::Answer;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::time::Duration;

/// The wait of a request without `timeout` before the gateway gives up.
const GATEWAY_WAIT: Duration = Duration::from_secs(60);

/// The body's `timeout`, in seconds.
pub(crate) fn timeout_of(body: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct T {
        timeout: Option<u64>,
    }
    serde_json::from_slice::<T>(body).ok()?.timeout
}

/// Waits for the slowest reply (or the timeout) and rewrites the creates' answers.
pub(crate) async fn reply(
    answers: &mut [Answer<'_>],
    created: Vec<Option<Box<RawValue>>>,
    timeout: Option<u64>,
    delay_ms: u64,
) -> bool {
    let replies: Vec<Option<(Duration, Box<RawValue>)>> = created
        .into_iter()
        .zip(answers.iter())
        .map(|(data, a)| {
            let data = data.filter(|_| a.is_ok())?;
            let map: Map<String, Value> = serde_json::from_str(data.get()).unwrap_or_default();
            let delay = map
                .get("sync_delay_ms")
                .and_then(Value::as_u64)
                .unwrap_or(delay_ms);
            let reply = serde_json::json!({"replied": true, "fields": map.len(), "data": map});
            Some((
                Duration::from_millis(delay),
                serde_json::value::to_raw_value(&reply).ok()?,
            ))
        })
        .collect();
    let slowest = replies
        .iter()
        .flatten()
        .map(|(d, _)| *d)
        .max()
        .unwrap_or_default();
    let limit = timeout.map_or(GATEWAY_WAIT, Duration::from_secs);
    tokio::time::sleep(slowest.min(limit)).await;
    if timeout.is_none() && slowest > GATEWAY_WAIT {
        return false;
    }
    for (a, r) in answers.iter_mut().zip(replies) {
        match r {
            Some((d, data)) if d <= limit => a.replied(data),
            Some(_) => a.timed_out(),
            None => {}
        }
    }
    true
}
