//! The epoch ticker: the thread whose ticks make a plugin's deadline pass.
//!
//! The epoch advances once per [`EPOCH_TICK`], and each tick that comes
//! while a call runs has the call's deadline compared with the clock.
//! Every tick wakes a thread, which on a virtual machine costs tens of
//! microseconds: a busy master pays for two hundred a second, and an idle
//! one should pay for none. When no call has been made for [`IDLE_AFTER`],
//! the ticker sleeps, and the next call wakes it before it runs any guest
//! code. The ticker sleeps only while no call is in flight — both facts
//! live in one atomic word, so a call can never start unseen by a ticker
//! that is deciding to sleep — and so no call runs without its deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::Engine;

use super::EPOCH_TICK;

/// How long without a call before the ticker sleeps: shorter than the
/// second between the master's requests for the plugins' metrics, so an
/// idle master's ticker sleeps between them.
pub(crate) const IDLE_AFTER: Duration = Duration::from_millis(100);

/// How often a sleeping ticker looks whether its engine is gone.
const LOOK_FOR_ENGINE: Duration = Duration::from_secs(1);

/// The bit of the state word saying that the ticker sleeps; the bits below
/// count the calls in flight.
const ASLEEP: u64 = 1 << 63;

/// The ticker thread, and what calls tell it.
#[derive(Debug)]
pub(crate) struct Ticker {
    /// Calls in flight, and [`ASLEEP`].
    state: Arc<AtomicU64>,
    /// Calls ever made, so the ticker sees calls shorter than a tick.
    made: Arc<AtomicU64>,
    thread: std::thread::Thread,
}

impl Ticker {
    /// Starts ticking `engine`'s epoch; the thread ends with the engine.
    pub(crate) fn start(engine: &Engine) -> std::io::Result<Ticker> {
        let state = Arc::new(AtomicU64::new(0));
        let made = Arc::new(AtomicU64::new(0));
        let weak = engine.weak();
        let (thread_state, thread_made) = (Arc::clone(&state), Arc::clone(&made));
        let handle = std::thread::Builder::new()
            .name("warden-epoch".to_owned())
            .spawn(move || {
                warden_sys::process::block_all_signals();
                let mut last_made = 0;
                let mut quiet_since = Instant::now();
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                    let made = thread_made.load(Ordering::Acquire);
                    if made != last_made || thread_state.load(Ordering::Acquire) != 0 {
                        last_made = made;
                        quiet_since = Instant::now();
                        continue;
                    }
                    if quiet_since.elapsed() < IDLE_AFTER
                        || thread_state
                            .compare_exchange(0, ASLEEP, Ordering::AcqRel, Ordering::Acquire)
                            .is_err()
                    {
                        continue;
                    }
                    // Asleep until a call clears the bit; woken now and
                    // then to see whether the engine is gone.
                    while thread_state.load(Ordering::Acquire) & ASLEEP != 0 {
                        std::thread::park_timeout(LOOK_FOR_ENGINE);
                        if weak.upgrade().is_none() {
                            return;
                        }
                    }
                    quiet_since = Instant::now();
                }
            })?;
        Ok(Ticker {
            state,
            made,
            thread: handle.thread().clone(),
        })
    }

    /// A call begins: it is in flight until [`Ticker::end`]. Wakes the
    /// ticker first if it sleeps.
    pub(crate) fn begin(&self) {
        self.made.fetch_add(1, Ordering::AcqRel);
        let before = self.state.fetch_add(1, Ordering::AcqRel);
        if before & ASLEEP != 0 {
            self.state.fetch_and(!ASLEEP, Ordering::AcqRel);
            self.thread.unpark();
        }
    }

    /// A call that began has ended.
    pub(crate) fn end(&self) {
        self.state.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_ticker_sleeps_and_a_call_wakes_it() {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).expect("an engine");
        let ticker = Ticker::start(&engine).expect("the ticker");
        let asleep = || ticker.state.load(Ordering::Acquire) & ASLEEP != 0;
        let deadline = Instant::now() + IDLE_AFTER * 5;
        while !asleep() {
            assert!(Instant::now() < deadline, "the ticker never slept");
            std::thread::sleep(Duration::from_millis(10));
        }
        ticker.begin();
        assert!(!asleep(), "a call must wake the ticker");
        // While a call is in flight the ticker does not sleep, however
        // long the call takes.
        std::thread::sleep(IDLE_AFTER + Duration::from_millis(200));
        assert!(!asleep());
        ticker.end();
    }
}
