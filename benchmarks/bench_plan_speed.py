"""`repro plan all --profile paper` without --calibrate must answer in under 10 s (issue 13)."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

TARGET_S = 10.0

if __name__ == "__main__":
    repro = str(Path(sys.executable).parent / "repro")
    t0 = time.perf_counter()
    subprocess.run([repro, "plan", "all", "--profile", "paper"], check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    print(f"repro plan all --profile paper: {wall:.2f} s wall (target < {TARGET_S:g} s)")
    sys.exit(0 if wall < TARGET_S else 1)
