//! Waiting for what a running broker does in the background (its audit appends and its
//! change-log poll), by polling rather than sleeping a fixed time.

use std::time::{Duration, Instant};

/// Time a running broker gets to notice an admin change made by another process or handle (it
/// polls its change log every 50 ms in tests).
pub(crate) const PICKUP: Duration = Duration::from_secs(10);

/// Polls `probe` every 20 ms until it yields a value, for at most `limit`.
pub(crate) async fn eventually<T, F, Fut>(limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
