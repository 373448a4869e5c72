//! End-to-end tests across the balanced crates live in `tests/tests/`; the real-kernel lane
//! lives in `tests/vm/`.
