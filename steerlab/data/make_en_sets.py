"""Regenerate the shipped real-English truth sets from their fact tables.

The recipes are those of Marks & Tegmark, "The Geometry of Truth": templated true/false
statements, one true and one false statement per entity (balanced classes).

* ``en_cities.csv`` / ``en_neg_cities.csv``: "The city of X is in Y." / "The city of X is not
  in Y." from ``en_city_country.csv`` (city, country, ``also_in``: countries that hold a
  well-known namesake, never drawn as the wrong country). The wrong country is drawn from the
  table's countries. Group: the city.
* ``en_larger_than.csv`` / ``en_smaller_than.csv``: "Seventy-two is larger than fifty-six." with
  number words fifty-one to ninety-nine; the same :data:`N_PAIRS` unordered pairs in both
  sets, each pair in both orders (one true, one false). Group: the unordered pair ("56|72"),
  so a pair's two statements stay on one side of a split and every test pair is unseen;
  single numbers do recur across pairs (49 numbers cannot be split into disjoint sets while
  keeping a few hundred pairs).
* ``en_sp_en_trans.csv``: 'The Spanish word "perro" means "dog".' from
  ``en_spanish_english.csv`` (``also_means``: other English meanings, never drawn as the
  wrong word). Group: the Spanish word.

Draws are seeded, so the output is byte-identical on every run; a test checks that the
shipped CSVs equal this module's output. After editing a fact table run::

    python -m steerlab.data.make_en_sets

Example:
    >>> number_word(72), number_word(90)
    ('seventy-two', 'ninety')
"""

from __future__ import annotations

import csv
import io
import itertools
import random
from importlib import resources
from pathlib import Path

N_PAIRS = 200
NUMBERS = range(51, 100)
_TENS = {5: "fifty", 6: "sixty", 7: "seventy", 8: "eighty", 9: "ninety"}
_UNITS = ("", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def number_word(n: int) -> str:
    """The English word of ``n`` in 51..99 ("seventy-two")."""
    if n not in NUMBERS:
        raise ValueError(f"number_word covers {NUMBERS.start}..{NUMBERS.stop - 1}, got {n}")
    tens, units = divmod(n, 10)
    return _TENS[tens] + (f"-{_UNITS[units]}" if units else "")


def _capitalised(text: str) -> str:
    return text[0].upper() + text[1:]


def _read_table(name: str) -> list[dict[str, str]]:
    text = (resources.files("steerlab.data") / name).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def _split_list(value: str) -> set[str]:
    return {item.strip() for item in value.split(";") if item.strip()}


def city_rows(negated: bool) -> list[dict[str, object]]:
    """cities / neg_cities rows (GoT columns: statement, label, city, country, correct_country)."""
    table = _read_table("en_city_country.csv")
    countries = sorted({row["country"] for row in table})
    rng = random.Random(f"en-cities-negated={negated}")
    template = "The city of {city} is not in {country}." if negated else "The city of {city} is in {country}."
    rows = []
    for row in table:
        city, right = row["city"], row["country"]
        excluded = _split_list(row["also_in"]) | {right}
        wrong = rng.choice([c for c in countries if c not in excluded])
        # a negated statement is true when it names a wrong country
        for country, label in ((right, int(not negated)), (wrong, int(negated))):
            statement = _capitalised(template.format(city=city, country=country))
            rows.append({"statement": statement, "label": label, "city": city, "country": country,
                         "correct_country": right})
    return rows


def number_pairs() -> list[tuple[int, int]]:
    """The :data:`N_PAIRS` unordered pairs ``(smaller, larger)`` both comparison sets use."""
    pairs = list(itertools.combinations(NUMBERS, 2))
    return sorted(random.Random("en-number-pairs").sample(pairs, N_PAIRS))


def comparison_rows(relation: str) -> list[dict[str, object]]:
    """larger_than / smaller_than rows: statement, label, n1, n2, pair."""
    if relation not in ("larger", "smaller"):
        raise ValueError(f"relation must be 'larger' or 'smaller', got {relation!r}")
    rows = []
    for low, high in number_pairs():
        for first, second in ((high, low), (low, high)):
            holds = first > second if relation == "larger" else first < second
            statement = f"{_capitalised(number_word(first))} is {relation} than {number_word(second)}."
            rows.append({"statement": statement, "label": int(holds), "n1": first, "n2": second,
                         "pair": f"{low}|{high}"})
    return rows


def translation_rows() -> list[dict[str, object]]:
    """sp_en_trans rows: statement, label, spanish, english, correct_english."""
    table = _read_table("en_spanish_english.csv")
    english = [row["english"] for row in table]
    rng = random.Random("en-sp-en-trans")
    rows = []
    for row in table:
        spanish, right = row["spanish"], row["english"]
        excluded = _split_list(row["also_means"]) | {right}
        wrong = rng.choice([word for word in english if word not in excluded])
        for word, label in ((right, 1), (wrong, 0)):
            rows.append({"statement": f'The Spanish word "{spanish}" means "{word}".', "label": label,
                         "spanish": spanish, "english": word, "correct_english": right})
    return rows


def build_all() -> dict[str, list[dict[str, object]]]:
    """File name -> rows, for every generated set."""
    return {"en_cities.csv": city_rows(negated=False), "en_neg_cities.csv": city_rows(negated=True),
            "en_larger_than.csv": comparison_rows("larger"), "en_smaller_than.csv": comparison_rows("smaller"),
            "en_sp_en_trans.csv": translation_rows()}


def to_csv_text(rows: list[dict[str, object]]) -> str:
    """The CSV text of ``rows`` (header from the first row, ``\\n`` line ends)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_all(folder: str | Path | None = None) -> list[Path]:
    """Write every generated set to ``folder`` (default: this package's folder); the paths written."""
    folder = Path(folder) if folder is not None else Path(__file__).parent
    written = []
    for name, rows in build_all().items():
        path = folder / name
        path.write_text(to_csv_text(rows), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_all():
        print(path)
