//! warden-login: a small line-based login service on warden's native
//! interface (`interface = "warden"`), to watch a `login` service's
//! admission and eviction by hand.
//!
//! Usage: `warden-login USERS`, where USERS holds `name:password` lines.
//!
//! warden accepts each connection and hands it over with what it knows of
//! it; the service greets the client with the address warden saw (the one
//! a PROXY header gave, if any):
//!
//! ```text
//! * OK warden-login ready; you are 192.0.2.7:50123
//! LOGIN alice secret        -> OK logged in    (warden is told: authenticated)
//! WHOAMI                    -> alice from 192.0.2.7:50123
//! QUIT                      -> BYE
//! ```
//!
//! Before logging in only `LOGIN` and `QUIT` work; a wrong password gets
//! `NO`. A client warden evicts (its service full, it the oldest not yet
//! logged in) sees its connection close. Each connection is served on a
//! thread of its own; the process exits when warden says `stop-accepting`
//! and its last connection is done, when asked to exit while idle, and at
//! once, connections and all, when warden is gone (`warden_child::native`
//! sees to that).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;

use warden_child::native::{Connection, Event, Service};

/// The longest line a client may send.
const MAX_LINE: usize = 1024;

/// What the main thread and the connection threads share.
#[derive(Default)]
struct Shared {
    open: AtomicUsize,
    stopping: AtomicBool,
}

impl Shared {
    /// A connection ended: the process exits when it was the last one and
    /// warden asked it to stop taking more.
    fn done(&self) {
        let left = self.open.fetch_sub(1, Ordering::SeqCst).saturating_sub(1);
        if left == 0 && self.stopping.load(Ordering::SeqCst) {
            std::process::exit(0);
        }
    }
}

fn main() {
    let Some(users) = std::env::args().nth(1) else {
        eprintln!("usage: warden-login USERS (a file of name:password lines)");
        std::process::exit(2);
    };
    let users: BTreeMap<String, String> = match std::fs::read_to_string(&users) {
        Ok(text) => text
            .lines()
            .filter_map(|line| line.split_once(':'))
            .map(|(name, password)| (name.to_owned(), password.to_owned()))
            .collect(),
        Err(error) => {
            eprintln!("warden-login: cannot read {users}: {error}");
            std::process::exit(1);
        }
    };
    let service = match Service::start() {
        Ok(Some(service)) => service,
        Ok(None) => {
            eprintln!("warden-login: run it from warden with interface = \"warden\"");
            std::process::exit(2);
        }
        Err(error) => {
            eprintln!("warden-login: cannot start: {error}");
            std::process::exit(1);
        }
    };
    let users = Arc::new(users);
    let shared = Arc::new(Shared::default());
    loop {
        match service.next() {
            Ok(Event::Connection(connection)) => {
                shared.open.fetch_add(1, Ordering::SeqCst);
                let (users, shared) = (Arc::clone(&users), Arc::clone(&shared));
                thread::spawn(move || {
                    if let Err(error) = serve(connection, &users) {
                        eprintln!("warden-login: a connection failed: {error}");
                    }
                    shared.done();
                });
            }
            Ok(Event::ExitIfIdle) if shared.open.load(Ordering::SeqCst) == 0 => {
                let _ = service.exiting();
                std::process::exit(0);
            }
            Ok(Event::ExitIfIdle) => {
                let _ = service.busy();
            }
            Ok(Event::StopAccepting) => {
                shared.stopping.store(true, Ordering::SeqCst);
                if shared.open.load(Ordering::SeqCst) == 0 {
                    std::process::exit(0);
                }
                // The connection threads end the process.
                loop {
                    thread::park();
                }
            }
            Ok(Event::Closed { .. }) => {}
            Err(error) => {
                eprintln!("warden-login: the channel to warden failed: {error}");
                std::process::exit(1);
            }
        }
    }
}

/// Serves one client until it quits or its connection ends.
fn serve(mut connection: Connection, users: &BTreeMap<String, String>) -> std::io::Result<()> {
    let peer = connection
        .info()
        .peer
        .address
        .clone()
        .unwrap_or_else(|| "a local client".to_owned());
    say(
        &mut connection,
        &format!("* OK warden-login ready; you are {peer}"),
    )?;
    let mut user: Option<String> = None;
    loop {
        let Some(line) = read_line(&mut connection)? else {
            return Ok(());
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        let reply = match (words.as_slice(), &user) {
            (["QUIT" | "quit"], _) => {
                say(&mut connection, "BYE")?;
                return Ok(());
            }
            (["LOGIN" | "login", name, password], None) => {
                if users.get(*name).is_some_and(|p| p == password) {
                    connection.authenticated()?;
                    user = Some((*name).to_owned());
                    "OK logged in".to_owned()
                } else {
                    "NO bad name or password".to_owned()
                }
            }
            (["WHOAMI" | "whoami"], Some(name)) => format!("{name} from {peer}"),
            (_, None) => "NO log in first: LOGIN name password".to_owned(),
            (_, Some(_)) => "BAD unknown command; try WHOAMI or QUIT".to_owned(),
        };
        say(&mut connection, &reply)?;
    }
}

/// Writes `line` and its end in one piece.
fn say(connection: &mut Connection, line: &str) -> std::io::Result<()> {
    connection.write_all(format!("{line}\r\n").as_bytes())
}

/// Reads one line (without its end), or `None` at end of input.
fn read_line(connection: &mut Connection) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        if connection.read(&mut byte)? == 0 {
            return Ok((!line.is_empty()).then(|| String::from_utf8_lossy(&line).into_owned()));
        }
        if byte[0] == b'\n' {
            let text = String::from_utf8_lossy(&line);
            return Ok(Some(text.trim_end_matches('\r').to_owned()));
        }
        if line.len() >= MAX_LINE {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "a line longer than 1024 bytes",
            ));
        }
        line.push(byte[0]);
    }
}
