//! Children's stdout and stderr, written to the master's log.
//!
//! Each process writes to pipes of its own; a task per pipe reads lines and
//! logs each with the service and pid. A line longer than [`MAX_LINE`] is
//! cut there and the rest logged as more lines, so one process cannot make
//! the master hold unbounded memory.
//!
//! Each pipe is read at most [`LINES_PER_WINDOW`] lines per [`WINDOW`];
//! past that its task sleeps out the window. A process flooding its output
//! then fills its pipe and blocks in its own writes, slowing only itself:
//! the master's event loop, which the tasks share, stays free for every
//! other service, and no line is lost.

use std::os::fd::OwnedFd;

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::time::Instant;

/// The longest line logged as one; longer ones are split.
pub(super) const MAX_LINE: usize = 8192;

/// The pacing window of one pipe.
const WINDOW: Duration = Duration::from_millis(100);

/// Lines one pipe may log per window: 2000 a second, far above any
/// healthy process, far below what would starve the event loop.
const LINES_PER_WINDOW: usize = 200;

/// Which of a process's outputs a pipe carries.
#[derive(Debug, Clone, Copy)]
pub(super) enum Stream {
    Stdout,
    Stderr,
}

/// Starts logging what arrives on `pipe` until the writer closes it.
pub(super) fn capture(service: String, pid: i32, stream: Stream, pipe: OwnedFd) {
    let receiver = match pipe::Receiver::from_owned_fd(pipe) {
        Ok(receiver) => receiver,
        Err(error) => {
            tracing::warn!(service, pid, %error, "cannot read the process's output");
            return;
        }
    };
    tokio::spawn(async move {
        let mut receiver = receiver;
        let mut buffer = Vec::with_capacity(1024);
        let mut chunk = [0u8; 4096];
        let mut window = Instant::now();
        let mut logged = 0;
        loop {
            let read = match receiver.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(read) => read,
            };
            buffer.extend_from_slice(chunk.get(..read).unwrap_or_default());
            loop {
                let line: Vec<u8> = match buffer.iter().position(|&b| b == b'\n') {
                    Some(end) => {
                        let mut line: Vec<u8> = buffer.drain(..=end).collect();
                        line.pop();
                        line
                    }
                    None if buffer.len() >= MAX_LINE => buffer.drain(..MAX_LINE).collect(),
                    None => break,
                };
                if window.elapsed() >= WINDOW {
                    window = Instant::now();
                    logged = 0;
                }
                if logged >= LINES_PER_WINDOW {
                    tokio::time::sleep_until(window + WINDOW).await;
                    window = Instant::now();
                    logged = 0;
                }
                log_line(&service, pid, stream, &line);
                logged += 1;
            }
        }
        if !buffer.is_empty() {
            log_line(&service, pid, stream, &buffer);
        }
    });
}

fn log_line(service: &str, pid: i32, stream: Stream, line: &[u8]) {
    let text = String::from_utf8_lossy(line);
    let stream = match stream {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    };
    tracing::info!(target: "warden::child", service, pid, stream, "{text}");
}
