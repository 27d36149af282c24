"""Precision and recall of correo's junk classifier on a labelled corpus (k-fold).

    python bench/junk_bench.py --spam PATH --ham PATH [--folds 5] [--threshold 0.5]

PATH is a maildir, an mbox, or a folder of one-message files (e.g. the SpamAssassin
public corpus' ``spam_2`` and ``easy_ham`` folders). Each fold trains on the other
folds with the same tokenizer and Robinson/Fisher arithmetic as delivery
(``correo.junk``), counts in memory instead of the store, and classifies the held-out
messages: spam probability >= threshold is a spam verdict.
"""

from __future__ import annotations

import argparse
import mailbox
import random
import time
from collections import Counter
from pathlib import Path

from correo.junk import spam_probability, tokenize


def load(path: Path, limit: int) -> list[set[str]]:
    if (path / "cur").is_dir():
        raw = [m.as_bytes() for m in mailbox.Maildir(path, create=False)]
    elif path.is_file():
        raw = [m.as_bytes() for m in mailbox.mbox(path, create=False)]
    else:
        raw = [p.read_bytes() for p in sorted(path.iterdir()) if p.is_file()]
    raw = [r.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") for r in raw[:limit]]
    return [tokenize(r) for r in raw]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spam", type=Path, required=True)
    ap.add_argument("--ham", type=Path, required=True)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--limit", type=int, default=5000, help="messages per class at most")
    args = ap.parse_args()
    data = [(t, True) for t in load(args.spam, args.limit)]
    data += [(t, False) for t in load(args.ham, args.limit)]
    random.Random(7).shuffle(data)
    tp = fp = fn = tn = 0
    started = time.perf_counter()
    for k in range(args.folds):
        spam: Counter[str] = Counter()
        ham: Counter[str] = Counter()
        nspam = nham = 0
        for i, (tokens, is_spam) in enumerate(data):
            if i % args.folds == k:
                continue
            if is_spam:
                spam.update(tokens)
                nspam += 1
            else:
                ham.update(tokens)
                nham += 1
        for i, (tokens, is_spam) in enumerate(data):
            if i % args.folds != k:
                continue
            counts = {t: (spam[t], ham[t]) for t in tokens if t in spam or t in ham}
            verdict = spam_probability(counts, nspam, nham) >= args.threshold
            tp += verdict and is_spam
            fp += verdict and not is_spam
            fn += (not verdict) and is_spam
            tn += (not verdict) and not is_spam
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    print(
        f"messages={len(data)} folds={args.folds} tp={tp} fp={fp} fn={fn} tn={tn} "
        f"precision={precision:.4f} recall={recall:.4f} "
        f"seconds={time.perf_counter() - started:.1f}"
    )


if __name__ == "__main__":
    main()
