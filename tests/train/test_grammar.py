"""The bilingual grammar: determinism, Spanish agreement, text normalisation, combination splits."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from streamer.train import grammar
from streamer.train.grammar import Pair, enumerate_pairs, split_combinations


@pytest.fixture(scope="module")
def pairs() -> list[Pair]:
    return enumerate_pairs()


@pytest.fixture(scope="module")
def lookup(pairs: list[Pair]) -> dict[str, str]:
    return {p.en: p.es for p in pairs}


def test_enumeration_is_deterministic_and_large(pairs: list[Pair]) -> None:
    again = enumerate_pairs()
    assert again == pairs
    assert len(pairs) > 5000
    assert set(Counter(p.category for p in pairs)) == set(grammar.CATEGORIES)


@pytest.mark.parametrize(("en", "es"), [
    ("two red cups", "dos tazas rojas"),
    ("one red cup", "una taza roja"),
    ("give me one blue pen", "dame un bolígrafo azul"),
    ("there are three grey pencils", "hay tres lápices grises"),
    ("i want two white umbrellas", "quiero dos paraguas blancos"),
    ("the shirts are yellow", "las camisas son amarillas"),
    ("the knife is black", "el cuchillo es negro"),
    ("turn on the light", "enciende la luz"),
    ("go to the living room please", "ve al salón por favor"),
    ("at three thirty", "a las tres y media"),
    ("at one forty five", "a las dos menos cuarto"),
    ("it is twelve forty five", "es la una menos cuarto"),
    ("it is one o'clock", "es la una en punto"),
    ("see you on monday at seven thirty", "nos vemos el lunes a las siete y media"),
    ("where is the station?", "¿dónde está la estación?"),
    ("how do i get to the bank?", "¿cómo llego al banco?"),
    ("is the pharmacy open?", "¿está abierta la farmacia?"),
    ("do you have a red umbrella?", "¿tienes un paraguas rojo?"),
    ("twenty one euros", "veintiún euros"),
    ("two hundred twenty one people", "doscientas veintiuna personas"),
    ("one hundred", "cien"),
    ("welcome ana", "bienvenida ana"),
    ("every saturday", "todos los sábados"),
    ("on the first of may", "el primero de mayo"),
    ("on the twenty second of march", "el veintidós de marzo"),
])
def test_known_pairs_agree(lookup: dict[str, str], en: str, es: str) -> None:
    assert lookup[en] == es


def test_digits_are_single_words() -> None:
    digits = grammar.digit_pairs()
    assert [p.en for p in digits] == "zero one two three four five six seven eight nine".split()
    assert [p.es for p in digits] == "cero uno dos tres cuatro cinco seis siete ocho nueve".split()


def test_text_is_normalised_for_tts(pairs: list[Pair]) -> None:
    for p in pairs:
        for text in (p.en, p.es):
            assert not re.search(r"\d", text), text
            assert text == text.lower() and text.strip() == text and "  " not in text
    assert any("á" in p.es or "ñ" in p.es for p in pairs)


def test_texts_are_unique_on_each_side(pairs: list[Pair]) -> None:
    assert len({p.en for p in pairs}) == len(pairs)
    assert len({p.es for p in pairs}) == len(pairs)
    assert len({p.id for p in pairs}) == len(pairs)


def test_every_pair_has_slots(pairs: list[Pair]) -> None:
    for p in pairs:
        assert p.slots and dict(p.slots), p
        assert list(p.slots) == sorted(p.slots)


def test_feminine_plural_colours_agree(pairs: list[Pair]) -> None:
    gendered = {c[0]: c for c in grammar.COLOURS if c[1] != c[2]}
    fem_nouns = {n[0]: n for n in grammar.NOUNS if n[4] == "f"}
    checked = 0
    for p in pairs:
        s = dict(p.slots)
        if p.category == "object" and s.get("colour") in gendered and s["noun"] in fem_nouns and s["qty"] != "1":
            assert f"{fem_nouns[s['noun']][3]} {gendered[s['colour']][4]}" in p.es, p
            checked += 1
    assert checked > 100


def test_spanish_numbers() -> None:
    assert grammar.es_number(16) == "dieciséis"
    assert grammar.es_number(31, before_noun=True) == "treinta y un"
    assert grammar.es_number(500, fem=True) == "quinientas"
    assert grammar.es_number(115) == "ciento quince"
    assert grammar.en_number(342) == "three hundred forty two"
    with pytest.raises(ValueError):
        grammar.es_number(1000)


def test_split_holds_out_combinations_of_known_words(pairs: list[Pair]) -> None:
    split = split_combinations(pairs, n_dev=100, n_test=200, seed=3)
    assert len(split.dev) == 100 and len(split.test) == 200
    assert split == split_combinations(pairs, n_dev=100, n_test=200, seed=3)
    assert split.test != split_combinations(pairs, n_dev=100, n_test=200, seed=4).test
    train_ids = {p.id for p in split.train}
    for held in (split.dev, split.test):
        assert not {p.id for p in held} & train_ids
        assert not any(p.category == "digit" for p in held)
    vocab = {(p.category, w) for p in split.train for w in p.words()}
    for p in split.dev + split.test:
        assert all((p.category, w) in vocab for w in p.words()), p
    assert len(Counter(p.category for p in split.test)) == len(grammar.CATEGORIES) - 1


def test_coverage_order_covers_with_a_short_prefix(pairs: list[Pair]) -> None:
    greetings = [p for p in pairs if p.category == "greeting"]
    ordered = grammar.coverage_order(greetings, seed=0)
    assert sorted(ordered, key=lambda p: p.id) == sorted(greetings, key=lambda p: p.id)
    every = set().union(*(p.words() for p in greetings))
    prefix = ordered[:30]
    assert set().union(*(p.words() for p in prefix)) == every


def test_unknown_category_raises() -> None:
    with pytest.raises(ValueError, match="unknown categories"):
        enumerate_pairs(["weather"])


def test_sample_pairs_is_seeded_and_spans_categories() -> None:
    a = grammar.sample_pairs(200, seed=1)
    assert a == grammar.sample_pairs(200, seed=1)
    assert a != grammar.sample_pairs(200, seed=2)
    assert len(a) == 200 and len({p.id for p in a}) == 200
    assert {p.category for p in a} == set(grammar.CATEGORIES)
