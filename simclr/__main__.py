"""`python -m simclr` is the `simclr` command."""

import sys


def run() -> int:
    """The `simclr` command (its console script too): :func:`simclr.cli.main`, imported
    here so that a Ctrl-C during its imports (the first tenth of a second) ends in one
    line and status 130, as one a moment later does, not in a traceback."""
    try:
        from simclr.cli import main
    except KeyboardInterrupt:
        words = sys.argv[1:2]
        command = f"simclr {words[0]}" if words and not words[0].startswith("-") else "simclr"
        print(f"{command}: interrupted", file=sys.stderr)
        return 130
    return main()


if __name__ == "__main__":
    sys.exit(run())
