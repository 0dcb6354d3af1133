//! Generates the dnstap message types into `OUT_DIR` with prost-build, from the
//! descriptor set `src/observe/dnstap/dnstap.fds` that protoc made of `dnstap.proto`.
//! Reading the checked-in descriptor set rather than the schema means building needs
//! no protoc; `codegen_is_current` in tests/dnstap.rs checks the two agree.

use prost::Message as _;

const DESCRIPTORS: &str = "src/observe/dnstap/dnstap.fds";

fn main() {
    println!("cargo:rerun-if-changed={DESCRIPTORS}");
    let bytes = std::fs::read(DESCRIPTORS)
        .unwrap_or_else(|e| panic!("reading {DESCRIPTORS}: {e}; it is part of the source tree"));
    let descriptors = prost_types::FileDescriptorSet::decode(bytes.as_slice()).unwrap_or_else(|e| {
        panic!("{DESCRIPTORS} is not a protobuf descriptor set ({e}); regenerate it with PICKET_REGENERATE=1 cargo test --test dnstap -- --ignored codegen")
    });
    prost_build::Config::new()
        .compile_fds(descriptors)
        .unwrap_or_else(|e| panic!("generating the dnstap types from {DESCRIPTORS}: {e}"));
}
