//! The control socket's connections: each served by a task of its own —
//! one request line in, one answer line out — within deadlines, and only so
//! many at once.
//!
//! A client has [`REQUEST_TIMEOUT`] to send its request and as long again
//! to take its answer; one that idles is told so and closed. At most
//! [`MAX_CLIENTS`] connections are open at once. When another arrives, the
//! oldest connection that has not sent its request yet is told why and
//! closed to make room: a client sends its request as soon as it connects
//! (the CLI does), so the one closed is an idle one, and idle clients can
//! neither hold more descriptors than that nor keep `warden status` out.
//! Only when every open connection has sent its request, and is being
//! answered, is the newcomer refused, with a message saying to retry.
//!
//! The tasks read, check the peer, hand the request to the master as an
//! event and write its answer; they change no state. The table here owns
//! the connections' bookkeeping, so the event loop only routes new
//! connections to it.

use std::collections::VecDeque;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinSet};

use super::Event;
use crate::control::{MAX_CLIENTS, MAX_REQUEST, REQUEST_TIMEOUT, Request, Response};

/// One open control connection.
#[derive(Debug)]
struct Client {
    /// Its task.
    task: AbortHandle,
    /// Set by the task once the request is read.
    asked: Arc<AtomicBool>,
    /// Tells the task to close the connection to make room.
    make_room: oneshot::Sender<()>,
}

/// The control connections being served.
#[derive(Debug, Default)]
pub(super) struct ControlClients {
    /// The connections' tasks; what is left of them when the master stops
    /// is waited for, so that the last answers (to `stop`) are written.
    tasks: JoinSet<()>,
    /// The open connections, oldest first.
    open: VecDeque<Client>,
}

impl ControlClients {
    /// Serves the new connection `stream`, whose requests go to the master
    /// through `events`; makes room first, or refuses it, when
    /// [`MAX_CLIENTS`] are open.
    pub(super) fn serve(&mut self, stream: UnixStream, events: mpsc::UnboundedSender<Event>) {
        while self.tasks.try_join_next().is_some() {}
        self.open.retain(|client| !client.task.is_finished());
        if self.open.len() >= MAX_CLIENTS {
            let idle = self
                .open
                .iter()
                .position(|client| !client.asked.load(Ordering::Acquire));
            match idle.and_then(|place| self.open.remove(place)) {
                Some(oldest) => {
                    let _ = oldest.make_room.send(());
                }
                None => {
                    refuse(stream);
                    return;
                }
            }
        }
        let asked = Arc::new(AtomicBool::new(false));
        let (make_room, told) = oneshot::channel();
        let task = self
            .tasks
            .spawn(connection(stream, events, Arc::clone(&asked), told));
        self.open.push_back(Client {
            task,
            asked,
            make_room,
        });
    }

    /// Waits for the connections still being answered, each for at most
    /// `linger`.
    pub(super) async fn linger(&mut self, linger: Duration) {
        while let Ok(Some(_)) = tokio::time::timeout(linger, self.tasks.join_next()).await {}
    }
}

/// Tells a client that arrived while every open connection was being
/// answered to come back, and closes its connection. The line fits in the
/// empty buffer of a new socket, so the write does not wait; should it not
/// fit, the client sees the connection close.
fn refuse(stream: UnixStream) {
    let Ok(stream) = stream.into_std() else {
        return;
    };
    let refusal = Response::Failed {
        message: format!(
            "warden is answering {MAX_CLIENTS} control connections already; try again in a moment"
        ),
    };
    if let Ok(mut line) = serde_json::to_string(&refusal) {
        line.push('\n');
        let _ = (&stream).write_all(line.as_bytes());
    }
}

