"""The numbers a reader decides on, shared by the cell page and the sweep page.

``cell_metrics(result)`` pulls the comparison metrics out of a result dict (None where missing
or not finite); ``key_numbers(result)`` turns them into the cell page's cards; ``win_facts``
says in words whether the win survives length control. Thresholds live here, once.
"""
from __future__ import annotations

from typing import Any, Mapping

from reports.common import DASH, finite, fmt_float, mapping

LC = "winrate/lc_win_rate_pct"
RAW = "winrate/win_rate_pct"
GAP = "winrate/raw_minus_lc_pct"
KL = "kl/seq_kl_k3"
LEN_RATIO = "length/ratio_tokens"
POLICY_TOKENS = "length/policy_mean_tokens"
REFERENCE_TOKENS = "length/reference_mean_tokens"
CHOSEN = "chosen_logp/chosen_delta"
REJECTED = "chosen_logp/rejected_delta"
DELTA_SUFFIX = "/acc_delta"
PVALUE_SUFFIX = "/acc_delta_pvalue"

SIGNIFICANCE = 0.05
LONGER_RATIO = 1.2  # answers noticeably longer than the reference's (amber)
INFLATED_RATIO = 1.5  # inflated (red), as in the samples table
GAP_WARN = 5.0  # raw minus LC win rate, points, above which length bought part of the win


def cell_metrics(result: Any) -> dict[str, float | None]:
    r = mapping(result)
    m = mapping(r.get("metrics"))

    def g(key: str) -> float | None:
        return finite(m.get(key))

    lc, raw = g(LC), g(RAW)
    gap = g(GAP)
    if gap is None and lc is not None and raw is not None:
        gap = raw - lc
    return {
        "lc": lc, "lc_lo": g(LC + "_ci_low"), "lc_hi": g(LC + "_ci_high"), "lc_stderr": g(LC + "_stderr"),
        "raw": raw, "raw_lo": g(RAW + "_ci_low"), "raw_hi": g(RAW + "_ci_high"), "gap": gap,
        "kl": g(KL), "kl_stderr": g(KL + "_stderr"),
        "len_ratio": g(LEN_RATIO), "policy_tokens": g(POLICY_TOKENS), "reference_tokens": g(REFERENCE_TOKENS),
        "chosen": g(CHOSEN), "chosen_stderr": g(CHOSEN + "_stderr"), "rejected": g(REJECTED),
    }


def num(x: float | None, digits: int = 4) -> str:
    if x is None:
        return DASH
    return fmt_float(round(x, digits)) if abs(x) >= 1e-3 else fmt_float(x)


def signed(x: float | None, digits: int = 3) -> str:
    if x is None:
        return DASH
    return ("+" if x > 0 else "") + num(x, digits)


def lc_class(m: Mapping) -> str:
    if m["lc_lo"] is not None and m["lc_lo"] > 50:
        return "good"
    if m["lc_hi"] is not None and m["lc_hi"] < 50:
        return "bad"
    return ""


def ratio_class(ratio: float | None) -> str:
    if ratio is None:
        return ""
    return "bad" if ratio >= INFLATED_RATIO else ("warn" if ratio >= LONGER_RATIO else "")


def domain_deltas(metrics: Any, tasks: list[str] | None = None) -> list[dict]:
    """[{task, delta, p, sig, cls, value}] for every `<task>/acc_delta` (or the tasks given)."""
    m = mapping(metrics)
    if tasks is None:
        tasks = sorted({str(k)[: -len(DELTA_SUFFIX)] for k in m if str(k).endswith(DELTA_SUFFIX)})
    out = []
    for task in tasks:
        d = finite(m.get(task + DELTA_SUFFIX))
        p = finite(m.get(task + PVALUE_SUFFIX))
        sig = d is not None and p is not None and p < SIGNIFICANCE
        out.append({"task": task, "label": task.removeprefix("domain_"), "value": d, "delta": signed(d),
                    "p": num(p, 3) if p is not None else None, "sig": sig,
                    "cls": ("good" if d > 0 else "bad") if sig and d else ""})
    return out


