//! warden-child: the library a service uses to speak warden's native
//! interface (`interface = "warden"`).
//!
//! Through it a service will receive each connection the supervisor accepted
//! for it, with its metadata (connection id, listener, client type, peer
//! address after PROXY parsing, peer credentials), report per-connection
//! state (`authenticated`, `closed`) and learn when it should stop taking
//! connections or exit. Its documentation is the protocol's reference for
//! authors who write such a service in another language.
//!
//! It runs inside service processes, never in the supervisor, and must not
//! assume any privilege.

#![forbid(unsafe_code)]
