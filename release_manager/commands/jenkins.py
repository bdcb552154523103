"""Commands of the jenkins area (filled in by its issue)."""


def register(main):
    pass
