//! The control socket: how `warden status`, `ps`, `who`, `stats`,
//! `reload`, `stop`, `kick` and `plugins` talk to a running master.
//!
//! The socket is a unix stream socket in `base_dir` (`control_socket`),
//! mode 0600, and the master also checks each peer's credentials: only
//! root and the user the master runs as are served. A request is one line
//! of JSON, at most [`MAX_REQUEST`] bytes, sent within [`REQUEST_TIMEOUT`]
//! of connecting; the answer is one line of JSON. The master serves at most
//! [`MAX_CLIENTS`] connections at once: a new one closes the oldest that has
//! not sent its request, or, when all have, is refused with a message to
//! try again.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The longest request line the master reads.
pub const MAX_REQUEST: usize = 64 * 1024;

/// How long the master waits for a client's request after it connects,
/// and again for the client to take the answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How many control connections the master serves at once.
pub const MAX_CLIENTS: usize = 32;

/// How long a client waits for the master's answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A command for the master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Request {
    /// The state of every service.
    Status,
    /// The processes of every service, or of one.
    Ps {
        /// Only this service's.
        service: Option<String>,
    },
    /// Reload the configuration file.
    Reload,
    /// Stop every service, then the master.
    Stop,
    /// Ask one process to stop (SIGTERM).
    Kick {
        /// Its pid.
        pid: i32,
    },
    /// Close connections of native-interface services.
    KickConnection {
        /// A connection id, or a peer address (`192.0.2.7`, or with its
        /// port) whose every connection is closed.
        target: String,
    },
    /// The connections of native-interface services, or of one.
    Who {
        /// Only this service's.
        service: Option<String>,
    },
    /// The loaded policy plugins.
    Plugins,
    /// Every metric, as the metrics endpoint serves them.
    Stats,
    /// Stops one service: its processes are asked to finish their
    /// clients and exit, and no new one starts until `StartService`; its
    /// listeners stay open.
    StopService {
        /// The service.
        service: String,
    },
    /// Starts a service `StopService` stopped.
    StartService {
        /// The service.
        service: String,
    },
    /// Replaces one service's processes: each is asked to finish its
    /// clients and exit, and new ones take the connections meanwhile.
    RestartService {
        /// The service.
        service: String,
    },
    /// Starts recording the policy calls made for one service and the
    /// answers acted on, for `seconds`; a recording already under way is
    /// replaced.
    Record {
        /// The service.
        service: String,
        /// How long to record.
        seconds: u64,
    },
    /// The recording `Record` started, as a scenario for `warden policy
    /// test`; the recording ends.
    Recorded {
        /// The service.
        service: String,
    },
}

/// The master's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "kebab-case")]
pub enum Response {
    /// The state of every service.
    Status {
        /// One entry per service, in configuration order.
        services: Vec<ServiceStatus>,
    },
    /// Processes.
    Ps {
        /// One entry per process.
        processes: Vec<ProcessStatus>,
    },
    /// Connections.
    Connections {
        /// One entry per connection, oldest first.
        connections: Vec<ConnectionStatus>,
    },
    /// The loaded policy plugins, in chain order.
    Plugins {
        /// One entry per plugin.
        plugins: Vec<PluginStatus>,
    },
    /// Every metric, in OpenMetrics text.
    Stats {
        /// The text.
        text: String,
    },
    /// A recording of a service's policy calls.
    Recording {
        /// The scenario file's text.
        scenario: String,
        /// The calls it holds.
        calls: usize,
        /// Calls made after the recording was full, not in it.
        dropped: u64,
    },
    /// The command was carried out.
    Done {
        /// What happened.
        message: String,
    },
    /// The command could not be carried out.
    Failed {
        /// Why, and what to do.
        message: String,
    },
    /// The command named a service the running configuration does not have.
    UnknownService {
        /// The name given.
        name: String,
        /// The services there are.
        services: Vec<String>,
    },
}

/// One service, as `warden status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// The service's name.
    pub name: String,
    /// Whether it runs (its protocol is enabled).
    pub runs: bool,
    /// Processes now.
    pub processes: u32,
    /// `process_limit`.
    pub process_limit: u32,
    /// Processes that can take a connection now.
    pub available: u32,
    /// Whether an operator stopped it (`warden stop SERVICE`).
    pub stopped: bool,
    /// Clients its processes report.
    pub clients: u32,
    /// Whether the master is watching its listeners for a connection no
    /// process can take.
    pub listening: bool,
    /// Milliseconds of throttling left, if throttled.
    pub throttled_ms: Option<u64>,
    /// Why it was last throttled.
    pub throttle_reason: Option<String>,
    /// Its processes' last exits that warden did not ask for, newest
    /// first.
    pub last_exits: Vec<ExitStatus>,
    /// Why the service was given up, if it was.
    pub given_up: Option<String>,
    /// Processes started since the service was set up (at the master's
    /// start or the last reload), as the counters below.
    pub spawns: u64,
    /// Processes ended.
    pub exits: u64,
    /// Connections it got: accepted by the master (inetd and native
    /// interfaces), or new clients its processes reported (dovecot and
    /// systemd interfaces).
    pub connections: u64,
    /// Connections dropped at `process_limit`.
    pub dropped: u64,
}

