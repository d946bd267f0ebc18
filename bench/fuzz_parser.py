"""Fuzz the rule parser: random and mutated inputs must raise `dsl.RuleError` and nothing else.

    python bench/fuzz_parser.py                  # 100,000 inputs, seed 0
    python bench/fuzz_parser.py --n 20000 --seed 7 --crashes /tmp/crashes

Inputs are mutations of the seed rules (`seeds/*.rule`) and of the rules in DESIGN.md and
issue 2 (byte flips, deletions, insertions of random tokens, keywords and operators, token
swaps, line shuffles and duplications, splices of two rules, deep nesting, long operator
chains, many statements, huge numbers, unicode, null bytes), random token soups, random
printable ASCII, and random well-formed rules. Every input goes to `dsl.parse_rules`; every
rule that parses also goes through `dsl.check` and the round trip
``parse(format_program(p)) == p``.

Reported: how many inputs raised anything other than `RuleError` (target 0) and how many
round trips failed, the slowest inputs (target: each under 50 ms; the slowest are re-timed,
best of 5, since a busy machine adds noise to single measurements), inputs per second, and
the most common error messages. Crashing inputs are saved under `--crashes DIR` for triage.
Deterministic: all randomness comes from ``numpy.random.default_rng(--seed)``.
"""

from __future__ import annotations

import argparse
import collections
import json
import keyword
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from optforge.dsl.ops import OPS

from optforge import dsl

# The rules of DESIGN.md ("The language") and issue 2, so the corpus does not depend on the
# seeds' current text.
DESIGN_RULES = [
    '''def adamw(w, g, lr, t, m, v, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
    """AdamW (Loshchilov & Hutter, 2019)."""
    m = interp(g, m, beta1)                 # interp(x, y, a) = (1 - a) * x + a * y
    v = interp(g * g, v, beta2)
    m_hat = m / (1 - beta1 ** t)
    v_hat = v / (1 - beta2 ** t)
    return lr * (m_hat / (sqrt(v_hat) + eps) + weight_decay * w), m, v
''',
    '''def lion(w, g, lr, t, m, beta1=0.9, beta2=0.99, weight_decay=0.0):
    """Lion (Chen et al., 2023)."""
    c = interp(g, m, beta1)            # interp(x, y, a) = (1 - a) * x + a * y
    m = interp(g, m, beta2)
    return lr * (sign(c) + weight_decay * w), m
''',
    '''def messy(w, g, lr, t, m, v):
    g2 = g * g
    junk = exp(g2)
    c = interp(g, m, 0.9)
    u = c / sqrt(c * c)
    u = u + 0 * g2
    m = interp(g, m, 0.99)
    return lr * (u + 0.01 * w), m, v
''',
    '''def muonish(w, g, lr, t, m, beta=0.95, scale=0.2):
    m = interp(g, m, beta)
    u = orth(interp(g, m, beta))
    u *= scale * sqrt(max(1.0, row_mean(u * 0 + 1) / col_mean(u * 0 + 1)))
    return lr * u, m
''',
    '''def lamb(w, g, lr, t, m, v, beta1=0.9, beta2=0.999, eps=1e-6, wd=0.01):
    m = interp(g, m, beta1)
    v = interp(square(g), v, beta2)
    u = m / (1 - beta1 ** t) * rsqrt(v / (1 - beta2 ** t) + eps) + wd * w
    return lr * clip(norm(w) / norm(u), 0.0, 10.0) * u, m, v
''',
]

KEYWORDS = keyword.kwlist + keyword.softkwlist + ["print", "__import__", "exec", "eval",
                                                  "__debug__", "self", "super"]
OPERATORS = ["+", "-", "*", "/", "**", "//", "%", "@", "<<", ">>", "&", "|", "^", "~", "<",
             ">", "<=", ">=", "==", "!=", "=", "+=", "-=", "*=", "/=", "**=", "%=", ":=", "->",
             "(", ")", "[", "]", "{", "}", ",", ":", ";", ".", "...", "\\", "\\\n", "#", "@"]
NAMES = ["w", "g", "lr", "t", "m", "v", "c", "u", "beta1", "eps", "_1", "_2", "_999",
         "x" * 70, "é", "β", "ｇ", "𝑔", "Σ", "a\u200bb", "_"]
NUMBERS = ["0", "1", "-1", "0.5", "1e-8", "1e308", "1e309", "-1e309", "1e-400", "0x10",
           "0b101", "0o7", "1_000", "1j", ".5", "5.", "00", "1" * 30, "9" * 400, "1" * 5000,
           "True", "None", "float('nan')", "nan", "inf"]
