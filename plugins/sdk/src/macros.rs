//! The macros that implement the contract's interfaces for a plugin crate
//! over the plain-value logic of this crate.
//!
//! Each expands where `wit_bindgen::generate!` made the `exports` and
//! `warden` modules, converts the generated types into this crate's and
//! back, and calls the function it is given. A plugin therefore states its
//! policy as ordinary functions, and the conversions are written once.

/// Implements the required `plugin` interface for `$plugin`: its name, a
/// one-line description, and the globs of the services it applies to; the
/// version is the crate's.
#[macro_export]
macro_rules! identity {
    ($plugin:ty, $name:expr, $description:expr, [$($service:expr),* $(,)?]) => {
        impl exports::warden::policy::plugin::Guest for $plugin {
            fn describe() -> exports::warden::policy::plugin::Identity {
                exports::warden::policy::plugin::Identity {
                    name: ($name).to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    description: ($description).to_owned(),
                    services: vec![$(($service).to_owned()),*],
                }
            }
        }
    };
}

/// Implements `defaults` with
/// `$defaults: fn(&str, &defaults::Machine) -> Option<defaults::Settings>`.
#[macro_export]
macro_rules! defaults {
    ($plugin:ty, $defaults:expr) => {
        impl exports::warden::policy::defaults::Guest for $plugin {
            fn defaults(
                service: String,
                machine: exports::warden::policy::defaults::Machine,
            ) -> Option<exports::warden::policy::defaults::Settings> {
                let machine = $crate::defaults::Machine { cpus: machine.cpus };
                let settings: $crate::defaults::Settings = ($defaults)(service.as_str(), &machine)?;
                // The conversion's names stay in this block, away from the
                // plugin's function above.
                {
                    use exports::warden::policy::defaults as wit;
                    use warden::policy::types::ServiceKind;
                    use $crate::defaults::Kind;
                    Some(wit::Settings {
                        kind: settings.kind.map(|kind| match kind {
                            Kind::Default => ServiceKind::Default,
                            Kind::Startup => ServiceKind::Startup,
                            Kind::Login => ServiceKind::Login,
                            Kind::Log => ServiceKind::Log,
                            Kind::Config => ServiceKind::Config,
                            Kind::Anvil => ServiceKind::Anvil,
                            Kind::Worker => ServiceKind::Worker,
                        }),
                        protocol: settings.protocol,
                        user: settings.user,
                        group: settings.group,
                        extra_groups: settings.extra_groups,
                        chroot: settings.chroot,
                        client_limit: settings.client_limit,
                        process_limit: settings.process_limit,
                        process_min_avail: settings.process_min_avail,
                        service_count: settings.service_count,
                        idle_kill_ms: settings.idle_kill_ms,
                        vsz_limit: settings.vsz_limit,
                        unix_listeners: settings
                            .unix_listeners
                            .into_iter()
                            .map(|l| wit::UnixListener {
                                path: l.path,
                                mode: l.mode,
                                user: l.user,
                                group: l.group,
                                listener_type: l.listener_type,
                            })
                            .collect(),
                        inet_listeners: settings
                            .inet_listeners
                            .into_iter()
                            .map(|l| wit::InetListener {
                                name: l.name,
                                port: l.port,
                                ssl: l.ssl,
                            })
                            .collect(),
                    })
                }
            }
        }
    };
}

/// Implements `typing` with
/// `$classify: fn(&typing::Listener, Option<&typing::Peer>) -> typing::ClientType`.
#[macro_export]
macro_rules! typing {
    ($plugin:ty, $classify:expr) => {
        impl exports::warden::policy::typing::Guest for $plugin {
            fn classify(
                _service: warden::policy::types::Service,
                listener: warden::policy::types::Listener,
                peer: Option<warden::policy::types::Peer>,
            ) -> exports::warden::policy::typing::ClientType {
                let listener = $crate::typing::Listener {
                    name: listener.name,
                    kind: match listener.kind {
                        warden::policy::types::ListenerKind::Unix => {
                            $crate::typing::ListenerKind::Unix
                        }
                        warden::policy::types::ListenerKind::Fifo => {
                            $crate::typing::ListenerKind::Fifo
                        }
                        warden::policy::types::ListenerKind::Inet => {
                            $crate::typing::ListenerKind::Inet
                        }
                    },
                    path: listener.path,
                    mode: listener.mode,
                    owner_uid: listener.owner_uid,
                    owner_gid: listener.owner_gid,
                    configured_type: listener.configured_type,
                };
                let peer = peer.map(|p| $crate::typing::Peer {
                    uid: p.uid,
                    gid: p.gid,
                });
                let answer: $crate::typing::ClientType = ($classify)(&listener, peer.as_ref());
                exports::warden::policy::typing::ClientType {
                    name: answer.name,
                    restricted_to_uid: answer.restricted_to_uid,
                }
            }
        }
    };
}

