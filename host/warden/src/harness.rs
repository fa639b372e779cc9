//! `warden policy test`: a plugin's decisions replayed from a scenario,
//! before the plugin is deployed.
//!
//! A scenario is a TOML file: the `[service]` the plugin decides for (its
//! settings as the policy sees them), then `[[step]]`s, each one hook call
//! at a time on the scenario's clock with its inputs — processes, an exit,
//! a connection, candidates, a listener — and what is expected of the
//! answer, exactly or as a bound:
//!
//! ```toml
//! [service]
//! name = "imap-login"
//! type = "login"
//! client_limit = 1
//! process_min_avail = 1
//! idle_kill = "60s"
//!
//! [[step]]
//! at = "90s"
//! hook = "idle"
//! lowwater = 3
//! processes = [
//!   { pid = 101, started = "0s", clients = 0, idle_since = "10s" },
//!   { pid = 102, started = "85s", clients = 0, idle_since = "85s" },
//! ]
//! expect = { actions = ["ask-to-exit 101"], never = [102] }
//! ```
//!
//! The plugin runs in the runtime the master uses, with the same budgets
//! (deadline, memory cap), the same checks of every answer and the same
//! fallback: a call that fails is reported with why, and the step fails,
//! whatever the fallback answered. What the plugin logs is shown.
//!
//! Hooks, their inputs and what `expect` may say:
//!
//! | hook | inputs | expect |
//! |---|---|---|
//! | `scaling` | `processes`, `at_startup`, `busy` | `start`, `at_least`, `at_most` |
//! | `idle` | `processes`, `lowwater` | `actions` (`ask-to-exit PID`, `terminate PID`, `kill PID`), `at_most`, `never` |
//! | `lifecycle` | `exit` | `decision` (`continue`, `throttle`, `throttle MS`, `give-up`) |
//! | `admission` | `connection`, `concurrent`, `last_second` | `decision` (`accept`, `reject`, `delay`, `delay MS`) |
//! | `eviction` | `candidates`, `waiting` | `victims`, `at_most`, `never` |
//! | `typing` | `listener`, `peer` | `decision` (the client type) |
//!
//! `warden policy record SERVICE` writes a scenario from a running
//! master's calls for one service, each step expecting exactly what the
//! master decided: replayed against another plugin, it shows where that
//! plugin would have decided otherwise.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use warden_policy::{
    Admission, Budget, ConnectionView, ExitCause, ExitView, IdleAction, Lifecycle, ListenerKind,
    ListenerView, PeerView, Plugin, Plugins, Policy, ProcessView, ServiceKind, ServiceView,
    SourceCounts,
};

use crate::config::value::{Duration, Size};

mod recorded;

/// Why a scenario could not be run.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read the scenario {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a scenario.
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Where.
        line: usize,
        /// Where on the line.
        column: usize,
        /// What is wrong.
        message: String,
    },
}

/// Why [`replay`] could not replay a scenario.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The scenario could not be read, or is not one.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// The plugin could not be loaded.
    #[error("{0}")]
    Plugin(String),
}

/// Replays the scenario at `scenario` against the plugin component at
/// `plugin` (or `builtin:NAME`), as `warden policy test` does: the same
/// runtime, budgets, answer checks and fallback. The library form, for a
/// plugin's own `cargo test`:
///
/// ```no_run
/// use std::path::Path;
/// use warden::harness::{Outcome, replay, report};
///
/// let outcomes = replay(
///     Path::new("target/wasm32-wasip2/release/my_idle.wasm"),
///     Path::new("tests/idle.toml"),
/// )
/// .expect("the scenario replays");
/// assert!(outcomes.iter().all(Outcome::passed), "{}", report(&outcomes));
/// ```
pub fn replay(plugin: &Path, scenario: &Path) -> Result<Vec<Outcome>, ReplayError> {
    let scenario = Scenario::read(scenario)?;
    let budget = scenario.budget().unwrap_or_default();
    let plugin = crate::master::load_plugin(plugin, budget).map_err(ReplayError::Plugin)?;
    Ok(run(plugin, &scenario))
}

