"""python -m builder.builderimage lock|build: the builder image's lock and its reproducible build."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from builder.cache.cas import ContentStore, HashMismatch
from builder.defaults import SOURCE_DATE_EPOCH as DEFAULT_SOURCE_DATE_EPOCH
from builder.spec import default_cache_dir

REPO = Path(__file__).resolve().parents[2]
PACKAGES = REPO / "containerfiles" / "builder-packages.txt"
LOCK = REPO / "containerfiles" / "builder.lock.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m builder.builderimage")
    parser.add_argument("action", choices=["lock", "build"])
    parser.add_argument("--lock", type=Path, default=LOCK)
    parser.add_argument("--tag", default="trove-builder:latest", help="build: the tag of the loaded image")
    parser.add_argument("--archive", type=Path, help="build: also keep the docker archive here")
    parser.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("TROVE_BUILDER_CACHE")
                                                                or default_cache_dir()))
    parser.add_argument("--no-load", action="store_true", help="build: make the archive only")
    parser.add_argument("--engine", choices=["docker", "podman"], default="docker",
                        help="build: the engine the image is loaded into")
    args = parser.parse_args(argv)
    store = ContentStore(args.cache_dir)
    try:
        if args.action == "lock":
            from builder.builderimage import lock

            epoch = int(os.environ.get("SOURCE_DATE_EPOCH", DEFAULT_SOURCE_DATE_EPOCH))
            data = lock.resolve(PACKAGES, store, epoch)
            lock.write(data, args.lock)
            print(f"{args.lock}: {len(data['packages'])} packages")
        else:
            from builder.builderimage import assemble

            image_id = assemble.build(args.lock, REPO, store, args.tag, args.archive, load=not args.no_load,
                                      engine=args.engine)
            print(image_id)
    except (OSError, ValueError, HashMismatch) as exc:
        print(f"builder image: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
