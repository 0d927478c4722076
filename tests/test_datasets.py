"""Built-in datasets, user-data loaders and their error messages."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

import steerlab.datasets as sd
from steerlab.datasets import ConceptDataset, ContrastPairs, DatasetFormatError, QADataset
from steerlab.world.world import generate_world

GOT_CITIES = Path("/work/shared/data/got_cities.csv")
TRUTH_SETS = ["demo/cities", "demo/neg_cities", "demo/cities_gap", "demo/cities_new_template",
              "demo/larger_than", "demo/people", "demo/objects"]


EN_TRUTH_SETS = ["en/cities", "en/neg_cities", "en/larger_than", "en/smaller_than", "en/sp_en_trans", "en/facts"]


@pytest.mark.parametrize("name", [n for n in sd.available() if not n.endswith("/qa")])
def test_builtin_sets_are_balanced_typed_and_split_by_entity(name):
    train, test = sd.load(name, "train"), sd.load(name, "test")
    for ds in (train, test):
        assert isinstance(ds, ConceptDataset)
        assert ds.labels.dtype == np.int64 and set(ds.labels.tolist()) == {0, 1}
        assert abs(ds.labels.mean() - 0.5) < 0.1
        assert len(ds.groups) == len(ds) > 20
        assert f"n={len(ds)}" in repr(ds) and name in repr(ds)
        if ds.spans is not None:
            for text, (start, end) in zip(ds.texts, ds.spans):
                assert 0 <= start < end <= len(text)
    assert not set(train.groups) & set(test.groups), "an entity leaks between train and test"


@pytest.mark.parametrize("name", TRUTH_SETS + EN_TRUTH_SETS)
def test_truth_sets_have_verdict_prompts_matching_the_world(name):
    ds = sd.load(name, "test")
    assert ds.verdict_words == ("true", "false")
    assert len(ds.verdict_prompts) == len(ds)
    assert all(t.startswith(ds.texts[i][: ds.spans[i][1]]) for i, t in enumerate(ds.verdict_prompts))


def test_city_labels_agree_with_fact_table():
    w = generate_world(0)
    for split in ("train", "test"):
        for neg in (False, True):
            ds = sd.load("demo/neg_cities" if neg else "demo/cities", split)
            for text, label in zip(ds.texts, ds.labels):
                words = text.split()
                in_country = w.cities[words[0]] == words[-2]
                assert label == (not in_country if neg else in_country), text
    test_cities = set(sd.load("demo/cities", "test").groups)
    assert test_cities == set(w.cities_with_role("heldout"))


def test_larger_than_test_pairs_are_heldout_and_correct():
    w = generate_world(0)
    ds = sd.load("demo/larger_than", "test")
    for text, label in zip(ds.texts, ds.labels):
        a, b = int(text.split()[0]), int(text.split()[4])
        assert w.number_pair_is_heldout(a, b)
        assert label == int(a > b)


def test_qa_dataset_covers_rare_conflicted_and_unseen():
    w = generate_world(0)
    train, test = sd.load("demo/qa", "train"), sd.load("demo/qa", "test")
    assert isinstance(test, QADataset)
    assert not set(train.groups) & set(test.groups)
    assert len(train) + len(test) > 500
    roles = set(test.roles)
    assert {"rare", "conflicted", "unseen", "heldout"} <= roles
    assert all(t.endswith("? a :") for t in test.texts)
    assert not set(test.groups) & w.qa_trained_cities
    for entity, kind, answer in zip(test.groups, test.kinds, test.answers):
        assert answer == (w.cities[entity] if kind == "city" else w.people[entity].job)
    seen = test.frequency[test.frequency > 0]
    assert seen.max() / seen.min() > 100 and (test.frequency == 0).sum() > 20


def test_load_is_deterministic():
    a, b = sd.load("demo/cities_gap", "test"), sd.load("demo/cities_gap", "test")
    assert a.texts == b.texts and (a.labels == b.labels).all()


def test_unknown_name_and_split_errors():
    with pytest.raises(KeyError, match="available"):
        sd.load("demo/nope")
    with pytest.raises(ValueError, match="'train' or 'test'"):
        sd.load("demo/cities", split="validation")


def _both(name):
    """train + test of a built-in set: (texts, {text: label})."""
    train, test = sd.load(name, "train"), sd.load(name, "test")
    texts = train.texts + test.texts
    return texts, dict(zip(texts, np.concatenate([train.labels, test.labels]).tolist()))


def test_en_facts():
    train, test = sd.load("en/facts", "train"), sd.load("en/facts", "test")
    assert len(train) + len(test) >= 300
    assert not set(train.groups) & set(test.groups)
    _, rows = _both("en/facts")
    assert rows["The capital of France is Paris."] == 1
    assert rows["The capital of France is not Paris."] == 0
    assert rows["Water freezes at 0 degrees Celsius."] == 1
    with pytest.raises(KeyError, match="en/facts"):  # the old name is gone; the error lists the new one
        sd.load("english/facts")


@pytest.mark.parametrize(("name", "low", "high"), [("en/cities", 1000, 1200), ("en/neg_cities", 1000, 1200),
                                                   ("en/larger_than", 400, 400), ("en/smaller_than", 400, 400),
                                                   ("en/sp_en_trans", 400, 500)])
def test_en_truth_sets_sizes_balance_and_no_duplicates(name, low, high):
    train, test = sd.load(name, "train"), sd.load(name, "test")
    texts = train.texts + test.texts
    assert low <= len(texts) <= high
    assert len(set(texts)) == len(texts), "a statement appears twice"
    labels = np.concatenate([train.labels, test.labels])
    assert labels.sum() * 2 == len(labels)
    for ds in (train, test):  # one true and one false statement per entity
        for group in set(ds.groups):
            assert sorted(ds.labels[[i for i, g in enumerate(ds.groups) if g == group]].tolist()) == [0, 1], group
    assert 0.2 < len(test) / len(texts) < 0.4
    assert ds.verdict_words == ("true", "false") and ds.domain == name.split("/")[1]


def test_en_shipped_csvs_equal_their_generator():
    from importlib import resources

    from steerlab.data import make_en_sets

    for file_name, rows in make_en_sets.build_all().items():
        shipped = (resources.files("steerlab.data") / file_name).read_text(encoding="utf-8")
        assert shipped == make_en_sets.to_csv_text(rows), f"{file_name}: run python -m steerlab.data.make_en_sets"


def test_en_cities_spot_checks_and_wrong_countries():
    _, rows = _both("en/cities")
    for statement in ("The city of Lodz is in Poland.", "The city of Kyoto is in Japan.",
                      "The city of Toronto is in Canada.", "The city of Marrakesh is in Morocco.",
                      "The city of Tbilisi is in Georgia.", "The city of Hyderabad is in India.",
                      "The city of Atlanta is in the United States.", "The city of Cusco is in Peru."):
        assert rows[statement] == 1, statement
    _, negated = _both("en/neg_cities")
    assert negated["The city of Lodz is not in Poland."] == 0
    table = {r["city"]: r for r in csv.DictReader(
        (Path(sd.__file__).parents[1] / "data" / "en_city_country.csv").open(encoding="utf-8"))}
    for statement, label in list(rows.items()) + list(negated.items()):
        city, country = re.fullmatch(r"The city of (.+) is (?:not )?in (.+)\.", statement).groups()
        right = country == table[city]["country"]
        assert label == (right != (" not in " in statement)), statement
        if not right:  # a wrong country never holds a well-known namesake (Atlanta, Georgia)
            assert country not in table[city]["also_in"].split(";"), statement
    # the two sets split alike: neg_cities' test cities were never training cities of cities
    assert set(sd.load("en/cities", "test").groups) == set(sd.load("en/neg_cities", "test").groups)


def _number(word):
    tens = {"fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
    units = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9}
    head, _, tail = word.lower().partition("-")
    return tens[head] + (units[tail] if tail else 0)


@pytest.mark.parametrize("relation", ["larger", "smaller"])
def test_en_number_comparisons_are_correct_and_grouped_by_pair(relation):
    name = f"en/{relation}_than"
    for split in ("train", "test"):
        ds = sd.load(name, split)
        for text, label, group in zip(ds.texts, ds.labels, ds.groups):
            first, second = re.fullmatch(rf"(\S+) is {relation} than (\S+)\.", text).groups()
            a, b = _number(first), _number(second)
            assert 51 <= min(a, b) and max(a, b) <= 99 and a != b
            assert label == ((a > b) if relation == "larger" else (a < b)), text
            assert group == f"{min(a, b)}|{max(a, b)}"
    _, rows = _both(name)
    assert rows["Fifty-four is larger than fifty-one." if relation == "larger"
                else "Fifty-one is smaller than fifty-four."] == 1
    assert set(sd.load("en/larger_than", "test").groups) == set(sd.load("en/smaller_than", "test").groups)


def test_en_sp_en_trans_spot_checks_and_wrong_words():
    _, rows = _both("en/sp_en_trans")
    for spanish, english in (("perro", "dog"), ("manzana", "apple"), ("largo", "long"), ("queso", "cheese"),
                             ("otoño", "autumn"), ("siete", "seven"), ("hierro", "iron")):
        assert rows[f'The Spanish word "{spanish}" means "{english}".'] == 1
    table = {r["spanish"]: r for r in csv.DictReader(
        (Path(sd.__file__).parents[1] / "data" / "en_spanish_english.csv").open(encoding="utf-8"))}
    english_words = {r["english"] for r in table.values()}
    for statement, label in rows.items():
        spanish, english = re.fullmatch(r'The Spanish word "(.+)" means "(.+)"\.', statement).groups()
        assert english in english_words
        assert label == (english == table[spanish]["english"]), statement
        # an alternative meaning ("mujer" also means "wife") is never drawn as the false word
        assert english not in table[spanish]["also_means"].split(";"), statement


def test_en_qa_questions_answers_and_groups():
    train, test = sd.load("en/qa", "train"), sd.load("en/qa", "test")
    assert isinstance(test, QADataset) and 300 <= len(train) + len(test) <= 600
    assert not set(train.groups) & set(test.groups)
    questions = train.texts + test.texts
    assert len(set(questions)) == len(questions)
    assert set(train.kinds) == set(test.kinds) == {"capital", "currency", "language", "continent"}
    answer = dict(zip(questions, train.answers + test.answers))
    accepted = {**train.metadata["accepted_answers"], **test.metadata["accepted_answers"]}
    assert answer["What is the capital of Japan?"] == "Tokyo"
    assert answer["What is the capital of Australia?"] == "Canberra"
    assert answer["What is the currency of Japan?"] == "yen"
    assert answer["What is the official language of Brazil?"] == "Portuguese"
    assert answer["On which continent is Kenya?"] == "Africa"
    assert "Kiev" in accepted["What is the capital of Ukraine?"]
    assert "pound" in accepted["What is the currency of the United Kingdom?"]
    assert all(accepted[q][0] == answer[q] for q in questions)
    assert "What is the capital of Bolivia?" not in answer  # two capitals: left out, not guessed
    for ds in (train, test):
        assert ds.roles == ds.kinds and all(q.endswith("?") for q in ds.texts)


def test_contrast_pairs_from_dataset_and_errors():
    pairs = ContrastPairs.from_dataset(sd.load("demo/sentiment", "train"))
    assert len(pairs) == 300
    pos, neg = next(iter(pairs))
    assert pos.split()[:2] == neg.split()[:2] and pos != neg
    with pytest.raises(DatasetFormatError, match="equal lengths"):
        ContrastPairs(positive=["a", "b"], negative=["c"])
    with pytest.raises(DatasetFormatError, match="at least one"):
        ContrastPairs(positive=[], negative=[])


# ---- user data loaders ---------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_from_csv_and_jsonl_roundtrip(tmp_path):
    csv_path = _write(tmp_path / "mine.csv", "statement,label,topic\nA is B.,true,x\nA is C.,FALSE,x\nD is E.,1,y\n")
    ds = sd.from_csv(csv_path, group_column="topic")
    assert ds.texts == ["A is B.", "A is C.", "D is E."]
    assert ds.labels.tolist() == [1, 0, 1] and ds.groups == ["x", "x", "y"]
    assert ds.name == "mine"
    jsonl = tmp_path / "mine.jsonl"
    jsonl.write_text("\n".join(json.dumps({"statement": t, "label": int(y)}) for t, y in zip(ds.texts, ds.labels)) + "\n")
    assert sd.from_jsonl(jsonl).labels.tolist() == [1, 0, 1]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "no rows found"),
        ("statement,label\n", "no rows found"),
        ("text,label\nA.,1\nB.,0\n", "missing column 'statement'"),
        ("statement,truth\nA.,1\nB.,0\n", "missing column 'label'"),
        ("statement,label\nA.,1\nB.,2\n", "must be binary"),
        ("statement,label\nA.,1\nB.,1\n", "needs both classes"),
    ],
)
def test_csv_errors_name_the_problem(tmp_path, content, message):
    path = _write(tmp_path / "bad.csv", content)
    with pytest.raises(DatasetFormatError, match=message):
        sd.from_csv(path)


def test_jsonl_and_missing_file_errors(tmp_path):
    with pytest.raises(DatasetFormatError, match="not valid JSON"):
        sd.from_jsonl(_write(tmp_path / "bad.jsonl", '{"statement": "a", "label": 1}\n{oops\n'))
    with pytest.raises(DatasetFormatError, match="no rows"):
        sd.from_jsonl(_write(tmp_path / "empty.jsonl", "\n"))
    with pytest.raises(FileNotFoundError):
        sd.from_csv(tmp_path / "absent.csv")


def test_excel_bom_and_latin1_files(tmp_path):
    bom = tmp_path / "excel.csv"
    bom.write_bytes("\ufeffstatement,label\nA.,1\nB.,0\n".encode("utf-8"))
    assert sd.from_csv(bom).texts == ["A.", "B."]
    qa = tmp_path / "qa.csv"
    qa.write_bytes("\ufeffquestion,answer\nwhere ?,here\n".encode("utf-8"))
    assert sd.qa_from_csv(qa).answers == ["here"]
    latin = tmp_path / "latin.csv"
    latin.write_bytes("statement,label\nA.,1\ncaf\xe9.,0\n".encode("latin-1"))
    with pytest.raises(DatasetFormatError, match=r"latin\.csv: not UTF-8 text \(byte 0xe9 on line 3\); save it as UTF-8"):
        sd.from_csv(latin)
    latin_jsonl = tmp_path / "latin.jsonl"
    latin_jsonl.write_bytes('{"statement": "caf\xe9", "label": 1}\n'.encode("latin-1"))
    with pytest.raises(DatasetFormatError, match="save it as UTF-8"):
        sd.from_jsonl(latin_jsonl)
    qa.write_bytes("question,answer\nwhere ?,caf\xe9\n".encode("latin-1"))
    with pytest.raises(DatasetFormatError, match="save it as UTF-8"):
        sd.qa_from_csv(qa)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("rows.jsonl", '{"statement": "A.", "label": 1}\n\n{"label": 0}\n', "line 3 has no 'statement' value"),
        ("rows.jsonl", '{"statement": "A.", "label": 1}\n[1, 0]\n', "line 2 is a list, not an object"),
        ("rows.jsonl", '{"statement": "A.", "label": 1}\n{"statement": " ", "label": 0}\n', "line 2 has an empty 'statement'"),
        ("rows.jsonl", '{"statement": "A.", "label": 1}\n{"statement": "B.", "label": "maybe"}\n', "line 2 has label 'maybe'"),
        ("rows.csv", "statement,label\nA.,1\n,0\n", "line 3 has an empty 'statement'"),
        ("rows.csv", "statement,label\nA.,1\nB.\n", "line 3 has no 'label' value"),
        ("rows.csv", "statement,label\nA.,1\nB.,2\n", "line 3 has label '2'"),
        ("rows.csv", 'statement,label\nA.,1\n"two\nlines",0\nC.,x\n', "line 5 has label 'x'"),
    ],
)
def test_row_errors_name_the_file_line(tmp_path, name, content, message):
    path = _write(tmp_path / name, content)
    with pytest.raises(DatasetFormatError, match=message):
        (sd.from_csv if name.endswith(".csv") else sd.from_jsonl)(path)


def test_qa_csv_rejects_empty_fields_by_line(tmp_path):
    path = _write(tmp_path / "qa.csv", "question,answer\nwhere ?,here\nwhen ?,\n")
    with pytest.raises(DatasetFormatError, match="line 3 has an empty 'answer'"):
        sd.qa_from_csv(path)


def test_from_hf_dataset():
    datasets = pytest.importorskip("datasets")
    hf = datasets.Dataset.from_dict({"sentence": ["good .", "bad .", "fine ."], "y": [1, 0, 1]})
    ds = sd.from_hf(hf, text_column="sentence", label_column="y", name="toy")
    assert ds.texts == ["good .", "bad .", "fine ."] and ds.labels.tolist() == [1, 0, 1]
    with pytest.raises(DatasetFormatError, match="missing column 'label'"):
        sd.from_hf(hf, text_column="sentence")


@pytest.mark.skipif(not GOT_CITIES.exists(), reason="Geometry of Truth cities CSV not present")
def test_geometry_of_truth_cities_csv():
    ds = sd.from_csv(GOT_CITIES, group_column="city")
    assert len(ds) > 1000
    assert 0.4 < ds.labels.mean() < 0.6
    assert ds.texts[0] == "The city of Krasnodar is in Russia." and ds.labels[0] == 1
    train, test = sd.split_by_group(ds, "train"), sd.split_by_group(ds, "test")
    assert len(train) + len(test) == len(ds)
    assert not set(train.groups) & set(test.groups)
