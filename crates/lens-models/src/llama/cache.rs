//! The key/value cache of incremental decoding: one preallocated `[batch, kv_heads, capacity, head_dim]` pair
//! per layer, filled in place, with the number of positions filled so far. It lives beside the model (not in
//! its record), is passed `&mut` to each forward pass, and the positions of new tokens come from its length.
//!
//! Nothing here grows: a forward pass writes its keys and values at `len..len + n` with `slice_assign` (in
//! place when the buffer is not shared, as it never is outside a forward pass) and attends over `0..len + n`.
//! Going past the capacity is an error, not a reallocation.

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};

use crate::{Error, Result};

/// Keys and values of one layer.
#[derive(Debug)]
pub struct LayerCache<B: Backend> {
    /// `[batch, kv_heads, capacity, head_dim]`, rotary embedding applied. `None` only while a forward pass
    /// holds it (so that the buffer stays uniquely owned and is updated in place).
    keys: Option<Tensor<B, 4>>,
    /// `[batch, kv_heads, capacity, head_dim]`
    values: Option<Tensor<B, 4>>,
}

impl<B: Backend> LayerCache<B> {
    fn new(shape: [usize; 4], device: &B::Device) -> Self {
        LayerCache { keys: Some(Tensor::zeros(shape, device)), values: Some(Tensor::zeros(shape, device)) }
    }

    /// Write the keys and values of `n` new positions at `start..start + n` and return those of every
    /// position so far (`0..start + n`).
    ///
    /// # Shapes
    /// - keys, values: `[batch, kv_heads, n, head_dim]` → two `[batch, kv_heads, start + n, head_dim]`
    pub(crate) fn update(
        &mut self,
        start: usize,
        keys: Tensor<B, 4>,
        values: Tensor<B, 4>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let write = |buffer: &mut Option<Tensor<B, 4>>, new: Tensor<B, 4>| {
            let [batch, heads, n, head_dim] = new.dims();
            let filled = buffer
                .take()
                .expect("cache buffer present between forward passes")
                .slice_assign([0..batch, 0..heads, start..start + n, 0..head_dim], new);
            let seen = filled.clone().narrow(2, 0, start + n);
            *buffer = Some(filled);
            seen
        };
        (write(&mut self.keys, keys), write(&mut self.values, values))
    }
}

/// The cache of a whole decoder: one [`LayerCache`] per layer and the positions filled so far.
#[derive(Debug)]
pub struct KvCache<B: Backend> {
    layers: Vec<LayerCache<B>>,
    len: usize,
    batch: usize,
    capacity: usize,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for `layers` layers of `batch` rows and up to `capacity` positions, allocated now.
    pub fn new(
        layers: usize,
        batch: usize,
        kv_heads: usize,
        capacity: usize,
        head_dim: usize,
        device: &B::Device,
    ) -> Self {
        let shape = [batch, kv_heads, capacity, head_dim];
        KvCache { layers: (0..layers).map(|_| LayerCache::new(shape, device)).collect(), len: 0, batch, capacity }
    }

    /// Positions filled so far: the position of the next token.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Most positions the cache holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Rows (independent sequences) the cache holds.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Forget every position: the next forward pass starts at position 0. The buffers are kept.
    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// Row `i` continues what old row `rows[i]` was (beam search): the filled positions are gathered along the
    /// batch and written back into the same buffers.
    pub fn reorder(&mut self, rows: &[usize]) {
        let identity = rows.len() == self.batch && rows.iter().enumerate().all(|(i, &r)| i == r);
        if identity || self.layers.is_empty() {
            return;
        }
        let device = self.layers[0].keys.as_ref().expect("cache buffer").device();
        let index = Tensor::<B, 1, Int>::from_data(
            TensorData::new(rows.iter().map(|&r| r as i64).collect::<Vec<_>>(), [rows.len()]),
            &device,
        );
        let len = self.len;
        let same_batch = rows.len() == self.batch;
        let gather = |buffer: &mut Option<Tensor<B, 4>>| {
            let old = buffer.take().expect("cache buffer present between forward passes");
            *buffer = Some(if same_batch && len > 0 {
                let [batch, heads, _, head_dim] = old.dims();
                let moved = old.clone().narrow(2, 0, len).select(0, index.clone());
                old.slice_assign([0..batch, 0..heads, 0..len, 0..head_dim], moved)
            } else {
                old.select(0, index.clone())
            });
        };
        for layer in &mut self.layers {
            gather(&mut layer.keys);
            gather(&mut layer.values);
        }
        self.batch = rows.len();
    }

    /// Checks that `n` more positions of `rows` rows fit, and returns the position of the first.
    pub(crate) fn start(&self, rows: usize, n: usize) -> Result<usize> {
        if rows != self.batch {
            return Err(Error::invalid_input(format!("{rows} rows given to a cache of {} rows", self.batch)));
        }
        if self.len + n > self.capacity {
            return Err(Error::invalid_input(format!(
                "{n} new tokens after {} exceed the cache's capacity of {} positions",
                self.len, self.capacity
            )));
        }
        Ok(self.len)
    }

    /// The cache of layer `i`.
    pub(crate) fn layer_mut(&mut self, i: usize) -> &mut LayerCache<B> {
        &mut self.layers[i]
    }

    /// Number of layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Record that `n` positions were written to every layer.
    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type B = burn::backend::NdArray<f32>;

    fn rows(t: Tensor<B, 4>) -> Vec<f32> {
        t.into_data().to_vec().unwrap()
    }

    #[test]
    fn positions_are_written_in_place_and_reordered_along_the_batch() {
        let device = Default::default();
        let mut cache = KvCache::<B>::new(1, 2, 1, 4, 1, &device);
        let kv = |values: Vec<f32>, n| Tensor::<B, 4>::from_data(TensorData::new(values, [2, 1, n, 1]), &device);
        let start = cache.start(2, 2).unwrap();
        let (k, _) = cache.layer_mut(0).update(start, kv(vec![1.0, 2.0, 10.0, 20.0], 2), kv(vec![0.0; 4], 2));
        cache.advance(2);
        assert_eq!(rows(k), vec![1.0, 2.0, 10.0, 20.0]);
        let start = cache.start(2, 1).unwrap();
        let (k, _) = cache.layer_mut(0).update(start, kv(vec![3.0, 30.0], 1), kv(vec![0.0; 2], 1));
        cache.advance(1);
        assert_eq!(rows(k), vec![1.0, 2.0, 3.0, 10.0, 20.0, 30.0]);
        cache.reorder(&[1, 1]);
        let keys = cache.layers[0].keys.clone().unwrap();
        assert_eq!(keys.dims(), [2, 1, 4, 1], "the buffer keeps its capacity");
        assert_eq!(rows(keys.narrow(2, 0, 3)), vec![10.0, 20.0, 30.0, 10.0, 20.0, 30.0]);
        assert!(cache.start(2, 2).unwrap_err().to_string().contains("capacity"));
        assert!(cache.start(3, 1).unwrap_err().to_string().contains("rows"));
        cache.reset();
        assert_eq!((cache.len(), cache.start(2, 4).unwrap()), (0, 0));
    }
}
