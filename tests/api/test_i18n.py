"""Every string of the pages in both languages: no key missing in either, none defined twice, the same
placeholders in both, every key a template or script names exists, and English counts in the singular
when they are 1."""

from __future__ import annotations

import json
import re
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from api.http.i18n import CATALOGUE_DIR, LANGUAGES, SINGULAR, Translator, catalogue, catalogue_files
from tests.api.api_testkit import LiveServer

HTTP = Path(__file__).resolve().parents[2] / "api" / "http"


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def _without_singulars(strings: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in strings.items() if not k.endswith(SINGULAR)}


def test_both_languages_have_the_same_keys_and_placeholders() -> None:
    """The same keys but the singular forms of counts, which only a language with plurals has."""
    zh, en = _without_singulars(catalogue("zh-CN")), _without_singulars(catalogue("en"))
    assert sorted(set(zh) - set(en)) == [], "keys missing in en"
    assert sorted(set(en) - set(zh)) == [], "keys missing in zh-CN"
    for key in zh:
        assert _placeholders(zh[key]) == _placeholders(en[key]), key
        assert zh[key].strip() and en[key].strip(), f"{key} is empty"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_no_key_is_defined_twice(lang: str) -> None:
    seen: dict[str, str] = {}
    for part in catalogue_files(lang):
        for key in json.loads(part.read_text(encoding="utf-8")):
            assert key not in seen, f"{key} in both {seen[key]} and {part.name}"
            seen[key] = part.name
    assert {p.name for p in catalogue_files(lang)} == {p.name for p in (CATALOGUE_DIR / "en").glob("*.json")}


def test_every_key_the_pages_name_exists() -> None:
    """t("key") in templates and gp.t("key") in scripts: literal keys only (dynamic ones such as
    "status." ~ s are covered by the status/category/reason/role tests below)."""
    zh = catalogue("zh-CN")
    pattern = re.compile(r"""\bt\(\s*["']([a-z][a-z0-9_.-]*[a-z0-9_])["']""")
    sources = list((HTTP / "templates").rglob("*.html")) + list((HTTP / "static" / "js").rglob("*.js"))
    missing = {
        f"{src.relative_to(HTTP)}: {key}"
        for src in sources
        for key in pattern.findall(src.read_text(encoding="utf-8"))
        if key not in zh
    }
    assert not missing, sorted(missing)


def test_every_status_reason_role_and_category_has_a_name() -> None:
    from api.accounts.accounts import ROLES
    from api.cases import chalking, workflow

    zh = catalogue("zh-CN")
    keys = [f"status.{s}" for s in workflow.STATUSES]
    keys += [f"reason.{r}" for r in workflow.REJECT_REASONS]
    keys += [f"role.{r}" for r in ROLES]
    keys += [f"chalk.status.{s}" for s in chalking.MARK_STATUSES]
    keys += [f"category.{c}" for c in ("illegal_parking", "street_vending", "piled_debris")]
    assert [k for k in keys if k not in zh] == []


def test_every_object_kind_of_the_shipped_config_has_a_name() -> None:
    """The review card, a case and a task say what the object is in the page's language (小汽车),
    not as the model's kind (car)."""
    from detect.config import load_config

    config = load_config(Path(__file__).resolve().parents[2] / "configs" / "site.yaml")
    kinds = set(config.kinds.values()) | {k for c in config.categories.values() for k in c.whole_kinds}
    for lang in LANGUAGES:
        assert [k for k in sorted(kinds) if f"object.{k}" not in catalogue(lang)] == [], lang


def test_a_missing_key_shows_as_itself() -> None:
    assert Translator("en")("no.such.key") == "no.such.key"
    # a category of a site's own rules (a config may add one) shows by its name, not as a key
    assert Translator("zh-CN")("category.construction_waste") == "construction_waste"
    assert Translator("zh-CN")("category.piled_debris") != "piled_debris"
    # so does an object kind of a site's own model
    assert Translator("zh-CN")("object.scooter") == "scooter"
    assert Translator("zh-CN")("object.car") == "小汽车"
    assert Translator("xx").lang == "zh-CN"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_a_singular_form_is_a_counts_other_form_with_the_same_placeholders(lang: str) -> None:
    strings = catalogue(lang)
    for key, text in strings.items():
        if key.endswith(SINGULAR):
            base = key.removesuffix(SINGULAR)
            assert base in strings, f"{key} without {base}"
            assert "count" in _placeholders(text), f"{key}: a singular form is chosen by {{count}}"
            assert _placeholders(text) == _placeholders(strings[base]), key


# "{count} incidents", "{count} grid cells", "{count} entries": a noun after a count, in the plural
PLURAL_NOUN = re.compile(r"\{count\} (?:[a-z]+ )?[a-z]+s\b")


def test_every_english_count_of_a_noun_has_its_singular() -> None:
    """An English text counting nouns has a singular form (not "1 open cases", "1 incidents so
    far"); none reads "problem(s)"."""
    en = catalogue("en")
    assert [k for k, v in en.items() if "(s)" in v] == []
    plural = [k for k, v in en.items() if not k.endswith(SINGULAR) and PLURAL_NOUN.search(v)]
    assert plural, "the pattern finds the plural counts"
    assert [k for k in plural if k + SINGULAR not in en] == []


def test_a_count_of_one_takes_the_singular_in_english_only() -> None:
    en, zh = Translator("en"), Translator("zh-CN")
    assert en("upload.job.incidents", count=1) == "1 incident so far"
    assert en("upload.job.incidents", count=2) == "2 incidents so far"
    assert en("upload.job.incidents", count=0) == "0 incidents so far"
    assert en("cases.custody.intact", count=1) == "Chain intact, 1 entry"
    # Chinese nouns have one form
    assert zh("upload.job.incidents", count=1) == catalogue("zh-CN")["upload.job.incidents"].format(count=1)


def test_a_page_counts_one_grid_cell_and_two(make_server: Any, sqlite_url: str) -> None:
    """The admin grid page's message after an import: "Imported 1 grid cells" before."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    with server.browser("admin") as admin:
        for count, cells in ((1, "1 grid cell:"), (2, "2 grid cells:")):
            page = admin.get("/admin/grid", params={"done": "imported", "count": count, "added": count})
            assert page.status_code == 200
            assert f"Imported {cells} {count} new, 0 updated, 0 removed." in page.text, page.text
