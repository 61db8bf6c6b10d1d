//! Request coalescing: one call to the inner service per key at a time, per instance.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

/// In-flight fills by key.
#[derive(Debug, Default)]
pub(crate) struct Flights {
    inflight: Mutex<HashMap<Bytes, watch::Receiver<()>>>,
}

/// What a request gets when it asks to fill a key.
#[derive(Debug)]
pub(crate) enum Join {
    /// This request fills the key; waiters are released when the guard drops.
    Leader(FlightGuard),
    /// Another request is filling the key: wait for it.
    Waiter(watch::Receiver<()>),
}

/// Held by the request filling a key; dropping it (after storing, or on error or
/// cancellation) releases the waiters.
#[derive(Debug)]
pub(crate) struct FlightGuard {
    flights: Arc<Flights>,
    key: Bytes,
    _done: watch::Sender<()>,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        self.flights
            .inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
        // `_done` drops after this, which wakes every receiver.
    }
}

impl Flights {
    /// Becomes the leader for `key`, or gets a receiver for the current leader.
    pub(crate) fn join(self: &Arc<Self>, key: &Bytes) -> Join {
        let mut map = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(rx) = map.get(key) {
            return Join::Waiter(rx.clone());
        }
        let (tx, rx) = watch::channel(());
        map.insert(key.clone(), rx);
        Join::Leader(FlightGuard {
            flights: Arc::clone(self),
            key: key.clone(),
            _done: tx,
        })
    }

    /// Whether a fill for `key` is in progress.
    #[cfg(test)]
    pub(crate) fn is_inflight(&self, key: &Bytes) -> bool {
        self.inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(key)
    }
}

/// Waits until the leader is done or `max_wait` has passed; true if the leader finished.
pub(crate) async fn wait(mut rx: watch::Receiver<()>, max_wait: Duration) -> bool {
    // The sender never sends; `changed` returns (with an error) when it is dropped.
    tokio::time::timeout(max_wait, rx.changed()).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn leader_then_waiters_released_on_drop() {
        let flights = Arc::new(Flights::default());
        let key = Bytes::from_static(b"k");
        let Join::Leader(guard) = flights.join(&key) else {
            panic!("first is leader");
        };
        let Join::Waiter(rx) = flights.join(&key) else {
            panic!("second waits");
        };
        assert!(flights.is_inflight(&key));
        let waiter = tokio::spawn(wait(rx, Duration::from_secs(5)));
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(guard);
        assert!(waiter.await.unwrap(), "released by the leader");
        assert!(!flights.is_inflight(&key));
        assert!(matches!(flights.join(&key), Join::Leader(_)));
    }

    #[tokio::test]
    async fn waiters_give_up_after_max_wait() {
        let flights = Arc::new(Flights::default());
        let key = Bytes::from_static(b"k");
        let _guard = flights.join(&key);
        let Join::Waiter(rx) = flights.join(&key) else {
            panic!("second waits");
        };
        assert!(!wait(rx, Duration::from_millis(30)).await);
    }
}
