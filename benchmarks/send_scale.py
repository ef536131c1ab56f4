"""Time a dry run and a real send (to the local SendGrid stand-in) for N subscribers with
random sections, on the sample edition.  Run: .venv/bin/python -m benchmarks.send_scale 10000
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.fake_sendgrid import FakeSendGrid

REPO = Path(__file__).resolve().parent.parent
SECTIONS = "world politics tech business tabloid sports science health entertainment lifestyle food travel gaming".split()


def main(n: int) -> None:
    digest = str(Path(sys.executable).parent / "digest")
    with tempfile.TemporaryDirectory() as tmp, FakeSendGrid() as sg:
        rng = random.Random(1)
        people = Path(tmp) / "people.csv"
        people.write_text("email,name,sections\n" + "".join(
            f"user{i}@example.com,User {i},{';'.join(rng.sample(SECTIONS, rng.randint(1, 3)))}\n" for i in range(n)))
        env = {**os.environ, "DIGEST_DATABASE_URL": f"sqlite:///{tmp}/digest.db", "DIGEST_SECRET_KEY": "bench",
               "DIGEST_BASE_URL": "https://news.example.com/digest", "SENDGRID_API_KEY": sg.api_key,
               "SENDGRID_API_HOST": sg.url}

        def run(*args):
            start = time.perf_counter()
            out = subprocess.run([digest, *args], cwd=tmp, env=env, capture_output=True, text=True, check=False)
            return time.perf_counter() - start, out

        run("articles", "import", str(REPO / "sample" / "articles"))
        run("subscribers", "import", str(people))
        seconds, out = run("send", "--dry-run", "--date", "2026-11-25", "--json")
        summary = json.loads(out.stdout)
        print(f"dry run: {summary['emails_written']:,} .eml files, {summary['renders']} renders, {seconds:.1f} s")
        seconds, out = run("send", "--date", "2026-11-25", "--json")
        summary = json.loads(out.stdout)
        print(f"send:    {summary['sent']:,} recipients in {summary['requests']} requests, {seconds:.1f} s "
              f"({summary['sent'] / seconds:,.0f} recipients/s), exit {out.returncode}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
