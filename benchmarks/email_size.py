"""Size of the heaviest digest (all 13 sections, busy day) against Gmail's ~102 KB clip,
and what inlining MJML's own reset CSS would cost.  Run: .venv/bin/python -m benchmarks.email_size
"""

from __future__ import annotations

import logging
import time

from premailer import Premailer

from benchmarks.busy_day import busy_edition
from digest.config import load_settings
from digest.render import GMAIL_CLIP_BYTES, Personal, Renderer, personalize
from digest.select import select_digest


class InlineEverything(Renderer):
    """The naive pipeline: premailer over MJML's output, its reset CSS included."""

    def inline_css(self, html_doc: str) -> str:
        html_doc = html_doc.replace("</head>", f"<style>{self.css}</style></head>", 1)
        return Premailer(html_doc, allow_network=False, strip_important=False, keep_style_tags=False,
                         remove_classes=True, cssutils_logging_level=logging.CRITICAL,
                         disable_validation=True).transform(pretty_print=False)


def main() -> None:
    settings = load_settings(env={})
    digest_edition = busy_edition()
    digest = select_digest(digest_edition, [], settings)
    person = Personal("Alex Reader", "x" * 60)  # a manage token is about 60 characters
    for label, renderer in (("ours (MJML reset left alone)", Renderer(settings)),
                            ("naive (reset inlined too)", InlineEverything(settings))):
        renderer.edition(digest_edition).full_render(digest)  # warm up: templates, CSS parsing
        start = time.perf_counter()
        html = personalize(renderer.edition(digest_edition).full_render(digest), person.substitutions()).html
        ms = (time.perf_counter() - start) * 1000
        size = len(html.encode("utf-8"))
        print(f"{label:<30} {size:>7,} bytes  {size / GMAIL_CLIP_BYTES:5.1%} of Gmail's clip  "
              f"render {ms:6.0f} ms  ({len(digest.stories)} stories)")


if __name__ == "__main__":
    main()
