//! appc-init: the pod's PID 1 (being written).
fn main() {}
