"""The speed suite's entry as a file: ``python benchmarks/speed/run.py`` = ``python -m benchmarks.speed``."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks._suite import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main("speed"))
