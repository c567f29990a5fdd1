"""``python -m services.tools.deploy write|check``: write the generated deployment files, or list
those that differ from what the generator gives (exit status 1 when some do)."""

from __future__ import annotations

import sys

from services.tools.deploy.generated import ROOT, stale_files, write_files


def main(argv: list[str]) -> int:
    if argv == ["write"]:
        for path in write_files(ROOT):
            print(f"wrote {path}")
        return 0
    if argv == ["check"]:
        stale = stale_files(ROOT)
        for problem in stale:
            print(problem)
        return 1 if stale else 0
    print("usage: python -m services.tools.deploy write|check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