/// Implements `admission` with
/// `$admit: fn(&admission::Limits, &admission::Source) -> admission::Verdict`.
#[macro_export]
macro_rules! admission {
    ($plugin:ty, $admit:expr) => {
        impl exports::warden::policy::admission::Guest for $plugin {
            fn admit(
                service: warden::policy::types::Service,
                _connection: warden::policy::types::Connection,
                counts: exports::warden::policy::admission::SourceCounts,
                _now_ms: u64,
            ) -> exports::warden::policy::admission::Verdict {
                let limits = $crate::admission::Limits {
                    concurrent: service.per_source_limit,
                    per_second: service.per_source_rate,
                };
                let source = $crate::admission::Source {
                    concurrent: counts.concurrent,
                    last_second: counts.last_second,
                };
                match ($admit)(&limits, &source) {
                    $crate::admission::Verdict::Accept => {
                        exports::warden::policy::admission::Verdict::Accept
                    }
                    $crate::admission::Verdict::Reject(reason) => {
                        exports::warden::policy::admission::Verdict::Reject(reason.to_owned())
                    }
                    $crate::admission::Verdict::Delay(ms) => {
                        exports::warden::policy::admission::Verdict::Delay(ms)
                    }
                }
            }
        }
    };
}

/// Implements `eviction` with
/// `$evict: fn(&[login::Connection], waiting: u32) -> Vec<u64>`.
#[macro_export]
macro_rules! eviction {
    ($plugin:ty, $evict:expr) => {
        impl exports::warden::policy::eviction::Guest for $plugin {
            fn evict(
                _service: warden::policy::types::Service,
                candidates: Vec<warden::policy::types::Connection>,
                waiting: u32,
                _now_ms: u64,
            ) -> Vec<u64> {
                let candidates: Vec<$crate::login::Connection> = candidates
                    .iter()
                    .map(|c| $crate::login::Connection {
                        id: c.id,
                        accepted_ms: c.accepted_ms,
                        authenticated: c.authenticated,
                    })
                    .collect();
                ($evict)(&candidates, waiting)
            }
        }
    };
}

/// The plain [`dovecot::Service`](crate::dovecot::Service) of a generated
/// `types::Service`.
#[doc(hidden)]
#[macro_export]
macro_rules! __service {
    ($service:expr) => {
        $crate::dovecot::Service {
            startup: matches!($service.kind, warden::policy::types::ServiceKind::Startup),
            client_limit: $service.client_limit,
            process_limit: $service.process_limit,
            process_min_avail: $service.process_min_avail,
            idle_kill_ms: $service.idle_kill_ms,
        }
    };
}

/// The plain [`dovecot::Process`](crate::dovecot::Process)es of generated
/// `types::Process`es.
#[doc(hidden)]
#[macro_export]
macro_rules! __processes {
    ($processes:expr) => {
        $processes
            .iter()
            .map(|p| $crate::dovecot::Process {
                pid: p.pid,
                ready: p.ready,
                clients: p.clients,
                idle_since_ms: p.idle_since_ms,
                asked_to_exit_ms: p.asked_to_exit_ms,
                retired: p.retired,
            })
            .collect::<Vec<$crate::dovecot::Process>>()
    };
}

/// Implements `scaling` with
/// `$start: fn(&dovecot::Service, &[dovecot::Process], at_startup: bool, busy: bool) -> u32`.
#[macro_export]
macro_rules! scaling {
    ($plugin:ty, $start:expr) => {
        impl exports::warden::policy::scaling::Guest for $plugin {
            fn start(
                service: warden::policy::types::Service,
                processes: Vec<warden::policy::types::Process>,
                at_startup: bool,
                busy: bool,
            ) -> u32 {
                ($start)(
                    &$crate::__service!(service),
                    &$crate::__processes!(processes),
                    at_startup,
                    busy,
                )
            }
        }
    };
}

