"""Per-module mutation scores from mutmut's cache (``mutants/**/*.py.meta``), for ``just mutate``.

``python -m tests.mutation_score [SUBSTRING ...]`` prints one line per mutated module: mutants in
all, killed (a timeout counts as killed: the mutant hung the tests), survived, no tests (no test in
the selection reaches the function), not checked (not run yet), and the score, killed over all.
The issue's target is a score of 90 % or more per module; ``mutmut show NAME`` shows a survivor's
diff, and the equivalent ones are listed with their reasons in tests/mutation-equivalents.md. Each
line ends with the score that counts those as not applicable: killed over all but the listed
equivalents that still survive (a listed mutant some test now kills counts as killed, not as
excluded).

Not a test module (no ``test_`` prefix): pytest never collects it.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

ROOT = Path(__file__).resolve().parents[1]
MUTANTS = ROOT / "mutants"
EQUIVALENTS = ROOT / "tests" / "mutation-equivalents.md"
# A bullet of the equivalents file: "- <mutant name as `mutmut results` prints it>: <reason>".
_BULLET = re.compile(r"^- (app\.\S+?):")


def listed_equivalents(text: str) -> set[str]:
    """The mutant names the equivalents file lists (one bullet each)."""
    return {m.group(1) for line in text.splitlines() if (m := _BULLET.match(line))}


def scores(only: list[str]) -> list[str]:
    lines = []
    equivalents = listed_equivalents(EQUIVALENTS.read_text()) if EQUIVALENTS.exists() else set()
    for meta in sorted(MUTANTS.rglob("*.py.meta")):
        module = meta.relative_to(MUTANTS).as_posix().removesuffix(".meta")
        if only and not any(o in module for o in only):
            continue
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        status = Counter(status_by_exit_code[c] for c in codes.values())
        total = len(codes)
        killed = status["killed"] + status["timeout"] + status["caught by type check"]
        score = 100 * killed / total if total else 0.0
        excluded = sum(
            1
            for name, code in codes.items()
            if name in equivalents and status_by_exit_code[code] == "survived"
        )
        applicable = total - excluded
        net = 100 * killed / applicable if applicable else 0.0
        lines.append(
            f"{score:5.1f} %  {module}: {total} mutants, {killed} killed, "
            f"{status['survived']} survived, {status['no tests']} no tests, "
            f"{status['not checked']} not checked; {excluded} listed equivalent, "
            f"{net:5.1f} % of the other {applicable}"
        )
    return lines


if __name__ == "__main__":
    print("\n".join(scores(sys.argv[1:])) or "no mutants yet: run `just mutate`")
