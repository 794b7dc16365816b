"""Chart of the ratios in bench/results/compare.json (written by bench/compare.py): one
panel per scenario, a bar per tool and variant, ratio to sylphrun on a log axis.

    bench/.venv-peers/bin/python bench/peers/chart.py bench/results/compare.json out.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import peerlib


def main() -> None:
    source, target = sys.argv[1], sys.argv[2]
    try:
        import matplotlib
    except ImportError:
        peerlib.emit({"error": "matplotlib is not installed in this interpreter"})
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(Path(source).read_text())
    names = {
        "steps": "steps-100",
        "fanout": "fanout-1000",
        "latency": "latency-1",
        "recovery": "recovery",
        "events": "event-roundtrip",
    }
    scenarios = [
        (names.get(name, name), s, [r for r in s["rows"] if "ratio" in r])
        for name, s in data["results"].items()
    ]
    scenarios = [x for x in scenarios if x[2]]
    heights = [len(rows) + 1.5 for _, _, rows in scenarios]
    fig, axes = plt.subplots(
        len(scenarios),
        1,
        figsize=(11, 0.42 * sum(heights) + 1),
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )
    for ax, (name, s, rows) in zip(axes[:, 0], scenarios, strict=True):
        labels = [f"{r['tool']}: {r['how'][:48]}\n{r['durability'][:60]}" for r in rows]
        ratios = [r["ratio"] for r in rows]
        lower = s["lower_is_better"]
        colors = [
            "#4c72b0" if r["tool"] == "sylphrun" else ("#c44e52" if (x > 1) == lower else "#55a868")
            for r, x in zip(rows, ratios, strict=True)
        ]
        y = list(range(len(rows)))
        ax.barh(y, ratios, color=colors, height=0.7)
        ax.set_xscale("log")
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_yticks(y)
        ax.set_yticklabels(labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(min(ratios + [1]) / 2, max(ratios + [1]) * 4)
        for i, x in enumerate(ratios):
            ax.text(x, i, f" {x:.3g}x", va="center", fontsize=8)
        better = "lower" if lower else "higher"
        ax.set_title(
            f"{name}: {s['unit']} as a ratio to sylphrun (default durability); {better} is better",
            fontsize=9,
        )
    facts = data["facts"]
    fig.suptitle(
        f"sylphrun vs peers, {facts.get('date', '')}: {facts.get('cores', '')} cores,"
        f" Python {facts.get('python', '')}, SQLite {facts.get('sqlite', '')}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    peerlib.emit({"written": target})


if __name__ == "__main__":
    main()
