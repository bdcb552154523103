"""Error types and the exit codes they map to (one place, so every command agrees)."""


class RelmanError(Exception):
    """An error meant for the user: printed without a traceback."""

    exit_code = 1


class UsageError(RelmanError):
    """Bad input: a spec, a parameter, a configuration value. Exit code 2."""

    exit_code = 2


class SpecError(UsageError):
    """One or more problems in spec files; each problem is one line of the message."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class EngineError(RelmanError):
    """The Docker engine is unreachable or refused a request."""


class BuildError(RelmanError):
    """A build step failed or an image check failed."""


class EngineLost(BuildError, EngineError):
    """The Docker engine went away in the middle of a build or push (a BuildError: the build failed)."""


class RegistryError(RelmanError):
    """The registry is unreachable, refused a request or answered inconsistently."""


class NotFound(RelmanError):
    exit_code = 1
