"""The kept-token metrics on hand-made sets (answers counted by hand), and the
`experiments.kept_token_analysis` runlocal smoke test."""

import json
import pathlib

import numpy as np
import pytest
from entry_points_run import run_ok

from ztprune_jax.eval import kept_tokens as kt

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _grid(*cells, g=3):
  m = np.zeros((1, g, g), bool)
  for r, c in cells:
    m[0, r, c] = True
  return m


# A plus on a 3x3 grid: the centre and its four neighbours (5 object patches).
PLUS = _grid((0, 1), (1, 0), (1, 1), (1, 2), (2, 1))


def test_object_mask_any_nonzero_pixel():
  raw = np.zeros((1, 8, 8), np.uint8)
  raw[0, 5, 1] = 1  # row 5 -> patch row 1, column 1 -> patch column 0
  np.testing.assert_array_equal(kt.object_mask(raw, 4), [[[False, False], [True, False]]])


def test_kept_grid_from_positions():
  # P = 1: position 1 is patch (0, 0), position 5 is patch (1, 1); the CLS (0) is dropped.
  np.testing.assert_array_equal(kt.kept_grid(np.array([[0, 1, 5]]), 3), _grid((0, 0), (1, 1)))


def test_coverage_and_neighbour_coverage_hand_counts():
  corner = _grid((0, 0))
  # kept centre: 1 of 5 plus patches kept; every plus patch is the centre or touches it
  np.testing.assert_allclose(kt.coverage(_grid((1, 1)), PLUS), [1 / 5])
  np.testing.assert_allclose(kt.neighbour_coverage(_grid((1, 1)), PLUS), [1.0])
  # kept corner (not on the plus): none kept; (0, 1) and (1, 0) touch it -> 2 of 5
  np.testing.assert_allclose(kt.coverage(corner, PLUS), [0.0])
  np.testing.assert_allclose(kt.neighbour_coverage(corner, PLUS), [2 / 5])
  # share of kept patches on the object: corner 0 of 1; {corner, centre} 1 of 2
  np.testing.assert_allclose(kt.object_share(corner | _grid((1, 1)), PLUS), [0.5])
  assert np.isnan(kt.coverage(corner, np.zeros_like(PLUS)))[0]  # no object: undefined


def test_distance_to_kept_hand_count():
  # from the corner (0,0): (0,1) 1, (1,0) 1, (1,1) √2, (1,2) √5, (2,1) √5
  want = (1 + 1 + np.sqrt(2) + 2 * np.sqrt(5)) / 5
  np.testing.assert_allclose(kt.distance_to_kept(_grid((0, 0)), PLUS), [want], rtol=1e-12)
  np.testing.assert_allclose(kt.distance_to_kept(PLUS, PLUS), [0.0])


def test_boundary_and_centroid_hand_counts():
  # the plus's centre has all four neighbours on the plus: the only interior patch
  np.testing.assert_array_equal(kt.boundary_mask(PLUS), PLUS & ~_grid((1, 1)))
  full = np.ones((1, 3, 3), bool)  # grid edge counts as outline: only the centre inside
  np.testing.assert_array_equal(kt.boundary_mask(full), ~_grid((1, 1)))
  np.testing.assert_allclose(kt.boundary_share(_grid((1, 1), (0, 1)), PLUS), [0.5])
  np.testing.assert_allclose(kt.centroid_offset(_grid((0, 0)), PLUS), [np.sqrt(2)])


def test_top_rows_starts_at_the_first_occupied_row():
  np.testing.assert_array_equal(kt.top_rows(PLUS, 2), PLUS & ~_grid((2, 1)))
  low = _grid((1, 1), (2, 0), (2, 2))  # object starts in row 1: rows 1-2 are its top
  np.testing.assert_array_equal(kt.top_rows(low, 1), _grid((1, 1)))
  np.testing.assert_array_equal(kt.top_rows(low, 2), low)
  # coverage of the top: centre kept -> 3 of the plus's 4 top patches are not kept
  np.testing.assert_allclose(kt.coverage(_grid((1, 1)), kt.top_rows(PLUS, 2)), [1 / 4])
  assert not kt.top_rows(np.zeros_like(PLUS), 2).any()


def test_redundancy_and_block_indices():
  f = np.array([[[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]]])  # cos maxima 1, 1, 0
  np.testing.assert_allclose(kt.redundancy(f), [2 / 3], rtol=1e-12)
  assert np.isnan(kt.redundancy(f[:, :1]))[0]
  np.testing.assert_array_equal(kt.block_indices(np.array([[0, 2, 5, 7]]), np.array([[5, 7]])),
                                [[2, 3]])  # fmt: skip
  with pytest.raises(ValueError, match="did not process"):
    kt.block_indices(np.array([[0, 2]]), np.array([[3]]))


def test_fit_logistic_matches_the_two_by_two_odds_ratio():
  # One binary predictor: the fitted slope is the table's log odds ratio, its Wald SE
  # sqrt(1/a + 1/b + 1/c + 1/d) (closed form, independent of the Newton fit).
  a, b, c, d = 30, 10, 15, 25  # g=1: 30 right, 10 wrong; g=0: 15 right, 25 wrong
  g = np.r_[np.ones(a + b), np.zeros(c + d)]
  y = np.r_[np.ones(a), np.zeros(b), np.ones(c), np.zeros(d)]
  fit = kt.fit_logistic(np.stack([np.ones_like(g), g], axis=1), y)
  assert fit["converged"]
  np.testing.assert_allclose(fit["coef"][1], np.log(a * d / (b * c)), rtol=1e-9)
  np.testing.assert_allclose(fit["se"][1], np.sqrt(1 / a + 1 / b + 1 / c + 1 / d), rtol=1e-6)


def test_kept_token_analysis_runlocal(tmp_path):
  config = "--config=configs/kept_token_analysis.py:runlocal"
  out = run_ok("experiments.kept_token_analysis", config, f"--workdir={tmp_path}")
  assert out.strip().splitlines()[-1] == "kept_token_analysis_ok=1"
  res = json.loads((tmp_path / "analysis.json").read_text())
  for m, r in res["methods"].items():
    assert r["own_agrees"] == 1.0, m  # our argmax = evaluate's per-image hits
    # every method keeps the same number K of distinct patches per image, so the kept
    # frequencies summed over the grid count K exactly
    k = np.sum(res["kept_frequency_last"][m])
    np.testing.assert_allclose(k, np.round(k), atol=1e-3)
  ks = {m: np.sum(res["kept_frequency_last"][m]) for m in res["methods"]}
  assert len({round(v, 3) for v in ks.values()}) == 1, ks
  assert set(res["paired"]) == {"wpr:random", "topk_cls_attn:random", "wpr_eir_vhf:random",
                                "zero_tprune:wpr", "zero_tprune:random"}  # fmt: skip
  for name in ("kept_frequency.png", "kept_frequency_layers.png"):
    assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert "## Paired" in (tmp_path / "analysis.md").read_text()
