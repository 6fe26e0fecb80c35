"""The service's own history notes, read back into their parts and shown in the page's language; any
other note (a person's, an older wording) is shown as it is stored."""

from __future__ import annotations

import pytest

from api.cases.history_notes import (
    created_note,
    note_parts,
    recategorized_note,
    reopened_note,
    seen_before_close_note,
    undo_note,
)
from api.http.i18n import Translator
from api.http.pages.cases import history_note

CASES = [
    # (action, stored note, en, zh-CN)
    ("created", created_note("inc-1a"), "From incident inc-1a", "来自事件 inc-1a"),
    ("reopened", reopened_note("inc-2b"), "Seen again (incident inc-2b)", "再次发现（事件 inc-2b）"),
    (
        "seen_before_close",
        seen_before_close_note("inc-4d"),
        "Seen before it was closed (incident inc-4d)",
        "结案前已发现（事件 inc-4d）",
    ),
    ("undo", undo_note("rejected"), "Undid: Rejected", "已撤销：驳回"),
    ("recategorized", recategorized_note("piled_debris", "my_rule"), None, None),
    # not the service's shape: as stored
    ("created", "from the old system", "from the old system", "from the old system"),
    ("undo", "undid", "undid", "undid"),
    ("filed", "incident inc-3c", "incident inc-3c", "incident inc-3c"),
    ("created", None, None, None),
]


@pytest.mark.parametrize(("action", "stored", "en", "zh"), CASES)
def test_history_notes_in_each_language(
    action: str, stored: str | None, en: str | None, zh: str | None
) -> None:
    if action == "recategorized":  # a site's own category is shown by its name
        en, zh = "Piled debris → my_rule", f"{Translator('zh-CN')('category.piled_debris')} → my_rule"
    assert history_note(action, stored, Translator("en")) == en
    assert history_note(action, stored, Translator("zh-CN")) == zh


def test_the_parts_of_a_created_note() -> None:
    assert note_parts("created", "incident inc-9") == {"incident": "inc-9"}
    assert note_parts("created", "incident a b") is None
