//! Shared helpers for the co-simulation tests.
