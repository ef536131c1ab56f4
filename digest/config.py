"""Settings: defaults that work with no file, then `digest.toml`, then the environment.

Secrets (the SendGrid key, the signing key, the webhook public key) come only from the
environment, never from the file, so a config file can be committed safely.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

SECTIONS: tuple[str, ...] = (
    "world", "politics", "tech", "business", "tabloid", "sports", "science",
    "health", "entertainment", "lifestyle", "food", "travel", "gaming",
)

DEFAULT_SENDGRID_HOST = "https://api.sendgrid.com"


# A set of site sections as an integer with bit i for SECTIONS[i].  The store keeps
# subscribers' and ledger rows' sections this way, so freezing, grouping rows by the
# digest they share and finding empty digests are plain integer SQL (`&`, ORDER BY).
def section_mask(names) -> int:
    mask = 0
    for name in names:
        mask |= 1 << SECTIONS.index(name)
    return mask


def mask_sections(mask: int) -> tuple[str, ...]:
    """The site sections in `mask`, in the site's order."""
    return tuple(s for i, s in enumerate(SECTIONS) if mask >> i & 1)


class ConfigError(Exception):
    """A setting is missing or wrong; the CLI turns this into exit status 2."""


@dataclass(frozen=True)
class Settings:
    name: str = "The Daily Digest"
    from_email: str = "digest@news.example.com"
    from_name: str = ""  # defaults to `name`
    reply_to: str = ""
    lang: str = "en"
    site_url: str = "https://news.example.com"
    sections: tuple[str, ...] = SECTIONS
    default_sections: tuple[str, ...] = SECTIONS
    per_section: int = 3
    timezone: str = "UTC"
    database_url: str = "sqlite:///digest.db"
    base_url: str = ""  # DIGEST_BASE_URL; see links_base
    secret_key: str = field(default="", repr=False)
    sendgrid_api_key: str = field(default="", repr=False)
    sendgrid_host: str = DEFAULT_SENDGRID_HOST
    sendgrid_timeout: float = 30.0
    sendgrid_categories: tuple[str, ...] = ("daily-digest",)
    sendgrid_asm_group_id: int | None = None
    sendgrid_webhook_public_key: str = field(default="", repr=False)
    sendgrid_max_attempts: int = 5
    sendgrid_concurrency: int = 4           # mail/send requests in flight at once
    sendgrid_retry_base_delay: float = 1.0  # seconds; doubles per attempt, capped, jittered
    outbox: str = "outbox"                  # dry runs write <outbox>/<date>/*.eml
    signup_delivery: str = "outbox"         # how sign-up confirmations go: outbox | sendgrid
    feeds_urls: tuple[str, ...] = ()        # [feeds] urls: what `digest articles import` with no argument reads
    feeds_sections: tuple[tuple[str, str], ...] = ()  # [feeds.sections]: (category, section), category casefolded
    feeds_timeout: float = 10.0             # seconds one feed URL may take, all of it
    feeds_max_bytes: int = 5_000_000        # a feed (file or URL, decompressed) larger than this is refused
    source: str = "defaults"  # where the settings came from, for messages

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def sender_name(self) -> str:
        return self.from_name or self.name

    @property
    def links_base(self) -> str:
        """Where links in emails point: DIGEST_BASE_URL, or a local server for trying things out."""
        return self.base_url or "http://127.0.0.1:8000"

    def today(self) -> date:
        return datetime.now(self.tz).date()

    def check_site_sections(self, names, where: str) -> tuple[str, ...]:
        """Like check_sections, against all the site's sections, even ones not offered here."""
        site = self if self.sections == SECTIONS else replace(self, sections=SECTIONS)
        return site.check_sections(names, where)

    def check_sections(self, names, where: str) -> tuple[str, ...]:
        """Return `names` in canonical order, or raise naming the unknown ones."""
        given = [n.strip() for n in names if n and n.strip()]
        wanted = [n.lower() for n in given]
        unknown = [g for g, n in zip(given, wanted) if n not in self.sections]
        if unknown:
            raise ConfigError(
                f"{where}: unknown section {', '.join(repr(u) for u in unknown)} "
                f"(known: {', '.join(self.sections)})"
            )
        return tuple(s for s in self.sections if s in wanted)