STRINGS = ['"', "'", '"""', "'''", '"x"', "b'x'", 'f"{g}"', "r'\\'", '"\\N{BULLET}"']
UNICODE = ["é", "β", "\u00a0", "\u200b", "\u2028", "\u2029", "\ufeff", "\u202e", "\U0001f600",
           "\x0c", "\x0b", "\r", "\r\n", "\t", "\x00", "\x7f", "\udc80", "ｒｅｔｕｒｎ"]
SPACE = [" ", "  ", "\n", "\n    ", "    ", "\t", "\n\n"]

TOKENS = KEYWORDS + OPERATORS + NAMES + NUMBERS + STRINGS + UNICODE + SPACE + list(OPS)
SLOW_MS = 50.0


def corpus() -> list[str]:
    texts = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "seeds").glob("*.rule"))]
    return texts + DESIGN_RULES


# ---- generators: each takes (rng, corpus) and returns one input ------------------------------

def pick(rng, items):
    return items[int(rng.integers(len(items)))]


def byte_flips(rng, texts):
    data = bytearray(pick(rng, texts).encode("utf-8"))
    for _ in range(int(rng.integers(1, 6))):
        i = int(rng.integers(len(data)))
        data[i] ^= 1 << int(rng.integers(8))
    return data.decode("utf-8", errors=pick(rng, ["replace", "ignore", "surrogateescape"]))


def deletions(rng, texts):
    s = pick(rng, texts)
    for _ in range(int(rng.integers(1, 4))):
        if not s:
            break
        i = int(rng.integers(len(s)))
        s = s[:i] + s[i + int(rng.integers(1, 12)):]
    return s


def insertions(rng, texts):
    s = pick(rng, texts)
    for _ in range(int(rng.integers(1, 5))):
        i = int(rng.integers(len(s) + 1))
        s = s[:i] + pick(rng, TOKENS) + s[i:]
    return s


def token_swaps(rng, texts):
    """Replace one word-ish token with another from the vocabulary."""
    words = pick(rng, texts).split(" ")
    for _ in range(int(rng.integers(1, 4))):
        i = int(rng.integers(len(words)))
        words[i] = pick(rng, TOKENS)
    return " ".join(words)


def line_edits(rng, texts):
    lines = pick(rng, texts).split("\n")
    kind = int(rng.integers(4))
    if kind == 0:
        rng.shuffle(lines)
    elif kind == 1 and len(lines) > 1:
        i = int(rng.integers(1, len(lines)))
        lines.insert(i, lines[int(rng.integers(len(lines)))])
    elif kind == 2 and len(lines) > 1:
        del lines[int(rng.integers(1, len(lines)))]
    else:  # re-indent a line
        i = int(rng.integers(len(lines)))
        lines[i] = " " * int(rng.integers(0, 9)) + lines[i].lstrip()
    return "\n".join(lines)


def splices(rng, texts):
    a, b = pick(rng, texts), pick(rng, texts)
    return a[:int(rng.integers(len(a) + 1))] + b[int(rng.integers(len(b) + 1)):]


HEADER = "def f(w, g, lr, t, m, beta=0.9):\n"


def deep_nesting(rng, texts):
    depth = int(rng.choice([10, 100, 300, 900, 1000, 2000, 10000]))
    kind = int(rng.integers(5))
    if kind == 0:
        e = "(" * depth + "g" + ")" * depth
    elif kind == 1:
        op = pick(rng, ["sqrt", "neg", "abs", "sign", "orth", "norm"])
        e = f"{op}(" * depth + "g" + ")" * depth
    elif kind == 2:
        e = "-" * depth + "g"
    elif kind == 3:
        e = "g" + "".join(f" {pick(rng, ['+', '-', '*', '/'])} g" for _ in range(depth))
    else:
        e = "g ** " * depth + "g"
    return HEADER + f"    return lr * {e}, m\n"


def many_statements(rng, texts):
    n = int(rng.choice([10, 100, 500, 999, 1001, 3000]))
    line = pick(rng, ["    m = interp(g, m, beta)\n", "    x = g * g + sqrt(g)\n",
                      "    m += g\n", "    y = m\n"])
    return HEADER + line * n + "    return lr * g, m\n"


def huge_numbers(rng, texts):
    s = pick(rng, texts)
    num = pick(rng, NUMBERS)
    i = int(rng.integers(len(s)))
    j = s.find("0", i)
    return s[:j] + num + s[j + 1:] if j >= 0 else s + num


def unicode_noise(rng, texts):
    s = pick(rng, texts)
    for _ in range(int(rng.integers(1, 4))):
        i = int(rng.integers(len(s) + 1))
        if rng.random() < 0.5:
            ch = pick(rng, UNICODE)
        else:
            ch = chr(int(rng.integers(0x80, 0x110000)))
        s = s[:i] + ch + s[i:]
    return s


