//! Spawning off the caller's thread: a few threads that carry out
//! [`SpawnPlan`]s, so an event loop never waits for an exec.
//!
//! [`SpawnPlan::spawn`] returns only once the child has executed its
//! program, and `clone(CLONE_VM | CLONE_VFORK)` suspends the calling
//! thread until then. Called on the master's event loop, that stops every
//! accept, reap and other spawn for the length of each exec. A [`Spawner`]
//! takes the plan (made on the loop, where the master's tables are) to one
//! of its threads and reports the outcome, tagged with whatever the caller
//! needs to recognise it, through a callback; the loop goes on meanwhile,
//! and with two threads two execs overlap.
//!
//! The threads live as long as the `Spawner`: a child's parent-death
//! signal follows the *thread* that spawned it (see [`crate::spawn`]), so
//! the owner keeps its `Spawner` for as long as its children may live. The
//! threads block every signal, so the process's signals are handled by
//! the owner's threads only.

use std::io;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};

use crate::process::Child;
use crate::spawn::{SpawnError, SpawnPlan};

/// What a spawner thread is handed: the caller's tag and the plan.
type Job<T> = (T, SpawnPlan);

/// A pool of threads that start processes.
pub struct Spawner<T> {
    jobs: Option<Sender<Job<T>>>,
    threads: Vec<JoinHandle<()>>,
}

impl<T> std::fmt::Debug for Spawner<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spawner")
            .field("threads", &self.threads.len())
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Spawner<T> {
    /// Starts `threads` spawner threads (at least one). Each started
    /// process, or the reason it could not start, is passed to `done` with
    /// its tag, on the thread that spawned it.
    pub fn new(
        threads: usize,
        done: impl Fn(T, Result<Child, SpawnError>) + Send + Sync + 'static,
    ) -> io::Result<Spawner<T>> {
        let (jobs, receiver) = channel::<Job<T>>();
        let receiver = Arc::new(Mutex::new(receiver));
        let done = Arc::new(done);
        let mut handles = Vec::with_capacity(threads.max(1));
        for n in 0..threads.max(1) {
            let receiver = Arc::clone(&receiver);
            let done = Arc::clone(&done);
            let handle = std::thread::Builder::new()
                .name(format!("warden-spawn-{n}"))
                .spawn(move || serve(&receiver, &*done))?;
            handles.push(handle);
        }
        Ok(Spawner {
            jobs: Some(jobs),
            threads: handles,
        })
    }

    /// Hands `plan` to a spawner thread. Its outcome reaches `done` with
    /// `tag`. Only when every thread is gone (one panicked) is the job
    /// refused: the plan is dropped, closing its descriptors, and the tag
    /// given back.
    pub fn spawn(&self, tag: T, plan: SpawnPlan) -> Result<(), T> {
        match &self.jobs {
            Some(jobs) => jobs.send((tag, plan)).map_err(|refused| refused.0.0),
            None => Err(tag),
        }
    }
}

impl<T> Drop for Spawner<T> {
    /// Lets each thread finish the job in hand, then waits for them.
    fn drop(&mut self) {
        self.jobs = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A spawner thread's life: take a job, carry it out, report; until the
/// `Spawner` is dropped.
fn serve<T>(receiver: &Mutex<Receiver<Job<T>>>, done: &dyn Fn(T, Result<Child, SpawnError>)) {
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::all()), None);
    loop {
        // The lock is held only while waiting for the next job, so one
        // thread waits and the others spawn.
        let job = receiver
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .recv();
        let Ok((tag, plan)) = job else {
            return;
        };
        done(tag, plan.spawn());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_plan_is_carried_out_and_reported_with_its_tag() {
        let (sender, outcomes) = channel();
        let spawner = Spawner::new(2, move |tag: u32, result: Result<Child, SpawnError>| {
            let exit = result.map(|child| child.wait().map(|exit| exit.success()));
            let _ = sender.send((tag, exit.map_err(|e| e.to_string())));
        })
        .expect("threads start");
        for tag in 0..8 {
            let program = if tag % 2 == 0 {
                "/bin/true"
            } else {
                "/bin/false"
            };
            assert!(
                spawner
                    .spawn(tag, SpawnPlan::new("test", [program]))
                    .is_ok()
            );
        }
        let mut seen: Vec<(u32, bool)> = (0..8)
            .map(|_| {
                let (tag, outcome) = outcomes.recv().expect("an outcome");
                let exit = outcome.expect("spawned").expect("waited");
                (tag, exit)
            })
            .collect();
        seen.sort_unstable();
        let expected: Vec<(u32, bool)> = (0..8).map(|tag| (tag, tag % 2 == 0)).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn a_plan_that_cannot_start_is_reported_as_its_error() {
        let (sender, outcomes) = channel();
        let spawner = Spawner::new(1, move |tag: &str, result: Result<Child, SpawnError>| {
            let _ = sender.send((tag, result.err().map(|e| e.to_string())));
        })
        .expect("threads start");
        assert!(
            spawner
                .spawn("missing", SpawnPlan::new("test", ["/nonexistent/program"]))
                .is_ok()
        );
        let (tag, error) = outcomes.recv().expect("an outcome");
        assert_eq!(tag, "missing");
        assert!(
            error.is_some_and(|e| e.contains("/nonexistent/program")),
            "the error names the program"
        );
    }
}
