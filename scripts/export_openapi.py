"""Write the activation server's OpenAPI document (the viewer's API contract) to
neuron_viewer/openapi.json, deterministically (sorted keys), without starting a server.

    python scripts/export_openapi.py            # write it
    python scripts/export_openapi.py --check    # exit 1 if the checked-in file is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "neuron_viewer" / "openapi.json"


def openapi_document() -> dict:
    from mechscope.activation_server.http.app import create_app
    from mechscope.activation_server.http.config import ServerConfig
    from mechscope.activation_server.http.state import ServerState
    return create_app(ServerState(), ServerConfig(viewer_dir=None)).openapi()


def render(document: dict) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    text = render(openapi_document())
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: run python scripts/export_openapi.py", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
