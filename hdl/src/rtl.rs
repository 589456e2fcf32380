//! A small typed RTL layer that prints Verilog-2005.
//!
//! Every expression carries its width and signedness ([`Ty`]). Binary operators accept only operands of
//! the same type and produce that type (modular arithmetic, as the hardware does), so every widening or
//! narrowing is written out with [`Expr::resize`], and the printed Verilog has no implicit width or sign
//! conversion for a linter to question. Type errors are generator bugs and panic with the offending
//! expressions; the lint and co-simulation tests run every unit through them.

use std::fmt::Write as _;

/// Width and signedness of a signal or expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ty {
    /// Number of bits, at least 1.
    pub width: u32,
    /// Two's complement when true.
    pub signed: bool,
}

impl Ty {
    /// An unsigned type.
    pub fn u(width: u32) -> Ty {
        assert!(width >= 1, "zero-width type");
        Ty { width, signed: false }
    }
    /// A signed type.
    pub fn s(width: u32) -> Ty {
        assert!(width >= 1, "zero-width type");
        Ty { width, signed: true }
    }
    /// One bit, unsigned.
    pub fn bit() -> Ty {
        Ty::u(1)
    }
    fn decl(self) -> String {
        let sign = if self.signed { " signed" } else { "" };
        if self.width == 1 && !self.signed {
            String::new()
        } else {
            format!("{sign} [{}:0]", self.width - 1)
        }
    }
}

/// A typed Verilog expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expr {
    text: String,
    ty: Ty,
    /// A plain name (or a constant part-select of one): can be bit-selected and used as an lvalue.
    atomic: bool,
}

impl Expr {
    /// A reference to a declared signal.
    pub fn sig(name: &str, ty: Ty) -> Expr {
        Expr { text: name.to_string(), ty, atomic: true }
    }

    /// A sized literal of type `ty`; `value` must fit.
    pub fn lit(value: i128, ty: Ty) -> Expr {
        let w = ty.width;
        if ty.signed {
            let (lo, hi) = (-(1i128 << (w - 1)), (1i128 << (w - 1)) - 1);
            assert!(value >= lo && value <= hi, "literal {value} does not fit {w} signed bits");
            let text = if value < 0 { format!("-{w}'sd{}", -value) } else { format!("{w}'sd{value}") };
            Expr { text, ty, atomic: value >= 0 }
        } else {
            assert!(value >= 0 && (w >= 127 || value < (1i128 << w)), "literal {value} does not fit {w} bits");
            Expr { text: format!("{w}'d{value}"), ty, atomic: true }
        }
    }

    /// All zeros of type `ty`.
    pub fn zero(ty: Ty) -> Expr {
        Expr::lit(0, ty)
    }

    /// The type.
    pub fn ty(&self) -> Ty {
        self.ty
    }
    /// The width in bits.
    pub fn width(&self) -> u32 {
        self.ty.width
    }
    /// The Verilog text.
    pub fn text(&self) -> &str {
        &self.text
    }

    fn paren(&self) -> String {
        let call = (self.text.starts_with("$signed(") || self.text.starts_with("$unsigned(")) && matching_outer_paren(&self.text[self.text.find('(').unwrap_or(0)..]);
        if self.atomic || call || self.text.starts_with('(') && matching_outer_paren(&self.text) {
            self.text.clone()
        } else {
            format!("({})", self.text)
        }
    }

    fn bin(&self, op: &str, o: &Expr) -> Expr {
        assert_eq!(self.ty, o.ty, "operands of `{op}` differ in type: `{}` is {:?}, `{}` is {:?}", self.text, self.ty, o.text, o.ty);
        Expr { text: format!("({} {op} {})", self.paren(), o.paren()), ty: self.ty, atomic: false }
    }

    fn cmp(&self, op: &str, o: &Expr) -> Expr {
        assert_eq!(self.ty, o.ty, "operands of `{op}` differ in type: `{}` is {:?}, `{}` is {:?}", self.text, self.ty, o.text, o.ty);
        Expr { text: format!("({} {op} {})", self.paren(), o.paren()), ty: Ty::bit(), atomic: false }
    }

