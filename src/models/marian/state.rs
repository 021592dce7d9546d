//! What the Marian decoder carries between steps: each layer's self-attention cache, filled in
//! place, and the cross-attention keys and values of each row's source. Rows can be reordered
//! (beam search), dropped (finished sentences), or handed a new sentence mid-run (continuous
//! batching: a row whose sentence began later masks the cache slots from before it).

use candle_core::{Device, Tensor};

/// Slots added when a self-attention cache is full. Growing copies the cache, so it should be
/// rare; beam search copies whole caches every step to reorder them, so spare slots should be
/// few.
fn headroom(len: usize) -> usize {
    32 + len / 4
}

/// One layer's keys and values.
#[derive(Debug)]
pub(super) struct Kv {
    pub k: Tensor,
    pub v: Tensor,
}

impl Kv {
    fn map(&self, f: impl Fn(&Tensor) -> candle_core::Result<Tensor>) -> candle_core::Result<Kv> {
        Ok(Kv {
            k: f(&self.k)?,
            v: f(&self.v)?,
        })
    }
}

#[derive(Debug)]
pub(super) struct LayerState {
    /// Self-attention cache, [rows, heads, capacity, head_dim]; slots `0..len` are filled.
    pub self_kv: Kv,
    /// Cross-attention keys and values, [sources, heads, source length, head_dim], zero past
    /// each source's end.
    pub cross: Kv,
}

/// Where one step writes and what each row sees.
pub(super) struct StepPlan {
    /// The cache slot this step's tokens go into.
    pub slot: usize,
    /// Per row, the position of this step's token in its own sentence.
    pub positions: Vec<u32>,
    /// Additive bias [rows, 1, 1, slot + 1] hiding from each row the slots written before its
    /// sentence began; None while every row began at slot 0.
    pub self_bias: Option<Tensor>,
}

/// Everything the decoder carries between steps, for `rows` rows: each layer's self-attention
/// cache (one entry per row) and cross-attention keys/values (one entry per source sentence,
/// shared by `group` consecutive rows). Not `Clone`: caches are written in place.
#[derive(Debug)]
pub struct DecoderState {
    pub(super) layers: Vec<LayerState>,
    /// Padding bias of the cross-attention keys, [sources, 1, 1, source length] (f32).
    pub(super) cross_bias: Tensor,
    /// Length of each source, to rebuild `cross_bias` when a row gets a new sentence.
    source_lens: Vec<usize>,
    rows: usize,
    group: usize,
    /// Cache slots written so far (the same for every row).
    len: usize,
    capacity: usize,
    /// Per row, the slot where its sentence began.
    starts: Vec<usize>,
}

/// 0 for a source's tokens, f32::MIN for its padding (what transformers' eager attention adds),
/// [sources, 1, 1, width].
pub(super) fn padding_bias(
    lens: &[usize],
    width: usize,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let mut bias = vec![f32::MIN; lens.len() * width];
    for (row, &len) in bias.chunks_mut(width).zip(lens) {
        row[..len].fill(0.0);
    }
    Tensor::from_vec(bias, (lens.len(), 1, 1, width), device)
}

