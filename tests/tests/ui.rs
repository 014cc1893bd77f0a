//! Compile tests of the macros: `ui/pass` must compile, `ui/fail` must fail with the
//! `.stderr` next to each file. The `.stderr` files were generated with the workspace's
//! `rust-version` toolchain; regenerate them with
//! `TRYBUILD=overwrite cargo test -p eventsource-tests --test ui` when it moves.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/fail/*.rs");
}
