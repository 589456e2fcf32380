//! Pure, I/O-free integer arithmetic shared by qmac's reference model and its hardware generator.
//!
//! Everything here is exact integer arithmetic on `i64`/`i128`; the same functions compute the reference
//! outputs, the test vectors and the constants baked into the generated hardware, so there is one
//! definition of every rounding and saturation rule.
//!
//! - [`code`]: how k-bit codes map to integer values (two's complement, unsigned, symmetric odd levels).
//! - [`width`]: bit widths needed for integer ranges.
//! - [`round`]: the rounding right shift (half-to-even, half-up).
//! - [`pack`]: exact packing of several low-bit lane products into one wide multiply (DSP blocks).
//! - [`pipeline`]: the per-channel output pipeline (bias, PACT clip, requantization).
//! - [`quant`]: float quantizers of the source papers (PACT, SAWB, least-squares binary, learnable levels).

pub mod code;
pub mod pack;
pub mod pipeline;
pub mod pool;
pub mod quant;
pub mod round;
pub mod splitmix;
pub mod width;
