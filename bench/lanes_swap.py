"""`router` with ``consumers.deliver.lanes`` loaded from another file, for A/B runs of a worker:

    python -m bench.lanes_swap LANES_PY deliver --integrations ... --group ...

e.g. ``git show <rev>:consumers/deliver/lanes.py > /tmp/lanes_before.py`` and
``python -m bench.deliver_bench --lanes-from /tmp/lanes_before.py``. A lanes module older than
the index lacks ``start``, ``retry`` and ``release``: they are added as the plain field changes
they replaced, so today's worker runs on it unchanged.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

NAME = "consumers.deliver.lanes"


def load(path: str) -> Any:
    """Import ``path`` as consumers.deliver.lanes, before anything imports the real one."""
    spec = importlib.util.spec_from_file_location(NAME, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[NAME] = module
    spec.loader.exec_module(module)
    lanes = module.Lanes
    if not hasattr(lanes, "start"):
        lanes.start = lambda self, item: setattr(item, "in_flight", True)
    if not hasattr(lanes, "release"):
        lanes.release = lambda self, item: setattr(item, "in_flight", False)
    if not hasattr(lanes, "retry"):
        def retry(self: Any, item: Any, not_before: float) -> None:
            item.not_before, item.in_flight = not_before, False

        lanes.retry = retry
    return module


def main() -> int:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    load(sys.argv[1])
    from router.cli import main as router_main

    return router_main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