    /// Modular sum (same type in, same type out).
    pub fn add(&self, o: &Expr) -> Expr {
        self.bin("+", o)
    }
    /// Modular difference.
    pub fn sub(&self, o: &Expr) -> Expr {
        self.bin("-", o)
    }
    /// Modular product: widen both operands to the product width first for an exact product.
    pub fn mul(&self, o: &Expr) -> Expr {
        self.bin("*", o)
    }
    /// Bitwise and.
    pub fn and(&self, o: &Expr) -> Expr {
        self.bin("&", o)
    }
    /// Bitwise or.
    pub fn or(&self, o: &Expr) -> Expr {
        self.bin("|", o)
    }
    /// Bitwise exclusive or.
    pub fn xor(&self, o: &Expr) -> Expr {
        self.bin("^", o)
    }
    /// Bitwise not.
    pub fn not(&self) -> Expr {
        Expr { text: format!("~{}", self.paren()), ty: self.ty, atomic: false }
    }
    /// Reduction or: one bit, set when any bit is set.
    pub fn any(&self) -> Expr {
        Expr { text: format!("|{}", self.paren()), ty: Ty::bit(), atomic: false }
    }
    /// Equality, one bit.
    pub fn eq(&self, o: &Expr) -> Expr {
        self.cmp("==", o)
    }
    /// Less than (signed or unsigned by type), one bit.
    pub fn lt(&self, o: &Expr) -> Expr {
        self.cmp("<", o)
    }
    /// Greater than, one bit.
    pub fn gt(&self, o: &Expr) -> Expr {
        self.cmp(">", o)
    }
    /// Logical and of two one-bit values.
    pub fn land(&self, o: &Expr) -> Expr {
        assert!(self.ty == Ty::bit() && o.ty == Ty::bit(), "`&&` needs one-bit operands: {} {}", self.text, o.text);
        Expr { text: format!("({} && {})", self.paren(), o.paren()), ty: Ty::bit(), atomic: false }
    }
    /// Logical or of two one-bit values.
    pub fn lor(&self, o: &Expr) -> Expr {
        assert!(self.ty == Ty::bit() && o.ty == Ty::bit(), "`||` needs one-bit operands: {} {}", self.text, o.text);
        Expr { text: format!("({} || {})", self.paren(), o.paren()), ty: Ty::bit(), atomic: false }
    }
    /// Logical not of a one-bit value.
    pub fn lnot(&self) -> Expr {
        assert_eq!(self.ty, Ty::bit(), "`!` needs a one-bit operand: {}", self.text);
        Expr { text: format!("!{}", self.paren()), ty: Ty::bit(), atomic: false }
    }
    /// Shift left by a constant (modular: the width stays).
    pub fn shl(&self, n: u32) -> Expr {
        Expr { text: format!("({} << {n})", self.paren()), ty: self.ty, atomic: false }
    }
    /// Logical shift left by an unsigned amount (width stays).
    pub fn shl_by(&self, amount: &Expr) -> Expr {
        assert!(!amount.ty.signed);
        Expr { text: format!("({} << {})", self.paren(), amount.paren()), ty: self.ty, atomic: false }
    }
    /// Shift right by an unsigned amount: logical for unsigned, arithmetic for signed values.
    pub fn shr_by(&self, amount: &Expr) -> Expr {
        assert!(!amount.ty.signed);
        let op = if self.ty.signed { ">>>" } else { ">>" };
        Expr { text: format!("({} {op} {})", self.paren(), amount.paren()), ty: self.ty, atomic: false }
    }
    /// `cond ? self : other`.
    pub fn mux(cond: &Expr, a: &Expr, b: &Expr) -> Expr {
        assert_eq!(cond.ty, Ty::bit(), "mux condition must be one bit: {}", cond.text);
        assert_eq!(a.ty, b.ty, "mux arms differ in type: `{}` {:?} vs `{}` {:?}", a.text, a.ty, b.text, b.ty);
        Expr { text: format!("({} ? {} : {})", cond.paren(), a.paren(), b.paren()), ty: a.ty, atomic: false }
    }

    /// Bit `i` (a constant) of an atomic expression.
    pub fn bit(&self, i: u32) -> Expr {
        self.slice(i, i)
    }

    /// Bits `hi..=lo` of an atomic expression, unsigned.
    pub fn slice(&self, hi: u32, lo: u32) -> Expr {
        assert!(self.atomic && !self.text.contains('['), "can only select bits of a plain name, not `{}`", self.text);
        assert!(hi >= lo && hi < self.ty.width, "select [{hi}:{lo}] out of `{}` ({} bits)", self.text, self.ty.width);
        let text = if self.ty.width == 1 {
            self.text.clone()
        } else if hi == lo {
            format!("{}[{hi}]", self.text)
        } else {
            format!("{}[{hi}:{lo}]", self.text)
        };
        Expr { text, ty: Ty::u(hi - lo + 1), atomic: true }
    }

