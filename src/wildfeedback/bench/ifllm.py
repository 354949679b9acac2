"""`bench ifllm`: which of two replies did the user prefer — from the text, from how they read, from both —
on IFLLM's side-by-side tasks, beside the published 55% (text) / 64% (gaze + mouse).

Protocol:

* Data: the query logs joined to the behaviour archive (streamed, never
  unpacked): one example per query shown with two replies, its gaze and mouse
  traces cut to the window in which those replies were on screen
  (`wildfeedback.implicit.ifllm`). The evaluation set is class-balanced as in
  IFLLM (`wildfeedback.implicit.dataset`): queries with a choice and at least
  20 samples over the replies, then the majority side down-sampled at random
  (seed 0) to the minority's count, so chance is 50%.
* Models (`wildfeedback.implicit.model`): text only (student encoder embeddings
  + the replies' form), behaviour only, and fused; family and strength chosen
  by inner CV on the training folds only; Platt-calibrated.
* Folds: 5-fold cross-validation grouped by user (StratifiedGroupKFold: no user
  in both train and test) — the number that says how the model does on a new
  user — and plain stratified random folds over pairs (IFLLM's protocol; a
  user's other queries can then sit in the training folds).
* Accuracy of the pooled out-of-fold predictions with a 95% Wilson interval
  (pairs treated as independent), and a 95% interval from resampling whole users
  (2,000 resamples), which allows for pairs of one user being alike.
* Feature importances: permutation importance (rise in log loss when a column,
  or a family of columns, is shuffled within each held-out fold) of the fused
  user-grouped model, plotted to a PNG.
* `--export DIR`: the fused model's choices as confidence-weighted DPO pairs and
  KTO labels: out-of-fold (user-grouped) for the evaluation pairs, and from a
  model fit on all of them for every other query with behaviour.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wildfeedback.implicit.dataset import MIN_SAMPLES, balanced_selection, behaviour_matrix, pair_examples, user_centred
from wildfeedback.implicit.ifllm import AlignmentReport, read_sessions
from wildfeedback.implicit.ifllm_archive import ArchiveReport
from wildfeedback.implicit.model import (
    FEATURE_SETS,
    ImplicitRewardModel,
    PairFeatures,
    cross_validate,
    permutation_importances,
)
from wildfeedback.implicit.text import form_names, text_features
from wildfeedback.signals.encoder import Encoder

PUBLISHED = {"text": 55.0, "fused": 64.0}  # IFLLM: 248 class-balanced pairs, random 5-fold CV
PROTOCOLS = ("user-grouped", "random")
DEFAULT_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
ARCHIVE = "ifllm_pairwise_behavior.tar.xz"
QUERY_LOGS = "query_logs_table.csv"


def data_dir(path: str | os.PathLike[str] | None = None) -> Path:
    chosen = Path(path or os.environ.get("WILDFEEDBACK_DATA") or DEFAULT_DATA)
    for name in (QUERY_LOGS, ARCHIVE):
        if not (chosen / "ifllm" / name).is_file():
            raise FileNotFoundError(f"IFLLM data not found: {chosen / 'ifllm' / name}")
    return chosen


def _progress(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def run_ifllm_bench(*, data: str | os.PathLike[str] | None = None, folds: int = 5, seed: int = 0,
                    min_samples: int = MIN_SAMPLES, limit_sessions: int | None = None, encoder: Encoder | None = None,
                    plot: str | os.PathLike[str] | None = None, export: str | os.PathLike[str] | None = None,
                    errors: str | os.PathLike[str] | None = None, importance_repeats: int = 5,
                    protocols: Sequence[str] = PROTOCOLS, feature_sets: Sequence[str] = FEATURE_SETS,
                    quiet: bool = False) -> dict[str, Any]:
    """Run the benchmark; returns every figure as a dict (see `render`)."""
    started = time.perf_counter()
    root = data_dir(data) / "ifllm"
    archive_report, alignment = ArchiveReport(str(root / ARCHIVE)), AlignmentReport()
    _progress(f"reading {root / ARCHIVE} (streamed) and {root / QUERY_LOGS} ...", quiet)
    sessions = []
    for number, (conversation, windows) in enumerate(read_sessions(root / QUERY_LOGS, root / ARCHIVE,
                                                                   archive_report, alignment)):
        sessions.append((conversation, windows))
        if limit_sessions is not None and number + 1 >= limit_sessions:
            break
    examples = pair_examples(sessions)
    del sessions  # the traces are summed up in the features now
    read_seconds = time.perf_counter() - started
    if errors:
        with open(errors, "wb") as stream:
            for rejected in archive_report.rejected_rows:
                stream.write(rejected.to_json() + b"\n")
    selection = balanced_selection(examples, min_samples, seed)
    rows = selection.indices
    if len(rows) < 4:
        raise ValueError(f"only {len(rows)} balanced pairs: too few to cross-validate ({selection.counts})")
    users = np.array([e.user_id for e in examples])
    y_all = np.array([-1 if e.label is None else e.label for e in examples])

    raw, raw_names = behaviour_matrix(examples)
    centred, centred_names = user_centred(raw, raw_names, users.tolist())
    behaviour = np.hstack([raw, centred])
    names = raw_names + centred_names
    constant = [n for j, n in enumerate(names) if np.all(np.isnan(behaviour[:, j]))
                or np.nanmin(behaviour[:, j]) == np.nanmax(behaviour[:, j])]
    keep = [j for j, n in enumerate(names) if n not in constant]
    behaviour, names = behaviour[:, keep], [names[j] for j in keep]

    _progress(f"{len(examples)} side-by-side queries, {len(rows)} balanced pairs; encoding texts ...", quiet)
    t0 = time.perf_counter()
    encoder = encoder or Encoder()
    form, embedding = text_features([e.query for e in examples], [e.left for e in examples],
                                    [e.right for e in examples], encoder)
    encode_seconds = time.perf_counter() - t0
    features = PairFeatures(behaviour, names, form, form_names(), embedding)

    y, groups = y_all[rows], users[rows]
    results: dict[str, Any] = {
        "protocol": {"folds": folds, "seed": seed, "min_samples": min_samples, "limit_sessions": limit_sessions,
                     "intervals": "Wilson 95% on pooled out-of-fold accuracy; user-cluster bootstrap 95% (2,000)"},
        "published": {"text": PUBLISHED["text"], "fused": PUBLISHED["fused"],
                      "protocol": "248 class-balanced pairs, random 5-fold CV (IFLLM)"},
        "archive": {**archive_report.totals(), "rejected_by_member": {
            m.member: m.rejected for m in archive_report.members if m.rejected}},
        "repaired_by_member_top": dict(sorted(((m.member, m.repaired) for m in archive_report.members if m.repaired),
                                              key=lambda kv: -kv[1])[:5]),
        "alignment": alignment.as_dict(),
        "selection": selection.counts,
        "features": {"behaviour": len(names), "behaviour_constant_dropped": constant, "text_form": len(form_names()),
                     "text_embedding": int(embedding.shape[1])},
        "results": [],
    }
    runs: dict[tuple[str, str], Any] = {}
    for protocol in protocols:
        for feature_set in feature_sets:
            t0 = time.perf_counter()
            cv = cross_validate(features, rows, y, groups, feature_set, protocol, folds, seed)
            summary = cv.summary(y, groups.tolist())
            summary["seconds"] = time.perf_counter() - t0
            results["results"].append(summary)
            runs[(protocol, feature_set)] = cv
            _progress(f"{protocol:>12} {feature_set:>9}: {100 * summary['accuracy']:.1f}% ({summary['chosen']})", quiet)

    importance_run = runs.get(("user-grouped", "fused")) or next(iter(runs.values()))
    if importance_repeats > 0:
        t0 = time.perf_counter()
        imp_names, per_feature, per_family = permutation_importances(importance_run, features, rows, y,
                                                                     importance_repeats, seed)
        mean = per_feature.mean(axis=0)
        order = np.argsort(-mean)
        results["importance"] = {
            "model": f"{importance_run.feature_set}, {importance_run.protocol} folds",
            "measure": "rise in log loss when shuffled within each held-out fold (mean over folds)",
            "top_features": [{"feature": imp_names[j], "mean": float(mean[j]), "std": float(per_feature[:, j].std())}
                             for j in order[:25]],
            "families": {k: {"mean": float(v.mean()), "std": float(v.std())} for k, v in
                         sorted(per_family.items(), key=lambda kv: -kv[1].mean())},
            "seconds": time.perf_counter() - t0,
        }
        if plot:
            results["importance"]["plot"] = str(plot_importances(results["importance"], plot))

    if export:
        results["export"] = _export(examples, features, rows, y, groups, runs.get(("user-grouped", "fused")),
                                    export, seed, selection.counts)
    results["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "processor": platform.processor() or platform.machine(), "python": platform.python_version()}
    results["seconds"] = {"total": time.perf_counter() - started, "read_and_features": read_seconds,
                          "encode": encode_seconds}
    return results


def _export(examples: list[Any], features: PairFeatures, rows: np.ndarray, y: np.ndarray, groups: np.ndarray,
            cv: Any, directory: str | os.PathLike[str], seed: int, counts: dict[str, int]) -> dict[str, Any]:
    from wildfeedback.implicit.export import export_choices

    if cv is None:
        raise ValueError("--export needs the user-grouped fused run")
    p = np.full(len(examples), np.nan)
    oof = np.zeros(len(examples), bool)
    p[rows], oof[rows] = cv.probability, True
    rest = np.array([i for i in range(len(examples)) if not oof[i]], dtype=int)
    if len(rest):
        full = ImplicitRewardModel("fused", seed=seed).fit(features, rows, y, groups)
        p[rest] = full.predict_proba(features, rest)
    written = export_choices(examples, p.tolist(), oof.tolist(), str(directory), "fused",
                             card={"evaluation pairs (out-of-fold, user-grouped)": int(oof.sum()),
                                   "other queries (model fit on all evaluation pairs)": int(len(rest)),
                                   "selection": json.dumps(counts)})
    return {"directory": str(directory), **written, "out_of_fold": int(oof.sum()), "full_model": int(len(rest))}


def plot_importances(importance: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Two panels: families of features and the 20 strongest single features."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    families = importance["families"]
    top = importance["top_features"][:20][::-1]
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 6.5), gridspec_kw={"width_ratios": [1, 1.6]})
    left.barh(list(families)[::-1], [v["mean"] for v in families.values()][::-1],
              xerr=[v["std"] for v in families.values()][::-1], color="#4c72b0")
    left.set_title("feature families (shuffled together)")
    left.set_xlabel("rise in log loss")
    right.barh([t["feature"] for t in top], [t["mean"] for t in top], xerr=[t["std"] for t in top], color="#55a868")
    right.set_title("20 strongest features")
    right.set_xlabel("rise in log loss")
    right.tick_params(axis="y", labelsize=8)
    fig.suptitle(f"IFLLM implicit reward model: permutation importance ({importance['model']})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def render(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=150)
    s = results["selection"]
    table = Table(title=f"IFLLM pairwise preference: accuracy (%) of out-of-fold predictions, "
                        f"{results['protocol']['folds']}-fold CV on {s['balanced']} class-balanced pairs "
                        f"({s['users']} users)")
    for column in ("features", "folds", "accuracy", "95% CI (Wilson)", "95% CI (users resampled)", "AUC",
                   "log loss", "model chosen (per fold)", "published"):
        table.add_column(column, justify="left" if column in ("features", "folds", "model chosen (per fold)")
                         else "right")
    for r in results["results"]:
        published = PUBLISHED.get(r["feature_set"], None) if r["protocol"] == "random" else None
        chosen = sorted(set(r["chosen"]), key=r["chosen"].count, reverse=True)
        table.add_row(r["feature_set"], r["protocol"], f"{100 * r['accuracy']:.1f}",
                      f"{100 * r['wilson_95'][0]:.1f}–{100 * r['wilson_95'][1]:.1f}",
                      f"{100 * r['user_bootstrap_95'][0]:.1f}–{100 * r['user_bootstrap_95'][1]:.1f}",
                      f"{r['auc']:.3f}", f"{r['log_loss']:.3f}",
                      ", ".join(f"{c} ×{r['chosen'].count(c)}" for c in chosen),
                      f"{published:.0f}" if published else "")
    console.print(table)
    console.print(f"Published (IFLLM): text {PUBLISHED['text']:.0f}%, text + gaze + mouse {PUBLISHED['fused']:.0f}% "
                  f"({results['published']['protocol']}). Chance: 50%.")
    a, al = results["archive"], results["alignment"]
    console.print(f"Archive: {a['members']:,} members, {a['rows']:,} rows, {a['parsed']:,} parsed, "
                  f"{a['duplicates']:,} duplicate abs_gaze rows dropped, {a['repaired']:,} rows with unescaped "
                  f"quotes recovered, {a['rejected']:,} rejected, {a['unmatched']:,} rows without a partner file row; "
                  f"{a['tasks']} task directories.")
    console.print(f"Join: {al['sessions']} sessions with traces ({al['sessions_without_traces']} pairwise sessions "
                  f"without, {len(al['traces_without_session'])} trace directories without a session), "
                  f"{al['windows']} query windows; samples over a reply: {al['over_a_reply']:,} — offsets "
                  f"verified {al['verified']:,}, re-anchored {al['reanchored']:,}, unverified {al['unverified']:,}, "
                  f"no text {al['no_text']:,}.")
    console.print("Selection: " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in s.items()))
    if "importance" in results:
        imp = results["importance"]
        console.print("Importance (" + imp["measure"] + "): families " + ", ".join(
            f"{k} {v['mean']:+.4f}" for k, v in imp["families"].items()) + "; top features " + ", ".join(
            f"{t['feature']} {t['mean']:+.4f}" for t in imp["top_features"][:8]))
        if "plot" in imp:
            console.print(f"Importance plot: {imp['plot']}")
    if "export" in results:
        e = results["export"]
        console.print(f"Export: {e['pairs']:,} pairs and {e['unpaired']:,} KTO examples in {e['directory']} "
                      f"({e['out_of_fold']} out-of-fold, {e['full_model']} from the model fit on all pairs)")
    m, sec = results["machine"], results["seconds"]
    console.print(f"Machine: {m['cpus']} CPU(s), {m['processor']}, {m['platform']}, Python {m['python']}; "
                  f"time {sec['total']:.0f} s (archive + features {sec['read_and_features']:.0f} s, "
                  f"text encoding {sec['encode']:.0f} s)")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="wildfeedback bench ifllm", description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="the shared data folder (default ../shared/data)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-samples", type=int, default=MIN_SAMPLES,
                        help="samples over the replies a query needs to enter the evaluation set")
    parser.add_argument("--limit-sessions", type=int, default=None, help="first N sessions of the archive (quick runs)")
    parser.add_argument("--cache", default=None, help="an .npz embedding cache file (read and written)")
    parser.add_argument("--plot", default="out/ifllm-importance.png", help="where the importance plot goes ('' = none)")
    parser.add_argument("--importance-repeats", type=int, default=5, help="shuffles per feature (0: skip)")
    parser.add_argument("--export", default=None, help="write the fused model's choices as DPO / KTO data here")
    parser.add_argument("--errors", default=None, help="write the archive's rejected rows (JSONL) here")
    parser.add_argument("--json", default=None, help="also write the results as JSON here")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    encoder = Encoder(cache_file=args.cache)
    results = run_ifllm_bench(data=args.data, folds=args.folds, seed=args.seed, min_samples=args.min_samples,
                              limit_sessions=args.limit_sessions, encoder=encoder, plot=args.plot or None,
                              export=args.export, errors=args.errors, importance_repeats=args.importance_repeats,
                              quiet=args.quiet)
    encoder.save_cache()
    render(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=float) + "\n")
    return results


if __name__ == "__main__":
    main()
