"""Pairs from candidate answers: best vs worst by verifier scores or by a judge's round robin, and the
prompt pools iterative rounds sample from."""
from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from harness.data.rows import RowError, message_text, read_rows
from harness.data.verifiable import VerifiablePrompt
from harness.errors import DataError


def best_vs_worst(prompts: list[str], candidates: list[list[str]], scores: list[list[float]]) -> tuple[list[dict], Counter]:
    """Per prompt, the best-scored answer as chosen and the worst as rejected (the earliest answer wins
    a tie for either place); a prompt whose scores are all equal, or whose two answers are the same
    text or empty, gives no pair and is counted under that reason."""
    pairs, dropped = [], Counter()
    for text, answers, score in zip(prompts, candidates, scores):
        best = max(range(len(answers)), key=lambda i: (score[i], -i))
        worst = min(range(len(answers)), key=lambda i: (score[i], i))
        if score[best] == score[worst]:
            dropped["tie"] += 1
        elif answers[best].strip() == answers[worst].strip():
            dropped["chosen_equals_rejected"] += 1
        elif not answers[best].strip() or not answers[worst].strip():
            dropped["empty_answer"] += 1
        else:
            pairs.append({"prompt": text, "chosen": answers[best], "rejected": answers[worst]})
    return pairs, dropped


def rank_by_judge(prompts: list[tuple[str, VerifiablePrompt | None]], candidates: list[list[str]], judge_spec,
                  cache_dir: Path | None = None) -> tuple[list[dict], Counter]:
    """Best vs worst among each prompt's answers by a round robin of pairwise verdicts (both orders,
    so the judge's position bias cancels); equal scores are a tie, dropped and counted."""
    from evals.judges import JudgeItem, build_judge, position_swap

    items, owners = [], []
    for p, ((text, verifier), answers) in enumerate(zip(prompts, candidates)):
        for i in range(len(answers)):
            for j in range(i + 1, len(answers)):
                items.append(JudgeItem(text, answers[i], answers[j], verifier))
                owners.append((p, i, j))
    verdicts = position_swap(build_judge(judge_spec, cache_dir=cache_dir), items).verdicts if items else []
    wins = [[0.0] * len(a) for a in candidates]
    for (p, i, j), v in zip(owners, verdicts):  # preference 1: first (i) wins, 2: second (j), 1.5: tie
        wins[p][i] += 2.0 - v
        wins[p][j] += v - 1.0
    return best_vs_worst([text for text, _ in prompts], candidates, wins)


def pool_prompts(source: str, n: int, seed: int) -> list[tuple[str, None]]:
    texts = []
    for file, line, row in read_rows(source):
        if "prompt" not in row:
            raise RowError(f"{file}: row {line}: missing field 'prompt' (iteration.prompt_pool rows need one)",
                           file=file, row=line, field="prompt", code="missing_field")
        texts.append(message_text(row["prompt"], file, line, "prompt", "user"))
    unique = list(dict.fromkeys(t for t in texts if t.strip()))
    if not unique:
        raise DataError(f"{source}: the prompt pool has no prompts")
    rng = random.Random(seed)
    return [(t, None) for t in rng.sample(unique, min(n, len(unique)))]
