"""The command-line arguments every spec-loading command takes (route, deliver, dev, spec)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_spec_dirs(parser: argparse.ArgumentParser) -> None:
    """The two folders every spec-loading command takes (DESIGN §3)."""
    parser.add_argument("--integrations", type=Path, default=Path("integrations"), metavar="DIR",
                        help="folder of integration specs (default: integrations/)")
    parser.add_argument("--schemas", type=Path, default=Path("schemas/avro"), metavar="DIR",
                        help="folder of Avro schemas (default: schemas/avro/)")
