//! Admission of connections before they authenticate.
//!
//! A connection from the LAN is *unauthenticated* until it has shown credentials (an MQTT
//! CONNECT with a register's password, an HTTP request with a valid bearer token). Such
//! connections must never take capacity from authenticated ones, so each listener keeps them in a
//! pool of their own ([`PreAuthPool`]), apart from its pool of authenticated connections:
//!
//! - every new connection is admitted (the listener never stops accepting because of them);
//! - a source (IP address) holds at most [`PreAuthLimits::per_source`] unauthenticated
//!   connections: its next one closes its own oldest;
//! - the pool holds at most [`PreAuthLimits::total`]: when full, the oldest connection of the
//!   source holding most of them is closed;
//! - an unauthenticated connection lives only as long as its listener's handshake deadline.
//!
//! So an attacker holding idle sockets only ever closes its own, or, spread over many addresses,
//! makes each idle socket live a shorter time, while a register's connection, which authenticates
//! within milliseconds of being accepted, gets through. Once authenticated, a connection leaves
//! the pool ([`PreAuth::authenticated`]) and takes a slot of the listener's own bounded pool.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// How many unauthenticated connections a listener keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreAuthLimits {
    /// In all.
    pub total: usize,
    /// From one IP address.
    pub per_source: usize,
}

impl PreAuthLimits {
    /// What fdmd's listeners use: a restaurant's registers connect from their own addresses and
    /// authenticate within milliseconds; these bounds are far above what they need.
    pub const DEFAULT: PreAuthLimits = PreAuthLimits {
        total: 256,
        per_source: 32,
    };
}

/// The unauthenticated connections of one listener.
#[derive(Debug)]
pub struct PreAuthPool {
    limits: PreAuthLimits,
    name: &'static str,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Next connection number; numbers grow, so the smallest is the oldest.
    next: u64,
    waiting: BTreeMap<u64, Waiting>,
    per_source: HashMap<IpAddr, usize>,
    evicted: u64,
}

#[derive(Debug)]
struct Waiting {
    source: IpAddr,
    close: CancellationToken,
}

/// One unauthenticated connection's place in the pool; leaving it (drop, or
/// [`PreAuth::authenticated`]) frees the place.
#[derive(Debug)]
pub struct PreAuth {
    pool: Arc<PreAuthPool>,
    number: u64,
    close: CancellationToken,
}

impl PreAuthPool {
    /// An empty pool; `name` names the listener in logs.
    pub fn new(name: &'static str, limits: PreAuthLimits) -> Arc<PreAuthPool> {
        Arc::new(PreAuthPool {
            limits: PreAuthLimits {
                total: limits.total.max(1),
                per_source: limits.per_source.max(1),
            },
            name,
            state: Mutex::new(State::default()),
        })
    }

    /// Admits a new connection from `source`, closing an older unauthenticated one when a bound
    /// is reached (see the module documentation).
    pub fn admit(self: &Arc<Self>, source: IpAddr) -> PreAuth {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.per_source.get(&source).copied().unwrap_or(0) >= self.limits.per_source {
            self.evict_oldest_of(&mut state, source);
        } else if state.waiting.len() >= self.limits.total {
            if let Some(heaviest) = state
                .per_source
                .iter()
                .max_by_key(|(_, n)| **n)
                .map(|(ip, _)| *ip)
            {
                self.evict_oldest_of(&mut state, heaviest);
            }
        }
        let number = state.next;
        state.next += 1;
        let close = CancellationToken::new();
        state.waiting.insert(
            number,
            Waiting {
                source,
                close: close.clone(),
            },
        );
        *state.per_source.entry(source).or_insert(0) += 1;
        PreAuth {
            pool: self.clone(),
            number,
            close,
        }
    }

    /// Unauthenticated connections now.
    pub fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .waiting
            .len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Unauthenticated connections closed to make room so far.
    pub fn evicted(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .evicted
    }

    fn evict_oldest_of(&self, state: &mut State, source: IpAddr) {
        let Some(number) = state
            .waiting
            .iter()
            .find(|(_, w)| w.source == source)
            .map(|(n, _)| *n)
        else {
            return;
        };
        if let Some(w) = remove(state, number) {
            w.close.cancel();
            state.evicted += 1;
            tracing::debug!(listener = self.name, %source, "unauthenticated connection closed to make room");
        }
    }

    fn leave(&self, number: u64) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        remove(&mut state, number);
    }
}

