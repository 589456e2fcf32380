//! [`HwParams`]: everything the hardware units need to know, derived from a validated configuration,
//! and the values derived from it that several units share (stage counts, widths, latency).

use qmac_arith::code::{Encoding, MacKind};
use qmac_arith::pack::Packing;
use qmac_arith::round::Rounding;
use qmac_arith::width::{clog2, signed_bits};

/// Everything the hardware needs to know, derived from a validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HwParams {
    /// Module name prefix.
    pub prefix: String,
    /// PE rows (activation vectors per step).
    pub rows: u32,
    /// PE columns (output channels).
    pub cols: u32,
    /// Products reduced per PE per cycle.
    pub lanes: u32,
    /// Activation code width and encoding.
    pub act_bits: u32,
    /// Activation encoding.
    pub act_enc: Encoding,
    /// Width of the weight values the PEs multiply (the level width with a codebook).
    pub weight_bits: u32,
    /// Weight encoding as the PEs see it (`Int` with a codebook).
    pub weight_enc: Encoding,
    /// With a codebook: the width of the weight codes on `w_data_i`, decoded at the array's edge into
    /// `weight_bits`-bit levels from a table of `2^codebook_bits` entries.
    pub codebook_bits: Option<u32>,
    /// Output code width.
    pub out_bits: u32,
    /// Accumulator width.
    pub acc_bits: u32,
    /// Accumulator saturates instead of being wide enough.
    pub acc_saturate: bool,
    /// Requantization multiplier width.
    pub mult_bits: u32,
    /// Requantization shift field width.
    pub shift_bits: u32,
    /// Rounding of the requantization shift.
    pub rounding: Rounding,
    /// Parameter address width.
    pub prm_addr_bits: u32,
    /// Parameter data width.
    pub prm_data_bits: u32,
    /// Output stage: compare against per-channel thresholds (small output codes) instead of clip,
    /// multiply and shift.
    pub thresholds: bool,
    /// One output unit shared by all columns (the drain issues one column per cycle), instead of one
    /// per column.
    pub shared_output: bool,
    /// Multi-basis binary operands: per-pair XNOR/popcount counts in the PEs, combined with per-channel
    /// pair scales in the drain.
    pub bases: Option<Bases>,
    /// Bit-serial activations: a step takes `act_bits` cycles, one activation bit plane per cycle
    /// (least significant first); each PE adds the column's shifted weight values (`w * 2^k`) its bits
    /// select straight into the accumulator.
    pub serial: bool,
    /// Hold registers: a finished tile moves out of the accumulators so the next tile accumulates while
    /// it drains. Without them the accumulators themselves shift down the column, and the next tile
    /// waits for the drain (one register per PE fewer).
    pub double_buffer: bool,
    /// Adder levels between pipeline registers in a PE's adder tree (1 for the highest clock, 2 for
    /// fewer flip-flops).
    pub tree_levels: u32,
    /// The array's input registers (S1). Without them the PEs' first stage takes the input ports:
    /// one cycle less latency and `rows * lanes * act_bits + cols * lanes * weight_bits` flip-flops
    /// fewer. Always present with bit-serial activations (they shift the codes).
    pub input_regs: bool,
    /// Running totals: the accumulators are never cleared between tiles. The hold register takes the
    /// accumulator a cycle after a tile's last step, and the drain subtracts each PE's total at the end
    /// of the previous tile (kept in a memory, [`delta`](super::delta)). Saves the clear and lets the accumulator's
    /// adder feed only its own register. With hold registers, without saturation or bases.
    pub running_totals: bool,
    /// Each PE registers its own copy of its activation and weight inputs (one more stage), so a
    /// broadcast along a row or column is a register-to-register path and each PE's products start
    /// from registers beside it.
    pub pe_input_regs: bool,
    /// Exact DSP packing of the lane products: groups of `terms` consecutive lanes share one multiply
    /// ([`qmac_arith::pack`]); `None` for one multiply per lane.
    pub packing: Option<Packing>,
    /// Lane pairs per PE whose two products are one paired 8 x 8 unit ([`mul8x2`](super::mul8x2)): lanes
    /// `2j` and `2j + 1` for `j < dsp_pairs`; 0 for none. Not with packing.
    pub dsp_pairs: u32,
    /// Lane products as counts of their one-bit partial products where they take that form
    /// ([`HwParams::bit_planes`]).
    pub bit_planes: bool,
    /// What the memories are built from (their `ram_style`).
    pub mem_style: crate::rtl::MemStyle,
    /// Fractional bits of the bias: the output stage adds the bias to `acc * 2^bias_frac`, so the bias,
    /// the clip level and the requantizer's input are [`HwParams::biased_bits`] wide.
    pub bias_frac: u32,
    /// What the output stage computes.
    pub out_mode: OutMode,
}

