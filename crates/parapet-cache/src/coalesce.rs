//! Request coalescing: one call to the inner service per key at a time, per instance; and
//! hit-for-pass: keys whose last response could not be stored are not coalesced for a while.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

/// In-flight fills by key.
#[derive(Debug, Default)]
pub(crate) struct Flights {
    inflight: Mutex<HashMap<Bytes, watch::Receiver<()>>>,
    /// Flights ended so far (any key): a request that read it before its lookup and finds it
    /// unchanged when it becomes a leader knows no fill ended in between, so its lookup is
    /// still current (see [`Flights::ended_since`]).
    ended: AtomicU64,
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
        // After the fill's store: whoever reads the old count looked the key up before the
        // fill ended, and whoever reads the new one looks it up after the store.
        self.flights.ended.fetch_add(1, Ordering::SeqCst);
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

    /// The number of flights ended so far; read before a lookup, then given to
    /// [`ended_since`](Self::ended_since).
    pub(crate) fn ended(&self) -> u64 {
        self.ended.load(Ordering::SeqCst)
    }

    /// Whether a flight (of any key) ended since [`ended`](Self::ended) returned `before`:
    /// only then may a fill have stored something that a lookup made after `before` missed.
    pub(crate) fn ended_since(&self, before: u64) -> bool {
        self.ended.load(Ordering::SeqCst) != before
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

/// Hit-for-pass: keys whose last response could not be stored for a reason of the response
/// itself (`no-store`, `private`, a refused `Set-Cookie`, an uncacheable status, too large...),
/// for a short time. Requests for them go upstream at once, side by side, instead of queueing
/// behind one leader whose response they cannot use. A stored response for the key ends it.
/// Bounded in entries; `None` when turned off.
#[derive(Debug)]
pub(crate) struct Passes {
    keys: Option<moka::future::Cache<Bytes, ()>>,
}

/// The most keys passing at once (an entry is a primary key, about 100 bytes).
const MAX_PASSES: u64 = 100_000;

impl Passes {
    /// Passes that last `ttl` (zero: no hit-for-pass).
    pub(crate) fn new(ttl: Duration) -> Self {
        let keys = (!ttl.is_zero()).then(|| {
            moka::future::Cache::builder()
                .max_capacity(MAX_PASSES)
                .time_to_live(ttl)
                .build()
        });
        Self { keys }
    }

    /// Whether requests for `key` pass now.
    pub(crate) fn passes(&self, key: &Bytes) -> bool {
        self.keys
            .as_ref()
            .is_some_and(|keys| keys.contains_key(key))
    }

    /// `key`'s response could not be stored: requests for it pass until the time is over.
    pub(crate) async fn start(&self, key: &Bytes) {
        if let Some(keys) = &self.keys {
            keys.insert(key.clone(), ()).await;
        }
    }

    /// A response for `key` was stored: requests for it are looked up and coalesced again.
    pub(crate) async fn end(&self, key: &Bytes) {
        if let Some(keys) = &self.keys
            && keys.contains_key(key)
        {
            keys.invalidate(key).await;
        }
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

    #[test]
    fn a_flight_that_ends_is_counted() {
        let flights = Arc::new(Flights::default());
        let before = flights.ended();
        let Join::Leader(guard) = flights.join(&Bytes::from_static(b"k")) else {
            panic!("first is leader");
        };
        assert!(!flights.ended_since(before), "still in flight");
        drop(guard);
        assert!(flights.ended_since(before));
        assert!(!flights.ended_since(flights.ended()));
    }

    #[tokio::test]
    async fn passes_start_end_and_expire() {
        let passes = Passes::new(Duration::from_millis(200));
        let (a, b) = (Bytes::from_static(b"a"), Bytes::from_static(b"b"));
        assert!(!passes.passes(&a));
        passes.start(&a).await;
        assert!(passes.passes(&a));
        assert!(!passes.passes(&b), "per key");
        passes.end(&a).await;
        assert!(!passes.passes(&a), "ended by a stored response");
        passes.start(&b).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(!passes.passes(&b), "expired");
    }

    #[tokio::test]
    async fn zero_turns_passes_off() {
        let passes = Passes::new(Duration::ZERO);
        let key = Bytes::from_static(b"a");
        passes.start(&key).await;
        assert!(!passes.passes(&key));
    }
}
