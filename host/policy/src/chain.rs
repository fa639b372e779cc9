//! The plugins of a configuration, answering the master through [`Policy`].
//!
//! A service's chain is: the plugins its `policies` setting names, in that
//! order; then the plugins from `plugins_dir` whose `services` globs match
//! it; then the built-in plugins whose globs match. In each of the last two
//! groups, plugins naming the service exactly come before those matching it
//! by a pattern (so the built-in `login` plugin answers for `imap-login`
//! before `dovecot`, which applies to `*`), and otherwise go by name. The
//! first plugin in the chain that exports a hook answers it; a plugin that
//! fails (trap, deadline, memory cap, invalid answer) passes the question
//! on, and when no plugin is left the [`Fallback`] answers. `defaults` are
//! merged over the whole chain instead, and `stats` events go to every
//! plugin in the chain that keeps statistics.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::answers;
use crate::bindings::exports::warden::policy::{admission, defaults, lifecycle};
use crate::bindings::warden::policy::types;
use crate::decide::{
    Admission, ClientType, ConnectionView, ExitCause, ExitView, Fallback, IdleAction, Lifecycle,
    ListenerKind, ListenerView, Millis, PeerView, Policy, ProcessView, ServiceView, SourceCounts,
};
use crate::defaults::Defaults;
use crate::stats::{Event, Metric, MetricKind, PluginMetrics, Sample, Value};
use wasmtime::Store;

use crate::runtime::{Live, Origin, Plugin, State};

/// The loaded plugins, in chain order: files, then built-ins.
#[derive(Debug, Default)]
pub struct Plugins {
    plugins: Vec<Plugin>,
    fallback: Fallback,
    /// The metrics each plugin declared, by its index.
    declared: BTreeMap<usize, Vec<Metric>>,
    /// Count and sum of each histogram's observations, by plugin index,
    /// metric index and label values.
    observed: BTreeMap<(usize, usize, Vec<String>), (u64, f64)>,
    /// Each service's chain, by its name, with the `policies` it was
    /// computed for: fixed for a plugin set, so computed once.
    chains: RefCell<HashMap<String, KnownChain>>,
    /// The last report of each built-in plugin that has observed nothing
    /// since, by its index, with the instance it came from. A built-in's
    /// figures are counters and gauges tallied in its instance from what
    /// it observed, so its report is the same until it observes more or
    /// its instance is made anew: it is not asked again till then (about
    /// once a second, a sandboxed call with cold caches each, for every
    /// built-in, most of whose services are quiet or not configured).
    unchanged: BTreeMap<usize, (u64, PluginMetrics)>,
}

/// A service's chain: indices into the plugins, in order.
type Chain = Arc<[usize]>;

/// A chain computed for a service, and the `policies` it was computed for.
#[derive(Debug)]
struct KnownChain {
    policies: Vec<String>,
    chain: Chain,
}

impl Plugins {
    /// The plugins `loaded`, ordered for chains: files by name, then
    /// built-ins. A file plugin with a built-in's name replaces it.
    pub fn new(loaded: Vec<Plugin>) -> Plugins {
        let (mut files, builtins): (Vec<Plugin>, Vec<Plugin>) = loaded
            .into_iter()
            .partition(|p| matches!(p.origin(), Origin::File { .. }));
        files.sort_by(|a, b| a.identity().name.cmp(&b.identity().name));
        let mut plugins = files;
        for builtin in builtins {
            if !plugins
                .iter()
                .any(|p| p.identity().name == builtin.identity().name)
            {
                plugins.push(builtin);
            }
        }
        let mut chained = Plugins {
            plugins,
            ..Plugins::default()
        };
        chained.declare();
        chained
    }

