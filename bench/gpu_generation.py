"""Generation on a GPU: vLLM vs transformers (batched), same prompts, greedy, same max_new_tokens.

Imports only torch, transformers and (when installed) vllm, so it also runs on a bare GPU machine:

    python -m bench.gpu_generation --model-dir DIR [--random-init] [--prompts 64] [--max-new 64]

`--random-init` builds the architecture in DIR/config.json with random weights (throughput does not
depend on the weights; a machine that cannot convert the embedded GGUF can still measure).
"""
from __future__ import annotations

import argparse
import time

PROMPT_TOPICS = ["how airplanes fly", "why the sky is blue", "how vaccines work", "what a prime number is",
                 "how rainbows form", "why leaves change color", "how a battery stores energy", "what gravity does"]


def _prompt_ids(tok, prompts: list[str]) -> list[list[int]]:
    out = []
    for p in prompts:
        text = tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        out.append(tok(text, add_special_tokens=False)["input_ids"])
    return out


def hf_generate(model, tok, prompt_ids, max_new: int, batch_size: int, *, ignore_eos: bool = False) -> tuple[int, float]:
    """evals.generation's batching (length-sorted, left padding, greedy) with the inputs on the model's device."""
    import torch

    device = next(model.parameters()).device
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    order = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]))
    tokens = 0
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = [prompt_ids[i] for i in order[start:start + batch_size]]
            width = max(len(p) for p in chunk)
            ids = torch.tensor([[pad] * (width - len(p)) + p for p in chunk], device=device)
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk], device=device)
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new, do_sample=False,
                                 temperature=None, top_p=None, top_k=None, pad_token_id=pad,
                                 eos_token_id=None if ignore_eos else tok.eos_token_id,
                                 **({"min_new_tokens": max_new} if ignore_eos else {}))
            for row in out[:, width:].tolist():
                n = 0
                for t in row:
                    n += 1
                    if not ignore_eos and t == tok.eos_token_id:
                        break
                tokens += n
    if device.type == "cuda":
        torch.cuda.synchronize()
    return tokens, time.perf_counter() - started


def vllm_generate(llm, prompt_ids, max_new: int, *, ignore_eos: bool = False) -> tuple[int, float]:
    from vllm import SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=max_new, ignore_eos=ignore_eos)
    started = time.perf_counter()
    outs = llm.generate([{"prompt_token_ids": ids} for ids in prompt_ids], params, use_tqdm=False)
    seconds = time.perf_counter() - started
    return sum(len(o.outputs[0].token_ids) for o in outs), seconds


def gpu_numbers(model_dir: str, prompts: list[str], max_new: int, *, random_init: bool = False, reps: int = 3,
                ignore_eos: bool = False, device: str = "cuda") -> dict:
    import statistics

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    if random_init:
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir), dtype=torch.bfloat16)
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16)
    model = model.to(device).eval()
    ids = _prompt_ids(tok, prompts)
    batch = min(len(ids), 64)
    hf_generate(model, tok, ids[:2], 4, 2, ignore_eos=ignore_eos)  # warm-up
    out: dict = {"prompts": len(ids), "max_new": max_new, "hf_batch": batch, "reps": reps}
    hf_b, hf_1 = [], []
    for _ in range(reps):
        t, s = hf_generate(model, tok, ids, max_new, batch, ignore_eos=ignore_eos)
        hf_b.append(t / s)
        t, s = hf_generate(model, tok, ids[: max(2, len(ids) // 8)], max_new, 1, ignore_eos=ignore_eos)
        hf_1.append(t / s)
    out["hf_batched_tps"], out["hf_single_tps"] = statistics.median(hf_b), statistics.median(hf_1)
    try:
        import vllm  # noqa: F401
    except Exception as exc:  # not installed, or a build that does not match this torch/CUDA
        out["vllm_error"] = f"{type(exc).__name__}: {exc}"[:200]
        return out
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    from vllm import LLM

    if random_init:
        out["vllm_error"] = "vLLM loads weights from disk: --random-init measures transformers only"
        return out
    llm = LLM(model=model_dir, dtype="bfloat16", gpu_memory_utilization=0.4, seed=0)
    vllm_generate(llm, ids[:2], 4, ignore_eos=ignore_eos)  # warm-up (CUDA graphs)
    v = []
    for _ in range(reps):
        t, s = vllm_generate(llm, ids, max_new, ignore_eos=ignore_eos)
        v.append(t / s)
    out["vllm_tps"] = statistics.median(v)
    return out


def gpu_line(model_dir: str, prompts: list[str], quick: bool):
    from bench.common import Line, ratio

    prompts = (prompts * 8)[: 16 if quick else 64]
    n = gpu_numbers(model_dir, prompts, 16 if quick else 64, reps=1 if quick else 3)
    hf = (f"transformers batch {n['hf_batch']} {n['hf_batched_tps']:.0f} tokens/s, one at a time "
          f"{n['hf_single_tps']:.0f} tokens/s")
    if "vllm_tps" not in n:
        return Line("generation_gpu", "skipped", f"GPU present but no vLLM ({n['vllm_error']}; pip install -e "
                                                 f"'.[vllm]'); {hf}")
    r = n["vllm_tps"] / n["hf_batched_tps"]
    return Line("generation_gpu", ratio(r), f"vLLM {n['vllm_tps']:.0f} tokens/s vs {hf}, {n['prompts']} prompts x up "
                                             f"to {n['max_new']} new tokens, bf16, greedy, median of {n['reps']}")


def main() -> int:
    import json

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--random-init", action="store_true")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--max-new", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--ignore-eos", action="store_true", help="always generate max_new tokens (random weights)")
    ap.add_argument("--device", default="cuda", help="cpu only to try this script out")
    a = ap.parse_args()
    prompts = [f"Explain {PROMPT_TOPICS[i % len(PROMPT_TOPICS)]} in {3 + i % 5} sentences." for i in range(a.prompts)]
    print(json.dumps(gpu_numbers(a.model_dir, prompts, a.max_new, random_init=a.random_init, reps=a.reps,
                                 ignore_eos=a.ignore_eos, device=a.device)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
