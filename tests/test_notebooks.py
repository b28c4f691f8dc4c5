"""The Colab notebooks: committed without outputs, and (slow) executed top to bottom on CPU."""

import json
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = ("zero_tprune_tour.ipynb", "eml_tour.ipynb")
CELL_TIMEOUT_S = 1800  # per cell; a whole notebook takes minutes on 2 idle CPU cores


def _load(name):
  return json.loads((ROOT / "notebooks" / name).read_text())


def _text(outputs):
  """Everything a cell printed or returned as text."""
  parts = []
  for out in outputs:
    if out.get("output_type") == "stream":
      parts.append("".join(out["text"]) if isinstance(out["text"], list) else out["text"])
    elif "data" in out and "text/plain" in out["data"]:
      parts.append(str(out["data"]["text/plain"]))
  return "\n".join(parts)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_has_no_outputs(name):
  nb = _load(name)
  assert nb["nbformat"] == 4
  code = [c for c in nb["cells"] if c["cell_type"] == "code"]
  assert code, f"{name} has no code cells"
  for cell in code:
    assert cell.get("outputs") == [], f"{name}: a cell has outputs (strip them before committing)"
    assert cell.get("execution_count") is None, f"{name}: a cell has an execution count"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_first_code_cell_installs_only_in_colab(name):
  code = [c for c in _load(name)["cells"] if c["cell_type"] == "code"]
  first = "".join(code[0]["source"])
  assert 'if "google.colab" in sys.modules:' in first
  # Every shell/magic line is inside the Colab branch (indented), so elsewhere it is a no-op.
  for line in first.splitlines():
    if line.lstrip().startswith(("!", "%")):
      assert line.startswith("  "), f"{name}: {line!r} runs outside the Colab branch"
  assert re.search(r"pip install", first)


def _execute(name):
  nbformat = pytest.importorskip("nbformat", reason="needs `pip install -e .[notebooks]`")
  nbclient = pytest.importorskip("nbclient", reason="needs `pip install -e .[notebooks]`")
  nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
  client = nbclient.NotebookClient(
    nb,
    timeout=CELL_TIMEOUT_S,
    kernel_name="python3",
    resources={"metadata": {"path": str(ROOT)}},  # the kernel starts in the repository root
  )
  client.execute()  # raises CellExecutionError naming the failing cell
  return nb


def _images(nb):
  return sum(
    "image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", [])
  )


@pytest.mark.slow
def test_zero_tprune_tour_runs_top_to_bottom():
  import ztprune_jax as zt

  nb = _execute("zero_tprune_tour.ipynb")
  text = "\n".join(_text(c.get("outputs", [])) for c in nb.cells if c.cell_type == "code")
  assert "unpruned top-1" in text
  for method in zt.PRUNERS:  # the table has a row per registered method and budget
    assert len(re.findall(rf"^{re.escape(method)} +0\.0\d+ ", text, flags=re.M)) == 2, method
  assert _images(nb) == 2  # accuracy-vs-GFLOPs plot and kept-patch overlays


@pytest.mark.slow
def test_eml_tour_runs_top_to_bottom():
  nb = _execute("eml_tour.ipynb")
  text = "\n".join(_text(c.get("outputs", [])) for c in nb.cells if c.cell_type == "code")
  for method in ("eml", "opml", "euclidean"):
    assert re.search(rf"^{method} +\d+\.\d\d% +\d+\.\d\d%", text, flags=re.M), method
  assert _images(nb) == 1  # the online-error curves
