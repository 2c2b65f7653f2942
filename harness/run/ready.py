"""A scenario argument (a file or a shipped name) → a Scenario ready to run: the one path `run`, `sweep`, `repeat`
and `matrix` take, so a scenario in another folder with inputs relative to it works the same in every command,
and bad input fails before anything starts."""

from __future__ import annotations

from pathlib import Path

from harness.scenario import Scenario


def ready_scenario(
    arg: str | Path,
    *,
    measure_only: bool = False,
    need_slos: bool = False,
    check_files: bool = True,
    check_env: bool = True,
) -> tuple[Scenario, Path]:
    """(scenario with absolute input paths, the scenario file's absolute path). Raises ScenarioError/HarnessError
    (exit 2) for a missing or invalid file, nothing to judge, or an input file that is missing, unreadable or
    malformed (`check_files`), or an unset `target.api_key_env` (`check_env`)."""
    from harness.load.prepare import api_key_problem, check_inputs
    from harness.scenario import absolute_inputs, check_judgeable, load_scenario, resolve_scenario_path

    path = resolve_scenario_path(str(arg))
    sc = absolute_inputs(load_scenario(path), path)  # children run elsewhere: hand them absolute paths
    check_judgeable(sc, str(path), measure_only=measure_only, need_slos=need_slos)
    sc.measure_only = sc.measure_only or measure_only  # recorded in run.json's scenario
    path = path.absolute()
    if check_files:
        check_inputs(sc, str(path), env=check_env)  # dataset, trace, tokenizer, model dir: fail before anything starts
    elif check_env and (unset := api_key_problem(sc, str(path))) is not None:
        raise unset
    return sc, path