def _field(key: str) -> str:
    """'SENDGRID_TIMEOUT / [sendgrid] timeout' -> 'sendgrid_timeout' (the Settings field)."""
    key = key.split(" / ")[-1]
    if key.startswith("[sendgrid] "):
        return "sendgrid_" + key.removeprefix("[sendgrid] ")
    return key


# digest.toml keys -> Settings fields.  [sendgrid] keys are prefixed with "sendgrid_".
_FILE_KEYS = {
    "name", "from_email", "from_name", "reply_to", "lang", "site_url", "sections",
    "default_sections", "per_section", "timezone", "database_url", "base_url",
    "outbox", "signup_delivery",
}
_SENDGRID_KEYS = {"host", "timeout", "categories", "asm_group_id", "max_attempts", "retry_base_delay",
                  "concurrency"}
_FEEDS_KEYS = {"urls", "sections", "timeout", "max_bytes"}

_ENV = {
    "DIGEST_DATABASE_URL": "database_url",
    "DIGEST_SECRET_KEY": "secret_key",
    "DIGEST_BASE_URL": "base_url",
    "DIGEST_FROM_EMAIL": "from_email",
    "SENDGRID_API_KEY": "sendgrid_api_key",
    "SENDGRID_API_HOST": "sendgrid_host",
    "SENDGRID_TIMEOUT": "sendgrid_timeout",
    "SENDGRID_WEBHOOK_PUBLIC_KEY": "sendgrid_webhook_public_key",
}


def load_settings(config: str | Path | None = None, env=None) -> Settings:
    """Build Settings from defaults, the config file and the environment.

    The file is `config`, else $DIGEST_CONFIG, else ./digest.toml if it exists.
    An explicitly named file that does not exist is an error.
    """
    env = os.environ if env is None else env
    values: dict = {}
    origin: dict = {}  # key -> where its value came from, for error messages
    source = "defaults"
    path = Path(config) if config else (Path(env["DIGEST_CONFIG"]) if env.get("DIGEST_CONFIG") else None)
    if path is None and Path("digest.toml").is_file():
        path = Path("digest.toml")
    if path is not None:
        from_file = _read_file(path)
        values.update(from_file)
        origin.update({k: str(path) for k in from_file})
        source = str(path)
    for var, key in _ENV.items():
        if env.get(var, "").strip():
            values[key] = env[var].strip()
            origin[key] = f"environment variable {var}"
    return _validate(values, source, origin)


def _read_file(path: Path) -> dict:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read config file ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    values = {}
    for key, value in data.items():
        if key == "sendgrid" and isinstance(value, dict):
            for sk, sv in value.items():
                if sk not in _SENDGRID_KEYS:
                    raise ConfigError(f"{path}: unknown setting [sendgrid] {sk!r}")
                values[f"sendgrid_{sk}"] = sv
        elif key == "feeds":
            values.update(_read_feeds(path, value))
        elif key in _FILE_KEYS:
            values[key] = value
        elif key in {"secret_key", "api_key", "sendgrid_api_key"}:
            raise ConfigError(f"{path}: {key!r} must come from the environment, not the file")
        else:
            raise ConfigError(f"{path}: unknown setting {key!r}")
    return values


