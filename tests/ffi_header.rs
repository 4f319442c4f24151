//! ffi/betrace.h is generated from src/embed/ffi.rs: this test regenerates it and fails when the
//! committed header differs, so the two cannot drift. `BETRACE_BLESS=1` rewrites it.

#[test]
fn the_header_matches_the_rust_abi() {
    let root = env!("CARGO_MANIFEST_DIR");
    let config = cbindgen::Config::from_file(format!("{root}/ffi/cbindgen.toml"))
        .expect("ffi/cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(format!("{root}/src/embed/ffi.rs"))
        .with_src(format!("{root}/src/engine/counters.rs"))
        .generate()
        .expect("cbindgen parses src/embed/ffi.rs")
        .write(&mut generated);
    let generated = String::from_utf8(generated).unwrap();
    let path = format!("{root}/ffi/betrace.h");
    if std::env::var_os("BETRACE_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == generated, "ffi/betrace.h is out of date with src/embed/ffi.rs: run `BETRACE_BLESS=1 cargo test --test ffi_header`");
}
