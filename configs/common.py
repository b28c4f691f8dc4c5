"""The one shared helper for config arguments (`--config=configs/x.py:arg`)."""

from __future__ import annotations

import ml_collections


def parse_arg(
  arg: str | None, *, positional: str | None = None, **defaults
) -> ml_collections.ConfigDict:
  """Parses `"variant=S/16,runlocal"` into a ConfigDict over `defaults`.

  Bare words are booleans set to True; `key=value` pairs are cast to the type of
  the default. With ``positional="preset"``, a bare word that is not a boolean key
  sets ``preset`` (so `x.py:deit_s_a,runlocal` works). Unknown keys raise a
  `ValueError` listing the valid ones.

  Args:
    arg: the string after the colon in `--config=path.py:arg`, or None/"".
    positional: the key a bare non-boolean word is assigned to.
    **defaults: every accepted key with its default value (sets the type).

  Returns:
    A locked ConfigDict with one field per key of `defaults`.
  """
  out = ml_collections.ConfigDict(defaults)
  for part in filter(None, (arg or "").split(",")):
    key, sep, value = part.partition("=")
    key = key.strip()
    if not sep and positional and not isinstance(defaults.get(key), bool):
      key, sep, value = positional, "=", key
    if key not in defaults:
      raise ValueError(f"Unknown config arg {key!r}; valid: {sorted(defaults)}")
    default = defaults[key]
    if not sep:
      if not isinstance(default, bool):
        raise ValueError(f"Config arg {key!r} needs a value ({key}=...)")
      out[key] = True
    elif isinstance(default, bool):
      if value.lower() not in ("true", "false", "1", "0"):
        raise ValueError(f"Config arg {key}={value!r} is not a boolean")
      out[key] = value.lower() in ("true", "1")
    elif default is None:
      out[key] = value
    else:
      try:
        out[key] = type(default)(value)
      except ValueError as e:
        raise ValueError(f"Config arg {key}={value!r}: expected {type(default).__name__}") from e
  out.lock()
  return out