    /// A part-select `name[base +: width]` with a base index expression over genvars and constants
    /// (for example `"(r * 4 + l) * 8"`), unsigned. `max_base` is the largest value the base takes,
    /// checked against the width of the signal.
    pub fn part(&self, base: &str, width: u32, max_base: u32) -> Expr {
        assert!(self.atomic && !self.text.contains('['), "can only select bits of a plain name, not `{}`", self.text);
        assert!(max_base + width <= self.ty.width, "part-select [{base} +: {width}] can leave `{}` ({} bits)", self.text, self.ty.width);
        if width == self.ty.width {
            return Expr { text: self.text.clone(), ty: Ty::u(width), atomic: true };
        }
        Expr { text: format!("{}[{base} +: {width}]", self.text), ty: Ty::u(width), atomic: true }
    }

    /// A variable part-select `name[base +: width]`, unsigned; the caller guarantees `base + width` stays
    /// within the signal for every value `base` can take.
    pub fn part_at(&self, base: &Expr, width: u32) -> Expr {
        assert!(self.atomic && !self.text.contains('['), "can only select bits of a plain name, not `{}`", self.text);
        assert!(!base.ty.signed && base.atomic, "part-select base must be an unsigned name: `{}`", base.text);
        assert!(width <= self.ty.width);
        Expr { text: format!("{}[{} +: {width}]", self.text, base.text), ty: Ty::u(width), atomic: false }
    }

    /// Reinterpret as signed (same bits).
    pub fn as_signed(&self) -> Expr {
        if self.ty.signed {
            return self.clone();
        }
        Expr { text: format!("$signed({})", self.text), ty: Ty::s(self.ty.width), atomic: false }
    }
    /// Reinterpret as unsigned (same bits).
    pub fn as_unsigned(&self) -> Expr {
        if !self.ty.signed {
            return self.clone();
        }
        Expr { text: format!("$unsigned({})", self.text), ty: Ty::u(self.ty.width), atomic: false }
    }

    /// Zero- or sign-extend (by the expression's signedness) or truncate to `width` bits, keeping the
    /// signedness. Extension and truncation need a plain name (Verilog-2005 cannot select bits of an
    /// expression), except zero-extension, which is a concatenation.
    pub fn resize(&self, width: u32) -> Expr {
        let w = self.ty.width;
        if width == w {
            return self.clone();
        }
        if width < w {
            let s = self.slice(width - 1, 0);
            return if self.ty.signed { s.as_signed() } else { s };
        }
        let k = width - w;
        if self.ty.signed {
            let base = Expr { text: self.text.clone(), ty: Ty::u(w), atomic: self.atomic };
            let msb = base.bit(w - 1);
            let fill = if k == 1 { msb.text.clone() } else { format!("{{{k}{{{}}}}}", msb.text) };
            Expr { text: format!("$signed({{{fill}, {}}})", self.text), ty: Ty::s(width), atomic: false }
        } else {
            Expr { text: format!("{{{k}'d0, {}}}", self.text), ty: Ty::u(width), atomic: true }
        }
    }

    /// An unsigned value made signed without changing its value: one zero bit on top.
    pub fn to_signed_value(&self) -> Expr {
        if self.ty.signed {
            return self.clone();
        }
        self.resize(self.ty.width + 1).as_signed()
    }

    /// Concatenation `{a, b, ...}` (first is most significant), unsigned.
    pub fn concat(parts: &[Expr]) -> Expr {
        assert!(!parts.is_empty());
        let width = parts.iter().map(|p| p.ty.width).sum();
        let inner: Vec<String> = parts.iter().map(|p| p.text.clone()).collect();
        Expr { text: format!("{{{}}}", inner.join(", ")), ty: Ty::u(width), atomic: true }
    }
}

fn matching_outer_paren(t: &str) -> bool {
    let mut depth = 0i32;
    for (i, ch) in t.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 && i != t.len() - 1 {
                    return false;
                }
            }
            _ => {}
        }
    }
    true
}

