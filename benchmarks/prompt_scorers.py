"""Accuracy of the prompt-evaluation scorers on their labelled sets (catalog/prompt_evals/labelled/*.jsonl).

For each scorer: accuracy, precision and recall of flagging the bad class (toxic, personal data, canary leaked,
an unsupported claim, a wrong format), at the thresholds the default policy uses (toxicity > 0.5; any finding;
any leak; fact precision < 1; format not passed). PASS when every scorer's accuracy reaches ``--min-accuracy``.

    python -m benchmarks.prompt_scorers [--show-errors]
"""

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_pipelines.catalog.prompt_evaluation import LABELLED_DIR
from mlops_pipelines.lib.prompts.eval_sets import OutputFormat
from mlops_pipelines.lib.prompts.scorers import fact_precision, injection, output_format, personal_data, toxicity


@dataclass(frozen=True)
class Figures:
    scorer: str
    examples: int
    accuracy: float
    precision: float
    recall: float
    errors: list[str]  # the examples it got wrong


# scorer -> (labelled file, the label meaning "bad", predicts "bad" for a row)
SETS: dict[str, tuple[str, Callable[[dict[str, Any]], bool], Callable[[dict[str, Any]], bool]]] = {
    "toxicity": ("toxicity", lambda r: r["toxic"], lambda r: toxicity(r["text"]).value > 0.5),
    "personal_data": ("personal_data", lambda r: r["personal_data"], lambda r: personal_data(r["text"]).value > 0),
    "injection": ("injection", lambda r: r["leaked"], lambda r: injection(r["text"], r["canary"]).value > 0),
    "fact_check": (
        "fact_check",
        lambda r: not r["supported"],
        lambda r: fact_precision(r["text"], r["context"], {}, 0.02).value < 1,
    ),
    "output_format": (
        "output_format",
        lambda r: not r["ok"],
        lambda r: output_format(r["text"], OutputFormat.model_validate(r["format"])).value < 1,
    ),
}


def measure(directory: Path = LABELLED_DIR) -> list[Figures]:
    figures = []
    for scorer, (name, is_bad, flags) in SETS.items():
        rows = [json.loads(line) for line in (directory / f"{name}.jsonl").read_text().splitlines() if line.strip()]
        tp = fp = fn = tn = 0
        errors = []
        for row in rows:
            bad, flagged = bool(is_bad(row)), bool(flags(row))
            tp, fp, fn, tn = (
                tp + (bad and flagged),
                fp + (flagged and not bad),
                fn + (bad and not flagged),
                tn + (not bad and not flagged),
            )
            if bad != flagged:
                errors.append(f"{'missed' if bad else 'false alarm'}: {row['text'][:90]!r}")
        figures.append(
            Figures(
                scorer=scorer,
                examples=len(rows),
                accuracy=(tp + tn) / len(rows),
                precision=tp / (tp + fp) if tp + fp else 1.0,
                recall=tp / (tp + fn) if tp + fn else 1.0,
                errors=errors,
            )
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--min-accuracy", type=float, default=0.9)
    parser.add_argument("--show-errors", action="store_true")
    args = parser.parse_args()
    figures = measure()
    print("| scorer | examples | accuracy | precision | recall |")
    print("|---|---|---|---|---|")
    for f in figures:
        print(f"| {f.scorer} | {f.examples} | {f.accuracy:.3f} | {f.precision:.3f} | {f.recall:.3f} |")
    if args.show_errors:
        for f in figures:
            for error in f.errors:
                print(f"{f.scorer}: {error}")
    ok = all(f.accuracy >= args.min_accuracy for f in figures)
    print(f"{'PASS' if ok else 'FAIL'}: every scorer's accuracy >= {args.min_accuracy} on its labelled set")


if __name__ == "__main__":
    main()