    /// Asks every plugin that keeps statistics which metrics it reports.
    fn declare(&mut self) {
        // Each family shown on the metrics endpoint, and whose it is.
        let mut families: HashMap<String, String> = HashMap::new();
        for (index, plugin) in self.plugins.iter_mut().enumerate() {
            let Some(hook) = plugin.stats_hook() else {
                continue;
            };
            let Ok(answer) = plugin.call("stats", "", async |store, live| {
                live.guest(&mut *store, &hook)?
                    .call_declare(&mut *store)
                    .await
            }) else {
                continue;
            };
            let name = plugin.identity().name.clone();
            match answers::declared(answer) {
                Ok(metrics) => {
                    let taken = metrics.iter().find_map(|metric| {
                        let family = crate::stats::family(&name, &metric.name);
                        families.get(&family).map(|owner| (family, owner.clone()))
                    });
                    if let Some((family, owner)) = taken {
                        plugin.invalid(
                            "stats",
                            "",
                            format!(
                                "its metric would be shown as warden_{family}, as plugin {owner}'s is; rename one of the two plugins or metrics"
                            ),
                        );
                        continue;
                    }
                    for metric in &metrics {
                        families.insert(crate::stats::family(&name, &metric.name), name.clone());
                    }
                    self.declared.insert(index, metrics);
                }
                Err(reason) => {
                    plugin.invalid("stats", "", reason);
                }
            }
        }
    }

    /// Every plugin, in chain order.
    pub fn plugins(&self) -> &[Plugin] {
        &self.plugins
    }

    /// The plugins, to be reloaded.
    pub fn into_plugins(self) -> Vec<Plugin> {
        self.plugins
    }

    /// The indices of the chain of the service `name` whose `policies`
    /// setting is `policies`, computed once per plugin set.
    fn chain(&self, name: &str, policies: &[String]) -> Chain {
        let mut chains = self.chains.borrow_mut();
        if let Some(known) = chains.get(name)
            && known.policies == policies
        {
            return Arc::clone(&known.chain);
        }
        let chain: Chain = self.compute_chain(name, policies).into();
        chains.insert(
            name.to_owned(),
            KnownChain {
                policies: policies.to_vec(),
                chain: Arc::clone(&chain),
            },
        );
        chain
    }

    fn compute_chain(&self, name: &str, policies: &[String]) -> Vec<usize> {
        let mut chain: Vec<usize> = policies
            .iter()
            .filter_map(|policy| {
                self.plugins
                    .iter()
                    .position(|p| p.identity().name == *policy)
            })
            .collect();
        for builtin in [false, true] {
            for exact in [true, false] {
                for (index, plugin) in self.plugins.iter().enumerate() {
                    let group = matches!(plugin.origin(), Origin::Builtin) == builtin
                        && plugin.names_exactly(name) == exact;
                    if group && plugin.applies_to(name) && !chain.contains(&index) {
                        chain.push(index);
                    }
                }
            }
        }
        chain
    }

    /// The names of the plugins in the chain of the service `name`, in
    /// order.
    pub fn chain_of(&self, name: &str, policies: &[String]) -> Vec<&str> {
        self.chain(name, policies)
            .iter()
            .filter_map(|&index| self.plugins.get(index))
            .map(|plugin| plugin.identity().name.as_str())
            .collect()
    }

    /// The defaults the chain of the service `name` supplies on a machine
    /// with `cpus` CPUs, merged: each setting from the first plugin that
    /// supplies it. A plugin whose call fails, or whose answer fails its
    /// check, makes the whole answer an error: a service must not quietly
    /// lose its user or chroot because a plugin missed its deadline.
    pub fn defaults(
        &mut self,
        name: &str,
        policies: &[String],
        cpus: u32,
    ) -> Result<Defaults, String> {
        let mut merged = Defaults::default();
        let machine = defaults::Machine { cpus };
        for &index in self.chain(name, policies).iter() {
            let Some(plugin) = self.plugins.get_mut(index) else {
                continue;
            };
            let Some(hook) = plugin.defaults() else {
                continue;
            };
            let plugin_name = plugin.identity().name.clone();
            let answer = plugin
                .call("defaults", name, async |store, live| {
                    live.guest(&mut *store, &hook)?
                        .call_defaults(&mut *store, name, machine)
                        .await
                })
                .map_err(|failure| format!("the plugin {plugin_name} {failure}"))?;
            let Some(settings) = answer else {
                continue;
            };
            if let Err(reason) = answers::defaults(&settings) {
                let failure = plugin.invalid("defaults", name, reason);
                return Err(format!("the plugin {plugin_name} {failure}"));
            }
            merged.merge(&plugin_name, settings);
        }
        Ok(merged)
    }