impl DecoderState {
    /// A state for `cross.len()` layers whose rows are the sources of `cross` (one row each),
    /// with empty self-attention caches of `heads` × `head_dim`.
    pub(super) fn new(
        cross: Vec<Kv>,
        cross_bias: Tensor,
        source_lens: Vec<usize>,
        heads: usize,
        head_dim: usize,
    ) -> candle_core::Result<DecoderState> {
        let rows = source_lens.len();
        let capacity = headroom(0);
        let layers = cross
            .into_iter()
            .map(|cross| {
                let zeros = || {
                    Tensor::zeros(
                        (rows, heads, capacity, head_dim),
                        cross.k.dtype(),
                        cross.k.device(),
                    )
                };
                Ok(LayerState {
                    self_kv: Kv {
                        k: zeros()?,
                        v: zeros()?,
                    },
                    cross,
                })
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(DecoderState {
            layers,
            cross_bias,
            source_lens,
            rows,
            group: 1,
            len: 0,
            capacity,
            starts: vec![0; rows],
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub(super) fn group(&self) -> usize {
        self.group
    }

    /// Make room for one more slot and say where each row stands.
    pub(super) fn plan_step(&mut self) -> candle_core::Result<StepPlan> {
        self.reserve()?;
        let slot = self.len;
        let positions = self.starts.iter().map(|&s| (slot - s) as u32).collect();
        let self_bias = if self.starts.iter().all(|&s| s == 0) {
            None
        } else {
            let width = slot + 1;
            let mut bias = vec![0f32; self.rows * width];
            for (row, &start) in bias.chunks_mut(width).zip(&self.starts) {
                row[..start].fill(f32::MIN);
            }
            let device = self.cross_bias.device();
            Some(Tensor::from_vec(bias, (self.rows, 1, 1, width), device)?)
        };
        Ok(StepPlan {
            slot,
            positions,
            self_bias,
        })
    }

    /// The step planned last has written its slot.
    pub(super) fn advance(&mut self) {
        self.len += 1;
    }

    /// Ensure a free slot: when the caches are full, copy them into bigger ones, leaving out
    /// the slots that no row sees any more (those before every row's start).
    fn reserve(&mut self) -> candle_core::Result<()> {
        if self.len < self.capacity {
            return Ok(());
        }
        let drop = self.starts.iter().copied().min().unwrap_or(0);
        let kept = self.len - drop;
        let capacity = kept + headroom(kept);
        for layer in &mut self.layers {
            layer.self_kv = layer.self_kv.map(|t| {
                let (rows, heads, _, head_dim) = t.dims4()?;
                let tail = Tensor::zeros(
                    (rows, heads, capacity - kept, head_dim),
                    t.dtype(),
                    t.device(),
                )?;
                Tensor::cat(&[&t.narrow(2, drop, kept)?, &tail], 2)
            })?;
        }
        for start in &mut self.starts {
            *start -= drop;
        }
        self.len = kept;
        self.capacity = capacity;
        Ok(())
    }

    /// Keep `rows` (indices into the current rows, in the new order; repeats allowed): beam
    /// reordering and expansion, and dropping rows whose sentence is finished. The self-attention
    /// caches are gathered; the cross-attention keys/values only when the set of sentences
    /// changes, and never duplicated while each sentence's rows stay together.
    pub fn select(&mut self, rows: &[u32]) -> crate::error::Result<()> {
        self.select_rows(rows)
            .map_err(|e| super::inference("cannot reorder the decoder rows", e))
    }

    fn select_rows(&mut self, rows: &[u32]) -> candle_core::Result<()> {
        if rows.is_empty() {
            candle_core::bail!("no rows left to select");
        }
        if let Some(bad) = rows.iter().find(|&&r| r as usize >= self.rows) {
            candle_core::bail!("row {bad} out of range ({} rows)", self.rows);
        }
        let identity =
            rows.len() == self.rows && rows.iter().enumerate().all(|(i, &r)| r as usize == i);
        if identity {
            return Ok(());
        }
        let device = self.cross_bias.device().clone();
        let index = Tensor::new(rows, &device)?;
        for layer in &mut self.layers {
            layer.self_kv = layer.self_kv.map(|t| t.index_select(&index, 0))?;
        }
        self.starts = rows.iter().map(|&r| self.starts[r as usize]).collect();
        let sources: Vec<u32> = rows.iter().map(|&r| r / self.group as u32).collect();
        let (group, picked) = group_sources(&sources);
        let n_sources = self.rows / self.group;
        let same =
            picked.len() == n_sources && picked.iter().enumerate().all(|(i, &s)| s as usize == i);
        if !same {
            let index = Tensor::new(picked.as_slice(), &device)?;
            for layer in &mut self.layers {
                layer.cross = layer.cross.map(|t| t.index_select(&index, 0))?;
            }
            self.cross_bias = self.cross_bias.index_select(&index, 0)?;
            self.source_lens = picked
                .iter()
                .map(|&s| self.source_lens[s as usize])
                .collect();
        }
        self.rows = rows.len();
        self.group = group;
        Ok(())
    }

    /// Start a new sentence in `row`: its cross-attention keys and values (one [1, heads, len,
    /// head_dim] pair per layer, for a source of `len` tokens) replace the row's, and its
    /// sentence begins at the next slot. Only for one row per source (greedy search).
    pub(super) fn restart(
        &mut self,
        row: usize,
        cross: Vec<Kv>,
        len: usize,
    ) -> candle_core::Result<()> {
        if self.group != 1 || row >= self.rows || cross.len() != self.layers.len() {
            candle_core::bail!(
                "cannot restart row {row} of {} rows in groups of {}",
                self.rows,
                self.group
            );
        }
        let width = self.cross_bias.dim(3)?;
        if len > width {
            // A longer source than any so far: pad every row's keys and values to it.
            for layer in &mut self.layers {
                layer.cross = layer.cross.map(|t| pad_keys(t, len))?;
            }
        }
        let width = width.max(len);
        for (layer, new) in self.layers.iter_mut().zip(cross) {
            let new = new.map(|t| pad_keys(t, width))?;
            layer.cross.k.slice_set(&new.k, 0, row)?;
            layer.cross.v.slice_set(&new.v, 0, row)?;
        }
        self.source_lens[row] = len;
        self.cross_bias = padding_bias(&self.source_lens, width, self.cross_bias.device())?;
        self.starts[row] = self.len;
        Ok(())
    }
}

/// Keys or values [n, heads, s, head_dim] padded with zeros to `width` positions.
fn pad_keys(t: &Tensor, width: usize) -> candle_core::Result<Tensor> {
    let (n, heads, s, head_dim) = t.dims4()?;
    if s == width {
        return t.contiguous();
    }
    let zeros = Tensor::zeros((n, heads, width - s, head_dim), t.dtype(), t.device())?;
    Tensor::cat(&[t, &zeros], 2)
}

/// Split per-row sources into equal runs: (run length, source of each run). Rows whose sources
/// do not form equal runs get a run length of 1 (every row its own copy).
pub(super) fn group_sources(sources: &[u32]) -> (usize, Vec<u32>) {
    let first_run = sources.iter().take_while(|&&s| s == sources[0]).count();
    let uniform = sources.len().is_multiple_of(first_run)
        && sources
            .chunks(first_run)
            .all(|c| c.iter().all(|&s| s == c[0]));
    let group = if uniform { first_run } else { 1 };
    (group, sources.chunks(group).map(|c| c[0]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_group_into_equal_runs() {
        assert_eq!(group_sources(&[0, 0, 1, 1]), (2, vec![0, 1]));
        assert_eq!(group_sources(&[2, 2, 2]), (3, vec![2]));
        assert_eq!(group_sources(&[0, 1, 3]), (1, vec![0, 1, 3]));
        assert_eq!(group_sources(&[0, 0, 1]), (1, vec![0, 0, 1]));
        assert_eq!(group_sources(&[0, 0, 1, 2]), (1, vec![0, 0, 1, 2]));
    }

    #[test]
    fn padding_bias_hides_what_is_past_each_source() {
        let bias = padding_bias(&[2, 3], 3, &Device::Cpu).unwrap();
        assert_eq!(bias.dims(), &[2, 1, 1, 3]);
        let rows = bias.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(rows, vec![0.0, 0.0, f32::MIN, 0.0, 0.0, 0.0]);
    }
}
