//! A coarse timer for the edge's per-request timeouts (hyper's for the
//! request head, and the wait for a handler's or an instance's answer):
//! each fires within [`RESOLUTION`] after its deadline.
//!
//! A tokio timer per request (armed, then cancelled by the answer nearly
//! every time) was a visible share of a request's CPU. Here arming is a
//! slot in a table and a cancel frees it; one thread looks at the table
//! every [`RESOLUTION`] and wakes whoever is due, and sleeps (parked) while
//! nothing is armed. Nothing here is precise: it is for timeouts of seconds.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How late a deadline may be noticed.
pub const RESOLUTION: Duration = Duration::from_millis(50);

#[derive(Default)]
struct Table {
    /// (deadline, who to wake) by slot; a slot is freed only by its owner.
    slots: Vec<Option<(Instant, Option<Waker>)>>,
    free: Vec<usize>,
    /// The timer thread, parked while no slot is in use.
    thread: Option<std::thread::Thread>,
}

impl Table {
    fn idle(&self) -> bool {
        self.slots.len() == self.free.len()
    }
}

fn table() -> MutexGuard<'static, Table> {
    static TABLE: OnceLock<Mutex<Table>> = OnceLock::new();
    TABLE
        .get_or_init(|| {
            let thread = match std::thread::Builder::new()
                .name("coarse-timer".into())
                .spawn(tick)
            {
                Ok(h) => Some(h.thread().clone()),
                Err(e) => {
                    // Deadlines are then noticed only when their owner is
                    // polled for another reason.
                    tracing::error!(error = %e, "cannot start the timer thread: timeouts are not enforced");
                    None
                }
            };
            Mutex::new(Table {
                thread,
                ..Table::default()
            })
        })
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

fn tick() {
    let mut due = Vec::new();
    loop {
        std::thread::sleep(RESOLUTION);
        let now = Instant::now();
        let idle = {
            let mut t = table();
            for (deadline, waker) in t.slots.iter_mut().flatten() {
                if *deadline <= now {
                    if let Some(w) = waker.take() {
                        due.push(w);
                    }
                }
            }
            t.idle()
        };
        for w in due.drain(..) {
            w.wake();
        }
        if idle {
            // Until the next slot is armed (an unpark before this park is not lost).
            std::thread::park();
        }
    }
}

/// A future that is ready once `deadline` has passed (noticed within
/// [`RESOLUTION`]).
#[derive(Debug)]
pub struct Sleep {
    deadline: Instant,
    slot: Option<usize>,
}

impl Sleep {
    pub fn until(deadline: Instant) -> Sleep {
        Sleep {
            deadline,
            slot: None,
        }
    }

    pub fn after(d: Duration) -> Sleep {
        Sleep::until(Instant::now() + d)
    }

    /// Moves the deadline (a pending wake-up for the old one is harmless).
    pub fn reset(&mut self, deadline: Instant) {
        self.deadline = deadline;
        if let Some(i) = self.slot {
            if let Some(Some(s)) = table().slots.get_mut(i) {
                s.0 = deadline;
            }
        }
    }

    fn release(&mut self) {
        if let Some(i) = self.slot.take() {
            let mut t = table();
            if let Some(s) = t.slots.get_mut(i) {
                *s = None;
                t.free.push(i);
            }
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            self.release();
            return Poll::Ready(());
        }
        let deadline = self.deadline;
        let mut t = table();
        match self.slot {
            Some(i) => {
                if let Some(Some((_, w))) = t.slots.get_mut(i) {
                    match w {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        _ => *w = Some(cx.waker().clone()),
                    }
                }
            }
            None => {
                if t.idle() {
                    if let Some(th) = &t.thread {
                        th.unpark();
                    }
                }
                let entry = Some((deadline, Some(cx.waker().clone())));
                let i = match t.free.pop() {
                    Some(i) => {
                        t.slots[i] = entry;
                        i
                    }
                    None => {
                        t.slots.push(entry);
                        t.slots.len() - 1
                    }
                };
                drop(t);
                self.slot = Some(i);
            }
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.release();
    }
}

/// `fut`, or `Err(())` if it is not done within `d`.
pub async fn timeout<F: Future>(d: Duration, fut: F) -> Result<F::Output, ()> {
    let sleep = Sleep::after(d);
    tokio::pin!(fut, sleep);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        sleep.as_mut().poll(cx).map(Err)
    })
    .await
}

/// This timer as hyper's (`header_read_timeout`).
#[derive(Clone, Copy, Debug, Default)]
pub struct HyperTimer;

impl hyper::rt::Sleep for Sleep {}

impl hyper::rt::Timer for HyperTimer {
    fn sleep(&self, d: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Sleep::after(d))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Sleep::until(deadline))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<Sleep>() {
            Some(s) => s.get_mut().reset(deadline),
            None => *sleep = self.sleep_until(deadline),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fires_after_its_deadline_within_the_resolution() {
        let t = Instant::now();
        Sleep::after(Duration::from_millis(120)).await;
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(120), "{took:?}");
        assert!(
            timeout(Duration::from_millis(60), std::future::pending::<()>())
                .await
                .is_err()
        );
        assert_eq!(timeout(Duration::from_secs(5), async { 7 }).await, Ok(7));
    }

    #[tokio::test]
    async fn a_timer_armed_after_a_quiet_spell_still_fires() {
        Sleep::after(Duration::from_millis(10)).await;
        // Nothing armed here for a while: the thread parks (if no other test arms one).
        std::thread::sleep(Duration::from_millis(200));
        let fired = tokio::time::timeout(
            Duration::from_secs(5),
            Sleep::after(Duration::from_millis(60)),
        )
        .await;
        assert!(
            fired.is_ok(),
            "a deadline armed on a parked timer never fired"
        );
    }

    /// A sleep polled once (so it holds a slot), and that slot.
    fn armed(secs: u64) -> (Pin<Box<Sleep>>, usize) {
        let waker = futures_util::task::noop_waker();
        let mut s = Box::pin(Sleep::after(Duration::from_secs(secs)));
        assert!(s
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        let i = s.slot.expect("a pending sleep holds a slot");
        (s, i)
    }

    #[tokio::test]
    async fn cancelled_and_reset_sleeps_free_their_slots() {
        let held = |i: usize| table().slots.get(i).is_some_and(Option::is_some);
        let (mut s, i) = armed(60);
        assert!(held(i));
        s.as_mut().get_mut().reset(Instant::now());
        s.await;
        assert!(!held(i), "a sleep that fired keeps its slot");

        let (s, i) = armed(60);
        drop(s);
        assert!(!held(i), "a dropped sleep keeps its slot");
    }
}