    /// Tells every plugin in `service`'s chain that keeps statistics what
    /// happened.
    pub fn observe(&mut self, service: &str, policies: &[String], event: Event, now_ms: Millis) {
        for &index in self.chain(service, policies).iter() {
            let Some(plugin) = self.plugins.get_mut(index) else {
                continue;
            };
            let Some(hook) = plugin.stats_hook() else {
                continue;
            };
            let _ = plugin.call("stats", service, async |store, live| {
                live.guest(&mut *store, &hook)?
                    .call_observe(&mut *store, service, event.wit(), now_ms)
                    .await
            });
            self.unchanged.remove(&index);
        }
    }

    /// Every plugin's metrics with their samples now. A plugin whose report
    /// fails its check reports nothing this time. A built-in plugin that
    /// has observed nothing since its last report, in the same instance, is
    /// not asked again: its last report stands.
    pub fn report(&mut self, now_ms: Millis) -> Vec<PluginMetrics> {
        let mut reports = Vec::new();
        for (&index, declared) in &self.declared {
            let Some(plugin) = self.plugins.get_mut(index) else {
                continue;
            };
            // A quarantined plugin reports nothing.
            let Some(hook) = plugin.stats_hook() else {
                continue;
            };
            if let Some((instance, report)) = self.unchanged.get(&index)
                && plugin.live_instance() == Some(*instance)
            {
                reports.push(report.clone());
                continue;
            }
            let Ok(answer) = plugin.call("stats", "", async |store, live| {
                live.guest(&mut *store, &hook)?
                    .call_report(&mut *store, now_ms)
                    .await
            }) else {
                continue;
            };
            let samples = match answers::samples(declared, answer) {
                Ok(samples) => samples,
                Err(reason) => {
                    plugin.invalid("stats", "", reason);
                    continue;
                }
            };
            let mut metrics: Vec<(Metric, Vec<Sample>)> =
                declared.iter().map(|m| (m.clone(), Vec::new())).collect();
            for (metric, labels, value) in samples {
                let Some((declaration, samples)) = metrics.get_mut(metric) else {
                    continue;
                };
                let value = if declaration.kind == MetricKind::Histogram {
                    let key = (index, metric, labels.clone());
                    if !self.observed.contains_key(&key)
                        && self.observed.len() >= answers::MAX_SERIES
                    {
                        // A plugin inventing labels cannot grow the master
                        // without end; the series is left out.
                        continue;
                    }
                    let seen = self.observed.entry(key).or_insert((0, 0.0));
                    seen.0 += 1;
                    seen.1 += value;
                    Value::Observed {
                        count: seen.0,
                        sum: seen.1,
                    }
                } else {
                    Value::Plain(value)
                };
                samples.push(Sample { labels, value });
            }
            let report = PluginMetrics {
                plugin: plugin.identity().name.clone(),
                metrics,
            };
            // A histogram's samples are observations, each counted once:
            // a plugin declaring one is asked every time.
            if matches!(plugin.origin(), Origin::Builtin)
                && declared.iter().all(|m| m.kind != MetricKind::Histogram)
                && let Some(instance) = plugin.live_instance()
            {
                self.unchanged.insert(index, (instance, report.clone()));
            }
            reports.push(report);
        }
        reports
    }
}

fn wit_service(service: &ServiceView<'_>) -> types::Service {
    types::Service {
        name: service.name.to_owned(),
        kind: service.kind.into(),
        protocol: service.protocol.to_owned(),
        client_limit: service.client_limit,
        process_limit: service.process_limit,
        process_min_avail: service.process_min_avail,
        service_count: service.service_count,
        idle_kill_ms: service.idle_kill_ms,
        per_source_limit: service.per_source_limit,
        per_source_rate: service.per_source_rate,
    }
}

fn wit_processes(processes: &[ProcessView]) -> Vec<types::Process> {
    processes
        .iter()
        .map(|p| types::Process {
            pid: p.pid,
            started_ms: p.started_ms,
            ready: p.ready,
            clients: p.clients,
            idle_since_ms: p.idle_since_ms,
            asked_to_exit_ms: p.asked_to_exit_ms,
            retired: p.retired,
        })
        .collect()
}

