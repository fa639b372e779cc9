"""A warden idle policy in Python: never retire a process younger than ten
seconds; otherwise ask the idle processes beyond `process-min-avail` to exit,
the oldest first.

Build it into a component with componentize-py (see README.md), then drop
the `.wasm` into warden's `plugins_dir`.
"""

from typing import List

from wit_world import exports
from wit_world.exports import idle, plugin
from wit_world.imports import host, types

# A process younger than this is never retired.
YOUNG_MS = 10_000


class Plugin(exports.Plugin):
    def describe(self) -> plugin.Identity:
        return plugin.Identity(
            name="python-idle",
            version="0.1.0",
            description="retire idle processes beyond process-min-avail, never one younger than 10 s",
            services=["*"],
        )


class Idle(exports.Idle):
    def retire(
        self,
        service: types.Service,
        processes: List[types.Process],
        lowwater: int,
        now_ms: int,
    ) -> List[idle.Action]:
        idle_ones = [
            p
            for p in processes
            if p.idle_since_ms is not None
            and p.asked_to_exit_ms is None
            and now_ms - p.started_ms >= YOUNG_MS
        ]
        beyond = min(lowwater, len(idle_ones)) - service.process_min_avail
        if beyond <= 0:
            return []
        idle_ones.sort(key=lambda p: p.started_ms)
        chosen = idle_ones[:beyond]
        host.log(
            host.Level.DEBUG,
            f"asking {len(chosen)} idle processes of {service.name} to exit",
            [("service", service.name)],
        )
        return [idle.Action_AskToExit(p.pid) for p in chosen]
