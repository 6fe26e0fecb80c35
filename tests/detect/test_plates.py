"""Which OCR readings are Chinese number plates (detect/plates.py): valid, invalid and confusable."""

from __future__ import annotations

import pytest

from detect.plates import best_plate, read_plate


@pytest.mark.parametrize(
    ("raw", "text", "new_energy"),
    [
        ("浙A12345", "浙A12345", False),
        ("粤B8K3L2", "粤B8K3L2", False),
        ("京A·12345", "京A12345", False),  # the plate's middle dot
        ("沪 C 6R7T8", "沪C6R7T8", False),  # spaces
        ("浙a12345", "浙A12345", False),  # lower case
        ("浙A1234学", "浙A1234学", False),  # a driving school's
        ("苏E1234警", "苏E1234警", False),  # police
        ("鲁B1234挂", "鲁B1234挂", False),  # a trailer's
        ("沪AD12345", "沪AD12345", True),  # new-energy car
        ("京AF0A123", None, None),  # F then a letter, but then only 3 digits: not one
        ("粤BFA1234", "粤BFA1234", True),  # F, a letter, 4 digits
        ("粤B12345D", "粤B12345D", True),  # new-energy large vehicle
        ("浙A1234O", "浙A12340", False),  # confusable: O in the serial is 0
        ("浙A1I345", "浙A11345", False),  # confusable: I in the serial is 1
    ],
)
def test_plates_that_fit_the_national_format(raw: str, text: str | None, new_energy: bool | None) -> None:
    plate = read_plate(raw, 0.9)
    if text is None:
        assert plate is None
        return
    assert plate is not None
    assert (plate.text, plate.new_energy, plate.confidence) == (text, new_energy, 0.9)


@pytest.mark.parametrize(
    "raw",
    [
        "A12345",  # no province
        "浙12345",  # no city letter
        "浙A1234",  # too short
        "浙A123456",  # too long for a standard plate, and not new-energy
        "美A12345",  # not a province
        "浙I12345",  # I is never a city letter
        "浙O12345",  # nor O
        "浙112345",  # a digit for the city letter
        "浙A12#45",  # not a plate character
        "浙A12学45",  # 学 only at the end
        "沪AX12345",  # 8 characters without D/F where new-energy plates have them
        "粤B1234AD",  # a large new-energy plate's serial is digits
        "",
        "停车场",
    ],
)
def test_readings_that_are_not_plates(raw: str) -> None:
    assert read_plate(raw, 0.99) is None


def test_confidence_must_be_a_share_and_the_best_plate_wins() -> None:
    assert read_plate("浙A12345", 1.5) is None
    best = best_plate([("浙A12345", 0.7), ("浙A12346", 0.9), ("NO PARKING", 0.99), ("浙A1234", 0.95)])
    assert best is not None and best.text == "浙A12346"
    assert best_plate([("garbage", 0.9)]) is None
