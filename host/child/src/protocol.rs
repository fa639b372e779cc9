//! The wire protocol of warden's native interface (`interface = "warden"`),
//! version [`VERSION`].
//!
//! # The channel
//!
//! Each process gets one end of a `SOCK_SEQPACKET` unix socket pair as the
//! descriptor named by `WARDEN_CONTROL_FD` (3); warden keeps the other.
//! Every message is one packet: a JSON object, UTF-8, at most
//! [`MAX_MESSAGE`] bytes, whose `"type"` field names it. A packet that
//! carries a connection carries its socket as one `SCM_RIGHTS` descriptor.
//! Unknown fields are ignored, so later versions can add some; an unknown
//! `"type"`, a packet that is not such an object, one that is too long, one
//! that carries descriptors, or more than 100 000 packets in a second is a
//! protocol error. warden closes the channel of a process that sends
//! one, logs why, and asks the process to stop (SIGTERM): the process can
//! no longer be given connections. The environment also carries
//! `WARDEN_PROTOCOL` (the version), `WARDEN_SERVICE`, `WARDEN_CLIENT_LIMIT`
//! and, when limited, `WARDEN_SERVICE_COUNT`.
//!
//! # The conversation
//!
//! 1. warden sends [`ToService::Hello`] first. The process checks the
//!    version and answers [`FromService::Ready`] with the version it
//!    speaks; until then it is given nothing.
//! 2. warden sends [`ToService::Connection`] with the socket of each
//!    connection it accepted and admitted, never more at once than
//!    `client_limit`, and never more in the process's life than
//!    `service_count`.
//! 3. The process reports [`FromService::Authenticated`] when a client has
//!    logged in (a login service's connections that have not are the ones
//!    a full service evicts) and [`FromService::Closed`] when it is done
//!    with one; only then is the slot free again. warden keeps its own
//!    duplicate of every socket it passed, and closes it then: a process
//!    that closes its copy without reporting it leaves the client's
//!    connection open until the process exits.
//! 4. warden sends [`ToService::Closed`] when it closed a connection itself
//!    (evicted to make room, or `warden kick`): the socket is shut down in
//!    both directions, so the process's reads see end of file; the process
//!    drops it and may report it closed.
//! 5. warden sends [`ToService::StopAccepting`] when the process reached
//!    `service_count`, or at reload and stop: it is given nothing more and
//!    exits once its connections are closed.
//! 6. warden sends [`ToService::ExitIfIdle`] when the process has had no
//!    connection for `idle_kill`: it answers [`FromService::Exiting`] and
//!    exits, or [`FromService::Busy`] if it has work left. warden gives a
//!    process no connection between the question and the answer.
//!
//! SIGTERM means exit now. So does the end of file on the channel: warden's
//! end closed because warden is gone (or gave up on the process), and the
//! process exits at once, dropping its connections, rather than serve
//! clients no supervisor counts. warden also sets `PR_SET_PDEATHSIG` to
//! SIGTERM, but a process that changes its own credentials loses that; the
//! end of file it cannot lose.
//!
//! # An example
//!
//! A process of a login service, from its start to its exit (`→` is from
//! warden, `←` from the process; a `connection` packet carries the socket):
//!
//! ```text
//! → {"type":"hello","version":1,"service":"imap-login","client_limit":2}
//! ← {"type":"ready","version":1}
//! → {"type":"connection","id":17,"listener":"imap","client_type":"imap","ssl":false,
//!    "peer":{"address":"203.0.113.9:50123","local":"192.0.2.1:143"}}
//! ← {"type":"authenticated","id":17}
//! → {"type":"connection","id":18,"listener":"imap","client_type":"imap","ssl":false,
//!    "peer":{"address":"198.51.100.4:40110","local":"192.0.2.1:143"}}
//! → {"type":"closed","id":18,"reason":"evicted"}
//! ← {"type":"closed","id":18}
//! ← {"type":"closed","id":17}
//! → {"type":"exit-if-idle"}
//! ← {"type":"exiting"}
//! ```
//!
//! A service in another language needs: `recvmsg` with room for one
//! descriptor, a JSON parser, and `send` of one packet per message.

use serde::{Deserialize, Serialize};

/// The protocol version this crate speaks.
pub const VERSION: u32 = 1;

/// The longest packet, in bytes.
pub const MAX_MESSAGE: usize = 4096;

/// The descriptor of the channel in a new process.
pub const CONTROL_FD: i32 = 3;

/// Who is at the other end of a connection. For TCP, the addresses are
/// the client's and the one it connected to, taken from the PROXY header
/// when the listener has `haproxy = yes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// The client's address and port (`192.0.2.7:50123`, `[2001:db8::1]:443`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The address the client connected to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<String>,
    /// The peer's user, for unix sockets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// The peer's group, for unix sockets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// The peer's process, for unix sockets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
}