/// Verilog-2005 and SystemVerilog reserved words a generated name must not take.
const RESERVED: &[&str] = &[
    "always", "and", "assign", "automatic", "begin", "buf", "bufif0", "bufif1", "case", "casex", "casez", "cell", "cmos",
    "config", "deassign", "default", "defparam", "design", "disable", "edge", "else", "end", "endcase", "endconfig",
    "endfunction", "endgenerate", "endmodule", "endprimitive", "endspecify", "endtable", "endtask", "event", "for",
    "force", "forever", "fork", "function", "generate", "genvar", "highz0", "highz1", "if", "ifnone", "incdir",
    "include", "initial", "inout", "input", "instance", "integer", "join", "large", "liblist", "library", "localparam",
    "macromodule", "medium", "module", "nand", "negedge", "nmos", "nor", "noshowcancelled", "not", "notif0", "notif1",
    "or", "output", "parameter", "pmos", "posedge", "primitive", "pull0", "pull1", "pulldown", "pullup",
    "pulsestyle_onevent", "pulsestyle_ondetect", "rcmos", "real", "realtime", "reg", "release", "repeat", "rnmos",
    "rpmos", "rtran", "rtranif0", "rtranif1", "scalared", "showcancelled", "signed", "small", "specify", "specparam",
    "strong0", "strong1", "supply0", "supply1", "table", "task", "time", "tran", "tranif0", "tranif1", "tri", "tri0",
    "tri1", "triand", "trior", "trireg", "unsigned", "use", "uwire", "vectored", "wait", "wand", "weak0", "weak1",
    "while", "wire", "wor", "xnor", "xor", "logic", "bit", "byte", "int", "shortint", "longint", "interface", "final",
    "unique", "priority", "type", "void", "return", "break", "continue", "do", "const", "static", "string",
];

fn check_name(name: &str) {
    assert!(
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !name.starts_with(|c: char| c.is_ascii_digit()),
        "`{name}` is not a plain Verilog identifier"
    );
    assert!(!RESERVED.contains(&name), "`{name}` is a Verilog keyword");
}

/// Port direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Input port.
    In,
    /// Output port.
    Out,
}

/// A module port.
#[derive(Clone, Debug)]
pub struct Port {
    /// Name, with its `_i`/`_o` suffix.
    pub name: String,
    /// Direction.
    pub dir: Dir,
    /// Type.
    pub ty: Ty,
    /// Trailing comment.
    pub doc: String,
    /// Driven by a clocked process (`output reg`).
    pub reg: bool,
}

/// A statement inside a clocked process.
#[derive(Clone, Debug)]
pub enum Stmt {
    /// Non-blocking assignment `lhs <= rhs;`.
    Assign(Expr, Expr),
    /// `if (cond) begin ... end else begin ... end`.
    If(Expr, Vec<Stmt>, Vec<Stmt>),
}

impl Stmt {
    /// `lhs <= rhs`, type-checked.
    pub fn set(lhs: &Expr, rhs: &Expr) -> Stmt {
        assert!(lhs.atomic, "not an lvalue: {}", lhs.text);
        assert_eq!(lhs.ty.width, rhs.ty.width, "`{} <= {}`: widths {} and {}", lhs.text, rhs.text, lhs.ty.width, rhs.ty.width);
        assert_eq!(lhs.ty.signed, rhs.ty.signed, "`{} <= {}`: signedness differs", lhs.text, rhs.text);
        Stmt::Assign(lhs.clone(), rhs.clone())
    }
    /// `if (cond) then`.
    pub fn when(cond: &Expr, then: Vec<Stmt>) -> Stmt {
        assert_eq!(cond.ty, Ty::bit(), "if condition must be one bit: {}", cond.text);
        Stmt::If(cond.clone(), then, Vec::new())
    }
    /// `if (cond) then else otherwise`.
    pub fn when_else(cond: &Expr, then: Vec<Stmt>, otherwise: Vec<Stmt>) -> Stmt {
        assert_eq!(cond.ty, Ty::bit(), "if condition must be one bit: {}", cond.text);
        Stmt::If(cond.clone(), then, otherwise)
    }
}

/// An item of a module body (or of a generate block).
#[derive(Clone, Debug)]
enum Item {
    Comment(String),
    Decl { name: String, ty: Ty, reg: bool, doc: String, partly_read: bool },
    Mem { name: String, width: u32, depth: u32, style: MemStyle, doc: String },
    Net { name: String, rhs: Expr, doc: String, partly_read: bool },
    Assign(Expr, Expr),
    Always { clk: String, body: Vec<Stmt>, keep: bool },
    Inst { module: String, name: String, conns: Vec<(String, String)> },
    For { var: String, count: u32, label: String, body: Vec<Item> },
}

/// A scope that holds items: the module body or a generate block.
#[derive(Clone, Debug, Default)]
pub struct Body {
    items: Vec<Item>,
    genvars: Vec<String>,
}

