"""``python -m services.ranker.offline.report_youshu``: summarise Youshu run folders into one JSON file.

Reads every ``<runs>/<run>/result.json`` (written by ``train_youshu``), groups them by model, and
writes means and seed standard deviations to ``--out`` (default ``benchmarks/results/youshu.json``),
the main model at the top level and the others under ``baselines``. Only measured runs go in.
It also draws Recall@K of every model to ``--plot`` (default ``docs/youshu-recall-at-k.png``).

Example::

    python -m services.ranker.offline.report_youshu --runs var/runs/youshu-standard
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.provenance import run_metadata
from services.ranker.offline.plots import recall_at_k_png
from services.ranker.offline.results import RESULT_FILE, RunResult, summarize

MODULE = "services.ranker.offline.report_youshu"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.ranker.offline.report_youshu", description=__doc__)
    parser.add_argument("--runs", type=Path, required=True, help="folder whose subfolders hold result.json")
    parser.add_argument("--main-model", default="crossview")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/youshu.json"))
    parser.add_argument("--plot", type=Path, default=Path("docs/youshu-recall-at-k.png"))
    args = parser.parse_args(argv)
    paths = sorted(args.runs.glob(f"*/{RESULT_FILE}"))
    if not paths:
        print(f"no {RESULT_FILE} under {args.runs}/*/", file=sys.stderr)
        return 1
    runs = [RunResult.read(path) for path in paths]
    provenance = run_metadata(MODULE, list(argv) if argv is not None else None)
    document = summarize(runs, args.main_model, [str(path) for path in paths], provenance)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_suffix(".json.tmp")
    partial.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    partial.replace(args.out)
    title = f"Youshu ({document['split']} split): test Recall@K, mean of seeds"
    recall_at_k_png(document, args.plot, title)
    print(f"{len(runs)} runs -> {args.out} (complete: {document['complete']}), {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
