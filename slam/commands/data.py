"""`slam data synth|build|validate` — make and check SLAM training data.

    slam data synth --out runs/data/synth --n-train 2000 --seed 0
    slam data build --out runs/data/real --shared-data ../shared/data --langs de,zh,sw,th [--max-problems 300]
    slam data build --out s3://b/data/it --shared-data s3://b/shared --langs de,it --user-data s3://b/it.csv \
        --map question=domanda,english=question,lang==it
    slam data validate FILE [--format mgsm|msvamp|gsm8k|records|mathoctopus|generic] [--lang de]
"""

from __future__ import annotations

import argparse
import json

FORMATS = ["auto", "records", "mgsm", "mathoctopus", "msvamp", "gsm8k", "generic"]


def _langs(text: str | None) -> list[str] | None:
    from slam.config import split_list
    from slam.config_checks import check_langs

    langs = split_list(text, "--langs") or None
    check_langs(langs or [], "--langs")
    return langs


def _check_out(out: str) -> None:
    """Refuse an unusable --out before any work (the publish at the end would refuse it anyway)."""
    from slam import storage

    storage.check_output(out)


def register(sub: argparse._SubParsersAction) -> None:
    from slam.commands import command, group

    _, dsub = group(sub, "data", help="build, generate and validate multilingual reasoning data",
                    examples=["slam data synth --out runs/w --langs en,de,fr,zh,th,sw",
                              "slam data build --out runs/real --shared-data ../shared/data",
                              "slam data validate ../shared/data/mgsm/mgsm_de.tsv"])

    s = command(dsub, "synth", help="generate the synthetic parallel word-problem world (demo data)",
                description="The same word problems in every language (templates x lexicon), as a built dataset: "
                            "train/val examples (cot + translate) and test/probe questions.",
                examples=["slam data synth --out runs/w --langs en,de,fr,zh,th,sw --n-train 240",
                          "slam data synth --out s3://bucket/data/synth --seed 1",
                          "slam data synth --per-language --out s3://bucket/languages --langs sw   # a new language"])
    s.add_argument("--out", required=True, help="output dir or s3:// URI")
    s.add_argument("--langs", default=None, help="comma list (default: en,de,fr,es,ru,zh,ja,th,sw)")
    s.add_argument("--n-train", type=int, default=2000, help="training problems (each in every language)")
    s.add_argument("--n-val", type=int, default=100, help="validation problems")
    s.add_argument("--n-test", type=int, default=200, help="test problems (Record JSONL, for evaluation)")
    s.add_argument("--n-probe", type=int, default=64, help="parallel problems for layer probing")
    s.add_argument("--seed", type=int, default=0, help="random seed of the world (same seed = same problems)")
    s.add_argument("--translation-ratio", type=float, default=1.0,
                   help="X->English translation examples per non-English cot example, 0..1")
    s.add_argument("--per-language", action="store_true",
                   help="write one folder per language (<out>/<code>/train|test|probe.jsonl), the layout a "
                        "schedule watches (pipeline parameter languages_uri); same seed = parallel problems")
    s.set_defaults(func=run_synth)

    b = command(dsub, "build", help="build a SLAM data set: train/val (cot + translate), probe.jsonl, test splits",
                description="From the shared real data (GSM8K CoT + QAlign translations, MGSM/MSVAMP for test and "
                            "probe), optionally with your own files, or from Record JSONL files (one file per "
                            "language, parallel by problem_id; en rows carry the English CoT). Bad rows are "
                            "quarantined with reasons, never dropped silently.",
                examples=["slam data build --out runs/real --shared-data ../shared/data --langs de,fr,sw",
                          "slam data build --out runs/it --shared-data s3://b/shared --user-data it.csv "
                          "--map question=q,english=q_en,lang==it",
                          "slam data build --out runs/mine --records langs/en/train.jsonl langs/sw/train.jsonl"])
    b.add_argument("--out", required=True, help="output dir or s3:// URI")
    src = b.add_mutually_exclusive_group(required=True)
    src.add_argument("--shared-data", default=None,
                     help="dir or s3:// prefix holding gsm8k/ and qalign_gsmtrans/ (and mgsm/, msvamp/ unless "
                          "--benchmarks): the real-data build")
    src.add_argument("--records", nargs="+", default=None,
                     help="Record JSONL file(s) instead: questions per language, English CoT on the en rows")
    b.add_argument("--langs", default=None,
                   help="comma list of non-English languages (default: QAlign's de,es,fr,ja,ru,sw,zh); th/bn/te "
                        "have no training data (probe/test only, evaluated zero-shot)")
    b.add_argument("--user-data", nargs="+", default=[], metavar="FILE",
                   help="your own JSONL/CSV/TSV/Parquet file(s), local or s3://, e.g. for a new language (--map)")
    b.add_argument("--map", default=None, help="--user-data columns: field=column pairs (question, english, answer, "
                                               "gold, lang, problem_id; =x: a constant), e.g. "
                                               "question=q,english=q_en,lang==it")
    b.add_argument("--benchmarks", default="", help="test/probe benchmarks: a root holding mgsm/ msvamp/ (default: "
                                                    "--shared-data), or task=URI pairs (URI: dir, s3://, hf:org/name)")
    b.add_argument("--test", default="mgsm", help="benchmarks to write test splits of: mgsm,msvamp or none")
    b.add_argument("--probe-source", default="auto", choices=["auto", "train", "mgsm", "none"],
                   help="parallel probe questions: translations in the training data, or MGSM problems held out "
                        "from the test split (auto: train when every language has training data)")
    b.add_argument("--probe-questions", type=int, default=64, help="parallel probe questions per language")
    b.add_argument("--max-problems", type=int, default=None, help="at most N GSM8K problems (a reduced build)")
    b.add_argument("--no-english", action="store_true", help="leave out the English cot examples")
    b.add_argument("--translation-ratio", type=float, default=1.0,
                   help="X->English translation examples per non-English cot example, 0..1")
    b.add_argument("--val-fraction", type=float, default=0.05, help="share of problems held out for validation")
    b.add_argument("--seed", type=int, default=0, help="seed of the train/val split and translation sampling")
    b.set_defaults(func=run_build)

    v = command(dsub, "validate", help="check a data file; bad rows go to a quarantine file with reasons",
                description="Reads any supported format, reports counts per language and quarantines bad rows "
                            "(exit 2 when nothing usable is left).",
                examples=["slam data validate ../shared/data/mgsm/mgsm_de.tsv",
                          "slam data validate my.csv --format generic --map question=q,gold=answer,lang==de"])
    v.add_argument("file", help="local path or s3:// URI")
    v.add_argument("--format", default="auto", choices=FORMATS,
                   help="auto = guess from the name (mgsm_xx.tsv, test_<Language>.json, mgsm_<Language>.json, "
                        "*.jsonl Record or GSM8K rows)")
    v.add_argument("--lang", default=None, help="the file's language (tsv/mathoctopus/msvamp files)")
    v.add_argument("--langs", default=None, help="languages that must end up non-empty (comma list)")
    v.add_argument("--map", default=None,
                   help="generic format: field=column pairs, e.g. question=q,gold=answer,lang==de (=x: constant)")
    v.add_argument("--max-chars", type=int, default=6000, help="longer question+answer rows are quarantined")
    v.add_argument("--quarantine", default=None, help="where to write rejected rows (default: ./<name>.quarantine.jsonl)")
    v.set_defaults(func=run_validate)