/// What the output stage computes from a column's accumulator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutMode {
    /// PACT codes: clip and requantize, or thresholds counted.
    Pact,
    /// The biased accumulator `acc * 2^bias_frac + bias`, signed and unclipped (a last layer's logits,
    /// [`logit`](super::logit)).
    Logits,
    /// Binary-basis codes: thresholds on the nodes of a sign decision tree ([`thresh`](super::thresh)).
    Bases,
}

/// Multi-basis binary arithmetic: weights with `weight` bases and activations with `act` bases, each
/// code bit the sign of one basis (1 means +1). Each PE keeps one count `D_p = sum of +-1 products` per
/// basis pair `p = i * act + j`; the drain combines them as `sum_p m_p * D_p` with the channel's
/// `scale_bits`-bit signed pair scales `m_p`, and the output stage takes that sum as its accumulator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bases {
    /// Weight bases (the weight code width).
    pub weight: u32,
    /// Activation bases (the activation code width).
    pub act: u32,
    /// Width of a pair scale.
    pub scale_bits: u32,
    /// Largest magnitude of a per-pair count: the most products in a tile (`max_steps * lanes`).
    pub max_count: u32,
}

impl Bases {
    /// Basis pairs.
    pub fn pairs(&self) -> u32 {
        self.weight * self.act
    }
    /// Width of a per-pair count, `-max_count..=max_count`.
    pub fn count_bits(&self) -> u32 {
        signed_bits(-i128::from(self.max_count), i128::from(self.max_count))
    }
}

/// Register stages of the basis combination (products, then their sum).
pub const COMBINE_STAGES: u32 = 2;