/// A scenario: a service and the calls made for it.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default, skip_serializing_if = "PluginSpec::is_empty")]
    plugin: PluginSpec,
    service: ServiceSpec,
    #[serde(rename = "step", default)]
    steps: Vec<Step>,
    /// The directory of the scenario file, which `plugin.directory` is
    /// relative to.
    #[serde(skip)]
    dir: PathBuf,
}

/// The plugin's budget and grant, as `[plugin.NAME]` gives them in the
/// configuration.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct PluginSpec {
    /// The directory the plugin may read, at `/grant`; relative to the
    /// scenario file.
    directory: Option<PathBuf>,
    /// How long one call may run.
    deadline: Option<String>,
    /// How much memory one instance may hold.
    memory: Option<String>,
}

impl PluginSpec {
    fn is_empty(&self) -> bool {
        self.directory.is_none() && self.deadline.is_none() && self.memory.is_none()
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ServiceSpec {
    name: String,
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    protocol: String,
    #[serde(default = "default_client_limit")]
    client_limit: u32,
    #[serde(default = "default_process_limit")]
    process_limit: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    process_min_avail: u32,
    /// 0 is unlimited.
    #[serde(default, skip_serializing_if = "is_zero")]
    service_count: u32,
    /// A duration, or `infinite`.
    #[serde(default)]
    idle_kill: Option<String>,
    /// 0 is no limit.
    #[serde(default, skip_serializing_if = "is_zero")]
    per_source_limit: u32,
    /// 0 is no limit.
    #[serde(default, skip_serializing_if = "is_zero")]
    per_source_rate: u32,
}

const fn default_client_limit() -> u32 {
    1000
}

const fn default_process_limit() -> u32 {
    100
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
const fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
const fn is_false(b: &bool) -> bool {
    !*b
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
const fn is_true(b: &bool) -> bool {
    *b
}

/// The hooks a step may call.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum Hook {
    Scaling,
    Idle,
    Lifecycle,
    Admission,
    Eviction,
    Typing,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Step {
    /// The clock: time since the scenario began.
    #[serde(default)]
    at: Option<String>,
    hook: Hook,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    processes: Vec<ProcessSpec>,
    #[serde(default, skip_serializing_if = "is_false")]
    at_startup: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    busy: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    lowwater: u32,
    #[serde(default)]
    exit: Option<ExitSpec>,
    #[serde(default)]
    connection: Option<ConnectionSpec>,
    #[serde(default, skip_serializing_if = "is_zero")]
    concurrent: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    last_second: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    candidates: Vec<ConnectionSpec>,
    #[serde(default, skip_serializing_if = "is_zero")]
    waiting: u32,
    #[serde(default)]
    listener: Option<ListenerSpec>,
    /// typing: the peer of a connection the master accepted itself.
    #[serde(default)]
    peer: Option<PeerSpec>,
    expect: Expect,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ProcessSpec {
    pid: u32,
    #[serde(default)]
    started: Option<String>,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    ready: bool,
    #[serde(default)]
    clients: Option<u32>,
    #[serde(default)]
    idle_since: Option<String>,
    #[serde(default)]
    asked_to_exit: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    retired: bool,
}

const fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ExitSpec {
    pid: u32,
    #[serde(default)]
    code: Option<i32>,
    #[serde(default)]
    signal: Option<i32>,
    #[serde(default)]
    age: Option<String>,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    was_ready: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    was_asked: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    service_proven: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    failures_in_last_second: u32,
    #[serde(default)]
    last_throttle: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ConnectionSpec {
    id: u64,
    #[serde(default)]
    listener: String,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    /// A unix socket peer's user.
    #[serde(default)]
    uid: Option<u32>,
    /// A unix socket peer's group.
    #[serde(default)]
    gid: Option<u32>,
    /// A unix socket peer's process.
    #[serde(default)]
    peer_pid: Option<u32>,
    #[serde(default)]
    accepted: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    authenticated: bool,
    /// The process serving it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pid: u32,
}

/// Who is at the other end, for `typing`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct PeerSpec {
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    uid: Option<u32>,
    #[serde(default)]
    gid: Option<u32>,
    #[serde(default)]
    pid: Option<u32>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ListenerSpec {
    name: String,
    /// `unix`, `fifo` or `inet`.
    #[serde(default = "unix")]
    kind: String,
    #[serde(default)]
    path: Option<String>,
    /// A socket's or fifo's permission bits.
    #[serde(default)]
    mode: Option<u32>,
    #[serde(default)]
    owner_uid: Option<u32>,
    #[serde(default)]
    owner_gid: Option<u32>,
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    configured_type: String,
    #[serde(default, skip_serializing_if = "is_false")]
    ssl: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    haproxy: bool,
}

fn unix() -> String {
    "unix".to_owned()
}

/// What a step expects of the answer.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// scaling: exactly this many processes started.
    start: Option<u32>,
    /// idle: exactly these actions, in order.
    actions: Option<Vec<String>>,
    /// eviction: exactly these victims, in order.
    victims: Option<Vec<u64>>,
    /// lifecycle, admission, typing: the decision.
    decision: Option<String>,
    /// scaling: at least this many; idle, eviction: at least this many
    /// actions or victims.
    at_least: Option<u32>,
    /// As `at_least`, at most.
    at_most: Option<u32>,
    /// idle: no action on these pids; eviction: none of these ids.
    never: Option<Vec<u64>>,
}

impl Scenario {
    /// Reads the scenario at `path`.
    pub fn read(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_owned(),
            source,
        })?;
        Scenario::parse(path, &text)
    }

    /// Parses `text`, read from `path`, and checks every duration and
    /// that each step has the inputs and expectation its hook needs.
    pub fn parse(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
        let at = |offset: usize, message: String| {
            let before = text.get(..offset).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = offset - before.rfind('\n').map_or(0, |n| n + 1) + 1;
            ScenarioError::Invalid {
                path: path.to_owned(),
                line,
                column,
                message,
            }
        };
        let mut scenario: Scenario = toml::from_str(text).map_err(|error| {
            let offset = error.span().map_or(0, |span| span.start);
            at(offset, error.message().to_owned())
        })?;
        scenario.dir = path.parent().map(Path::to_owned).unwrap_or_default();
        if let Err(message) = scenario.check() {
            // Where the step is, for the line number.
            let offset = message
                .0
                .and_then(|n| text.match_indices("[[step]]").nth(n))
                .map_or(0, |(offset, _)| offset);
            return Err(at(offset, message.1));
        }
        Ok(scenario)
    }

    /// Every problem a step has that the format cannot say: durations
    /// that do not read, a hook without its input or with the wrong
    /// expectation. The step's index with the message.
    fn check(&self) -> Result<(), (Option<usize>, String)> {
        self.budget().map_err(|e| (None, format!("plugin: {e}")))?;
        if let Some(idle_kill) = &self.service.idle_kill
            && idle_kill != "infinite"
        {
            millis(Some(idle_kill)).map_err(|e| (None, format!("service.idle_kill: {e}")))?;
        }
        for (index, step) in self.steps.iter().enumerate() {
            step.check()
                .map_err(|e| (Some(index), format!("step {}: {e}", index + 1)))?;
        }
        Ok(())
    }
}

impl Scenario {
    /// The plugin's budget: warden's defaults, and what `[plugin]` says.
    pub fn budget(&self) -> Result<Budget, String> {
        let mut budget = Budget::default();
        if let Some(deadline) = &self.plugin.deadline {
            budget.deadline = Duration::parse(deadline)?.to_std();
        }
        if let Some(memory) = &self.plugin.memory {
            budget.memory = usize::try_from(Size::parse(memory)?.0).unwrap_or(usize::MAX);
        }
        Ok(budget)
    }
}

impl Step {
    fn check(&self) -> Result<(), String> {
        millis(self.at.as_deref())?;
        for process in &self.processes {
            for time in [
                &process.started,
                &process.idle_since,
                &process.asked_to_exit,
            ] {
                millis(time.as_deref())?;
            }
        }
        let connections = self.connection.iter().chain(&self.candidates);
        for connection in connections {
            millis(connection.accepted.as_deref())?;
        }
        if let Some(exit) = &self.exit {
            millis(exit.age.as_deref())?;
            millis(exit.last_throttle.as_deref())?;
        }
        let expect = &self.expect;
        let (needs, allowed): (Option<&str>, &[&str]) = match self.hook {
            Hook::Scaling => (None, &["start", "at_least", "at_most"]),
            Hook::Idle => (None, &["actions", "at_least", "at_most", "never"]),
            Hook::Lifecycle => (self.exit.is_none().then_some("exit"), &["decision"]),
            Hook::Admission => (
                self.connection.is_none().then_some("connection"),
                &["decision"],
            ),
            Hook::Eviction => (None, &["victims", "at_least", "at_most", "never"]),
            Hook::Typing => (self.listener.is_none().then_some("listener"), &["decision"]),
        };
        if let Some(input) = needs {
            return Err(format!("the {:?} hook needs `{input}`", self.hook));
        }
        let given = [
            ("start", expect.start.is_some()),
            ("actions", expect.actions.is_some()),
            ("victims", expect.victims.is_some()),
            ("decision", expect.decision.is_some()),
            ("at_least", expect.at_least.is_some()),
            ("at_most", expect.at_most.is_some()),
            ("never", expect.never.is_some()),
        ];
        if let Some((key, _)) = given
            .iter()
            .find(|(key, set)| *set && !allowed.contains(key))
        {
            return Err(format!(
                "expect.{key} does not apply to the {:?} hook; it may expect {}",
                self.hook,
                allowed.join(", ")
            ));
        }
        if given.iter().all(|(_, set)| !set) {
            return Err(format!(
                "`expect` says nothing; give one of {}",
                allowed.join(", ")
            ));
        }
        if let Some(actions) = &expect.actions {
            for action in actions {
                parse_action(action)?;
            }
        }
        Ok(())
    }
}

/// A duration of the scenario in milliseconds; none is 0.
fn millis(text: Option<&str>) -> Result<u64, String> {
    text.map_or(Ok(0), |text| Duration::parse(text).map(Duration::as_millis))
}

/// The idle action written `ask-to-exit PID`, `terminate PID` or `kill PID`.
fn parse_action(text: &str) -> Result<IdleAction, String> {
    let invalid = || {
        format!(
            "`{text}` is not an idle action; write `ask-to-exit PID`, `terminate PID` or `kill PID`"
        )
    };
    let (verb, pid) = text.split_once(' ').ok_or_else(invalid)?;
    let pid: u32 = pid.trim().parse().map_err(|_| invalid())?;
    match verb {
        "ask-to-exit" => Ok(IdleAction::AskToExit(pid)),
        "terminate" => Ok(IdleAction::Terminate(pid)),
        "kill" => Ok(IdleAction::Kill(pid)),
        _ => Err(invalid()),
    }
}

fn action_text(action: &IdleAction) -> String {
    match action {
        IdleAction::AskToExit(pid) => format!("ask-to-exit {pid}"),
        IdleAction::Terminate(pid) => format!("terminate {pid}"),
        IdleAction::Kill(pid) => format!("kill {pid}"),
    }
}

/// What one step answered, and whether it met its expectation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The step, from 1.
    pub step: usize,
    /// The hook called.
    pub hook: String,
    /// The clock.
    pub at_ms: u64,
    /// The answer, as text.
    pub answer: String,
    /// How the plugin failed, when warden's fallback answered instead.
    pub plugin_failure: Option<String>,
    /// What the answer missed of the expectation.
    pub missed: Option<String>,
}

impl Outcome {
    /// Whether the plugin answered, and as expected.
    pub fn passed(&self) -> bool {
        self.plugin_failure.is_none() && self.missed.is_none()
    }
}

/// Runs every step of `scenario` against `plugin`, in the master's
/// runtime with its budgets, answer checks and fallback.
pub fn run(mut plugin: Plugin, scenario: &Scenario) -> Vec<Outcome> {
    let grant = scenario
        .plugin
        .directory
        .as_ref()
        .map(|d| scenario.dir.join(d));
    plugin.configure(scenario.budget().unwrap_or_default(), grant);
    let name = plugin.identity().name.clone();
    let mut plugins = Plugins::new(vec![plugin]);
    let policies = vec![name];
    let spec = &scenario.service;
    let idle_kill_ms = match spec.idle_kill.as_deref() {
        Some("infinite") => None,
        other => Some(millis(other).unwrap_or_default()).filter(|ms| *ms > 0),
    };
    let service = ServiceView {
        name: &spec.name,
        kind: ServiceKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == spec.kind)
            .unwrap_or(ServiceKind::Default),
        protocol: &spec.protocol,
        policies: &policies,
        service_count: Some(spec.service_count).filter(|n| *n > 0),
        client_limit: spec.client_limit,
        process_limit: spec.process_limit,
        process_min_avail: spec.process_min_avail,
        idle_kill_ms,
        per_source_limit: Some(spec.per_source_limit).filter(|n| *n > 0),
        per_source_rate: Some(spec.per_source_rate).filter(|n| *n > 0),
    };
    scenario
        .steps
        .iter()
        .enumerate()
        .map(|(index, step)| {
            let failures_before = failures(&plugins);
            let now = millis(step.at.as_deref()).unwrap_or_default();
            let (answer, missed) = call(&mut plugins, &service, step, now);
            let plugin = plugins.plugins().first();
            let plugin_failed = if failures(&plugins) > failures_before {
                let why = plugin
                    .and_then(Plugin::last_failure)
                    .map_or_else(|| "failed".to_owned(), ToString::to_string);
                Some(format!("the plugin {why}; warden's fallback answered"))
            } else if plugin.is_some_and(Plugin::quarantined) {
                // A quarantined plugin is not asked: its failures before
                // made warden answer instead, as it would in the master.
                Some(
                    "the plugin is quarantined after repeated failures; warden's fallback answered"
                        .to_owned(),
                )
            } else {
                None
            };
            Outcome {
                step: index + 1,
                hook: format!("{:?}", step.hook).to_lowercase(),
                at_ms: now,
                answer,
                plugin_failure: plugin_failed,
                missed,
            }
        })
        .collect()
}

fn failures(plugins: &Plugins) -> u64 {
    plugins.plugins().first().map_or(0, |p| p.stats().failures)
}

/// Makes the call `step` describes; the answer as text, and what it
/// missed of the expectation.
fn call(
    plugins: &mut Plugins,
    service: &ServiceView<'_>,
    step: &Step,
    now: u64,
) -> (String, Option<String>) {
    let expect = &step.expect;
    let processes: Vec<ProcessView> = step.processes.iter().map(process_view).collect();
    match step.hook {
        Hook::Scaling => {
            let start = plugins.scaling(service, &processes, step.at_startup, step.busy);
            let missed = bounds(start, expect.at_least, expect.at_most)
                .or_else(|| exactly(&start, expect.start.as_ref()));
            (format!("start {start}"), missed)
        }
        Hook::Idle => {
            let actions = plugins.idle(service, &processes, step.lowwater, now);
            let texts: Vec<String> = actions.iter().map(action_text).collect();
            let pids = actions.iter().map(|a| match a {
                IdleAction::AskToExit(pid) | IdleAction::Terminate(pid) | IdleAction::Kill(pid) => {
                    u64::from(*pid)
                }
            });
            let count = u32::try_from(actions.len()).unwrap_or(u32::MAX);
            let missed = bounds(count, expect.at_least, expect.at_most)
                .or_else(|| never(pids, expect.never.as_deref()))
                .or_else(|| exactly(&texts, expect.actions.as_ref()));
            (format!("[{}]", texts.join(", ")), missed)
        }
        Hook::Lifecycle => {
            let Some(exit) = &step.exit else {
                return (String::new(), Some("no exit".into()));
            };
            let decision = match plugins.lifecycle(service, &exit_view(exit)) {
                Lifecycle::Continue => "continue".to_owned(),
                Lifecycle::Throttle { ms } => format!("throttle {ms}"),
                Lifecycle::GiveUp { reason } => format!("give-up {reason}"),
            };
            let missed = decision_matches(&decision, expect.decision.as_deref());
            (decision, missed)
        }
        Hook::Admission => {
            let Some(connection) = &step.connection else {
                return (String::new(), Some("no connection".into()));
            };
            let counts = SourceCounts {
                concurrent: step.concurrent,
                last_second: step.last_second,
            };
            let decision = match plugins.admit(service, &connection_view(connection), counts, now) {
                Admission::Accept => "accept".to_owned(),
                Admission::Reject(reason) => format!("reject {reason}"),
                Admission::Delay(ms) => format!("delay {ms}"),
            };
            let missed = decision_matches(&decision, expect.decision.as_deref());
            (decision, missed)
        }
        Hook::Eviction => {
            let candidates: Vec<ConnectionView> =
                step.candidates.iter().map(connection_view).collect();
            let victims = plugins.evict(service, &candidates, step.waiting, now);
            let count = u32::try_from(victims.len()).unwrap_or(u32::MAX);
            let missed = bounds(count, expect.at_least, expect.at_most)
                .or_else(|| never(victims.iter().copied(), expect.never.as_deref()))
                .or_else(|| exactly(&victims, expect.victims.as_ref()));
            let shown: Vec<String> = victims.iter().map(u64::to_string).collect();
            (format!("[{}]", shown.join(", ")), missed)
        }
        Hook::Typing => {
            let Some(listener) = &step.listener else {
                return (String::new(), Some("no listener".into()));
            };
            let peer = step.peer.as_ref().map(peer_view);
            let client_type = plugins.typing(service, &listener_view(listener), peer.as_ref());
            let missed = decision_matches(&client_type.name, expect.decision.as_deref());
            (client_type.name, missed)
        }
    }
}

fn bounds(count: u32, at_least: Option<u32>, at_most: Option<u32>) -> Option<String> {
    if let Some(least) = at_least.filter(|least| count < *least) {
        return Some(format!("expected at least {least}, got {count}"));
    }
    at_most
        .filter(|most| count > *most)
        .map(|most| format!("expected at most {most}, got {count}"))
}

fn exactly<T: PartialEq + std::fmt::Debug>(got: &T, expected: Option<&T>) -> Option<String> {
    expected
        .filter(|expected| *expected != got)
        .map(|expected| format!("expected {expected:?}, got {got:?}"))
}

fn never(mut got: impl Iterator<Item = u64>, never: Option<&[u64]>) -> Option<String> {
    let never = never?;
    got.find(|id| never.contains(id))
        .map(|id| format!("{id} was chosen, which the scenario says never to choose"))
}

/// Whether `decision` is the expected one: the expectation may name only
/// the kind (`throttle`, `reject`, `delay`) or the kind and its value.
fn decision_matches(decision: &str, expected: Option<&str>) -> Option<String> {
    let expected = expected?;
    let same = decision == expected
        || decision
            .strip_prefix(expected)
            .is_some_and(|rest| rest.starts_with(' '));
    (!same).then(|| format!("expected {expected:?}, got {decision:?}"))
}

fn process_view(spec: &ProcessSpec) -> ProcessView {
    let at = |time: &Option<String>| millis(time.as_deref()).unwrap_or_default();
    ProcessView {
        pid: spec.pid,
        started_ms: at(&spec.started),
        ready: spec.ready,
        clients: spec.clients,
        idle_since_ms: spec.idle_since.as_ref().map(|_| at(&spec.idle_since)),
        asked_to_exit_ms: spec.asked_to_exit.as_ref().map(|_| at(&spec.asked_to_exit)),
        retired: spec.retired,
    }
}

fn exit_view(spec: &ExitSpec) -> ExitView {
    ExitView {
        pid: spec.pid,
        cause: match (spec.signal, spec.code) {
            (Some(signal), _) => ExitCause::Signal(signal),
            (None, code) => ExitCause::Code(code.unwrap_or(0)),
        },
        age_ms: millis(spec.age.as_deref()).unwrap_or_default(),
        was_ready: spec.was_ready,
        was_asked: spec.was_asked,
        service_proven: spec.service_proven,
        failures_in_last_second: spec.failures_in_last_second,
        last_throttle_ms: millis(spec.last_throttle.as_deref()).unwrap_or_default(),
    }
}

fn connection_view(spec: &ConnectionSpec) -> ConnectionView {
    ConnectionView {
        id: spec.id,
        listener: spec.listener.clone(),
        peer: PeerView {
            address: spec.address.clone(),
            port: spec.port,
            uid: spec.uid,
            gid: spec.gid,
            pid: spec.peer_pid,
        },
        accepted_ms: millis(spec.accepted.as_deref()).unwrap_or_default(),
        authenticated: spec.authenticated,
        pid: spec.pid,
    }
}

fn peer_view(spec: &PeerSpec) -> PeerView {
    PeerView {
        address: spec.address.clone(),
        port: spec.port,
        uid: spec.uid,
        gid: spec.gid,
        pid: spec.pid,
    }
}

fn listener_view(spec: &ListenerSpec) -> ListenerView {
    ListenerView {
        name: spec.name.clone(),
        kind: match spec.kind.as_str() {
            "fifo" => ListenerKind::Fifo,
            "inet" => ListenerKind::Inet,
            _ => ListenerKind::Unix,
        },
        path: spec.path.clone(),
        mode: spec.mode,
        owner_uid: spec.owner_uid,
        owner_gid: spec.owner_gid,
        configured_type: spec.configured_type.clone(),
        ssl: spec.ssl,
        haproxy: spec.haproxy,
    }
}

/// The report of `outcomes`: a line per step, a diff line under each
/// failure, and a summary.
pub fn report(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    for outcome in outcomes {
        let status = if outcome.passed() { "ok" } else { "FAIL" };
        let _ = writeln!(
            out,
            "step {} ({} at {}): {status}: {}",
            outcome.step,
            outcome.hook,
            Duration::from_millis(outcome.at_ms),
            outcome.answer
        );
        for why in outcome.plugin_failure.iter().chain(&outcome.missed) {
            let _ = writeln!(out, "    {why}");
        }
    }
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    let _ = writeln!(
        out,
        "{} steps, {} passed, {failed} failed",
        outcomes.len(),
        outcomes.len() - failed
    );
    out
}

/// Where two plugins decided differently on the same scenario, or one of
/// them failed and warden's fallback answered: a line per such step.
pub fn compare(old: &[Outcome], new: &[Outcome]) -> Vec<String> {
    old.iter()
        .zip(new)
        .filter(|(old, new)| {
            old.answer != new.answer || old.plugin_failure.is_some() || new.plugin_failure.is_some()
        })
        .map(|(old, new)| {
            let shown = |outcome: &Outcome| match &outcome.plugin_failure {
                Some(failure) => format!("{} ({failure})", outcome.answer),
                None => outcome.answer.clone(),
            };
            format!(
                "step {} ({} at {}): old {} / new {}",
                old.step,
                old.hook,
                Duration::from_millis(old.at_ms),
                shown(old),
                shown(new)
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recording_is_written_as_a_scenario_that_reads_back() {
        use std::time::{Duration, Instant};
        use warden_policy::{Fallback, Policy, Recorder, Recording};

        let origin = Instant::now();
        let mut recorder = Recorder::new(Fallback);
        recorder.start(Recording::new(
            "imap",
            origin,
            origin + Duration::from_secs(60),
        ));
        let policies = Vec::new();
        let service = ServiceView {
            name: "imap",
            kind: ServiceKind::Default,
            protocol: "imap",
            policies: &policies,
            service_count: Some(1),
            client_limit: 1,
            process_limit: 10,
            process_min_avail: 2,
            idle_kill_ms: None,
            per_source_limit: None,
            per_source_rate: Some(5),
        };
        let process = ProcessView {
            pid: 7,
            started_ms: 1500,
            ready: false,
            clients: Some(0),
            idle_since_ms: Some(1600),
            asked_to_exit_ms: None,
            retired: false,
        };
        recorder.scaling(&service, std::slice::from_ref(&process), true, false);
        recorder.idle(&service, &[process], 0, 90_000);
        let exit = ExitView {
            pid: 7,
            cause: ExitCause::Signal(9),
            age_ms: 88_500,
            was_ready: true,
            was_asked: false,
            service_proven: true,
            failures_in_last_second: 1,
            last_throttle_ms: 0,
        };
        recorder.lifecycle(&service, &exit);
        let recording = recorder.take("imap").expect("recorded");
        let text = Scenario::from_recording(&recording).to_toml("recorded from a test");
        assert!(text.starts_with("# recorded from a test\n"), "{text}");
        let scenario = Scenario::parse(Path::new("recorded.toml"), &text).expect(&text);
        assert_eq!(scenario.steps.len(), 3, "{text}");
        assert_eq!(scenario.service.per_source_rate, 5);
        assert_eq!(scenario.service.idle_kill.as_deref(), Some("infinite"));
        let replayed = process_view(&scenario.steps[0].processes[0]);
        assert_eq!(replayed.started_ms, 1500);
        assert!(!replayed.ready);
        let exit_again = exit_view(scenario.steps[2].exit.as_ref().expect("an exit"));
        assert_eq!(exit_again, exit);
    }

    #[test]
    fn a_scenario_reads_with_its_steps_and_expectations() {
        let scenario = Scenario::parse(
            Path::new("s.toml"),
            "[service]\nname = \"imap-login\"\ntype = \"login\"\nidle_kill = \"60s\"\n\
             [[step]]\nat = \"90s\"\nhook = \"idle\"\nlowwater = 2\n\
             processes = [{ pid = 101, clients = 0, idle_since = \"10s\" }]\n\
             expect = { actions = [\"ask-to-exit 101\"] }\n",
        )
        .expect("a scenario");
        assert_eq!(scenario.steps.len(), 1);
        assert_eq!(scenario.steps[0].hook, Hook::Idle);
    }

    #[test]
    fn a_broken_scenario_is_refused_with_its_line() {
        let error = Scenario::parse(
            Path::new("s.toml"),
            "[service]\nname = \"x\"\n\n[[step]]\nhook = \"lifecycle\"\nexpect = { decision = \"continue\" }\n",
        )
        .expect_err("no exit");
        let message = error.to_string();
        assert!(
            message.starts_with("s.toml:4:1: step 1: the Lifecycle hook needs `exit`"),
            "{message}"
        );
        let error = Scenario::parse(
            Path::new("s.toml"),
            "[service]\nname = \"x\"\n[[step]]\nhook = \"idle\"\nexpect = { start = 1 }\n",
        )
        .expect_err("start is for scaling");
        assert!(
            error
                .to_string()
                .contains("expect.start does not apply to the Idle hook"),
            "{error}"
        );
        let error = Scenario::parse(
            Path::new("s.toml"),
            "[service]\nname = \"x\"\n[[step]]\nhook = \"idle\"\nprocesess = []\nexpect = { at_most = 1 }\n",
        )
        .expect_err("a typo");
        let message = error.to_string();
        assert!(
            message.starts_with("s.toml:5:1: ") && message.contains("unknown field `procesess`"),
            "{message}"
        );
    }

    #[test]
    fn decisions_match_by_kind_or_exactly() {
        assert_eq!(decision_matches("throttle 2000", Some("throttle")), None);
        assert_eq!(
            decision_matches("throttle 2000", Some("throttle 2000")),
            None
        );
        assert!(decision_matches("throttle 4000", Some("throttle 2000")).is_some());
        assert!(decision_matches("continue", Some("throttle")).is_some());
        assert!(decision_matches("throttlex", Some("throttle")).is_some());
    }
}