def _print_counts(manifest: dict) -> None:
    for split, c in manifest["counts"].items():
        per = ", ".join(f"{lang} {sum(t.values())}" for lang, t in c["by_lang"].items())
        print(f"{split}: {c['total']} examples from {c['problems']} problems ({per})")
    probe = manifest.get("probe") or {}
    tests = manifest.get("test") or {}
    for split, c in manifest.get("records", {}).items():
        what = (f" (parallel; {probe.get('from')})" if split == "probe" else
                f" (from {tests.get(split[5:], {}).get('source')})" if split.startswith("test_") else "")
        print(f"{split}: {sum(c.values())} records ({', '.join(f'{k} {v}' for k, v in c.items())}){what}")
    for task, d in (probe.get("disjoint_from_test") or {}).items():
        held = probe.get("held_out", {}).get(task)
        print(f"probe vs test_{task}: {d['shared_problem_ids']} shared problems, {d['shared_question_texts']} "
              f"shared questions" + (f" ({len(held)} {task} problems held out for the probe)" if held else ""))
    if manifest.get("zero_shot_langs"):
        print(f"zero-shot (no training data, evaluated only): {', '.join(manifest['zero_shot_langs'])}")


def run_synth(args: argparse.Namespace) -> int:
    import time

    from slam.data.synth import synth

    t0 = time.perf_counter()
    _check_out(args.out)
    if args.per_language:
        from slam.data.langdirs import write_synthetic_languages

        langs = write_synthetic_languages(args.out, _langs(args.langs) or [], n_train=args.n_train + args.n_val,
                                          n_test=args.n_test, n_probe=args.n_probe, seed=args.seed)
        print(f"wrote {', '.join(f'{args.out}/{x}/' for x in langs)} in {time.perf_counter() - t0:.2f}s")
        return 0
    manifest = synth(args.out, langs=_langs(args.langs), n_train=args.n_train, n_val=args.n_val,
                     n_test=args.n_test, n_probe=args.n_probe, seed=args.seed,
                     translation_ratio=args.translation_ratio)
    _print_counts(manifest)
    print(f"wrote {args.out} in {time.perf_counter() - t0:.2f}s")
    return 0


