"""`.ci/run` runs README's test command: the steps after `bash .ci/setup` in README's block are in .ci/run, in order."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ci_run_runs_readme_test_command():
    text = (ROOT / "README.md").read_text()
    m = re.search(r"\*\*Run the tests\*\*.*?```bash\n(.+?)\n```", text, flags=re.S)
    assert m, "README must give the test command in a bash block after **Run the tests**"
    steps = [s.strip() for s in m.group(1).split("&&")]
    assert steps[0] == "bash .ci/setup", steps
    ci = (ROOT / ".ci" / "run").read_text()
    at = 0
    for step in steps:
        found = ci.find(step, at)
        assert found >= 0, f"README's step {step!r} is not in .ci/run (after position {at})"
        at = found + len(step)