/// What warden tells a process about a connection it passes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionInfo {
    /// Its id, unique for the life of the supervisor; reports name it.
    pub id: u64,
    /// The name of the listener it came in on.
    pub listener: String,
    /// Its client type, as the service's `typing` policy decided.
    pub client_type: String,
    /// When set, the peer may only look up the user with this uid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restricted_to_uid: Option<u32>,
    /// Whether the listener speaks TLS from the first byte.
    #[serde(default)]
    pub ssl: bool,
    /// Who is at the other end.
    #[serde(default)]
    pub peer: Peer,
}

/// A message from warden to a process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ToService {
    /// The first message.
    Hello {
        /// The protocol version warden speaks.
        version: u32,
        /// The service's name.
        service: String,
        /// Connections the process is given at once at most.
        client_limit: u32,
        /// Connections the process is given in its life; none is unlimited.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service_count: Option<u32>,
    },
    /// A connection; its socket comes with the packet.
    Connection(ConnectionInfo),
    /// warden closed this connection itself.
    Closed {
        /// The connection.
        id: u64,
        /// Why: `evicted` or `kicked`.
        reason: String,
    },
    /// Take no more connections; exit when the last one is closed.
    StopAccepting,
    /// The process has been idle for `idle_kill`: exit if it can.
    ExitIfIdle,
}

/// A message from a process to warden.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum FromService {
    /// The answer to `hello`: the process takes connections.
    Ready {
        /// The protocol version it speaks.
        version: u32,
    },
    /// The client of this connection logged in.
    Authenticated {
        /// The connection.
        id: u64,
    },
    /// The process is done with this connection.
    Closed {
        /// The connection.
        id: u64,
    },
    /// The answer to `exit-if-idle`: it exits now.
    Exiting,
    /// The answer to `exit-if-idle`: it has work left and stays.
    Busy,
}

/// Why a packet is not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// It is longer than [`MAX_MESSAGE`].
    #[error("a message of {0} bytes, longer than {MAX_MESSAGE}")]
    TooLong(usize),
    /// It is empty: the other end closed the channel.
    #[error("an empty message")]
    Empty,
    /// It is not a JSON object of a known type.
    #[error("not a message of protocol version {VERSION}: {0}")]
    Malformed(String),
}

fn parse<'a, T: Deserialize<'a>>(packet: &'a [u8]) -> Result<T, ProtocolError> {
    if packet.len() > MAX_MESSAGE {
        return Err(ProtocolError::TooLong(packet.len()));
    }
    if packet.is_empty() {
        return Err(ProtocolError::Empty);
    }
    serde_json::from_slice(packet).map_err(|error| ProtocolError::Malformed(error.to_string()))
}

fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    // Serializing these types cannot fail: every key is a string and every
    // value a number, string, boolean or nested object.
    serde_json::to_vec(message).unwrap_or_default()
}

impl FromService {
    /// Reads a packet a process sent.
    pub fn parse(packet: &[u8]) -> Result<FromService, ProtocolError> {
        parse(packet)
    }

    /// The packet for this message.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }
}

impl ToService {
    /// Reads a packet warden sent.
    pub fn parse(packet: &[u8]) -> Result<ToService, ProtocolError> {
        parse(packet)
    }

    /// The packet for this message.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_back_as_written() {
        let connection = ToService::Connection(ConnectionInfo {
            id: 7,
            listener: "imap".to_owned(),
            client_type: "imap".to_owned(),
            restricted_to_uid: None,
            ssl: false,
            peer: Peer {
                address: Some("192.0.2.7:50123".to_owned()),
                local: Some("198.51.100.1:143".to_owned()),
                ..Peer::default()
            },
        });
        let packet = connection.encode();
        assert_eq!(ToService::parse(&packet), Ok(connection));
        for message in [
            FromService::Ready { version: VERSION },
            FromService::Authenticated { id: 3 },
            FromService::Closed { id: 3 },
            FromService::Exiting,
            FromService::Busy,
        ] {
            assert_eq!(FromService::parse(&message.encode()), Ok(message));
        }
    }

    #[test]
    fn the_wire_form_is_plain_json() {
        assert_eq!(
            FromService::Authenticated { id: 9 }.encode(),
            br#"{"type":"authenticated","id":9}"#
        );
        assert_eq!(
            FromService::parse(br#"{"type":"closed","id":4,"later":"field"}"#),
            Ok(FromService::Closed { id: 4 })
        );
    }

    #[test]
    fn bad_packets_are_errors_not_panics() {
        assert_eq!(FromService::parse(b""), Err(ProtocolError::Empty));
        assert!(matches!(
            FromService::parse(&[b' '; MAX_MESSAGE + 1]),
            Err(ProtocolError::TooLong(_))
        ));
        for bad in [
            &b"{"[..],
            br#"{"type":"launch-missiles"}"#,
            br#"{"type":"closed"}"#,
            br#"{"type":"closed","id":-1}"#,
            b"\xff\xfe",
            b"[1,2,3]",
        ] {
            assert!(matches!(
                FromService::parse(bad),
                Err(ProtocolError::Malformed(_))
            ));
        }
    }
}
