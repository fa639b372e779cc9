//! Children's stdout and stderr, written to the master's log.
//!
//! Each process writes to pipes of its own; a task per pipe reads lines and
//! logs each with the service and pid. A line longer than [`MAX_LINE`] is
//! cut there and the rest logged as more lines, so one process cannot make
//! the master hold unbounded memory.
//!
//! The last [`TAIL`] lines of each process's stderr are sent to the event
//! loop when the pipe closes (when the process has ended, mostly), so that
//! `warden status SERVICE` shows them with the process's exit.
//!
//! Each pipe is read at most [`LINES_PER_WINDOW`] lines per [`WINDOW`];
//! past that its task sleeps out the window. A process flooding its output
//! then fills its pipe and blocks in its own writes, slowing only itself:
//! the master's event loop, which the tasks share, stays free for every
//! other service, and no line is lost.

use std::collections::VecDeque;
use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use nix::fcntl::{FcntlArg, OFlag, fcntl};

use tokio::net::unix::pipe;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Event;

/// How many of a process's last stderr lines are kept for its exit.
pub(super) const TAIL: usize = 5;

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
    /// The stderr of a Dovecot binary told `LOG_SERVICE=1`: lines in
    /// Dovecot's log protocol, each logged at its own level with the
    /// prefix the process set.
    DovecotLog,
}

/// The severity of a line in Dovecot's log protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Debug,
    Info,
    Warning,
    Error,
}

/// What one process said of itself in Dovecot's log protocol: its
/// default prefix (`imap-login: `), set by an option line.
#[derive(Debug, Default)]
struct DovecotLog {
    prefix: String,
}

impl DovecotLog {
    /// The level and text of `line`, `\001`, a type byte, `<pid> `, an
    /// optional `<n> ` when the text starts with its own n-byte prefix,
    /// then the text; `None` for an option line, which only sets state.
    /// A line not in the protocol is logged as it is.
    fn decode(&mut self, line: &[u8]) -> Option<(Level, String)> {
        let (&[1, kind], rest) = line.split_at_checked(2).unwrap_or((&[], line)) else {
            return Some((Level::Info, String::from_utf8_lossy(line).into_owned()));
        };
        let text = String::from_utf8_lossy(rest);
        let text = text.split_once(' ').map_or("", |(_pid, text)| text);
        let log_type = (kind & 0x3f).wrapping_sub(1);
        if log_type == 7 {
            if let Some(prefix) = text.strip_prefix("prefix=") {
                prefix.clone_into(&mut self.prefix);
            }
            return None;
        }
        let level = match log_type {
            0 => Level::Debug,
            1 => Level::Info,
            2 => Level::Warning,
            _ => Level::Error,
        };
        let severity = match log_type {
            4 => "Fatal: ",
            5 => "Panic: ",
            _ => "",
        };
        let own_prefix = kind & 0x40 != 0;
        let text = if own_prefix {
            // "<n> " and the text, whose first n bytes are its prefix.
            text.split_once(' ')
                .map_or(text, |(_n, text)| text)
                .to_owned()
        } else if kind & 0x80 != 0 {
            text.to_owned()
        } else {
            format!("{}{severity}{text}", self.prefix)
        };
        Some((level, text))
    }
}

/// The read end of an output pipe, made by [`pipe`]: a pipe, open for
/// reading, non-blocking, as [`capture`] needs it.
#[derive(Debug)]
pub(super) struct Reader(OwnedFd);

/// A pipe for a process's output: the end the master reads and the end the
/// process writes (blocking, as a program expects its stdout and stderr to
/// be). Both are closed on exec; the spawner places the writer.
pub(super) fn pipe() -> io::Result<(Reader, OwnedFd)> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    // A new pipe's read end has no status flag set but its access mode,
    // which F_SETFL leaves as it is.
    fcntl(&read, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    Ok((Reader(read), write))
}

