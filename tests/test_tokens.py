"""The fast manage-token path of digest.tokens.Signer against itsdangerous itself.

`Signer.manage_token` writes the token out by hand for speed (one per recipient, a million
a morning); it must give exactly the bytes `URLSafeSerializer(secret,
salt="news-digest.manage").dumps([id, tag])` gives, for every id and address, or links in
sent emails would not verify.
"""

from __future__ import annotations

import random

import pytest
from itsdangerous import URLSafeSerializer

from digest.tokens import Signer, TokenError
from tests.conftest import SECRET

IDS = [0, 1, 2, 9, 10, 99, 100, 12345, 99_999_999, 100_000_000, 111_111_111, 123_456_789, 999_999_999,
       10**9, 10**9 + 1, 1_111_111_111, 9_999_999_999, 2**31 - 1, 2**31, 2**32, 2**40, 2**53, 2**63 - 1]
IDS += random.Random(20261125).sample(range(1, 10**9), 40)
IDS += [random.Random(i).randrange(10**9, 2**63) for i in range(10)]

ADDRESSES = [
    "jo@example.com",
    "Jo.Smith@Example.COM",          # case: the tag is of the lower-cased address
    "JO.SMITH@EXAMPLE.COM",
    "  jo.smith@example.com ",       # surrounding space
    "jo+digest@example.com",          # plus addressing
    "jo+a+b+c@sub.example.co.uk",
    "info@xn--bcher-kva.example",      # IDN domain in punycode (bücher)
    "Info@XN--BCHER-KVA.example",
    "x@xn--80ak6aa92e.com",
    "a_b=c#d'e@example.org",
    "o'brien@example.ie",
    "=1+2@example.com",
    "x" * 64 + "@" + "d" * 180 + ".example",
]


def library(secret: str, subscriber_id: int, tag: str) -> str:
    return URLSafeSerializer(secret, salt="news-digest.manage").dumps([subscriber_id, tag])


@pytest.mark.parametrize("secret", [SECRET, "k", "ünïcödé-secret-🔑", "x" * 200])
def test_fast_manage_token_is_byte_for_byte_the_librarys(secret):
    signer = Signer(secret)
    checked = 0
    for subscriber_id in IDS:
        for email in ADDRESSES:
            tag = signer.address_tag(email)
            assert signer.manage_token(subscriber_id, email) == library(secret, subscriber_id, tag), \
                (subscriber_id, email)
            checked += 1
    assert checked == len(IDS) * len(ADDRESSES)


def test_address_tag_ignores_case_and_surrounding_space_only():
    signer = Signer(SECRET)
    assert signer.address_tag("Jo.Smith@Example.COM") == signer.address_tag(" jo.smith@example.com ")
    assert signer.address_tag("jo+digest@example.com") != signer.address_tag("jo@example.com")
    assert signer.address_tag("info@xn--bcher-kva.example") != signer.address_tag("info@bucher.example")


def test_random_ids_and_addresses_round_trip_through_read_manage_token():
    signer = Signer(SECRET)
    rng = random.Random(7)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.+-_"
    for _ in range(2000):
        subscriber_id = rng.choice([rng.randrange(1, 10), rng.randrange(1, 10**9), rng.randrange(10**9, 2**63)])
        local = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 30))).strip(".") or "x"
        email = f"{local}@{rng.choice(['example.com', 'EXAMPLE.org', 'xn--bcher-kva.example'])}"
        token = signer.manage_token(subscriber_id, email)
        assert token == library(SECRET, subscriber_id, signer.address_tag(email))
        got_id, tag = signer.read_manage_token(token)
        assert got_id == subscriber_id and signer.belongs_to(tag, email) and signer.belongs_to(tag, email.upper())


@pytest.mark.parametrize("subscriber_id", [i for i in IDS if i > 0])
def test_every_listed_id_reads_back(subscriber_id):
    signer = Signer(SECRET)
    for email in ADDRESSES:
        got_id, tag = signer.read_manage_token(signer.manage_token(subscriber_id, email))
        assert got_id == subscriber_id and signer.belongs_to(tag, email)


def test_id_zero_signs_like_the_library_but_names_nobody():
    """Database ids start at 1: a token for 0 is well-formed but read as an invalid link."""
    signer = Signer(SECRET)
    token = signer.manage_token(0, "jo@example.com")
    payload = URLSafeSerializer(SECRET, salt="news-digest.manage").loads(token)
    assert payload == [0, signer.address_tag("jo@example.com")]
    with pytest.raises(TokenError):
        signer.read_manage_token(token)


def test_another_key_or_a_tampered_token_is_refused():
    token = Signer(SECRET).manage_token(42, "jo@example.com")
    with pytest.raises(TokenError):
        Signer(SECRET + "x").read_manage_token(token)
    payload, _, signature = token.partition(".")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    with pytest.raises(TokenError):
        Signer(SECRET).read_manage_token(f"{payload}.{flipped}")
