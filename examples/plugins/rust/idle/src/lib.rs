//! A warden idle policy in Rust: never retire a process younger than ten
//! seconds; otherwise ask the idle processes beyond `process_min_avail` to
//! exit, the oldest first.
//!
//! ```sh
//! cargo build --release --target wasm32-wasip2
//! warden policy test target/wasm32-wasip2/release/rust_idle.wasm ../../scenarios/idle.toml
//! ```

use warden_plugin_sdk::bindings::exports::warden::policy::{idle, plugin};
use warden_plugin_sdk::bindings::warden::policy::{host, types};

/// A process younger than this, in milliseconds, is never retired.
const YOUNG_MS: u64 = 10_000;

/// The plugin.
struct Policy;

impl plugin::Guest for Policy {
    fn describe() -> plugin::Identity {
        plugin::Identity {
            name: "rust-idle".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description:
                "retire idle processes beyond process-min-avail, never one younger than 10 s"
                    .to_owned(),
            services: vec!["*".to_owned()],
        }
    }
}

impl idle::Guest for Policy {
    fn retire(
        service: types::Service,
        processes: Vec<types::Process>,
        lowwater: u32,
        now_ms: types::Millis,
    ) -> Vec<idle::Action> {
        let mut idle_ones: Vec<&types::Process> = processes
            .iter()
            .filter(|p| {
                p.idle_since_ms.is_some()
                    && p.asked_to_exit_ms.is_none()
                    && now_ms.saturating_sub(p.started_ms) >= YOUNG_MS
            })
            .collect();
        // No more than stayed idle all along since the last round, and
        // process_min_avail of them are kept.
        let idle_count = u32::try_from(idle_ones.len()).unwrap_or(u32::MAX);
        let beyond = lowwater
            .min(idle_count)
            .saturating_sub(service.process_min_avail);
        if beyond == 0 {
            return Vec::new();
        }
        idle_ones.sort_by_key(|p| p.started_ms);
        let chosen: Vec<idle::Action> = idle_ones
            .iter()
            .take(usize::try_from(beyond).unwrap_or(usize::MAX))
            .map(|p| idle::Action::AskToExit(p.pid))
            .collect();
        host::log(
            host::Level::Debug,
            &format!(
                "asking {} idle processes of {} to exit",
                chosen.len(),
                service.name
            ),
            &[("service".to_owned(), service.name.clone())],
        );
        chosen
    }
}

warden_plugin_sdk::bindings::export!(Policy);
