"""One table of class-map cases, for every parser of the class-map grammar.

The web page (analyses.library.services.parse_class_map) and the engine's `--labels`
(gradcam3d.classmap.parse_class_map) must accept exactly the same text and give the same
labels, so both are tested with these cases. Plain data, importing nothing.

Each case is (text, num_classes, expected): `expected` is the list of labels (one per class,
"" where a class has none) or, for a refused map, a str that the error message contains.
"""

from __future__ import annotations

CLASS_MAP_CASES: list[tuple[str, int, list[str] | str]] = [
    # -- accepted: `index<sep>label` on every line, <sep> one of ':', '=', ',' or a tab
    ("0: Basketball\n1: Diving\n", 2, ["Basketball", "Diving"]),
    ("0=Basketball\n1=Diving", 2, ["Basketball", "Diving"]),
    ("0,Basketball\n1,Diving", 2, ["Basketball", "Diving"]),
    ("0\tBasketball\n1\tDiving", 2, ["Basketball", "Diving"]),
    ("0 : Basketball\n1 =Diving\n", 2, ["Basketball", "Diving"]),  # spaces around the separator
    ("1: Diving\n0: Basketball\n", 2, ["Basketball", "Diving"]),  # any order
    ("0: Basketball\n2: Diving\n", 3, ["Basketball", "", "Diving"]),  # gaps are unlabelled
    ("0: Basketball\n", 3, ["Basketball", "", ""]),  # fewer labels than classes
    ("0: Apply Eye Makeup\n", 1, ["Apply Eye Makeup"]),  # labels keep inner spaces
    ("0: a: b\n", 1, ["a: b"]),  # only the first separator splits
    ("0: Basketball\r\n1: Diving\r\n", 2, ["Basketball", "Diving"]),  # Windows line ends
    ("# UCF101 subset\n\n0: Basketball\n\n# done\n1: Diving\n", 2, ["Basketball", "Diving"]),
    ("  0: Basketball  \n", 1, ["Basketball"]),
    ("0: Ballon d'Or ⚽\n", 1, ["Ballon d'Or ⚽"]),
    # -- accepted: one label per line, no indices (line k is class k)
    ("Basketball\nDiving\n", 2, ["Basketball", "Diving"]),
    ("Basketball\n\nDiving\n", 3, ["Basketball", "Diving", ""]),  # blank lines do not count
    ("0 Basketball\n", 1, ["0 Basketball"]),  # a space is no separator: a plain label
    ("", 2, ["", ""]),  # an empty map labels nothing
    ("# only a comment\n", 1, [""]),
    # -- refused
    ("0: Basketball\nDiving\n", 2, "Class map line 2 has no index"),  # indices on some lines only
    ("0:\n", 1, "Class map line 1: class 0 has no label."),
    ("0: Basketball\n0: Diving\n", 2, "Class map line 2: class 0 appears twice."),
    ("2: Diving\n", 2, "The class map names class 2, but the model has 2 classes (indices 0 to 1)."),
    ("Basketball\nDiving\nSurfing\n", 2, "The class map names class 2, but the model has 2 classes"),
    ("100000: Far\n", 200_000, "class 100000 is far beyond any model's classes (at most 99,999)."),
    ("12345678901234567890: Far\n", 5, "class 123456789012… is far beyond any model's classes"),
    ("0: " + "x" * 101 + "\n", 1, "The label of class 0 is longer than 100 characters."),
    ("x" * 101 + "\n", 1, "The label of class 0 is longer than 100 characters."),
]
