//! Max pooling of one sample's channel-major values, shared by qmac's integer and float networks
//! and the trainer's integer network (host stages; nothing here runs in the array).

/// Max pooling of `[c][h][w]` values (codes or floats) over `size` windows with `stride`, no
/// padding: `[c][(h - size[0]) / stride[0] + 1][(w - size[1]) / stride[1] + 1]`, the first value of
/// a window kept on ties. The caller guarantees `x.len() == c * h * w`, `size` within `[h, w]` and
/// strides of at least 1 (a validated network's shapes).
pub fn max_pool<T: Copy + PartialOrd>(x: &[T], [c, h, w]: [usize; 3], size: [usize; 2], stride: [usize; 2]) -> Vec<T> {
    let oh = (h - size[0]) / stride[0] + 1;
    let ow = (w - size[1]) / stride[1] + 1;
    let mut out = Vec::with_capacity(c * oh * ow);
    for plane in x.chunks_exact(h * w).take(c) {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut m = plane[oy * stride[0] * w + ox * stride[1]];
                for dy in 0..size[0] {
                    for dx in 0..size[1] {
                        let v = plane[(oy * stride[0] + dy) * w + ox * stride[1] + dx];
                        if v > m {
                            m = v;
                        }
                    }
                }
                out.push(m);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::max_pool;

    #[test]
    fn windows_strides_and_channels() {
        // 2 channels of 3x4; 2x2 windows, stride [1, 2]
        let x: Vec<u64> = vec![1, 9, 2, 0, 3, 4, 8, 5, 7, 6, 1, 2, /* channel 1 */ 0, 0, 0, 1, 0, 2, 0, 0, 3, 0, 0, 4];
        assert_eq!(max_pool(&x, [2, 3, 4], [2, 2], [1, 2]), vec![9, 8, 7, 8, 2, 1, 3, 4]);
        let f = [1.0, -2.0, 0.5, 3.0];
        assert_eq!(max_pool(&f, [1, 2, 2], [2, 2], [2, 2]), vec![3.0]);
    }
}
