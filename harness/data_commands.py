"""`harness data check`: the data checks of harness.data.checks at the command line (a table, or --json)."""
from __future__ import annotations

import argparse
import json
import sys

from harness.data.checks import FATAL, WARNING, DataCheckReport, check_source  # noqa: F401
from harness.errors import DataError


def load_config_tokenizer(config):
    """The tokenizer only (no weights): embedded models share SmolLM2's; others via AutoTokenizer."""
    from harness.models import EMBEDDED_MODELS, ModelLoadError, load_tokenizer, resolve_model_path, smollm_tokenizer_dir

    name = config.model.name
    try:
        if name in EMBEDDED_MODELS:
            path = str(smollm_tokenizer_dir(config.resolved_cache_dir))
        elif name.startswith("embedded:"):
            path = resolve_model_path(name, config.resolved_cache_dir)  # raises: unknown embedded model
        else:
            path = name
        return load_tokenizer(path, trust_remote_code=config.model.trust_remote_code,
                              revision=config.model.revision if path == name else None)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"model.name: could not load the tokenizer of {name!r}: {exc}") from None


def add_data_commands(subparsers) -> None:
    """`harness data check SOURCE [--config CONFIG] [--set K=V] [--json]` (cli.py calls this)."""
    data = subparsers.add_parser("data", help="inspect preference data before it costs compute")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    check = data_sub.add_parser(
        "check", help="format, counts and problems of a preference data source",
        description="Check a .jsonl/.json/.parquet file, a folder of them, or hf:NAME. With --config, the "
                    "model's tokenizer and training.max_length add the token-level checks. "
                    "Exit 0 when the data is usable (warnings allowed), 2 on fatal problems.")
    check.add_argument("source", help="a file, a folder, or hf:NAME")
    check.add_argument("--config", help="experiment YAML: model (tokenizer), training.max_length, variant")
    check.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    check.add_argument("--max-length", type=int, help="override training.max_length")
    check.add_argument("--model", help="starting model (HF id, path, embedded:NAME): measure how off-policy the "
                                       "pairs are for it (log-prob of chosen/rejected vs its own samples)")
    check.add_argument("--limit", type=int, help="prompts the off-policy diagnostic measures (default 16)")
    check.add_argument("--cache-dir", help="model and sample cache for --model (default: the config's, or runs/cache)")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.set_defaults(func=cmd_data_check)


def cmd_data_check(args) -> int:
    tokenizer = max_length = variant = variant_shape = None
    split = "train"
    if args.config:
        from harness.config import load_config
        from harness.variants import VARIANTS

        config = load_config(args.config, args.set)
        tokenizer = load_config_tokenizer(config)
        max_length = config.training.max_length
        variant, variant_shape = config.variant, VARIANTS.get(config.variant).data_shape
        split = config.data.split
    elif args.set:
        raise DataError("--set: needs --config")
    if args.max_length is not None:
        max_length = args.max_length
    report = check_source(args.source, tokenizer=tokenizer, max_length=max_length, variant=variant,
                          variant_shape=variant_shape, split=split)
    if args.limit is not None and (not args.model or args.limit <= 0):
        raise DataError("--limit: the number of prompts for --model's off-policy diagnostic (a positive number)")
    if args.model and report.usable:
        from pathlib import Path

        from evals.offpolicy_gap import DEFAULT_PROMPTS, DEFAULT_TEMPERATURE, offpolicy_gap_for_model

        cache = Path(args.cache_dir) if args.cache_dir else config.resolved_cache_dir if args.config else Path("runs/cache")
        temperature = config.data.sample_temperature if args.config else DEFAULT_TEMPERATURE
        report.offpolicy = offpolicy_gap_for_model(args.model, report.usable, cache_dir=cache,
                                                   n_prompts=args.limit or DEFAULT_PROMPTS, temperature=temperature)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1, default=str))
    else:
        print_report(report)
    if report.fatal:
        print(f"error: {report.error()}", file=sys.stderr)
        return 2
    return 0


