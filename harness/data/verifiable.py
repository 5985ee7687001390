"""Prompts that carry verifiable instructions, and the rule verifiers that score answers to them.

This is how the embedded default gets preference data and a judge without a hub or an API:
the instructions (word limits, bullet counts, keywords, case, ending phrase, no commas)
are checked by code, so "better" has a definite meaning.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

TOPICS = [
    "the water cycle", "why the sky is blue", "how vaccines work", "the history of the bicycle",
    "photosynthesis", "how to brew tea", "the rules of chess", "black holes", "composting at home",
    "the Roman Empire", "how a refrigerator works", "learning a new language", "volcanoes",
    "healthy sleep habits", "the invention of printing", "how bees make honey", "saving money",
    "the moon's phases", "recycling plastic", "how rainbows form", "the human heart", "earthquakes",
    "time management", "the solar system", "how airplanes fly", "ocean tides", "the internet",
    "growing tomatoes", "why leaves change color", "electric cars", "the pyramids of Giza",
    "how to write a good email", "the benefits of walking", "clouds", "coffee", "penguins",
]
KEYWORDS = ["simple", "important", "energy", "example", "because", "nature", "people", "daily"]
ENDINGS = ["Hope this helps!", "That is all.", "Any other questions?"]


@dataclass(frozen=True)
class Instruction:
    kind: str  # max_words | bullets | keyword | lowercase | ending | no_commas
    value: object = None

    def text(self) -> str:
        return {
            "max_words": f"Answer in at most {self.value} words.",
            "bullets": f"Use exactly {self.value} bullet points, each line starting with '- '.",
            "keyword": f"Include the word '{self.value}'.",
            "lowercase": "Write your entire answer in lowercase letters.",
            "ending": f"End your answer with the exact phrase '{self.value}'",
            "no_commas": "Do not use any commas.",
        }[self.kind]

    def check(self, response: str) -> bool:
        r = response.strip()
        if self.kind == "max_words":
            return 0 < len(r.split()) <= int(self.value)
        if self.kind == "bullets":
            return sum(1 for line in r.splitlines() if line.lstrip().startswith(("- ", "* "))) == int(self.value)
        if self.kind == "keyword":
            return re.search(rf"\b{re.escape(str(self.value))}\b", r, flags=re.IGNORECASE) is not None
        if self.kind == "lowercase":
            return bool(r) and r == r.lower() and any(c.isalpha() for c in r)
        if self.kind == "ending":
            return r.endswith(str(self.value))
        if self.kind == "no_commas":
            return bool(r) and "," not in r
        raise ValueError(f"unknown instruction kind {self.kind!r}")


@dataclass(frozen=True)
class VerifiablePrompt:
    topic: str
    instructions: tuple[Instruction, ...] = field(default_factory=tuple)

    @property
    def text(self) -> str:
        return f"Explain {self.topic}. " + " ".join(i.text() for i in self.instructions)

    def score(self, response: str) -> float:
        """Share of instructions followed, in [0, 1]."""
        if not self.instructions:
            return 0.0
        return sum(i.check(response) for i in self.instructions) / len(self.instructions)

    def to_dict(self) -> dict:
        return {"topic": self.topic, "instructions": [[i.kind, i.value] for i in self.instructions]}

    @classmethod
    def from_dict(cls, d: dict) -> "VerifiablePrompt":
        return cls(d["topic"], tuple(Instruction(k, v) for k, v in d["instructions"]))


def _random_instruction(rng: random.Random, kind: str) -> Instruction:
    if kind == "max_words":
        return Instruction(kind, rng.choice([15, 20, 30]))
    if kind == "bullets":
        return Instruction(kind, rng.choice([2, 3]))
    if kind == "keyword":
        return Instruction(kind, rng.choice(KEYWORDS))
    if kind == "ending":
        return Instruction(kind, rng.choice(ENDINGS))
    return Instruction(kind)


def split_of(prompt: VerifiablePrompt) -> str:
    """Train/eval membership by a hash of the text: disjoint, and stable whatever n is asked for."""
    import hashlib

    return "eval" if int(hashlib.sha256(prompt.text.encode()).hexdigest(), 16) % 4 == 0 else "train"


def make_prompts(n: int, seed: int, *, split: str = "train") -> list[VerifiablePrompt]:
    """n deterministic prompts of one split (train and eval never share a prompt)."""
    rng = random.Random(seed)
    kinds = ["max_words", "bullets", "keyword", "lowercase", "ending", "no_commas"]
    out: list[VerifiablePrompt] = []
    seen: set[str] = set()
    for _ in range(200 * n):
        if len(out) == n:
            break
        picked = set(rng.sample(kinds, k=rng.choice([1, 2])))
        # pairs that contradict or are too hard for a 135M model are skipped: keeps the task learnable
        if {"bullets", "max_words"} <= picked or {"lowercase", "ending"} <= picked:
            continue
        prompt = VerifiablePrompt(rng.choice(TOPICS), tuple(_random_instruction(rng, k) for k in sorted(picked)))
        if prompt.text in seen or split_of(prompt) != split:
            continue
        seen.add(prompt.text)
        out.append(prompt)
    if len(out) < n:
        raise ValueError(f"only {len(out)} distinct {split} prompts available, asked for {n}")
    return out


def template_answer(prompt: VerifiablePrompt, *, comply: bool, rng: random.Random) -> str:
    """A response written by rules: one that follows every instruction, or one that breaks them all.

    Used with the tiny test model (which cannot write) so that the preference is learnable.
    """
    kinds = {i.kind: i.value for i in prompt.instructions}
    facts = [f"{prompt.topic} is worth knowing", "it shows up in ordinary life", "the main ideas are clear",
             "many cases can show it", "scientists keep learning more"]
    if "keyword" in kinds:  # the violating answer must not contain the keyword by accident
        facts = [f for f in facts if str(kinds["keyword"]).lower() not in f.lower()]
    rng.shuffle(facts)
    if comply:
        n_bullets = kinds.get("bullets")
        body = "\n".join(f"- {f}" for f in (facts * 2)[: int(n_bullets)]) if n_bullets else facts[0] + "."
        if "keyword" in kinds:
            body += f" It is {kinds['keyword']}."
        if "lowercase" in kinds:
            body = body.lower()
        if "ending" in kinds:
            body += f" {kinds['ending']}"
        return body
    n_bullets = kinds.get("bullets")
    body = "\n".join(f"- {f}" for f in (facts * 2)[: int(n_bullets) + 2]) if n_bullets else ". ".join(facts[:3]) + "."
    if "max_words" in kinds:
        body = body + " " + " ".join(facts * 3)
    if "no_commas" in kinds:
        body = body.replace(" is ", ", as we know, is ", 1) + ", indeed."
    if "lowercase" in kinds:
        body = body.upper()
    return body
