//! warden-whoami: an inetd-style service for warden's `inetd` interface.
//!
//! warden accepts each connection and starts this program for it with the
//! socket on stdin and stdout and the UCSPI variables describing both ends.
//! It tells the client who it is as warden saw it, then echoes lines until
//! `quit` or end of input, and exits; the next connection gets a new process.

use std::io::{BufRead, Write};

fn main() -> std::io::Result<()> {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| "?".to_owned());
    let mut out = std::io::stdout().lock();
    match var("PROTO").as_str() {
        "TCP" => writeln!(
            out,
            "you are {}:{}, talking to {}:{}, served by process {}",
            var("TCPREMOTEIP"),
            var("TCPREMOTEPORT"),
            var("TCPLOCALIP"),
            var("TCPLOCALPORT"),
            std::process::id()
        )?,
        "UNIX" => writeln!(
            out,
            "you are uid {} gid {} pid {}, served by process {}",
            var("UNIXREMOTEEUID"),
            var("UNIXREMOTEEGID"),
            var("UNIXREMOTEPID"),
            std::process::id()
        )?,
        other => writeln!(
            out,
            "unknown protocol {other}; run me under warden with interface = \"inetd\""
        )?,
    }
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        if line.trim() == "quit" {
            break;
        }
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    Ok(())
}
