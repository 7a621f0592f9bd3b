"""Compositional English <-> Spanish grammar: parallel sentence pairs with their slots.

Every pair is built from a template and lexicon entries ("slots"), so a held-out split can contain
sentences whose words were all seen in training but whose combination never was. Text is normalised
for TTS: lower case, numbers spelled out, Spanish accents kept, Spanish questions in ``¿...?``.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

CATEGORIES = ("digit", "number", "time", "day", "month", "colour", "object", "command", "greeting",
              "question")
_WORD = re.compile(r"[a-záéíóúüñ']+")


@dataclass(frozen=True)
class Pair:
    """One parallel sentence pair. ``slots`` is the sorted (name, lexical key) combination used."""

    category: str
    en: str
    es: str
    slots: tuple[tuple[str, str], ...]

    @property
    def id(self) -> str:
        """Stable 14-character id from the category and both texts."""
        digest = hashlib.sha1(f"{self.category}|{self.en}|{self.es}".encode()).hexdigest()[:10]
        return f"{self.category[:3]}-{digest}"

    def text(self, lang: str) -> str:
        """The sentence in ``lang`` ("en" or "es")."""
        if lang not in ("en", "es"):
            raise ValueError(f"unknown language {lang!r}; expected 'en' or 'es'")
        return self.en if lang == "en" else self.es

    def words(self) -> frozenset[str]:
        """Every word of both sides, language-tagged ("en:red", "es:rojas")."""
        return frozenset([f"en:{w}" for w in words(self.en)] + [f"es:{w}" for w in words(self.es)])


def words(text: str) -> tuple[str, ...]:
    """Lower-case word tokens of ``text`` with punctuation dropped."""
    return tuple(_WORD.findall(text.lower()))


# ---------------------------------------------------------------- numbers
EN_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
           "fifteen sixteen seventeen eighteen nineteen").split()
EN_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
ES_UNITS = "cero uno dos tres cuatro cinco seis siete ocho nueve".split()
ES_10_29 = ("diez once doce trece catorce quince dieciséis diecisiete dieciocho diecinueve veinte "
            "veintiuno veintidós veintitrés veinticuatro veinticinco veintiséis veintisiete veintiocho "
            "veintinueve").split()
ES_TENS = ("", "", "", "treinta", "cuarenta", "cincuenta", "sesenta", "setenta", "ochenta", "noventa")
ES_HUNDREDS = ("", "ciento", "doscientos", "trescientos", "cuatrocientos", "quinientos", "seiscientos",
               "setecientos", "ochocientos", "novecientos")


def en_number(n: int) -> str:
    """English words for 0 <= n <= 999 ("two hundred forty two")."""
    if not 0 <= n <= 999:
        raise ValueError(f"number {n} outside 0..999")
    if n < 20:
        return EN_ONES[n]
    if n < 100:
        return EN_TENS[n // 10] + (f" {EN_ONES[n % 10]}" if n % 10 else "")
    rest = n % 100
    return f"{EN_ONES[n // 100]} hundred" + (f" {en_number(rest)}" if rest else "")


def es_number(n: int, *, fem: bool = False, before_noun: bool = False) -> str:
    """Spanish words for 0 <= n <= 999, agreeing with a noun's gender.

    ``fem`` gives "una", "veintiuna", "doscientas"; ``before_noun`` (masculine) gives the apocope
    "un", "veintiún", "treinta y un".
    """
    if not 0 <= n <= 999:
        raise ValueError(f"number {n} outside 0..999")
    if n == 1:
        return "una" if fem else "un" if before_noun else "uno"
    if n == 21:
        return "veintiuna" if fem else "veintiún" if before_noun else "veintiuno"
    if n < 10:
        return ES_UNITS[n]
    if n < 30:
        return ES_10_29[n - 10]
    if n < 100:
        unit = n % 10
        return ES_TENS[n // 10] + (f" y {es_number(unit, fem=fem, before_noun=before_noun)}" if unit else "")
    if n == 100:
        return "cien"
    hundreds = ES_HUNDREDS[n // 100]
    if fem and n >= 200:
        hundreds = hundreds[:-2] + "as"
    rest = n % 100
    return hundreds + (f" {es_number(rest, fem=fem, before_noun=before_noun)}" if rest else "")


def en_ordinal(n: int) -> str:
    """English ordinal words for 1 <= n <= 39 ("twenty first")."""
    special = {1: "first", 2: "second", 3: "third", 5: "fifth", 8: "eighth", 9: "ninth", 12: "twelfth"}
    if n in special:
        return special[n]
    if n < 20:
        return EN_ONES[n] + "th"
    if n % 10 == 0:
        return EN_TENS[n // 10][:-1] + "ieth"
    return f"{EN_TENS[n // 10]} {en_ordinal(n % 10)}"


# ---------------------------------------------------------------- lexicon
def _table(spec: str) -> list[list[str]]:
    """Rows separated by newlines or ";", columns by "|"."""
    rows = [r for line in spec.strip().splitlines() for r in line.split(";") if r.strip()]
    return [[c.strip() for c in r.split("|")] for r in rows]


# colour: en | m sg | f sg | m pl | f pl
COLOURS = _table("""
red|rojo|roja|rojos|rojas; blue|azul|azul|azules|azules; green|verde|verde|verdes|verdes
yellow|amarillo|amarilla|amarillos|amarillas; black|negro|negra|negros|negras
white|blanco|blanca|blancos|blancas; grey|gris|gris|grises|grises
brown|marrón|marrón|marrones|marrones; purple|morado|morada|morados|moradas
orange|naranja|naranja|naranja|naranja; pink|rosa|rosa|rosa|rosa
""")
# noun: en sg | en pl | es sg | es pl | gender
NOUNS = _table("""
cup|cups|taza|tazas|f; glass|glasses|vaso|vasos|m; plate|plates|plato|platos|m
spoon|spoons|cuchara|cucharas|f; fork|forks|tenedor|tenedores|m; knife|knives|cuchillo|cuchillos|m
bottle|bottles|botella|botellas|f; chair|chairs|silla|sillas|f; table|tables|mesa|mesas|f
book|books|libro|libros|m; pen|pens|bolígrafo|bolígrafos|m; pencil|pencils|lápiz|lápices|m
key|keys|llave|llaves|f; box|boxes|caja|cajas|f; bag|bags|bolsa|bolsas|f
shirt|shirts|camisa|camisas|f; shoe|shoes|zapato|zapatos|m; hat|hats|sombrero|sombreros|m
ball|balls|pelota|pelotas|f; car|cars|coche|coches|m; flower|flowers|flor|flores|f
apple|apples|manzana|manzanas|f; lamp|lamps|lámpara|lámparas|f; phone|phones|teléfono|teléfonos|m
towel|towels|toalla|toallas|f; umbrella|umbrellas|paraguas|paraguas|m
""")
# place: en | es | gender | opens (y/n)
PLACES = _table("""
station|estación|f|n; hospital|hospital|m|n; bank|banco|m|y; hotel|hotel|m|n; museum|museo|m|y
airport|aeropuerto|m|n; library|biblioteca|f|y; market|mercado|m|y; school|escuela|f|y
beach|playa|f|n; park|parque|m|y; church|iglesia|f|y; pharmacy|farmacia|f|y
restaurant|restaurante|m|y; supermarket|supermercado|m|y; post office|oficina de correos|f|y
bus stop|parada de autobús|f|n; bathroom|baño|m|n
""")
ROOMS = _table("""
kitchen|cocina|f; bedroom|dormitorio|m; living room|salón|m; garden|jardín|m; office|oficina|f
garage|garaje|m
""")
SWITCHABLE = _table("light|luz|f\nradio|radio|f\ntelevision|televisión|f\ncomputer|ordenador|m\n"
                    "fan|ventilador|m\noven|horno|m\nheating|calefacción|f")
OPENABLE = _table("door|puerta|f\nwindow|ventana|f\nbox|caja|f\nbottle|botella|f\nbook|libro|m\n"
                  "fridge|nevera|f")
SIMPLE_COMMANDS = _table("""
turn left|gira a la izquierda; turn right|gira a la derecha; go straight ahead|sigue recto
stop|para; wait here|espera aquí; come here|ven aquí; sit down|siéntate; stand up|levántate
listen to me|escúchame; speak slowly|habla despacio; repeat that|repite eso
call me later|llámame más tarde; hurry up|date prisa; be careful|ten cuidado
""")
COMMAND_SUFFIXES = (("", ""), (" please", " por favor"), (" now", " ahora"))
GREETINGS = _table("""
hello|hola; good morning|buenos días; good afternoon|buenas tardes; good night|buenas noches
goodbye|adiós; see you later|hasta luego; see you tomorrow|hasta mañana; thank you|gracias
thank you very much|muchas gracias; nice to meet you|mucho gusto
""")
NAMES = _table("ana|ana|f\ncarlos|carlos|m\nmaria|maría|f\npablo|pablo|m\nlucia|lucía|f\ndavid|david|m\n"
               "elena|elena|f\njorge|jorge|m\nsofia|sofía|f\nmiguel|miguel|m\nlaura|laura|f\npedro|pedro|m")
FIXED_QUESTIONS = _table("""
what time is it|qué hora es; what day is today|qué día es hoy; how are you|cómo estás
do you speak english|hablas inglés; do you speak spanish|hablas español
can you help me|puedes ayudarme; what is your name|cómo te llamas; where are you from|de dónde eres
how much does it cost|cuánto cuesta
""")
DAYS = _table("monday|lunes|lunes\ntuesday|martes|martes\nwednesday|miércoles|miércoles\n"
              "thursday|jueves|jueves\nfriday|viernes|viernes\nsaturday|sábado|sábados\n"
              "sunday|domingo|domingos")
MONTHS = _table("january|enero|31\nfebruary|febrero|28\nmarch|marzo|31\napril|abril|30\nmay|mayo|31\n"
                "june|junio|30\njuly|julio|31\naugust|agosto|31\nseptember|septiembre|30\n"
                "october|octubre|31\nnovember|noviembre|30\ndecember|diciembre|31")
QUANTITIES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 20)


def _art(gender: str, plural: bool = False) -> str:
    return ("las" if gender == "f" else "los") if plural else ("la" if gender == "f" else "el")


def _to_art(gender: str) -> str:
    """Spanish "a" + article with the "al" contraction."""
    return "a la" if gender == "f" else "al"


def _colour_es(colour: list[str], gender: str, plural: bool) -> str:
    return colour[1 + (gender == "f") + 2 * plural]


# ---------------------------------------------------------------- categories
Gen = Iterator[tuple[str, str, dict[str, str]]]


def _digit() -> Gen:
    for d in range(10):
        yield EN_ONES[d], ES_UNITS[d], {"digit": str(d)}


def _number() -> Gen:
    for n in range(10, 1000):
        slots = {"hundreds": str(n // 100), "tens": str(n // 10 % 10), "units": str(n % 10)}
        yield en_number(n), es_number(n), {**slots, "template": "bare"}
        yield f"{en_number(n)} euros", f"{es_number(n, before_noun=True)} euros", {**slots, "template": "euros"}
        yield (f"{en_number(n)} people", f"{es_number(n, fem=True)} personas",
               {**slots, "template": "people"})


_MINUTES_EN = {0: "o'clock", 5: "oh five", 10: "ten", 15: "fifteen", 20: "twenty", 30: "thirty",
               40: "forty", 45: "forty five", 50: "fifty"}
_MINUTES_ES = {0: "en punto", 5: "y cinco", 10: "y diez", 15: "y cuarto", 20: "y veinte", 30: "y media",
               40: "menos veinte", 45: "menos cuarto", 50: "menos diez"}
_PERIODS = {"": ("", "", range(1, 13)), "morning": (" in the morning", " de la mañana", range(6, 12)),
            "afternoon": (" in the afternoon", " de la tarde", range(1, 7)),
            "night": (" at night", " de la noche", range(8, 12))}
_TIME_TEMPLATES = _table("""
at {t}|a {c}; it is {t}|{ser} {c}; the train leaves at {t}|el tren sale a {c}
the meeting is at {t}|la reunión es a {c}; wake me up at {t}|despiértame a {c}
see you at {t}|nos vemos a {c}
""")


def time_phrases(hour: int, minute: int) -> tuple[str, str]:
    """("three thirty", "las tres y media") for a 12-hour clock time; the Spanish has its article."""
    es_hour = hour % 12 + 1 if minute >= 40 else hour
    es_clock = ("la una" if es_hour == 1 else f"las {es_number(es_hour)}") + f" {_MINUTES_ES[minute]}"
    return f"{EN_ONES[hour]} {_MINUTES_EN[minute]}", es_clock


def _time() -> Gen:
    for (period, (p_en, p_es, hours)), (t_en, t_es) in itertools.product(_PERIODS.items(), _TIME_TEMPLATES):
        for hour, minute in itertools.product(hours, _MINUTES_EN):
            clock_en, clock_es = time_phrases(hour, minute)
            ser = "es" if clock_es.startswith("la ") else "son"
            yield (t_en.format(t=clock_en) + p_en, t_es.format(c=clock_es, ser=ser) + p_es,
                   {"template": t_en, "hour": str(hour), "minute": str(minute), "period": period})


def _day() -> Gen:
    templates = _table("{d}|{d}\non {d}|el {d}\ntoday is {d}|hoy es {d}\nsee you on {d}|nos vemos el {d}\n"
                       "every {d}|todos los {dp}\nthe meeting is on {d}|la reunión es el {d}")
    for (d_en, d_es, d_pl), (t_en, t_es) in itertools.product(DAYS, templates):
        yield t_en.format(d=d_en), t_es.format(d=d_es, dp=d_pl), {"template": t_en, "day": d_en}
    for (d_en, d_es, _), hour, minute in itertools.product(DAYS, range(1, 13), (0, 30)):
        clock_en, clock_es = time_phrases(hour, minute)
        yield (f"see you on {d_en} at {clock_en}", f"nos vemos el {d_es} a {clock_es}",
               {"template": "day_time", "day": d_en, "hour": str(hour), "minute": str(minute)})


def _month() -> Gen:
    templates = _table("{m}|{m}\nin {m}|en {m}\nmy birthday is in {m}|mi cumpleaños es en {m}\n"
                       "see you in {m}|nos vemos en {m}")
    for (m_en, m_es, _), (t_en, t_es) in itertools.product(MONTHS, templates):
        yield t_en.format(m=m_en), t_es.format(m=m_es), {"template": t_en, "month": m_en}
    for m_en, m_es, n_days in MONTHS:
        for day in range(1, int(n_days) + 1):
            day_es = "primero" if day == 1 else es_number(day)
            yield (f"on the {en_ordinal(day)} of {m_en}", f"el {day_es} de {m_es}",
                   {"template": "date", "month": m_en, "date": str(day)})


def _colour() -> Gen:
    for c in COLOURS:
        yield c[0], c[1], {"template": "bare", "colour": c[0]}
        yield f"the colour {c[0]}", f"el color {c[1]}", {"template": "the_colour", "colour": c[0]}
        yield (f"my favourite colour is {c[0]}", f"mi color favorito es el {c[1]}",
               {"template": "favourite", "colour": c[0]})
        for n in NOUNS:
            g = n[4]
            yield (f"the {n[0]} is {c[0]}", f"{_art(g)} {n[2]} es {_colour_es(c, g, False)}",
                   {"template": "is", "colour": c[0], "noun": n[0]})
            yield (f"the {n[1]} are {c[0]}", f"{_art(g, True)} {n[3]} son {_colour_es(c, g, True)}",
                   {"template": "are", "colour": c[0], "noun": n[0]})


def _noun_phrase(qty: int, colour: list[str] | None, noun: list[str]) -> tuple[str, str]:
    """("two red cups", "dos tazas rojas") with number and gender agreement."""
    plural, fem = qty != 1, noun[4] == "f"
    qty_es = es_number(qty, fem=fem, before_noun=True)
    en = f"{en_number(qty)} " + (f"{colour[0]} " if colour else "") + noun[1 if plural else 0]
    es = f"{qty_es} {noun[3 if plural else 2]}" + (f" {_colour_es(colour, noun[4], plural)}" if colour else "")
    return en, es


def _object() -> Gen:
    templates = _table("{x}|{x}\ni want {x}|quiero {x}\ngive me {x}|dame {x}\nthere are {x}|hay {x}\n"
                       "i need {x}|necesito {x}")
    for (t_en, t_es), qty, noun in itertools.product(templates, QUANTITIES, NOUNS):
        if t_en.startswith("there are") and qty == 1:
            t_en = "there is {x}"
        for colour in [None, *COLOURS]:
            en, es = _noun_phrase(qty, colour, noun)
            yield (t_en.format(x=en), t_es.format(x=es),
                   {"template": t_en, "qty": str(qty), "colour": colour[0] if colour else "", "noun": noun[0]})


def _command() -> Gen:
    verbs = [("turn on", "enciende", SWITCHABLE), ("turn off", "apaga", SWITCHABLE),
             ("open", "abre", OPENABLE), ("close", "cierra", OPENABLE),
             ("bring me", "tráeme", [[n[0], n[2], n[4]] for n in NOUNS]),
             ("pass me", "pásame", [[n[0], n[2], n[4]] for n in NOUNS]), ("clean", "limpia", ROOMS)]
    for (s_en, s_es), (v_en, v_es, objects) in itertools.product(COMMAND_SUFFIXES, verbs):
        for o_en, o_es, g in objects:
            yield (f"{v_en} the {o_en}{s_en}", f"{v_es} {_art(g)} {o_es}{s_es}",
                   {"verb": v_en, "object": o_en, "suffix": s_en.strip()})
    for (s_en, s_es), (r_en, r_es, g) in itertools.product(COMMAND_SUFFIXES, ROOMS):
        yield (f"go to the {r_en}{s_en}", f"ve {_to_art(g)} {r_es}{s_es}",
               {"verb": "go to", "object": r_en, "suffix": s_en.strip()})
    for (s_en, s_es), (c_en, c_es) in itertools.product(COMMAND_SUFFIXES, SIMPLE_COMMANDS):
        yield f"{c_en}{s_en}", f"{c_es}{s_es}", {"verb": c_en, "object": "", "suffix": s_en.strip()}


def _greeting() -> Gen:
    for g_en, g_es in GREETINGS:
        yield g_en, g_es, {"greeting": g_en, "name": ""}
        for n_en, n_es, _ in NAMES:
            yield f"{g_en} {n_en}", f"{g_es} {n_es}", {"greeting": g_en, "name": n_en}
    for n_en, n_es, g in NAMES:
        yield f"welcome {n_en}", f"bienvenid{'a' if g == 'f' else 'o'} {n_es}", {"greeting": "welcome",
                                                                                 "name": n_en}


def _question() -> Gen:
    def q(en: str, es: str, slots: dict[str, str]) -> tuple[str, str, dict[str, str]]:
        return f"{en}?", f"¿{es}?", slots

    for q_en, q_es in FIXED_QUESTIONS:
        yield q(q_en, q_es, {"template": q_en})
    for p_en, p_es, g, opens in PLACES:
        yield q(f"where is the {p_en}", f"dónde está {_art(g)} {p_es}", {"template": "where", "place": p_en})
        yield q(f"how do i get to the {p_en}", f"cómo llego {_to_art(g)} {p_es}",
                {"template": "get_to", "place": p_en})
        yield q(f"is the {p_en} far", f"está lejos {_art(g)} {p_es}", {"template": "far", "place": p_en})
        if opens == "y":
            open_es = "abierta" if g == "f" else "abierto"
            yield q(f"is the {p_en} open", f"está {open_es} {_art(g)} {p_es}", {"template": "open", "place": p_en})
            for v_en, v_es in (("open", "abre"), ("close", "cierra")):
                yield q(f"what time does the {p_en} {v_en}", f"a qué hora {v_es} {_art(g)} {p_es}",
                        {"template": f"time_{v_en}", "place": p_en})
    for n in NOUNS:
        yield q(f"where is my {n[0]}", f"dónde está mi {n[2]}", {"template": "where_my", "noun": n[0]})
        yield q(f"where are my {n[1]}", f"dónde están mis {n[3]}", {"template": "where_my_pl", "noun": n[0]})
        yield q(f"how much is the {n[0]}", f"cuánto cuesta {_art(n[4])} {n[2]}", {"template": "cost", "noun": n[0]})
        for c in COLOURS:
            _, np_es = _noun_phrase(1, c, n)
            yield q(f"do you have a {c[0]} {n[0]}", f"tienes {np_es}",
                    {"template": "have", "noun": n[0], "colour": c[0]})


_GENERATORS = {"digit": _digit, "number": _number, "time": _time, "day": _day, "month": _month,
               "colour": _colour, "object": _object, "command": _command, "greeting": _greeting,
               "question": _question}


# ---------------------------------------------------------------- enumeration and splits
def enumerate_pairs(categories: Sequence[str] | None = None) -> list[Pair]:
    """Every pair of the grammar, in a fixed order; texts are unique on each side.

    Raises ``ValueError`` for an unknown category.
    """
    cats = tuple(categories) if categories is not None else CATEGORIES
    unknown = sorted(set(cats) - set(_GENERATORS))
    if unknown:
        raise ValueError(f"unknown categories {unknown}; known: {list(CATEGORIES)}")
    seen_en: set[str] = set()
    seen_es: set[str] = set()
    out: list[Pair] = []
    for cat in cats:
        for en, es, slots in _GENERATORS[cat]():
            if en in seen_en or es in seen_es:
                continue
            seen_en.add(en)
            seen_es.add(es)
            out.append(Pair(cat, en, es, tuple(sorted(slots.items()))))
    return out


def digit_pairs() -> list[Pair]:
    """The ten isolated digits zero..nine / cero..nueve, in order."""
    return enumerate_pairs(["digit"])


@dataclass(frozen=True)
class SentenceSplit:
    """Pairs by role: ``train`` pool, ``dev`` and ``test`` held-out combinations."""

    train: tuple[Pair, ...]
    dev: tuple[Pair, ...]
    test: tuple[Pair, ...]


def split_combinations(pairs: Sequence[Pair], *, n_dev: int, n_test: int, seed: int,
                       exclude: Sequence[str] = ("digit",)) -> SentenceSplit:
    """Hold out ``n_dev`` + ``n_test`` pairs whose every word stays in the train pool's category.

    Held-out pairs are taken round-robin over categories (not in ``exclude``) from a seeded shuffle;
    a pair is held out only if each of its words still occurs in at least one remaining pair of its
    category, so a model trained on the pool has seen every word but never the combination.
    """
    rng = np.random.default_rng(seed)
    by_cat: dict[str, list[Pair]] = {}
    for p in pairs:
        by_cat.setdefault(p.category, []).append(p)
    counts = {c: Counter(w for p in ps for w in p.words()) for c, ps in by_cat.items()}
    queues = {c: [ps[i] for i in rng.permutation(len(ps))] for c, ps in by_cat.items() if c not in exclude}
    held: list[Pair] = []
    while len(held) < n_dev + n_test and any(queues.values()):
        for cat in sorted(queues):
            queue = queues[cat]
            while queue:
                cand = queue.pop()
                if all(counts[cat][w] >= 2 for w in cand.words()):
                    counts[cat].subtract(cand.words())
                    held.append(cand)
                    break
            if len(held) == n_dev + n_test:
                break
    held_ids = {p.id for p in held}
    train = tuple(p for p in pairs if p.id not in held_ids)
    return SentenceSplit(train=train, dev=tuple(held[:n_dev]), test=tuple(held[n_dev:]))


def coverage_order(pairs: Sequence[Pair], seed: int) -> list[Pair]:
    """Seeded shuffle of ``pairs`` with a greedy word cover first.

    Taking any prefix at least as long as the cover sees every word that ``pairs`` contains.
    """
    rng = np.random.default_rng(seed)
    shuffled = [pairs[i] for i in rng.permutation(len(pairs))]
    covered: set[str] = set()
    cover, rest = [], []
    for p in shuffled:
        new = p.words() - covered
        (cover if new else rest).append(p)
        covered |= new
    return cover + rest


def sample_pairs(n: int, *, seed: int, categories: Sequence[str] | None = None) -> list[Pair]:
    """``n`` distinct pairs drawn uniformly over categories, then within each, deterministic for ``seed``."""
    pool = enumerate_pairs(categories)
    by_cat: dict[str, list[Pair]] = {}
    for p in pool:
        by_cat.setdefault(p.category, []).append(p)
    ordered = {c: coverage_order(ps, seed) for c, ps in by_cat.items()}
    out: list[Pair] = []
    for i in itertools.count():
        if len(out) >= n or all(i >= len(ps) for ps in ordered.values()):
            break
        out.extend(ps[i] for ps in ordered.values() if i < len(ps))
    return out[:n]
