//! Adam (Kingma and Ba) with decoupled weight decay (AdamW, Loshchilov and Hutter), written out
//! over candle variables.

use candle_core::{Tensor, Var};

use crate::error::TrainError;

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

pub(crate) struct Adam {
    vars: Vec<Var>,
    /// Decoupled weight decay (AdamW) per variable: 0 for biases, clips, levels and batch norm.
    decay: Vec<f64>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    step: i32,
    lr: f64,
}

impl Adam {
    pub(crate) fn new(vars: Vec<(Var, f64)>, lr: f64) -> Result<Self, TrainError> {
        let (vars, decay): (Vec<Var>, Vec<f64>) = vars.into_iter().unzip();
        let m = vars
            .iter()
            .map(|v| v.zeros_like())
            .collect::<Result<Vec<_>, _>>()?;
        let v = m.clone();
        Ok(Adam {
            vars,
            decay,
            m,
            v,
            step: 0,
            lr,
        })
    }

    pub(crate) fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// One update from the gradients of `loss`.
    pub(crate) fn step(&mut self, loss: &Tensor) -> Result<(), TrainError> {
        let grads = loss.backward()?;
        self.step += 1;
        let c1 = 1.0 - BETA1.powi(self.step);
        let c2 = 1.0 - BETA2.powi(self.step);
        for (i, var) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var) else { continue };
            self.m[i] = ((&self.m[i] * BETA1)? + (g * (1.0 - BETA1))?)?;
            self.v[i] = ((&self.v[i] * BETA2)? + (g.sqr()? * (1.0 - BETA2))?)?;
            let mhat = (&self.m[i] / c1)?;
            let vhat = (&self.v[i] / c2)?;
            let update = (mhat / (vhat.sqrt()? + EPS)?)? * self.lr;
            let p = if self.decay[i] > 0.0 {
                (var.as_tensor() * (1.0 - self.lr * self.decay[i]))?
            } else {
                var.as_tensor().clone()
            };
            var.set(&(p - update?)?)?;
        }
        Ok(())
    }
}
