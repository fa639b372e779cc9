//! The `NOTIFY_SOCKET` of `systemd`-interface services.
//!
//! The master has one datagram socket for its whole life, in the abstract
//! namespace (so it is reachable from inside a chroot), at an address that
//! names the master's pid and never changes: a process keeps reporting
//! across any number of reloads, including one left from an earlier
//! configuration that is finishing its clients, and a thousand services
//! cost one descriptor, not a thousand. The kernel attaches the sender's
//! credentials to every datagram; the master takes a message as the word
//! of the one process it started with that pid, live or draining, so a
//! process cannot speak for another, nor an outsider for any.
//!
//! A message is newline-separated `KEY=VALUE` assignments, at most
//! [`MAX_MESSAGE`] bytes. The master understands `READY=1`, `STOPPING=1`,
//! `STATUS=…`, `WATCHDOG=1` and `X_WARDEN_CLIENTS=<n>` (how many clients
//! the process has now); other keys are ignored, as systemd does.

use std::io;
use std::os::fd::AsFd;
use std::os::linux::net::SocketAddrExt;

use tokio::io::Interest;
use tokio::net::UnixDatagram;
use tokio::sync::mpsc;

use super::Event;

/// How long reading rests after the socket failed.
const RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// The longest notify message read; longer ones are dropped.
pub(super) const MAX_MESSAGE: usize = 4096;

/// What a process said in one notify message.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Message {
    /// `READY=1`: it has finished starting.
    pub ready: bool,
    /// `STOPPING=1`: it takes no new connections and will exit.
    pub stopping: bool,
    /// `WATCHDOG=1`: it is alive.
    pub watchdog: bool,
    /// `STATUS=…`: a line for `warden ps`.
    pub status: Option<String>,
    /// `X_WARDEN_CLIENTS=<n>`: its clients now.
    pub clients: Option<u32>,
}

impl Message {
    /// Reads a message; a malformed line is skipped, as systemd does.
    pub(super) fn parse(text: &str) -> Message {
        let mut message = Message::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            match key {
                "READY" => message.ready = value == "1",
                "STOPPING" => message.stopping = value == "1",
                "WATCHDOG" => message.watchdog = value == "1",
                "STATUS" => message.status = Some(value.chars().take(200).collect()),
                "X_WARDEN_CLIENTS" => message.clients = value.parse().ok(),
                _ => {}
            }
        }
        message
    }
}

/// The master's notify socket.
#[derive(Debug)]
pub(super) struct NotifySocket {
    /// What `NOTIFY_SOCKET` says: `@` and the abstract name.
    pub address: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl NotifySocket {
    /// Opens the master's notify socket and forwards what arrives on it to
    /// the master as [`Event::Notify`].
    pub(super) fn open(events: mpsc::UnboundedSender<Event>) -> io::Result<NotifySocket> {
        let abstract_name = format!("warden/{}/notify", std::process::id());
        let address = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())?;
        let socket = std::os::unix::net::UnixDatagram::bind_addr(&address)?;
        socket.set_nonblocking(true)?;
        warden_sys::fdpass::pass_credentials(&socket)?;
        let socket = UnixDatagram::from_std(socket)?;
        let task = tokio::spawn(async move {
            let mut buffer = vec![0u8; MAX_MESSAGE];
            loop {
                let received = socket
                    .async_io(Interest::READABLE, || {
                        warden_sys::fdpass::recv_with_credentials(socket.as_fd(), &mut buffer)
                    })
                    .await;
                let datagram = match received {
                    Ok(datagram) => datagram,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                    // The one socket serves the master's whole life, so it
                    // is never given up; a failure (out of memory) is
                    // waited out, at most one line per pause.
                    Err(error) => {
                        tracing::error!(
                            %error,
                            "cannot read the notify socket; retrying in {}ms",
                            RETRY.as_millis()
                        );
                        tokio::time::sleep(RETRY).await;
                        continue;
                    }
                };
                let (Some(sender), false) = (datagram.sender, datagram.truncated) else {
                    continue;
                };
                let text = String::from_utf8_lossy(buffer.get(..datagram.len).unwrap_or_default());
                let event = Event::Notify {
                    pid: sender.pid,
                    message: Message::parse(&text),
                };
                if events.send(event).is_err() {
                    return;
                }
            }
        });
        Ok(NotifySocket {
            address: format!("@{abstract_name}"),
            task,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_the_keys_warden_understands() {
        let message = Message::parse("READY=1\nSTATUS=serving 3\nX_WARDEN_CLIENTS=3\nMAINPID=7\n");
        assert_eq!(
            message,
            Message {
                ready: true,
                status: Some("serving 3".into()),
                clients: Some(3),
                ..Message::default()
            }
        );
        assert!(Message::parse("STOPPING=1").stopping);
        assert!(Message::parse("WATCHDOG=1").watchdog);
        assert_eq!(Message::parse("X_WARDEN_CLIENTS=lots").clients, None);
        assert_eq!(Message::parse("garbage\n=\nREADY=0"), Message::default());
    }
}