impl HwParams {
    /// The lane arithmetic (XNOR on every basis pair with bases).
    pub fn kind(&self) -> MacKind {
        if self.bases.is_some() {
            return MacKind::Xnor;
        }
        if self.serial {
            // the PE selects decoded weight values by activation bits
            return MacKind::Direct;
        }
        let kind = MacKind::of(self.weight_enc, self.weight_bits, self.act_enc, self.act_bits);
        // packed offset-binary weight codes: the packing's weight operands are never negative
        match self.packing {
            Some(pk) if pk.x.0 >= 0 => kind.packed(self.weight_enc, self.act_enc),
            _ => kind,
        }
    }
    /// Range of the true dot product of one step, `sum_l w_l * a_l` (per basis pair with bases).
    pub fn dot_range(&self) -> (i64, i64) {
        if self.bases.is_some() {
            return (-i64::from(self.lanes), i64::from(self.lanes));
        }
        let (lo, hi) = qmac_arith::code::product_range(self.weight_enc.range(self.weight_bits), self.act_enc.range(self.act_bits));
        (lo * i64::from(self.lanes), hi * i64::from(self.lanes))
    }
    /// Width of the true dot product of one step.
    pub fn dot_bits(&self) -> u32 {
        let (lo, hi) = self.dot_range();
        signed_bits(lo.into(), hi.into())
    }
    pub(crate) fn module(&self, unit: &str) -> String {
        format!("{}_{unit}", self.prefix)
    }
    /// Width of the drain row counter (0 when there is one row).
    pub fn row_count_bits(&self) -> u32 {
        clog2(u64::from(self.rows))
    }
    /// Register stages from the hold register to the output register: bias sum, clip, product,
    /// rounding sum, saturation (5); the biased sum alone (1) for logits; or input, compare, count (3) with thresholds (no input register
    /// after a shared select, [`HwParams::thresh_input_regs`]); after the basis combination
    /// ([`COMBINE_STAGES`]) with bases, or the running totals' difference ([`HwParams::delta_stages`]).
    pub fn drain_stages(&self) -> u32 {
        let unit = if self.out_mode == OutMode::Logits {
            1
        } else if self.thresholds {
            2 + u32::from(self.thresh_input_regs()) + u32::from(self.thresh_split())
        } else {
            5 + u32::from(self.mult_split())
        };
        let combine = if self.bases.is_some() { COMBINE_STAGES } else { 0 };
        // a shared unit first selects the column's value and parameters (one register stage)
        unit + combine + self.delta_stages() + u32::from(self.shared_output)
    }
    /// Register stages of the running totals' difference unit ([`delta`](super::delta)) before the output stage: the
    /// captured total and the difference per column, or after a shared unit's select register only the
    /// difference; 0 without running totals.
    pub fn delta_stages(&self) -> u32 {
        match (self.running_totals, self.shared_output) {
            (false, _) => 0,
            (true, true) => 1,
            (true, false) => 2,
        }
    }
    /// The difference unit reads its memory a cycle ahead, at the index of the next value to be
    /// issued, and registers the word again, so the memory's read register (slow on ECP5: 5.8 ns)
    /// feeds only a register. With 3 or more values per tile; with 2 the next index can be the word
    /// being written, so that memory is read at the issue itself.
    pub fn delta_read_ahead(&self) -> bool {
        self.delta_items() >= 3
    }
    /// Values a tile drains through one difference unit, each with its own previous total: `rows`
    /// per column, or `rows * cols` through a shared unit.
    pub fn delta_items(&self) -> u32 {
        if self.shared_output {
            self.rows * self.cols
        } else {
            self.rows
        }
    }
    /// The requantization multiply is split in two stages (products by the multiplier's halves, then
    /// their sum) when the multiplier has 8 bits or more.
    pub fn mult_split(&self) -> bool {
        !self.thresholds && self.mult_bits >= 8
    }
    /// The threshold stage registers its inputs (P1) before comparing. Not after a shared unit's
    /// select: the select (or difference) register already holds the value beside the unit, and the
    /// thresholds come from registers too, so another stage would only add flip-flops (on iCE40 a logic
    /// cell each).
    pub fn thresh_input_regs(&self) -> bool {
        !self.shared_output
    }
    /// The threshold stage compares in two halves (a register between the halves' comparisons and
    /// their combination) when a threshold has 10 bits or more.
    pub fn thresh_split(&self) -> bool {
        self.thresholds && self.acc_bits + 1 >= 10
    }
    /// Width of one PE's hold register: the accumulator, or with bases the per-pair counts
    /// (pair `p` at `[p * count_bits +: count_bits]`).
    pub fn hold_bits(&self) -> u32 {
        self.bases.map_or(self.acc_bits, |b| b.pairs() * b.count_bits())
    }
    /// Rows the output buffer holds: enough for the drain pipeline to run at full rate while the
    /// consumer is ready: `drain_stages + 2` with one output unit per column (a row per cycle); with a
    /// shared unit (a row per `cols` cycles) `ceil((drain_stages + 1) / cols) + 2`, if smaller.
    /// With the buffer in a memory ([`HwParams::outbuf_ram`]) a row spends one more cycle in it, and
    /// the shared unit's term counts that cycle too.
    pub fn outbuf_depth(&self) -> u32 {
        let per_row = self.drain_stages() + 2;
        if self.shared_output {
            // a shared unit issues a row every `cols` cycles, so fewer rows are in flight at once
            let extra = u32::from(self.outbuf_ram());
            per_row.min((self.drain_stages() + 1 + extra).div_ceil(self.cols) + 2)
        } else {
            per_row
        }
    }
    /// The output buffer of a shared output unit over several columns is a memory with a registered
    /// read (block RAM, see [`crate::rtl::Body::memory`]) instead of a register per row and a read
    /// multiplexer: its rows arrive only every `cols` cycles, so the extra cycle costs no throughput.
    pub fn outbuf_ram(&self) -> bool {
        self.shared_output && self.cols > 1
    }
    /// Width of one weight code on the input bus.
    pub fn code_bits(&self) -> u32 {
        self.codebook_bits.unwrap_or(self.weight_bits)
    }
    /// Entries of the run-time table: `2^codebook_bits` codebook levels, or `cols * pairs` basis-pair
    /// scales (channel `c`, pair `p` at entry `c * pairs + p`); 0 without a table.
    pub fn table_entries(&self) -> u32 {
        match (self.codebook_bits, self.bases) {
            (Some(cb), _) => 1 << cb,
            (None, Some(b)) => self.cols * b.pairs(),
            (None, None) => 0,
        }
    }
    /// Width of one table entry: a level (`weight_bits`) or a pair scale.
    pub fn table_entry_bits(&self) -> u32 {
        self.bases.map_or(self.weight_bits, |b| b.scale_bits)
    }
    /// Bits of the run-time table.
    pub fn table_bits(&self) -> u32 {
        self.table_entries() * self.table_entry_bits()
    }
    /// Number of thresholds per channel: `2^out_bits - 1`.
    pub fn threshold_count(&self) -> u32 {
        (1 << self.out_bits) - 1
    }
    /// Width of the bias, the clip level and the clipped value: the accumulator's plus the bias's
    /// fractional bits.
    pub fn biased_bits(&self) -> u32 {
        self.acc_bits + self.bias_frac
    }
    /// The per-channel parameter fields, in address order, with their widths.
    pub fn param_fields(&self) -> Vec<(String, u32)> {
        let bw = self.biased_bits();
        if self.out_mode == OutMode::Logits {
            vec![("bias".into(), bw)]
        } else if self.thresholds {
            (1..=self.threshold_count()).map(|k| (format!("t{k}"), self.acc_bits + 1)).collect()
        } else {
            vec![("bias".into(), bw), ("alpha".into(), bw), ("mult".into(), self.mult_bits), ("shift".into(), self.shift_bits)]
        }
    }
}

