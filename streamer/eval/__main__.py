"""`python -m streamer.eval CONFIG`: the same as `streamer eval --config CONFIG`."""

import logging
import sys

from streamer.errors import StreamerError
from streamer.eval.run import main

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        main(sys.argv[1] if len(sys.argv) > 1 else None)
    except StreamerError as exc:
        sys.exit(f"streamer eval: error: {exc}")
