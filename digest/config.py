"""Settings: defaults that work with no file, then `digest.toml`, then the environment.

Secrets (the SendGrid key, the signing key, the webhook public key) come only from the
environment, never from the file, so a config file can be committed safely.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import Callable, NoReturn
from urllib.parse import SplitResult, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from digest.delivery_time import DeliveryTimeError, check_weekday

SECTIONS: tuple[str, ...] = (
    "world", "politics", "tech", "business", "tabloid", "sports", "science",
    "health", "entertainment", "lifestyle", "food", "travel", "gaming",
)

DEFAULT_SENDGRID_HOST = "https://api.sendgrid.com"
# Where `digest serve` listens by default, and so where links point without DIGEST_BASE_URL.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# An edition's day is turned into a range of instants (its midnight to the next, in the
# newsletter's zone): the last days Python can represent would overflow, so they are refused.
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(9998, 12, 31)


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


def local_base_url(host: str, port: int) -> str:
    """The base URL of a server on this machine: where links point without DIGEST_BASE_URL."""
    return f"http://{host}:{port}"


def check_day(day: date) -> date:
    """`day`, if an edition can have it; ConfigError otherwise."""
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ConfigError(f"must be a date between {FIRST_DAY} and {LAST_DAY}")
    return day


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
    weekly_per_section: int = 5  # the weekly digest's stories per section (a week holds more)
    timezone: str = "UTC"
    # Readers who chose no time of their own get the digest at this hour of `timezone`,
    # and a weekly digest on this weekday (0 = Monday; digest.toml says "monday").
    delivery_hour: int = 7
    weekly_weekday: int = 0
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
    list_id: str = ""         # RFC 2919 List-Id; default derived from name and site_url (see list_id_header)
    feedback_id: str = ""     # optional Feedback-ID header (Gmail's feedback loop), e.g. "digest:news:daily"
    postal_address: str = ""  # the sender's postal address, shown in every footer (bulk-mail law)
    send_lead_only: bool = True  # whether a digest holding only the lead story is sent at all
    archive: bool = True  # whether `digest serve` lists past editions at /archive (web versions stay up)
    feeds_urls: tuple[str, ...] = ()        # [feeds] urls: what `digest articles import` with no argument reads
    feeds_sections: tuple[tuple[str, str], ...] = ()  # [feeds.sections]: (category, section), category casefolded
    feeds_timeout: float = 10.0             # seconds one feed URL may take, all of it
    feeds_max_bytes: int = 5_000_000        # a feed (file or URL, decompressed) larger than this is refused
    test_recipients: tuple[str, ...] = ()   # [editors] test_recipients: who else may get test sends (lower-cased)
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
        return self.base_url or local_base_url(DEFAULT_HOST, DEFAULT_PORT)

    def served_at(self, host: str, port: int) -> Settings:
        """These settings for a server at `host`:`port`: without DIGEST_BASE_URL, its links point at it."""
        return self if self.base_url else replace(self, base_url=local_base_url(host, port))

    @property
    def list_id_header(self) -> str:
        """The List-Id header: `list_id`, else '<name> <slug.site host>' (RFC 2919)."""
        if self.list_id:
            return self.list_id
        label = re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-") or "digest"
        host = urlsplit(self.site_url).hostname or "localhost"
        phrase = self.name.strip()
        if not phrase.isascii() or not phrase.isprintable():
            return f"<{label}.{host}>"
        if re.search(r'[()<>\[\]:;@\\,."]', phrase):
            phrase = '"' + phrase.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{phrase} <{label}.{host}>"

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
        unknown = [g for g, n in zip(given, wanted, strict=True) if n not in self.sections]
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
    "default_sections", "per_section", "timezone", "delivery_hour", "weekly_weekday", "database_url", "base_url",
    "outbox", "signup_delivery", "list_id", "feedback_id", "postal_address", "send_lead_only",
    "archive", "weekly_per_section",
}
_SENDGRID_KEYS = {"host", "timeout", "categories", "asm_group_id", "max_attempts", "retry_base_delay",
                  "concurrency"}
_FEEDS_KEYS = {"urls", "sections", "timeout", "max_bytes"}
_EDITORS_KEYS = {"test_recipients"}

# RFC 2919 List-Id: [phrase] "<" dot-atom-text with at least one dot ">".  The phrase is
# ASCII words or a quoted string (a header carries no 8-bit text unencoded).
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LIST_ID = re.compile(rf"[ -;=?-~]*<({_ATOM}(?:\.{_ATOM})+)>")

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
        elif key == "editors":
            values.update(_read_editors(path, value))
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
            if http_url(url.strip()) is None or len(url) > 2000:
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


def _read_editors(path: Path, table) -> dict:
    """The [editors] table: `test_recipients`, the addresses besides the editors' own that
    `digest send --test-to` may mail (each checked, kept lower-cased)."""
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [editors] must be a table (an [editors] line, then its settings)")
    for key in table:
        if key not in _EDITORS_KEYS:
            raise ConfigError(f"{path}: unknown setting [editors] {key!r}")
    if "test_recipients" not in table:
        return {}
    given = table["test_recipients"]
    if not isinstance(given, list) or not all(isinstance(a, str) for a in given):
        raise ConfigError(f"{path}: [editors] test_recipients: must be a list of email addresses")
    from email_validator import EmailNotValidError, validate_email
    found = []
    for address in given:
        try:
            validate_email(address.strip(), check_deliverability=False)
        except EmailNotValidError as e:
            raise ConfigError(f"{path}: [editors] test_recipients: {address!r} is not an email address ({e})") from None
        found.append(address.strip().lower())
    return {"test_recipients": tuple(dict.fromkeys(found))}


# -- validation: one small check per setting (or group of settings) -----------------------------
#
# Each check reads the raw values (`v`: from the file and the environment, keyed by Settings
# field), normalises the ones it owns in place, and calls `fail(key, why)` on the first
# problem.  They run in the order of _CHECKS, so a later check may rely on an earlier
# one (default_sections on sections).  `key` is what the message names: a field, or
# "ENV_VAR / [table] key" when both spellings exist.

Fail = Callable[[str, str], NoReturn]
Check = Callable[[dict, Fail], None]

_STRING_KEYS = ("name", "from_email", "from_name", "reply_to", "lang", "site_url", "timezone",
                "database_url", "base_url", "sendgrid_host", "list_id", "feedback_id", "postal_address")
_URL_KEYS = ("base_url", "site_url", "sendgrid_host")


def _check_strings(v: dict, fail: Fail) -> None:
    for key in _STRING_KEYS:
        if key in v and not isinstance(v[key], str):
            fail(key, "must be a string")


def _check_list_id(v: dict, fail: Fail) -> None:
    if v.get("list_id"):
        # RFC 2919: an optional phrase, then <label.namespace> of dot-atom text, at most 255 characters.
        v["list_id"] = v["list_id"].strip()
        found = _LIST_ID.fullmatch(v["list_id"])
        if not found or len(found.group(1)) > 255:
            fail("list_id", f"{v['list_id']!r} is not a List-Id (RFC 2919), e.g. "
                            "'Morning Digest <digest.news.example.com>'")


def _check_feedback_id(v: dict, fail: Fail) -> None:
    if v.get("feedback_id"):
        if not re.fullmatch(r"[!-~]{1,200}", v["feedback_id"]) or not all(v["feedback_id"].split(":")):
            fail("feedback_id", f"{v['feedback_id']!r} must be colon-separated fields of printable ASCII, "
                                "no spaces (e.g. 'daily:digest:news')")


def _check_postal_address(v: dict, fail: Fail) -> None:
    if "postal_address" in v:
        v["postal_address"] = v["postal_address"].strip()
        if len(v["postal_address"]) > 300 or any(not c.isprintable() and c != "\n" for c in v["postal_address"]):
            fail("postal_address", "must be at most 300 printable characters (lines may be split with newlines)")


def _boolean(key: str) -> Check:
    def check(v: dict, fail: Fail) -> None:
        if key in v and not isinstance(v[key], bool):
            fail(key, "must be true or false")
    return check


def _email_address(key: str) -> Check:
    def check(v: dict, fail: Fail) -> None:
        if v.get(key):
            from email_validator import EmailNotValidError, validate_email
            try:
                validate_email(v[key], check_deliverability=False)
            except EmailNotValidError as e:
                fail(key, f"{v[key]!r} is not an email address ({e})")
    return check


def _check_not_empty(v: dict, fail: Fail) -> None:
    for key in ("name", "from_email"):
        if key in v and not v[key].strip():
            fail(key, "must not be empty")


def _check_sections(v: dict, fail: Fail) -> None:
    # A newsletter may offer fewer of the site's sections, or reorder them; not invent new ones.
    if "sections" not in v:
        return
    secs = v["sections"]
    if not isinstance(secs, list) or not secs or not all(isinstance(s, str) and s.strip() for s in secs):
        fail("sections", "must be a non-empty list of section names")
    v["sections"] = tuple(s.strip().lower() for s in secs)
    unknown = [s for s in v["sections"] if s not in SECTIONS]
    if unknown:
        fail("sections", f"unknown section {', '.join(map(repr, unknown))} (known: {', '.join(SECTIONS)})")
    if len(set(v["sections"])) != len(v["sections"]):
        fail("sections", "names a section twice")


def _check_default_sections(v: dict, fail: Fail) -> None:
    sections = v.get("sections", SECTIONS)  # already checked by _check_sections
    if "default_sections" not in v:
        v["default_sections"] = sections
        return
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


def _whole_number(key: str, lowest: int, highest: int, shown: str | None = None, why: str = "") -> Check:
    """`key` must be an int (not a bool) from `lowest` to `highest`."""
    def check(v: dict, fail: Fail) -> None:
        n = v.get(key)
        if key in v and (isinstance(n, bool) or not isinstance(n, int) or not lowest <= n <= highest):
            fail(shown or key, f"must be a whole number from {lowest} to {highest}{why}")
    return check


def _check_timezone(v: dict, fail: Fail) -> None:
    if "timezone" in v:
        try:
            ZoneInfo(v["timezone"])
        except (ZoneInfoNotFoundError, ValueError):
            fail("timezone", f"unknown time zone {v['timezone']!r} (e.g. 'Europe/London')")


def _check_weekly_weekday(v: dict, fail: Fail) -> None:
    if "weekly_weekday" in v:
        try:
            v["weekly_weekday"] = check_weekday(v["weekly_weekday"])
        except DeliveryTimeError as e:
            fail("weekly_weekday", str(e))


def http_url(url: str) -> SplitResult | None:
    """`url` split, when it is an absolute http(s) URL with a host and a valid port; else None.

    Why not urlsplit alone: it raises ValueError on a malformed IPv6 host ("http://[x"),
    and `.port` does on a port out of range; both are a bad URL, not a crash.
    """
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        return None
    return parts if parts.scheme in ("http", "https") and parts.hostname else None


def _check_urls(v: dict, fail: Fail) -> None:
    for key in _URL_KEYS:
        if key not in v:
            continue
        url = v[key].rstrip("/")
        try:
            parts = urlsplit(url)
        except ValueError:  # a malformed IPv6 host
            fail(key, f"{v[key]!r} must be an absolute http(s) URL")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            fail(key, f"{v[key]!r} must be an absolute http(s) URL")
        try:
            _ = parts.port  # raises on a port that is not a number from 0 to 65535
        except ValueError:
            fail(key, f"{v[key]!r} has an invalid port")
        if parts.query or parts.fragment:
            fail(key, f"{v[key]!r} must not have a query (?…) or fragment (#…): links are built under it")
        v[key] = url


def _check_sendgrid_timeout(v: dict, fail: Fail) -> None:
    if "sendgrid_timeout" not in v:
        return
    key = "SENDGRID_TIMEOUT / [sendgrid] timeout"
    t = v["sendgrid_timeout"]
    if isinstance(t, bool):  # float(True) is 1.0: `timeout = true` is a slip, not 1 s
        fail(key, f"{t!r} is not a number of seconds")
    try:
        t = float(t)
    except (TypeError, ValueError):
        fail(key, f"{t!r} is not a number of seconds")
    if not 0 < t <= 600:
        fail(key, "must be between 0 and 600 seconds")
    v["sendgrid_timeout"] = t


def _check_sendgrid_categories(v: dict, fail: Fail) -> None:
    if "sendgrid_categories" not in v:
        return
    cats = v["sendgrid_categories"]
    if (not isinstance(cats, list) or len(cats) > 10
            or not all(isinstance(c, str) and 0 < len(c) <= 255 for c in cats)):
        fail("[sendgrid] categories", "must be a list of at most 10 strings")
    twice = sorted({c for c in cats if cats.count(c) > 1})
    if twice:  # SendGrid refuses every request whose categories repeat one
        fail("[sendgrid] categories", f"names {', '.join(map(repr, twice))} twice")
    v["sendgrid_categories"] = tuple(cats)


def _check_sendgrid_retry_base_delay(v: dict, fail: Fail) -> None:
    if "sendgrid_retry_base_delay" not in v:
        return
    d = v["sendgrid_retry_base_delay"]
    if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0 <= d <= 60:
        fail("[sendgrid] retry_base_delay", "must be a number of seconds from 0 to 60")
    v["sendgrid_retry_base_delay"] = float(d)


def _check_outbox(v: dict, fail: Fail) -> None:
    if "outbox" in v and not isinstance(v["outbox"], str):
        fail("outbox", "must be a folder path")


def _check_signup_delivery(v: dict, fail: Fail) -> None:
    if "signup_delivery" in v and v["signup_delivery"] not in ("outbox", "sendgrid"):
        fail("signup_delivery", "must be 'outbox' or 'sendgrid'")


_CHECKS: tuple[Check, ...] = (
    _check_strings,
    _check_list_id,
    _check_feedback_id,
    _check_postal_address,
    _boolean("send_lead_only"),
    _boolean("archive"),
    _email_address("reply_to"),
    _check_not_empty,
    _check_sections,
    _check_default_sections,
    # More than 6 a section on a busy day cannot fit Gmail's 102 KB, even compact.
    _whole_number("per_section", 1, 6),
    _whole_number("weekly_per_section", 1, 6),
    _check_timezone,
    _whole_number("delivery_hour", 0, 23, why=" (the reader's local hour, 7 = 07:00)"),
    _check_weekly_weekday,
    _email_address("from_email"),
    _check_urls,
    _check_sendgrid_timeout,
    _check_sendgrid_categories,
    # SendGrid's unsubscribe group ids are 32-bit: a larger number names no group.
    _whole_number("sendgrid_asm_group_id", 1, 2**31 - 1, "[sendgrid] asm_group_id", " (a SendGrid group id)"),
    _whole_number("sendgrid_max_attempts", 1, 20, "[sendgrid] max_attempts"),
    _whole_number("sendgrid_concurrency", 1, 16, "[sendgrid] concurrency"),
    _check_sendgrid_retry_base_delay,
    _check_outbox,
    _check_signup_delivery,
)


def _validate(v: dict, source: str, origin: dict | None = None) -> Settings:
    """Settings from raw values, each checked (and normalised) by _CHECKS; ConfigError if not."""
    origin = origin or {}

    def fail(key: str, why: str) -> NoReturn:
        field_name = key.split(" / ")[-1] if "environment" not in origin.get(_field(key), "") else ""
        if field_name.startswith("sendgrid_"):
            field_name = "[sendgrid] " + field_name.removeprefix("sendgrid_")
        where = origin.get(_field(key), source)
        raise ConfigError(f"{where}: {field_name + ': ' if field_name else ''}{why}")

    for check in _CHECKS:
        check(v, fail)
    return Settings(**v, source=source)
