"""Chinese number plates: which OCR readings are plates (issue 12).

The national format (GA 36): a province's one-character abbreviation, the issuing city's letter, then
  - 5 characters, letters and digits (a standard plate: 浙A12345, 粤B8K3L2), the last one possibly
    学 (a driving school's), 警 (police) or 挂 (a trailer's): 浙A1234学;
  - 6 for new-energy plates: D or F, a letter or digit, 4 digits for a car (沪AD12345, 沪AF0A12 is
    not one), or 5 digits then D or F for a large vehicle (粤B12345D).
The letters I and O are never used (they read as 1 and 0), so an OCR's I and O in the serial are
taken as 1 and 0; in the city letter's place they make the reading no plate. Separators an OCR
reads from the plate's middle dot, spaces and hyphens are dropped. Anything else is not a plate and
is dropped: a wrong reading on a case is worse than none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I, no O
_ALNUM = f"[{LETTERS}0-9]"
_STANDARD = re.compile(f"[{PROVINCES}][{LETTERS}]{_ALNUM}{{4}}(?:{_ALNUM}|[学警挂])")
_NEW_ENERGY_CAR = re.compile(f"[{PROVINCES}][{LETTERS}][DF]{_ALNUM}[0-9]{{4}}")
_NEW_ENERGY_LARGE = re.compile(f"[{PROVINCES}][{LETTERS}][0-9]{{5}}[DF]")
_SEPARATORS = re.compile(r"[\s·•・.\-_:]")
_SERIAL_FIXES = str.maketrans({"I": "1", "O": "0"})


@dataclass(frozen=True, slots=True)
class Plate:
    """A plate read: its text (province, city letter, serial; no separator), the OCR's confidence,
    and whether it is a new-energy plate."""

    text: str
    confidence: float
    new_energy: bool


def read_plate(raw: str, confidence: float) -> Plate | None:
    """The plate in an OCR reading, or None when the reading does not fit the national format."""
    text = _SEPARATORS.sub("", raw).upper()
    if len(text) not in (7, 8) or not 0.0 <= confidence <= 1.0:
        return None
    text = text[:2] + text[2:].translate(_SERIAL_FIXES)
    if len(text) == 8 and (_NEW_ENERGY_CAR.fullmatch(text) or _NEW_ENERGY_LARGE.fullmatch(text)):
        return Plate(text, confidence, new_energy=True)
    if len(text) == 7 and _STANDARD.fullmatch(text):
        return Plate(text, confidence, new_energy=False)
    return None


def best_plate(readings: list[tuple[str, float]]) -> Plate | None:
    """Of several readings (OCR lines, or the same plate over several frames), the most confident
    one that is a plate."""
    plates = [p for p in (read_plate(text, conf) for text, conf in readings) if p is not None]
    return max(plates, key=lambda p: p.confidence, default=None)
