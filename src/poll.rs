//! One way to wait: ask again, with a growing pause, until an answer or a deadline.
//!
//! Every wait of irisctl (readiness, health, Grafana's start, Swarm convergence, probes) is a
//! [`poll_until`]: the check decides when it is done and what a final failure is; the deadline
//! is one instant for the whole wait, kept apart from the pause between tries.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// What one try of a check found.
#[derive(Debug)]
pub enum Poll<T, E> {
    /// Done: stop polling with this value.
    Ready(T),
    /// Not yet; `E` says what was seen, returned if the deadline passes.
    Pending(E),
    /// Will never succeed (a crashed container, a refused request): stop now.
    Failed(E),
}

/// The pause between tries: starts at `first`, doubles after each try, never above `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The same pause after every try.
    pub const fn fixed(pause: Duration) -> Backoff {
        Backoff {
            first: pause,
            max: pause,
        }
    }

    /// A pause that starts at `first` and doubles up to `max`.
    pub const fn doubling(first: Duration, max: Duration) -> Backoff {
        Backoff { first, max }
    }
}

/// Why a wait ended without a value.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended<E> {
    /// The deadline passed; the last thing seen.
    Deadline(E),
    /// The check said it will never succeed.
    Failed(E),
}

impl<E> Ended<E> {
    /// What was seen last, whichever way the wait ended.
    pub fn into_inner(self) -> E {
        match self {
            Ended::Deadline(e) | Ended::Failed(e) => e,
        }
    }
}

/// Run `check` until it is ready or failed, or `deadline` passes (it runs at least once, and
/// once more at the deadline if the pause would overrun it, so a slow start is seen).
pub async fn poll_until<T, E, F, Fut>(
    deadline: Instant,
    backoff: Backoff,
    mut check: F,
) -> Result<T, Ended<E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Poll<T, E>>,
{
    let mut pause = backoff.first;
    loop {
        match check().await {
            Poll::Ready(v) => return Ok(v),
            Poll::Failed(e) => return Err(Ended::Failed(e)),
            Poll::Pending(e) => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(Ended::Deadline(e));
                }
                tokio::time::sleep(pause.min(deadline - now)).await;
                pause = (pause * 2).min(backoff.max);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[tokio::test(start_paused = true)]
    async fn returns_the_first_ready_value() {
        let tries = Cell::new(0);
        let got = poll_until(
            Instant::now() + Duration::from_secs(10),
            Backoff::fixed(Duration::from_millis(100)),
            || {
                tries.set(tries.get() + 1);
                let n = tries.get();
                async move {
                    if n == 3 {
                        Poll::Ready(n)
                    } else {
                        Poll::<_, &str>::Pending("not yet")
                    }
                }
            },
        )
        .await;
        assert_eq!(got, Ok(3));
    }

    #[tokio::test(start_paused = true)]
    async fn stops_at_the_deadline_with_the_last_thing_seen() {
        let start = Instant::now();
        let tries = Cell::new(0u32);
        let got: Result<(), _> = poll_until(
            start + Duration::from_secs(1),
            Backoff::doubling(Duration::from_millis(100), Duration::from_millis(400)),
            || {
                tries.set(tries.get() + 1);
                let n = tries.get();
                async move { Poll::Pending(n) }
            },
        )
        .await;
        // 0, 100, 300, 700, 1000 (the last pause is cut to the deadline): five tries.
        assert_eq!(got, Err(Ended::Deadline(5)));
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_check_stops_at_once() {
        let start = Instant::now();
        let got: Result<(), _> = poll_until(
            start + Duration::from_secs(60),
            Backoff::fixed(Duration::from_secs(1)),
            || async { Poll::Failed("crashed") },
        )
        .await;
        assert_eq!(got, Err(Ended::Failed("crashed")));
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
