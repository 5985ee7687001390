"""Deterministic data for the built-in domain evaluations (pure Python, no downloads).

Three small task sets, each written as JSONL for the lm-eval task YAMLs in `evals/tasks/`:

- `arith_mc`   : two-digit arithmetic, 4 choices, gold index computed here (40 items).
- `facts_mc`   : general knowledge from the hand-written tables below (capitals, element
                 symbols, planets, SI units); distractors come from the same table (42 items).
- `format_gen` : generation with a verifiable format instruction, scored by the rule checks in
                 `evals/tasks/format_checks.py` (20 items).

Every generator takes a seed and uses its own `random.Random`, so the files are byte-identical
from run to run and machine to machine. `write_task_data` writes them atomically (temp file +
`os.replace`) and leaves a file alone when its bytes would not change, so a datasets cache keyed
on the file stays valid.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from harness.atomic_io import write_bytes_atomic

DATA_VERSION = 1
TASK_FILES = {
    "arith_mc": "arith_mc.jsonl",
    "facts_mc": "facts_mc.jsonl",
    "format_gen": "format_gen.jsonl",
}

# --------------------------------------------------------------------------- arith_mc


def _arith_answer(a: int, op: str, b: int) -> int:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    raise ValueError(f"unknown operator {op!r}")


def arith_items(n: int = 120, seed: int = 0) -> list[dict]:
    """`n` two-digit problems (+, -, *), each with the gold answer and three near-miss distractors."""
    rng = random.Random(seed)
    ops = ["+", "-", "*"]
    items = []
    for i in range(n):
        op = ops[i % len(ops)]
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        gold = _arith_answer(a, op, b)
        offsets = [-10, -2, -1, 1, 2, 10] if op != "*" else [-10, -a, -b, b, a, 10, 100]
        distractors: list[int] = []
        for off in rng.sample(offsets, len(offsets)):
            cand = gold + off
            if cand != gold and cand not in distractors:
                distractors.append(cand)
            if len(distractors) == 3:
                break
        choices = [gold, *distractors]
        rng.shuffle(choices)
        symbol = {"+": "+", "-": "-", "*": "×"}[op]
        items.append({
            "id": f"arith-{i:03d}",
            "question": f"What is {a} {symbol} {b}?",
            "a": a, "op": op, "b": b,
            "choices": [str(c) for c in choices],
            "answer": choices.index(gold),
        })
    return items


# --------------------------------------------------------------------------- facts_mc

# (category, question, answer). Distractors for an item are other answers of the same category. 123 items:
# enough for a 10-point non-inferiority margin to be shown at a sweep's Bonferroni level (42 were not:
# with no answer changed, the one-sided 98.75% bound of the paired drop was 0.127).
CAPITALS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Japan", "Tokyo"), ("Canada", "Ottawa"), ("Australia", "Canberra"), ("Egypt", "Cairo"),
    ("Brazil", "Brasília"), ("Kenya", "Nairobi"), ("Norway", "Oslo"), ("Peru", "Lima"),
    ("India", "New Delhi"), ("Poland", "Warsaw"),
    ("Argentina", "Buenos Aires"), ("Austria", "Vienna"), ("Belgium", "Brussels"), ("Chile", "Santiago"),
    ("China", "Beijing"), ("Colombia", "Bogotá"), ("Cuba", "Havana"), ("Denmark", "Copenhagen"),
    ("Finland", "Helsinki"), ("Greece", "Athens"), ("Hungary", "Budapest"), ("Iceland", "Reykjavik"),
    ("Indonesia", "Jakarta"), ("Iran", "Tehran"), ("Iraq", "Baghdad"), ("Ireland", "Dublin"),
    ("Jamaica", "Kingston"), ("Mexico", "Mexico City"), ("Morocco", "Rabat"), ("Nepal", "Kathmandu"),
    ("the Netherlands", "Amsterdam"), ("New Zealand", "Wellington"), ("Nigeria", "Abuja"),
    ("Pakistan", "Islamabad"), ("the Philippines", "Manila"), ("Portugal", "Lisbon"), ("Russia", "Moscow"),
    ("Saudi Arabia", "Riyadh"), ("South Korea", "Seoul"), ("Sweden", "Stockholm"), ("Switzerland", "Bern"),
    ("Thailand", "Bangkok"), ("Turkey", "Ankara"), ("Ukraine", "Kyiv"), ("the United Kingdom", "London"),
    ("Vietnam", "Hanoi"), ("Venezuela", "Caracas"), ("Ethiopia", "Addis Ababa"), ("Ghana", "Accra"),
    ("the Czech Republic", "Prague"), ("Romania", "Bucharest"), ("Bulgaria", "Sofia"), ("Croatia", "Zagreb"),
    ("Serbia", "Belgrade"), ("Uruguay", "Montevideo"), ("Ecuador", "Quito"),
]
ELEMENT_SYMBOLS = [
    ("gold", "Au"), ("silver", "Ag"), ("iron", "Fe"), ("sodium", "Na"), ("potassium", "K"),
    ("oxygen", "O"), ("hydrogen", "H"), ("carbon", "C"), ("lead", "Pb"), ("copper", "Cu"),
    ("helium", "He"), ("mercury", "Hg"),
    ("nitrogen", "N"), ("calcium", "Ca"), ("magnesium", "Mg"), ("zinc", "Zn"), ("tin", "Sn"),
    ("aluminium", "Al"), ("chlorine", "Cl"), ("fluorine", "F"), ("neon", "Ne"), ("argon", "Ar"),
    ("sulfur", "S"), ("phosphorus", "P"), ("silicon", "Si"), ("nickel", "Ni"), ("platinum", "Pt"),
    ("uranium", "U"), ("lithium", "Li"), ("iodine", "I"), ("tungsten", "W"), ("cobalt", "Co"),
    ("chromium", "Cr"), ("manganese", "Mn"), ("titanium", "Ti"), ("bromine", "Br"), ("barium", "Ba"),
    ("radon", "Rn"), ("boron", "B"), ("beryllium", "Be"),
]
PLANETS = [
    ("Which planet is closest to the Sun?", "Mercury"),
    ("Which planet is the largest in the Solar System?", "Jupiter"),
    ("Which planet is known as the Red Planet?", "Mars"),
    ("Which planet is famous for its large, bright ring system?", "Saturn"),
    ("Which planet has the hottest surface in the Solar System?", "Venus"),
    ("Which planet is farthest from the Sun?", "Neptune"),
    ("Which planet rotates on its side, with an axial tilt of about 98 degrees?", "Uranus"),
    ("Which planet do humans live on?", "Earth"),
]
SI_UNITS = [
    ("force", "newton"), ("energy", "joule"), ("power", "watt"), ("pressure", "pascal"),
    ("electric current", "ampere"), ("frequency", "hertz"), ("electrical resistance", "ohm"),
    ("thermodynamic temperature", "kelvin"), ("length", "metre"), ("mass", "kilogram"), ("time", "second"),
    ("amount of substance", "mole"), ("luminous intensity", "candela"), ("electric charge", "coulomb"),
    ("electric potential difference", "volt"),
]


def facts_table() -> list[tuple[str, str, str]]:
    rows = [("capital", f"What is the capital of {c}?", a) for c, a in CAPITALS]
    rows += [("element_symbol", f"What is the chemical symbol for {e}?", s) for e, s in ELEMENT_SYMBOLS]
    rows += [("planet", q, p) for q, p in PLANETS]
    rows += [("si_unit", f"What is the SI unit of {q}?", u) for q, u in SI_UNITS]
    return rows


def facts_items(seed: int = 0) -> list[dict]:
    rng = random.Random(seed + 1)
    table = facts_table()
    by_cat: dict[str, list[str]] = {}
    for cat, _, ans in table:
        by_cat.setdefault(cat, []).append(ans)
    items = []
    for cat, question, answer in table:
        pool = [a for a in by_cat[cat] if a != answer]
        choices = [answer, *rng.sample(pool, 3)]
        rng.shuffle(choices)
        items.append({
            "category": cat, "question": question,
            "choices": choices, "answer": choices.index(answer),
        })
    rng.shuffle(items)  # mix categories, so a `limit` prefix still covers several
    for i, item in enumerate(items):
        item["id"] = f"facts-{i:03d}"
    return items


# --------------------------------------------------------------------------- format_gen

# (instruction_id, arg, prompt). `arg` is the check's parameter as a string ("" when none);
# the checks live in evals/tasks/format_checks.py so lm-eval can load them next to the YAML.
FORMAT_PROMPTS = [
    ("lowercase", "", "Answer in all lowercase letters, with no capital letters at all: what is your favourite season and why?"),
    ("lowercase", "", "Using only lowercase letters, describe a cat in one sentence."),
    ("uppercase", "", "Answer in all capital letters: name a fruit that is yellow."),
    ("uppercase", "", "Write your whole answer in uppercase: what colour is the sky on a clear day?"),
    ("bullets", "3", "Answer with exactly 3 bullet points, each line starting with '* ': list three things you find in a kitchen."),
    ("bullets", "2", "Give exactly 2 bullet points, each line starting with '* ': two reasons to drink water."),
    ("bullets", "4", "Reply with exactly 4 bullet points using '* ': four animals that live in the ocean."),
    ("end_phrase", "Is there anything else?", "Explain what a rainbow is in one sentence. End your answer with the phrase 'Is there anything else?'"),
    ("end_phrase", "Is there anything else?", "Say hello to a new colleague. End your answer with the exact phrase 'Is there anything else?'"),
    ("end_phrase", "That is all.", "Name one planet. Finish your reply with the exact phrase 'That is all.'"),
    ("start_word", "Yes", "Is water wet? Begin your answer with the word 'Yes'."),
    ("start_word", "Sure", "Can you name a colour? Start your reply with the word 'Sure'."),
    ("include_keyword", "banana", "Describe your breakfast in one sentence and include the word 'banana'."),
    ("include_keyword", "river", "Write one sentence about a walk; it must contain the word 'river'."),
    ("no_commas", "", "Describe a city in one sentence without using any commas."),
    ("no_commas", "", "List three colours without using a single comma."),
    ("max_words", "10", "In at most 10 words, say what a book is."),
    ("max_words", "5", "Using no more than 5 words, describe the sea."),
    ("quoted", "", "Wrap your entire answer in double quotation marks: what do bees make?"),
    ("quoted", "", "Answer inside double quotes, with nothing outside them: what is frozen water called?"),
]


def format_items(seed: int = 0) -> list[dict]:
    rng = random.Random(seed + 2)
    items = [
        {"instruction_id": iid, "arg": arg, "prompt": prompt}
        for iid, arg, prompt in FORMAT_PROMPTS
    ]
    rng.shuffle(items)
    for i, item in enumerate(items):
        item["id"] = f"format-{i:03d}"
    return items


# --------------------------------------------------------------------------- files


def task_items(seed: int = 0) -> dict[str, list[dict]]:
    return {
        "arith_mc": arith_items(seed=seed),
        "facts_mc": facts_items(seed=seed),
        "format_gen": format_items(seed=seed),
    }


def _jsonl_bytes(items: list[dict]) -> bytes:
    return "".join(json.dumps(it, ensure_ascii=False, sort_keys=True) + "\n" for it in items).encode("utf-8")


def write_task_data(data_dir: Path, seed: int = 0) -> dict[str, Path]:
    """Write the three task files under `data_dir` (idempotent); returns {task: absolute path}."""
    data_dir = Path(data_dir).resolve()
    out: dict[str, Path] = {}
    for task, items in task_items(seed).items():
        path = data_dir / TASK_FILES[task]
        write_bytes_atomic(path, _jsonl_bytes(items), skip_unchanged=True)
        out[task] = path
    return out
