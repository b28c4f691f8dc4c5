"""Textured Fashion-MNIST: garments pasted on crops of natural photographs and textures.

A deterministic, seeded data set in the regime of ImageNet models (a small object on a
cluttered background, every patch carries signal), built from Fashion-MNIST garments and
the photographs bundled with scikit-image (no download: only the PNG files its wheel
ships; JPEG files are left out because their decoded pixels depend on the decoder).
The train and test splits use *disjoint* photographs (`TRAIN_PHOTOS`, `TEST_PHOTOS`), so
a model cannot recognise the test backgrounds.

Each example ``i`` of a split draws its own parameters from
``np.random.default_rng([seed, split_id, epoch, i])``, so example ``i`` does not depend on
which other examples are generated with it (a prefix of the split is the same at any
size, and training can composite random batches on the fly); ``epoch`` gives fresh
composites of the same garments (augmentation). The parameters of one example:

- background: one of the split's photographs, a random square crop whose side is
  ``zoom * image_size`` photo pixels (``zoom`` uniform in ``zoom``, capped by the
  photograph's shorter side), bilinearly resampled to ``image_size``, mirrored with
  probability 1/2;
- garment: the 28x28 image bilinearly resized to a side of ``scale * image_size`` pixels
  (``scale`` uniform in ``scale``) at a uniform random position inside the canvas,
  composited as ``out = (1 - a) * background + a * fg`` with opacity
  ``a = min(1, 2 v)`` and colour ``fg = 255 * tint * v``, where ``v`` in [0, 1] is the
  resized garment intensity and ``tint`` a random RGB colour in ``[0.2, 1]^3``. So the
  garment keeps its shading and outline, pixels at half intensity or more are opaque,
  its anti-aliased rim (``0 < v < 1/2``) is a darker, partly transparent outline, and
  where ``v = 0`` the background is untouched.

Colour: the output is RGB (``[N, S, S, 3]``). DeiT and the paper's models see RGB
photographs whose colour statistics differ from patch to patch; with colour both the
backgrounds and the randomly tinted garments give patches whose colour
alone says nothing about the class; grey photographs are copied to 3 channels (each split
has RGB and grey ones: train 3 RGB of 8, test 2 RGB of 7).

Bit-exactness: the pixels come from exact PNG decoding (each photograph's decoded bytes
are checked against `PHOTO_SHA256`), numpy's PCG64 streams, and float32 additions,
multiplications and divisions, floor, rint and clip only (exact or correctly rounded on
every IEEE machine; no transcendental functions, no resampling library); a test pins
the SHA-256 of the first 500 composites of the test split, so a change of the generator
(or of numpy's `Generator` streams) is caught.

Look at it: results/textured_fmnist/examples.png (`python -m
experiments.textured_fmnist_examples --workdir=results/textured_fmnist`). Evaluate on it:
``make_source("textured_fmnist", ...)`` (`ztprune_jax.data.registry`). Train on it:
configs/train_textured_fmnist.py.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pathlib
from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

__all__ = [
  "PHOTO_FILES",
  "TEST_PHOTOS",
  "TRAIN_PHOTOS",
  "TexturedFashionMNIST",
  "generate",
  "load_photo",
]

# The PNG photographs and textures scikit-image==0.26.0 ships in its wheel.
PHOTO_FILES = {
  "astronaut": "astronaut.png",  # RGB 512x512
  "brick": "brick.png",  # texture, grey 512x512
  "camera": "camera.png",  # grey 512x512
  "cell": "cell.png",  # grey 660x550
  "chelsea": "chelsea.png",  # RGB 300x451 (the cat)
  "clock": "clock_motion.png",  # grey 300x400
  "coffee": "coffee.png",  # RGB 400x600
  "coins": "coins.png",  # grey 303x384
  "grass": "grass.png",  # texture, grey 512x512
  "gravel": "gravel.png",  # texture, grey 512x512
  "ihc": "ihc.png",  # RGB 512x512 (immunohistochemistry)
  "moon": "moon.png",  # grey 512x512
  "motorcycle": "motorcycle_left.png",  # RGB 500x741
  "page": "page.png",  # grey 191x384
  "text": "text.png",  # grey 172x448
}
# Disjoint photographs per split, each with a texture, RGB photos and grey photos (our
# choice: the train split gets the larger share, as a train split should).
TRAIN_PHOTOS = ("grass", "brick", "astronaut", "coffee", "motorcycle", "camera", "coins", "moon")
TEST_PHOTOS = ("gravel", "chelsea", "ihc", "cell", "clock", "page", "text")
_SPLIT_PHOTOS = {"train": TRAIN_PHOTOS, "test": TEST_PHOTOS}
_SPLIT_ID = {"train": 0, "test": 1}

# SHA-256 of each photograph's decoded RGB pixels (uint8 [H, W, 3], C order), our
# measurement with Pillow on scikit-image==0.26.0's files.
PHOTO_SHA256 = {
  "astronaut": "a8c429c18afa7b0fd5673e598d73a21225d94c864a71bbb3885126fdecb41071",
  "brick": "3501e216fb0968c378803347d3a13e3cc04021eaecc44b64c6528088c7ea0f64",
  "camera": "13e2b4aa92cb1649b4aac5a4d48b38a8ea3a18b86e8abdf5a4871abf24c9d038",
  "cell": "54f2cef870247578152537000a9198faacea769f88cc918a047624048ebaac8e",
  "chelsea": "416b729128bfb2c3d1eb69bf9b1734a796293abc17939267b2dc94f8a5784031",
  "clock": "bd64c6ee0d85e182d35d7ba6c24b03f47d1dc9e217008a809820bad85467a334",
  "coffee": "0ce2b51640b9c95f19617f03eabf40c3f0368589cc1ee1190b70966165ac184f",
  "coins": "aaecc2ad43bd43e204f7ad01dc60494586ff80d42236c2db358c59b9be1f5427",
  "grass": "c7ca5c984d6b5a2787506e70a42bcac22b164b00e8e1cf9e06cf76b8110c5734",
  "gravel": "e73bd88250cbfd7f96f232357ecad0d2302252483457337f5cf79d2c5b82227a",
  "ihc": "c5b3ef509a92f16d4c29be8cf0300fe75d53e13a3ce650159db932caea8dcc1b",
  "moon": "a641c47851a3252efa5514c25bb953056fae7de469736ede1363e861c70bfb10",
  "motorcycle": "ca829467c1d4f427da9c4862ba43829da6ac90afe1f75735e95dba9e3fd9620b",
  "page": "ec733fa2c40866580dddaeba150133b831d35bc25bef98e24b7b8ce2557ed37a",
  "text": "36c90cb1af9203254329824cd648ef884675e529f5b3fa0f8b583ccc751e7339",
}


def _photo_dir() -> pathlib.Path:
  try:
    import skimage  # noqa: PLC0415 (optional dependency: only the file location is needed)
  except ImportError as e:
    raise FileNotFoundError(
      "textured Fashion-MNIST needs the photographs bundled with scikit-image: "
      "pip install scikit-image==0.26.0"
    ) from e
  return pathlib.Path(os.path.dirname(skimage.__file__)) / "data"


@functools.cache
def load_photo(name: str) -> np.ndarray:
  """A bundled photograph as uint8 ``[H, W, 3]`` (grey ones copied to 3 channels), verified.

  Raises:
    ValueError: an unknown name, or decoded pixels that differ from `PHOTO_SHA256`.
    FileNotFoundError: scikit-image or the file is missing.
  """
  from PIL import Image  # noqa: PLC0415

  if name not in PHOTO_FILES:
    raise ValueError(f"Unknown photo {name!r}; valid: {sorted(PHOTO_FILES)}")
  path = _photo_dir() / PHOTO_FILES[name]
  if not path.is_file():
    raise FileNotFoundError(f"photo {name!r} not found at {path} (scikit-image==0.26.0 ships it)")
  with Image.open(path) as im:
    pixels = np.ascontiguousarray(np.asarray(im.convert("RGB"), np.uint8))  # [H, W, 3]
  digest = hashlib.sha256(pixels.tobytes()).hexdigest()
  want = PHOTO_SHA256[name]
  if digest != want:
    raise ValueError(
      f"photo {name!r} ({path}) decodes to SHA-256 {digest}, not {want}: another "
      "scikit-image release changed it, so the generated data would not be bit-exact"
    )
  pixels.setflags(write=False)
  return pixels


def _check_range(name: str, value: Sequence[float], lo: float, hi: float) -> tuple[float, float]:
  try:
    a, b = (float(v) for v in value)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{name}={value!r} must be a pair (low, high)") from e
  if not lo <= a <= b <= hi:
    raise ValueError(f"{name}={value!r} must satisfy {lo} <= low <= high <= {hi}")
  return a, b


def _bilinear_taps(coords: np.ndarray, size: np.ndarray | int) -> tuple[np.ndarray, ...]:
  """Lower/upper integer taps and the upper weight of float ``coords`` clamped to [0, size-1]."""
  c = np.clip(coords, np.float32(0), (np.asarray(size) - 1).astype(np.float32))
  i0 = np.floor(c).astype(np.int64)
  i1 = np.minimum(i0 + 1, np.asarray(size) - 1)
  return i0, i1, (c - i0.astype(np.float32)).astype(np.float32)


class TexturedFashionMNIST:
  """One split of textured Fashion-MNIST, composited on demand (random access).

  Args:
    images: uint8 Fashion-MNIST garments ``[N, 28, 28]`` (0 = background), e.g. from
      `ztprune_jax.data.fashion_mnist.load_fashion_mnist`.
    labels: int ``[N]`` in ``[0, 10)``.
    split: ``"train"`` or ``"test"``: picks the photographs and the random streams.
    seed: the data set's seed (any non-negative int).
    image_size: side ``S`` of the square output (96: a patch-8 ViT sees 144 patches).
    scale: range of the garment's side as a fraction of ``S``.
    zoom: range of the background crop's side as a multiple of ``S`` (photo pixels per
      output pixel; capped by the photograph's shorter side).

  Raises:
    ValueError: naming the bad argument.
  """

  def __init__(
    self,
    images: np.ndarray,
    labels: np.ndarray,
    split: str,
    *,
    seed: int = 0,
    image_size: int = 96,
    scale: Sequence[float] = (0.45, 0.9),
    zoom: Sequence[float] = (1.0, 2.0),
  ):
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
      raise ValueError(f"images must be uint8 [N, 28, 28], got {images.dtype} {images.shape}")
    if labels.shape != images.shape[:1] or not np.issubdtype(labels.dtype, np.integer):
      raise ValueError(f"labels must be int [N={len(images)}], got {labels.dtype} {labels.shape}")
    if len(images) and (labels.min() < 0 or labels.max() >= 10):
      raise ValueError("labels must be in [0, 10)")
    if split not in _SPLIT_PHOTOS:
      raise ValueError(f"split={split!r} must be one of {sorted(_SPLIT_PHOTOS)}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
      raise ValueError(f"seed={seed!r} must be a non-negative int")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
      raise ValueError(f"image_size={image_size!r} must be an int >= 8")
    self.scale = _check_range("scale", scale, 1.0 / image_size, 1.0)
    self.zoom = _check_range("zoom", zoom, 1.0, 8.0)
    self.images, self.labels = images, labels.astype(np.int32)
    self.split, self.seed, self.image_size = split, int(seed), image_size
    self.photos = _SPLIT_PHOTOS[split]
    pics = [load_photo(p) for p in self.photos]
    hmax, wmax = max(p.shape[0] for p in pics), max(p.shape[1] for p in pics)
    bank = np.zeros((len(pics), hmax, wmax, 3), np.uint8)  # [P, Hmax, Wmax, 3]
    for k, p in enumerate(pics):
      bank[k, : p.shape[0], : p.shape[1]] = p
    self._bank = bank
    self._sizes = np.array([p.shape[:2] for p in pics], np.int64)  # [P, 2] (H, W)

  def __len__(self) -> int:
    return len(self.labels)

  def _check_indices(self, indices) -> np.ndarray:
    idx = np.asarray(indices)
    if idx.ndim != 1 or not (idx.size == 0 or np.issubdtype(idx.dtype, np.integer)):
      raise ValueError(f"indices must be a 1-D int array, got {idx.dtype} {idx.shape}")
    if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
      raise ValueError(f"indices must be in [0, {len(self)}), got {idx.min()}..{idx.max()}")
    return idx.astype(np.int64)

  def params(self, indices, *, epoch: int = 0) -> dict[str, np.ndarray]:
    """The random draws of examples ``indices [B]`` (one generator per example).

    Returns:
      ``photo`` int ``[B]`` (index into `photos`), ``crop`` float32 ``[B]`` (side in photo
      pixels), ``top``/``left`` float32 ``[B]``, ``mirror`` bool ``[B]``, ``size`` int
      ``[B]`` (garment side), ``y``/``x`` int ``[B]`` (garment top-left), ``tint``
      float32 ``[B, 3]``.
    """
    idx = self._check_indices(indices)
    if isinstance(epoch, bool) or not isinstance(epoch, int | np.integer) or epoch < 0:
      raise ValueError(f"epoch={epoch!r} must be a non-negative int")
    s, n = self.image_size, len(idx)
    out = {
      "photo": np.zeros(n, np.int64),
      "crop": np.zeros(n, np.float32),
      "top": np.zeros(n, np.float32),
      "left": np.zeros(n, np.float32),
      "mirror": np.zeros(n, bool),
      "size": np.zeros(n, np.int64),
      "y": np.zeros(n, np.int64),
      "x": np.zeros(n, np.int64),
      "tint": np.zeros((n, 3), np.float32),
    }
    for j, i in enumerate(idx):  # a few scalar draws per example: cheap next to the pixels
      rng = np.random.default_rng([self.seed, _SPLIT_ID[self.split], int(epoch), int(i)])
      p = int(rng.integers(len(self.photos)))
      h, w = self._sizes[p]
      crop = min(s * rng.uniform(*self.zoom), float(min(h, w)))
      size = int(round(s * rng.uniform(*self.scale)))
      out["photo"][j] = p
      out["crop"][j] = crop
      out["top"][j] = rng.uniform(0.0, h - crop)
      out["left"][j] = rng.uniform(0.0, w - crop)
      out["mirror"][j] = rng.random() < 0.5
      out["size"][j] = size
      out["y"][j] = rng.integers(s - size + 1)
      out["x"][j] = rng.integers(s - size + 1)
      out["tint"][j] = rng.uniform(0.2, 1.0, 3)
    return out

  def _background(self, q: dict[str, np.ndarray]) -> np.ndarray:
    """float32 ``[B, S, S, 3]``: the bilinearly resampled crops (0..255)."""
    s = self.image_size
    grid = (np.arange(s, dtype=np.float32) + np.float32(0.5)) / np.float32(s)  # [S]
    step = q["crop"][:, None]  # [B, 1]
    ys = q["top"][:, None] + grid[None] * step - np.float32(0.5)  # [B, S]
    xs = q["left"][:, None] + grid[None] * step - np.float32(0.5)  # [B, S]
    xs = np.where(q["mirror"][:, None], xs[:, ::-1], xs)
    hs, ws = self._sizes[q["photo"], 0][:, None], self._sizes[q["photo"], 1][:, None]
    y0, y1, wy = _bilinear_taps(ys, hs)  # [B, S]
    x0, x1, wx = _bilinear_taps(xs, ws)
    _, hmax, wmax, _ = self._bank.shape
    rows0 = (q["photo"][:, None] * hmax + y0) * wmax  # [B, S] flat row offsets
    rows1 = (q["photo"][:, None] * hmax + y1) * wmax
    flat = self._bank.reshape(-1, 3)  # [P * Hmax * Wmax, 3]

    def tap(yi, xi):  # [B, S, S, 3]
      return np.take(flat, yi[:, :, None] + xi[:, None, :], axis=0).astype(np.float32)

    wy, wx = wy[:, :, None, None], wx[:, None, :, None]
    top = tap(rows0, x0) * (1 - wx) + tap(rows0, x1) * wx
    bottom = tap(rows1, x0) * (1 - wx) + tap(rows1, x1) * wx
    return top * (1 - wy) + bottom * wy

  def _garment(self, idx: np.ndarray, q: dict[str, np.ndarray]) -> np.ndarray:
    """float32 ``[B, S, S]`` in [0, 1]: each garment resized and placed on the canvas."""
    s = self.image_size
    g = np.zeros((len(idx), 30, 30), np.float32)  # a zero border outside the garment
    g[:, 1:29, 1:29] = self.images[idx].astype(np.float32) / np.float32(255)
    pix = np.arange(s, dtype=np.float32) + np.float32(0.5)  # [S]
    ratio = np.float32(28) / q["size"].astype(np.float32)[:, None]  # [B, 1]
    # Canvas pixel -> garment coordinate (+1 for the border); outside the box -> border.
    ys = (pix[None] - q["y"][:, None].astype(np.float32)) * ratio + np.float32(0.5)  # [B, S]
    xs = (pix[None] - q["x"][:, None].astype(np.float32)) * ratio + np.float32(0.5)
    y0, y1, wy = _bilinear_taps(ys, 30)
    x0, x1, wx = _bilinear_taps(xs, 30)
    b = np.arange(len(idx))[:, None, None]

    def tap(yi, xi):  # [B, S, S]
      return g[b, yi[:, :, None], xi[:, None, :]]

    wy, wx = wy[:, :, None], wx[:, None, :]
    top = tap(y0, x0) * (1 - wx) + tap(y0, x1) * wx
    bottom = tap(y1, x0) * (1 - wx) + tap(y1, x1) * wx
    return top * (1 - wy) + bottom * wy

  def parts(self, indices, *, epoch: int = 0) -> dict[str, np.ndarray]:
    """The composites and their ingredients for ``indices [B]``.

    Returns:
      ``images`` uint8 ``[B, S, S, 3]``, ``labels`` int32 ``[B]``, ``background`` uint8
      ``[B, S, S, 3]`` (the crop alone, rounded the same way) and ``alpha`` float32
      ``[B, S, S]`` (the garment's opacity; 0 where the background is untouched).
    """
    idx = self._check_indices(indices)
    q = self.params(idx, epoch=epoch)
    bg = self._background(q)  # [B, S, S, 3]
    v = self._garment(idx, q)  # [B, S, S]
    a = np.minimum(np.float32(1), np.float32(2) * v)[..., None]  # [B, S, S, 1]
    fg = np.float32(255) * q["tint"][:, None, None, :] * v[..., None]  # [B, S, S, 3]
    out = bg * (1 - a) + fg * a
    return {
      "images": np.clip(np.rint(out), 0, 255).astype(np.uint8),
      "labels": self.labels[idx],
      "background": np.clip(np.rint(bg), 0, 255).astype(np.uint8),
      "alpha": a[..., 0],
    }

  def get(self, indices, *, epoch: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images ``[B, S, S, 3]`` and int32 labels ``[B]`` of examples ``indices [B]``."""
    p = self.parts(indices, epoch=epoch)
    return p["images"], p["labels"]


def generate(
  images: np.ndarray,
  labels: np.ndarray,
  split: str,
  *,
  seed: int = 0,
  image_size: int = 96,
  epoch: int = 0,
  batch_size: int = 256,
  progress: bool | None = None,
  **kwargs,
) -> tuple[np.ndarray, np.ndarray]:
  """All of a split at once: uint8 ``[N, S, S, 3]`` images and int32 ``[N]`` labels.

  Args:
    images, labels, split, seed, image_size: as `TexturedFashionMNIST` (``kwargs`` too).
    epoch: which composites (0 for a fixed data set).
    batch_size: examples composited per vectorised call (memory ~ 200 kB per example).
    progress: a tqdm bar; None shows it for N >= 2000.
  """
  if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
    raise ValueError(f"batch_size={batch_size!r} must be an int >= 1")
  data = TexturedFashionMNIST(images, labels, split, seed=seed, image_size=image_size, **kwargs)
  n = len(data)
  out = np.zeros((n, image_size, image_size, 3), np.uint8)
  show = n >= 2000 if progress is None else progress
  for start in tqdm(range(0, n, batch_size), desc=f"textured {split}", disable=not show):
    idx = np.arange(start, min(n, start + batch_size))
    out[idx] = data.get(idx, epoch=epoch)[0]
  return out, data.labels.copy()