def win_facts(m: Mapping) -> list[tuple[str, str]]:
    """(css class, sentence) pairs: is the win real, or just longer answers?"""
    facts: list[tuple[str, str]] = []
    lc, lo, hi = m["lc"], m["lc_lo"], m["lc_hi"]
    if lc is not None:
        interval = f" [{num(lo, 2)}, {num(hi, 2)}]" if lo is not None and hi is not None else ""
        if lc_class(m) == "good":
            facts.append(("good", f"LC win rate {num(lc, 2)}%, 95% interval{interval} above 50: the win survives length control"))
        elif lc_class(m) == "bad":
            facts.append(("bad", f"LC win rate {num(lc, 2)}%, 95% interval{interval} below 50: the policy loses once length is controlled"))
        elif interval:
            facts.append(("warn", f"LC win rate {num(lc, 2)}%, 95% interval{interval} includes 50: not distinguishable from the reference"))
        else:
            facts.append(("warn", f"LC win rate {num(lc, 2)}% (no interval recorded)"))
    if m["gap"] is not None:
        warn = m["gap"] > GAP_WARN
        facts.append(("warn" if warn else "good", f"raw minus LC win rate {signed(m['gap'], 2)} points"
                      + (": the length difference bought part of the raw win" if warn else ": the raw win is not a length effect")))
    if m["len_ratio"] is not None:
        r = m["len_ratio"]
        word = "longer than" if r > 1.02 else ("shorter than" if r < 0.98 else "as long as")
        facts.append((ratio_class(r) or "good", f"answers ×{r:.2f} the reference's length ({word} the reference)"))
    return facts


def key_numbers(result: Any) -> dict | None:
    """The cell page's cards: LC win rate, raw win rate, length, KL, chosen log-prob, domain deltas."""
    m = cell_metrics(result)
    cards = []
    if m["lc"] is not None:
        sub = f"95% CI [{num(m['lc_lo'], 2)}, {num(m['lc_hi'], 2)}]" if m["lc_lo"] is not None else "no interval"
        cards.append({"id": "lc", "label": "LC win rate", "value": f"{num(m['lc'], 2)}%", "sub": sub, "cls": lc_class(m)})
    if m["raw"] is not None:
        sub = f"raw − LC {signed(m['gap'], 2)} pts" if m["gap"] is not None else ""
        cls = "warn" if m["gap"] is not None and m["gap"] > GAP_WARN else ""
        cards.append({"id": "raw", "label": "raw win rate", "value": f"{num(m['raw'], 2)}%", "sub": sub, "cls": cls})
    if m["len_ratio"] is not None:
        sub = (f"{num(m['policy_tokens'], 1)} vs {num(m['reference_tokens'], 1)} tokens"
               if m["policy_tokens"] is not None and m["reference_tokens"] is not None else "policy / reference tokens")
        cards.append({"id": "length", "label": "length ratio", "value": f"×{m['len_ratio']:.2f}", "sub": sub,
                      "cls": ratio_class(m["len_ratio"])})
    if m["kl"] is not None:
        sub = f"± {num(m['kl_stderr'], 3)} nats/seq (k3)" if m["kl_stderr"] is not None else "nats/seq (k3)"
        cards.append({"id": "kl", "label": "KL to reference", "value": num(m["kl"], 3), "sub": sub, "cls": ""})
    if m["chosen"] is not None:
        parts = [f"± {num(m['chosen_stderr'], 2)}" if m["chosen_stderr"] is not None else "",
                 f"rejected {signed(m['rejected'], 2)}" if m["rejected"] is not None else ""]
        cards.append({"id": "chosen", "label": "Δ log p(chosen)", "value": signed(m["chosen"], 2),
                      "sub": " · ".join(p for p in parts if p) or "nats", "cls": ""})
    for d in domain_deltas(mapping(result).get("metrics")):
        if d["value"] is None:
            continue
        cards.append({"id": f"domain-{d['label']}", "label": f"Δ {d['label']} acc", "value": d["delta"],
                      "sub": (f"p={d['p']}" + (" (significant)" if d["sig"] else "")) if d["p"] else "",
                      "cls": d["cls"]})
    if not cards:
        return None
    return {"cards": cards, "facts": win_facts(m)}
