"""The send at scale, beside the naive pipeline and the data-movement floor, in one run.

    .venv/bin/python -m benchmarks.scale --subscribers 100000 [--workers 1 2 4] [--engine-url URL] [--keep DIR]

On a fresh SQLite store in a temp folder (or the database URL given, e.g. PostgreSQL):
1. `digest subscribers import` of N synthetic subscribers (1-5 random sections of 13);
2. `digest send [--workers W]` of a busy day's edition, for each W given (the ledger and
   the edition are cleared between them), to the project's SendGrid stand-in, which runs
   in a process of its own and counts what it accepts (every recipient exactly once?);
3. the naive pipeline on a sample: select, the full Jinja -> MJML -> premailer render and
   one mail/send request per subscriber, through the official client, to the same stand-in;
4. the floor: read the rows, sign the tokens, build and JSON-encode the requests; no
   rendering, no HTTP, no ledger writes: what any sender of this data must do at least.
It prints one table (wall seconds, recipients/s, peak RSS, renders, requests, bytes per
recipient, ratios); BENCHMARKS.md keeps the tables measured on the project's machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

from benchmarks.busy_day import DAY, busy_edition
from digest.config import SECTIONS, load_settings

REPO = Path(__file__).resolve().parent.parent
NAIVE_SAMPLE = 300


def write_subscribers(path: Path, n: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        f.write("email,name,sections\n")
        for i in range(n):
            f.write(f"reader{i}@example.com,Reader {i},{';'.join(rng.sample(SECTIONS, rng.randint(1, 5)))}\n")


def write_edition(folder: Path) -> None:
    """The busy day (every section full, a lead story) as Markdown files."""
    folder.mkdir(parents=True, exist_ok=True)
    for a in busy_edition().articles:
        front = {"id": a.id, "sections": list(a.sections), "title": a.title, "question": a.question, "url": a.url,
                 "published": a.published.isoformat(), "priority": a.priority, "featured": a.featured}
        if a.image:
            front.update(image=a.image, image_alt=a.image_alt)
        lines = ["---"] + [f"{k}: {json.dumps(v)}" for k, v in front.items()] + ["---", a.body, ""]
        (folder / f"{a.id}.md").write_text("\n".join(lines), encoding="utf-8")


def tree_pss(root: int) -> int:
    """Proportional set size (bytes) of a process and its descendants: memory that forked
    workers share with their parent is counted once, not once per process as RSS would."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    total = 0
    for pid in tree:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def peak_rss_of(cmd: list[str], env: dict, cwd: Path) -> tuple[float, int, subprocess.CompletedProcess]:
    """Wall seconds and peak memory of one command: the larger of its own peak RSS
    (os.wait4) and the peak PSS of its process tree (sampled), so worker processes count."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err, text=True)
        peak = [0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.25):
                peak[0] = max(peak[0], tree_pss(proc.pid))
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        stop.set()
        sampler.join()
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess(cmd, proc.returncode, out.read(), err.read())
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return seconds, max(usage.ru_maxrss * 1024, peak[0]), done


class StandIn:
    """tests/fake_sendgrid.py in its own process, counting only."""

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.fake_sendgrid", "--count-only"], cwd=REPO,
                                     stdout=subprocess.PIPE, text=True)
        self.url = self.proc.stdout.readline().strip()
        self.api_key = "SG.bench-key"
        return self

    def stats(self) -> dict:
        with urllib.request.urlopen(self.url + "/__stats", timeout=10) as r:
            return json.loads(r.read())

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(10)


def naive(settings, engine, signer, stand_in, n: int) -> tuple[float, int]:
    """One full render and one request per subscriber (what the pipeline was before)."""
    from sendgrid import SendGridAPIClient

    from digest.edition import load_edition
    from digest.render import Personal, Renderer, personalize
    from digest.select import select_digest
    from digest.subscribers import store
    from digest.tokens import links
    edition = load_edition(engine, DAY, settings)
    per_edition = Renderer(settings).edition(edition)
    client = SendGridAPIClient(api_key=stand_in.api_key, host=stand_in.url)
    client.client.timeout = 30
    people = store.list_all(engine)[:n]
    start = time.perf_counter()
    for s in people:
        digest = select_digest(edition, s.sections, settings)
        token = signer.manage_token(s.id, s.email)
        prefs, unsub = links(settings.links_base, token)
        message = personalize(per_edition.full_render(digest), Personal(s.name, token).substitutions())
        client.client.mail.send.post(request_body={
            "personalizations": [{"to": [{"email": s.email, "name": s.name}],
                                  "headers": {"List-Unsubscribe": f"<{unsub}>",
                                              "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
                                  "custom_args": {"edition": DAY.isoformat(), "subscriber_id": str(s.id),
                                                  "preferences": prefs}}],
            "from": {"email": settings.from_email}, "subject": message.subject,
            "content": [{"type": "text/plain", "value": message.text}, {"type": "text/html", "value": message.html}]})
    return time.perf_counter() - start, len(people)


def floor(settings, engine, signer) -> tuple[float, int, int]:
    """Read every row, sign its token, build and JSON-encode the requests; nothing else."""
    from digest.deliver.sendgrid import request_body
    from digest.render import Rendered
    from digest.select import Edition
    from digest.sending import Planner, active_chunks
    planner = Planner(Edition(DAY, ()), settings, signer)
    rendered = Rendered("subject", "", "<html></html>", "text")
    start = time.perf_counter()
    n = size = 0
    for rows in active_chunks(engine):
        recipients = [planner.recipient(sid, email, name) for sid, email, name, _ in rows]
        body = request_body(settings, rendered, planner_batch(planner, rendered, recipients))
        size += len(json.dumps(body["personalizations"]))
        n += len(recipients)
    return time.perf_counter() - start, n, size


def planner_batch(planner, rendered, recipients):
    from digest.deliver.transport import Batch
    return Batch(rendered, recipients, planner.headers, planner.custom_args)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--engine-url", help="database URL (default: a new SQLite file in a temp folder)")
    parser.add_argument("--keep", help="work in this folder and keep it (default: a temp folder)")
    parser.add_argument("--postgres", action="store_true",
                        help="a new database on the PostgreSQL server of DIGEST_TEST_POSTGRES "
                             "(as scripts/with-postgres sets it), dropped afterwards")
    parser.add_argument("--workers", type=int, nargs="+", default=[1], metavar="W",
                        help="sender processes of each send measured (default: 1)")
    args = parser.parse_args(argv)
    n = args.subscribers
    digest = str(Path(sys.executable).parent / "digest")
    with tempfile.TemporaryDirectory() as tmp_dir, contextlib.ExitStack() as stack:
        tmp = Path(args.keep or tmp_dir)
        tmp.mkdir(parents=True, exist_ok=True)
        url = args.engine_url or f"sqlite:///{tmp / 'digest.db'}"
        if args.postgres:
            url = stack.enter_context(postgres_database())
        people = tmp / "people.csv"
        write_subscribers(people, n)
        write_edition(tmp / "articles")
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("DIGEST_", "SENDGRID_"))},
               "DIGEST_DATABASE_URL": url, "DIGEST_SECRET_KEY": "bench-secret",
               "DIGEST_BASE_URL": "https://news.example.com/digest", "SENDGRID_TIMEOUT": "120"}
        peak_rss_of([digest, "articles", "import", str(tmp / "articles")], env, tmp)
        import_s, import_rss, _ = peak_rss_of([digest, "subscribers", "import", str(people)], env, tmp)

        from digest.store import open_store
        from digest.tokens import Signer
        engine = open_store(url)
        sends = []
        for workers in args.workers:
            clear_send(engine)
            with StandIn() as stand_in:
                env.update(SENDGRID_API_KEY=stand_in.api_key, SENDGRID_API_HOST=stand_in.url)
                command = [digest, "send", "--date", DAY.isoformat(), "--yes", "--json"]
                if workers > 1:
                    command += ["--workers", str(workers)]
                send_s, send_rss, done = peak_rss_of(command, env, tmp)
                sends.append((workers, send_s, send_rss, json.loads(done.stdout), stand_in.stats()))
        with StandIn() as stand_in:
            settings = replace(load_settings(env={}), database_url=url, base_url=env["DIGEST_BASE_URL"])
            signer = Signer(env["DIGEST_SECRET_KEY"])
            naive_s, naive_n = naive(settings, engine, signer, stand_in, NAIVE_SAMPLE)
            floor_s, floor_n, floor_bytes = floor(settings, engine, signer)
        engine.dispose()

    naive_rate = naive_n / naive_s
    floor_rate = floor_n / floor_s
    rows = [("subscribers import", import_s, n / import_s, import_rss, "-", "-", "-", "-", "-")]
    exactly_once = True
    for workers, send_s, send_rss, summary, seen in sends:
        sent = summary["sent"]
        rate = sent / send_s
        exactly_once &= seen["recipients"] == seen["distinct"] == sent == n and seen["duplicates"] == 0
        exactly_once &= summary["exit_code"] == 0
        rows.append((f"send, {workers} worker{'s' if workers > 1 else ''} (freeze {summary['freeze_seconds']:.1f} s)",
                     send_s, rate, send_rss, summary["renders"], summary["requests"],
                     seen["personalization_bytes"] / max(seen["recipients"], 1),
                     f"{rate / naive_rate:,.0f}x", f"{send_s / (floor_s * sent / floor_n):.1f}x"))
    rows += [
        (f"naive, {naive_n} of them", naive_s, naive_rate, None, naive_n, naive_n, "-", "1x", "-"),
        ("floor (rows, tokens, JSON)", floor_s, floor_rate, None, 0, "-", floor_bytes / floor_n, "-", "1x"),
    ]
    summary = sends[0][3]
    engine_name = url.split(":", 1)[0].split("+", 1)[0]
    print(f"\n{n:,} subscribers on {engine_name}, edition of {DAY} ({summary['stories']} stories, "
          f"{summary['digests']:,} distinct digests); every send reached every recipient exactly once: "
          f"{exactly_once}\n")
    print("| step | wall s | recipients/s | peak memory | renders | requests | bytes/recipient | vs naive | vs floor |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, wall, per_s, rss, renders, requests, per_r, vs_naive, vs_floor in rows:
        rss_text = f"{rss / 2**20:,.0f} MB" if rss else "-"
        per_r_text = f"{per_r:,.0f}" if isinstance(per_r, float) else per_r
        print(f"| {name} | {wall:,.1f} | {per_s:,.0f} | {rss_text} | {renders} | {requests} | {per_r_text} | "
              f"{vs_naive} | {vs_floor} |")
    return 0 if exactly_once else 1


@contextlib.contextmanager
def postgres_database():
    """A new database on DIGEST_TEST_POSTGRES's server for one run; its URL."""
    from sqlalchemy import create_engine, make_url

    from digest.store import normalise_url
    server = os.environ.get("DIGEST_TEST_POSTGRES")
    if not server:
        raise SystemExit("--postgres needs DIGEST_TEST_POSTGRES: run it as scripts/with-postgres "
                         ".venv/bin/python -m benchmarks.scale --postgres ...")
    name = f"bench_{os.getpid()}"
    admin = create_engine(normalise_url(server), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(normalise_url(server)).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def clear_send(engine) -> None:
    """Forget the edition's send, so the next one starts from the same store."""
    from sqlalchemy import delete

    from digest.store import editions, ledger
    with engine.begin() as conn:
        conn.execute(delete(ledger))
        conn.execute(delete(editions))


if __name__ == "__main__":
    sys.exit(main())
