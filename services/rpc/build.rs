//! Compiles the gRPC contracts in `proto/` with protox, so no system `protoc` is needed.

use std::error::Error;

const PROTO_ROOT: &str = "../../proto";
const PROTOS: [&str; 2] = ["ferrymail/v1/directory.proto", "ferrymail/v1/queue.proto"];

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    let descriptors = protox::compile(PROTOS, [PROTO_ROOT])?;
    tonic_prost_build::configure()
        // The request carries a password: its Debug is written by hand, redacted.
        .skip_debug([".ferrymail.v1.AuthenticateRequest"])
        // Body chunks pass through as `Bytes`, without a copy per message.
        .bytes(".ferrymail.v1.EnqueueRequest.chunk")
        .bytes(".ferrymail.v1.BodyEnd.prepend")
        .compile_fds(descriptors)?;
    Ok(())
}