impl HwParams {
    /// The fields a shared output unit's select stage picks per column: the parameter fields (unless
    /// they are in memories, [`HwParams::param_ram`]), and with bases the column's pair scales.
    pub fn select_fields(&self) -> Vec<(String, u32)> {
        // parameters in memories are read by column in the parameter unit itself
        let mut f = if self.param_ram() { Vec::new() } else { self.param_fields() };
        if let Some(bs) = self.bases {
            f.push(("scales".into(), bs.pairs() * bs.scale_bits));
        }
        f
    }
    /// A shared output unit over several columns keeps the per-channel parameters in memories (one per
    /// field, a word per channel, in block RAM) read at the issued column, instead of `cols` registers
    /// per field and a column multiplexer.
    pub fn param_ram(&self) -> bool {
        self.shared_output && self.cols > 1
    }
    /// Cycles from the shared unit's select stage (P0) to where each parameter field is used: after
    /// the basis combination, and the requantizer's fields (mult, shift) two stages after the clip's.
    pub fn param_field_delays(&self) -> Vec<u32> {
        let pre = if self.bases.is_some() { COMBINE_STAGES } else { self.delta_stages() };
        (0..self.param_fields().len()).map(|i| pre + if !self.thresholds && i >= 2 { 2 } else { 0 }).collect()
    }
    /// Adder levels of a PE's tree: `ceil(log2(terms))`, with one term per lane (per lane pair for
    /// XNOR, whose pairs are counted before the tree; per packed group of lanes with packing); with
    /// bit-plane products ([`HwParams::bit_planes`]) the deepest class's count and the adders after it.
    pub fn tree_depth(&self) -> u32 {
        match self.bit_planes() {
            Some(bp) => bp.depth(self.lanes),
            None => clog2(u64::from(self.tree_terms())),
        }
    }
    /// The bit-plane form of the lane products ([`super::pe::BitPlanes`]: the partial products
    /// counted by weight) where the PE uses it: lane products that multiply, neither packed nor in
    /// paired product units, of few enough bits.
    pub(crate) fn bit_planes(&self) -> Option<super::pe::BitPlanes> {
        if !self.bit_planes || self.bases.is_some() || self.serial || self.packing.is_some() || self.dsp_pairs > 0 {
            return None;
        }
        super::pe::BitPlanes::of(self.kind(), (self.weight_enc, self.weight_bits), (self.act_enc, self.act_bits))
    }
    /// The adder tree's terms: lanes, lane pairs and single lanes (XNOR, [`super::pe::XnorLeaves`]), or
    /// packed groups and the remaining lanes.
    pub fn tree_terms(&self) -> u32 {
        match self.packing {
            _ if self.kind() == MacKind::Xnor => super::pe::XnorLeaves::new(self.lanes).terms(),
            Some(p) => self.lanes / p.terms + self.lanes % p.terms,
            None => self.lanes,
        }
    }
    /// Register stages of the adder tree: one, plus one per further `tree_levels` levels.
    pub fn tree_stages(&self) -> u32 {
        1 + self.tree_depth().saturating_sub(1) / self.tree_levels
    }
    /// Register stages from the cycle a step is accepted to the cycle its partial sum is in the
    /// accumulator: input registers, lane products, the adder tree, the accumulator.
    pub fn compute_stages(&self) -> u32 {
        if self.serial && self.lanes == 1 {
            // bit-serial, one lane: the input registers feed the accumulator directly
            return 2 + u32::from(self.pe_input_regs);
        }
        2 + u32::from(self.input_regs) + u32::from(self.pe_input_regs) + self.pack_stages() + self.tree_stages()
    }
    /// Extra register stages of a packed PE: 2 with packing and [`HwParams::pe_input_regs`] (the lane
    /// operands, packed or plain, are registered beside the PE before the multiplies, so that a DSP
    /// block's input comes from a register, and the products or fields once more after their first
    /// register, so that the register after a DSP block has no other load), else 0.
    pub fn pack_stages(&self) -> u32 {
        2 * u32::from(self.packing.is_some() && self.pe_input_regs)
    }
    /// Bit-serial activations: the range of the shifted weight values a PE adds, `w * 2^k` for bits
    /// `k < act_bits`, and `-w * 2^(act_bits - 1)` for the sign bit of two's complement activations.
    pub fn serial_weight_range(&self) -> (i64, i64) {
        let (lo, hi) = self.weight_enc.range(self.weight_bits);
        let top = 1i64 << (self.act_bits - 1);
        if self.act_enc == Encoding::Int {
            (lo.min(-hi).min(0) * top, hi.max(-lo).max(0) * top)
        } else {
            (lo.min(0) * top, hi.max(0) * top)
        }
    }
    /// Width of a shifted weight value (see [`HwParams::serial_weight_range`]).
    pub fn serial_weight_bits(&self) -> u32 {
        let (lo, hi) = self.serial_weight_range();
        signed_bits(lo.into(), hi.into())
    }
    /// Cycles a step occupies the array: `act_bits` with bit-serial activations, else 1.
    pub fn cycles_per_step(&self) -> u32 {
        if self.serial {
            self.act_bits
        } else {
            1
        }
    }
    /// Cycles from accepting a tile's last step to its first output row being valid, when nothing
    /// stalls: the compute stages, the drain stages, and the output buffer's register (and its
    /// memory's write cycle, [`HwParams::outbuf_ram`]).
    pub fn latency(&self) -> u32 {
        let gather = if self.shared_output { self.cols - 1 + 1 } else { 0 };
        let buffer = 1 + u32::from(self.outbuf_ram());
        // a bit-serial step's last bit enters the pipeline act_bits - 1 cycles after the step
        // running totals load the hold registers a cycle after the last step's accumulation
        let load = u32::from(self.running_totals);
        self.compute_stages() + (self.cycles_per_step() - 1) + load + self.drain_stages() + gather + buffer
    }
}
