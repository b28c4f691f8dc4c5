"""`run(main)`: `absl.app.run` that reports a user's mistake as one line, not a traceback.

Every entry point calls `run(main)`. Three kinds of mistakes end the run with one
``FATAL ...`` line on stderr and exit status 1:

* a bad ``--config`` override (misspelt field, a value of the wrong type, an error in the
  config file's ``get_config``): the line names the one override at fault and what is
  valid (ml_collections raises these from deep inside flag parsing);
* ``--config.<field>=None`` on a field that is not optional (optional fields are
  ``placeholder`` s and are cleared by it, e.g. ``--config.data.num_examples=None``;
  ml_collections itself would try ``int("None")``);
* a `ValueError` or `FileNotFoundError` raised by this project's own code while ``main``
  runs (an unknown method, an unreachable budget, a missing checkpoint or image folder):
  its message already names the field or file and what is valid.

``--verbose`` prints the full traceback instead. Errors raised elsewhere (inside jax,
numpy, a library) and every other exception type are internal errors and keep their
traceback.
"""

import difflib
import os
import re
import sys

from absl import app, flags
from ml_collections import config_dict
from ml_collections.config_flags import config_flags as _cf

_VERBOSE = flags.DEFINE_bool(
  "verbose", False, "On a user error, print the full traceback instead of one line."
)
_HINT = " (--verbose: full traceback)"
# Where a user error must be raised from to be reported as one line: this repository's
# packages (not site-packages).
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_OWN = tuple(os.path.join(_ROOT, p) + os.sep for p in ("ztprune_jax", "eml_jax", "experiments",
                                                       "configs"))  # fmt: skip
_CLEAR = re.compile(r"--([A-Za-z_]\w*)\.([\w.]+)=None")  # exactly None: "none" is a method name


def _verbose(argv) -> bool:
  """``--verbose`` from the raw argv (flag parsing may be what failed)."""
  return any(a in ("--verbose", "--verbose=true", "--verbose=True") for a in argv[1:])


def _fatal(msg: str, argv) -> None:
  line = " ".join(msg.split())  # one line, whatever the message's newlines
  sys.stderr.write(f"FATAL {line}{'' if _verbose(argv) else _HINT}\n")
  sys.exit(1)


def _clean(err: BaseException) -> str:
  msg = str(err)
  while len(msg) > 1 and msg[0] == msg[-1] and msg[0] in "'\"":
    msg = msg[1:-1]
  return msg.replace("\\n", " ").replace("\\'", "'").replace("\n", " ")


def _config_flags() -> list[str]:
  return [n for n in flags.FLAGS if _cf.is_config_flag(flags.FLAGS[n])] or ["config"]


def _split_clears(argv: list[str]) -> tuple[list[str], list[tuple[str, str, str]]]:
  """Takes ``--<config>.<path>=None`` out of ``argv``: ``(argv, [(flag, path, arg)])``."""
  names = set(_config_flags())
  keep, clears = [], []
  for a in argv:
    m = _CLEAR.fullmatch(a)
    if m and m[1] in names:
      clears.append((m[1], m[2], a))
    else:
      keep.append(a)
  return keep, clears


def _apply_clear(flag: str, path: str, arg: str) -> str | None:
  """Sets an optional (placeholder) field to None; returns an error message otherwise."""
  node = flags.FLAGS[flag].value
  keys = path.split(".")
  for i, key in enumerate(keys):
    fields = list(node.keys()) if isinstance(node, config_dict.ConfigDict) else []
    if key not in fields:
      where = ".".join([flag, *keys[:i]])
      close = difflib.get_close_matches(key, fields, n=1)
      hint = f' Did you mean "{close[0]}"?' if close else ""
      return f"config override error in {arg}: {where} has no field {key!r}.{hint}"
    if i < len(keys) - 1:
      node = node[key]
  leaf = keys[-1]
  ref = node._fields[leaf]  # noqa: SLF001 (the only way to see whether a field is a placeholder)
  if not isinstance(ref, config_dict.FieldReference):
    kind = type(ref).__name__
    return (
      f"config override error in {arg}: {flag}.{path} is not optional and cannot be None; "
      f"valid: a value of type {kind} (now {ref!r})"
    )
  node[leaf] = None
  return None


def _bad_override(msg: str, argv) -> tuple[str, str]:
  """``(the --config.* override a KeyError/AttributeError is about, the message)``."""
  overrides = [a for a in argv[1:] if re.match(r"--\w+\.", a)]
  m = re.match(r"'?(\w+)'?(.*)", msg)
  if m:
    key = m[1]
    if not m[2].strip():  # ml_collections gives just the key for an unknown parent field
      msg = f"no field {key!r} in the config"
    hits = [a for a in overrides if key in re.split(r"[.=]", a.partition("=")[0])]
    if hits:
      return hits[0], msg
  return " ".join(overrides) or "the --config flag", msg


def parse_flags(argv: list[str]) -> list[str]:
  """Parses ``argv`` into absl's FLAGS; a bad ``--config`` or override exits with one line."""
  given = list(argv)
  argv, clears = _split_clears(given)
  try:
    rest = flags.FLAGS(argv)
  except flags.Error as e:  # absl's own message, or a config file that failed to load
    msg = str(e)
    if "Traceback (most recent call last)" in msg and not _verbose(argv):
      head = msg.split("\n", 1)[0].rstrip(":")
      last = [ln for ln in msg.splitlines() if ln.strip()][-1]
      msg = f"{head.replace(' Error whilst parsing config file', '')} {last}"
    if _verbose(argv):
      sys.stderr.write(f"FATAL Flags parsing error: {e}\n")
      sys.exit(1)
    _fatal(f"Flags parsing error: {msg}", argv)
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    if _verbose(argv):
      raise
    where, msg = _bad_override(_clean(e), given)
    _fatal(f"config override error in {where}: {msg}", argv)
  for flag, path, arg in clears:
    err = _apply_clear(flag, path, arg)
    if err:
      _fatal(err, argv)
  return rest


def _raised_here(err: BaseException) -> bool:
  """True when the innermost frame of ``err``'s traceback is in this repository's code."""
  tb = err.__traceback__
  if tb is None:
    return False
  while tb.tb_next is not None:
    tb = tb.tb_next
  return os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(_OWN)


def is_user_error(err: BaseException) -> bool:
  """A mistake in the user's input: reported as one line by `run`.

  `FileNotFoundError` (a path the user gave) from anywhere; `ValueError` raised by this
  project's own validation (not from inside a library, where it is a bug to debug).
  """
  if isinstance(err, FileNotFoundError | NotADirectoryError):
    return True
  return isinstance(err, ValueError) and _raised_here(err)


def guarded(main):
  """``main`` that turns a user error (`is_user_error`) into one FATAL line, exit 1."""

  def wrapped(argv):
    try:
      return main(argv)
    except (ValueError, OSError) as e:
      if _VERBOSE.value or not is_user_error(e):
        raise
      _fatal(f"{type(e).__name__}: {e}", sys.argv)

  return wrapped


def run(main) -> None:
  """``app.run(main)`` with `parse_flags` and `guarded`."""
  app.run(guarded(main), flags_parser=parse_flags)