def _read_feeds(path: Path, table) -> dict:
    """The [feeds] table, checked here: its settings come only from the file."""
    def fail(key: str, why: str) -> ConfigError:
        return ConfigError(f"{path}: [feeds] {key}: {why}")

    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [feeds] must be a table (a [feeds] line, then its settings)")
    for key in table:
        if key not in _FEEDS_KEYS:
            raise ConfigError(f"{path}: unknown setting [feeds] {key!r}")
    values: dict = {}
    if "urls" in table:
        urls = table["urls"]
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise fail("urls", "must be a list of http(s) URLs")
        for url in urls:
            parts = urlsplit(url.strip())
            if parts.scheme not in ("http", "https") or not parts.netloc or len(url) > 2000:
                raise fail("urls", f"{url!r} is not an absolute http(s) URL (of at most 2000 characters)")
        values["feeds_urls"] = tuple(dict.fromkeys(u.strip() for u in urls))
    if "sections" in table:
        aliases = table["sections"]
        if not isinstance(aliases, dict):
            raise fail("sections", 'must be a table of category = "section" lines')
        pairs = []
        for category, section in aliases.items():
            if not isinstance(section, str) or section.strip().lower() not in SECTIONS:
                raise fail(f"sections {category!r}",
                           f"{section!r} is not one of the site's sections ({', '.join(SECTIONS)})")
            pairs.append((" ".join(category.split()).casefold(), section.strip().lower()))
        values["feeds_sections"] = tuple(pairs)
    if "timeout" in table:
        t = table["timeout"]
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t <= 300:
            raise fail("timeout", "must be a number of seconds, more than 0 and at most 300")
        values["feeds_timeout"] = float(t)
    if "max_bytes" in table:
        n = table["max_bytes"]
        if isinstance(n, bool) or not isinstance(n, int) or not 1000 <= n <= 100_000_000:
            raise fail("max_bytes", "must be a whole number of bytes from 1000 to 100000000")
        values["feeds_max_bytes"] = n
    return values