impl Body {
    /// A comment line.
    pub fn comment(&mut self, text: &str) {
        self.items.push(Item::Comment(text.to_string()));
    }
    /// Declare a `wire`.
    pub fn wire(&mut self, name: &str, ty: Ty, doc: &str) -> Expr {
        check_name(name);
        self.items.push(Item::Decl { name: name.to_string(), ty, reg: false, doc: doc.to_string(), partly_read: false });
        Expr::sig(name, ty)
    }
    /// [`Body::wire`] for a value of which only some bits are read (an instance output wider than the
    /// value it carries): the declaration is wrapped in Verilator's lint waiver for unused signal
    /// bits, and nothing else.
    pub fn wire_partly_read(&mut self, name: &str, ty: Ty, doc: &str) -> Expr {
        check_name(name);
        self.items.push(Item::Decl { name: name.to_string(), ty, reg: false, doc: doc.to_string(), partly_read: true });
        Expr::sig(name, ty)
    }
    /// Declare a `reg` written by a clocked process.
    pub fn reg(&mut self, name: &str, ty: Ty, doc: &str) -> Expr {
        check_name(name);
        self.items.push(Item::Decl { name: name.to_string(), ty, reg: true, doc: doc.to_string(), partly_read: false });
        Expr::sig(name, ty)
    }
    /// Declare a memory `reg [width-1:0] name [0:depth-1]`, unsigned words, written and read in clocked
    /// processes through [`Mem::word`]. It carries Yosys's `no_rw_check`: the design never uses a word
    /// read in the cycle it is written, so a block RAM needs no read-during-write bypass, and the
    /// `ram_style` of `style` ([`MemStyle`]).
    pub fn memory(&mut self, name: &str, width: u32, depth: u32, style: MemStyle, doc: &str) -> Mem {
        check_name(name);
        assert!(width >= 1 && depth >= 2, "memory {name}: {depth} words of {width} bits");
        self.items.push(Item::Mem { name: name.to_string(), width, depth, style, doc: doc.to_string() });
        Mem { name: name.to_string(), width, depth }
    }
    /// Declare a wire and drive it: `wire name = rhs;`.
    pub fn net(&mut self, name: &str, rhs: &Expr, doc: &str) -> Expr {
        check_name(name);
        self.items.push(Item::Net { name: name.to_string(), rhs: rhs.clone(), doc: doc.to_string(), partly_read: false });
        Expr::sig(name, rhs.ty)
    }
    /// [`Body::net`] for a value of which only some bits are read (the high bits of a product that is
    /// computed whole by a DSP block): the declaration is wrapped in Verilator's lint waiver for
    /// unused signal bits, and nothing else.
    pub fn net_partly_read(&mut self, name: &str, rhs: &Expr, doc: &str) -> Expr {
        check_name(name);
        self.items.push(Item::Net { name: name.to_string(), rhs: rhs.clone(), doc: doc.to_string(), partly_read: true });
        Expr::sig(name, rhs.ty)
    }
    /// Continuous assignment, type-checked.
    pub fn assign(&mut self, lhs: &Expr, rhs: &Expr) {
        assert!(lhs.atomic, "not an lvalue: {}", lhs.text);
        assert_eq!(lhs.ty.width, rhs.ty.width, "`assign {} = {}`: widths {} and {}", lhs.text, rhs.text, lhs.ty.width, rhs.ty.width);
        assert_eq!(lhs.ty.signed, rhs.ty.signed, "`assign {} = {}`: signedness differs", lhs.text, rhs.text);
        self.items.push(Item::Assign(lhs.clone(), rhs.clone()));
    }
    /// A clocked process `always @(posedge clk) begin body end`.
    pub fn always(&mut self, clk: &Expr, body: Vec<Stmt>) {
        self.process(clk, body, false);
    }
    /// [`Body::always`] with Yosys's `keep` on the process, so that its flip-flops are never merged
    /// with identical ones elsewhere (Yosys' `opt_merge` merges registers with the same inputs). For
    /// copies of a broadcast signal that are meant to be local to their users.
    pub fn always_kept(&mut self, clk: &Expr, body: Vec<Stmt>) {
        self.process(clk, body, true);
    }
    fn process(&mut self, clk: &Expr, body: Vec<Stmt>, keep: bool) {
        assert_eq!(clk.ty, Ty::bit());
        self.items.push(Item::Always { clk: clk.text.clone(), body, keep });
    }
    /// An instance of `module` with every port connected by name, type-checked against its ports.
    pub fn instance(&mut self, module: &Module, name: &str, conns: &[(&str, Expr)]) {
        let mut out = Vec::new();
        for p in &module.ports {
            let Some((_, e)) = conns.iter().find(|(n, _)| *n == p.name) else {
                panic!("instance {name} of {}: port {} not connected", module.name, p.name);
            };
            assert_eq!(p.ty.width, e.ty.width, "instance {name} of {}: port {} is {} bits, `{}` is {}", module.name, p.name, p.ty.width, e.text, e.ty.width);
            if p.dir == Dir::Out {
                assert!(e.atomic, "instance {name}: output {} needs an lvalue, not `{}`", p.name, e.text);
            }
            out.push((p.name.clone(), e.text.clone()));
        }
        for (n, _) in conns {
            assert!(module.ports.iter().any(|p| p.name == *n), "instance {name} of {}: no port {n}", module.name);
        }
        self.items.push(Item::Inst { module: module.name.clone(), name: name.to_string(), conns: out });
    }
    /// A generate loop `for (var = 0; var < count; var = var + 1) begin : label ... end`.
    pub fn generate_for(&mut self, var: &str, count: u32, label: &str, build: impl FnOnce(&mut Body)) {
        let mut inner = Body::default();
        build(&mut inner);
        if !self.genvars.iter().any(|g| g == var) {
            self.genvars.push(var.to_string());
        }
        self.genvars.extend(inner.genvars.drain(..).filter(|g| g != var));
        self.items.push(Item::For { var: var.to_string(), count, label: label.to_string(), body: inner.items });
    }
}