def run_build(args: argparse.Namespace) -> int:
    import time

    from slam.config import parse_key_values, split_list
    from slam.data.build import check_ratios
    from slam.errors import SlamError

    t0 = time.perf_counter()
    check_ratios(translation_ratio=args.translation_ratio, val_fraction=args.val_fraction)
    _check_out(args.out)
    if args.records:
        if args.user_data:
            raise SlamError("--user-data goes with --shared-data (with --records, list every file there)")
        manifest = _build_from_records(args)
    else:
        from slam.data.real import QALIGN_LANGS, build_real

        if args.user_data and not args.map:
            raise SlamError("--user-data needs --map, e.g. --map question=q,english=q_en,lang==it")
        mapping = parse_key_values(split_list(args.map), "--map") if args.map else {}
        tests = [t for t in split_list(args.test, "--test") if t != "none"]
        manifest = build_real(args.shared_data, args.out, langs=_langs(args.langs) or list(QALIGN_LANGS),
                              user_files=[(u, mapping) for u in args.user_data], benchmarks=args.benchmarks,
                              tests=tests, probe_source=args.probe_source, probe_questions=args.probe_questions,
                              max_problems=args.max_problems, translation_ratio=args.translation_ratio,
                              val_fraction=args.val_fraction, seed=args.seed, include_english=not args.no_english)
    _print_counts(manifest)
    for note in manifest.get("notes", []):
        print(f"note: {note}")
    print(f"quarantined: {manifest['quarantined']}" + (f" ({args.out}/quarantine.jsonl)" if manifest["quarantined"]
                                                       else ""))
    skipped = manifest.get("validation", {}).get("skipped_by_langs") or {}
    if skipped:
        print(f"skipped (valid rows of languages not in --langs): {sum(skipped.values())} "
              f"({', '.join(f'{k} {v}' for k, v in skipped.items())})")
    print(f"wrote {args.out} in {time.perf_counter() - t0:.1f}s")
    return 0


def _build_from_records(args: argparse.Namespace) -> dict:
    from slam.data.langdirs import build_from_records

    return build_from_records(args.records, args.out, langs=_langs(args.langs), translation_ratio=args.translation_ratio,
                              val_fraction=args.val_fraction, seed=args.seed, include_english=not args.no_english)


