//! Limits on open connections: all together (`http.connections.max`) and per client
//! address (`http.connections.perclient`).
//!
//! Past the total, the server stops accepting: new connections wait in the kernel's
//! queue until one closes, so a burst slows down rather than failing. Past a client's
//! share, its next connection is answered 429 (with `Retry-After`) and closed: one
//! client holding connections open, idle or trickling, cannot take every slot from
//! the others.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Connections {
    max: usize,
    total: Arc<Semaphore>,
    per_client: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One admitted connection; its place is free again when this drops.
pub struct Slot {
    _total: OwnedSemaphorePermit,
    client: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Connections {
    pub fn new(max: usize, per_client: usize) -> Connections {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        Connections {
            max,
            total: Arc::new(Semaphore::new(max)),
            per_client: per_client.max(1),
            open: Arc::default(),
        }
    }

    /// Waits until fewer than the total are open; the caller accepts only then.
    pub async fn room(&self) -> OwnedSemaphorePermit {
        loop {
            // The semaphore is never closed; were it, this would still not spin.
            if let Ok(permit) = self.total.clone().acquire_owned().await {
                return permit;
            }
            tokio::task::yield_now().await;
        }
    }

    /// Connections open now (admitted, or holding a place from `room`).
    pub fn open(&self) -> usize {
        self.max - self.total.available_permits()
    }

    /// Admits a connection from `client` in the place `room` gave, unless the client
    /// already has its share open.
    pub fn admit(&self, room: OwnedSemaphorePermit, client: IpAddr) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(client).or_insert(0);
        if *count >= self.per_client {
            return None;
        }
        *count += 1;
        Some(Slot {
            _total: room,
            client,
            open: self.open.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_client_gets_its_share_and_its_places_come_back() {
        let connections = Connections::new(10, 2);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let first = connections
            .admit(connections.room().await, a)
            .expect("first");
        let _second = connections
            .admit(connections.room().await, a)
            .expect("second");
        assert!(connections.admit(connections.room().await, a).is_none());
        assert!(connections.admit(connections.room().await, b).is_some());
        drop(first);
        assert!(connections.admit(connections.room().await, a).is_some());
        assert!(connections.open.lock().unwrap().len() <= 2);
    }

    #[tokio::test]
    async fn past_the_total_the_next_connection_waits() {
        let connections = Arc::new(Connections::new(1, 5));
        let held = connections.admit(connections.room().await, [10, 0, 0, 1].into());
        let waiting = {
            let connections = connections.clone();
            tokio::spawn(async move { connections.room().await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        drop(held);
        assert!(waiting.await.is_ok());
    }
}
