//! The server-wide budget for decoded pixels. Before an image is decoded for ingest or for a search by
//! image, its decode takes `width × height ×` [`BYTES_PER_PIXEL`] (read from the header) from the budget,
//! and gives it back once the decoded pixels are gone — what those paths keep is the model's input
//! (224² values) and the colours, not the pixels. So concurrent requests cannot together decode more than
//! the budget, however few bytes they send (a 200-byte GIF may declare a 36-megapixel canvas). When the
//! budget is spent a decode waits up to [`WAIT`], then the request is refused with 429 `overloaded` and
//! `Retry-After`; an image needing more than the whole budget is refused at once (`too_many_pixels`).

use std::sync::Arc;
use std::time::Duration;

use lens_core::api::ErrorCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::errors::Coded;

/// What a decode holds per pixel: the RGB8 result, and the decoder's own RGBA frame or canvas beside it.
pub const BYTES_PER_PIXEL: u64 = 8;
/// How long a decode waits for its share of a spent budget.
pub const WAIT: Duration = Duration::from_secs(10);
/// The budget is counted in units of this many bytes (a semaphore's permits).
const UNIT: u64 = 64 << 10;

/// Bytes of decoded pixels the whole server may hold at once.
pub struct PixelBudget {
    permits: Arc<Semaphore>,
    units: u32,
}

/// One decode's share of the budget, given back when dropped.
pub struct PixelShare {
    _permit: OwnedSemaphorePermit,
}

#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error(
        "a {width}x{height} image needs {needed} bytes to decode, over this server's whole decoding budget of \
         {budget} bytes"
    )]
    TooBig { width: u32, height: u32, needed: u64, budget: u64 },
    #[error("the server is decoding as many images as its memory budget allows: retry shortly")]
    Busy,
}

impl Coded for BudgetError {
    fn code(&self) -> ErrorCode {
        match self {
            BudgetError::TooBig { .. } => ErrorCode::TooManyPixels,
            BudgetError::Busy => ErrorCode::Overloaded,
        }
    }
}

impl PixelBudget {
    pub fn new(bytes: u64) -> Self {
        // A semaphore holds at most usize::MAX >> 3 permits; u32 is what acquire_many takes.
        let units = (bytes / UNIT).clamp(1, u64::from(u32::MAX >> 3)) as u32;
        Self { permits: Arc::new(Semaphore::new(units as usize)), units }
    }

    /// The whole budget, bytes.
    pub fn bytes(&self) -> u64 {
        u64::from(self.units) * UNIT
    }

    /// Bytes not taken now.
    pub fn available(&self) -> u64 {
        self.permits.available_permits() as u64 * UNIT
    }

    /// Takes the share a `width` × `height` decode needs, waiting up to [`WAIT`] for it.
    pub async fn take(&self, width: u32, height: u32) -> Result<PixelShare, BudgetError> {
        let needed = u64::from(width) * u64::from(height) * BYTES_PER_PIXEL;
        let units = needed.div_ceil(UNIT).max(1);
        if units > u64::from(self.units) {
            return Err(BudgetError::TooBig { width, height, needed, budget: self.bytes() });
        }
        match tokio::time::timeout(WAIT, Arc::clone(&self.permits).acquire_many_owned(units as u32)).await {
            Ok(Ok(permit)) => Ok(PixelShare { _permit: permit }),
            _ => {
                metrics::counter!("lens_decode_budget_refusals_total").increment(1);
                Err(BudgetError::Busy)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shares_are_taken_given_back_and_refused_past_the_budget() {
        let budget = PixelBudget::new(100 * UNIT); // 6.25 MiB
        let too_big = budget.take(1024, 1024).await; // 8 MiB
        assert!(matches!(too_big, Err(BudgetError::TooBig { .. })));
        assert_eq!(too_big.err().unwrap().code(), ErrorCode::TooManyPixels);
        let half = budget.take(512, 800).await.unwrap(); // 3.125 MiB: 50 units
        assert_eq!(budget.available(), 50 * UNIT);
        drop(half);
        assert_eq!(budget.available(), budget.bytes());
        assert_eq!(BudgetError::Busy.code(), ErrorCode::Overloaded);
    }
}
