//! qmac: a generator of bit-exact low-bit quantized MAC-array hardware with an open FPGA flow.
//!
//! - [`config`]: the validated configuration and every derived value.
//! - [`reference`]: the bit-exact software model of the array.
//! - [`emit`]: writing a build directory (Verilog, filelist, manifest).
//! - [`outdir`]: how every output directory is written: ownership marker, lock, atomic replacement.
//! - [`vectors`]: test stimulus and expected outputs from the reference.
//! - [`corners`]: directed corner stimulus for every co-simulation, and its hit counts.
//! - [`sim`]: Verilator builds and co-simulation.
//! - [`limits`]: size bounds on every file read, and capped quoting of values in messages.
//! - [`runner`]: running an external tool with a time limit, killed with its process group on timeout
//!   or interrupt.
//! - [`schemes`]: the quantization schemes compared (error and hardware cost).

pub mod config;
pub mod corners;
pub mod emit;
pub mod flow;
pub mod limits;
pub mod net;
pub mod outdir;
pub mod quantize;
pub mod reference;
pub mod rng;
pub mod runner;
pub mod schemes;
pub mod sim;
pub mod synth;
pub mod tools;
pub mod train;
pub mod vectors;