def token_soup(rng, texts):
    return "".join(pick(rng, TOKENS) + pick(rng, [" ", "", "\n"])
                   for _ in range(int(rng.integers(1, 60))))


def random_ascii(rng, texts):
    codes = rng.integers(0, 128, size=int(rng.integers(0, 300)))
    return "".join(map(chr, codes))


def random_rule(rng, texts):
    """A well-formed rule from random expressions over the op table (these mostly parse)."""
    state = [f"s{k}" for k in range(int(rng.integers(0, 3)))]
    hyper = [f"h{k}={float(rng.normal()):.3g}" for k in range(int(rng.integers(0, 3)))]
    names = ["w", "g", "lr", "t"] + state + [h.split("=")[0] for h in hyper]

    def expr(depth):
        if depth <= 0 or rng.random() < 0.3:
            return pick(rng, names) if rng.random() < 0.8 else f"{float(rng.normal()):.4g}"
        kind = int(rng.integers(3))
        if kind == 0:
            return f"({expr(depth - 1)} {pick(rng, ['+', '-', '*', '/', '**'])} {expr(depth - 1)})"
        if kind == 1:
            return f"-{expr(depth - 1)}"
        op = pick(rng, list(OPS))
        return f"{op}({', '.join(expr(depth - 1) for _ in range(OPS[op].arity))})"

    params = ", ".join(["w", "g", "lr", "t", *state, *hyper])
    lines = [f"def r({params}):"]
    for _ in range(int(rng.integers(0, 8))):
        target = pick(rng, state + ["a", "b", "c"])
        lines.append(f"    {target} {pick(rng, ['=', '=', '+=', '*='])} {expr(4)}")
        if target not in names:
            names.append(target)
    lines.append(f"    return {', '.join([expr(4)] + [pick(rng, names) for _ in state])}")
    return "\n".join(lines) + "\n"


GENERATORS = [byte_flips, deletions, insertions, token_swaps, line_edits, splices, deep_nesting,
              many_statements, huge_numbers, unicode_noise, token_soup, random_ascii,
              random_rule]
# Mutations of real rules dominate; the expensive large inputs are rarer.
WEIGHTS = np.array([10, 10, 14, 10, 8, 6, 2, 1, 4, 8, 6, 6, 15], dtype=float)


# ---- the run --------------------------------------------------------------------------------