/// What a memory is built from, as its `ram_style` attribute asks Yosys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MemStyle {
    /// Block RAM (`ram_style = "block"`): our memories are small, and Yosys would otherwise build the
    /// smallest in flip-flops and multiplexers, the logic a large array runs short of, while block RAM
    /// is otherwise unused on both families.
    #[default]
    Block,
    /// LUT RAM (`ram_style = "distributed"`): on ECP5 a few `TRELLIS_DPR16X4` per memory, read without
    /// the block RAM's clock-to-output delay (5.83 ns in nextpnr's model of a DP16KD without its output
    /// register, which is how Yosys maps it). The iCE40 has no LUT RAM: there it is flip-flops.
    Distributed,
}

impl MemStyle {
    /// The attribute's value.
    pub fn ram_style(self) -> &'static str {
        match self {
            MemStyle::Block => "block",
            MemStyle::Distributed => "distributed",
        }
    }
}

/// A declared memory (see [`Body::memory`]).
#[derive(Clone, Debug)]
pub struct Mem {
    name: String,
    width: u32,
    depth: u32,
}

impl Mem {
    /// The word `name[addr]`: an lvalue in a clocked process, or a read (a synchronous read when it is
    /// assigned to a register). `addr` is an unsigned name exactly `clog2(depth)` bits wide.
    pub fn word(&self, addr: &Expr) -> Expr {
        assert!(!addr.ty.signed && addr.atomic && !addr.text.contains('['), "memory address must be an unsigned name: `{}`", addr.text);
        let need = qmac_arith::width::clog2(u64::from(self.depth));
        assert_eq!(addr.ty.width, need, "memory {} of {} words takes a {need}-bit address, not `{}`", self.name, self.depth, addr.text);
        Expr { text: format!("{}[{}]", self.name, addr.text), ty: Ty::u(self.width), atomic: true }
    }
}

/// A Verilog module.
#[derive(Clone, Debug)]
pub struct Module {
    name: String,
    doc: Vec<String>,
    ports: Vec<Port>,
    /// The module body.
    pub body: Body,
}

impl Module {
    /// A new empty module.
    pub fn new(name: &str) -> Module {
        check_name(name);
        Module { name: name.to_string(), doc: Vec::new(), ports: Vec::new(), body: Body::default() }
    }
    /// The module name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The ports, in declaration order.
    pub fn ports(&self) -> &[Port] {
        &self.ports
    }
    /// A line of the descriptive comment above the module.
    pub fn doc(&mut self, line: &str) {
        self.doc.push(line.to_string());
    }
    /// Add an input port.
    pub fn input(&mut self, name: &str, ty: Ty, doc: &str) -> Expr {
        check_name(name);
        self.ports.push(Port { name: name.to_string(), dir: Dir::In, ty, doc: doc.to_string(), reg: false });
        Expr::sig(name, ty)
    }
    /// Add an output port driven by a continuous assignment or an instance (`output wire`).
    pub fn output(&mut self, name: &str, ty: Ty, doc: &str) -> Expr {
        check_name(name);
        self.ports.push(Port { name: name.to_string(), dir: Dir::Out, ty, doc: doc.to_string(), reg: false });
        Expr::sig(name, ty)
    }
    /// Add an output port that is itself a register written by a clocked process (`output reg`).
    pub fn output_reg(&mut self, name: &str, ty: Ty, doc: &str) -> Expr {
        check_name(name);
        self.ports.push(Port { name: name.to_string(), dir: Dir::Out, ty, doc: doc.to_string(), reg: true });
        Expr::sig(name, ty)
    }

