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

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use crate::process::{Child, block_all_signals};
use crate::spawn::{SpawnError, SpawnPlan};

/// What a spawner thread is handed: the caller's tag and the plan.
type Job<T> = (T, SpawnPlan);

/// A pool of threads that start processes.
pub struct Spawner<T> {
    queue: Arc<Queue<T>>,
    threads: Vec<JoinHandle<()>>,
}

/// The jobs waiting for a thread. Each job wakes one waiting thread and no
/// other: a thread costs a context switch each time it wakes, and on a
/// virtual machine that is a good part of what a spawn costs.
struct Queue<T> {
    state: Mutex<Waiting<T>>,
    /// Signalled once per job, and to every thread when the spawner goes.
    ready: Condvar,
}

/// What the queue's lock guards.
struct Waiting<T> {
    jobs: VecDeque<Job<T>>,
    /// The threads still serving: a job is refused when none is.
    serving: usize,
    /// Whether the spawner is gone: the threads end once the queue is empty.
    closed: bool,
}

impl<T> Queue<T> {
    fn lock(&self) -> MutexGuard<'_, Waiting<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
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
        let count = threads.max(1);
        let queue = Arc::new(Queue {
            state: Mutex::new(Waiting {
                jobs: VecDeque::new(),
                serving: count,
                closed: false,
            }),
            ready: Condvar::new(),
        });
        let done = Arc::new(done);
        let mut spawner = Spawner {
            queue,
            threads: Vec::with_capacity(count),
        };
        for n in 0..count {
            let queue = Arc::clone(&spawner.queue);
            let done = Arc::clone(&done);
            // On an error the spawner is dropped, and the threads started
            // so far end.
            let handle = std::thread::Builder::new()
                .name(format!("warden-spawn-{n}"))
                .spawn(move || serve(&queue, &*done))?;
            spawner.threads.push(handle);
        }
        Ok(spawner)
    }

    /// Hands `plan` to a spawner thread. Its outcome reaches `done` with
    /// `tag`. Only when every thread is gone (one panicked) is the job
    /// refused: the plan is dropped, closing its descriptors, and the tag
    /// given back.
    pub fn spawn(&self, tag: T, plan: SpawnPlan) -> Result<(), T> {
        let mut waiting = self.queue.lock();
        if waiting.serving == 0 {
            return Err(tag);
        }
        waiting.jobs.push_back((tag, plan));
        drop(waiting);
        self.queue.ready.notify_one();
        Ok(())
    }
}

impl<T> Drop for Spawner<T> {
    /// Lets the threads carry out the jobs handed to them, then waits for
    /// them.
    fn drop(&mut self) {
        self.queue.lock().closed = true;
        self.queue.ready.notify_all();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Counts a thread out of the queue's serving threads when it ends, however
/// it ends.
struct Serving<'a, T>(&'a Queue<T>);

impl<T> Drop for Serving<'_, T> {
    fn drop(&mut self) {
        let mut waiting = self.0.lock();
        waiting.serving = waiting.serving.saturating_sub(1);
        if waiting.serving == 0 {
            // No thread is left to carry out what waits: dropping the
            // plans closes their descriptors.
            waiting.jobs.clear();
        }
    }
}

/// A spawner thread's life: take a job, carry it out, report; until the
/// `Spawner` is dropped and no job is left.
fn serve<T>(queue: &Queue<T>, done: &dyn Fn(T, Result<Child, SpawnError>)) {
    let _serving = Serving(queue);
    block_all_signals();
    loop {
        let mut waiting = queue.lock();
        let (tag, plan) = loop {
            if let Some(job) = waiting.jobs.pop_front() {
                break job;
            }
            if waiting.closed {
                return;
            }
            waiting = queue
                .ready
                .wait(waiting)
                .unwrap_or_else(PoisonError::into_inner);
        };
        drop(waiting);
        done(tag, plan.spawn());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::channel;

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

    #[test]
    fn a_spawner_whose_threads_are_gone_refuses_jobs_and_gives_the_tag_back() {
        let spawner = Spawner::new(1, |_: u32, _: Result<Child, SpawnError>| {
            panic!("the thread ends here, as a fault in the caller's callback would end it");
        })
        .expect("threads start");
        assert!(
            spawner
                .spawn(1, SpawnPlan::new("test", ["/bin/true"]))
                .is_ok()
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match spawner.spawn(2, SpawnPlan::new("test", ["/bin/true"])) {
                Err(tag) => {
                    assert_eq!(tag, 2);
                    break;
                }
                Ok(()) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the job was taken though the only thread is gone"
                    );
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
        }
    }
}