impl Plugins {
    /// Whether a plugin file (not a built-in plugin) of `service`'s chain
    /// has what `exports` looks for.
    fn file_exports(&self, service: &ServiceView<'_>, exports: impl Fn(&Plugin) -> bool) -> bool {
        self.chain(service.name, service.policies)
            .iter()
            .any(|&index| {
                self.plugins.get(index).is_some_and(|plugin| {
                    !matches!(plugin.origin(), Origin::Builtin) && exports(plugin)
                })
            })
    }

    /// Asks `service`'s chain: the first plugin exporting the hook (its
    /// indices from `indices`) is called with `call`; an answer `check`
    /// refuses counts as that plugin's failure, and the question passes on,
    /// as it does after a failed call. `None` when no plugin answered.
    fn ask<I, T, R>(
        &mut self,
        service: &ServiceView<'_>,
        hook: &str,
        indices: impl Fn(&Plugin) -> Option<I>,
        mut call: impl AsyncFnMut(&I, &mut Store<State>, &mut Live) -> wasmtime::Result<T>,
        mut check: impl FnMut(T) -> Result<R, String>,
    ) -> Option<R> {
        for &index in self.chain(service.name, service.policies).iter() {
            let Some(plugin) = self.plugins.get_mut(index) else {
                continue;
            };
            let Some(indices) = indices(plugin) else {
                continue;
            };
            let Ok(answer) = plugin.call(hook, service.name, async |store, live| {
                call(&indices, store, live).await
            }) else {
                continue;
            };
            match check(answer) {
                Ok(decision) => return Some(decision),
                Err(reason) => {
                    plugin.invalid(hook, service.name, reason);
                }
            }
        }
        None
    }
}

impl Policy for Plugins {
    fn scaling(
        &mut self,
        service: &ServiceView<'_>,
        processes: &[ProcessView],
        at_startup: bool,
        busy: bool,
    ) -> u32 {
        let (wit_service, wit_processes) = (wit_service(service), wit_processes(processes));
        let limit = service.process_limit;
        let answer = self.ask(
            service,
            "scaling",
            Plugin::scaling,
            async |hook, store, live| {
                live.guest(&mut *store, hook)?
                    .call_start(&mut *store, &wit_service, &wit_processes, at_startup, busy)
                    .await
            },
            |count| answers::scaling(count, limit),
        );
        answer.unwrap_or_else(|| self.fallback.scaling(service, processes, at_startup, busy))
    }

    fn idle(
        &mut self,
        service: &ServiceView<'_>,
        processes: &[ProcessView],
        lowwater: u32,
        now_ms: u64,
    ) -> Vec<IdleAction> {
        let (wit_service, wit_processes) = (wit_service(service), wit_processes(processes));
        let answer = self.ask(
            service,
            "idle",
            Plugin::idle,
            async |hook, store, live| {
                live.guest(&mut *store, hook)?
                    .call_retire(&mut *store, &wit_service, &wit_processes, lowwater, now_ms)
                    .await
            },
            |actions| answers::idle(processes, actions),
        );
        answer.unwrap_or_else(|| self.fallback.idle(service, processes, lowwater, now_ms))
    }

    fn lifecycle(&mut self, service: &ServiceView<'_>, exit: &ExitView) -> Lifecycle {
        // The built-in plugins throttle only after an exit that failed
        // (the SDK's `dovecot::throttle`): with no plugin file of the chain
        // exporting the hook, the service simply goes on after any other,
        // and the chain is not asked. An inetd service's processes end
        // cleanly at every connection.
        if !exit.failed() && !self.file_exports(service, |plugin| plugin.lifecycle().is_some()) {
            return Lifecycle::Continue;
        }
        let wit_service = wit_service(service);
        let wit_exit = lifecycle::Exit {
            pid: exit.pid,
            cause: match exit.cause {
                ExitCause::Code(code) => lifecycle::Cause::Exited(code),
                ExitCause::Signal(signal) => lifecycle::Cause::Killed(signal),
            },
            age_ms: exit.age_ms,
            was_ready: exit.was_ready,
            was_asked: exit.was_asked,
            service_proven: exit.service_proven,
            failures_in_last_second: exit.failures_in_last_second,
            last_throttle_ms: exit.last_throttle_ms,
        };
        let answer = self.ask(
            service,
            "lifecycle",
            Plugin::lifecycle,
            async |hook, store, live| {
                live.guest(&mut *store, hook)?
                    .call_after_exit(&mut *store, &wit_service, wit_exit)
                    .await
            },
            answers::lifecycle,
        );
        answer.unwrap_or_else(|| self.fallback.lifecycle(service, exit))
    }