    /// The module as Verilog-2005 text, after `header` (comment lines without the `//`).
    pub fn to_verilog(&self, header: &[String]) -> String {
        let mut s = String::new();
        for h in header {
            if h.is_empty() {
                s.push_str("//\n");
            } else {
                let _ = writeln!(s, "// {h}");
            }
        }
        s.push_str("`default_nettype none\n\n");
        for d in &self.doc {
            let _ = writeln!(s, "// {d}");
        }
        let _ = writeln!(s, "module {} (", self.name);
        let n = self.ports.len();
        for (i, p) in self.ports.iter().enumerate() {
            let dir = match p.dir {
                Dir::In => "input  wire",
                Dir::Out if p.reg => "output reg ",
                Dir::Out => "output wire",
            };
            let comma = if i + 1 < n { "," } else { "" };
            let decl = format!("    {dir}{} {}{comma}", p.ty.decl(), p.name);
            if p.doc.is_empty() {
                let _ = writeln!(s, "{decl}");
            } else {
                let _ = writeln!(s, "{decl:<48} // {}", p.doc);
            }
        }
        s.push_str(");\n");
        if !self.body.genvars.is_empty() {
            let _ = writeln!(s, "\n    genvar {};", self.body.genvars.join(", "));
        }
        print_items(&mut s, &self.body.items, 1);
        let _ = writeln!(s, "\nendmodule\n\n`default_nettype wire");
        s
    }
}

fn print_items(s: &mut String, items: &[Item], depth: usize) {
    let ind = "    ".repeat(depth);
    let mut prev_kind = "";
    for item in items {
        let kind = match item {
            Item::Decl { .. } | Item::Mem { .. } | Item::Net { .. } | Item::Assign(..) => "decl",
            _ => "block",
        };
        if (kind != prev_kind || kind == "block") && prev_kind != "comment" {
            s.push('\n');
        }
        prev_kind = kind;
        match item {
            Item::Comment(c) => {
                let _ = writeln!(s, "{ind}// {c}");
                prev_kind = "comment";
            }
            Item::Decl { .. } | Item::Mem { .. } => {
                let (decl, doc, partly) = match item {
                    Item::Decl { name, ty, reg, doc, partly_read } => (format!("{ind}{}{} {name};", if *reg { "reg " } else { "wire" }, ty.decl()), doc, *partly_read),
                    Item::Mem { name, width, depth, style, doc } => (
                        format!("{ind}(* no_rw_check, ram_style = \"{}\" *) reg [{}:0] {name} [0:{}];", style.ram_style(), width - 1, depth - 1),
                        doc,
                        false,
                    ),
                    _ => unreachable!(),
                };
                if partly {
                    let _ = writeln!(s, "{ind}/* verilator lint_off UNUSEDSIGNAL */");
                }
                if doc.is_empty() {
                    let _ = writeln!(s, "{decl}");
                } else {
                    let _ = writeln!(s, "{decl:<44} // {doc}");
                }
                if partly {
                    let _ = writeln!(s, "{ind}/* verilator lint_on UNUSEDSIGNAL */");
                }
            }
            Item::Net { name, rhs, doc, partly_read } => {
                if *partly_read {
                    let _ = writeln!(s, "{ind}/* verilator lint_off UNUSEDSIGNAL */");
                }
                let decl = format!("{ind}wire{} {name} = {};", rhs.ty.decl(), strip_outer(&rhs.text));
                if doc.is_empty() {
                    let _ = writeln!(s, "{decl}");
                } else {
                    let _ = writeln!(s, "{decl}  // {doc}");
                }
                if *partly_read {
                    let _ = writeln!(s, "{ind}/* verilator lint_on UNUSEDSIGNAL */");
                }
            }
            Item::Assign(l, r) => {
                let _ = writeln!(s, "{ind}assign {} = {};", l.text, strip_outer(&r.text));
            }
            Item::Always { clk, body, keep } => {
                let attr = if *keep { "(* keep *) " } else { "" };
                let _ = writeln!(s, "{ind}{attr}always @(posedge {clk}) begin");
                print_stmts(s, body, depth + 1);
                let _ = writeln!(s, "{ind}end");
            }
            Item::Inst { module, name, conns } => {
                let _ = writeln!(s, "{ind}{module} {name} (");
                let w = conns.iter().map(|(p, _)| p.len()).max().unwrap_or(0);
                for (i, (p, e)) in conns.iter().enumerate() {
                    let comma = if i + 1 < conns.len() { "," } else { "" };
                    let _ = writeln!(s, "{ind}    .{p:<w$} ({}){comma}", strip_outer(e));
                }
                let _ = writeln!(s, "{ind});");
            }
            Item::For { var, count, label, body } => {
                let _ = writeln!(s, "{ind}for ({var} = 0; {var} < {count}; {var} = {var} + 1) begin : {label}");
                let mut inner = String::new();
                print_items(&mut inner, body, depth + 1);
                s.push_str(inner.strip_prefix('\n').unwrap_or(&inner));
                let _ = writeln!(s, "{ind}end");
            }
        }
    }
}

