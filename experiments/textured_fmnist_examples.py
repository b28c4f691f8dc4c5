"""A PNG of 16 textured Fashion-MNIST examples: 8 of the train split, 8 of the test split.

`python -m experiments.textured_fmnist_examples --workdir=results/textured_fmnist` writes
`<workdir>/examples.png` and `<workdir>/command.txt`. Train garments come from the
Fashion-MNIST train split when it is installed (`load_fashion_mnist`); otherwise from test
images 5000..5007 (what the training tests use), and the figure's title says so. Each
panel is titled with its class and photograph.
"""

import os
import sys

import numpy as np
from absl import flags

from experiments import cli
from ztprune_jax.data import FASHION_MNIST_CLASSES, load_fashion_mnist
from ztprune_jax.data.textured_fmnist import TexturedFashionMNIST

_WORKDIR = flags.DEFINE_string("workdir", None, "Where examples.png and command.txt go.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with Fashion-MNIST IDX files.")
_SEED = flags.DEFINE_integer("seed", 0, "The data set's seed.")


def examples(data_dir=None, seed=0, num=8):
  """``num`` composites of each split, with titles and a note on the train garments.

  Returns:
    ``(images uint8 [2 num, S, S, 3], titles [2 num], note)``.
  """
  test_x, test_y = load_fashion_mnist("test", data_dir)
  try:
    train_x, train_y = load_fashion_mnist("train", data_dir)
    note = "train garments: Fashion-MNIST train split"
  except FileNotFoundError:
    train_x, train_y = test_x[5000 : 5000 + num], test_y[5000 : 5000 + num]
    note = "train split not installed: train photographs with test garments 5000..5007"
  images, titles = [], []
  for split, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
    data = TexturedFashionMNIST(x[:num], y[:num], split, seed=seed)
    idx = np.arange(num)
    images.append(data.get(idx)[0])
    photos = data.params(idx)["photo"]
    titles += [
      f"{split}: {FASHION_MNIST_CLASSES[data.labels[i]]}\n{data.photos[photos[i]]}" for i in idx
    ]
  return np.concatenate(images), titles, note


def main(argv):
  del argv
  if not _WORKDIR.value:
    raise ValueError("--workdir is required")
  import matplotlib  # noqa: PLC0415

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  images, titles, note = examples(_DATA_DIR.value, _SEED.value)
  os.makedirs(_WORKDIR.value, exist_ok=True)
  fig, axes = plt.subplots(4, 4, figsize=(8, 9.2))
  for ax, im, title in zip(axes.flat, images, titles, strict=True):
    ax.imshow(im, interpolation="nearest")
    ax.set_title(title, fontsize=7)
    ax.axis("off")
  fig.suptitle(f"textured Fashion-MNIST, seed {_SEED.value} (rows 1-2 train, 3-4 test)\n{note}",
               fontsize=9)  # fmt: skip
  fig.tight_layout()
  path = os.path.join(_WORKDIR.value, "examples.png")
  fig.savefig(path, dpi=100)
  plt.close(fig)
  with open(os.path.join(_WORKDIR.value, "command.txt"), "w") as f:
    f.write("python -m experiments.textured_fmnist_examples " + " ".join(sys.argv[1:]) + "\n")
  print(f"wrote {path} ({note})")


if __name__ == "__main__":
  cli.run(main)