/// Serves one control connection: checks the peer, reads one request line
/// within [`REQUEST_TIMEOUT`], has the master answer it and writes the
/// answer line; or says why not. `asked` is set once the request is read;
/// `make_room` closes the connection before that.
async fn connection(
    stream: UnixStream,
    events: mpsc::UnboundedSender<Event>,
    asked: Arc<AtomicBool>,
    make_room: oneshot::Receiver<()>,
) {
    let me = nix::unistd::geteuid();
    let allowed = stream
        .peer_cred()
        .is_ok_and(|peer| peer.uid() == 0 || peer.uid() == me.as_raw());
    let (reader, writer) = stream.into_split();
    if !allowed {
        asked.store(true, Ordering::Release);
        let message = "only root and the user warden runs as may use the control socket".to_owned();
        return answer(writer, Response::Failed { message }).await;
    }
    let mut line = String::new();
    let mut limited = BufReader::new(reader.take(MAX_REQUEST as u64));
    let read = tokio::select! {
        read = tokio::time::timeout(REQUEST_TIMEOUT, limited.read_line(&mut line)) => read,
        Ok(()) = make_room => {
            let message = format!(
                "closed without a request to make room: {MAX_CLIENTS} control connections were open; send the request as soon as you connect"
            );
            return answer(writer, Response::Failed { message }).await;
        }
    };
    asked.store(true, Ordering::Release);
    let response = match read {
        Err(_) => Response::Failed {
            message: format!(
                "no request within {}s; send the request as soon as you connect",
                REQUEST_TIMEOUT.as_secs()
            ),
        },
        Ok(Err(error)) => Response::Failed {
            message: format!("cannot read the request: {error}"),
        },
        Ok(Ok(_)) => match serde_json::from_str::<Request>(&line) {
            Ok(request) => {
                let (reply, answered) = oneshot::channel();
                if events.send(Event::Control { request, reply }).is_err() {
                    return;
                }
                answered.await.unwrap_or(Response::Failed {
                    message: "warden is stopping".to_owned(),
                })
            }
            Err(error) => Response::Failed {
                message: format!("unreadable request: {error}"),
            },
        },
    };
    answer(writer, response).await;
}

/// Writes `response` as one line, giving the client [`REQUEST_TIMEOUT`] to
/// take it.
async fn answer(mut writer: OwnedWriteHalf, response: Response) {
    if let Ok(mut line) = serde_json::to_string(&response) {
        line.push('\n');
        let _ = tokio::time::timeout(REQUEST_TIMEOUT, writer.write_all(line.as_bytes())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client of `clients`: its end of a new connection.
    fn connect(clients: &mut ControlClients, events: &mpsc::UnboundedSender<Event>) -> UnixStream {
        let (ours, theirs) = UnixStream::pair().unwrap();
        clients.serve(theirs, events.clone());
        ours
    }

    /// How many connections are open now.
    fn open(clients: &ControlClients) -> usize {
        clients
            .open
            .iter()
            .filter(|client| !client.task.is_finished())
            .count()
    }

    async fn answer_of(client: &mut UnixStream) -> Response {
        let mut line = String::new();
        BufReader::new(client).read_line(&mut line).await.unwrap();
        serde_json::from_str(&line).unwrap()
    }

    fn failed(response: Response) -> String {
        match response {
            Response::Failed { message } => message,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_client_is_told_and_closed_after_the_deadline() {
        let (events, _receiver) = mpsc::unbounded_channel();
        let mut clients = ControlClients::default();
        let mut client = connect(&mut clients, &events);
        let message = failed(answer_of(&mut client).await);
        assert!(message.contains("no request within 5s"), "{message}");
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_client_closes_the_oldest_idle_one_when_all_are_open() {
        let (events, mut receiver) = mpsc::unbounded_channel();
        let mut clients = ControlClients::default();
        let mut idle: Vec<UnixStream> = (0..MAX_CLIENTS)
            .map(|_| connect(&mut clients, &events))
            .collect();
        assert_eq!(open(&clients), MAX_CLIENTS);
        let mut asking = connect(&mut clients, &events);
        asking
            .write_all(b"{\"command\":\"status\"}\n")
            .await
            .unwrap();
        let message = failed(answer_of(&mut idle[0]).await);
        assert!(message.contains("to make room"), "{message}");
        let Some(Event::Control { request, reply }) = receiver.recv().await else {
            panic!("the request did not reach the master");
        };
        assert_eq!(request, Request::Status);
        let done = Response::Done {
            message: "ok".to_owned(),
        };
        reply.send(done.clone()).unwrap();
        assert_eq!(answer_of(&mut asking).await, done);
        assert!(open(&clients) <= MAX_CLIENTS);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_is_refused_when_every_open_one_is_being_answered() {
        let (events, mut receiver) = mpsc::unbounded_channel();
        let mut clients = ControlClients::default();
        let mut asking = Vec::new();
        for _ in 0..MAX_CLIENTS {
            let mut client = connect(&mut clients, &events);
            client
                .write_all(b"{\"command\":\"status\"}\n")
                .await
                .unwrap();
            asking.push(client);
        }
        // Every request has reached the master, which has not answered yet.
        let mut pending = Vec::new();
        while pending.len() < MAX_CLIENTS {
            pending.push(receiver.recv().await);
        }
        let mut late = connect(&mut clients, &events);
        let message = failed(answer_of(&mut late).await);
        assert!(message.contains("try again"), "{message}");
    }
}
