//! One memory budget for the request bodies the server holds, shared by every request.
//!
//! A request takes a buffer from the budget before it reads more of its body, and the
//! budget gets the bytes back when the last reference to them is dropped: after the
//! engine has written them, not when the request hands them on. While the budget is
//! spent, requests wait before reading, so TCP's flow control slows their clients
//! down instead of the server refusing them or growing. Many slow clients then cost
//! time, not memory, and a burst of pushes all get through.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The budget counts in KiB: a semaphore takes at most `u32::MAX` permits at once.
const UNIT: usize = 1024;

#[derive(Clone)]
pub struct BodyBudget {
    permits: Arc<Semaphore>,
    /// The whole budget, in units.
    units: usize,
}

impl BodyBudget {
    /// A budget of `bytes` (at least one unit).
    pub fn new(bytes: usize) -> BodyBudget {
        let units = (bytes / UNIT).clamp(1, Semaphore::MAX_PERMITS);
        BodyBudget {
            permits: Arc::new(Semaphore::new(units)),
            units,
        }
    }

    /// The units a buffer of `capacity` takes: at most a quarter of the budget, so that
    /// no request waits for all of it (behind one that holds a little).
    fn units_for(&self, capacity: usize) -> usize {
        capacity.div_ceil(UNIT).clamp(1, (self.units / 4).max(1))
    }

    /// A buffer that holds up to `capacity` bytes (at most a quarter of the budget),
    /// once the budget has room for it.
    pub async fn buffer(&self, capacity: usize) -> Buffer {
        let units = u32::try_from(self.units_for(capacity)).unwrap_or(u32::MAX);
        // The semaphore is never closed; were it, the buffer would go unaccounted
        // rather than fail the request.
        let permit = self.permits.clone().acquire_many_owned(units).await.ok();
        Buffer::new(units as usize, permit)
    }

    /// A buffer as [`BodyBudget::buffer`] gives, if the budget has room for it now.
    pub fn try_buffer(&self, capacity: usize) -> Option<Buffer> {
        let units = self.units_for(capacity);
        let permit = self
            .permits
            .clone()
            .try_acquire_many_owned(u32::try_from(units).ok()?)
            .ok()?;
        Some(Buffer::new(units, Some(permit)))
    }

    /// Bytes of the budget not taken right now.
    #[cfg(test)]
    pub fn available(&self) -> usize {
        self.permits.available_permits() * UNIT
    }
}

/// Body bytes gathered under the budget; they are its until dropped.
pub struct Buffer {
    bytes: Vec<u8>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Buffer {
    /// Room for `units` of the budget, which `permit` holds.
    fn new(units: usize, permit: Option<OwnedSemaphorePermit>) -> Buffer {
        Buffer {
            bytes: Vec::with_capacity(units * UNIT),
            _permit: permit,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Room left: the buffer never grows past what the budget gave it.
    pub fn room(&self) -> usize {
        self.bytes.capacity() - self.bytes.len()
    }

    /// Appends as much of `data` as there is room for; returns how much that was.
    pub fn fill(&mut self, data: &[u8]) -> usize {
        let taken = data.len().min(self.room());
        self.bytes.extend_from_slice(&data[..taken]);
        taken
    }

    /// The bytes, sharable without copying; the budget gets them back when the last
    /// clone is dropped.
    pub fn freeze(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for Buffer {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bytes_return_to_the_budget_when_their_last_clone_drops() {
        let budget = BodyBudget::new(16 * UNIT);
        let mut buffer = budget.buffer(3 * UNIT).await;
        assert_eq!(budget.available(), 13 * UNIT);
        assert_eq!(buffer.fill(&[7; 5000]), 3 * UNIT);
        assert_eq!(buffer.room(), 0);
        let bytes = buffer.freeze();
        let clone = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(
            budget.available(),
            13 * UNIT,
            "a clone still holds the bytes"
        );
        assert_eq!(&clone[..], &[7; 10]);
        drop(clone);
        assert_eq!(budget.available(), 16 * UNIT);
    }

    #[tokio::test]
    async fn a_spent_budget_makes_the_next_request_wait() {
        let budget = BodyBudget::new(8 * UNIT);
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(budget.buffer(2 * UNIT).await);
        }
        let waiting = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.buffer(UNIT).await.room() })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "got memory the budget did not have");
        held.pop();
        assert_eq!(waiting.await.expect("task"), UNIT);
    }

    #[tokio::test]
    async fn try_buffer_takes_only_what_is_there() {
        let budget = BodyBudget::new(4 * UNIT);
        let held: Vec<Buffer> = (0..4).filter_map(|_| budget.try_buffer(UNIT)).collect();
        assert_eq!(held.len(), 4);
        assert!(budget.try_buffer(1).is_none());
        drop(held);
        assert!(budget.try_buffer(1).is_some());
    }

    #[tokio::test]
    async fn no_buffer_takes_more_than_a_quarter_of_the_budget() {
        let budget = BodyBudget::new(8 * UNIT);
        let buffer = budget.buffer(10 * UNIT).await;
        assert_eq!(buffer.room(), 2 * UNIT);
        assert_eq!(budget.available(), 6 * UNIT);
    }
}
