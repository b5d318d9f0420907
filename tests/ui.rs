//! Compile errors of `network!`: every malformed declaration gets one precise, spanned error.
//! The `.stderr` snapshots are what a user reads; review them as that user.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    // Declarations that must compile (hygiene: names that could clash with generated code).
    t.pass("tests/ui/pass/*.rs");
}