def print_report(report: DataCheckReport, console=None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    summary = Table(title=f"data check: {escape(report.source)}", show_header=False)
    summary.add_column("what", style="bold")
    summary.add_column("value")
    summary.add_row("format", escape(report.format.get("name", "")))
    summary.add_row("rows", f"{report.rows} read, {report.usable_rows} usable, "
                            f"{sum(report.dropped.values())} dropped")
    if report.dropped:
        summary.add_row("dropped", escape(", ".join(f"{k}: {v}" for k, v in report.dropped.items())))
    counts = {k: v for k, v in report.counts.items() if v}
    if counts:
        summary.add_row("counts", escape(", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))))
    if report.lengths:
        ln = report.lengths
        text = (f"chosen longer in {ln['chosen_longer_share']:.0%} of pairs, mean ratio {ln['mean_length_ratio']:.2f} "
                f"(chars)")
        if "mean_length_ratio_tokens" in ln:
            text += f"; {ln['chosen_longer_share_tokens']:.0%}, {ln['mean_length_ratio_tokens']:.2f} (tokens)"
        summary.add_row("lengths", text)
    if report.labels:
        lb = report.labels
        summary.add_row("labels", f"{lb['desirable']} desirable, {lb['undesirable']} undesirable "
                                  f"({lb['desirable_share']:.0%} desirable)")
    if report.tokenization:
        t = report.tokenization
        rates = ", ".join(f"{k.removesuffix('_truncated_rate')} {v:.0%}" for k, v in t.items()
                          if k.endswith("_truncated_rate"))
        summary.add_row("tokens", escape(
            f"max_length {t['max_length']}: truncated {rates}; truncated away {t['truncated_away']}; "
            f"chosen==rejected after tokenization {t['equal_after_tokenization']}, after truncation "
            f"{t['equal_after_truncation']}; mean prompt {t['mean_prompt_tokens']} tokens"))
    else:
        summary.add_row("tokens", "not checked (give --config for the model's tokenizer and max_length)")
    if report.offpolicy:
        o = report.offpolicy
        summary.add_row("off-policy", escape(
            f"log-prob per token: chosen {o['data/chosen_logp_per_token']:.3g}, rejected "
            f"{o['data/rejected_logp_per_token']:.3g}, the model's own samples "
            f"{o['data/reference_sample_logp_per_token']:.3g}; gap {o['data/offpolicy_gap_nats_per_token']:.3g} "
            f"nats/token over {int(o['data/offpolicy_prompts'])} prompts (near 0: on-policy)"))
    console.print(summary)
    if report.issues:
        table = Table(title="issues")
        for col in ("severity", "place", "problem", "rows"):
            table.add_column(col, overflow="fold")
        for i in report.issues:
            sev = "[red]FATAL[/]" if i.severity == FATAL else "[yellow]warning[/]"
            more = f"; also {', '.join(i.examples)}" if i.examples else ""
            table.add_row(sev, escape(i.place), escape(i.problem + more),
                          str(i.count) if i.row is not None or i.count > 1 else "")
        console.print(table)
    verdict = "[red]not usable[/]" if report.fatal else "[green]usable[/]"
    console.print(f"verdict: {verdict} ({len(report.fatal)} fatal, {len(report.warnings)} warnings)")


def main(argv: list[str] | None = None) -> int:
    """`python -m harness.data.checks check SOURCE ...`: the same command before cli.py wires it in."""
    from harness.errors import HarnessInputError

    parser = argparse.ArgumentParser(prog="harness")
    add_data_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["data", *(argv if argv is not None else sys.argv[1:])])
    try:
        return args.func(args)
    except HarnessInputError as exc:  # ModelLoadError included
        from harness.redaction import scrub_text

        print(f"error: {scrub_text(str(exc))}", file=sys.stderr)  # a dataset URL may carry a token
        return 2
