"""What `optforge show` prints beside a stored program's source: its simplified form and its
LaTeX, computed by the language (never failing: a display aid must not hide stored data)."""

from __future__ import annotations

__all__ = ["show_forms", "step_cost"]


def show_forms(source: str) -> tuple[str | None, str | None, str | None]:
    """(simplified source, LaTeX, why they are missing) computed by the language."""
    from optforge.dsl.simplifier import simplify_bounded

    from optforge import dsl

    try:
        prog = dsl.parse(source, filename="<stored program>")
        result = simplify_bounded(prog)
        if result.bound_hit is not None:  # the source itself stands: say why
            return (f"(not simplified: {result.bound_hit})", dsl.to_latex(prog), None)
        simplified = dsl.format_program(result.program)
        return simplified, dsl.to_latex(prog), None
    except Exception as e:  # noqa: BLE001 - a display aid must not hide the stored data
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return None, None, first


def step_cost(source: str) -> tuple[int, list[str]] | None:
    """(passes of the model a step costs, the model-level inputs it reads) for a stored
    program (`dsl.needs`): what a campaign charged by time expects it to cost before
    measuring it. None if the source does not parse."""
    from optforge.dsl.needs import needs, passes_per_step

    from optforge import dsl

    try:
        prog = dsl.parse(source, filename="<stored program>")
    except Exception:  # noqa: BLE001 - a display aid must not hide the stored data
        return None
    return passes_per_step(prog), sorted(needs(prog))