fn print_stmts(s: &mut String, stmts: &[Stmt], depth: usize) {
    let ind = "    ".repeat(depth);
    for st in stmts {
        match st {
            Stmt::Assign(l, r) => {
                let _ = writeln!(s, "{ind}{} <= {};", l.text, strip_outer(&r.text));
            }
            Stmt::If(c, t, e) => {
                let _ = writeln!(s, "{ind}if ({}) begin", strip_outer(&c.text));
                print_stmts(s, t, depth + 1);
                if e.is_empty() {
                    let _ = writeln!(s, "{ind}end");
                } else if let [Stmt::If(..)] = e.as_slice() {
                    let mut inner = String::new();
                    print_stmts(&mut inner, e, depth);
                    let _ = write!(s, "{ind}end else {}", inner.trim_start());
                } else {
                    let _ = writeln!(s, "{ind}end else begin");
                    print_stmts(s, e, depth + 1);
                    let _ = writeln!(s, "{ind}end");
                }
            }
        }
    }
}

fn strip_outer(t: &str) -> &str {
    if t.starts_with('(') && t.ends_with(')') && matching_outer_paren(t) {
        &t[1..t.len() - 1]
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_sign_extends_with_signed_cast() {
        let x = Expr::sig("x", Ty::s(4));
        assert_eq!(x.resize(6).text(), "$signed({{2{x[3]}}, x})");
        assert_eq!(x.resize(5).text(), "$signed({x[3], x})");
        assert_eq!(x.resize(2).text(), "$signed(x[1:0])");
        let u = Expr::sig("u", Ty::u(3));
        assert_eq!(u.resize(5).text(), "{2'd0, u}");
        assert_eq!(u.to_signed_value().ty(), Ty::s(4));
    }

    #[test]
    #[should_panic(expected = "differ in type")]
    fn mixed_widths_are_rejected() {
        let a = Expr::sig("a", Ty::u(4));
        let b = Expr::sig("b", Ty::u(5));
        let _ = a.add(&b);
    }

    #[test]
    #[should_panic(expected = "widths 4 and 5")]
    fn assignment_width_is_checked() {
        let mut m = Module::new("m");
        let y = m.output("y_o", Ty::u(4), "");
        m.body.assign(&y, &Expr::sig("b", Ty::u(5)));
    }

    #[test]
    #[should_panic(expected = "Verilog keyword")]
    fn keywords_are_rejected() {
        let mut m = Module::new("m");
        m.body.wire("xnor", Ty::bit(), "");
    }

    #[test]
    fn literals_are_sized() {
        assert_eq!(Expr::lit(5, Ty::u(4)).text(), "4'd5");
        assert_eq!(Expr::lit(-3, Ty::s(4)).text(), "-4'sd3");
        assert_eq!(Expr::lit(3, Ty::s(4)).text(), "4'sd3");
    }

    #[test]
    fn prints_a_small_module() {
        let mut m = Module::new("t");
        let clk = m.input("clk_i", Ty::bit(), "clock");
        let a = m.input("a_i", Ty::u(4), "");
        let q = m.output_reg("y_o", Ty::u(4), "");
        m.body.always(&clk, vec![Stmt::set(&q, &a.add(&Expr::lit(1, Ty::u(4))))]);
        let v = m.to_verilog(&["hdr".into()]);
        assert!(v.contains("output reg  [3:0] y_o"), "{v}");
        assert!(v.contains("y_o <= a_i + 4'd1;"), "{v}");
        assert!(!v.contains('$') || v.contains("$signed"));
    }
}
