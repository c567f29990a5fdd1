"""``python -m services.tools.deploy.envfile FILE… -- COMMAND…``: run COMMAND with the ``KEY=VALUE``
lines of each FILE added to its environment.

Docker Compose reads ``environment`` when it creates a container, before the one-shot ``keys`` job has
drawn the credentials; this launcher reads them from the secrets volume when the process starts, so
that no password is ever written in the Compose file.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path


def read_env_file(path: Path) -> dict[str, str]:
    """The ``KEY=VALUE`` lines of ``path`` (blank lines and ``#`` comments skipped)."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, separator, value = line.partition("=")
        if not separator or not key.strip():
            raise ValueError(f"{path}:{number}: not a KEY=VALUE line")
        values[key.strip()] = value
    return values


def main(argv: Sequence[str]) -> int:
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        print("usage: python -m services.tools.deploy.envfile FILE… -- COMMAND…", file=sys.stderr)
        return 2
    split = list(argv).index("--")
    env = dict(os.environ)
    for name in argv[:split]:
        try:
            env |= read_env_file(Path(name))
        except (OSError, ValueError) as error:
            print(f"cannot read the credentials in {name}: {error}", file=sys.stderr)
            return 1
    command = list(argv[split + 1 :])
    os.execvpe(command[0], command, env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