/// Implements `idle` with
/// `$retire: fn(&dovecot::Service, &[dovecot::Process], lowwater: u32, now_ms: u64) -> Vec<u32>`,
/// asking each pid it returns to exit.
#[macro_export]
macro_rules! idle {
    ($plugin:ty, $retire:expr) => {
        impl exports::warden::policy::idle::Guest for $plugin {
            fn retire(
                service: warden::policy::types::Service,
                processes: Vec<warden::policy::types::Process>,
                lowwater: u32,
                now_ms: u64,
            ) -> Vec<exports::warden::policy::idle::Action> {
                let pids: Vec<u32> = ($retire)(
                    &$crate::__service!(service),
                    &$crate::__processes!(processes),
                    lowwater,
                    now_ms,
                );
                pids.into_iter()
                    .map(exports::warden::policy::idle::Action::AskToExit)
                    .collect()
            }
        }
    };
}

/// Implements `lifecycle` with `$throttle: fn(&dovecot::Exit) -> Option<u64>`:
/// a throttle of that many milliseconds, or a restart when none.
#[macro_export]
macro_rules! lifecycle {
    ($plugin:ty, $throttle:expr) => {
        impl exports::warden::policy::lifecycle::Guest for $plugin {
            fn after_exit(
                _service: warden::policy::types::Service,
                exit: exports::warden::policy::lifecycle::Exit,
            ) -> exports::warden::policy::lifecycle::Decision {
                let failed = !exit.was_asked
                    && !matches!(
                        exit.cause,
                        exports::warden::policy::lifecycle::Cause::Exited(0)
                    );
                let throttle: Option<u64> = ($throttle)(&$crate::dovecot::Exit {
                    failed,
                    was_ready: exit.was_ready,
                    service_proven: exit.service_proven,
                    failures_in_last_second: exit.failures_in_last_second,
                    last_throttle_ms: exit.last_throttle_ms,
                });
                match throttle {
                    Some(ms) => exports::warden::policy::lifecycle::Decision::RestartAfter(ms),
                    None => exports::warden::policy::lifecycle::Decision::Restart,
                }
            }
        }
    };
}

/// Implements `stats`, reporting `$figures` per service from a
/// [`Tally`](crate::stats::Tally) kept in the instance.
#[macro_export]
macro_rules! stats {
    ($plugin:ty, [$($figure:ident),* $(,)?]) => {
        ::std::thread_local! {
            static TALLY: ::std::cell::RefCell<$crate::stats::Tally> =
                ::std::cell::RefCell::new($crate::stats::Tally::default());
        }

        const FIGURES: &[$crate::stats::Figure] = &[$($crate::stats::Figure::$figure),*];

        impl exports::warden::policy::stats::Guest for $plugin {
            fn declare() -> Vec<exports::warden::policy::stats::Metric> {
                use exports::warden::policy::stats::{Metric, MetricKind};
                FIGURES
                    .iter()
                    .map(|figure| {
                        let (name, help, kind) = figure.metric();
                        Metric {
                            name: name.to_owned(),
                            help: help.to_owned(),
                            kind: match kind {
                                $crate::stats::MetricKind::Counter => MetricKind::Counter,
                                $crate::stats::MetricKind::Gauge => MetricKind::Gauge,
                            },
                            labels: vec!["service".to_owned()],
                        }
                    })
                    .collect()
            }

            fn observe(service: String, event: exports::warden::policy::stats::Event, _now_ms: u64) {
                use $crate::stats::Event;
                use exports::warden::policy::stats::Event as Wit;
                let event = match event {
                    Wit::Spawned(pid) => Event::Spawned(pid),
                    Wit::Exited(pid) => Event::Exited(pid),
                    Wit::Accepted(id) => Event::Accepted(id),
                    Wit::Closed(id) => Event::Closed(id),
                    Wit::Evicted(id) => Event::Evicted(id),
                    Wit::Authenticated(id) => Event::Authenticated(id),
                    Wit::Full => Event::Full,
                    Wit::Throttled(ms) => Event::Throttled(ms),
                    Wit::IdleAsked(pid) => Event::IdleAsked(pid),
                };
                TALLY.with(|tally| tally.borrow_mut().observe(&service, event));
            }

            fn report(_now_ms: u64) -> Vec<exports::warden::policy::stats::Sample> {
                TALLY.with(|tally| {
                    tally
                        .borrow()
                        .report(FIGURES)
                        .into_iter()
                        .map(|(metric, service, value)| exports::warden::policy::stats::Sample {
                            metric: metric.to_owned(),
                            labels: vec![service],
                            value,
                        })
                        .collect()
                })
            }
        }
    };
}
