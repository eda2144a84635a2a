"""Data for the long-answer distillation benchmark: running sums written out step by step.

Usage: sums.py --out DIR [--seed 17] [--order prompt|any] [--digits 1|2] [--corrections P]
                [--prompts N]

A prompt lists numbers; the answer adds them one at a time and ends with the sum:

    Add up: 7, 2, 8, 3, 7, 5, 6
    7 + 2 = 9, 9 + 8 = 17, 17 + 3 = 20, 20 + 7 = 27, 27 + 5 = 32, 32 + 6 = 38, so the sum is 38

`--digits 1` (what `TASK=sums benches/on-policy.sh` uses) lists four to seven digits, about 45
tokens an answer with digits tokenized apart, four times the demo's dates; `--digits 2` lists
three to five two-digit numbers, which the demo-sized teacher does not learn to copy. A wrong
partial sum makes every later one wrong, so the student's own mistakes compound.

With `--order prompt` every answer adds the numbers in the order the prompt lists them, so each
prompt has one right answer (exact match grades it). With `--order any` the gold answers add
them in a random order: a prompt has many right answers, all ending in the same sum (graded on
the last number, `eval.normalize = ["last_number"]`), and a student's own way through a sum can
differ from its teacher's.

`--corrections P` makes a share P of the gold answers' steps a slip caught at once
(`6 + 2 = 10, no, 8, 8 + 3 = 11, ...`): a teacher trained on them has seen wrong partial sums and
what follows one, so it can grade a student's own slips. The other sets are unchanged.

Writes gold.jsonl (3,000 rows: prompt, completion), prompts.jsonl (`--prompts`, 5,000 unless told: prompt), eval.jsonl
(600: prompt, completion, always in the prompt's order) and review.jsonl (200), each its own
random stream of the seed, so growing one set does not change another.
"""

import argparse
import json
import os
import random


def sample(rng, digits):
    lo, hi = (1, 10) if digits == 1 else (10, 100)
    n = rng.randrange(4, 8) if digits == 1 else rng.randrange(3, 6)
    return [rng.randrange(lo, hi) for _ in range(n)]


def prompt(terms):
    return "Add up: " + ", ".join(map(str, terms))


def answer(terms, rng=None, corrections=0.0):
    total, steps = terms[0], []
    for t in terms[1:]:
        step = f"{total} + {t} = {total + t}"
        if corrections > 0 and rng.random() < corrections:
            # A slip as people make them (off by one or two, or a carry missed), caught at once.
            slip = total + t + rng.choice([-2, -1, 1, 2, -10, 10])
            if slip >= 0:
                step = f"{total} + {t} = {slip}, no, {total + t}"
        steps.append(step)
        total += t
    return ", ".join(steps) + f", so the sum is {total}"


def write(path, rows):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(usage=__doc__.split("Usage: ")[1].split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--order", choices=["prompt", "any"], default="prompt")
    ap.add_argument("--digits", type=int, choices=[1, 2], default=2)
    ap.add_argument("--corrections", type=float, default=0.0)
    ap.add_argument("--prompts", type=int, default=5000)
    a = ap.parse_args()
    if not 0.0 <= a.corrections <= 1.0:
        ap.error(f"--corrections is a share of the steps, from 0 to 1, not {a.corrections}")
    if a.prompts < 1:
        ap.error(f"--prompts is how many prompts to write, at least 1, not {a.prompts}")
    os.makedirs(a.out, exist_ok=True)
    sizes = {"gold": 3000, "prompts": a.prompts, "eval": 600, "review": 200}
    for k, (name, n) in enumerate(sizes.items()):
        rng = random.Random(a.seed * 10 + k)
        rows = []
        for _ in range(n):
            terms = sample(rng, a.digits)
            row = {"prompt": prompt(terms)}
            if name == "gold":
                order = terms[:]
                if a.order == "any":
                    rng.shuffle(order)
                row["completion"] = answer(order, rng, a.corrections)
            elif name != "prompts":
                row["completion"] = answer(terms)
            rows.append(row)
        write(os.path.join(a.out, f"{name}.jsonl"), rows)


if __name__ == "__main__":
    main()