def _validate(v: dict, source: str, origin: dict | None = None) -> Settings:
    origin = origin or {}

    def fail(key, why):
        field_name = key.split(" / ")[-1] if "environment" not in origin.get(_field(key), "") else ""
        if field_name.startswith("sendgrid_"):
            field_name = "[sendgrid] " + field_name.removeprefix("sendgrid_")
        where = origin.get(_field(key), source)
        raise ConfigError(f"{where}: {field_name + ': ' if field_name else ''}{why}")

    for key in ("name", "from_email", "from_name", "reply_to", "lang", "site_url", "timezone",
                "database_url", "base_url", "sendgrid_host"):
        if key in v and not isinstance(v[key], str):
            fail(key, "must be a string")

    if v.get("reply_to"):
        from email_validator import EmailNotValidError, validate_email
        try:
            validate_email(v["reply_to"], check_deliverability=False)
        except EmailNotValidError as e:
            fail("reply_to", f"{v['reply_to']!r} is not an email address ({e})")

    for key in ("name", "from_email"):
        if key in v and not v[key].strip():
            fail(key, "must not be empty")

    if "sections" in v:
        # A newsletter may offer fewer of the site's sections, or reorder them; not invent new ones.
        secs = v["sections"]
        if not isinstance(secs, list) or not secs or not all(isinstance(s, str) and s.strip() for s in secs):
            fail("sections", "must be a non-empty list of section names")
        v["sections"] = tuple(s.strip().lower() for s in secs)
        unknown = [s for s in v["sections"] if s not in SECTIONS]
        if unknown:
            fail("sections", f"unknown section {', '.join(map(repr, unknown))} (known: {', '.join(SECTIONS)})")
        if len(set(v["sections"])) != len(v["sections"]):
            fail("sections", "names a section twice")
    sections = v.get("sections", SECTIONS)

    if "default_sections" in v:
        ds = v["default_sections"]
        if not isinstance(ds, list) or not all(isinstance(s, str) for s in ds):
            fail("default_sections", "must be a list of section names")
        unknown = [s for s in ds if s.strip().lower() not in sections]
        if unknown:
            offered = [s for s in unknown if s.strip().lower() in SECTIONS]
            why = (f"{', '.join(map(repr, offered))} is not among the offered sections ({', '.join(sections)})"
                   if offered else f"unknown section {', '.join(map(repr, unknown))}")
            fail("default_sections", why)
        v["default_sections"] = tuple(s for s in sections if s in {d.strip().lower() for d in ds}) or sections
    else:
        v["default_sections"] = sections

    if "per_section" in v:
        n = v["per_section"]
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 6:
            # More than 6 a section on a busy day cannot fit Gmail's 102 KB, even compact.
            fail("per_section", "must be a whole number from 1 to 6")

    if "timezone" in v:
        try:
            ZoneInfo(v["timezone"])
        except (ZoneInfoNotFoundError, ValueError):
            fail("timezone", f"unknown time zone {v['timezone']!r} (e.g. 'Europe/London')")

    if "from_email" in v:
        from email_validator import EmailNotValidError, validate_email
        try:
            validate_email(v["from_email"], check_deliverability=False)
        except EmailNotValidError as e:
            fail("from_email", f"{v['from_email']!r} is not an email address ({e})")

    for key in ("base_url", "site_url", "sendgrid_host"):
        if key in v:
            url = v[key].rstrip("/")
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                fail(key, f"{v[key]!r} must be an absolute http(s) URL")
            try:
                parts.port
            except ValueError:
                fail(key, f"{v[key]!r} has an invalid port")
            if parts.query or parts.fragment:
                fail(key, f"{v[key]!r} must not have a query (?…) or fragment (#…): links are built under it")
            v[key] = url

    if "sendgrid_timeout" in v:
        try:
            if isinstance(v["sendgrid_timeout"], bool):  # float(True) is 1.0: `timeout = true` is a slip, not 1 s
                raise TypeError
            t = float(v["sendgrid_timeout"])
        except (TypeError, ValueError):
            fail("SENDGRID_TIMEOUT / [sendgrid] timeout", f"{v['sendgrid_timeout']!r} is not a number of seconds")
        if not 0 < t <= 600:
            fail("SENDGRID_TIMEOUT / [sendgrid] timeout", "must be between 0 and 600 seconds")
        v["sendgrid_timeout"] = t

    if "sendgrid_categories" in v:
        cats = v["sendgrid_categories"]
        if not isinstance(cats, list) or len(cats) > 10 or not all(isinstance(c, str) and 0 < len(c) <= 255 for c in cats):
            fail("[sendgrid] categories", "must be a list of at most 10 strings")
        twice = sorted({c for c in cats if cats.count(c) > 1})
        if twice:  # SendGrid refuses every request whose categories repeat one
            fail("[sendgrid] categories", f"names {', '.join(map(repr, twice))} twice")
        v["sendgrid_categories"] = tuple(cats)

    if "sendgrid_asm_group_id" in v:
        g = v["sendgrid_asm_group_id"]
        # SendGrid's unsubscribe group ids are 32-bit: a larger number names no group.
        if isinstance(g, bool) or not isinstance(g, int) or not 0 < g <= 2**31 - 1:
            fail("[sendgrid] asm_group_id", "must be a whole number from 1 to 2147483647 (a SendGrid group id)")

    if "sendgrid_max_attempts" in v:
        n = v["sendgrid_max_attempts"]
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 20:
            fail("[sendgrid] max_attempts", "must be a whole number from 1 to 20")
    if "sendgrid_concurrency" in v:
        n = v["sendgrid_concurrency"]
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 16:
            fail("[sendgrid] concurrency", "must be a whole number from 1 to 16")
    if "sendgrid_retry_base_delay" in v:
        d = v["sendgrid_retry_base_delay"]
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0 <= d <= 60:
            fail("[sendgrid] retry_base_delay", "must be a number of seconds from 0 to 60")
        v["sendgrid_retry_base_delay"] = float(d)
    if "outbox" in v and not isinstance(v["outbox"], str):
        fail("outbox", "must be a folder path")
    if "signup_delivery" in v and v["signup_delivery"] not in ("outbox", "sendgrid"):
        fail("signup_delivery", "must be 'outbox' or 'sendgrid'")

    return Settings(**v, source=source)