def parse_recording_warnings(source: str):
    """`dsl.parse_rules(source)` and the Python warnings it let out (e.g. the tokenizer's
    ``SyntaxWarning: invalid decimal literal``, which a user would see on stderr)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return dsl.parse_rules(source, "<fuzz>"), None, caught
        except Exception as e:  # noqa: BLE001
            return None, e, caught


def run_one(source: str) -> tuple[str, float, str, list]:
    """(outcome, parse seconds, detail, warnings): outcome is 'rule', 'error' (a RuleError),
    'crash' (any other exception from `parse_rules`), 'crash-after' (an exception from `check`,
    `format_program` or the re-parse of a rule that parsed) or 'roundtrip' (the printed rule
    does not parse, or ``parse(format_program(p)) != p``)."""
    start = time.perf_counter()
    rules, exc, caught = parse_recording_warnings(source)
    elapsed = time.perf_counter() - start
    if isinstance(exc, dsl.RuleError):
        return "error", elapsed, exc.first.message, caught
    if exc is not None:  # exactly what the fuzzer looks for
        return "crash", elapsed, f"parse_rules: {type(exc).__name__}: {exc}", caught
    for p in rules:
        try:
            dsl.check(p)
            text = dsl.format_program(p)
        except Exception as e:  # noqa: BLE001
            return "crash-after", elapsed, f"check/format: {type(e).__name__}: {e}", caught
        try:
            back = dsl.parse(text)
        except dsl.RuleError as e:
            return ("roundtrip", elapsed, f"printed rule does not parse: {e.first.message}",
                    caught)
        except Exception as e:  # noqa: BLE001
            return "crash-after", elapsed, f"re-parse: {type(e).__name__}: {e}", caught
        if back != p:
            return "roundtrip", elapsed, "parse(format_program(p)) != p", caught
    return "rule", elapsed, "", caught


def best_of(source: str, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        try:
            dsl.parse_rules(source, "<fuzz>")
        except Exception:  # noqa: BLE001, S110 - only the time matters here
            pass
        times.append(time.perf_counter() - start)
    return min(times)


def save(crash_dir: Path | None, index: int, kind: str, source: str, detail: str) -> None:
    if crash_dir is None:
        return
    crash_dir.mkdir(parents=True, exist_ok=True)
    path = crash_dir / f"{kind}-{index:07d}.rule"
    path.write_bytes(source.encode("utf-8", errors="surrogatepass"))
    with open(crash_dir / "index.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"file": path.name, "kind": kind, "detail": detail[:500],
                            "source": source[:2000]}, ensure_ascii=True) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="number of inputs (default 100000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--crashes", type=Path, default=None,
                    help="directory to save crashing and round-trip-failing inputs in")
    ap.add_argument("--slow-ms", type=float, default=SLOW_MS,
                    help="an input slower than this (best of 5) counts as slow")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    texts = corpus()
    p = WEIGHTS / WEIGHTS.sum()
    outcomes = collections.Counter()
    per_generator = collections.defaultdict(collections.Counter)
    messages = collections.Counter()
    leaked = collections.Counter()  # Python warnings that reached the user
    leaked_example: dict[str, str] = {}
    crashes: list[tuple[int, str, str]] = []
    slowest: list[tuple[float, int, str, str]] = []  # (seconds, index, generator, source)
    total_chars = 0
    start = time.perf_counter()
    parse_seconds = 0.0
    for i in range(args.n):
        gen = GENERATORS[int(rng.choice(len(GENERATORS), p=p))]
        source = gen(rng, texts)
        total_chars += len(source)
        outcome, seconds, detail, caught = run_one(source)
        for w in caught:
            key = f"{w.category.__name__}: {w.message}"
            leaked[key] += 1
            leaked_example.setdefault(key, source)
        parse_seconds += seconds
        outcomes[outcome] += 1
        per_generator[gen.__name__][outcome] += 1
        if outcome == "error":
            messages[detail.split("'")[0].split(":")[0][:60]] += 1
        elif outcome in ("crash", "crash-after", "roundtrip"):
            crashes.append((i, outcome, detail))
            save(args.crashes, i, outcome, source, detail)
        slowest.append((seconds, i, gen.__name__, source))
        if len(slowest) > 64:
            slowest.sort(key=lambda x: -x[0])
            del slowest[16:]
        if (i + 1) % 10_000 == 0:
            print(f"  {i + 1} inputs, {time.perf_counter() - start:.0f} s", file=sys.stderr)
    wall = time.perf_counter() - start

    slowest.sort(key=lambda x: -x[0])
    retimed = sorted(((best_of(src), s, i, g, src) for s, i, g, src in slowest[:10]),
                     key=lambda x: -x[0])
    n_slow = sum(1 for r in retimed if r[0] * 1e3 > args.slow_ms)

    print(f"fuzz_parser: {args.n} inputs, seed {args.seed}, {total_chars / args.n:.0f} chars "
          f"on average")
    print(f"  parsed as rules:          {outcomes['rule']}")
    print(f"  RuleError:                {outcomes['error']}")
    print(f"  parse_rules raised something other than RuleError: {outcomes['crash']}   "
          f"(target 0)")
    print(f"  check / format_program / re-parse raised on a parsed rule: "
          f"{outcomes['crash-after']}   (target 0)")
    print(f"  round trips failed (printed rule unparsable or different): "
          f"{outcomes['roundtrip']}   (target 0)")
    print(f"  inputs letting out a Python warning: {sum(leaked.values())}")
    for key, count in leaked.most_common(5):
        print(f"    {count:6d}  {key}   e.g. {leaked_example[key][:70]!r}")
    print(f"  throughput:               {args.n / wall:.0f} inputs/s overall "
          f"(parse + check + round trip), {args.n / parse_seconds:.0f} inputs/s parsing only")
    print(f"  slowest inputs (parse_rules; first measurement, then best of 5), "
          f"target < {args.slow_ms:.0f} ms:")
    for best, first, i, g, src in retimed[:5]:
        print(f"    #{i:<7d} {g:16s} {len(src):7d} chars  {first * 1e3:7.1f} ms  "
              f"best {best * 1e3:7.1f} ms  {src[:60]!r}")
    print(f"  inputs over {args.slow_ms:.0f} ms (best of 5) among the 10 slowest: {n_slow}")
    print("  outcomes by generator:")
    for name in sorted(per_generator):
        c = per_generator[name]
        print(f"    {name:16s} " + "  ".join(f"{k} {c[k]}" for k in
                                            ("rule", "error", "crash", "crash-after",
                                             "roundtrip") if c[k]))
    print("  most common errors:")
    for msg, count in messages.most_common(8):
        print(f"    {count:6d}  {msg}")
    if crashes:
        print("  first failures:")
        for i, kind, detail in crashes[:10]:
            print(f"    #{i} {kind}: {detail[:200]}")
        if args.crashes:
            print(f"  saved under {args.crashes}")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
