//! The byte budget: how many webhook body bytes all connections together may hold in memory.
//!
//! The body cap bounds one request; this bounds their sum, so many clients sending large bodies at
//! once cannot grow the process past its memory limit. A request that would go over the budget is
//! refused (503, retry later) instead of waiting: waiting would hold its connection and its
//! partial body, which is what the budget is there to stop.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes shared by every request's body; one permit per byte.
#[derive(Debug, Clone)]
pub(super) struct ByteBudget {
    /// Free bytes.
    bytes: Arc<Semaphore>,
}

/// Bytes a request holds, given back when it is dropped (its body with it).
#[derive(Debug, Default)]
pub(super) struct Reservation {
    /// One permit per byte reserved so far; `None` until the first reservation.
    permits: Option<OwnedSemaphorePermit>,
}

/// The budget cannot take more bytes now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("webhook body budget exhausted")]
pub(super) struct Exhausted;

// === impl ByteBudget ===

impl ByteBudget {
    /// A budget of `total` bytes (capped at what a semaphore can count).
    pub(super) fn new(total: usize) -> Self {
        ByteBudget {
            bytes: Arc::new(Semaphore::new(total.min(Semaphore::MAX_PERMITS))),
        }
    }

    /// Bytes free now.
    #[cfg(test)]
    fn available(&self) -> usize {
        self.bytes.available_permits()
    }

    /// Adds `len` bytes to `reservation`, or fails at once when the budget lacks them.
    ///
    /// # Errors
    /// [`Exhausted`] when fewer than `len` bytes are free.
    pub(super) fn reserve(
        &self,
        reservation: &mut Reservation,
        len: usize,
    ) -> Result<(), Exhausted> {
        if len == 0 {
            return Ok(());
        }
        let len = u32::try_from(len).map_err(|_| Exhausted)?;
        let permit = self
            .bytes
            .clone()
            .try_acquire_many_owned(len)
            .map_err(|_| Exhausted)?;
        match &mut reservation.permits {
            Some(held) => held.merge(permit),
            None => reservation.permits = Some(permit),
        }
        Ok(())
    }
}

// === impl Reservation ===

impl Reservation {
    /// Bytes held.
    pub(super) fn len(&self) -> usize {
        self.permits
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_add_up_and_are_given_back_when_dropped() {
        let budget = ByteBudget::new(100);
        let mut first = Reservation::default();
        budget.reserve(&mut first, 60).unwrap();
        budget.reserve(&mut first, 30).unwrap();
        assert_eq!(first.len(), 90);
        assert_eq!(budget.available(), 10);

        let mut second = Reservation::default();
        assert_eq!(budget.reserve(&mut second, 11), Err(Exhausted));
        assert_eq!(second.len(), 0, "a refused reservation holds nothing");
        budget.reserve(&mut second, 10).unwrap();
        assert_eq!(budget.available(), 0);

        drop(first);
        assert_eq!(budget.available(), 90);
        drop(second);
        assert_eq!(budget.available(), 100);
    }

    #[test]
    fn a_reservation_larger_than_a_semaphore_can_count_is_refused_not_wrapped() {
        let budget = ByteBudget::new(usize::MAX);
        let mut reservation = Reservation::default();
        assert_eq!(
            budget.reserve(&mut reservation, u32::MAX as usize + 1),
            Err(Exhausted)
        );
        budget.reserve(&mut reservation, 0).unwrap();
        assert_eq!(reservation.len(), 0);
    }
}
