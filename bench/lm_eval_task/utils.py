"""lm-evaluation-harness task helpers for bench/vs_lm_eval.py: MGSM from the shared TSVs, slam's protocol.

Runs inside the lm-eval virtualenv (no slam import there). bench/vs_lm_eval.py copies this file next to the
task YAMLs it generates (one per language: `slam_mgsm_<lang>`, `custom_dataset: !function utils.load_tsv`,
`doc_to_text: !function utils.doc_to_text`, `process_results: !function utils.process_results`).

- load_tsv: the TSV read the way slam.data.loaders.raw_tsv reads it (UTF-8 lines, blank lines skipped,
  `question<TAB>answer`), no pandas type guessing or quote handling.
- doc_to_text: slam.prompts.ALPACA around the stripped question (the bench checks the template text is
  the same as slam's before every run).
- process_results: correct if the extracted number is within 1e-3 of the gold (slam.tasks.TOLERANCE);
  the extraction itself is lm-eval's own regex filter, set in the YAML.
"""

from __future__ import annotations

ALPACA = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the "
    "request.\n\n### Instruction:\n{instruction}\n\n### Response:"
)


def load_tsv(data_file: str = "", **_: object):
    import datasets

    rows = []
    with open(data_file, "rb") as f:
        for raw in f.read().split(b"\n"):
            raw = raw.rstrip(b"\r")
            if not raw.strip():
                continue
            parts = raw.decode("utf-8").split("\t")
            if len(parts) == 2:
                rows.append({"question": parts[0], "answer_number": parts[1].strip()})
    return {"test": datasets.Dataset.from_list(rows)}


def doc_to_text(doc: dict) -> str:
    return ALPACA.format(instruction=doc["question"].strip())


def doc_to_target(doc: dict) -> str:
    return doc["answer_number"]


def _number(s: str) -> float | None:
    s = s.replace(",", "").replace("$", "").rstrip(".")
    try:
        return float(s)
    except ValueError:
        return None


def process_results(doc: dict, results: list[str]) -> dict:
    pred, gold = _number(results[0]), _number(doc["answer_number"])
    return {"acc": float(pred is not None and gold is not None and abs(pred - gold) < 1e-3)}
