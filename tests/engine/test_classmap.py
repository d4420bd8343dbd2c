"""The engine's class-map parser against the table the web page's parser is tested with."""

from __future__ import annotations

import pytest

from gradcam3d.classmap import parse_class_map
from gradcam3d.errors import Refusal
from tests.class_map_cases import CLASS_MAP_CASES


@pytest.mark.parametrize(("text", "num_classes", "expected"), CLASS_MAP_CASES)
def test_engine_class_map_parser_follows_the_shared_table(
    text: str, num_classes: int, expected: list[str] | str
) -> None:
    if isinstance(expected, str):
        with pytest.raises(Refusal) as refused:
            parse_class_map(text, num_classes=num_classes)
        assert expected in str(refused.value)
        assert refused.value.code == "bad_labels"
    else:
        assert parse_class_map(text, num_classes=num_classes) == expected


def test_the_table_covers_every_separator_and_both_layouts() -> None:
    accepted = [text for text, _, expected in CLASS_MAP_CASES if not isinstance(expected, str)]
    for separator in (":", "=", ",", "\t"):
        assert any(f"0{separator}" in text for text in accepted), separator
    assert any(isinstance(expected, str) for _, _, expected in CLASS_MAP_CASES)
