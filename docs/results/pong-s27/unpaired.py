"""Differences between rows of stored results.json files with unpaired standard errors, and how far each
row's stored scores follow the order the games end (a score's correlation with its position): before the
twenty-seventh session `scores` were stored in that order, so index-by-index pairing compared ranks, not games.
Rows stored since then are in seed order and are also compared game by game (paired); the twenty-eighth to
thirty-first sessions added their chains' rows.

    python docs/results/pong-s27/unpaired.py
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from statistics import correlation, fmean, variance

HERE = Path(__file__).resolve().parent.parent
ROWS = {  # name -> (results.json relative to docs/results, model, timesteps)
    "ANN (pong-s22, 100 games)": ("pong-s23/eval-eps0.05/results.json", "ann", None),
    "T5 hard (pong-s23)": ("pong-s23/eval-eps0.05/results.json", "iir", 5),
    "T1 hard (pong-s23)": ("pong-s23/eval-eps0.05/results.json", "iir", 1),
    "T5 soft (pong-s24)": ("pong-s24/eval-eps0.05/results.json", "iir", 5),
    "T2 soft (pong-s24)": ("pong-s24/eval-eps0.05/results.json", "iir", 2),
    "T1 soft 10k (pong-s24)": ("pong-s24/eval-eps0.05/results.json", "iir", 1),
    "T1 soft 20k (pong-s24)": ("pong-s24/t1-20k/eval-eps0.05/results.json", "iir", 1),
    "T1 soft 50k (pong-s25)": ("pong-s25/t1-50k/eval-eps0.05/results.json", "iir", 1),
    "T5 soft 50k (pong-s25)": ("pong-s25/t5-50k/last-eval-eps0.05/results.json", "iir", 5),
    "ANN (pong-s22, 20 games)": ("pong-s23/results.json", "ann", None),
    "ANN double Q (pong-s26, 20 games)": ("pong-s26/results.json", "ann", None),
}
SEED_ORDERED = {  # rows stored in seed order (twenty-seventh session on)
    "ANN (pong-s22, 100 games, seed order)": ("pong-s27/s22-ann/results.json", "ann", None),
    "ANN (pong-s22, 20 games, seed order)": ("pong-s27/s22-ann/results-20.json", "ann", None),
    "ANN expected SARSA (pong-s27, 100 games)": ("pong-s27/esarsa/eval-eps0.05/results.json", "ann", None),
    "ANN expected SARSA (pong-s27, 20 games)": ("pong-s27/esarsa/results.json", "ann", None),
    "T5 refilled by the ANN (pong-s28, 100 games)": ("pong-s28/chain/eval-eps0.05/results.json", "iir", 5),
    "T1 10k refilled by the ANN (pong-s28, 100 games)": ("pong-s28/chain/eval-eps0.05/results.json", "iir", 1),
    "ANN Adam 2.5e-5 (pong-s28, 20 games)": ("pong-s28/ann-lr25/results.json", "ann", None),
    "ANN Adam 2.5e-5 (pong-s28, 100 games)": ("pong-s28/ann-lr25/eval-eps0.05/results.json", "ann", None),
    **{f"T{t} of the 2.5e-5 ANN (pong-s29, 100 games)": ("pong-s28/chain-lr25/eval-eps0.05/results.json", "iir", t)
       for t in (5, 4, 3, 2, 1)},
    "T1 20k of the 2.5e-5 ANN (pong-s29, 100 games)": ("pong-s29/t1-20k/eval-eps0.05/results.json", "iir", 1),
    "T1 20k of the 2.5e-5 ANN (pong-s29, 20 games)": ("pong-s29/t1-20k/results.json", "iir", 1),
    "T1 of the 2.5e-5 ANN (pong-s29, 20 games)": ("pong-s28/chain-lr25/results.json", "iir", 1),
    "converted T100 of the 2.5e-5 ANN, power 0.5 (pong-s28)": ("pong-s28/chain-lr25/results.json", "converted", 100),
    "converted T100 of the 2.5e-5 ANN, power 1 (pong-s29)": ("pong-s29/converted-eq1-lr25/results.json", "converted",
                                                            100),
    "converted T100 of pong-s22, power 0.5 (pong-s27-chain)": ("pong-s28/chain/results.json", "converted", 100),
    "converted T100 of pong-s22, power 1 (pong-s29)": ("pong-s29/converted-eq1-s22/results.json", "converted", 100),
    "converted T100 of the one-command chain (pong-s30)": ("pong-s30/preset/results.json", "converted", 100),
    **{f"T{t} of the one-command chain (pong-s30)": ("pong-s30/preset/results.json", "iir", t)
       for t in (5, 4, 3, 2, 1)},
    **{f"T{t} of the one-command chain (pong-s30, 100 games)": ("pong-s30/preset/eval-eps0.05/results.json", "iir", t)
       for t in (5, 4, 3, 2, 1)},
    "converted T100 of the one-command chain (pong-s30, 100 games)": ("pong-s30/preset/eval-eps0.05/results.json",
                                                                       "converted", 100),
    "T1 with 20-game validations (pong-s32)": ("pong-s32/t1-v20/results.json", "iir", 1),
    "T1 with 20-game validations (pong-s32, 100 games)": ("pong-s32/t1-v20/eval-eps0.05/results.json", "iir", 1),
}
PAIRS = [("T5 soft (pong-s24)", "T5 hard (pong-s23)"), ("T5 soft (pong-s24)", "ANN (pong-s22, 100 games)"),
         ("T2 soft (pong-s24)", "ANN (pong-s22, 100 games)"), ("T1 soft 10k (pong-s24)", "ANN (pong-s22, 100 games)"),
         ("T1 soft 20k (pong-s24)", "ANN (pong-s22, 100 games)"), ("T1 soft 20k (pong-s24)", "T1 hard (pong-s23)"),
         ("T1 soft 20k (pong-s24)", "T1 soft 10k (pong-s24)"), ("T1 soft 50k (pong-s25)", "T1 soft 20k (pong-s24)"),
         ("T1 soft 50k (pong-s25)", "ANN (pong-s22, 100 games)"), ("T5 soft 50k (pong-s25)", "T5 soft (pong-s24)"),
         ("T5 soft 50k (pong-s25)", "ANN (pong-s22, 100 games)"),
         ("ANN double Q (pong-s26, 20 games)", "ANN (pong-s22, 20 games)")]
PAIRED = [("ANN expected SARSA (pong-s27, 100 games)", "ANN (pong-s22, 100 games, seed order)"),
          ("ANN expected SARSA (pong-s27, 20 games)", "ANN (pong-s22, 20 games, seed order)"),
          ("T5 refilled by the ANN (pong-s28, 100 games)", "ANN (pong-s22, 100 games, seed order)"),
          ("T1 10k refilled by the ANN (pong-s28, 100 games)", "ANN (pong-s22, 100 games, seed order)"),
          ("T1 10k refilled by the ANN (pong-s28, 100 games)", "T5 refilled by the ANN (pong-s28, 100 games)"),
          ("ANN Adam 2.5e-5 (pong-s28, 20 games)", "ANN (pong-s22, 20 games, seed order)"),
          ("ANN Adam 2.5e-5 (pong-s28, 100 games)", "ANN (pong-s22, 100 games, seed order)"),
          *((f"T{t} of the 2.5e-5 ANN (pong-s29, 100 games)", "ANN Adam 2.5e-5 (pong-s28, 100 games)")
            for t in (5, 4, 3, 2, 1)),
          ("T1 of the 2.5e-5 ANN (pong-s29, 100 games)", "T2 of the 2.5e-5 ANN (pong-s29, 100 games)"),
          ("T5 of the 2.5e-5 ANN (pong-s29, 100 games)", "T5 refilled by the ANN (pong-s28, 100 games)"),
          ("T1 of the 2.5e-5 ANN (pong-s29, 100 games)", "T1 10k refilled by the ANN (pong-s28, 100 games)"),
          ("T1 20k of the 2.5e-5 ANN (pong-s29, 100 games)", "ANN Adam 2.5e-5 (pong-s28, 100 games)"),
          ("T1 20k of the 2.5e-5 ANN (pong-s29, 100 games)", "T1 of the 2.5e-5 ANN (pong-s29, 100 games)"),
          ("T1 20k of the 2.5e-5 ANN (pong-s29, 100 games)", "T2 of the 2.5e-5 ANN (pong-s29, 100 games)"),
          ("T1 20k of the 2.5e-5 ANN (pong-s29, 20 games)", "T1 of the 2.5e-5 ANN (pong-s29, 20 games)"),
          ("T1 20k of the 2.5e-5 ANN (pong-s29, 20 games)", "ANN Adam 2.5e-5 (pong-s28, 20 games)"),
          ("converted T100 of the 2.5e-5 ANN, power 1 (pong-s29)", "ANN Adam 2.5e-5 (pong-s28, 20 games)"),
          ("converted T100 of the 2.5e-5 ANN, power 1 (pong-s29)",
           "converted T100 of the 2.5e-5 ANN, power 0.5 (pong-s28)"),
          ("converted T100 of pong-s22, power 1 (pong-s29)", "ANN (pong-s22, 20 games, seed order)"),
          ("converted T100 of pong-s22, power 1 (pong-s29)", "converted T100 of pong-s22, power 0.5 (pong-s27-chain)"),
          *((f"{row} of the one-command chain (pong-s30)", "ANN Adam 2.5e-5 (pong-s28, 20 games)")
            for row in ("converted T100", "T5", "T4", "T3", "T2", "T1")),
          *((f"T{t} of the one-command chain (pong-s30, 100 games)", "ANN Adam 2.5e-5 (pong-s28, 100 games)")
            for t in (5, 4, 3, 2, 1)),
          ("T1 of the one-command chain (pong-s30, 100 games)", "T2 of the one-command chain (pong-s30, 100 games)"),
          ("T1 of the one-command chain (pong-s30, 100 games)", "T1 20k of the 2.5e-5 ANN (pong-s29, 100 games)"),
          ("converted T100 of the one-command chain (pong-s30, 100 games)", "ANN Adam 2.5e-5 (pong-s28, 100 games)"),
          ("T1 with 20-game validations (pong-s32)", "ANN Adam 2.5e-5 (pong-s28, 20 games)"),
          ("T1 with 20-game validations (pong-s32)", "T1 of the one-command chain (pong-s30)"),
          ("T1 with 20-game validations (pong-s32, 100 games)", "ANN Adam 2.5e-5 (pong-s28, 100 games)"),
          ("T1 with 20-game validations (pong-s32, 100 games)", "T1 of the one-command chain (pong-s30, 100 games)")]


def scores(path: str, model: str, timesteps: int | None) -> list[float]:
    """The stored per-game scores of one row."""
    rows = json.loads((HERE / path).read_text())["rows"]
    return next(r["scores"] for r in rows if r["model"] == model and r.get("timesteps") == timesteps)


def se(*rows: list[float]) -> float:
    """The unpaired standard error of a difference of the rows' means (of one row's mean, given one)."""
    return math.sqrt(sum(variance(x) / len(x) for x in rows))


def main() -> None:
    """Print each row's mean and its scores' correlation with their position, each difference with its unpaired SE,
    then the seed-ordered rows' differences paired game by game."""
    data = {name: scores(*spec) for name, spec in ROWS.items()}
    for name, x in data.items():
        r = correlation(x, list(range(len(x))))
        print(f"{name:36s} n={len(x):3d} mean {fmean(x):6.2f}  correlation of score and stored position {r:+.2f}")
    for a, b in PAIRS:
        print(f"{a} - {b}: {fmean(data[a]) - fmean(data[b]):+.2f} ± {se(data[a], data[b]):.2f} (unpaired SE)")
    ordered = {name: scores(*spec) for name, spec in SEED_ORDERED.items()}
    for a, b in PAIRED:
        diff = [x - y for x, y in zip(ordered[a], ordered[b], strict=True)]
        print(f"{a} - {b}: {fmean(diff):+.2f} ± {se(diff):.2f} paired by seed "
              f"(unpaired ± {se(ordered[a], ordered[b]):.2f}; games correlate at {correlation(ordered[a], ordered[b]):+.2f})")


if __name__ == "__main__":
    main()
