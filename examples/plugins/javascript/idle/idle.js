// A warden idle policy in JavaScript: the same policy as
// ../../python/idle/app.py. Never retire a process younger than ten seconds;
// otherwise ask the idle processes beyond `process-min-avail` to exit, the
// oldest first, never more than stayed idle since the last call (lowwater).
//
// Build it into a component, test it against its scenario, then drop the
// .wasm into warden's plugins_dir:
//
//     ./build.sh js-idle.wasm
//     warden policy test js-idle.wasm ../../scenarios/idle.toml
//
// How the WIT maps to JavaScript (componentize-js 0.23.0):
//
// - Each exported interface is an exported object named after it in
//   camelCase (`plugin`, `idle`), holding its functions in camelCase.
// - Imports come from 'PACKAGE/INTERFACE@VERSION': 'warden:policy/host@0.1.0'.
// - Record fields are camelCase (`startedMs`, `processMinAvail`).
// - u64 (every `millis`) arrives as a BigInt, so time arithmetic is BigInt
//   arithmetic (`nowMs - p.startedMs >= 10_000n`; mixing BigInt and Number
//   in arithmetic throws a TypeError). u32 (pids, counts) arrives as a Number.
// - An option is `undefined` when none (never `null`).
// - An enum is its case's name as a string: 'debug', 'login'.
// - A variant is `{ tag: 'case-name', val }`, the tag spelled as in the WIT
//   (kebab-case): `{ tag: 'ask-to-exit', val: pid }`.
// - A tuple is an array: `[key, value]`.
//
// The top level of this module runs once, when componentize-js builds the
// component (the engine is snapshotted after it).

import { log } from 'warden:policy/host@0.1.0';

// A process younger than this, in milliseconds (a u64), is never retired.
const YOUNG_MS = 10_000n;

// Orders processes by when they started, the oldest first.
function byStart(a, b) {
  return a.startedMs < b.startedMs ? -1 : a.startedMs > b.startedMs ? 1 : 0;
}

// warden:policy/plugin: who the plugin is. Called once, at load.
export const plugin = {
  describe() {
    return {
      name: 'js-idle',
      version: '0.1.0',
      description: 'retire idle processes beyond process-min-avail, never one younger than 10 s',
      services: ['*'],
    };
  },
};

// warden:policy/idle: which idle processes to retire, once per idle-kill-ms.
export const idle = {
  retire(service, processes, lowwater, nowMs) {
    // Idle now, not already asked, and old enough.
    const idleOnes = processes.filter(
      (p) =>
        p.idleSinceMs !== undefined &&
        p.askedToExitMs === undefined &&
        nowMs - p.startedMs >= YOUNG_MS,
    );
    const beyond = Math.min(lowwater, idleOnes.length) - service.processMinAvail;
    if (beyond <= 0) {
      return [];
    }
    // Array.prototype.sort is stable: processes started together keep the
    // order warden gave them.
    const chosen = idleOnes.sort(byStart).slice(0, beyond);
    log('debug', `asking ${chosen.length} idle processes of ${service.name} to exit`, [
      ['service', service.name],
    ]);
    return chosen.map((p) => ({ tag: 'ask-to-exit', val: p.pid }));
  },
};
