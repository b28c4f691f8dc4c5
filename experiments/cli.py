"""`run(main)`: `absl.app.run` whose flag parsing reports a bad config override cleanly.

ml_collections refuses an unknown ``--config.<field>`` with an ``AttributeError`` whose
text is a quoted ``KeyError`` message (newline escaped), raised from deep inside flag
parsing: users saw a traceback. `parse_flags` turns that into one usage line that names
the field and the close match, and exits with status 1 like absl's own flag errors.
"""

import sys

from absl import app, flags


def _clean(err: BaseException) -> str:
  msg = str(err)
  while len(msg) > 1 and msg[0] == msg[-1] and msg[0] in "'\"":
    msg = msg[1:-1]
  return msg.replace("\\n", " ").replace("\\'", "'").replace("\n", " ")


def parse_flags(argv: list[str]) -> list[str]:
  """Parses ``argv`` into absl's FLAGS; a bad ``--config.*`` override exits with a message."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:  # absl's own message, as app.run would print it
    sys.stderr.write(f"FATAL Flags parsing error: {e}\n")
    sys.stderr.write("Pass --helpshort or --helpfull to see help on flags.\n")
    sys.exit(1)
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    overrides = [a for a in argv[1:] if a.startswith("--config.")]
    sys.stderr.write(
      f"FATAL config override error in {' '.join(overrides) or 'the --config flag'}: {_clean(e)}\n"
    )
    sys.exit(1)


def run(main) -> None:
  """``app.run(main)`` with `parse_flags`."""
  app.run(main, flags_parser=parse_flags)
