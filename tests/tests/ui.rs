//! Compile-time behaviour of `#[redis_locked]`: every supported function shape
//! compiles (`ui/pass`), and every bad argument is a helpful error at the right
//! token (`ui/fail/*.stderr`). Regenerate with `TRYBUILD=overwrite` and read the diff.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("ui/pass/*.rs");
    cases.compile_fail("ui/fail/*.rs");
}
