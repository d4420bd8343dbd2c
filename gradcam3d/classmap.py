"""Class maps: which label each class index has, from the text a user wrote.

This is the one implementation of the grammar: the engine's `--labels` and the web page
(analyses/library/services.py) both use it, so they accept exactly the same text;
tests/class_map_cases.py holds the cases both are tested with. It imports only the standard
library and gradcam3d.errors, so the web app can import it without loading the engine. Blank lines and `#` comments are ignored. Either every line
is `index<sep>label` with <sep> one of `:`, `=`, `,` or a tab (the original tool's ClassMap.txt
used `index: label`), or no line has an index and line k (from 0) is the label of class k.
"""

from __future__ import annotations

import re

from gradcam3d.errors import Refusal

_INDEXED_LINE = re.compile(r"^\s*(\d+)\s*[:=,\t]\s*(.*?)\s*$")
# No video classifier has anywhere near this many classes; a class map naming a larger index
# is refused before any list is built from it (a 20-byte map could otherwise ask for 10**10
# labels). The model's own class count is the real bound, applied by `parse_class_map`.
MAX_CLASS_INDEX = 99_999
MAX_CLASS_MAP_LINES = MAX_CLASS_INDEX + 1
MAX_LABEL_LENGTH = 100


class ClassMapRefused(Refusal):
    def __init__(self, message: str) -> None:
        super().__init__(message, code="bad_labels")


def class_map_entries(text: str) -> dict[int, str]:
    """Labels by class index. Checks the syntax, duplicates, label lengths and index sizes
    only: the model's class count is checked by `parse_class_map`."""
    lines = [line.strip() for line in (text or "").replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    lines = [line for line in lines if line and not line.startswith("#")]
    if len(lines) > MAX_CLASS_MAP_LINES:
        raise ClassMapRefused(
            f"The class map has {len(lines):,} lines; at most {MAX_CLASS_MAP_LINES:,} classes are supported."
        )
    indexed = [_INDEXED_LINE.match(line) for line in lines]
    if indexed and all(indexed):
        return _indexed_entries([match for match in indexed if match is not None])
    if any(indexed):
        first_plain = next(number for number, match in enumerate(indexed, start=1) if not match)
        raise ClassMapRefused(
            f"Class map line {first_plain} has no index: use “index: label” on every line, "
            "or one label per line with no indices."
        )
    entries = dict(enumerate(lines))
    _check_label_lengths(entries)
    return entries


def _indexed_entries(matches: list[re.Match[str]]) -> dict[int, str]:
    entries: dict[int, str] = {}
    for line_number, match in enumerate(matches, start=1):
        digits, label = match.group(1), match.group(2).strip()
        if len(digits) > len(str(MAX_CLASS_INDEX)) or int(digits) > MAX_CLASS_INDEX:
            shown = digits if len(digits) <= 12 else digits[:12] + "…"
            raise ClassMapRefused(
                f"Class map line {line_number}: class {shown} is far beyond any model's classes "
                f"(at most {MAX_CLASS_INDEX:,})."
            )
        index = int(digits)
        if not label:
            raise ClassMapRefused(f"Class map line {line_number}: class {index} has no label.")
        if index in entries:
            raise ClassMapRefused(f"Class map line {line_number}: class {index} appears twice.")
        entries[index] = label
    _check_label_lengths(entries)
    return entries


def _check_label_lengths(entries: dict[int, str]) -> None:
    for index, label in entries.items():
        if len(label) > MAX_LABEL_LENGTH:
            raise ClassMapRefused(f"The label of class {index} is longer than {MAX_LABEL_LENGTH} characters.")


def parse_class_map(text: str, *, num_classes: int) -> list[str]:
    """The labels of a model with `num_classes` classes: a list of that length, "" where a class
    has no label. Refuses (ClassMapRefused, code "bad_labels") a malformed map or one naming a
    class the model does not have."""
    entries = class_map_entries(text)
    if entries and max(entries) >= num_classes:
        highest = max(entries)
        raise ClassMapRefused(
            f"The class map names class {highest}, but the model has {num_classes} classes "
            f"(indices 0 to {num_classes - 1})."
        )
    return [entries.get(index, "") for index in range(num_classes)]
