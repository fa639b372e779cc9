//! A warden admission policy in Rust.
//!
//! Refuses the client addresses listed, one per line, in the file `deny`
//! of the directory the configuration grants the plugin
//! (`[plugin.rust-admission] directory = "..."`, seen by the plugin at
//! `/grant`), and holds back for a second a source that opened more than
//! [`BURST`] connections in the last one.
//!
//! Build it into a component, test it against its scenario, then drop the
//! `.wasm` into warden's `plugins_dir`:
//!
//! ```sh
//! cargo build --release --target wasm32-wasip2
//! warden policy test target/wasm32-wasip2/release/rust_admission.wasm scenario.toml
//! ```

use warden_plugin_sdk::bindings::exports::warden::policy::{admission, plugin};
use warden_plugin_sdk::bindings::warden::policy::{host, types};

/// A source opening more connections than this in one second waits.
const BURST: u32 = 5;

/// How long it waits, in milliseconds, before it is decided again.
const HOLD_MS: u64 = 1000;

/// The deny list in the granted directory.
const DENY_FILE: &str = "/grant/deny";

/// Whether `address` is on the deny list; no grant is an empty list.
fn denied(address: &str) -> bool {
    std::fs::read_to_string(DENY_FILE).is_ok_and(|list| {
        list.lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .any(|line| line == address)
    })
}

/// The plugin.
struct Policy;

impl plugin::Guest for Policy {
    fn describe() -> plugin::Identity {
        plugin::Identity {
            name: "rust-admission".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description: "refuse denied addresses, hold back bursts from one source".to_owned(),
            services: vec!["*-login".to_owned()],
        }
    }
}

impl admission::Guest for Policy {
    fn admit(
        service: types::Service,
        connection: types::Connection,
        counts: admission::SourceCounts,
        _now_ms: types::Millis,
    ) -> admission::Verdict {
        if let Some(address) = connection.peer.address.as_deref()
            && denied(address)
        {
            host::log(
                host::Level::Info,
                &format!("refusing {address}: on the deny list"),
                &[("service".to_owned(), service.name)],
            );
            return admission::Verdict::Reject("deny-list".to_owned());
        }
        if counts.last_second > BURST {
            return admission::Verdict::Delay(HOLD_MS);
        }
        admission::Verdict::Accept
    }
}

warden_plugin_sdk::bindings::export!(Policy);
