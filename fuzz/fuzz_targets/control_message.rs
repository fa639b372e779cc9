//! Any packet a service process can send: parsing never panics, and a
//! packet that parses encodes to one that parses the same.

#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_child::protocol::{FromService, ToService};

fuzz_target!(|packet: &[u8]| {
    if let Ok(message) = FromService::parse(packet) {
        assert_eq!(FromService::parse(&message.encode()), Ok(message));
    }
    if let Ok(message) = ToService::parse(packet) {
        assert_eq!(ToService::parse(&message.encode()), Ok(message));
    }
});
