//! Any bytes a client can send first on a `haproxy` listener: reading the
//! header never panics nor reads past it, and a header that reads parses
//! or is refused.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|error| panic!("a runtime: {error}"))
    })
}

fuzz_target!(|bytes: &[u8]| {
    let mut input = bytes;
    let header = runtime().block_on(warden_proxy::read_header(&mut input));
    if let Ok(header) = header {
        assert_eq!(
            header.len() + input.len(),
            bytes.len(),
            "it read past the header"
        );
        assert!(header.len() <= warden_proxy::MAX_V2);
        let _ = warden_proxy::parse(&header);
    }
});
