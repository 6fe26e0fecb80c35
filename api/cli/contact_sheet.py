"""The contact sheet `gridpatrol detect` writes beside incidents.jsonl: index.html, one card per incident with
its annotated frame and crop, readable offline (no external resources, every text escaped)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

SHEET_NAME = "index.html"

_STYLE = """
body { font-family: sans-serif; margin: 1rem; background: #f4f4f4; color: #222; }
h1 { font-size: 1.3rem; }
.cards { display: flex; flex-wrap: wrap; gap: 1rem; }
.card { background: #fff; border: 1px solid #ccc; border-radius: 4px; padding: .5rem; width: 36rem; }
.card img { max-height: 14rem; max-width: 100%; vertical-align: top; margin: 0 .25rem .25rem 0; }
.card .crop { max-width: 10rem; }
dl { display: grid; grid-template-columns: max-content auto; gap: .1rem .6rem; margin: .25rem 0; }
dl { font-size: .9rem; }
dt { color: #666; }
dd { margin: 0; }
"""


def _time(record: Mapping[str, Any], which: str) -> str:
    wall = record.get(f"{which}_seen_wall")
    ts = record.get(f"{which}_seen_ts")
    offset = f"{float(ts):.1f} s" if isinstance(ts, int | float) else "?"
    return f"{wall} ({offset})" if wall else offset


def _image(out_dir: Path, record: Mapping[str, Any], role: str) -> str:
    for evidence in record.get("evidence") or []:
        if evidence.get("role") == role and evidence.get("path"):
            src = quote(Path(str(evidence["path"])).as_posix())
            if not (out_dir / str(evidence["path"])).is_file():
                return ""
            alt = f"{role} image of incident {record.get('id', '')}"
            return f'<img class="{escape(role)}" src="{escape(src)}" alt="{escape(alt)}">'
    return ""


def _card(out_dir: Path, record: Mapping[str, Any]) -> str:
    median, best = record.get("confidence_median"), record.get("confidence_max")
    confidence = (
        f"{float(median):.2f} median, {float(best):.2f} max"
        if isinstance(median, int | float) and isinstance(best, int | float)
        else "?"
    )
    rows = [
        ("category", str(record.get("category", ""))),
        ("object", str(record.get("object_kind", ""))),
        ("camera", str(record.get("source_id", ""))),
        ("zone", str(record.get("zone_id") or "-")),
        ("first seen", _time(record, "first")),
        ("last seen", _time(record, "last")),
        ("confidence", confidence),
        ("id", str(record.get("id", ""))),
    ]
    facts = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in rows)
    images = _image(out_dir, record, "annotated") + _image(out_dir, record, "crop")
    return f'<div class="card"><div>{images}</div><dl>{facts}</dl></div>'


def write_contact_sheet(out_dir: Path, records: Iterable[Mapping[str, Any]], *, title: str) -> Path:
    """Write out_dir/index.html for these incidents (Incident.to_json dicts; a later record of the same id
    replaces an earlier one, as live updates write them). Image paths are relative to out_dir."""
    latest: dict[str, Mapping[str, Any]] = {}
    for record in records:
        latest[str(record.get("id", len(latest)))] = record
    cards = "\n".join(_card(out_dir, record) for record in latest.values())
    body = cards if latest else "<p>No incidents.</p>"
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body><h1>{escape(title)}: {len(latest)} incident(s)</h1>\n"
        f'<div class="cards">\n{body}\n</div></body></html>\n'
    )
    path = out_dir / SHEET_NAME
    path.write_text(page, encoding="utf-8")
    return path
