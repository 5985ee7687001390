"""`harness gate plan CONFIG`: print the gate's simulated error rates for a config, before training."""
from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def add_plan_command(sub) -> None:
    plan = sub.add_parser("gate-plan", help="(also: harness gate plan CONFIG) the gate's false-promote rate and "
                                            "power for a config's rules and eval sizes, by simulation",
                          description="Simulates cells of known truth through the same statistics and gate() the "
                                      "runs use. Exit 0 when every no-change/equal-quality rate is within its stated "
                                      "level (plus 3 Monte-Carlo standard errors), 1 when not, 2 on bad input.")
    plan.add_argument("config", help="experiment or sweep YAML")
    plan.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    plan.add_argument("--sims", type=int, default=None,
                      help="simulated cells per scenario (default 400, or 200 with eval.sequential, whose cells are "
                           "judged batch by batch; the 80%%-power size search uses half)")
    plan.add_argument("--effects", default="10,20", help="win-rate improvements to check power at, in points")
    plan.add_argument("--regressions", default="0.1,0.2", help="domain accuracy drops to check blocking at")
    plan.add_argument("--assume", action="append", default=[], metavar="KEY=VALUE",
                      help="replace one of the printed assumptions about the simulated cells with what your runs "
                           "measure (e.g. tie_share=0.4, length_correlation=0.7, kl_mean_nats=0.5)")
    plan.add_argument("--seed", type=int, default=0)
    plan.add_argument("--json", action="store_true")
    plan.set_defaults(func=cmd_gate_plan)


def _floats(text: str, flag: str) -> list[float]:
    from harness.errors import ConfigError

    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{flag}: expected comma-separated numbers, got {text!r}") from None


def load_plan_target(path: str, overrides: list[str]):
    """An experiment config, or a sweep's first cell with the sweep's family size."""
    from harness.config import load_config, read_yaml_mapping

    if "grid" in read_yaml_mapping(Path(path)):
        from harness.sweep import load_sweep

        _, cells = load_sweep(path, overrides)
        config = cells[0]
        config.gate.family_size = max(config.gate.family_size, len(cells))
        return config
    return load_config(path, overrides)


def cmd_gate_plan(args) -> int:
    from harness.errors import ConfigError
    from harness.gate_plan import SIZE_GRID, parse_assumptions, plan_gate

    if args.sims is not None and args.sims < 20:
        raise ConfigError(f"--sims: at least 20 simulated cells per scenario (got {args.sims})")
    assumptions = parse_assumptions(args.assume)  # before loading anything: a typo is an input error
    config = load_plan_target(args.config, args.set)
    sims = args.sims or (200 if config.eval.sequential is not None else 400)
    # the 80%-power size search runs half as many cells per size tried (200 at the default --sims)
    plan = plan_gate(config, config_path=args.config, sims=sims, seed=args.seed, search_sims=sims // 2,
                     effects_pct=_floats(args.effects, "--effects"),
                     regressions=_floats(args.regressions, "--regressions"), assumptions=assumptions)
    level, cell_level = plan.stated_level, plan.cell_level
    within = all(s.promote_rate <= cell_level + 3 * s.mc_stderr
                 for s in plan.scenarios if s.scenario in ("no_change", "equal_quality"))
    if plan.family_wise_rate is not None:
        within = within and plan.family_wise_rate <= level + 3 * plan.family_wise_mc_stderr
    if args.json:
        print(json.dumps(plan.to_json() | {"within_level": within}, indent=1))
        return 0 if within else 1
    console = Console()
    sizes = plan.sizes
    source = escape(sizes["n_prompts_source"]) if sizes["n_prompts_exact"] else f"[yellow]{escape(sizes['n_prompts_source'])}[/]"
    console.print(f"[bold]gate plan[/] for {escape(args.config)}: simulated at {sizes['n_prompts']} eval prompts ({source}), "
                  f"domain items {sizes['domain_items'] or 'none'}, {plan.sims} simulated cells per scenario",
                  highlight=False)
    if plan.sequential:
        console.print(f"eval.sequential: judged {plan.sequential['batch_prompts']} prompts at a time"
                      + (f", domain documents {plan.sequential['batch_items']} at a time" if plan.sequential["domain"]
                         else "") + ", each cell stopped as a run stops (the columns 'prompts judged' and "
                      "'<task> docs' are the means)")
    console.print(f"stated false-promote level: {100 * level:.3g}% "
                  + (f"for the sweep ({plan.family_size} cells, {100 * cell_level:.3g}% each, Bonferroni)"
                     if plan.family_size > 1 else "per cell"))
    table = Table(show_lines=False, caption="rule columns: share of simulated cells passing that rule")
    used = plan.sequential is not None
    tasks = list(plan.scenarios[0].mean_items_used) if used and plan.scenarios else []
    for col in ("truth", "correct", "P(promote)", "MC se", *(["prompts judged"] if used else []),
                *[f"{t} docs" for t in tasks], *[r["name"] for r in plan.rules if r["simulated"]]):
        # the scenario and its rates stay whole in a narrow terminal; rule names fold
        table.add_column(col, justify="left" if col in ("truth", "correct") else "right", overflow="fold",
                         no_wrap=col in ("truth", "correct", "P(promote)", "MC se"))
    for s in plan.scenarios:
        table.add_row(s.scenario, s.expected, f"{100 * s.promote_rate:.1f}%", f"{100 * s.mc_stderr:.1f}",
                      *([f"{s.mean_prompts_judged:.0f} of {sizes['n_prompts']}"] if used else []),
                      *[f"{s.mean_items_used[t]:.0f} of {sizes['domain_items'][t]}" for t in tasks],
                      *[f"{100 * v:.0f}%" for v in s.rule_pass_rates.values()])
    console.print(table)
    for s in plan.scenarios:
        console.print(f"  {s.scenario}: {s.description}")
    if plan.family_wise_rate is not None:
        console.print(f"all-equal sweep of {plan.family_size} cells ships any cell: {100 * plan.family_wise_rate:.1f}% "
                      f"(+-{100 * plan.family_wise_mc_stderr:.1f}) vs level {100 * level:.3g}%")
    for name, size in plan.sizes_for_power.items():
        what = (f"{size} domain items per task show an unchanged accuracy non-inferior" if name == "non_inferior"
                else f"{size} eval prompts promote {name}") if size else f"{name}: not reached up to {SIZE_GRID[-1]}"
        console.print(f"80% power: {what}")
    if plan.not_simulated:
        console.print(f"not simulated (they can only lower P(promote)): {', '.join(plan.not_simulated)}")
    console.print(f"assumptions: {plan.assumptions}")
    for note in plan.notes:
        console.print(f"note: {escape(note)}", highlight=False)
    for r in plan.rules:
        if r["statistic"] == "point":
            console.print(f"[yellow]rule {r['name']} decides on the point estimate: no error rate[/]")
    verdict = "within" if within else "[red]ABOVE[/]"
    console.print(f"false-promote rates {verdict} the stated level")
    return 0 if within else 1


def rewrite_gate_plan(argv: list[str]) -> list[str]:
    """`harness gate plan CONFIG` is spelled as a sub-subcommand; argparse sees `gate-plan`."""
    if len(argv) >= 2 and argv[0] == "gate" and argv[1] == "plan":
        return ["gate-plan", *argv[2:]]
    return argv
