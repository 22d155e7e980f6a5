//! Turns at running guest code: one per async worker thread, taken by every WSGI
//! call for as long as it computes and given up while it waits.
//!
//! A call holds an instance for its whole life, waits included (a request body, an
//! outbound connection), so an app has more instances than the server has worker
//! threads. Without turns, any of the calls those instances allow runs whenever the
//! executor picks it, interleaved with the server's network work. With them, at
//! most one call per worker thread computes at a time; a call gives its turn up
//! whenever it waits for something, and otherwise keeps it to the end.
//!
//! Keeping it matters at the fairness yield: each epoch tick a busy guest yields so
//! the executor can run other tasks. A call that keeps its turn through that yield
//! lets the worker read and answer its connections meanwhile, and those requests'
//! calls then queue for turns and run one after another. Measured with
//! bench/run's setup (server on one CPU, wrk -c64 on the other, 6 s runs):
//! Flask hello 7,952-8,247 req/s without turns, 8,962-9,419 with them; demo_app
//! 17,642-17,952 against 19,576-19,756; the Python hello and the 1 MiB stream
//! unchanged. Giving the turn up at every yield measured as without turns
//! (8,128-8,170 for Flask), and so did dropping the yield of short calls instead.
//!
//! A call keeps its turn through [`YIELDS_KEPT`] fairness yields in a row, then
//! gives it up at the next: a short call that happens to cross a tick finishes
//! first, while a busy guest still lets the others run every few ticks.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// Fairness yields a call keeps its turn through before giving it up at the next
/// one. One: a call crossing one tick keeps it (that is where the gain above comes
/// from), and no other call waits more than two ticks (20 ms) for a busy guest.
const YIELDS_KEPT: u32 = 1;

/// The server's turns, shared by all its apps.
pub struct Turns {
    permits: Arc<Semaphore>,
}

impl Turns {
    /// One turn per worker thread of the current tokio runtime (one outside a
    /// runtime, where calls are made one at a time anyway).
    pub fn for_current_runtime() -> Arc<Turns> {
        let workers = tokio::runtime::Handle::try_current().map_or(1, |handle| handle.metrics().num_workers());
        Turns::new(workers.max(1))
    }

    pub fn new(count: usize) -> Arc<Turns> {
        Arc::new(Turns {
            permits: Arc::new(Semaphore::new(count)),
        })
    }

    /// `work`, computing only while it holds a turn.
    pub fn take<F: Future>(&self, work: F) -> TakingTurns<F> {
        TakingTurns {
            work,
            turns: self.permits.clone(),
            waiting: None,
            turn: None,
            yields_kept: 0,
        }
    }
}

thread_local! {
    /// Set when the guest being polled on this thread makes a fairness yield, so
    /// the call's [`TakingTurns`] can tell that wait from waiting for I/O.
    static FAIRNESS_YIELD: Cell<bool> = const { Cell::new(false) };
}

/// Called by the epoch callback when it makes a running guest yield.
pub fn mark_fairness_yield() {
    FAIRNESS_YIELD.with(|yielded| yielded.set(true));
}

/// A wait for a turn when none was free.
type WaitForTurn = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

pin_project_lite::pin_project! {
    /// The future [`Turns::take`] returns.
    pub struct TakingTurns<F> {
        #[pin]
        work: F,
        turns: Arc<Semaphore>,
        // Made only when no turn was free: a free turn is taken without allocating.
        waiting: Option<WaitForTurn>,
        turn: Option<OwnedSemaphorePermit>,
        yields_kept: u32,
    }
}

/// Takes a turn into `turn` if it holds none: a free one at once, else by waiting.
fn poll_turn(
    turns: &Arc<Semaphore>,
    waiting: &mut Option<WaitForTurn>,
    turn: &mut Option<OwnedSemaphorePermit>,
    cx: &mut Context<'_>,
) -> Poll<()> {
    if turn.is_some() {
        return Poll::Ready(());
    }
    let pending = match waiting {
        Some(pending) => pending,
        None => match turns.clone().try_acquire_owned() {
            Ok(free) => {
                *turn = Some(free);
                return Poll::Ready(());
            }
            Err(TryAcquireError::NoPermits) => waiting.insert(Box::pin(turns.clone().acquire_owned())),
            // The semaphore is never closed; were it, calls would run without turns.
            Err(TryAcquireError::Closed) => return Poll::Ready(()),
        },
    };
    let acquired = std::task::ready!(pending.as_mut().poll(cx));
    *waiting = None;
    *turn = acquired.ok();
    Poll::Ready(())
}

impl<F: Future> Future for TakingTurns<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        std::task::ready!(poll_turn(this.turns, this.waiting, this.turn, cx));
        // Cleared first: a guest polled on this thread outside any call's turns (a
        // spare instance being built) may have left it set.
        FAIRNESS_YIELD.with(|yielded| yielded.set(false));
        let polled = this.work.poll(cx);
        if polled.is_pending() {
            let fairness_yield = FAIRNESS_YIELD.with(|yielded| yielded.replace(false));
            if fairness_yield && *this.yields_kept < YIELDS_KEPT {
                *this.yields_kept += 1;
            } else {
                *this.turn = None;
                *this.yields_kept = 0;
            }
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A future that is pending `waits` times, each time as a fairness yield or
    /// not, then ready.
    struct Waits {
        left: Vec<bool>,
    }

    impl Future for Waits {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            match self.left.pop() {
                Some(fairness) => {
                    if fairness {
                        mark_fairness_yield();
                    }
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                None => Poll::Ready(()),
            }
        }
    }

    fn poll_once<F: Future>(future: &mut Pin<Box<F>>) -> Poll<F::Output> {
        let waker = std::task::Waker::noop();
        future.as_mut().poll(&mut Context::from_waker(waker))
    }

    /// Free turns after each poll of a call that waits as `waits` says (in order).
    fn free_turns_after_each_wait(waits: &[bool]) -> Vec<usize> {
        let turns = Turns::new(1);
        let mut left = waits.to_vec();
        left.reverse();
        let mut call = Box::pin(turns.take(Waits { left }));
        let mut free = Vec::new();
        for _ in waits {
            assert!(poll_once(&mut call).is_pending());
            free.push(turns.permits.available_permits());
        }
        assert!(poll_once(&mut call).is_ready());
        drop(call);
        assert_eq!(
            turns.permits.available_permits(),
            1,
            "a finished call gives its turn back"
        );
        free
    }

    #[test]
    fn a_call_gives_its_turn_up_whenever_it_waits_for_io() {
        assert_eq!(free_turns_after_each_wait(&[false, false]), [1, 1]);
    }

    #[test]
    fn a_call_keeps_its_turn_through_one_fairness_yield_and_gives_it_up_at_the_next() {
        assert_eq!(free_turns_after_each_wait(&[true, true, true, true]), [0, 1, 0, 1]);
        assert_eq!(free_turns_after_each_wait(&[true, false, true]), [0, 1, 0]);
    }

    #[test]
    fn a_call_waits_for_a_turn_another_call_holds() {
        let turns = Turns::new(1);
        let mut first = Box::pin(turns.take(Waits { left: vec![true] }));
        assert!(poll_once(&mut first).is_pending(), "keeps its turn through the yield");
        let mut second = Box::pin(turns.take(Waits { left: vec![] }));
        assert!(poll_once(&mut second).is_pending(), "no turn free");
        assert!(poll_once(&mut first).is_ready());
        drop(first);
        assert!(poll_once(&mut second).is_ready());
    }
}
