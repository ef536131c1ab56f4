"""Shared pieces for the web, webhook and browser tests (imported explicitly, not a conftest)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, replace
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.testclient import TestClient

from digest.config import Settings
from digest.store import open_store
from digest.subscribers import store
from digest.tokens import Signer
from digest.web.app import create_app
from tests.stores import store_url

SECRET = "test-secret-key-not-for-production"
BASE = "http://testserver/digest"  # TestClient's host, with a path: routes live under /digest


@dataclass
class Site:
    """The app over a real store (tests/stores.py), with shortcuts to the store and to signed links."""
    settings: Settings
    engine: object
    client: TestClient

    @property
    def signer(self) -> Signer:
        return Signer(self.settings.secret_key)

    def add(self, email: str, name: str = "", sections=(), status: str = "active") -> store.Subscriber:
        return store.add(self.engine, email, name, sections, status=status)

    def get(self, email: str) -> store.Subscriber | None:
        return store.get(self.engine, email=email)

    def token(self, subscriber) -> str:
        return self.signer.manage_token(subscriber.id, subscriber.email)

    def prefs(self, subscriber) -> str:
        return f"/digest/preferences/{self.token(subscriber)}"

    def unsub(self, subscriber) -> str:
        return f"/digest/unsubscribe/{self.token(subscriber)}"

    def csrf(self, subscriber) -> str:
        """The hidden form value, read from the page as a browser would."""
        return hidden(self.client.get(self.prefs(subscriber)).text, "csrf")


def make_site(tmp_path: Path, raise_server_exceptions: bool = True, **overrides) -> Site:
    settings = Settings(database_url=store_url(tmp_path / "digest.db"), secret_key=SECRET, base_url=BASE,
                        outbox=str(tmp_path / "outbox"))
    settings = replace(settings, **overrides)
    engine = open_store(settings.database_url)
    client = TestClient(create_app(settings, engine), raise_server_exceptions=raise_server_exceptions,
                        follow_redirects=False)
    return Site(settings, engine, client)


def hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no hidden field {name!r} in the page"
    return found.group(1)


def checked_sections(html: str) -> list[str]:
    return re.findall(r'name="sections" value="([a-z]+)" checked', html)


def digest_command() -> str:
    """The installed `digest` command of the venv running the tests."""
    beside = Path(sys.executable).parent / "digest"
    found = str(beside) if beside.exists() else shutil.which("digest")
    assert found, "the `digest` command is not installed"
    return found


# -- a real `digest serve` ---------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServeProcess:
    """A real `digest serve` (the installed command) on 127.0.0.1 at a free port, started in
    `folder` with exactly `env`; its output goes to `folder/<name>.log`."""

    def __init__(self, folder: Path, env: dict[str, str], name: str = "serve", port: int | None = None):
        self.folder, self.env = Path(folder), dict(env)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.folder / f"{name}.log"
        self.proc = None

    def start(self) -> "ServeProcess":
        with self.log.open("wb") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen([digest_command(), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                                         cwd=self.folder, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        return self

    def wait_ready(self, path: str, timeout: float = 20) -> None:
        """Until GET `path` (e.g. /digest/subscribe) answers 200; a test failure with the log if not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"digest serve exited:\n{self.output()}"
            try:
                urllib.request.urlopen(f"{self.url}{path}", timeout=1)
                return
            except OSError:
                time.sleep(0.1)
        pytest.fail(f"digest serve did not answer within {timeout} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


# -- email files --------------------------------------------------------------------------

def read_eml(path: Path):
    return message_from_bytes(Path(path).read_bytes(), policy=policy.default)


def html_part(path: Path) -> str:
    return read_eml(path).get_body(preferencelist=("html",)).get_content()


def link_in(html: str, kind: str) -> str:
    """The first absolute link to /<kind>/<token> in an email's HTML."""
    found = re.search(rf'href="(https?://[^"]*/{kind}/[^"]+)"', html)
    assert found, f"no /{kind}/ link in the email"
    return found.group(1).replace("&amp;", "&")


# -- SendGrid's signed event webhook ---------------------------------------------------------

class WebhookKey:
    """A P-256 key pair standing in for SendGrid's: it signs as SendGrid does."""

    def __init__(self):
        self.private = ec.generate_private_key(ec.SECP256R1())

    @property
    def public_b64(self) -> str:
        """The public key as SendGrid shows it: base64 DER, no PEM lines."""
        der = self.private.public_key().public_bytes(serialization.Encoding.DER,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        signature = self.private.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
                "X-Twilio-Email-Event-Webhook-Timestamp": ts,
                "Content-Type": "application/json"}


def event_body(*events: dict) -> bytes:
    return json.dumps(list(events)).encode()


class ServedFolder:
    """A `digest serve` of its own folder, database and environment (not started), and
    the CLI run against the same store: what the browser tests drive."""

    def __init__(self, folder: Path, secret: str = "browser-test-secret"):
        self.folder = folder
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("DIGEST_", "SENDGRID_"))}
        port = free_port()
        self.base = f"http://127.0.0.1:{port}/digest"
        self.env.update(DIGEST_DATABASE_URL=store_url(folder / "digest.db"),
                        DIGEST_SECRET_KEY=secret, DIGEST_BASE_URL=self.base)
        self.serve = ServeProcess(folder, self.env, port=port)

    def cli(self, *args: str, input: str | None = None) -> str:
        done = subprocess.run([digest_command(), *args], cwd=self.folder, env=self.env, input=input,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"digest {' '.join(args)} -> {done.returncode}\n{done.stderr}"
        return done.stdout
