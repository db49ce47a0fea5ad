"""The compile cache from the command line: `python -m tinyjit.cache --info` shows where it is, how big, and how
many entries of each kind it holds; `--clear` deletes them. (The cache itself: runtime/cache.py.)"""
from __future__ import annotations

import argparse
import sys

from runtime.cache import cache_info, clear_cache


def _size(nbytes: int) -> str:
    return f"{nbytes / (1 << 20):.1f} MiB"


def format_info() -> str:
    """A few lines: the directory, entries and bytes in total and by kind, and the size cap."""
    info = cache_info()
    lines = [f"compile cache: {info.root}",
             f"  {info.entries} entries, {_size(info.bytes)} (cap {_size(info.max_bytes)}, TINYJIT_CACHE_MAX_MB)"]
    lines += [f"  {kind:<8} {count:>6} entries  {_size(nbytes):>10}" for kind, (count, nbytes) in info.by_kind.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinyjit.cache", description=__doc__.split("\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--info", action="store_true", help="show the cache's directory, size and entries")
    action.add_argument("--clear", action="store_true", help="delete every cache entry")
    args = parser.parse_args(argv)
    try:
        if args.clear:
            info = cache_info()
            deleted = clear_cache(info.root)
            print(f"compile cache: {info.root}: deleted {deleted} files ({_size(info.bytes)})")
        else:
            print(format_info())
    except ValueError as e:   # a bad TINYJIT_CACHE_MAX_MB
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
