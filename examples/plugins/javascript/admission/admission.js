// A warden admission policy in JavaScript: the same policy as
// ../../python/admission/app.py.
//
// Refuses the client addresses listed, one per line, in the file `deny` of
// the directory the configuration grants the plugin (`[plugin.js-admission]
// directory = "..."`, seen by the plugin at /grant), and holds back for a
// second a source that opened more than BURST connections in the last one.
//
// Build it into a component, test it against its scenario, then drop the
// .wasm into warden's plugins_dir:
//
//     ./build.sh js-admission.wasm
//     warden policy test js-admission.wasm scenario.toml
//
// How the WIT maps to JavaScript (componentize-js 0.23.0):
//
// - Each exported interface is an exported object named after it in
//   camelCase (`plugin`, `admission`), holding its functions in camelCase.
// - Imports come from 'PACKAGE/INTERFACE@VERSION', here
//   'warden:policy/host@0.1.0'; only interfaces the target world imports can
//   be imported (see wit/world.wit for the filesystem).
// - Record fields are camelCase (`lastSecond`, `processMinAvail`).
// - u64 (every `millis`, connection ids) arrives as a BigInt; u32, u16 and
//   the like as a Number. A u64 answer may be a BigInt or an integral Number.
// - An option is `undefined` when none (never `null`).
// - An enum is its case's name as a string: 'info', 'login'.
// - A variant is `{ tag: 'case-name', val }`, the tag spelled as in the WIT
//   (kebab-case); a case without a payload is just `{ tag: 'accept' }`.
// - A tuple is an array: `[key, value]`.
// - A WASI function returning result<T, error-code> returns T or throws an
//   Error whose `payload` is the error code ('no-entry', 'access', ...).
//
// The top level of this module runs once, when componentize-js builds the
// component (the engine is snapshotted after it): do nothing there that needs
// the plugin's runtime, such as opening the granted directory.

import { log } from 'warden:policy/host@0.1.0';
import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';

// A source opening more connections than this in one second waits.
const BURST = 5;

// How long it waits, in milliseconds, before it is decided again (a u64).
const HOLD_MS = 1000n;

// Where warden mounts the granted directory, and the deny list in it.
const GRANT = '/grant';
const DENY_FILE = 'deny';

// How much of the file one read asks for.
const CHUNK = 64n * 1024n;

// Drops a WASI resource (a descriptor) now. Resources are also dropped when
// the garbage collector finds them, but not soon enough for a long-lived
// plugin instance: each one holds an entry in warden's resource table.
const dispose = Symbol.dispose ?? Symbol.for('dispose');

// The granted directory's descriptor, looked up on first use and kept for the
// life of the instance; null when the configuration grants none.
let grant;

function grantedDirectory() {
  if (grant === undefined) {
    grant = null;
    for (const [descriptor, path] of getDirectories()) {
      if (path === GRANT && grant === null) {
        grant = descriptor;
      } else {
        descriptor[dispose]();
      }
    }
  }
  return grant;
}

// The whole of `name` in the granted directory, as text. Reads by descriptor
// (`read` at an offset), which warden answers at once; a stream
// (`readViaStream`) is read on a blocking thread and is slower.
function readGranted(name) {
  const dir = grantedDirectory();
  if (dir === null) {
    throw new Error(`no directory granted at ${GRANT}`);
  }
  const file = dir.openAt({ symlinkFollow: true }, name, {}, { read: true });
  try {
    const decoder = new TextDecoder();
    let text = '';
    let offset = 0n;
    for (;;) {
      // A tuple<list<u8>, bool>: the bytes read, and whether the file ended.
      const [bytes, end] = file.read(CHUNK, offset);
      text += decoder.decode(bytes, { stream: true });
      offset += BigInt(bytes.length);
      if (end || bytes.length === 0) {
        return text + decoder.decode();
      }
    }
  } finally {
    file[dispose]();
  }
}

// The addresses in the deny file; none when there is no grant or no file.
// Read on every call, so an edited list applies at once.
function denyList() {
  let text;
  try {
    text = readGranted(DENY_FILE);
  } catch {
    return new Set();
  }
  const addresses = new Set();
  for (const line of text.split(/\r\n|\r|\n/)) {
    const address = line.trim();
    if (address && !line.startsWith('#')) {
      addresses.add(address);
    }
  }
  return addresses;
}

// warden:policy/plugin: who the plugin is. Called once, at load.
export const plugin = {
  describe() {
    return {
      name: 'js-admission',
      version: '0.1.0',
      description: 'refuse denied addresses, hold back bursts from one source',
      services: ['*-login'],
    };
  },
};

// warden:policy/admission: whether a connection may reach the service.
export const admission = {
  admit(service, connection, counts, nowMs) {
    const address = connection.peer.address;
    if (address !== undefined && denyList().has(address)) {
      log('info', `refusing ${address}: on the deny list`, [['service', service.name]]);
      return { tag: 'reject', val: 'deny-list' };
    }
    if (counts.lastSecond > BURST) {
      return { tag: 'delay', val: HOLD_MS };
    }
    return { tag: 'accept' };
  },
};
