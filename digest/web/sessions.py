"""The editors' desk session: a signed cookie, and the CSRF value bound to it.

The cookie holds the editor's id and a random nonce, signed with a key derived from
DIGEST_SECRET_KEY (itsdangerous, with its time stamp: a session lasts MAX_AGE at most).
It is HttpOnly, SameSite=Strict, limited to the desk's path, and Secure (with the
`__Secure-` name prefix) when DIGEST_BASE_URL is https.  Every form of the desk carries
an HMAC of the nonce, which a page of another site cannot compute.  Before signing in, the
sign-in form has an anonymous session (no editor) of its own, replaced by a new one (a
new nonce) when the editor signs in, so a session planted beforehand is worth nothing.
A session also carries the editor's `session_epoch`; signing out raises it in the store,
so a copied cookie stops working then, not only when it expires.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadData, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

MAX_AGE = 12 * 3600  # seconds: a working day, then sign in again


@dataclass(frozen=True)
class Session:
    editor_id: int | None  # None: not signed in yet (the sign-in form's own session)
    nonce: str
    epoch: int = 0  # the editor's session_epoch when signed in: signing out raises it


class Sessions:
    def __init__(self, secret_key: str, base_url: str, path: str):
        self._serializer = URLSafeTimedSerializer(secret_key, salt="news-digest.editor-session")
        self._csrf_key = hashlib.sha256(b"news-digest.editor-csrf|" + secret_key.encode()).digest()
        self.secure = base_url.lower().startswith("https://")
        self.cookie = "__Secure-digest-editor" if self.secure else "digest-editor"
        self.path = path or "/"

    def new(self, editor_id: int | None, epoch: int = 0) -> Session:
        return Session(editor_id, secrets.token_urlsafe(24), epoch)

    def read(self, request: Request) -> Session | None:
        """The request's session; None when it has none, or a tampered or expired one."""
        raw = request.cookies.get(self.cookie)
        if not raw:
            return None
        try:
            value = self._serializer.loads(raw, max_age=MAX_AGE)
        except BadData:
            return None
        if not isinstance(value, dict):
            return None
        editor_id, nonce, epoch = value.get("e"), value.get("n"), value.get("g", 0)
        if not isinstance(nonce, str) or not (editor_id is None or type(editor_id) is int) or type(epoch) is not int:
            return None
        return Session(editor_id, nonce, epoch)

    def keep(self, response: Response, session: Session) -> None:
        response.set_cookie(self.cookie, self._serializer.dumps({"e": session.editor_id, "n": session.nonce,
                                                          "g": session.epoch}),
                            max_age=MAX_AGE, path=self.path, secure=self.secure, httponly=True,
                            samesite="strict")

    def end(self, response: Response) -> None:
        response.delete_cookie(self.cookie, path=self.path, secure=self.secure, httponly=True, samesite="strict")

    def csrf(self, session: Session) -> str:
        return hmac.new(self._csrf_key, session.nonce.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: Session | None, value: object) -> bool:
        return session is not None and isinstance(value, str) and hmac.compare_digest(self.csrf(session), value)