fn remove(state: &mut State, number: u64) -> Option<Waiting> {
    let w = state.waiting.remove(&number)?;
    if let Some(n) = state.per_source.get_mut(&w.source) {
        *n -= 1;
        if *n == 0 {
            state.per_source.remove(&w.source);
        }
    }
    Some(w)
}

impl PreAuth {
    /// Completes when the pool closes this connection to make room for a newer one.
    pub async fn evicted(&self) {
        self.close.cancelled().await;
    }

    /// A token cancelled when the pool closes this connection (for a task that outlives this
    /// place's borrow).
    pub fn eviction(&self) -> CancellationToken {
        self.close.clone()
    }

    /// The connection authenticated: it leaves the pool and is never evicted.
    pub fn authenticated(self) {
        drop(self);
    }
}

impl Drop for PreAuth {
    fn drop(&mut self) {
        self.pool.leave(self.number);
    }
}

/// One connection's admission on a listener whose requests authenticate one by one (HTTP, the
/// GKS 2.0 emulator): unauthenticated, in the listener's [`PreAuthPool`], until a request shows
/// valid credentials, then holding one of the listener's authenticated slots for the rest of its
/// life.
#[derive(Debug)]
pub struct Admission {
    pre_auth: Mutex<Option<PreAuth>>,
    eviction: CancellationToken,
    slots: Arc<Semaphore>,
    slot: Mutex<Option<OwnedSemaphorePermit>>,
}

impl Admission {
    /// A new connection: `pre_auth` is its place in the pool, `slots` the listener's
    /// authenticated slots.
    pub fn new(pre_auth: PreAuth, slots: Arc<Semaphore>) -> Arc<Admission> {
        Arc::new(Admission {
            eviction: pre_auth.eviction(),
            pre_auth: Mutex::new(Some(pre_auth)),
            slots,
            slot: Mutex::new(None),
        })
    }

    /// Whether a request of this connection has authenticated.
    pub fn is_authenticated(&self) -> bool {
        self.slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// A request showed valid credentials: the connection leaves the pool for an
    /// authenticated slot. `false` when none is free (the caller answers "busy" and closes).
    pub fn authenticate(&self) -> bool {
        if self.is_authenticated() {
            return true;
        }
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            return false;
        };
        *self.slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(slot);
        if let Some(pre_auth) = self
            .pre_auth
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            pre_auth.authenticated();
        }
        true
    }

    /// Completes when the connection must close for not having authenticated: the pool closed
    /// it to make room, or `lifetime` passed, and no request has authenticated by then. Never
    /// completes for an authenticated connection.
    pub async fn unauthenticated_end(&self, lifetime: Duration) {
        tokio::select! {
            () = self.eviction.cancelled() => {}
            () = tokio::time::sleep(lifetime) => {}
        }
        if self.is_authenticated() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn a_source_over_its_bound_closes_its_own_oldest() {
        let pool = PreAuthPool::new(
            "test",
            PreAuthLimits {
                total: 100,
                per_source: 3,
            },
        );
        let other = pool.admit(ip(2));
        let first: Vec<PreAuth> = (0..3).map(|_| pool.admit(ip(1))).collect();
        let newest = pool.admit(ip(1));
        assert!(first[0].close.is_cancelled());
        assert!(!first[1].close.is_cancelled() && !first[2].close.is_cancelled());
        assert!(!other.close.is_cancelled());
        assert!(!newest.close.is_cancelled());
        assert_eq!(pool.len(), 4);
        assert_eq!(pool.evicted(), 1);
    }

    #[test]
    fn a_full_pool_closes_the_oldest_of_the_heaviest_source() {
        let pool = PreAuthPool::new(
            "test",
            PreAuthLimits {
                total: 4,
                per_source: 10,
            },
        );
        let quiet = pool.admit(ip(9));
        let heavy: Vec<PreAuth> = (0..3).map(|_| pool.admit(ip(1))).collect();
        let register = pool.admit(ip(5));
        assert!(
            !quiet.close.is_cancelled(),
            "the oldest overall is not the heaviest source's"
        );
        assert!(heavy[0].close.is_cancelled());
        assert!(!register.close.is_cancelled());
        assert_eq!(pool.len(), 4);
    }

    #[test]
    fn leaving_frees_the_place() {
        let pool = PreAuthPool::new(
            "test",
            PreAuthLimits {
                total: 1,
                per_source: 1,
            },
        );
        let a = pool.admit(ip(1));
        a.authenticated();
        assert!(pool.is_empty());
        let b = pool.admit(ip(1));
        assert!(!b.close.is_cancelled());
        drop(b);
        assert!(pool.is_empty());
        assert_eq!(pool.evicted(), 0);
    }
}
