//! The hardware units of a qmac array, each built as one [`Module`] from a narrow parameter struct.
//!
//! Dataflow (docs/architecture.md has the block diagram): an output-stationary array of `rows x cols`
//! dot-product processing elements (PEs). Every cycle each PE reduces `lanes` products into one
//! partial sum with a pipelined adder tree and adds it to its accumulator, so the array does
//! `rows * cols * lanes` multiply-accumulates per cycle with one accumulator per `lanes` products. A
//! finished tile moves into a second (hold) register in each PE, so the next tile accumulates while the
//! hold registers shift down their column, one row per cycle, into the output stage (bias, PACT clip and
//! requantization, or thresholds), one per column or one shared by all columns, and through a
//! credit-counted output buffer to the output stream.

use crate::rtl::{Body, Expr, Module, Stmt, Ty};
use qmac_arith::code::{Encoding, MacKind};
use qmac_arith::round::Rounding;
use qmac_arith::width::{clog2, signed_bits, unsigned_bits};

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
    /// of the previous tile (kept in a memory, [`delta`]). Saves the clear and lets the accumulator's
    /// adder feed only its own register. With hold registers, without saturation or bases.
    pub running_totals: bool,
    /// Each PE registers its own copy of its activation and weight inputs (one more stage), so a
    /// broadcast along a row or column is a register-to-register path and each PE's products start
    /// from registers beside it.
    pub pe_input_regs: bool,
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
        MacKind::of(self.weight_enc, self.weight_bits, self.act_enc, self.act_bits)
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
    fn module(&self, unit: &str) -> String {
        format!("{}_{unit}", self.prefix)
    }
    /// Width of the drain row counter (0 when there is one row).
    pub fn row_count_bits(&self) -> u32 {
        clog2(u64::from(self.rows))
    }
    /// Width of the requantization product `x * mult`.
    pub fn product_bits(&self) -> u32 {
        self.acc_bits + self.mult_bits
    }
    /// Register stages from the hold register to the output register: bias sum, clip, product,
    /// rounding sum, saturation (5); or input, compare, count (3) with thresholds (no input register
    /// after a shared select, [`HwParams::thresh_input_regs`]); after the basis combination
    /// ([`COMBINE_STAGES`]) with bases, or the running totals' difference ([`HwParams::delta_stages`]).
    pub fn drain_stages(&self) -> u32 {
        let unit = if self.thresholds { 2 + u32::from(self.thresh_input_regs()) + u32::from(self.thresh_split()) } else { 5 + u32::from(self.mult_split()) };
        let combine = if self.bases.is_some() { COMBINE_STAGES } else { 0 };
        // a shared unit first selects the column's value and parameters (one register stage)
        unit + combine + self.delta_stages() + u32::from(self.shared_output)
    }
    /// Register stages of the running totals' difference unit ([`delta`]) before the output stage: the
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
    /// The per-channel parameter fields, in address order, with their widths.
    pub fn param_fields(&self) -> Vec<(String, u32)> {
        if self.thresholds {
            (1..=self.threshold_count()).map(|k| (format!("t{k}"), self.acc_bits + 1)).collect()
        } else {
            vec![("bias".into(), self.acc_bits), ("alpha".into(), self.acc_bits), ("mult".into(), self.mult_bits), ("shift".into(), self.shift_bits)]
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
    /// XNOR, whose pairs are counted before the tree).
    pub fn tree_depth(&self) -> u32 {
        let terms = if self.kind() == MacKind::Xnor { self.lanes / 2 + self.lanes % 2 } else { self.lanes };
        clog2(u64::from(terms))
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
        2 + u32::from(self.input_regs) + u32::from(self.pe_input_regs) + self.tree_stages()
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


/// The value of one code as a signed number, as a named wire.
fn code_value(b: &mut Body, name: &str, code: &Expr, enc: Encoding) -> (Expr, (i64, i64)) {
    let bits = code.width();
    let v = match enc {
        Encoding::Unsigned => code.to_signed_value(),
        Encoding::Int => code.as_signed(),
        Encoding::Odd => {
            // 2c - (2^b - 1) = {~c[b-1], c[b-2:0], 1} read as a (b+1)-bit signed number
            let mut parts = vec![code.bit(bits - 1).not()];
            if bits > 1 {
                parts.push(code.slice(bits - 2, 0));
            }
            parts.push(Expr::lit(1, Ty::bit()));
            Expr::concat(&parts).as_signed()
        }
    };
    let range = enc.range(bits);
    let w = b.net(name, &v, "");
    (w, range)
}

/// Reduce `terms` (named signals with their value ranges) with a balanced tree of named adders whose
/// widths follow the ranges. Returns the root and its range.
fn adder_tree(b: &mut Body, prefix: &str, terms: Vec<(Expr, (i64, i64))>) -> (Expr, (i64, i64)) {
    adder_tree_piped(b, prefix, terms, None)
}

/// [`adder_tree`] with a register after every `per_stage` levels (but not after the last level: the
/// caller registers the root), clocked by `clk` when given.
fn adder_tree_piped(b: &mut Body, prefix: &str, terms: Vec<(Expr, (i64, i64))>, clk: Option<(&Expr, u32)>) -> (Expr, (i64, i64)) {
    let total = clog2(terms.len() as u64);
    let mut level = terms;
    let mut depth = 0;
    while level.len() > 1 {
        if let Some((clk, per_stage)) = clk {
            if depth > 0 && depth % per_stage == 0 && depth < total {
                let mut regs = Vec::new();
                let mut st = Vec::new();
                for (i, (e, r)) in level.iter().enumerate() {
                    let q = b.reg(&format!("{prefix}_q{depth}_{i}"), e.ty(), "");
                    st.push(Stmt::set(&q, e));
                    regs.push((q, *r));
                }
                b.always(clk, st);
                level = regs;
            }
        }
        depth += 1;
        let mut next = Vec::new();
        let mut it = level.into_iter();
        let mut i = 0;
        while let Some(x) = it.next() {
            match it.next() {
                Some(y) => {
                    let range = (x.1 .0 + y.1 .0, x.1 .1 + y.1 .1);
                    let signed = range.0 < 0 || x.0.ty().signed || y.0.ty().signed;
                    let e = if signed {
                        let w = signed_bits(range.0.into(), range.1.into()).max(x.0.width()).max(y.0.width());
                        let xs = if x.0.ty().signed { x.0.resize(w) } else { x.0.resize(w - 1).to_signed_value() };
                        let ys = if y.0.ty().signed { y.0.resize(w) } else { y.0.resize(w - 1).to_signed_value() };
                        xs.add(&ys)
                    } else {
                        let w = unsigned_bits(range.1 as u128).max(x.0.width()).max(y.0.width());
                        x.0.resize(w).add(&y.0.resize(w))
                    };
                    let n = b.net(&format!("{prefix}_s{depth}_{i}"), &e, "");
                    next.push((n, range));
                }
                None => next.push(x),
            }
            i += 1;
        }
        level = next;
    }
    level.pop().expect("adder tree of no terms")
}

/// One processing element: `lanes` products, an adder tree, an accumulator and a hold register.
pub fn pe(p: &HwParams) -> Module {
    if let Some(bs) = p.bases {
        return pe_bases(p, bs);
    }
    if p.serial {
        return pe_serial(p);
    }
    let kind = p.kind();
    let (l, ab, wb, aw) = (p.lanes, p.act_bits, p.weight_bits, p.acc_bits);
    let dw = p.dot_bits();
    let mut m = Module::new(&p.module("pe"));
    m.doc(&format!("Processing element: {l} lanes of {wb}-bit {} weights x {ab}-bit {} activations, {kind:?} lane arithmetic,", p.weight_enc.name(), p.act_enc.name()));
    m.doc(&format!("a {aw}-bit{} accumulator and a hold register that shifts the finished sum down the column.", if p.acc_saturate { " saturating" } else { "" }));
    m.doc(&format!("Stages: lane products (S2), adder tree (S3..S{}), accumulate (S{}).", 2 + p.tree_stages(), 3 + p.tree_stages()));
    pe_inputs_doc(&mut m, p);
    let clk = m.input("clk_i", Ty::bit(), "clock");
    let a = m.input("a_i", Ty::u(l * ab), "activation codes, lane l at [l*AB +: AB]");
    let w = m.input("w_i", Ty::u(l * wb), "weight codes, lane l at [l*WB +: WB]");
    let corr = (kind == MacKind::OddWeights).then(|| m.input("corr_i", Ty::s(dw), "n_w * sum of this row's activations, aligned with dot_q"));
    let acc_en = m.input("acc_en_i", Ty::bit(), "a valid dot product is in dot_q: accumulate it");
    let ports = AccPorts::new(&mut m, p);
    let b = &mut m.body;
    let (a, w) = pe_inputs(b, p, &clk, &a, &w);

    // S2: lane products
    let mut s2 = Vec::new();
    let mut terms = Vec::new();
    let term_range = kind.lane_term_range((p.weight_enc, wb), (p.act_enc, ab));
    match kind {
        MacKind::Xnor => {
            b.comment("S2: +-1 x +-1 products as XNOR bits (1 means +1), counted in pairs");
            let x = b.net("same", &a.xor(&w).not(), "XNOR: the two signs agree");
            terms = xnor_pair_counts(b, "", &x, &mut s2);
        }
        _ => {
            b.comment("S2: lane products");
            let tw = signed_bits(term_range.0.into(), term_range.1.into());
            for i in 0..l {
                let ac = b.net(&format!("a{i}_code"), &a.slice(i * ab + ab - 1, i * ab), "");
                let wc = b.net(&format!("w{i}_code"), &w.slice(i * wb + wb - 1, i * wb), "");
                let (av, _) = code_value(b, &format!("a{i}_val"), &ac, p.act_enc);
                let wv = if kind == MacKind::Direct {
                    code_value(b, &format!("w{i}_val"), &wc, p.weight_enc).0
                } else {
                    // odd weights: the unsigned code c, as a signed number
                    b.net(&format!("w{i}_val"), &wc.to_signed_value(), "")
                };
                // degenerate ranges (a 1-bit {-1, 0} weight times a 1-bit {0, 1} activation) have a
                // product narrower than the operands; never truncate an operand
                let tw = tw.max(av.width()).max(wv.width());
                let prod = av.resize(tw).mul(&wv.resize(tw));
                let q = b.reg(&format!("prod{i}_q"), Ty::s(tw), "");
                s2.push(Stmt::set(&q, &prod));
                terms.push((q, term_range));
            }
        }
    }
    b.always(&clk, s2);

    // adder tree, registered every tree_levels levels
    b.comment(&format!("S3: adder tree ({} register stage{})", p.tree_stages(), if p.tree_stages() > 1 { "s" } else { "" }));
    assert_eq!(clog2(terms.len() as u64), p.tree_depth(), "tree depth as derived");
    let (root, _) = adder_tree_piped(b, "sum", terms, Some((&clk, p.tree_levels)));
    let root_ty = root.ty();
    // the dot product's width: the true range's, or the tree's if a degenerate range made it wider
    let dw = if kind == MacKind::Direct { dw.max(root_ty.width) } else { dw };
    // a popcount becomes the +-1 dot product before its register, so that the register feeds the
    // accumulator's adder directly (on iCE40 that conversion and its routing were the critical path)
    let dot_in = match kind {
        MacKind::Xnor => xnor_dot(b, "dot_s", &root, l, dw),
        _ => root,
    };
    let dot_q = b.reg("dot_q", dot_in.ty(), if kind == MacKind::Xnor { "this step's dot product" } else { "partial sum of this step" });
    b.always(&clk, vec![Stmt::set(&dot_q, &dot_in)]);

    // S4: the true dot product, accumulate, hold
    b.comment("S4: the step's dot product sum_l w_l * a_l, accumulate, hold");
    let dot_v = match kind {
        MacKind::Direct => b.net("dot_v", &dot_q.resize(dw), ""),
        MacKind::OddWeights => {
            let corr = corr.expect("odd weights have a row correction");
            b.net("dot_v", &dot_q.resize(dw).shl(1).sub(&corr), "2 * sum c*a - n_w * sum a")
        }
        MacKind::Xnor => dot_q,
    };
    accumulate_and_hold(b, p, &clk, &dot_v, &acc_en, &ports);
    m
}

/// The accumulator's control and drain ports of a PE: clear, hold load (with hold registers), shift,
/// and the column's shift chain.
struct AccPorts {
    clr: Expr,
    load: Option<Expr>,
    shift: Expr,
    hold_i: Expr,
    hold_o: Expr,
}

impl AccPorts {
    fn new(m: &mut Module, p: &HwParams) -> AccPorts {
        let aw = p.acc_bits;
        if p.double_buffer {
            AccPorts {
                clr: m.input("clr_i", Ty::bit(), "clear the accumulator (after a tile's last step, and on reset)"),
                load: Some(m.input("load_i", Ty::bit(), "it is the last step: move the sum into the hold register")),
                shift: m.input("shift_i", Ty::bit(), "shift the hold registers down one row"),
                hold_i: m.input("hold_i", Ty::s(aw), "hold register of the row above"),
                hold_o: m.output_reg("hold_o", Ty::s(aw), "hold register, towards row 0"),
            }
        } else {
            AccPorts {
                clr: m.input("clr_i", Ty::bit(), "clear the accumulator (reset)"),
                load: None,
                shift: m.input("shift_i", Ty::bit(), "shift the accumulators down one row (drain)"),
                hold_i: m.input("hold_i", Ty::s(aw), "accumulator of the row above"),
                hold_o: m.output("hold_o", Ty::s(aw), "the accumulator, towards row 0 (no hold register)"),
            }
        }
    }
}

/// `acc += dot_v` when `acc_en` (saturating if configured), and the hold register (or, without one, the
/// accumulator itself) on the column's shift chain.
fn accumulate_and_hold(b: &mut Body, p: &HwParams, clk: &Expr, dot_v: &Expr, acc_en: &Expr, ports: &AccPorts) {
    let (aw, dw) = (p.acc_bits, dot_v.width());
    let acc_q = b.reg("acc_q", Ty::s(aw), if p.running_totals { "accumulator, a running total (cleared on reset only)" } else { "accumulator, zero between tiles" });
    let base = acc_q.clone();
    let acc_nxt = if p.acc_saturate {
        let sw = aw.max(dw) + 1;
        let sum = b.net("acc_sum", &base.resize(sw).add(&dot_v.resize(sw)), "");
        let hi = (1i128 << (aw - 1)) - 1;
        let lo = -(1i128 << (aw - 1));
        let sat = Expr::mux(
            &sum.gt(&Expr::lit(hi, Ty::s(sw))),
            &Expr::lit(hi, Ty::s(aw)),
            &Expr::mux(&sum.lt(&Expr::lit(lo, Ty::s(sw))), &Expr::lit(lo, Ty::s(aw)), &sum.resize(aw)),
        );
        b.net("acc_nxt", &sat, "saturating sum")
    } else {
        assert!(dw <= aw, "accumulator narrower than one step's dot product");
        b.net("acc_nxt", &base.add(&dot_v.resize(aw)), "")
    };
    let AccPorts { clr, load, shift, hold_i, hold_o } = ports;
    // running totals: the accumulator is cleared only on reset, and the hold register takes it a cycle
    // after the tile's last step, so the adder feeds only the accumulator
    assert!(!(p.running_totals && p.acc_saturate), "running totals wrap; a saturating accumulator cannot");
    let finished = if p.running_totals { &acc_q } else { &acc_nxt };
    match load {
        Some(load) => b.always(
            clk,
            vec![
                Stmt::when_else(clr, vec![Stmt::set(&acc_q, &Expr::zero(Ty::s(aw)))], vec![Stmt::when(acc_en, vec![Stmt::set(&acc_q, &acc_nxt)])]),
                Stmt::when_else(load, vec![Stmt::set(hold_o, finished)], vec![Stmt::when(shift, vec![Stmt::set(hold_o, hold_i)])]),
            ],
        ),
        None => {
            // the finished sum stays in the accumulator and shifts down the column; zeros shift in
            // from the top, so the accumulators are clear when the drain ends
            b.always(
                clk,
                vec![Stmt::when_else(
                    clr,
                    vec![Stmt::set(&acc_q, &Expr::zero(Ty::s(aw)))],
                    vec![Stmt::when_else(shift, vec![Stmt::set(&acc_q, hold_i)], vec![Stmt::when(acc_en, vec![Stmt::set(&acc_q, &acc_nxt)])])],
                )],
            );
            b.assign(hold_o, &acc_q);
        }
    }
}

/// A processing element for bit-serial activations. Each cycle brings one bit plane of the activations,
/// least significant first, and the column's weight values already shifted to that bit's weight
/// (`w << k`, negated for the sign bit of two's complement activations; shared by the column, see
/// [`array`]). The PE adds the shifted weights its bits select: with one lane straight into the
/// accumulator (the bit is the accumulator's enable), with more lanes through selected terms (S2) and
/// the adder tree.
fn pe_serial(p: &HwParams) -> Module {
    let (l, ab, aw) = (p.lanes, p.act_bits, p.acc_bits);
    let sw = p.serial_weight_bits();
    let mut m = Module::new(&p.module("pe"));
    m.doc(&format!("Processing element, bit-serial activations: {l} lane{} of {ab}-bit {} activations, one bit per cycle,", if l > 1 { "s" } else { "" }, p.act_enc.name()));
    m.doc(&format!("least significant first, selecting {sw}-bit shifted {} weight values; a {aw}-bit accumulator.", p.weight_enc.name()));
    if l == 1 {
        m.doc("Stages: accumulate (S2): the activation bit enables the accumulator.");
    } else {
        m.doc(&format!("Stages: selected weights (S2), adder tree (S3..S{}), accumulate (S{}).", 2 + p.tree_stages(), 3 + p.tree_stages()));
    }
    pe_inputs_doc(&mut m, p);
    let clk = m.input("clk_i", Ty::bit(), "clock");
    let a = m.input("a_i", Ty::u(l), "this cycle's activation bit of each lane");
    let w = m.input("w_i", Ty::u(l * sw), "shifted weight values of this bit, lane l at [l*SW +: SW]");
    let acc_en = m.input("acc_en_i", Ty::bit(), "a valid bit plane is in the PE: accumulate it");
    let ports = AccPorts::new(&mut m, p);
    let b = &mut m.body;
    let (a, w) = pe_inputs(b, p, &clk, &a, &w);
    let (lo, hi) = p.serial_weight_range();
    if l == 1 {
        let ws = b.net("w0_val", &w.as_signed(), "");
        if ports.load.is_none() && !p.acc_saturate {
            // the bit enables the accumulator: acc + w is computed every cycle, kept when the bit is 1
            b.comment("S2: accumulate the shifted weight where the activation bit is 1");
            let en = b.net("add_en", &acc_en.land(&a.bit(0)), "");
            accumulate_and_hold(b, p, &clk, &ws, &en, &ports);
        } else {
            b.comment("S2: accumulate the shifted weight where the activation bit is 1, else 0");
            let d = b.net("dot_v", &Expr::mux(&a.bit(0), &ws, &Expr::zero(ws.ty())), "");
            accumulate_and_hold(b, p, &clk, &d, &acc_en, &ports);
        }
        return m;
    }
    b.comment("S2: each lane's shifted weight where its activation bit is 1, else 0");
    let mut s2 = Vec::new();
    let mut terms = Vec::new();
    for i in 0..l {
        let ws = b.net(&format!("w{i}_val"), &w.slice(i * sw + sw - 1, i * sw).as_signed(), "");
        let q = b.reg(&format!("sel{i}_q"), Ty::s(sw), "");
        s2.push(Stmt::set(&q, &Expr::mux(&a.bit(i), &ws, &Expr::zero(Ty::s(sw)))));
        terms.push((q, (lo.min(0), hi.max(0))));
    }
    b.always(&clk, s2);
    b.comment(&format!("S3: adder tree ({} register stage{})", p.tree_stages(), if p.tree_stages() > 1 { "s" } else { "" }));
    assert_eq!(clog2(terms.len() as u64), p.tree_depth(), "tree depth as derived");
    let (root, _) = adder_tree_piped(b, "sum", terms, Some((&clk, p.tree_levels)));
    let dot_q = b.reg("dot_q", root.ty(), "partial sum of this bit plane");
    b.always(&clk, vec![Stmt::set(&dot_q, &root)]);
    b.comment("S4: accumulate, hold");
    accumulate_and_hold(b, p, &clk, &dot_q, &acc_en, &ports);
    m
}

/// The stage note of a PE with its own input registers.
fn pe_inputs_doc(m: &mut Module, p: &HwParams) {
    if p.pe_input_regs {
        m.doc("Every stage is one cycle later than its number: the PE first registers its own copy of its inputs (S1b).");
    }
}

/// The PE's activation and weight inputs as its lane logic sees them: the ports themselves, or with
/// [`HwParams::pe_input_regs`] this PE's own registered copy (S1b). The copies are `keep`: Yosys
/// would otherwise merge the identical registers of a row's or a column's PEs back into one.
fn pe_inputs(b: &mut Body, p: &HwParams, clk: &Expr, a: &Expr, w: &Expr) -> (Expr, Expr) {
    if !p.pe_input_regs {
        return (a.clone(), w.clone());
    }
    b.comment("S1b: this PE's own copy of its broadcast inputs");
    let a_r = b.reg("a_r", a.ty(), "activations, registered beside this PE");
    let w_r = b.reg("w_r", w.ty(), "weights, registered beside this PE");
    b.always_kept(clk, vec![Stmt::set(&a_r, a), Stmt::set(&w_r, w)]);
    (a_r, w_r)
}

/// Count the agreeing signs of `same` (one bit per lane) two lanes at a time into registered 2-bit
/// counts (S2), the first level of a popcount; returns the counts as adder-tree terms.
fn xnor_pair_counts(b: &mut Body, prefix: &str, same: &Expr, s2: &mut Vec<Stmt>) -> Vec<(Expr, (i64, i64))> {
    let l = same.width();
    let mut terms = Vec::new();
    for i in 0..l / 2 {
        let (x0, x1) = (same.bit(2 * i), same.bit(2 * i + 1));
        let q = b.reg(&format!("{prefix}pair{i}_q"), Ty::u(2), "");
        s2.push(Stmt::set(&q, &Expr::concat(&[x0.and(&x1), x0.xor(&x1)])));
        terms.push((q, (0, 2)));
    }
    if l % 2 == 1 {
        let q = b.reg(&format!("{prefix}odd_q"), Ty::bit(), "");
        s2.push(Stmt::set(&q, &same.bit(l - 1)));
        terms.push((q, (0, 1)));
    }
    terms
}

/// The +-1 dot product of `lanes` sign pairs from the count of agreeing pairs: `2 * count - lanes`, as a
/// `dw`-bit signed net.
fn xnor_dot(b: &mut Body, name: &str, count: &Expr, lanes: u32, dw: u32) -> Expr {
    let pop = count.resize(dw).as_signed();
    b.net(name, &pop.shl(1).sub(&Expr::lit(i128::from(lanes), Ty::s(dw))), "2 * popcount - lanes")
}

/// Bit `basis` of every lane's code in `bus` (lane `l` at `[l * bits +: bits]`), lane 0 lowest.
fn sign_plane(bus: &Expr, lanes: u32, bits: u32, basis: u32) -> Expr {
    if bits == 1 {
        return bus.clone();
    }
    let parts: Vec<Expr> = (0..lanes).rev().map(|l| bus.bit(l * bits + basis)).collect();
    Expr::concat(&parts)
}

/// A processing element for multi-basis binary operands: for every basis pair `p = i * act + j`, XNOR
/// weight sign plane `i` with activation sign plane `j`, count the agreements with a pipelined tree,
/// and accumulate `2 * count - lanes` (the pair's +-1 dot product). The hold register keeps every
/// pair's count; the drain combines them with the channel's pair scales ([`combine`]).
fn pe_bases(p: &HwParams, bs: Bases) -> Module {
    let (l, kw, ka, cw) = (p.lanes, bs.weight, bs.act, bs.count_bits());
    let np = bs.pairs();
    let (dw, hw) = (p.dot_bits(), p.hold_bits());
    let mut m = Module::new(&p.module("pe"));
    m.doc(&format!("Processing element: {l} lanes of {kw}-basis binary weights x {ka}-basis binary activations; per basis pair"));
    m.doc(&format!("(p = i * {ka} + j) an XNOR/popcount and a {cw}-bit count of +-1 products; a hold register with all {np} counts."));
    m.doc(&format!("Stages: sign agreements (S2), popcount trees (S3..S{}), accumulate (S{}).", 2 + p.tree_stages(), 3 + p.tree_stages()));
    pe_inputs_doc(&mut m, p);
    let clk = m.input("clk_i", Ty::bit(), "clock");
    let a = m.input("a_i", Ty::u(l * ka), "activation sign bits, lane l basis j at [l*KA + j]");
    let w = m.input("w_i", Ty::u(l * kw), "weight sign bits, lane l basis i at [l*KW + i]");
    let acc_en = m.input("acc_en_i", Ty::bit(), "valid counts are in dot_q: accumulate them");
    let clr = m.input("clr_i", Ty::bit(), "clear the counts (after a tile's last step, and on reset)");
    let load = m.input("load_i", Ty::bit(), "it is the last step: move the counts into the hold register");
    let shift = m.input("shift_i", Ty::bit(), "shift the hold registers down one row");
    let hold_i = m.input("hold_i", Ty::u(hw), "hold register of the row above");
    let hold_o = m.output_reg("hold_o", Ty::u(hw), "hold register, towards row 0; pair p at [p*CW +: CW]");
    let b = &mut m.body;
    let (a, w) = pe_inputs(b, p, &clk, &a, &w);
    b.comment("S2: per basis pair, XNOR of the sign planes (1 means the product is +1), counted in pairs");
    let mut s2 = Vec::new();
    let mut pair_terms = Vec::new();
    for i in 0..kw {
        for j in 0..ka {
            let pi = i * ka + j;
            let wp = sign_plane(&w, l, kw, i);
            let ap = sign_plane(&a, l, ka, j);
            let x = b.net(&format!("same{pi}"), &ap.xor(&wp).not(), &format!("weight basis {i} x activation basis {j}"));
            pair_terms.push(xnor_pair_counts(b, &format!("p{pi}_"), &x, &mut s2));
        }
    }
    b.always(&clk, s2);
    b.comment(&format!("S3: popcount trees ({} register stage{})", p.tree_stages(), if p.tree_stages() > 1 { "s" } else { "" }));
    let mut dots = Vec::new();
    let mut st = Vec::new();
    for (pi, terms) in pair_terms.into_iter().enumerate() {
        assert_eq!(clog2(terms.len() as u64), p.tree_depth(), "tree depth as derived");
        let (root, _) = adder_tree_piped(b, &format!("p{pi}_sum"), terms, Some((&clk, p.tree_levels)));
        let dot = xnor_dot(b, &format!("p{pi}_dot_s"), &root, l, dw);
        let dot_q = b.reg(&format!("p{pi}_dot_q"), dot.ty(), "this pair's +-1 dot product of this step");
        st.push(Stmt::set(&dot_q, &dot));
        dots.push(dot_q);
    }
    b.always(&clk, st);
    b.comment("S4: accumulate each pair's dot product, hold");
    let mut acc_st = Vec::new();
    let mut nexts = Vec::new();
    for (pi, dot_v) in dots.iter().enumerate() {
        let acc_q = b.reg(&format!("p{pi}_acc_q"), Ty::s(cw), "");
        assert!(dw <= cw, "pair count narrower than one step");
        let nxt = b.net(&format!("p{pi}_acc_nxt"), &acc_q.add(&dot_v.resize(cw)), "");
        acc_st.push(Stmt::when_else(&clr, vec![Stmt::set(&acc_q, &Expr::zero(Ty::s(cw)))], vec![Stmt::when(&acc_en, vec![Stmt::set(&acc_q, &nxt)])]));
        nexts.push(nxt);
    }
    let all: Vec<Expr> = nexts.iter().rev().map(|n| n.as_unsigned()).collect();
    acc_st.push(Stmt::when_else(&load, vec![Stmt::set(&hold_o, &Expr::concat(&all))], vec![Stmt::when(&shift, vec![Stmt::set(&hold_o, &hold_i)])]));
    b.always(&clk, acc_st);
    m
}

/// Basis combination of one channel: `acc = sum_p m_p * D_p` over the basis pairs, with the pair
/// counts `D_p` from the hold register and the channel's signed pair scales `m_p` (drain stages C1:
/// products, C2: sum). Exact: the sum's range is what sizes `acc_bits`.
pub fn combine(p: &HwParams) -> Module {
    let bs = p.bases.expect("combine is for bases");
    let (np, cw, sb, aw) = (bs.pairs(), bs.count_bits(), bs.scale_bits, p.acc_bits);
    let mut m = Module::new(&p.module("combine"));
    m.doc(&format!("Basis combination: acc = sum over the {np} basis pairs of scale_p * count_p (C1: products, C2: sum)."));
    let clk = m.input("clk_i", Ty::bit(), "clock");
    let d = m.input("d_i", Ty::u(np * cw), "pair counts, pair p at [p*CW +: CW]");
    let sc = m.input("scale_i", Ty::u(np * sb), "pair scales, pair p at [p*SB +: SB]");
    let acc_o = m.output_reg("acc_o", Ty::s(aw), "the combined accumulator value (C2)");
    let b = &mut m.body;
    // a count lies in -N..=N, a scale in -2^(SB-1)..2^(SB-1)-1
    let n = i64::from(bs.max_count);
    let mmax = 1i64 << (sb - 1);
    let range = (-mmax * n, mmax * n);
    let tw = signed_bits(range.0.into(), range.1.into()).max(cw).max(sb);
    let mut st = Vec::new();
    let mut terms = Vec::new();
    for pi in 0..np {
        let dv = b.net(&format!("d{pi}"), &d.slice(pi * cw + cw - 1, pi * cw).as_signed(), "");
        let mv = b.net(&format!("m{pi}"), &sc.slice(pi * sb + sb - 1, pi * sb).as_signed(), "");
        let q = b.reg(&format!("prod{pi}_q"), Ty::s(tw), "scale * count (C1)");
        st.push(Stmt::set(&q, &dv.resize(tw).mul(&mv.resize(tw))));
        terms.push((q, range));
    }
    b.always(&clk, st);
    let (root, _) = adder_tree(b, "sum", terms);
    assert!(root.width() <= aw, "acc_bits holds the combined range");
    b.always(&clk, vec![Stmt::set(&acc_o, &root.resize(aw))]);
    m
}

/// Per-row correction for odd-level weights: `n_w * sum_l a_l` (S2: sum, S3: scale).
pub fn rowsum(p: &HwParams) -> Module {
    let (l, ab, wb) = (p.lanes, p.act_bits, p.weight_bits);
    let dw = p.dot_bits();
    let mut m = Module::new(&p.module("rowsum"));
    m.doc(&format!("Row correction for {wb}-bit odd-level weights: n_w * sum of the row's {l} activations, n_w = {}.", (1u64 << wb) - 1));
    let clk = m.input("clk_i", Ty::bit(), "clock");
    let a = m.input("a_i", Ty::u(l * ab), "activation codes of one row");
    let corr_o = m.output_reg("corr_o", Ty::s(dw), "n_w * sum a, aligned with the PE's dot_q");
    let b = &mut m.body;
    let mut terms = Vec::new();
    for i in 0..l {
        let ac = b.net(&format!("a{i}_code"), &a.slice(i * ab + ab - 1, i * ab), "");
        let (v, r) = code_value(b, &format!("a{i}_val"), &ac, p.act_enc);
        terms.push((v, r));
    }
    let (root, _) = adder_tree(b, "sum", terms);
    let sum_q = b.reg("sum_q", root.ty(), "sum of the row's activations (S2)");
    let sum_s = if root.ty().signed { sum_q.clone() } else { sum_q.to_signed_value() };
    let corr_q = corr_o;
    let sum_w = b.net("sum_w", &sum_s.resize(dw), "");
    // aligned with the PE's adder tree: extra register stages when the tree has them, and one for the
    // PE's own input registers
    let mut prev = sum_w.shl(wb).sub(&sum_w);
    let mut st = vec![Stmt::set(&sum_q, &root)];
    for i in 1..p.tree_stages() + u32::from(p.pe_input_regs) {
        let d = b.reg(&format!("corr_d{i}_q"), Ty::s(dw), "");
        st.push(Stmt::set(&d, &prev));
        prev = d;
    }
    st.push(Stmt::set(&corr_q, &prev));
    b.always(&clk, st);
    m
}

/// The array: input registers (S1), per-row corrections and `rows x cols` PEs whose hold registers
/// form one shift chain per column, row 0 at the bottom.
pub fn array(p: &HwParams, pe: &Module, rowsum: Option<&Module>) -> Module {
    // a hold register is the accumulator, or with bases all the pair counts
    let (r, c, l, ab, wb, aw) = (p.rows, p.cols, p.lanes, p.act_bits, p.weight_bits, p.hold_bits());
    let dw = p.dot_bits();
    let mut m = Module::new(&p.module("array"));
    m.doc(&format!("{r} x {c} processing elements, {l} lanes each; activations broadcast along rows, weights along columns."));
    m.doc("The compute pipeline never stalls: control only admits a tile's last step when its sum will find the hold registers free.");
    let clk = m.input("clk_i", Ty::bit(), "clock");
    let a = m.input("a_data_i", Ty::u(r * l * ab), "activation codes of one step");
    let cbits = p.code_bits();
    let w_in = m.input("w_data_i", Ty::u(c * l * cbits), "weight codes of one step");
    let levels = p.codebook_bits.map(|_| m.input("levels_i", Ty::u(p.table_bits()), "level table"));
    let step = p.serial.then(|| m.input("step_i", Ty::bit(), "a step is accepted: load the input registers"));
    let neg = (p.serial && p.act_enc == Encoding::Int).then(|| m.input("neg_i", Ty::bit(), "the bit plane entering S1 is a two's complement sign bit: negate the weights"));
    let acc_en = m.input("acc_en_i", Ty::bit(), "accumulate the dot products");
    let clr = m.input("clr_i", Ty::bit(), "clear the accumulators");
    let load = p.double_buffer.then(|| m.input("load_i", Ty::bit(), "the dot products end a tile"));
    let shift = m.input("shift_i", Ty::bit(), "shift the hold registers one row down");
    let col_o = m.output("col_o", Ty::u(c * aw), "hold register of row 0 of each column");
    let b = &mut m.body;
    let w = match (&levels, p.codebook_bits) {
        (Some(levels), Some(cb)) => {
            b.comment("codebook: each weight code selects a level; decoded once per column and lane");
            let n = 1u32 << cb;
            let iw = clog2(u64::from(n * wb));
            let w_dec = b.wire("w_dec", Ty::u(c * l * wb), "decoded weight levels");
            b.generate_for("gw", c * l, "g_lookup", |b| {
                let code = b.net("code", &w_in.part(&format!("gw * {cb}"), cb, (c * l - 1) * cb), "");
                let base = b.net("base", &code.resize(iw).mul(&Expr::lit(i128::from(wb), Ty::u(iw))), "first bit of the level");
                b.assign(&w_dec.part(&format!("gw * {wb}"), wb, (c * l - 1) * wb), &levels.part_at(&base, wb));
            });
            w_dec
        }
        _ => w_in.clone(),
    };
    assert!(p.input_regs || !p.serial, "bit-serial activations shift in the input registers");
    if p.input_regs {
        b.comment("S1: input registers");
    } else {
        b.comment("no input registers: the PEs' first stage takes the input ports");
    }
    let a_q = if p.input_regs {
        b.reg("a_q", Ty::u(r * l * ab), if p.serial { "activation codes, each shifted right one bit per cycle" } else { "" })
    } else {
        a.clone()
    };
    let (planes, w_pe, cl) = match &step {
        Some(step) => {
            // each lane's code moves down one bit per cycle: its bit 0 is this cycle's bit plane
            let shifted: Vec<Expr> = (0..r * l)
                .rev()
                .map(|k| if ab == 1 { Expr::lit(0, Ty::bit()) } else { Expr::concat(&[Expr::lit(0, Ty::bit()), a_q.slice(k * ab + ab - 1, k * ab + 1)]) })
                .collect();
            let a_shift = b.net("a_shift", &Expr::concat(&shifted), "every code shifted right by one bit");
            b.always(&clk, vec![Stmt::when_else(step, vec![Stmt::set(&a_q, &a)], vec![Stmt::set(&a_q, &a_shift)])]);
            let bits: Vec<Expr> = (0..r * l).rev().map(|k| a_q.bit(k * ab)).collect();
            let planes = b.net("a_plane", &Expr::concat(&bits), "this cycle's bit of every activation, row r lane l at [r*L + l]");
            // each column lane's weight value, shifted left one bit per cycle with its activation bit
            // (negated for the sign bit of two's complement activations): shared by the column's PEs
            let sw = p.serial_weight_bits();
            let ws = b.wire("w_shift", Ty::u(c * l * sw), "shifted weight values, column c lane l at [(c*L+l)*SW +: SW]");
            b.generate_for("gw", c * l, "g_wshift", |b| {
                let code = b.net("code", &w.part(&format!("gw * {wb}"), wb, (c * l - 1) * wb), "");
                let (val, _) = code_value(b, "val", &code, p.weight_enc);
                let ws_q = b.reg("ws_q", Ty::s(sw), "this bit's weight value");
                let base = b.net("base", &Expr::mux(step, &val.resize(sw), &ws_q.shl(1)), "");
                let next = match &neg {
                    Some(neg) => Expr::mux(neg, &Expr::zero(Ty::s(sw)).sub(&base), &base),
                    None => base.clone(),
                };
                b.always(&clk, vec![Stmt::set(&ws_q, &next)]);
                b.assign(&ws.part(&format!("gw * {sw}"), sw, (c * l - 1) * sw), &ws_q.as_unsigned());
            });
            (Some(planes), ws, l * sw)
        }
        None if !p.input_regs => (None, w, l * wb),
        None => {
            let w_q = b.reg("w_q", Ty::u(c * l * wb), "");
            b.always(&clk, vec![Stmt::set(&a_q, &a), Stmt::set(&w_q, &w)]);
            (None, w_q, l * wb)
        }
    };
    let hold = b.wire("hold", Ty::u((r + 1) * c * aw), "hold registers, row-major; the row above the top reads zeros");
    b.assign(&hold.part(&format!("{}", r * c * aw), c * aw, r * c * aw), &Expr::zero(Ty::u(c * aw)));
    b.assign(&col_o, &hold.part("0", c * aw, 0));
    let rl = l * ab;
    b.generate_for("gr", r, "g_row", |b| {
        let a_row = match &planes {
            Some(pl) => pl.part(&format!("gr * {l}"), l, (r - 1) * l),
            None => a_q.part(&format!("gr * {rl}"), rl, (r - 1) * rl),
        };
        let corr = rowsum.map(|rs| {
            let corr = b.wire("corr", Ty::s(dw), "n_w * sum of this row's activations");
            b.instance(rs, "u_rowsum", &[("clk_i", clk.clone()), ("a_i", a_row.clone()), ("corr_o", corr.clone())]);
            corr
        });
        b.generate_for("gc", c, "g_col", |b| {
            let mut conns = vec![
                ("clk_i", clk.clone()),
                ("a_i", a_row.clone()),
                ("w_i", w_pe.part(&format!("gc * {cl}"), cl, (c - 1) * cl)),
                ("acc_en_i", acc_en.clone()),
                ("clr_i", clr.clone()),
                ("shift_i", shift.clone()),
                ("hold_i", hold.part(&format!("((gr + 1) * {c} + gc) * {aw}"), aw, (r * c + c - 1) * aw)),
                ("hold_o", hold.part(&format!("(gr * {c} + gc) * {aw}"), aw, ((r - 1) * c + c - 1) * aw)),
            ];
            if let Some(corr) = &corr {
                conns.push(("corr_i", corr.clone()));
            }
            if let Some(load) = &load {
                conns.push(("load_i", load.clone()));
            }
            b.instance(pe, "u_pe", &conns);
        });
    });
    m
}

/// PACT clip of one channel: `x = clamp(acc + bias, 0, alpha)` (drain stages P1: sum, P2: clip).
pub fn pact(p: &HwParams) -> Module {
    let aw = p.acc_bits;
    let mut m = Module::new(&p.module("pact"));
    m.doc("PACT clip in the accumulator domain: x = clamp(acc + bias, 0, alpha).");
    let clk = m.input("clk_i", Ty::bit(), "clock");
    let acc = m.input("acc_i", Ty::s(aw), "accumulator value");
    let bias = m.input("bias_i", Ty::s(aw), "per-channel bias");
    let alpha = m.input("alpha_i", Ty::u(aw), "per-channel clip level");
    let x_o = m.output_reg("x_o", Ty::u(aw), "clipped value, 0..alpha");
    let b = &mut m.body;
    b.comment("P1: acc + bias (the clip level travels along); P2: clip");
    let t = b.reg("t_q", Ty::s(aw + 1), "acc + bias, exact (P1)");
    let alpha_q = b.reg("alpha_q", Ty::u(aw), "");
    b.always(&clk, vec![Stmt::set(&t, &acc.resize(aw + 1).add(&bias.resize(aw + 1))), Stmt::set(&alpha_q, &alpha)]);
    let alpha = alpha_q;
    let alpha_s = b.net("alpha_s", &alpha.to_signed_value(), "");
    let x = Expr::mux(
        &t.lt(&Expr::zero(Ty::s(aw + 1))),
        &Expr::zero(Ty::u(aw)),
        &Expr::mux(&t.gt(&alpha_s), &alpha, &t.slice(aw - 1, 0)),
    );
    let x_q = x_o;
    b.always(&clk, vec![Stmt::set(&x_q, &x)]);
    m
}

/// Requantization of one channel: `code = min(round(x * mult / 2^shift), 2^out_bits - 1)`
/// (drain stages P3: product, two stages with a multiplier of 8 bits or more; P4: quotient bits and rounding
/// bit; P5: saturation and increment).
pub fn requant(p: &HwParams) -> Module {
    let (aw, mb, sb, ob) = (p.acc_bits, p.mult_bits, p.shift_bits, p.out_bits);
    let pw = p.product_bits();
    let mut m = Module::new(&p.module("requant"));
    m.doc(&format!("Requantization: code = min(round(x * mult / 2^shift), {}), rounding {}.", (1u32 << ob) - 1, p.rounding.name()));
    m.doc("Rounding from parts: q = p >> shift, up = h && (k || t); h = bit shift-1, k = any lower bit, t = 1 (half_up) or q[0] (half_even).");
    let clk = m.input("clk_i", Ty::bit(), "clock");
    let x = m.input("x_i", Ty::u(aw), "clipped value");
    let mult = m.input("mult_i", Ty::u(mb), "per-channel multiplier");
    let shift = m.input("shift_i", Ty::u(sb), "per-channel right shift");
    let code_o = m.output_reg("code_o", Ty::u(ob), "output code");
    let b = &mut m.body;
    let prod_q = b.reg("prod_q", Ty::u(pw), if p.mult_split() { "x * mult (P3b)" } else { "x * mult (P3)" });
    let shift_a = b.reg("shift_a_q", Ty::u(sb), "the shift that goes with prod_q");
    if p.mult_split() {
        // P3a: two narrower products, by the multiplier's low and high halves; P3b: their sum
        let lw = mb / 2;
        let hw = mb - lw;
        let lo_q = b.reg("prod_lo_q", Ty::u(aw + lw), "x * mult[low half] (P3a)");
        let hi_q = b.reg("prod_hi_q", Ty::u(aw + hw), "x * mult[high half] (P3a)");
        let shift_p = b.reg("shift_p_q", Ty::u(sb), "");
        let (m_lo, m_hi) = (mult.slice(lw - 1, 0), mult.slice(mb - 1, lw));
        b.always(
            &clk,
            vec![
                Stmt::set(&lo_q, &x.resize(aw + lw).mul(&m_lo.resize(aw + lw))),
                Stmt::set(&hi_q, &x.resize(aw + hw).mul(&m_hi.resize(aw + hw))),
                Stmt::set(&shift_p, &shift),
            ],
        );
        b.always(&clk, vec![Stmt::set(&prod_q, &lo_q.resize(pw).add(&hi_q.resize(pw).shl(lw))), Stmt::set(&shift_a, &shift_p)]);
    } else {
        b.always(&clk, vec![Stmt::set(&prod_q, &x.resize(pw).mul(&mult.resize(pw))), Stmt::set(&shift_a, &shift)]);
    }
    let shift = shift_a;
    // P4: the parts of round(p / 2^shift) (arith::round::shift_round_by_parts), no wide carry chain:
    //   q = p >> shift (only its low OB bits, a part-select), ovf = q >= 2^OB (a mask test),
    //   h = bit shift-1 of p, k = any bit below it, up = h && (k || t), t = 1 (half_up) or q[0] (half_even)
    let xw = pw + ob;
    let p_ext = b.net("prod_ext", &prod_q.resize(xw), "zero-extended so that [shift +: OB] stays in range");
    let ones = (1i128 << xw) - 1;
    let below = b.net("below", &Expr::lit(ones, Ty::u(xw)).shl_by(&shift).not(), "bits below position shift");
    let low = b.net("low", &below.shr_by(&one_bit_amount()), "bits below position shift-1");
    let h = b.net("half_bit", &p_ext.and(&below.xor(&low)).any(), "bit shift-1 of p: the first dropped bit");
    let k = b.net("sticky", &p_ext.and(&low).any(), "any lower dropped bit");
    let top_mask = Expr::lit(ones ^ ((1i128 << ob) - 1), Ty::u(xw));
    let hi = b.net("hi_mask", &top_mask.shl_by(&shift), "bits at and above shift + OB");
    let iw = clog2(u64::from(xw)).max(sb);
    let idx = if iw > sb { b.net("shift_idx", &shift.resize(iw), "") } else { shift.clone() };
    let q_low = b.net("q_low", &p_ext.part_at(&idx, ob), "low OB bits of p >> shift");
    let t = match p.rounding {
        Rounding::HalfUp => Expr::lit(1, Ty::bit()),
        Rounding::HalfEven => q_low.bit(0),
    };
    let q_q = b.reg("q_q", Ty::u(ob), "low bits of the quotient (P4)");
    let ovf_q = b.reg("ovf_q", Ty::bit(), "the quotient alone exceeds the output range");
    let up_q = b.reg("up_q", Ty::bit(), "round up");
    b.always(
        &clk,
        vec![Stmt::set(&q_q, &q_low), Stmt::set(&ovf_q, &p_ext.and(&hi).any()), Stmt::set(&up_q, &h.land(&k.lor(&t)))],
    );
    // P5: saturate and add the rounding bit (an OB-bit increment)
    let max = (1i128 << ob) - 1;
    let max_e = Expr::lit(max, Ty::u(ob));
    let sat = b.net("sat", &ovf_q.lor(&q_q.eq(&max_e).land(&up_q)), "the rounded value does not fit OB bits");
    let code = Expr::mux(&sat, &max_e, &q_q.add(&up_q.resize(ob)));
    let code_q = code_o;
    b.always(&clk, vec![Stmt::set(&code_q, &code)]);
    m
}

fn one_bit_amount() -> Expr {
    Expr::lit(1, Ty::u(1))
}

/// Per-channel parameter registers written through the parameter-load interface, and the run-time table
/// (codebook levels or basis-pair scales) in the address region above them.
pub fn params(p: &HwParams) -> Module {
    let (c, pa, pd) = (p.cols, p.prm_addr_bits, p.prm_data_bits);
    let fields = p.param_fields();
    assert!(fields.len() <= 4, "at most four fields per channel");
    let n = p.table_entries();
    let mut m = Module::new(&p.module("params"));
    let names: Vec<String> = fields.iter().enumerate().map(|(i, (n, _))| format!("{i} {n}")).collect();
    m.doc(&format!("Per-channel parameters; address = channel * 4 + field ({}).", names.join(", ")));
    if p.bases.is_some() {
        m.doc(&format!("Pair scales: address = 2^{} + channel * {} + pair.", pa - 1, n / c));
    } else if n > 0 {
        m.doc(&format!("Level table: address = 2^{} + index, index 0..{}.", pa - 1, n - 1));
    }
    m.doc("Not reset: a reset of the datapath keeps the loaded layer.");
    if p.param_ram() {
        m.doc("Fields in memories (a word per channel), read at the shared unit's issued column: written only while the array is idle.");
    }
    let clk = m.input("clk_i", Ty::bit(), "clock");
    let we = m.input("prm_we_i", Ty::bit(), "write strobe");
    let addr = m.input("prm_addr_i", Ty::u(pa), "channel * 4 + field");
    let data = m.input("prm_wdata_i", Ty::u(pd), "value in the low bits");
    let col = p.param_ram().then(|| m.input("col_next_i", Ty::u(clog2(u64::from(c))), "column issued to the shared output unit in the next cycle"));
    let ports: Vec<Expr> = if p.param_ram() {
        let delays = p.param_field_delays();
        fields.iter().zip(&delays).map(|((n, w), d)| m.output_reg(&format!("{n}_o"), Ty::u(*w), &format!("the issued column's {n}, at P{d}"))).collect()
    } else {
        fields.iter().map(|(n, w)| m.output(&format!("{n}_o"), Ty::u(c * w), "")).collect()
    };
    let tname = table_name(p);
    let (t_doc, t_we_doc) = if p.bases.is_some() { ("pair scales, entry i at [i*SB +: SB]", "write to the pair scales") } else { ("level table, entry i at [i*LB +: LB]", "write to the level table") };
    let table_o = (n > 0).then(|| m.output(&format!("{tname}_o"), Ty::u(p.table_bits()), t_doc));
    let b = &mut m.body;
    // with a table the top address bit selects it
    let ch_top = if n > 0 { pa - 2 } else { pa - 1 };
    let ch_we = if n > 0 { b.net("ch_we", &we.land(&addr.bit(pa - 1).lnot()), "write to a channel's parameters") } else { we.clone() };
    let ch = b.net("ch", &addr.slice(ch_top, 2), "channel");
    let field = b.net("field", &addr.slice(1, 0), "field");
    let nf = fields.len() as u32;
    let f_sel = b.net("field_sel", &Expr::lit(1, Ty::u(nf)).shl_by(&field), "one-hot field; none when unused");
    if let Some(col) = &col {
        // one memory per field, a word per channel; each field is read at the issued column, delayed to
        // the stage that uses it. The read is a cycle early, into the memory's read register, and the
        // field's own register follows: a block RAM's read is slow (5.8 ns on ECP5), so it gets a
        // cycle to itself.
        let cbw = col.width();
        // a write to a channel beyond the last changes nothing
        let in_range = if ch.width() == cbw && c == 1 << cbw { None } else { Some(b.net("ch_ok", &ch.lt(&Expr::lit(i128::from(c), ch.ty())), "channel in range")) };
        let ch_we = match &in_range {
            Some(ok) => b.net("mem_we", &ch_we.land(ok), "write to a channel in range"),
            None => ch_we.clone(),
        };
        let waddr = if ch.width() == cbw { ch.clone() } else { b.net("ch_addr", &ch.slice(cbw - 1, 0), "") };
        let mems: Vec<_> = fields.iter().map(|(n, w)| b.memory(&format!("{n}_mem"), *w, c, "")).collect();
        let delays = p.param_field_delays();
        let mut st = Vec::new();
        let mut col_d = vec![col.clone()];
        for k in 1..=delays.iter().copied().max().unwrap_or(0) {
            let q = b.reg(&format!("col_d{k}_q"), col.ty(), if k == 1 { "the issued column (col_next_i delayed)" } else { "" });
            st.push(Stmt::set(&q, &col_d[k as usize - 1]));
            col_d.push(q);
        }
        let reads: Vec<Expr> = fields.iter().map(|(n, w)| b.reg(&format!("{n}_rd_q"), Ty::u(*w), "")).collect();
        let mut writes = Vec::new();
        for (i, (((_, w), mem), (port, d))) in fields.iter().zip(&mems).zip(ports.iter().zip(&delays)).enumerate() {
            writes.push(Stmt::when(&ch_we.land(&f_sel.bit(i as u32)), vec![Stmt::set(&mem.word(&waddr), &data.slice(w - 1, 0))]));
            st.push(Stmt::set(&reads[i], &mem.word(&col_d[*d as usize])));
            st.push(Stmt::set(port, &reads[i]));
        }
        b.always(&clk, writes);
        b.always(&clk, st);
    } else {
        let regs: Vec<Expr> = fields.iter().map(|(n, w)| b.reg(&format!("{n}_q"), Ty::u(c * w), "")).collect();
        for (port, q) in ports.iter().zip(&regs) {
            b.assign(port, q);
        }
        let ch_sel = b.net("ch_sel", &Expr::lit(1, Ty::u(c)).shl_by(&ch), "one-hot channel; none when out of range");
        b.generate_for("gc", c, "g_ch", |b| {
            let sel = b.net("sel", &ch_we.land(&ch_sel.part("gc", 1, c - 1)), "");
            for (i, ((_, w), q)) in fields.iter().zip(&regs).enumerate() {
                b.always(
                    &clk,
                    vec![Stmt::when(&sel.land(&f_sel.bit(i as u32)), vec![Stmt::set(&q.part(&format!("gc * {w}"), *w, (c - 1) * w), &data.slice(w - 1, 0))])],
                );
            }
        });
    }
    if let Some(table_o) = table_o {
        let lb = p.table_entry_bits();
        let ib = clog2(u64::from(n)).max(1);
        let t_we = b.net("table_we", &we.land(&addr.bit(pa - 1)), t_we_doc);
        let idx = b.net("table_idx", &addr.slice(ib - 1, 0), "");
        let t_sel = b.net("table_sel", &Expr::lit(1, Ty::u(n)).shl_by(&idx), "one-hot table entry");
        let table_q = b.reg(&format!("{tname}_q"), Ty::u(n * lb), "");
        b.assign(&table_o, &table_q);
        b.generate_for("gt", n, "g_lvl", |b| {
            let sel = b.net("sel", &t_we.land(&t_sel.part("gt", 1, n - 1)), "");
            b.always(&clk, vec![Stmt::when(&sel, vec![Stmt::set(&table_q.part(&format!("gt * {lb}"), lb, (n - 1) * lb), &data.slice(lb - 1, 0))])]);
        });
    }
    m
}

/// The table's signal name: `levels` (codebook) or `scales` (basis pairs).
fn table_name(p: &HwParams) -> &'static str {
    if p.bases.is_some() {
        "scales"
    } else {
        "levels"
    }
}

/// Threshold output stage of one channel: `code = #{k : acc >= T_k}` (P1: compares, P2: count).
/// The thresholds are computed by the reference model from bias, alpha, mult and shift, so the codes
/// equal the clip/multiply/shift pipeline's exactly (the output is monotone in `acc`).
pub fn thresh(p: &HwParams) -> Module {
    let (aw, ob) = (p.acc_bits, p.out_bits);
    let n = p.threshold_count();
    let tw = aw + 1;
    let mut m = Module::new(&p.module("thresh"));
    m.doc(&format!("Threshold requantization: code = number of the {n} thresholds that acc reaches."));
    let clk = m.input("clk_i", Ty::bit(), "clock");
    let acc = m.input("acc_i", Ty::s(aw), "accumulator value");
    let t = m.input("t_i", Ty::u(n * tw), "thresholds T_1..T_n, T_k at [(k-1)*TW +: TW]");
    let code_o = m.output_reg("code_o", Ty::u(ob), "output code");
    let b = &mut m.body;
    let p1 = p.thresh_input_regs();
    let (acc, t) = if p1 {
        let acc_q = b.reg("acc_q", Ty::s(aw), "");
        let t_q = b.reg("t_q", Ty::u(n * tw), "");
        b.always(&clk, vec![Stmt::set(&acc_q, &acc), Stmt::set(&t_q, &t)]);
        (acc_q, t_q)
    } else {
        (acc, t)
    };
    // stage names: P1 is the input register when there is one
    let stage = |k: u32| format!("P{}", k - u32::from(!p1));
    let inputs = if p1 { "P1: register the accumulator and thresholds; " } else { "the inputs are registers (the shared unit's select): " };
    let acc_x = b.net("acc_x", &acc.resize(tw), "");
    let ge_q = b.reg("ge_q", Ty::u(n), &format!("acc >= T_k ({})", stage(if p.thresh_split() { 3 } else { 2 })));
    if p.thresh_split() {
        // a signed comparison is the unsigned comparison of offset-binary values (sign bit inverted);
        // compared in two halves: ge = hi > t_hi || (hi == t_hi && lo >= t_lo)
        b.comment(&format!("{inputs}{}: compare the halves; {}: combine; {}: count", stage(2), stage(3), stage(4)));
        let lw = tw / 2;
        let flip = |e: &Expr| Expr::concat(&[e.bit(tw - 1).not(), e.slice(tw - 2, 0)]);
        let a_ob = b.net("acc_ob", &flip(&acc_x), "offset binary");
        let (a_hi, a_lo) = (a_ob.slice(tw - 1, lw), a_ob.slice(lw - 1, 0));
        let gt_q = b.reg("hi_gt_q", Ty::u(n), &format!("high half of acc > high half of T_k ({})", stage(2)));
        let eq_q = b.reg("hi_eq_q", Ty::u(n), &format!("high halves equal ({})", stage(2)));
        let lo_q = b.reg("lo_ge_q", Ty::u(n), &format!("low half of acc >= low half of T_k ({})", stage(2)));
        let (mut gts, mut eqs, mut los) = (Vec::new(), Vec::new(), Vec::new());
        for k in 0..n {
            let raw = b.net(&format!("t{}", k + 1), &t.slice(k * tw + tw - 1, k * tw), "");
            let tk = b.net(&format!("t{}_ob", k + 1), &flip(&raw), "offset binary");
            let (t_hi, t_lo) = (tk.slice(tw - 1, lw), tk.slice(lw - 1, 0));
            // comparisons written as `<` only: Yosys builds `<` (and `>=`) from a subtraction's carry,
            // but `a > b` as `!(a < b) && !(a == b)`, which puts an equality reduction after the carry
            // chain (the critical path on iCE40)
            gts.push(t_hi.lt(&a_hi));
            eqs.push(a_hi.eq(&t_hi));
            los.push(a_lo.lt(&t_lo).lnot());
        }
        for v in [&mut gts, &mut eqs, &mut los] {
            v.reverse();
        }
        b.always(&clk, vec![Stmt::set(&gt_q, &Expr::concat(&gts)), Stmt::set(&eq_q, &Expr::concat(&eqs)), Stmt::set(&lo_q, &Expr::concat(&los))]);
        b.always(&clk, vec![Stmt::set(&ge_q, &gt_q.or(&eq_q.and(&lo_q)))]);
    } else {
        b.comment(&format!("{inputs}{}: compare; {}: count", stage(2), stage(3)));
        let mut cmps = Vec::new();
        for k in 0..n {
            let tk = b.net(&format!("t{}", k + 1), &t.slice(k * tw + tw - 1, k * tw).as_signed(), "");
            cmps.push(acc_x.lt(&tk).lnot());
        }
        cmps.reverse();
        b.always(&clk, vec![Stmt::set(&ge_q, &Expr::concat(&cmps))]);
    }
    let terms: Vec<(Expr, (i64, i64))> = (0..n).map(|k| (ge_q.bit(k), (0, 1))).collect();
    let (count, _) = adder_tree(b, "cnt", terms);
    let code_q = code_o;
    b.always(&clk, vec![Stmt::set(&code_q, &count.resize(ob))]);
    m
}

/// Control: joins the input streams, tracks tile boundaries through the compute pipeline, stalls it
/// while a finished tile waits for the hold registers, and runs the drain to the output stream.
pub fn ctrl(p: &HwParams) -> Module {
    let rows = p.rows;
    let rb = p.row_count_bits();
    let mut m = Module::new(&p.module("ctrl"));
    m.doc("Control: stream join, tile tracking, compute stall and drain sequencing.");
    m.doc("a_ready/w_ready depend on registers, the other stream's valid and a_last; y_ready only reaches the output buffer.");
    let clk = m.input("clk_i", Ty::bit(), "clock");
    let rst = m.input("rst_i", Ty::bit(), "synchronous reset");
    let a_valid = m.input("a_valid_i", Ty::bit(), "");
    let a_last = m.input("a_last_i", Ty::bit(), "");
    let a_ready = m.output("a_ready_o", Ty::bit(), "");
    let w_valid = m.input("w_valid_i", Ty::bit(), "");
    let w_ready = m.output("w_ready_o", Ty::bit(), "");
    let acc_en_o = m.output("acc_en_o", Ty::bit(), "a valid dot product is ready: accumulate it");
    let clr_o = m.output("clr_o", Ty::bit(), "clear the accumulators: a tile ends, or reset");
    let load_o = p.double_buffer.then(|| m.output("load_o", Ty::bit(), "the dot product ends a tile: load the hold registers"));
    let shift_o = m.output("shift_o", Ty::bit(), "issue one row into the drain; shift the hold registers");
    let push_o = m.output("push_o", Ty::bit(), "a row leaves the drain pipeline into the output buffer");
    let push_last_o = m.output("push_last_o", Ty::bit(), "that row is the last of its tile");
    let pop = m.input("pop_i", Ty::bit(), "a row leaves the output buffer (y_valid && y_ready)");
    let step_o = p.serial.then(|| m.output("step_o", Ty::bit(), "a step is accepted: load the input registers"));
    let serial_neg = p.serial && p.act_enc == Encoding::Int;
    let neg_o = serial_neg.then(|| m.output("neg_o", Ty::bit(), "the bit plane entering S1 is a two's complement sign bit"));
    let cbw = if p.shared_output { clog2(u64::from(p.cols)) } else { 0 };
    let gather_o = p.shared_output.then(|| m.output("gather_o", Ty::bit(), "a code leaves the shared output unit: gather it into the row"));
    let sel_o = (cbw > 0).then(|| m.output("col_o", Ty::u(cbw), "the column issued into the shared output unit"));
    let sel_next_o = p.param_ram().then(|| m.output("col_next_o", Ty::u(cbw), "the column issued next, if any is: col_o of the next cycle"));
    let items = p.delta_items();
    let ib = clog2(u64::from(items));
    let tot_o = p.running_totals.then(|| {
        (
            m.output("item_v_o", Ty::bit(), "running totals: a value is issued to the difference unit"),
            (items > 1).then(|| {
                if p.delta_read_ahead() {
                    m.output("item_next_o", Ty::u(ib), "the index within the tile of the next value issued: item_o of the next cycle")
                } else {
                    m.output("item_o", Ty::u(ib), "its index within the tile")
                }
            }),
            m.output("fresh_o", Ty::bit(), "it belongs to the first tile after reset"),
        )
    });
    let b = &mut m.body;

    b.comment(&format!("compute pipeline: S1..S{} valid/last (S{} holds the step's dot product)", p.compute_stages() - 1, p.compute_stages() - 1));
    let nv = p.compute_stages() - 1;
    let v: Vec<Expr> = (1..=nv).map(|i| b.reg(&format!("v{i}_q"), Ty::bit(), if i == 1 { "S1 holds a step" } else { "" })).collect();
    let l: Vec<Expr> = (1..=nv).map(|i| b.reg(&format!("l{i}_q"), Ty::bit(), if i == 1 { "S1 step is the last of its tile" } else { "" })).collect();
    let top = nv as usize - 1;
    // bit-serial: S1 holds one step for act_bits cycles (bit_q counts them, least significant first);
    // the flag e (the step's last bit plane) travels with each cycle's plane
    let serial = p.serial.then(|| {
        let ab = p.act_bits;
        let bw = clog2(u64::from(ab)).max(1);
        let bit = b.reg("bit_q", Ty::u(bw), "bit plane of the step in S1, 0 = least significant");
        let e1 = b.net("e1", &bit.eq(&Expr::lit(i128::from(ab - 1), Ty::u(bw))), "S1 holds the step's last (most significant) plane");
        let mut e = vec![e1.clone()];
        // up to the stage below the top: the top stage's load condition is the register load_q (with
        // running totals, computed from the top stage)
        let upto = if p.running_totals { nv + 1 } else { nv.max(2) };
        e.extend((2..upto).map(|i| b.reg(&format!("e{i}_q"), Ty::bit(), "")));
        (bit, e1, e)
    });
    let hold_full = b.reg("hold_full_q", Ty::bit(), "the hold registers hold a tile not yet drained");
    // The compute pipeline has no enable. A tile's last step is admitted only when no other last step is
    // in flight and the hold registers are free: nothing can fill them before this step reaches S4.
    let mut lif = v[0].land(&l[0]);
    for i in 1..=top {
        lif = lif.lor(&v[i].land(&l[i]));
    }
    // running totals load the hold registers a cycle after the top stage: that cycle is in flight too
    let load_reg = p.running_totals.then(|| b.reg("load_q", Ty::bit(), "a tile's last step was accumulated last cycle: load the hold registers"));
    if let Some(lq) = &load_reg {
        lif = lif.lor(lq);
    }
    let last_in_flight = b.net("last_in_flight", &lif, "");
    let can_finish = b.net("can_finish", &hold_full.lor(&last_in_flight).lnot(), "a last step may enter");
    // with hold registers only a tile's last step waits for them; without, every step waits while a
    // tile's last step is in flight or the accumulators drain
    let tile_ok = if p.double_buffer { a_last.lnot().lor(&can_finish) } else { can_finish.clone() };
    let ok = match &serial {
        // a bit-serial step is accepted when S1 is free or in its last cycle
        Some((_, e1, _)) => b.net("step_ok", &tile_ok.land(&v[0].lnot().lor(e1)), ""),
        None => b.net("step_ok", &tile_ok, ""),
    };
    let fire = b.net("fire", &a_valid.land(&w_valid).land(&ok), "a step is accepted");
    b.assign(&a_ready, &w_valid.land(&ok));
    b.assign(&w_ready, &a_valid.land(&ok));
    b.assign(&acc_en_o, &v[top]);
    if let Some((bit, _, _)) = &serial {
        if let Some(step_o) = &step_o {
            b.assign(step_o, &fire);
        }
        if let Some(neg_o) = &neg_o {
            // the sign plane enters S1 next: a one-bit step is accepted, or S1 moves to the top bit
            let ab = p.act_bits;
            let into_top = if ab >= 2 { v[0].land(&bit.eq(&Expr::lit(i128::from(ab - 2), Ty::u(bit.width())))) } else { Expr::lit(0, Ty::bit()) };
            let n = if ab == 1 { fire.clone() } else { fire.lnot().land(&into_top) };
            b.assign(neg_o, &n);
        }
    }
    // a tile's last step (for a bit-serial step: its last plane) at stage i
    let ends_tile = |i: usize| match &serial {
        Some((_, _, e)) => v[i].land(&e[i]).land(&l[i]),
        None => v[i].land(&l[i]),
    };
    // at the top stage; a register computed from the stage below when there is one, since it reaches
    // every accumulator's clear and enable
    let (load_next, load) = match load_reg {
        // running totals: a cycle after the top stage
        Some(lq) => (Some(ends_tile(top)), lq),
        None if top == 0 => (None, b.net("load", &ends_tile(0), "")),
        None => (Some(ends_tile(top - 1)), b.reg("load_q", Ty::bit(), "a tile's last step is at the top stage")),
    };
    match &load_o {
        // running totals are never cleared between tiles
        Some(load_o) if !p.running_totals => {
            b.assign(load_o, &load);
            b.assign(&clr_o, &rst.lor(&load));
        }
        Some(load_o) => {
            b.assign(load_o, &load);
            b.assign(&clr_o, &rst);
        }
        None => b.assign(&clr_o, &rst),
    }

    b.comment(&format!("drain: hold registers -> output stage ({} register stages) -> output buffer", p.drain_stages()));
    // Credits: rows issued and not yet popped never exceed the output buffer's depth, so the drain
    // pipeline runs free and never drops a row; `issue` depends on registers only.
    let depth = p.outbuf_depth();
    let ow = unsigned_bits(u128::from(depth));
    let occ = b.reg("occ_q", Ty::u(ow), "rows issued and not yet popped");
    let room = b.net("room", &occ.lt(&Expr::lit(i128::from(depth), Ty::u(ow))), "");
    // with a shared output unit, a row's columns are issued one per cycle; credits are taken per row
    let (col_first, col_last, col_stmts, col_reset) = if cbw > 0 {
        let col = b.reg("col_q", Ty::u(cbw), "next column to issue");
        let first = b.net("col_first", &col.eq(&Expr::zero(Ty::u(cbw))), "");
        let last = b.net("col_last", &col.eq(&Expr::lit(i128::from(p.cols - 1), Ty::u(cbw))), "");
        (first, last, Some(col), vec![Stmt::set(&Expr::sig("col_q", Ty::u(cbw)), &Expr::zero(Ty::u(cbw)))])
    } else {
        (Expr::lit(1, Ty::bit()), Expr::lit(1, Ty::bit()), None, Vec::new())
    };
    let issue = if cbw > 0 {
        b.net("issue", &hold_full.land(&room.lor(&col_first.lnot())), "one value into the drain")
    } else {
        b.net("issue", &hold_full.land(&room), "one row into the drain")
    };
    let (row_issue, shift) = if cbw > 0 {
        (b.net("row_issue", &issue.land(&col_first), "a row starts: take a credit"), b.net("row_done", &issue.land(&col_last), "a row's last column is issued"))
    } else {
        (issue.clone(), issue.clone())
    };
    if let (Some(sel_o), Some(col)) = (&sel_o, &col_stmts) {
        b.assign(sel_o, col);
    }
    // A shared unit over several columns issues a started row's remaining columns without waiting, so
    // the shift at its last column is known a cycle ahead: the hold registers' shift enable, which
    // reaches every PE, comes from a register instead of the issue logic.
    let shift_q = (cbw > 0 && p.cols >= 2).then(|| {
        let q = b.reg("shift_q", Ty::bit(), "row_done, a cycle ahead: a row's last column always issues");
        b.assign(&shift_o, &q);
        q
    });
    if shift_q.is_none() {
        b.assign(&shift_o, &shift);
    }
    let ds = p.drain_stages();
    let dv: Vec<Expr> = (1..=ds).map(|i| b.reg(&format!("dv{i}_q"), Ty::bit(), if i == 1 { "P1 holds a row" } else { "" })).collect();
    let dl: Vec<Expr> = (1..=ds).map(|i| b.reg(&format!("dl{i}_q"), Ty::bit(), if i == 1 { "P1 row is the last of its tile" } else { "" })).collect();
    let dc: Vec<Expr> = if cbw > 0 { (1..=ds).map(|i| b.reg(&format!("dc{i}_q"), Ty::bit(), if i == 1 { "P1 value is the row's last column" } else { "" })).collect() } else { Vec::new() };
    let (dvl, dll) = (dv[dv.len() - 1].clone(), dl[dl.len() - 1].clone());
    let gathered = if let Some(g) = &gather_o {
        b.assign(g, &dvl);
        let push_q = b.reg("push_q", Ty::bit(), "the gathered row is complete");
        let push_last_q = b.reg("push_last_q", Ty::bit(), "");
        b.assign(&push_o, &push_q);
        b.assign(&push_last_o, &push_last_q);
        let complete = if cbw > 0 { dvl.land(&dc[dc.len() - 1]) } else { dvl.clone() };
        Some((push_q, push_last_q, complete))
    } else {
        b.assign(&push_o, &dvl);
        b.assign(&push_last_o, &dll);
        None
    };
    let one_w = Expr::lit(1, Ty::u(ow));
    let occ_up = b.net("occ_up", &occ.add(&one_w), "");
    let occ_dn = b.net("occ_dn", &occ.sub(&one_w), "");
    let (row_last, row_stmts, row_reg) = if rb == 0 {
        (Expr::lit(1, Ty::bit()), Vec::new(), None)
    } else {
        let row = b.reg("row_q", Ty::u(rb), "next row to issue");
        let last = b.net("row_last", &row.eq(&Expr::lit(i128::from(rows - 1), Ty::u(rb))), "");
        let st = vec![Stmt::when(
            &shift,
            vec![Stmt::set(&row, &Expr::mux(&last, &Expr::zero(Ty::u(rb)), &row.add(&Expr::lit(1, Ty::u(rb)))))],
        )];
        (last, st, Some(row))
    };
    let done = b.net("drain_done", &shift.land(&row_last), "the last row of the tile is issued");
    // running totals: which item the difference unit gets, and whether the tile is the first after reset
    let tot = tot_o.as_ref().map(|(item_v_o, item_o, fresh_o)| {
        let per_item = if cbw > 0 { issue.clone() } else { shift.clone() };
        b.assign(item_v_o, &per_item);
        let fresh = b.reg("fresh_q", Ty::bit(), "no tile has drained since reset: no previous totals");
        b.assign(fresh_o, &fresh);
        let counter = item_o.as_ref().map(|item_o| {
            // one item per row (the row counter), or per value (a counter of its own)
            let (item, last, counter) = if cbw == 0 {
                (row_reg.clone().expect("several rows have a row counter"), row_last.clone(), None)
            } else {
                let item = b.reg("item_q", Ty::u(ib), "index of the next value issued within the tile");
                let last = b.net("item_last", &item.eq(&Expr::lit(i128::from(items - 1), Ty::u(ib))), "");
                (item.clone(), last, Some(item))
            };
            let next = Expr::mux(&last, &Expr::zero(Ty::u(ib)), &item.add(&Expr::lit(1, Ty::u(ib))));
            if p.delta_read_ahead() {
                b.assign(item_o, &Expr::mux(&rst, &Expr::zero(Ty::u(ib)), &Expr::mux(&per_item, &next, &item)));
            } else {
                b.assign(item_o, &item);
            }
            counter.map(|c| (c.clone(), Stmt::when(&issue, vec![Stmt::set(&c, &next)])))
        });
        (fresh, counter.flatten())
    });

    let zero = Expr::lit(0, Ty::bit());
    let one = Expr::lit(1, Ty::bit());
    let mut reset = vec![
        Stmt::set(&hold_full, &zero),
        Stmt::set(&occ, &Expr::zero(Ty::u(ow))),
    ];
    reset.extend(dv.iter().map(|d| Stmt::set(d, &zero)));
    reset.extend(v.iter().map(|d| Stmt::set(d, &zero)));
    if load_next.is_some() {
        reset.push(Stmt::set(&load, &zero));
    }
    if let Some(row) = &row_reg {
        reset.push(Stmt::set(row, &Expr::zero(Ty::u(rb))));
    }
    reset.extend(col_reset);
    if let Some((push_q, _, _)) = &gathered {
        reset.push(Stmt::set(push_q, &zero));
    }
    if let Some(q) = &shift_q {
        reset.push(Stmt::set(q, &zero));
    }
    if let Some((fresh, counter)) = &tot {
        reset.push(Stmt::set(fresh, &one));
        if let Some((item, _)) = counter {
            reset.push(Stmt::set(item, &Expr::zero(item.ty())));
        }
    }
    let mut run = vec![
        Stmt::when_else(&load, vec![Stmt::set(&hold_full, &one)], vec![Stmt::when(&done, vec![Stmt::set(&hold_full, &zero)])]),
        Stmt::when_else(
            &row_issue.land(&pop.lnot()),
            vec![Stmt::set(&occ, &occ_up)],
            vec![Stmt::when(&pop.land(&row_issue.lnot()), vec![Stmt::set(&occ, &occ_dn)])],
        ),
    ];
    run.extend(shift_chain(&issue, &dv[..dv.len() - 1], &dv[dv.len() - 1]));
    if let Some(n) = &load_next {
        run.push(Stmt::set(&load, n));
    }
    match &serial {
        Some((bit, e1, _)) => {
            // S1 stays valid for the step's act_bits cycles
            let bw = bit.width();
            run.push(Stmt::when_else(
                &fire,
                vec![Stmt::set(&v[0], &one), Stmt::set(bit, &Expr::zero(Ty::u(bw)))],
                vec![Stmt::when(&v[0], vec![Stmt::when_else(e1, vec![Stmt::set(&v[0], &zero)], vec![Stmt::set(bit, &bit.add(&Expr::lit(1, Ty::u(bw))))])])],
            ));
            if top > 0 {
                run.extend(shift_chain(&v[0], &v[1..top], &v[top]));
            }
        }
        None => run.extend(shift_chain(&fire, &v[..top], &v[top])),
    }
    run.extend(row_stmts);
    if let Some(col) = &col_stmts {
        let next = Expr::mux(&col_last, &Expr::zero(Ty::u(cbw)), &col.add(&Expr::lit(1, Ty::u(cbw))));
        run.push(Stmt::when(&issue, vec![Stmt::set(col, &next)]));
        if let Some(q) = &shift_q {
            // issuing the last column but one: the last one issues in the next cycle
            run.push(Stmt::set(q, &issue.land(&col.eq(&Expr::lit(i128::from(p.cols - 2), Ty::u(cbw))))));
        }
        if let Some(o) = &sel_next_o {
            let n = Expr::mux(&rst, &Expr::zero(Ty::u(cbw)), &Expr::mux(&issue, &next, col));
            b.assign(o, &n);
        }
    }
    if let Some((push_q, _, complete)) = &gathered {
        run.push(Stmt::set(push_q, complete));
    }
    if let Some((fresh, counter)) = &tot {
        run.push(Stmt::when(&done, vec![Stmt::set(fresh, &zero)]));
        if let Some((_, st)) = counter {
            run.push(st.clone());
        }
    }
    b.always(&clk, vec![Stmt::when_else(&rst, reset, run)]);
    b.comment("last flags travel with the steps and rows; they need no reset (qualified by the valid bits)");
    let mut flags = match &serial {
        Some((_, e1, e)) => {
            // the last flag is held in S1 for the whole step
            let mut st = vec![Stmt::when(&fire, vec![Stmt::set(&l[0], &a_last)])];
            if top > 0 {
                st.extend(shift_chain(&l[0], &l[1..top], &l[top]));
                let etop = if p.running_totals { top } else { top - 1 };
                if etop > 0 {
                    st.extend(shift_chain(e1, &e[1..etop], &e[etop]));
                }
            }
            st
        }
        None => shift_chain(&a_last, &l[..top], &l[top]),
    };
    flags.extend(shift_chain(&done, &dl[..dl.len() - 1], &dl[dl.len() - 1]));
    if cbw > 0 {
        flags.extend(shift_chain(&col_last, &dc[..dc.len() - 1], &dc[dc.len() - 1]));
    }
    if let Some((_, push_last_q, complete)) = &gathered {
        flags.push(Stmt::set(push_last_q, &complete.land(&dll)));
    }
    b.always(&clk, flags);
    m
}

/// The output buffer: a FIFO of `outbuf_depth` rows between the free-running drain pipeline and the
/// output stream, so `y_ready` reaches only this buffer and the control's credit counter.
pub fn outbuf(p: &HwParams) -> Module {
    let (c, ob) = (p.cols, p.out_bits);
    let depth = p.outbuf_depth();
    let w = c * ob + 1;
    let pw = clog2(u64::from(depth)).max(1);
    let cw = unsigned_bits(u128::from(depth));
    let mut m = Module::new(&p.module("outbuf"));
    m.doc(&format!("Output buffer: a {depth}-row FIFO of {{last, row}}; y_valid comes from a register."));
    let clk = m.input("clk_i", Ty::bit(), "clock");
    let rst = m.input("rst_i", Ty::bit(), "synchronous reset: empty");
    let push = m.input("push_i", Ty::bit(), "write a row");
    let row = m.input("row_i", Ty::u(c * ob), "the row");
    let last = m.input("last_i", Ty::bit(), "the row is the last of its tile");
    let y_data = m.output("y_data_o", Ty::u(c * ob), "");
    let y_last = m.output("y_last_o", Ty::bit(), "");
    let y_valid = m.output("y_valid_o", Ty::bit(), "");
    let y_ready = m.input("y_ready_i", Ty::bit(), "");
    if p.outbuf_ram() {
        m.doc("Rows in a memory; the head row in the memory's read register (a row is readable the cycle after its write).");
        outbuf_ram(&mut m.body, depth, [clk, rst, push, row, last, y_data, y_last, y_valid, y_ready]);
        return m;
    }
    let b = &mut m.body;
    let f = Fifo::declare(b, depth, "rows held");
    let (count, wp, rp) = (f.count.clone(), f.wp.clone(), f.rp.clone());
    let entries: Vec<Expr> = (0..depth).map(|i| b.reg(&format!("mem{i}_q"), Ty::u(w), "")).collect();
    let nonempty = b.net("nonempty", &count.eq(&Expr::zero(Ty::u(cw))).lnot(), "");
    b.assign(&y_valid, &nonempty);
    let pop = b.net("pop", &nonempty.land(&y_ready), "");
    let entry = b.net("entry", &Expr::concat(&[last, row]), "");
    // read: a balanced tree of 2:1 selects on the read pointer's bits, least significant first
    let mut level = entries.clone();
    let mut bit = 0;
    while level.len() > 1 {
        level = level.chunks(2).map(|p| if p.len() == 2 { Expr::mux(&rp.bit(bit), &p[1], &p[0]) } else { p[0].clone() }).collect();
        bit += 1;
    }
    let head = b.net("head", &level[0], "the oldest row");
    b.assign(&y_data, &head.slice(c * ob - 1, 0));
    b.assign(&y_last, &head.bit(c * ob));
    let mut writes = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        writes.push(Stmt::when(&push.land(&wp.eq(&Expr::lit(i as i128, Ty::u(pw)))), vec![Stmt::set(e, &entry)]));
    }
    b.always(&clk, writes);
    b.always(&clk, vec![Stmt::when_else(&rst, f.reset(), f.advance(&push, &pop))]);
    m
}

/// A FIFO's bookkeeping: `count_q` entries held, and write and read pointers that wrap at `depth`.
struct Fifo {
    depth: u32,
    count: Expr,
    wp: Expr,
    rp: Expr,
}

impl Fifo {
    fn declare(b: &mut Body, depth: u32, count_doc: &str) -> Fifo {
        let pw = clog2(u64::from(depth)).max(1);
        let count = b.reg("count_q", Ty::u(unsigned_bits(u128::from(depth))), count_doc);
        let wp = b.reg("wp_q", Ty::u(pw), "write pointer");
        let rp = b.reg("rp_q", Ty::u(pw), "read pointer");
        Fifo { depth, count, wp, rp }
    }
    /// Empty.
    fn reset(&self) -> Vec<Stmt> {
        [&self.count, &self.wp, &self.rp].iter().map(|r| Stmt::set(r, &Expr::zero(r.ty()))).collect()
    }
    /// `push` writes an entry, `pop` removes one; both may happen in one cycle.
    fn advance(&self, push: &Expr, pop: &Expr) -> Vec<Stmt> {
        let pt = self.wp.ty();
        let wrap = |ptr: &Expr| Expr::mux(&ptr.eq(&Expr::lit(i128::from(self.depth - 1), pt)), &Expr::zero(pt), &ptr.add(&Expr::lit(1, pt)));
        let one = Expr::lit(1, self.count.ty());
        vec![
            Stmt::when(push, vec![Stmt::set(&self.wp, &wrap(&self.wp))]),
            Stmt::when(pop, vec![Stmt::set(&self.rp, &wrap(&self.rp))]),
            Stmt::when_else(
                &push.land(&pop.lnot()),
                vec![Stmt::set(&self.count, &self.count.add(&one))],
                vec![Stmt::when(&pop.land(&push.lnot()), vec![Stmt::set(&self.count, &self.count.sub(&one))])],
            ),
        ]
    }
}

/// The output buffer in a memory: `count_q` counts the rows written in earlier cycles and not yet
/// read, so a read never meets a write to the same word (the read pointer equals the write pointer
/// only when the memory is empty or full, and the control's credits never push into a full buffer).
/// The head row waits in the memory's read register `head_q`, loaded when it is empty or popped.
fn outbuf_ram(b: &mut Body, depth: u32, ports: [Expr; 9]) {
    let [clk, rst, push, row, last, y_data, y_last, y_valid, y_ready] = ports;
    let w = row.width() + 1;
    let mem = b.memory("rows_mem", w, depth, "{last, row}");
    let f = Fifo::declare(b, depth, "rows in the memory, written in earlier cycles");
    let head_v = b.reg("head_v_q", Ty::bit(), "head_q holds a row");
    let head = b.reg("head_q", Ty::u(w), "the oldest row, read from the memory");
    b.assign(&y_valid, &head_v);
    b.assign(&y_data, &head.slice(w - 2, 0));
    b.assign(&y_last, &head.bit(w - 1));
    let stored = b.net("stored", &f.count.eq(&Expr::zero(f.count.ty())).lnot(), "the memory holds a row");
    let take = b.net("take", &stored.land(&head_v.lnot().lor(&y_ready)), "read the next row into head_q");
    let entry = b.net("entry", &Expr::concat(&[last, row]), "");
    b.always(&clk, vec![Stmt::when(&push, vec![Stmt::set(&mem.word(&f.wp), &entry)])]);
    b.always(&clk, vec![Stmt::when(&take, vec![Stmt::set(&head, &mem.word(&f.rp))])]);
    let zero = Expr::lit(0, Ty::bit());
    let mut reset = f.reset();
    reset.push(Stmt::set(&head_v, &zero));
    let mut run = f.advance(&push, &take);
    run.push(Stmt::when_else(&take, vec![Stmt::set(&head_v, &Expr::lit(1, Ty::bit()))], vec![Stmt::when(&y_ready, vec![Stmt::set(&head_v, &zero)])]));
    b.always(&clk, vec![Stmt::when_else(&rst, reset, run)]);
}

/// Column select of a shared output unit: registers the issued column's accumulator (with bases: its
/// pair counts) and the fields of [`HwParams::select_fields`] (drain stage P0). Over several columns
/// the parameters are not among them: they are read from memories in the parameter unit.
pub fn select(p: &HwParams) -> Module {
    let (c, hw) = (p.cols, p.hold_bits());
    let cbw = clog2(u64::from(c));
    let fields = p.select_fields();
    let mut m = Module::new(&p.module("select"));
    let with = if fields.is_empty() { "" } else if p.param_ram() { ", with its pair scales" } else { ", with its parameters" };
    m.doc(&format!("Column select for the shared output unit: one of {c} columns per cycle{with}."));
    let clk = m.input("clk_i", Ty::bit(), "clock");
    let col = (cbw > 0).then(|| m.input("col_i", Ty::u(cbw), "column to select"));
    let acc = m.input("acc_i", Ty::u(c * hw), "row-0 hold register of each column");
    let ins: Vec<Expr> = fields.iter().map(|(n, w)| m.input(&format!("{n}_i"), Ty::u(c * w), "")).collect();
    let acc_o = if p.bases.is_some() {
        m.output_reg("acc_o", Ty::u(hw), "the selected pair counts (P0)")
    } else {
        m.output_reg("acc_o", Ty::s(hw), "the selected accumulator (P0)")
    };
    let outs: Vec<Expr> = fields.iter().map(|(n, w)| m.output_reg(&format!("{n}_o"), Ty::u(*w), "")).collect();
    let b = &mut m.body;
    let pick = |b: &mut Body, name: &str, bus: &Expr, w: u32| -> Expr {
        match &col {
            Some(col) => {
                let iw = clog2(u64::from(c * w));
                let base = b.net(&format!("{name}_base"), &col.resize(iw).mul(&Expr::lit(i128::from(w), Ty::u(iw))), "");
                bus.part_at(&base, w)
            }
            None => bus.clone(),
        }
    };
    let mut st = Vec::new();
    let acc_sel = pick(b, "acc", &acc, hw);
    let acc_v = if p.bases.is_some() { acc_sel } else { acc_sel.as_signed() };
    st.push(Stmt::set(&acc_o, &acc_v));
    for ((name, w), (inp, out)) in fields.iter().zip(ins.iter().zip(&outs)) {
        let v = pick(b, name, inp, *w);
        st.push(Stmt::set(out, &v));
    }
    b.always(&clk, st);
    m
}

/// The running totals' difference unit ([`HwParams::running_totals`]): the tile's sum of a PE is its
/// running total at the end of the tile minus the same PE's total at the end of the previous tile.
/// The previous totals are a memory of [`HwParams::delta_items`] words (block RAM), read for an item
/// when it is issued (D1; a cycle ahead and registered again, [`HwParams::delta_read_ahead`]) and
/// overwritten with the new total a cycle after the issue (D2), so a word is used only in a later
/// cycle than its write. Per column the unit first captures the column's value at the issue (the hold
/// registers shift then); after a shared unit's select register the value is already held. The first
/// tile after reset has no previous totals (`fresh_i`). The difference wraps in `acc_bits` like the
/// accumulator, so it is exact whenever the tile's sum fits.
pub fn delta(p: &HwParams) -> Module {
    let (aw, n) = (p.acc_bits, p.delta_items());
    let capture = !p.shared_output;
    let mut m = Module::new(&p.module("delta"));
    m.doc(&format!("Running totals to tile sums: total minus the same PE's total one tile earlier ({n} per tile{})", if capture { ", one column" } else { "" }));
    let clk = m.input("clk_i", Ty::bit(), "clock");
    let issue = m.input("issue_i", Ty::bit(), "an item is issued this cycle");
    let ib = clog2(u64::from(n));
    let ahead = p.delta_read_ahead();
    let addr = (n > 1).then(|| {
        if ahead {
            m.input("item_next_i", Ty::u(ib), "index within the tile of the next item to be issued (this one's, if none is)")
        } else {
            m.input("item_i", Ty::u(ib), "its index within the tile")
        }
    });
    let fresh = m.input("fresh_i", Ty::bit(), "it belongs to the first tile after reset: no previous total");
    let acc = m.input("acc_i", Ty::s(aw), if capture { "running total, at the issue" } else { "running total, a cycle after the issue" });
    let acc_o = m.output_reg("acc_o", Ty::s(aw), "the tile's sum (D2)");
    let b = &mut m.body;
    let v1 = b.reg("v1_q", Ty::bit(), "D1 holds an item");
    let f1 = b.reg("f1_q", Ty::bit(), "");
    let prev = b.reg("prev_q", Ty::u(aw), if n > 1 { "the item's previous total (D1)" } else { "the previous total" });
    let mut d1 = vec![Stmt::set(&v1, &issue), Stmt::set(&f1, &fresh)];
    let x = if capture {
        let cap = b.reg("cap_q", Ty::s(aw), "the issued total (D1)");
        d1.push(Stmt::when(&issue, vec![Stmt::set(&cap, &acc)]));
        cap
    } else {
        acc.clone()
    };
    let mut d2 = Vec::new();
    match &addr {
        Some(addr) => {
            let mem = b.memory("tot_mem", aw, n, "each item's total at the end of the previous tile");
            let a1 = b.reg("a1_q", Ty::u(ib), "");
            if ahead {
                // the word of the item issued this cycle was read in the cycle before; a word is read
                // at least two cycles after it was written (the next index is never the one the
                // previous issue is writing, with 3 or more items)
                let cur = b.reg("cur_q", Ty::u(ib), "index of the item issued this cycle, if one is");
                let rd = b.reg("rd_q", Ty::u(aw), "its previous total, read a cycle ahead");
                b.always(&clk, vec![Stmt::set(&cur, addr), Stmt::set(&rd, &mem.word(addr))]);
                d1.push(Stmt::set(&a1, &cur));
                d1.push(Stmt::when(&issue, vec![Stmt::set(&prev, &rd)]));
            } else {
                d1.push(Stmt::set(&a1, addr));
                d1.push(Stmt::when(&issue, vec![Stmt::set(&prev, &mem.word(addr))]));
            }
            d2.push(Stmt::when(&v1, vec![Stmt::set(&mem.word(&a1), &x.as_unsigned())]));
        }
        // one item per tile: a register
        None => d2.push(Stmt::when(&v1, vec![Stmt::set(&prev, &x.as_unsigned())])),
    }
    b.always(&clk, d1);
    let diff = b.net("diff", &x.sub(&prev.as_signed()), "wraps like the accumulator");
    d2.push(Stmt::set(&acc_o, &Expr::mux(&f1, &x, &diff)));
    b.always(&clk, d2);
    m
}

/// `n` registers after `e`, named `<name>_d1_q ..`, their assignments appended to `st`; returns the last
/// (or `e` when `n` is 0).
fn delay(b: &mut Body, name: &str, e: &Expr, n: u32, st: &mut Vec<Stmt>) -> Expr {
    let mut prev = e.clone();
    for k in 1..=n {
        let q = b.reg(&format!("{name}_d{k}_q"), e.ty(), "");
        st.push(Stmt::set(&q, &prev));
        prev = q;
    }
    prev
}

/// `regs[0] <= input; regs[i] <= regs[i-1]; out <= regs[last]`.
fn shift_chain(input: &Expr, regs: &[Expr], out: &Expr) -> Vec<Stmt> {
    let mut prev = input.clone();
    let mut st = Vec::new();
    for r in regs.iter().chain(std::iter::once(out)) {
        st.push(Stmt::set(r, &prev));
        prev = r.clone();
    }
    st
}

/// The top level: parameter registers, control, array, and one PACT + requantization pipeline per column.
pub fn top(p: &HwParams, units: &Units) -> Module {
    let (r, c, l, ab, aw, ob) = (p.rows, p.cols, p.lanes, p.act_bits, p.acc_bits, p.out_bits);
    let mut m = Module::new(&p.module("top"));
    m.doc(&format!("qmac array top: {r} x {c} PEs x {l} lanes = {} MACs per cycle; streams with valid/ready.", r * c * l));
    let clk = m.input("clk_i", Ty::bit(), "clock");
    let rst = m.input("rst_i", Ty::bit(), "synchronous reset, active high");
    let a_data = m.input("a_data_i", Ty::u(r * l * ab), "row r lane l at [(r*L+l)*AB +: AB]");
    let a_last = m.input("a_last_i", Ty::bit(), "last step of the tile");
    let a_valid = m.input("a_valid_i", Ty::bit(), "");
    let a_ready = m.output("a_ready_o", Ty::bit(), "");
    let w_data = m.input("w_data_i", Ty::u(c * l * p.code_bits()), "column c lane l at [(c*L+l)*WB +: WB]");
    let w_valid = m.input("w_valid_i", Ty::bit(), "");
    let w_ready = m.output("w_ready_o", Ty::bit(), "");
    let prm_we = m.input("prm_we_i", Ty::bit(), "parameter write");
    let prm_addr = m.input("prm_addr_i", Ty::u(p.prm_addr_bits), "channel * 4 + field");
    let prm_wdata = m.input("prm_wdata_i", Ty::u(p.prm_data_bits), "");
    let y_data = m.output("y_data_o", Ty::u(c * ob), "column c at [c*OB +: OB]");
    let y_last = m.output("y_last_o", Ty::bit(), "last row of the tile");
    let y_valid = m.output("y_valid_o", Ty::bit(), "");
    let y_ready = m.input("y_ready_i", Ty::bit(), "");
    let b = &mut m.body;
    let fields = p.param_fields();
    // per-channel parameters: every channel's side by side, or (in memories) the issued column's
    let pw = if p.param_ram() { 1 } else { c };
    let prm: Vec<Expr> = fields.iter().map(|(n, w)| b.wire(n, Ty::u(pw * w), "")).collect();
    let acc_en = b.wire("acc_en", Ty::bit(), "");
    let clr = b.wire("clr", Ty::bit(), "");
    let load = p.double_buffer.then(|| b.wire("load", Ty::bit(), ""));
    let drain_shift = b.wire("drain_shift", Ty::bit(), "");
    let push = b.wire("push", Ty::bit(), "");
    let push_last = b.wire("push_last", Ty::bit(), "");
    let row = b.wire("row", Ty::u(c * ob), "output codes leaving the drain pipeline");
    let gather = p.shared_output.then(|| b.wire("gather", Ty::bit(), "a code leaves the shared unit"));
    let cbits = clog2(u64::from(c));
    let col_sel = (p.shared_output && cbits > 0).then(|| b.wire("col_sel", Ty::u(cbits), "column issued to the shared unit"));
    let col_next = p.param_ram().then(|| b.wire("col_next", Ty::u(cbits), "column issued to the shared unit in the next cycle"));
    let pop = b.net("pop", &y_valid.land(&y_ready), "");
    let step = p.serial.then(|| b.wire("step", Ty::bit(), "a step is accepted (bit-serial input registers)"));
    let neg = (p.serial && p.act_enc == Encoding::Int).then(|| b.wire("neg", Ty::bit(), "the next bit plane is a two's complement sign bit"));
    let hw = p.hold_bits();
    let col = b.wire("col", Ty::u(c * hw), "row-0 hold register of each column");
    let mut conns = vec![("clk_i", clk.clone()), ("prm_we_i", prm_we), ("prm_addr_i", prm_addr), ("prm_wdata_i", prm_wdata)];
    let port_names: Vec<String> = fields.iter().map(|(n, _)| format!("{n}_o")).collect();
    for (pn, e) in port_names.iter().zip(&prm) {
        conns.push((pn.as_str(), e.clone()));
    }
    let tname = table_name(p);
    let table = (p.table_entries() > 0).then(|| b.wire(tname, Ty::u(p.table_bits()), if p.bases.is_some() { "basis-pair scales of every channel" } else { "codebook level table" }));
    let table_port = format!("{tname}_o");
    if let Some(t) = &table {
        conns.push((table_port.as_str(), t.clone()));
    }
    let levels = table.clone().filter(|_| p.codebook_bits.is_some());
    if p.param_ram() {
        conns.push(("col_next_i", col_next.clone().expect("parameter memories read the next column")));
    }
    b.instance(&units.params, "u_params", &conns);
    // running totals: the item the difference units get, its index, and whether it has a previous total
    let tot = p.running_totals.then(|| {
        let items = p.delta_items();
        let item = if p.delta_read_ahead() { ("item_next", "the index of the next one issued") } else { ("item", "its index within the tile") };
        (
            b.wire("item_v", Ty::bit(), "a running total is issued"),
            (items > 1).then(|| b.wire(item.0, Ty::u(clog2(u64::from(items))), item.1)),
            b.wire("fresh", Ty::bit(), "the first tile after reset: no previous totals"),
        )
    });
    let (item_out, item_in) = if p.delta_read_ahead() { ("item_next_o", "item_next_i") } else { ("item_o", "item_i") };
    let tot_conns = |acc_i: Expr, acc_o: Expr| -> Vec<(&'static str, Expr)> {
        let (v, item, fresh) = tot.clone().expect("running totals");
        let mut c = vec![("clk_i", clk.clone()), ("issue_i", v), ("fresh_i", fresh), ("acc_i", acc_i), ("acc_o", acc_o)];
        if let Some(i) = item {
            c.push((item_in, i));
        }
        c
    };
    b.instance(
        &units.ctrl,
        "u_ctrl",
        &[
            ("clk_i", clk.clone()),
            ("rst_i", rst.clone()),
            ("a_valid_i", a_valid),
            ("a_last_i", a_last),
            ("a_ready_o", a_ready),
            ("w_valid_i", w_valid),
            ("w_ready_o", w_ready),
            ("acc_en_o", acc_en.clone()),
            ("clr_o", clr.clone()),
            ("push_o", push.clone()),
            ("push_last_o", push_last.clone()),
            ("pop_i", pop),
        ]
        .into_iter()
        .chain(gather.clone().map(|g| ("gather_o", g)))
        .chain(col_sel.clone().map(|cs| ("col_o", cs)))
        .chain(col_next.clone().map(|cs| ("col_next_o", cs)))
        .chain(step.clone().map(|s| ("step_o", s)))
        .chain(neg.clone().map(|f| ("neg_o", f)))
        .chain(load.clone().map(|l| ("load_o", l)))
        .chain(std::iter::once(("shift_o", drain_shift.clone())))
        .chain(tot.iter().flat_map(|(v, item, fresh)| {
            [Some(("item_v_o", v.clone())), item.clone().map(|i| (item_out, i)), Some(("fresh_o", fresh.clone()))].into_iter().flatten()
        }))
        .collect::<Vec<_>>(),
    );
    b.instance(
        &units.outbuf,
        "u_outbuf",
        &[
            ("clk_i", clk.clone()),
            ("rst_i", rst.clone()),
            ("push_i", push),
            ("row_i", row.clone()),
            ("last_i", push_last),
            ("y_data_o", y_data),
            ("y_last_o", y_last),
            ("y_valid_o", y_valid.clone()),
            ("y_ready_i", y_ready.clone()),
        ],
    );
    b.instance(
        &units.array,
        "u_array",
        &[
            ("clk_i", clk.clone()),
            ("a_data_i", a_data),
            ("w_data_i", w_data),
            ("acc_en_i", acc_en),
            ("clr_i", clr),
            ("col_o", col.clone()),
        ]
        .into_iter()
        .chain(levels.map(|lv| ("levels_i", lv)))
        .chain(step.map(|s| ("step_i", s)))
        .chain(neg.map(|f| ("neg_i", f)))
        .chain(load.map(|l| ("load_i", l)))
        .chain(std::iter::once(("shift_i", drain_shift)))
        .collect::<Vec<_>>(),
    );
    if p.shared_output {
        b.comment("one output unit shared by all columns: select, clip/requantize, gather the row");
        let sfields = p.select_fields();
        let sel_ty = if p.bases.is_some() { Ty::u(hw) } else { Ty::s(aw) };
        let sel = b.wire("sel_acc", sel_ty, "the selected column's accumulator (P0)");
        let sel_fields: Vec<Expr> = sfields.iter().map(|(n, w)| b.wire(&format!("sel_{n}"), Ty::u(*w), "")).collect();
        let mut conns: Vec<(&str, Expr)> = vec![("clk_i", clk.clone()), ("acc_i", col.clone()), ("acc_o", sel.clone())];
        let in_names: Vec<String> = sfields.iter().map(|(n, _)| format!("{n}_i")).collect();
        let out_names: Vec<String> = sfields.iter().map(|(n, _)| format!("{n}_o")).collect();
        let selected_prm = if p.param_ram() { &[][..] } else { &prm[..] };
        let sources: Vec<Expr> = selected_prm.iter().cloned().chain(table.clone().filter(|_| p.bases.is_some())).collect();
        for i in 0..sfields.len() {
            conns.push((in_names[i].as_str(), sources[i].clone()));
            conns.push((out_names[i].as_str(), sel_fields[i].clone()));
        }
        if let Some(cs) = &col_sel {
            conns.push(("col_i", cs.clone()));
        }
        let select = units.select.as_ref().expect("a shared output unit has a select stage");
        b.instance(select, "u_select", &conns);
        let acc = match &units.combine {
            Some(comb) => {
                let acc = b.wire("comb_acc", Ty::s(aw), "the combined accumulator (C2)");
                let scales = sel_fields.last().expect("pair scales are selected with bases").clone();
                b.instance(comb, "u_combine", &[("clk_i", clk.clone()), ("d_i", sel), ("scale_i", scales), ("acc_o", acc.clone())]);
                acc
            }
            None => match &units.delta {
                Some(delta) => {
                    let acc = b.wire("tile_acc", Ty::s(aw), "the tile's sum of the selected PE (D2)");
                    b.instance(delta, "u_delta", &tot_conns(sel, acc.clone()));
                    acc
                }
                None => sel,
            },
        };
        let code = b.wire("code", Ty::u(ob), "the shared unit's output code");
        // each output stage takes its parameters with its value: after the combination (with bases),
        // and the requantizer two stages after the clip's input; delay them so each value meets its
        // own column's
        let stage_fields: Vec<Expr> = if p.param_ram() {
            // the parameter unit reads each field at its own stage
            prm.clone()
        } else {
            let mut st = Vec::new();
            let delays = p.param_field_delays();
            let f = (0..fields.len()).map(|i| delay(b, &fields[i].0, &sel_fields[i], delays[i], &mut st)).collect();
            if !st.is_empty() {
                b.always(&clk, st);
            }
            f
        };
        out_stage(b, &units.out, &clk, acc, stage_fields, code.clone(), "");
        let row_q = b.reg("row_q", Ty::u(c * ob), "row being gathered, column 0 lowest");
        let next = if c == 1 { code.clone() } else { Expr::concat(&[code.clone(), row_q.slice(c * ob - 1, ob)]) };
        b.always(&clk, vec![Stmt::when(gather.as_ref().expect("gather"), vec![Stmt::set(&row_q, &next)])]);
        b.assign(&row, &row_q);
    } else {
        b.generate_for("gc", c, "g_col", |b| {
            let part = |e: &Expr, w: u32| e.part(&format!("gc * {w}"), w, (c - 1) * w);
            let per: Vec<Expr> = (0..fields.len()).map(|i| part(&prm[i], fields[i].1)).collect();
            let acc = match (&units.combine, p.bases, &table) {
                (Some(comb), Some(bs), Some(table)) => {
                    let acc = b.wire("acc", Ty::s(aw), "the combined accumulator (C2)");
                    let conns = [("clk_i", clk.clone()), ("d_i", part(&col, hw)), ("scale_i", part(table, bs.pairs() * bs.scale_bits)), ("acc_o", acc.clone())];
                    b.instance(comb, "u_combine", &conns);
                    acc
                }
                _ => match &units.delta {
                    Some(delta) => {
                        let acc = b.wire("tile_acc", Ty::s(aw), "the tile's sum of the issued PE (D2)");
                        b.instance(delta, "u_delta", &tot_conns(part(&col, aw).as_signed(), acc.clone()));
                        acc
                    }
                    None => part(&col, aw),
                },
            };
            out_stage(b, &units.out, &clk, acc, per, part(&row, ob), "");
        });
    }
    m
}

/// Instantiate the output stage (clip + requantize, or thresholds) on `acc`, with this channel's
/// parameter fields in `param_fields` order, driving `code`.
fn out_stage(b: &mut Body, out: &OutStage, clk: &Expr, acc: Expr, fields: Vec<Expr>, code: Expr, _doc: &str) {
    match out {
        OutStage::Multiply { pact, requant } => {
            let x = b.wire("x", Ty::u(acc.width()), "clipped value (P1)");
            b.instance(pact, "u_pact", &[("clk_i", clk.clone()), ("acc_i", acc), ("bias_i", fields[0].clone()), ("alpha_i", fields[1].clone()), ("x_o", x.clone())]);
            b.instance(requant, "u_requant", &[("clk_i", clk.clone()), ("x_i", x), ("mult_i", fields[2].clone()), ("shift_i", fields[3].clone()), ("code_o", code)]);
        }
        OutStage::Thresholds(th) => {
            let width = fields.iter().map(|f| f.width()).sum();
            let t = b.wire("t", Ty::u(width), "this channel's thresholds");
            let per: Vec<Expr> = fields.into_iter().rev().collect();
            b.assign(&t, &Expr::concat(&per));
            b.instance(th, "u_thresh", &[("clk_i", clk.clone()), ("acc_i", acc), ("t_i", t), ("code_o", code)]);
        }
    }
}

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
    let pe = pe(p);
    let rowsum = (p.kind() == MacKind::OddWeights).then(|| rowsum(p));
    let array = array(p, &pe, rowsum.as_ref());
    let out = if p.thresholds { OutStage::Thresholds(thresh(p)) } else { OutStage::Multiply { pact: pact(p), requant: requant(p) } };
    let select = p.shared_output.then(|| select(p));
    let combine = p.bases.is_some().then(|| combine(p));
    let delta = p.running_totals.then(|| delta(p));
    let units = Units { pe, rowsum, array, out, params: params(p), ctrl: ctrl(p), outbuf: outbuf(p), select, combine, delta };
    let top = top(p, &units);
    let mut mods = vec![units.pe];
    mods.extend(units.rowsum);
    mods.push(units.array);
    mods.extend(units.select);
    mods.extend(units.combine);
    mods.extend(units.delta);
    match units.out {
        OutStage::Multiply { pact, requant } => mods.extend([pact, requant]),
        OutStage::Thresholds(t) => mods.push(t),
    }
    mods.extend([units.params, units.ctrl, units.outbuf, top]);
    mods
}
