"""Every config builds (default and `runlocal`), is locked, and rejects bad args."""

import importlib
import pathlib

import pytest

from configs.common import parse_arg

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[1] / "configs"
NAMES = sorted(p.stem for p in CONFIG_DIR.glob("*.py") if p.stem not in ("__init__", "common"))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("arg", ["", "runlocal"])
def test_config_builds_and_is_locked(name, arg):
  c = importlib.import_module(f"configs.{name}").get_config(arg)
  assert c.is_locked
  with pytest.raises(AttributeError):
    c.no_such_field_typo = 1


def test_parse_arg():
  a = parse_arg("variant=S/16,runlocal,n=3", variant="B/16", runlocal=False, n=1)
  assert (a.variant, a.runlocal, a.n) == ("S/16", True, 3)
  with pytest.raises(ValueError, match="valid"):
    parse_arg("bogus", runlocal=False)
  with pytest.raises(ValueError, match="expected int"):
    parse_arg("n=x", n=1)
  with pytest.raises(ValueError, match="needs a value"):
    parse_arg("n", n=1)
