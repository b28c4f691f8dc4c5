"""Feature-evolution data model: stages, transitions, one-shot and multi-shot streams.

Our reconstruction of EML (spec §1, §3). A *stage* is a block of the stream in which the
feature set is fixed: ``(features, X, y)`` where ``features`` are indices into the
original feature space. At a transition between stage t and t+1 the features of stage t
split into *vanished* (never seen again) and *survived*; stage t+1 adds *new* features.
One-shot: T-stage ``[v; s]`` then I-stage ``[s; a]``. Multi-shot: >= 3 stages, each
middle stage is both an I-stage (inherits) and a T-stage (forwards).

Everything here is host-side NumPy: shapes and indices are static for the jitted learner.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Stage(NamedTuple):
  """One stage of an evolving-feature stream.

  Attributes:
    features: ``[d_t]`` int, indices into the original feature space, in column order.
    X: ``[n_t, d_t]`` instances, columns ordered as ``features``.
    y: ``[n_t]`` int labels in ``[0, n_classes)``.
  """

  features: np.ndarray
  X: np.ndarray
  y: np.ndarray


class Transition(NamedTuple):
  """Column positions linking stage t to stage t+1 (all ``int32``, host-side).

  Attributes:
    vanished: ``[d_v]`` positions in stage t of features that vanish.
    survived_prev: ``[d_s]`` positions in stage t of the survived features.
    survived_next: ``[d_s]`` positions in stage t+1 of the same features, same order.
    new: ``[d_a]`` positions in stage t+1 of the newly augmented features.
  """

  vanished: np.ndarray
  survived_prev: np.ndarray
  survived_next: np.ndarray
  new: np.ndarray


class Stream(NamedTuple):
  """A training stream of stages plus a test split in the last stage's features.

  Attributes:
    stages: the stages in arrival order.
    test: a ``Stage`` with the last stage's features (the I-stage features), or None.
    n_classes: number of classes; labels lie in ``[0, n_classes)``.
  """

  stages: tuple[Stage, ...]
  test: Stage | None
  n_classes: int


def transition(prev: Stage | np.ndarray, nxt: Stage | np.ndarray) -> Transition:
  """Computes the column positions linking two consecutive stages.

  Args:
    prev: stage t, or its ``[d_t]`` feature indices.
    nxt: stage t+1, or its ``[d_{t+1}]`` feature indices.

  Returns:
    The `Transition`; survived features are listed in stage t+1's column order.
  """
  fp = np.asarray(prev.features if isinstance(prev, Stage) else prev)
  fn = np.asarray(nxt.features if isinstance(nxt, Stage) else nxt)
  pos_prev = {int(f): i for i, f in enumerate(fp)}
  surv_next = [j for j, f in enumerate(fn) if int(f) in pos_prev]
  surv_prev = [pos_prev[int(fn[j])] for j in surv_next]
  new = [j for j, f in enumerate(fn) if int(f) not in pos_prev]
  kept = set(surv_prev)
  vanished = [i for i in range(len(fp)) if i not in kept]
  as_idx = lambda v: np.asarray(v, dtype=np.int32)  # noqa: E731
  return Transition(as_idx(vanished), as_idx(surv_prev), as_idx(surv_next), as_idx(new))


def validate_stage(stage: Stage, n_classes: int, n_features: int | None = None, name="stage"):
  """Raises `ValueError` if a stage is malformed.

  Checks: 1-D unique integer feature indices in ``[0, n_features)``; ``X`` is
  ``[n, len(features)]`` and finite; ``y`` is ``[n]`` integer in ``[0, n_classes)``.

  Args:
    stage: the stage to check.
    n_classes: number of classes.
    n_features: size of the original feature space, or None to skip the range check.
    name: how the stage is called in error messages.
  """
  f = np.asarray(stage.features)
  if f.ndim != 1 or f.size == 0:
    raise ValueError(f"{name}: features must be a non-empty 1-D index array, got {f.shape}")
  if not np.issubdtype(f.dtype, np.integer):
    raise ValueError(f"{name}: feature indices must be integers, got dtype {f.dtype}")
  if f.min() < 0 or (n_features is not None and f.max() >= n_features):
    raise ValueError(
      f"{name}: feature indices out of range [0, {n_features}): min {f.min()}, max {f.max()}"
    )
  if len(np.unique(f)) != len(f):
    raise ValueError(f"{name}: duplicated feature indices {_dups(f)}")
  X, y = np.asarray(stage.X), np.asarray(stage.y)
  if X.ndim != 2 or X.shape[1] != len(f):
    raise ValueError(
      f"{name}: X must be [n, {len(f)}] (one column per feature index), got {X.shape}"
    )
  validate_xy(X, y, n_classes, name=name)


def validate_xy(X, y, n_classes: int, d: int | None = None, name="inputs"):
  """Raises `ValueError` for NaN/inf inputs, wrong shapes or labels out of range.

  Args:
    X: ``[n, d]`` instances.
    y: ``[n]`` labels.
    n_classes: labels must lie in ``[0, n_classes)``.
    d: expected number of columns, or None.
    name: how the inputs are called in error messages.
  """
  X, y = np.asarray(X), np.asarray(y)
  if X.ndim != 2:
    raise ValueError(f"{name}: X must be 2-D [n, d], got shape {X.shape}")
  if d is not None and X.shape[1] != d:
    raise ValueError(f"{name}: X has {X.shape[1]} features but the current stage has {d}")
  if y.shape != (X.shape[0],):
    raise ValueError(f"{name}: y must be [{X.shape[0]}], got shape {y.shape}")
  check_finite(X, name=name)
  if y.size and not np.issubdtype(y.dtype, np.integer):
    raise ValueError(f"{name}: labels must be integers, got dtype {y.dtype}")
  if y.size and (y.min() < 0 or y.max() >= n_classes):
    raise ValueError(
      f"{name}: labels outside the class range [0, {n_classes}): min {y.min()}, max {y.max()}"
    )


def check_finite(X, name="X"):
  """Raises `ValueError` naming the (row, column) of NaN/inf entries of ``X``.

  Call it on the user's own ``X`` before any row shuffle, column permutation or scaling,
  so the positions are those of the user's data.

  Args:
    X: ``[n, d]`` numbers.
    name: how ``X`` is called in the message.
  """
  X = np.asarray(X)
  if X.dtype != bool and not np.issubdtype(X.dtype, np.number):
    raise ValueError(f"{name}: X must hold numbers, got dtype {X.dtype}")
  bad = ~np.isfinite(X)
  if bad.any():
    rows, cols = np.nonzero(bad)
    first = ", ".join(f"X[{r}, {c}]={X[r, c]}" for r, c in zip(rows[:5], cols[:5], strict=True))
    raise ValueError(
      f"{name}: X has {rows.size} NaN/inf value(s) in rows {np.unique(rows)[:10].tolist()}; "
      f"first (row, column): {first}"
    )


def validate_stream(stream: Stream, n_features: int | None = None):
  """Raises `ValueError` if a stream is malformed.

  Besides `validate_stage` on every stage: consecutive stages must share at least one
  survived feature and the later stage must keep or add features; a feature that
  vanished must never reappear; the test split must have the last stage's features.

  Args:
    stream: the stream to check.
    n_features: size of the original feature space, or None.
  """
  if not stream.stages:
    raise ValueError("stream has no stages")
  if stream.n_classes < 2:
    raise ValueError(f"n_classes must be >= 2, got {stream.n_classes}")
  gone: set[int] = set()
  for t, st in enumerate(stream.stages):
    validate_stage(st, stream.n_classes, n_features, name=f"stage {t}")
    back = gone.intersection(int(f) for f in st.features)
    if back:
      raise ValueError(f"stage {t}: features {sorted(back)} vanished earlier and reappear")
    if t:
      tr = transition(stream.stages[t - 1], st)
      if tr.survived_prev.size == 0:
        raise ValueError(f"stage {t - 1} -> {t}: no survived feature (overlap is empty)")
      gone.update(int(stream.stages[t - 1].features[i]) for i in tr.vanished)
  if stream.test is not None:
    last = stream.stages[-1].features
    if not np.array_equal(np.asarray(stream.test.features), np.asarray(last)):
      raise ValueError("test split must have the last stage's features, in the same order")
    validate_stage(stream.test, stream.n_classes, n_features, name="test")


def _dups(f):
  u, c = np.unique(f, return_counts=True)
  return u[c > 1].tolist()


def _check_xy(X, y, n_classes):
  X, y = np.asarray(X), np.asarray(y)
  if n_classes is None:
    n_classes = int(y.max()) + 1 if y.size else 0
  validate_xy(X, y, n_classes, name="(X, y)")
  return X, y, n_classes


def _split_rows(n, lengths, n_test, rng):
  if any(int(m) < 1 for m in lengths):
    raise ValueError(f"stage lengths must be >= 1, got {tuple(lengths)}")
  need = int(sum(lengths)) + int(n_test)
  if need > n:
    raise ValueError(
      f"stream needs {need} instances (stages {tuple(lengths)} + test {n_test}) but X has {n}"
    )
  rows = np.arange(n) if rng is None else rng.permutation(n)
  out, start = [], 0
  for m in list(lengths) + [n_test]:
    out.append(rows[start : start + int(m)])
    start += int(m)
  return out


def _default_lengths(n, n_stages, test_frac):
  n_test = int(round(test_frac * n))
  per = (n - n_test) // n_stages
  return (per,) * n_stages, n_test


def one_shot_from_indices(X, y, v, s, a, lengths, n_test=0, seed=0, n_classes=None) -> Stream:
  """Builds a one-shot stream from explicit vanished / survived / augmented indices.

  Args:
    X: ``[n, d]`` instances in the original feature space.
    y: ``[n]`` integer labels.
    v: ``[d_v]`` feature indices that vanish after the T-stage.
    s: ``[d_s]`` feature indices that survive (must be non-empty).
    a: ``[d_a]`` feature indices added in the I-stage.
    lengths: ``(n_T, n_I)`` instances in the T- and I-stage streams.
    n_test: test instances (I-stage features), disjoint from the stream.
    seed: seeds the instance shuffle; None keeps the row order of ``X``.
    n_classes: number of classes (default ``max(y) + 1``).

  Returns:
    A `Stream` with stages ``[v; s]`` and ``[s; a]``.
  """
  X, y, n_classes = _check_xy(X, y, n_classes)
  d = X.shape[1]
  blocks = {
    name: np.asarray(b, dtype=np.int64).reshape(-1)
    for name, b in zip("vsa", (v, s, a), strict=True)
  }
  for name, b in blocks.items():
    if b.size and (b.min() < 0 or b.max() >= d):
      raise ValueError(f"{name} indices out of range [0, {d}): min {b.min()}, max {b.max()}")
    if len(np.unique(b)) != len(b):
      raise ValueError(f"{name} indices contain duplicates {_dups(b)}")
  for p, q in (("v", "s"), ("v", "a"), ("s", "a")):
    both = np.intersect1d(blocks[p], blocks[q])
    if both.size:
      raise ValueError(f"feature indices overlap between {p} and {q}: {both.tolist()}")
  if blocks["s"].size == 0:
    raise ValueError("s (survived features) must be non-empty")
  if len(tuple(lengths)) != 2:
    raise ValueError(f"one-shot lengths must be (n_T, n_I), got {tuple(lengths)}")
  rng = None if seed is None else np.random.default_rng(seed)
  rows_t, rows_i, rows_test = _split_rows(len(X), lengths, n_test, rng)
  f_t = np.concatenate([blocks["v"], blocks["s"]])
  f_i = np.concatenate([blocks["s"], blocks["a"]])
  mk = lambda f, r: Stage(f, X[r][:, f], y[r])  # noqa: E731
  test = mk(f_i, rows_test) if n_test else None
  stream = Stream((mk(f_t, rows_t), mk(f_i, rows_i)), test, n_classes)
  validate_stream(stream, d)
  return stream


def make_one_shot(
  X, y, *, seed=0, fracs=(1 / 3, 1 / 3, 1 / 3), lengths=None, test_frac=0.2, n_classes=None
) -> Stream:
  """One-shot stream from any ``(X, y)`` with a seeded feature permutation (spec §3).

  Args:
    X: ``[n, d]`` instances.
    y: ``[n]`` integer labels.
    seed: seeds the feature permutation and the instance shuffle.
    fracs: ``(v, s, a)`` fractions of the ``d`` features (normalised to sum 1).
    lengths: ``(n_T, n_I)``; default: the non-test instances split in halves.
    test_frac: fraction of instances held out as the test split.
    n_classes: number of classes (default ``max(y) + 1``).

  Returns:
    A validated two-stage `Stream`.
  """
  X = np.asarray(X)
  if X.ndim != 2:
    raise ValueError(f"X must be 2-D [n, d], got shape {X.shape}")
  n, d = X.shape
  sizes = _block_sizes(d, fracs)
  if sizes[1] == 0:
    raise ValueError(f"fracs {tuple(fracs)} leave no survived feature for d={d}")
  perm = np.random.default_rng([seed, 1]).permutation(d)
  v, s, a = np.split(perm, np.cumsum(sizes)[:-1])
  if lengths is None:
    lengths, n_test = _default_lengths(n, 2, test_frac)
  else:
    n_test = int(round(test_frac * n))
  return one_shot_from_indices(X, y, v, s, a, lengths, n_test, seed, n_classes)


def make_multi_shot(
  X, y, *, n_stages=3, seed=0, fracs=None, lengths=None, test_frac=0.2, n_classes=None
) -> Stream:
  """Multi-shot stream: stage t uses feature blocks ``[B_t; B_{t+1}]`` (spec §1).

  The permuted features are cut into ``n_stages + 1`` blocks; at each transition block
  ``B_t`` vanishes, ``B_{t+1}`` survives and ``B_{t+2}`` is new (OPID-style sliding
  window; our choice of multi-shot layout).

  Args:
    X: ``[n, d]`` instances.
    y: ``[n]`` integer labels.
    n_stages: number of stages, >= 3.
    seed: seeds the feature permutation and the instance shuffle.
    fracs: ``n_stages + 1`` block fractions (default equal).
    lengths: instances per stage (default: the non-test instances split equally).
    test_frac: fraction held out as the test split (last stage's features).
    n_classes: number of classes (default ``max(y) + 1``).

  Returns:
    A validated `Stream` of ``n_stages`` stages.
  """
  if n_stages < 3:
    raise ValueError(f"multi-shot needs n_stages >= 3, got {n_stages}")
  X, y, n_classes = _check_xy(X, y, n_classes)
  n, d = X.shape
  fracs = (1.0,) * (n_stages + 1) if fracs is None else tuple(fracs)
  if len(fracs) != n_stages + 1:
    raise ValueError(f"fracs needs n_stages + 1 = {n_stages + 1} entries, got {len(fracs)}")
  sizes = _block_sizes(d, fracs)
  if min(sizes) == 0:
    raise ValueError(f"d={d} is too small for {n_stages + 1} non-empty blocks (sizes {sizes})")
  perm = np.random.default_rng([seed, 1]).permutation(d)
  blocks = np.split(perm, np.cumsum(sizes)[:-1])
  if lengths is None:
    lengths, n_test = _default_lengths(n, n_stages, test_frac)
  else:
    n_test = int(round(test_frac * n))
  if len(tuple(lengths)) != n_stages:
    raise ValueError(f"lengths needs {n_stages} entries, got {len(tuple(lengths))}")
  rows = _split_rows(n, lengths, n_test, np.random.default_rng(seed))
  feats = [np.concatenate([blocks[t], blocks[t + 1]]) for t in range(n_stages)]
  stages = tuple(Stage(f, X[r][:, f], y[r]) for f, r in zip(feats, rows[:-1], strict=True))
  test = Stage(feats[-1], X[rows[-1]][:, feats[-1]], y[rows[-1]]) if n_test else None
  stream = Stream(stages, test, n_classes)
  validate_stream(stream, d)
  return stream


def _block_sizes(d, fracs):
  fr = np.asarray(fracs, dtype=np.float64)
  if fr.ndim != 1 or np.any(fr < 0) or fr.sum() <= 0:
    raise ValueError(f"fracs must be non-negative with a positive sum, got {tuple(fracs)}")
  fr = fr / fr.sum()
  sizes = np.floor(fr * d).astype(int)
  # Hand the remainder to the blocks with the largest fractional parts.
  rem = d - sizes.sum()
  order = np.argsort(-(fr * d - sizes), kind="stable")
  sizes[order[:rem]] += 1
  return sizes.tolist()
