//! Compile errors of the set layers in `network!` (`pool`, `set_dense`, `radial_basis`).

#[test]
fn sets_ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/sets_ui/*.rs");
}
