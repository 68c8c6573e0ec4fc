"""CLI: python -m tools.cost [ASSEMBLY_DIR] [--prices FILE] -- prints the estimate of a synthesized app.

`make cost` synthesizes the app first (with the same -c overrides and PRESET
as `make deploy`) and points this at the result.
"""

import argparse
import sys
from pathlib import Path

from tools.cost.estimate import PRICES_FILE, Prices, estimate, load_assembly, render


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.cost", description=__doc__.splitlines()[0])
    parser.add_argument("assembly", nargs="?", default="cdk.out", type=Path, help="cdk synth output (default cdk.out)")
    parser.add_argument("--prices", default=PRICES_FILE, type=Path, help="price table (default tools/cost/prices.json)")
    args = parser.parse_args(argv)
    try:
        templates = load_assembly(args.assembly)
    except (OSError, ValueError) as error:
        print(f"error: cannot read a synthesized app in {args.assembly}: {error}", file=sys.stderr)
        return 2
    prices = Prices.load(args.prices)
    print(render(estimate(templates, prices), prices, list(templates)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