impl ServiceStatus {
    /// Its state in a few words, as `warden status` and `warden top` show
    /// it: running, stopped, throttled (for how long), given up (why), or
    /// not started.
    pub fn state(&self) -> String {
        match (&self.given_up, self.throttled_ms) {
            _ if !self.runs => "not started (protocol not enabled)".to_owned(),
            _ if self.stopped => "stopped (warden start to start it)".to_owned(),
            (Some(why), _) => format!("given up: {why}"),
            (None, Some(ms)) => format!("throttled for {ms} ms"),
            (None, None) => "running".to_owned(),
        }
    }
}

/// One exit of a process, as `warden status SERVICE` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// The process.
    pub pid: i32,
    /// How it ended: `exited with status 1`, `killed by SIGSEGV`…
    pub how: String,
    /// Seconds ago.
    pub secs_ago: u64,
    /// Its last lines on stderr, oldest first (at most five).
    pub stderr: Vec<String>,
}

/// One connection, as `warden who` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionStatus {
    /// Its id, for `warden kick --connection`.
    pub id: u64,
    /// Its service.
    pub service: String,
    /// The process serving it.
    pub pid: i32,
    /// The listener it came in on.
    pub listener: String,
    /// The client's address and port (after any PROXY header), or the
    /// peer's uid on a unix socket.
    pub peer: String,
    /// Seconds since it was accepted.
    pub age_secs: u64,
    /// `waiting` (not logged in) or `authenticated`.
    pub state: String,
}

/// One process, as `warden ps` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessStatus {
    /// Its service.
    pub service: String,
    /// Its pid.
    pub pid: i32,
    /// `starting`, `ready`, `idle`, `busy`, `retired`, `asked-to-exit`,
    /// `ignoring-exit` (it did not answer a request to exit when idle),
    /// `stopped` (held by a signal until SIGCONT), `stopping`, or
    /// `draining` (left from before a reload).
    pub state: String,
    /// Clients it reports, if it reports them.
    pub clients: Option<u32>,
    /// Seconds since it started.
    pub age_secs: u64,
    /// Its last `STATUS=` line.
    pub status: Option<String>,
}

/// One policy plugin, as `warden plugins` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginStatus {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// `built-in`, or the file it was loaded from.
    pub origin: String,
    /// The sha256 of its file, when it came from one.
    pub sha256: Option<String>,
    /// The hooks it exports.
    pub hooks: Vec<String>,
    /// The globs of the services it applies to.
    pub services: Vec<String>,
    /// Calls made.
    pub calls: u64,
    /// Calls that failed.
    pub failures: u64,
    /// The mean of recent calls, in microseconds.
    pub mean_us: u64,
    /// The 99th percentile of recent calls, in microseconds.
    pub p99_us: u64,
    /// Whether it is quarantined until the next reload.
    pub quarantined: bool,
    /// Each hook called since it was loaded, with its calls.
    pub hook_times: Vec<HookStatus>,
}

/// The calls of one hook of a plugin, as `warden plugins` and `warden
/// top` show them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookStatus {
    /// The hook: `admission`, `idle`…
    pub hook: String,
    /// Calls made.
    pub calls: u64,
    /// Calls that failed.
    pub failures: u64,
    /// Their mean time, in microseconds.
    pub mean_us: u64,
    /// The bound 99 calls in 100 took at most, in microseconds; `None`
    /// beyond 100 ms.
    pub p99_at_most_us: Option<u64>,
}

/// Why a client could not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket is not there or refuses connections.
    #[error("cannot reach the master at {path}; is `warden run` running with this configuration?")]
    Connect {
        /// The socket's path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The exchange failed.
    #[error("talking to the master at {path} failed")]
    Io {
        /// The socket's path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The master answered something unreadable.
    #[error("the master at {path} answered something unreadable")]
    Protocol {
        /// The socket's path.
        path: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// Sends `request` to the master listening on `socket` and returns its
/// answer.
pub fn request(socket: &Path, request: &Request) -> Result<Response, ClientError> {
    let path = socket.display().to_string();
    let io = |source| ClientError::Io {
        path: path.clone(),
        source,
    };
    let mut stream = UnixStream::connect(socket).map_err(|source| ClientError::Connect {
        path: path.clone(),
        source,
    })?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).map_err(io)?;
    let mut line = serde_json::to_string(request).map_err(|source| ClientError::Protocol {
        path: path.clone(),
        source,
    })?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).map_err(io)?;
    serde_json::from_str(&answer).map_err(|source| ClientError::Protocol {
        path: path.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_one_line_of_tagged_json() {
        let line = serde_json::to_string(&Request::Kick { pid: 42 }).unwrap();
        assert_eq!(line, r#"{"command":"kick","pid":42}"#);
        let back: Request = serde_json::from_str(r#"{"command":"ps","service":null}"#).unwrap();
        assert_eq!(back, Request::Ps { service: None });
        assert!(serde_json::from_str::<Request>(r#"{"command":"format-disk"}"#).is_err());
    }
}
