//! Witnesses (C2SP tlog-witness, docs/protocol.md §7.13): [`server`] is `gridreg witness
//! serve`, a witness of other logs; [`submit`] is the registry's side, which gathers witness
//! cosignatures for its own checkpoints.

pub mod server;
pub mod submit;
