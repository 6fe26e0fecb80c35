"""One catalogue for every string a page shows, in zh-CN (the default) and English.

The catalogue of a language is every api/http/i18n/<lang>/*.json file (one per part of the pages:
common.json, review.json, ...), flat maps of dotted keys to text; `{name}` placeholders are filled
with str.format. A key missing in either language, or defined twice, is a test failure
(tests/api/test_i18n.py), and a key missing at run time shows as the key itself (never a 500).

Counts: a text given a `count` is the plural ("{count} incidents"); a language whose nouns have a
singular gives that form as a key of its own, the text's key plus SINGULAR ("upload.job.incidents#one":
"{count} incident"), used when the count is 1. zh-CN has no such keys: its nouns have one form. A text
with two counts is put together from texts of one count each (map.summary). common.js's gp.t follows
the same rule.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from functools import cache
from pathlib import Path

log = logging.getLogger(__name__)

CATALOGUE_DIR = Path(__file__).with_name("i18n")
LANGUAGES = ("zh-CN", "en")
DEFAULT_LANGUAGE = "zh-CN"
LANGUAGE_COOKIE = "gp_lang"
# the suffix of a key's singular form: the text shown when its `count` is 1 (English)
SINGULAR = "#one"


@cache
def catalogue(lang: str) -> Mapping[str, str]:
    """The strings of one language (read once)."""
    strings: dict[str, str] = {}
    for part in catalogue_files(lang):
        with part.open(encoding="utf-8") as fh:
            strings.update({str(k): str(v) for k, v in json.load(fh).items()})
    return strings


def catalogue_files(lang: str) -> list[Path]:
    return sorted((CATALOGUE_DIR / lang).glob("*.json"))


def pick_language(cookie: str | None, accept_language: str | None = None) -> str:
    """The language a page is shown in: the user's switch (cookie), else zh-CN.

    Accept-Language is not followed on purpose: district machines often run English browsers while
    their users read Chinese; the switch on every page is one click."""
    return cookie if cookie in LANGUAGES else DEFAULT_LANGUAGE


# keys whose last part is a name a site's config gives (its rules' categories, its model's object kinds):
# without a text of its own, the name itself is shown, not the catalogue key
SITE_NAMED = ("category.", "object.")


class Translator:
    """t("key", name=value): the text of a key in one language."""

    def __init__(self, lang: str) -> None:
        self.lang = lang if lang in LANGUAGES else DEFAULT_LANGUAGE
        self._strings = catalogue(self.lang)

    def __call__(self, key: str, **values: object) -> str:
        if values.get("count") == 1 and key + SINGULAR in self._strings:
            key += SINGULAR
        text = self._strings.get(key)
        if text is None:
            if key.startswith(SITE_NAMED):  # a name of the site's own config: shown as it is
                return key.split(".", 1)[1]
            log.warning("i18n: no %s text for %r", self.lang, key)
            return key
        return text.format(**values) if values else text

    def has(self, key: str) -> bool:
        return key in self._strings

    def subset(self, prefix: str) -> dict[str, str]:
        """Every key under a prefix (handed to a page's script as JSON data, never as code)."""
        return {k: v for k, v in self._strings.items() if k.startswith(prefix)}
