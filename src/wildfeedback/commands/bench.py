"""`wildfeedback bench ...`: benchmarks that print measured figures with the machine."""

from __future__ import annotations

import typer

app = typer.Typer(help="Benchmarks against published figures.", no_args_is_help=True)

_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


@app.command(context_settings=_PASS_THROUGH, add_help_option=False)
def ingest(ctx: typer.Context) -> None:
    """Single-core throughput and peak memory of `ingest` on real ShareGPT data, 100 MB and 1 GB
    (--help for options)."""
    from wildfeedback.bench.ingest import main

    raise typer.Exit(main(ctx.args))


@app.command(context_settings=_PASS_THROUGH, add_help_option=False)
def uss(ctx: typer.Context) -> None:
    """Student and LLM detectors on the USS dialogues beside SPUR's published F1 (--help for options)."""
    from wildfeedback.bench.uss import main

    main(ctx.args)


@app.command(context_settings=_PASS_THROUGH, add_help_option=False)
def ifllm(ctx: typer.Context) -> None:
    """Implicit reward model on IFLLM's side-by-side tasks: text / behaviour / fused beside the published
    55% / 64% (--help for options)."""
    from wildfeedback.bench.ifllm import main

    main(ctx.args)


@app.command(context_settings=_PASS_THROUGH, add_help_option=False)
def feedback(ctx: typer.Context) -> None:
    """Feedback detectors on real ChatGPT turns labelled with WildFeedback's rubric, under the given folds
    (--help for options)."""
    from wildfeedback.bench.feedback import main

    main(ctx.args)
