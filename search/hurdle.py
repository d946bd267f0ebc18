"""The screening hurdle: which screened children go on to stage 1.

A child goes on if its screening score reaches a quantile of the screening scores of the
children screened before it (the last `HURDLE_WINDOW`), once `MIN_HURDLE_SCREENINGS` are
known (the progressive dynamic hurdles of So et al., 2019, whose hurdle is the mean of the
candidates that reached it). A quantile of the children, not of the population: as the
population improves, most children fall below its median, and a hurdle set there would spend
more on screenings than it saves. Failed screenings (non-finite scores) never go on and
never enter the window.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["Hurdle", "HURDLE_WINDOW", "MIN_HURDLE_SCREENINGS", "FAILED", "BELOW"]

HURDLE_WINDOW = 64  # the hurdle is a quantile of this many most recent screening scores
MIN_HURDLE_SCREENINGS = 4  # screening scores needed before the hurdle applies
FAILED = "screen: failed"
BELOW = "screen: below the hurdle"


class Hurdle:
    """The hurdle at `quantile` over `window`, a list it owns and updates in place (the
    campaign saves it in its checkpoint: `Counters.recent_screens`), oldest first."""

    def __init__(self, quantile: float, window: list[float]):
        self.quantile, self.window = quantile, window

    def judge(self, screen: float) -> str | None:
        """None if a child with screening score `screen` goes on to stage 1, else why not.
        A finite score then joins the window (the oldest leaves past `HURDLE_WINDOW`)."""
        if not math.isfinite(screen):
            return FAILED
        window = self.window
        below = (len(window) >= MIN_HURDLE_SCREENINGS
                 and screen < float(np.quantile(window, self.quantile)))
        window.append(screen)
        del window[:-HURDLE_WINDOW]
        return BELOW if below else None
