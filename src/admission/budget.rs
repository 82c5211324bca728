//! How much memory the reviews being read and decided may take at once.
//!
//! Anyone who reaches the webhook can send reviews built to be as costly as the limits allow;
//! counting requests alone bounds nothing, since one 3 MiB review of empty objects becomes
//! hundreds of megabytes once parsed into typed objects. So each review is charged, before it
//! is read, the bytes it declares, and before it is parsed, a bound of what it can become: its
//! bytes again (the strings it holds) and [`PER_VALUE`] for each JSON value. Two pools, taken
//! in that order, so that a review holding bytes never waits for one that waits for bytes.
//!
//! What the rules build and drop while deciding (compiled regular expressions, parsed
//! templates: each bounded by the rules) is not charged: decisions run without awaiting, so
//! at most one per runtime worker is under way at once.

use tokio::sync::{Semaphore, SemaphorePermit};

/// The most one JSON value of a review can become once read into the API types and judged: the
/// largest element a typed list holds (with the list's growth room), a key of a typed map, the
/// problems the rules find in it. The test that reads every list and map field of every kind,
/// filled with the smallest elements that parse, finds at most about 320 bytes.
pub const PER_VALUE: usize = 384;

/// Bodies being read or decided at once (five of the largest).
pub const BODY_BYTES: usize = 16 << 20;
/// What their parsed values may take at once; one review may take all of it, and a review
/// whose values would need more is refused (no real manifest comes near).
pub const PARSED_BYTES: usize = 48 << 20;

/// Permits count kibibytes: a semaphore holds at most `usize::MAX >> 3` permits, and a byte
/// each would be needlessly fine.
const UNIT: usize = 1024;

pub struct Budget {
    body: Semaphore,
    parsed: Semaphore,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            body: Semaphore::new(BODY_BYTES / UNIT),
            parsed: Semaphore::new(PARSED_BYTES / UNIT),
        }
    }
}

/// Memory a review holds while it is read and decided.
pub struct Held<'a> {
    _body: SemaphorePermit<'a>,
    _parsed: Option<SemaphorePermit<'a>>,
}

/// A review whose parsed values could take more than the whole pool.
#[derive(Debug, PartialEq, Eq)]
pub struct TooManyValues(pub usize);

impl Budget {
    /// Waits until a body of `len` bytes may be read.
    pub async fn body(&self, len: usize) -> Held<'_> {
        let permits = units(len.min(BODY_BYTES));
        let permit = self
            .body
            .acquire_many(permits)
            .await
            .expect("the pool is never closed");
        Held {
            _body: permit,
            _parsed: None,
        }
    }

    /// Waits until `body` may be parsed (its own bytes are held already).
    pub async fn parse<'a>(
        &'a self,
        held: &mut Held<'a>,
        body: &[u8],
    ) -> Result<(), TooManyValues> {
        let n = values(body);
        let bytes = parsed_bound(body.len(), n);
        if bytes > PARSED_BYTES {
            return Err(TooManyValues(n));
        }
        let permit = self
            .parsed
            .acquire_many(units(bytes))
            .await
            .expect("the pool is never closed");
        held._parsed = Some(permit);
        Ok(())
    }
}

/// What a body of `len` bytes holding `values` JSON values can take once parsed.
pub fn parsed_bound(len: usize, values: usize) -> usize {
    values.saturating_mul(PER_VALUE).saturating_add(len)
}

/// The most JSON values a review can hold and still be read: its values alone take the pool.
pub const MAX_VALUES: usize = PARSED_BYTES / PER_VALUE;

fn units(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX)
}

/// The most JSON values `body` can hold.
pub fn values(body: &[u8]) -> usize {
    crate::json_values::values(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reviews_wait_for_memory_and_the_largest_are_refused() {
        let b = Budget::default();
        let small = br#"{"a":[1,2]}"#;
        let mut held = b.body(small.len()).await;
        b.parse(&mut held, small).await.unwrap();
        // A body as large as the pool waits until the first is done.
        let whole = b.body(BODY_BYTES);
        tokio::pin!(whole);
        assert!(futures::poll!(whole.as_mut()).is_pending());
        drop(held);
        let mut held = whole.await;
        let commas = vec![b','; MAX_VALUES];
        assert_eq!(
            b.parse(&mut held, &commas).await,
            Err(TooManyValues(MAX_VALUES + 1))
        );
    }
}