def _guess_format(name: str) -> str:
    import re

    base = name.rsplit("/", 1)[-1]
    if re.fullmatch(r"mgsm_[a-z]{2}\.tsv", base):
        return "mgsm"
    if re.fullmatch(r"test_[A-Z][a-z]+\.json", base):
        return "msvamp"
    if re.fullmatch(r"mgsm_[A-Z][a-z]+\.json", base):
        return "mathoctopus"
    if base.endswith((".csv", ".parquet", ".tsv")):
        return "generic"
    if base.endswith((".jsonl", ".json")):
        return "jsonl"
    from slam.errors import SlamError

    raise SlamError(f"cannot guess the format of {base}; pass --format ({', '.join(FORMATS[1:])})")


def _file_lang(name: str, fmt: str, given: str | None) -> str:
    import re

    from slam import langs
    from slam.errors import SlamError

    if given:
        return given
    base = name.rsplit("/", 1)[-1]
    m = re.fullmatch(r"mgsm_([a-z]{2})\.tsv", base)
    if m:
        return m.group(1)
    m = re.fullmatch(r"(?:test|mgsm)_([A-Z][a-z]+)\.json", base)
    if m and m.group(1) in langs.BY_NAME:
        return langs.BY_NAME[m.group(1)]
    raise SlamError(f"which language is {base}? pass --lang (format {fmt})")


def run_validate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from slam import storage
    from slam.data import loaders as Ld
    from slam.data.validate import validate_rows
    from slam.errors import SlamError

    if not storage.exists(args.file):
        raise SlamError(f"file not found: {args.file}")
    fmt = args.format if args.format != "auto" else _guess_format(args.file)
    kw: dict = {"max_chars": args.max_chars}
    if fmt == "jsonl":
        first = next((ln for ln in storage.read_bytes(args.file).decode("utf-8", "replace").splitlines()
                      if ln.strip()), "")
        fmt = "gsm8k" if "####" in first else "generic" if first and '"problem_id"' not in first else "records"
    if fmt == "records":
        rows, kw["require_gold"] = Ld.raw_records(args.file), False
    elif fmt == "mgsm":
        lang = _file_lang(args.file, fmt, args.lang)
        rows, kw["dedupe_text"] = Ld.raw_tsv(args.file, lang, prefix="mgsm", source="mgsm"), False
    elif fmt == "mathoctopus":
        rows, kw["dedupe_text"] = Ld.raw_mathoctopus(args.file, _file_lang(args.file, fmt, args.lang)), False
    elif fmt == "msvamp":
        rows, kw["dedupe_text"] = Ld.raw_msvamp_file(args.file, _file_lang(args.file, fmt, args.lang)), False
    elif fmt == "gsm8k":
        rows, kw["require_answer"] = Ld.raw_gsm8k(args.file), True
    else:
        if not args.map:
            raise SlamError("generic format needs --map, e.g. --map question=q,gold=answer,lang==de")
        from slam.config import parse_key_values, split_list

        mapping = parse_key_values(split_list(args.map), "--map")
        rows, kw["require_gold"] = Ld.raw_generic(args.file, mapping), "gold" in mapping
    name = args.file.rsplit("/", 1)[-1]
    quarantine_path = args.quarantine or str(Path.cwd() / f"{name}.quarantine.jsonl")
    if not storage.is_s3(quarantine_path) and Path(quarantine_path).is_dir():  # a directory: the file goes in it
        quarantine_path = str(Path(quarantine_path) / f"{name}.quarantine.jsonl")
    res = validate_rows(rows, langs=_langs(args.langs), what=name, **kw)
    print(f"{name} ({fmt}): {res.line()}")
    if res.quarantine:
        storage.write_text(quarantine_path, "".join(_dump(q) + "\n" for q in res.quarantine))
        print(f"quarantine: {quarantine_path}")
        for q in res.quarantine[:5]:
            print(f"  {q['where']}: {q['reason']}: {q['detail']}")
    return 0


def _dump(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False)