    fn typing(
        &mut self,
        service: &ServiceView<'_>,
        listener: &ListenerView,
        peer: Option<&PeerView>,
    ) -> ClientType {
        let wit_service = wit_service(service);
        let wit_listener = wit_listener(listener);
        let wit_peer = peer.map(wit_peer);
        let answer = self.ask(
            service,
            "typing",
            Plugin::typing,
            async |hook, store, live| {
                live.guest(&mut *store, hook)?
                    .call_classify(&mut *store, &wit_service, &wit_listener, wit_peer.as_ref())
                    .await
            },
            answers::typing,
        );
        answer.unwrap_or_else(|| self.fallback.typing(service, listener, peer))
    }

    fn admit(
        &mut self,
        service: &ServiceView<'_>,
        connection: &ConnectionView,
        counts: SourceCounts,
        now_ms: Millis,
    ) -> Admission {
        // The built-in plugins refuse only by the per-source settings: with
        // none set and no plugin file of the chain exporting the hook,
        // every connection is admitted, and the chain is not asked.
        if !self.file_exports(service, |plugin| plugin.admission().is_some())
            && service.per_source_limit.is_none()
            && service.per_source_rate.is_none()
        {
            return Admission::Accept;
        }
        let wit_service = wit_service(service);
        let wit_connection = wit_connection(connection);
        let wit_counts = admission::SourceCounts {
            concurrent: counts.concurrent,
            last_second: counts.last_second,
        };
        let answer = self.ask(
            service,
            "admission",
            Plugin::admission,
            async |hook, store, live| {
                live.guest(&mut *store, hook)?
                    .call_admit(
                        &mut *store,
                        &wit_service,
                        &wit_connection,
                        wit_counts,
                        now_ms,
                    )
                    .await
            },
            answers::admission,
        );
        answer.unwrap_or_else(|| self.fallback.admit(service, connection, counts, now_ms))
    }

    fn evict(
        &mut self,
        service: &ServiceView<'_>,
        candidates: &[ConnectionView],
        waiting: u32,
        now_ms: Millis,
    ) -> Vec<u64> {
        let wit_service = wit_service(service);
        let wit_candidates: Vec<types::Connection> =
            candidates.iter().map(wit_connection).collect();
        let answer = self.ask(
            service,
            "eviction",
            Plugin::eviction,
            async |hook, store, live| {
                live.guest(&mut *store, hook)?
                    .call_evict(&mut *store, &wit_service, &wit_candidates, waiting, now_ms)
                    .await
            },
            |ids| answers::eviction(candidates, ids),
        );
        answer.unwrap_or_else(|| self.fallback.evict(service, candidates, waiting, now_ms))
    }
}

fn wit_listener(listener: &ListenerView) -> types::Listener {
    types::Listener {
        name: listener.name.clone(),
        kind: match listener.kind {
            ListenerKind::Unix => types::ListenerKind::Unix,
            ListenerKind::Fifo => types::ListenerKind::Fifo,
            ListenerKind::Inet => types::ListenerKind::Inet,
        },
        path: listener.path.clone(),
        mode: listener.mode,
        owner_uid: listener.owner_uid,
        owner_gid: listener.owner_gid,
        configured_type: listener.configured_type.clone(),
        ssl: listener.ssl,
        haproxy: listener.haproxy,
    }
}

fn wit_peer(peer: &PeerView) -> types::Peer {
    types::Peer {
        address: peer.address.clone(),
        port: peer.port,
        uid: peer.uid,
        gid: peer.gid,
        pid: peer.pid,
    }
}

fn wit_connection(connection: &ConnectionView) -> types::Connection {
    types::Connection {
        id: connection.id,
        listener: connection.listener.clone(),
        peer: wit_peer(&connection.peer),
        accepted_ms: connection.accepted_ms,
        authenticated: connection.authenticated,
        pid: connection.pid,
    }
}
