"""python -m tools.presets NAME: print the preset's settings as CDK CLI arguments (-c key=value ...).

Exits 2 with one line when the preset does not exist. Its values are checked
where every setting is: when the app synthesizes with them.
"""

import shlex
import sys

from tools.presets import context_args, load


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tools.presets NAME", file=sys.stderr)
        return 2
    try:
        settings = load(argv[0])
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(shlex.join(context_args(settings)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
