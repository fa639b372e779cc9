"""A warden admission policy in Python.

Refuses the client addresses listed, one per line, in the file `deny` of
the directory the configuration grants the plugin (`[plugin.python-admission]
directory = "..."`, seen by the plugin at `/grant`), and holds back for a
second a source that opened more than BURST connections in the last one.

Build it into a component, test it against its scenario, then drop the
`.wasm` into warden's `plugins_dir`:

    componentize-py -d ../../../../wit -w admission-plugin componentize app -o python-admission.wasm
    warden policy test python-admission.wasm scenario.toml

The class names follow the interfaces (`Plugin`, `Admission`), and every
import is at module level: componentize-py runs the module once, when it
builds the component.
"""

from wit_world import exports
from wit_world.exports import admission, plugin
from wit_world.imports import host, types

# A source opening more connections than this in one second waits.
BURST = 5

# How long it waits, in milliseconds, before it is decided again.
HOLD_MS = 1000

# The deny list in the granted directory.
DENY_FILE = "/grant/deny"


def deny_list() -> set:
    """The addresses in the deny file; none when there is no grant."""
    try:
        with open(DENY_FILE) as lines:
            return {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    except OSError:
        return set()


class Plugin(exports.Plugin):
    def describe(self) -> plugin.Identity:
        return plugin.Identity(
            name="python-admission",
            version="0.1.0",
            description="refuse denied addresses, hold back bursts from one source",
            services=["*-login"],
        )


class Admission(exports.Admission):
    def admit(
        self,
        service: types.Service,
        connection: types.Connection,
        counts: admission.SourceCounts,
        now_ms: int,
    ) -> admission.Verdict:
        address = connection.peer.address
        if address is not None and address in deny_list():
            host.log(
                host.Level.INFO,
                f"refusing {address}: on the deny list",
                [("service", service.name)],
            )
            return admission.Verdict_Reject("deny-list")
        if counts.last_second > BURST:
            return admission.Verdict_Delay(HOLD_MS)
        return admission.Verdict_Accept()
