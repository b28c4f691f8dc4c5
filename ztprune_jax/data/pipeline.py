"""Batches for evaluation: static batch size, padded last batch with a mask, host sharding.

A *source* is anything with ``len(source)`` and ``source.get_batch(indices)`` returning
float32 images ``[b, H, W, C]`` and int32 labels ``[b]`` (random access, like a
``tfds.data_source``). `BatchLoader` walks a contiguous range of a source in a fixed order
and yields `Batch` es of one static shape, so a jitted step compiles once: the last batch
is padded and its ``mask`` marks the real examples. Nothing is ever dropped.

On several hosts (``process_count > 1``) each host takes every ``process_count``-th
example of the range, starting at ``process_index``; every host yields the same number of
batches (the shorter ones padded), so a sharded step runs in lock-step.
"""

from __future__ import annotations

import concurrent.futures
import math
from collections.abc import Iterator, Sequence
from typing import NamedTuple, Protocol

import numpy as np

__all__ = ["Batch", "BatchLoader", "InMemorySource", "Source", "host_indices"]


class Batch(NamedTuple):
  """One evaluation batch.

  Attributes:
    images: ``[B, H, W, C]`` float32, normalised.
    labels: ``[B]`` int32 (0 where padded).
    mask: ``[B]`` bool, True for real examples.
  """

  images: np.ndarray
  labels: np.ndarray
  mask: np.ndarray


class Source(Protocol):
  """Random-access examples: ``len`` and ``get_batch(indices) -> (images, labels)``."""

  def __len__(self) -> int: ...

  def get_batch(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]: ...


class InMemorySource:
  """A source over arrays already in memory.

  Args:
    images: ``[N, H, W, C]`` float32 (normalised) images.
    labels: ``[N]`` int labels.
    class_names: optional names of the classes.
  """

  def __init__(self, images: np.ndarray, labels: np.ndarray, class_names: Sequence[str] = ()):
    images = np.asarray(images, np.float32)
    labels = np.asarray(labels, np.int32)
    if images.ndim != 4 or labels.shape != images.shape[:1]:
      raise ValueError(
        f"need images [N, H, W, C] and labels [N], got {images.shape}, {labels.shape}"
      )
    self.images, self.labels = images, labels
    self.class_names = tuple(class_names)

  def __len__(self) -> int:
    return int(self.labels.shape[0])

  def get_batch(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    idx = np.asarray(indices, np.int64)
    return self.images[idx], self.labels[idx]


def host_indices(
  num_examples: int, *, start: int = 0, process_index: int = 0, process_count: int = 1
) -> np.ndarray:
  """Source indices of this host's share of ``[start, start + num_examples)``, in order."""
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ValueError(
      f"process_index={process_index} must be in [0, process_count={process_count}) and "
      "process_count >= 1"
    )
  return np.arange(start + process_index, start + num_examples, process_count, dtype=np.int64)


class BatchLoader:
  """Deterministic, re-iterable batches of a source range (see the module docstring).

  Args:
    source: a `Source`.
    batch_size: static per-host batch size ``B``.
    start: first source index (a calibration split can be carved from the start).
    num_examples: examples from ``start`` on; None for all the rest.
    process_index, process_count: this host and the host count (default single host).
    num_threads: threads decoding examples of a batch in parallel (0: in the caller);
      only sources with a ``get`` method (one example) use them.
  """

  def __init__(
    self,
    source: Source,
    batch_size: int,
    *,
    start: int = 0,
    num_examples: int | None = None,
    process_index: int = 0,
    process_count: int = 1,
    num_threads: int = 0,
  ):
    total = len(source)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
      raise ValueError(f"batch_size={batch_size!r} must be an int >= 1")
    if not 0 <= start < total:
      raise ValueError(f"start={start} is outside the source's {total} examples")
    rest = total - start
    if num_examples is None:
      num_examples = rest
    if not 1 <= num_examples <= rest:
      raise ValueError(
        f"num_examples={num_examples} must be in [1, {rest}] ({total} examples, start={start})"
      )
    self.source = source
    self.batch_size = batch_size
    self.indices = host_indices(
      num_examples, start=start, process_index=process_index, process_count=process_count
    )
    per_host = math.ceil(num_examples / process_count)  # the same on every host
    self.num_batches = max(1, math.ceil(per_host / batch_size))
    self.num_threads = num_threads
    first, _ = source.get_batch(np.asarray([start]))
    self.image_shape = tuple(np.shape(first)[1:])  # (H, W, C)
    if len(self.image_shape) != 3:
      raise ValueError(f"source images must be [b, H, W, C], got {np.shape(first)}")

  def __len__(self) -> int:
    return self.num_batches

  @property
  def num_examples(self) -> int:
    """Real (unpadded) examples this host yields."""
    return int(self.indices.shape[0])

  def _fetch(self, idx: np.ndarray, pool) -> tuple[np.ndarray, np.ndarray]:
    if pool is not None and hasattr(self.source, "get"):
      pairs = list(pool.map(self.source.get, idx.tolist()))
      return np.stack([p[0] for p in pairs]), np.asarray([p[1] for p in pairs], np.int32)
    return self.source.get_batch(idx)

  def __iter__(self) -> Iterator[Batch]:
    b = self.batch_size
    pool = None
    if self.num_threads > 0:
      pool = concurrent.futures.ThreadPoolExecutor(self.num_threads)
    try:
      for i in range(self.num_batches):
        idx = self.indices[i * b : (i + 1) * b]
        real = idx.shape[0]
        if real:
          images, labels = self._fetch(idx, pool)
          images = np.asarray(images, np.float32)
          labels = np.asarray(labels, np.int32)
        else:  # a host with no examples left still yields padding (lock-step across hosts)
          images = np.zeros((0, *self.image_shape), np.float32)
          labels = np.zeros((0,), np.int32)
        pad = b - real
        if pad:  # pad with zeros; the mask excludes them from every metric
          images = np.concatenate([images, np.zeros((pad, *images.shape[1:]), np.float32)])
          labels = np.concatenate([labels, np.zeros((pad,), np.int32)])
        mask = np.arange(b) < real
        yield Batch(images, labels, mask)
    finally:
      if pool is not None:
        pool.shutdown()
