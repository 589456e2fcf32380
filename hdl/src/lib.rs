pub mod rtl;
pub mod units;
