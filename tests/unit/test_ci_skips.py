"""Under CI=true a skip of something `.ci/setup` installs fails; allowlisted skips and xfails stay as they are."""

from pathlib import Path

pytest_plugins = ["pytester"]

CONFTEST = (Path(__file__).resolve().parents[1] / "conftest.py").read_text()

TESTS = """
import shutil
import pytest

def test_missing_tool():
    pytest.skip("promtool not installed")

def test_allowed():
    pytest.skip("root reads files whatever their mode")

@pytest.mark.xfail(reason="known")
def test_xfail():
    assert False

def test_passes():
    pass
"""


def _run(pytester, monkeypatch, ci: str | None):
    # the inner run must not join the outer xdist run's box lock: an exclusive test waiting for the box holds its
    # turnstile, and this test (holding the box shared) would wait on it forever
    monkeypatch.delenv("PYTEST_XDIST_TESTRUNUID", raising=False)
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    # the inner run is part of this test, which already holds the outer run's box lock: an inner test taking it
    # again waits behind an exclusive test of the other worker that waits for this one (a deadlock under -n 2)
    monkeypatch.delenv("PYTEST_XDIST_TESTRUNUID", raising=False)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_x=TESTS, test_mod="import pytest\npytest.importorskip('no_such_module_xyz')\n")
    return pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider", "--continue-on-collection-errors")


def test_ci_turns_forbidden_skips_into_failures(pytester, monkeypatch):
    res = _run(pytester, monkeypatch, "true")
    res.assert_outcomes(passed=1, skipped=1, xfailed=1, failed=1, errors=1)
    res.stdout.re_match_lines([r".*skipped under CI=true.*promtool not installed.*"], consecutive=False)


def test_without_ci_skips_stay_skips(pytester, monkeypatch):
    res = _run(pytester, monkeypatch, None)
    res.assert_outcomes(passed=1, skipped=3, xfailed=1)
