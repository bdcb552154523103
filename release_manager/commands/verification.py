"""Commands of the verification area (filled in by its issue)."""


def register(main):
    pass
