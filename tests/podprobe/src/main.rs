//! podprobe: placeholder, being written.
fn main() {}
