"""The UI's words in English, Korean and Chinese (``pipeline/ingest/ui/i18n/<language>.yaml``).

The same languages as the message templates (:data:`pipeline.domain.integrations.Language`); a word missing from a
pack falls back to English, and a test keeps the packs' keys equal. The language is the ``lang`` query
parameter (remembered in a cookie), else the cookie, else the browser's Accept-Language, else
``ui.default_language``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

PACKS = Path(__file__).parent / "i18n"
#: Each language by its own name, as the language menu shows it.
LANGUAGES = {"en": "English", "ko": "한국어", "zh": "中文"}
DEFAULT = "en"
COOKIE = "ap_lang"


@cache
def _pack(language: str) -> dict[str, str]:
    return yaml.safe_load((PACKS / f"{language}.yaml").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@cache
def words(language: str) -> dict[str, str]:
    return _pack(language) if language == DEFAULT else {**_pack(DEFAULT), **_pack(language)}


def translator(language: str) -> Any:
    pack, own = words(language), _pack(language)

    def t(word: str, **values: Any) -> str:
        """``word`` in this language; with ``n=1``, its ``<word>_one`` form where the language has one."""
        text = own.get(f"{word}_one") if values.get("n") == 1 else None
        text = text or pack.get(word, word)
        return text.format(**values) if values else text

    return t


def _accepted(header: str) -> list[str]:
    """Accept-Language's languages, best first (``ko-KR,ko;q=0.9,en;q=0.8`` -> ko, ko, en)."""
    ranked = []
    for position, item in enumerate(header.split(",")):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        ranked.append((-quality, position, tag.split("-")[0].lower()))
    return [tag for _, _, tag in sorted(ranked)]


def choose(request: web.Request, default: str) -> str:
    for candidate in (request.query.get("lang"), request.cookies.get(COOKIE)):
        if candidate in LANGUAGES:
            return candidate
    for tag in _accepted(request.headers.get("Accept-Language", "")):
        if tag in LANGUAGES:
            return tag
    return default
