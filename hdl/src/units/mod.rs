//! The hardware units of a qmac array: each file builds one emitted module, named after it
//! (`<prefix>_<file>`), from a narrow parameter struct derived from [`HwParams`] by a method
//! (`HwParams::pact_params` and so on), so a unit's signature shows every option it depends on.
//!
//! Dataflow (docs/architecture.md has the block diagram): an output-stationary array of `rows x cols`
//! dot-product processing elements (PEs). Every cycle each PE reduces `lanes` products into one
//! partial sum with a pipelined adder tree and adds it to its accumulator, so the array does
//! `rows * cols * lanes` multiply-accumulates per cycle with one accumulator per `lanes` products. A
//! finished tile moves into a second (hold) register in each PE, so the next tile accumulates while the
//! hold registers shift down their column, one row per cycle, into the output stage (bias, PACT clip and
//! requantization, or thresholds), one per column or one shared by all columns, and through a
//! credit-counted output buffer to the output stream.
//!
//! ```text
//! inputs ─> pe/        one PE (products.rs, serial.rs, bases.rs; accumulate.rs: accumulator, hold)
//!           mul8x2.rs  two 8 x 8 products of a PE's lane pair (one iCE40 SB_MAC16 in dual 8x8 mode)
//!           rowsum.rs  n_w * sum a per row, for odd-level weights
//!       ─> array.rs    input registers (codebook decode, bit-serial shift), rows x cols PEs
//!       ─> drain / output stage, per column or shared (select.rs first):
//!           delta.rs   running totals -> tile sums        combine.rs  basis-pair counts -> sum
//!           pact.rs -> requant.rs   clip, multiply, round, saturate
//!           thresh.rs               or compare with thresholds (1- and 2-bit outputs, basis codes)
//!           logit.rs                or the biased accumulator (logits)
//!       ─> outbuf.rs   output buffer (FIFO of rows) ─> y stream
//!
//! beside them: ctrl.rs    stream join, tile tracking, drain sequencing and credits
//!              params.rs  per-channel parameters and the run-time table
//!              top.rs     wires them together
//! hw_params.rs: HwParams and its derived values; builders.rs: adder trees, delays, shift chains,
//! code values
//! ```
//!
//! Control, the array and the top take the whole [`HwParams`]: they connect everything, and nearly
//! every option changes some of their ports or sequencing.

mod array;
mod builders;
mod combine;
mod ctrl;
mod delta;
mod hw_params;
mod logit;
mod mul8x2;
mod outbuf;
mod pact;
mod params;
mod pe;
mod requant;
mod rowsum;
mod select;
mod thresh;
mod top;

pub use array::array;
pub use combine::{combine, CombineParams};
pub use ctrl::ctrl;
pub use delta::{delta, DeltaParams};
pub use hw_params::{Bases, HwParams, OutMode, COMBINE_STAGES};
pub use logit::{logit, LogitParams};
pub use mul8x2::{mul8x2, Mul8x2Params, MUL8X2_OPERAND_BITS, MUL8X2_PRODUCT_BITS};
pub use outbuf::{outbuf, OutbufParams};
pub use pact::{pact, PactParams};
pub use params::{params, ParamLayout, Table, TableKind};
pub use pe::{pe, AccParams, PeArith, PeParams, Tree};
pub use requant::{requant, RequantParams};
pub use rowsum::{rowsum, RowsumParams};
pub use select::{select, SelectParams};
pub use thresh::{thresh, ThreshParams};
pub use top::top;

use crate::rtl::Module;

/// The output stage of each column.
#[derive(Clone, Debug)]
pub enum OutStage {
    /// PACT clip, then multiply, round and shift.
    Multiply {
        /// PACT clip.
        pact: Module,
        /// Requantization.
        requant: Module,
    },
    /// Comparison against thresholds.
    Thresholds(Module),
    /// The biased accumulator (logits).
    Logits(Module),
}

/// All modules of one design.
#[derive(Clone, Debug)]
pub struct Units {
    /// Processing element.
    pub pe: Module,
    /// Row correction (odd-level weights only).
    pub rowsum: Option<Module>,
    /// The array of PEs.
    pub array: Module,
    /// Output stage.
    pub out: OutStage,
    /// Parameter registers.
    pub params: Module,
    /// Control.
    pub ctrl: Module,
    /// Output buffer.
    pub outbuf: Module,
    /// Column select of a shared output unit.
    pub select: Option<Module>,
    /// Basis combination (bases only).
    pub combine: Option<Module>,
    /// Running totals to tile sums ([`HwParams::running_totals`] only).
    pub delta: Option<Module>,
}

/// Build every module of the design; returns the modules in dependency order (leaves first, top last).
pub fn design(p: &HwParams) -> Vec<Module> {
    let pe = pe(&p.pe_params());
    let rowsum = p.rowsum_params().map(|r| rowsum(&r));
    let array = array(p, &pe, rowsum.as_ref());
    let out = if p.out_mode == OutMode::Logits {
        OutStage::Logits(logit(&p.logit_params()))
    } else if p.thresholds {
        OutStage::Thresholds(thresh(&p.thresh_params()))
    } else {
        OutStage::Multiply { pact: pact(&p.pact_params()), requant: requant(&p.requant_params()) }
    };
    let select = p.select_params().map(|s| select(&s));
    let combine = p.combine_params().map(|c| combine(&c));
    let delta = p.delta_params().map(|d| delta(&d));
    let units = Units { pe, rowsum, array, out, params: params(&p.param_layout()), ctrl: ctrl(p), outbuf: outbuf(&p.outbuf_params()), select, combine, delta };
    let top = top(p, &units);
    let mut mods: Vec<Module> = p.mul8x2_params().map(|m| mul8x2(&m)).into_iter().collect();
    mods.push(units.pe);
    mods.extend(units.rowsum);
    mods.push(units.array);
    mods.extend(units.select);
    mods.extend(units.combine);
    mods.extend(units.delta);
    match units.out {
        OutStage::Multiply { pact, requant } => mods.extend([pact, requant]),
        OutStage::Thresholds(t) | OutStage::Logits(t) => mods.push(t),
    }
    mods.extend([units.params, units.ctrl, units.outbuf, top]);
    mods
}
