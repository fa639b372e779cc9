//! A panic in warden reaches its log file: the hook `warden run` installs
//! right after it sets up logging, exercised through the same two calls.
//!
//! It has a test binary of its own because logging and the panic hook
//! belong to the whole process and are set once. It is not end to end:
//! warden has no way to make a running master panic from outside, and a
//! way kept only for tests would be a backdoor in the master.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on what it cannot set up"
)]

#[test]
fn a_panic_is_logged_to_the_log_file_with_its_message_and_location() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("warden.log");
    warden::logging::init(Some(&log), warden::logging::Format::Text).expect("set up logging");
    warden::logging::log_panics();
    let line = line!() + 4;
    let outcome = std::thread::Builder::new()
        .name("doomed".to_owned())
        .spawn(|| {
            panic!("the sky fell");
        })
        .expect("spawn a thread")
        .join();
    assert!(outcome.is_err(), "the thread did not panic");
    let text = std::fs::read_to_string(&log).expect("read the log");
    let expected = format!(
        "thread 'doomed' panicked at {}:{line}:13: the sky fell",
        file!()
    );
    assert!(
        text.lines()
            .any(|l| l.contains("ERROR") && l.contains(&expected)),
        "no {expected:?} in the log:\n{text}"
    );
}