/// Starts logging what arrives on `pipe` until the writer closes it; for
/// stderr, then sends its last lines to `events`.
pub(super) fn capture(
    service: String,
    pid: i32,
    stream: Stream,
    pipe: Reader,
    events: mpsc::UnboundedSender<Event>,
) {
    // [`Reader`] is what tokio's checked constructor would look for, with
    // a system call each: no more checking at every spawn.
    let receiver = match pipe::Receiver::from_owned_fd_unchecked(pipe.0) {
        Ok(receiver) => receiver,
        Err(error) => {
            tracing::warn!(service, pid, %error, "cannot read the process's output");
            return;
        }
    };
    tokio::spawn(async move {
        // Nothing is allocated before the process writes: most write
        // nothing, and an inetd service starts one per connection.
        let mut buffer = Vec::new();
        let mut window = Instant::now();
        let mut logged = 0;
        let mut dovecot = matches!(stream, Stream::DovecotLog).then(DovecotLog::default);
        let mut tail: VecDeque<String> = VecDeque::new();
        let mut keep = |text: Option<String>| {
            if let (Some(text), Stream::Stderr | Stream::DovecotLog) = (text, stream) {
                if tail.len() == TAIL {
                    tail.pop_front();
                }
                tail.push_back(text);
            }
        };
        loop {
            if receiver.readable().await.is_err() {
                break;
            }
            // On the stack, not in the task: it holds nothing across a wait.
            let mut chunk = [0u8; 4096];
            let read = match receiver.try_read(&mut chunk) {
                Ok(0) => break,
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                Err(_) => break,
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
                keep(log_line(&service, pid, stream, &line, dovecot.as_mut()));
                logged += 1;
            }
        }
        if !buffer.is_empty() {
            keep(log_line(&service, pid, stream, &buffer, dovecot.as_mut()));
        }
        if !tail.is_empty() {
            let _ = events.send(Event::StderrTail {
                pid,
                lines: tail.into(),
            });
        }
    });
}

/// Logs `line`, and returns its text (none for a Dovecot option line).
fn log_line(
    service: &str,
    pid: i32,
    stream: Stream,
    line: &[u8],
    dovecot: Option<&mut DovecotLog>,
) -> Option<String> {
    let stream = match stream {
        Stream::Stdout => "stdout",
        Stream::Stderr | Stream::DovecotLog => "stderr",
    };
    let Some(dovecot) = dovecot else {
        let text = String::from_utf8_lossy(line).into_owned();
        tracing::info!(target: "warden::child", service, pid, stream, "{text}");
        return Some(text);
    };
    let (level, text) = dovecot.decode(line)?;
    match level {
        Level::Debug => tracing::debug!(target: "warden::child", service, pid, stream, "{text}"),
        Level::Info => tracing::info!(target: "warden::child", service, pid, stream, "{text}"),
        Level::Warning => tracing::warn!(target: "warden::child", service, pid, stream, "{text}"),
        Level::Error => tracing::error!(target: "warden::child", service, pid, stream, "{text}"),
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dovecot_log_lines_take_their_level_and_the_prefix_the_process_set() {
        let mut log = DovecotLog::default();
        assert_eq!(log.decode(b"\x01\x08 18431 ip=127.0.0.1"), None);
        assert_eq!(log.decode(b"\x01\x0818431 prefix=imap-login: "), None);
        assert_eq!(
            log.decode(b"\x01\x0218431 Login: user=<alice>"),
            Some((Level::Info, "imap-login: Login: user=<alice>".to_owned()))
        );
        assert_eq!(
            log.decode(b"\x01\x0518431 Couldn't connect to anvil"),
            Some((
                Level::Error,
                "imap-login: Fatal: Couldn't connect to anvil".to_owned()
            ))
        );
        assert_eq!(
            log.decode(b"\x01\x4318431 12 imap(alice): Warning text"),
            Some((Level::Warning, "imap(alice): Warning text".to_owned()))
        );
        assert_eq!(
            log.decode(b"plain text"),
            Some((Level::Info, "plain text".to_owned()))
        );
    }
}
