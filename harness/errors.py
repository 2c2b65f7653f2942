"""The harness's own error types. The CLI maps them to exit codes and a message without a traceback."""

from __future__ import annotations

EXIT_PASS = 0
EXIT_SLO_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class HarnessError(Exception):
    """A problem the user can fix: bad input or a setup problem (exit 2).

    `problems` holds one line per problem (already prefixed with file and path where known);
    `fix` says what to do about it.
    """

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, *, problems: list[str] | None = None, fix: str | None = None):
        super().__init__(message)
        self.message = message
        self.problems = problems or []
        self.fix = fix

    def render(self) -> str:
        lines = [self.message] if not self.problems else []
        lines += self.problems
        if self.fix:
            lines.append(f"fix: {self.fix}")
        return "\n".join(lines)


class ScenarioError(HarnessError):
    """The scenario file is missing, unreadable or invalid."""


class StackError(HarnessError):
    """Ray, Prometheus or the target endpoint could not be found, started or reached."""


class DeployError(HarnessError):
    """The Serve application did not deploy or did not become healthy."""


class LoadError(HarnessError):
    """The load generator failed to start or died."""
