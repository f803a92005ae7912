//! Compiles `proto/` with protox (pure Rust, so no system `protoc` is needed) and generates the tonic
//! client and, separately, the server (see below). Also writes the encoded descriptor set that gRPC
//! server reflection serves.

use std::{env, fs, path::PathBuf};

const PROTO_ROOT: &str = "proto";
const PROTO_FILES: &[&str] = &[
    "proto/clerk/bridge/v1/service.proto",
    "proto/clerk/bridge/v1/sync.proto",
    "proto/clerk/bridge/v1/events.proto",
    "proto/clerk/bridge/v1/user.proto",
    "proto/clerk/bridge/v1/common.proto",
    "proto/clerk/bridge/v1/session.proto",
    "proto/clerk/bridge/v1/organization.proto",
    "proto/clerk/bridge/v1/role.proto",
    "proto/clerk/bridge/v1/waitlist.proto",
    "proto/clerk/bridge/v1/messaging.proto",
    "proto/clerk/bridge/v1/billing.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    let mut compiler = protox::Compiler::new([PROTO_ROOT])?;
    // Imports (google/protobuf/*) must be in the set: code generation panics without them, and
    // reflection clients need them to resolve field types.
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(PROTO_FILES)?;

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("clerk_bridge_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    // Messages and the client, as every caller sees them.
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(compiler.file_descriptor_set())?;
    // The server, on its own: the same service and messages, except that Subscribe streams a
    // hand-written `SubscribeResponse` carrying events already encoded (stored bytes passed through,
    // see src/subscription/wire.rs). Same wire format, so clients cannot tell.
    let server_dir = out_dir.join("server");
    fs::create_dir_all(&server_dir)?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .out_dir(&server_dir)
        .extern_path(
            ".clerk.bridge.v1.SubscribeResponse",
            "crate::subscription::wire::SubscribeResponse",
        )
        .extern_path(".clerk.bridge.v1", "crate::proto")
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
