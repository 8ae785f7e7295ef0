//! The registry server (`gridreg serve`): routes, store, blob store and the log sequencer.
//!
//! Not built yet: see the registry issue. The crate exists so the workspace has its final shape.
