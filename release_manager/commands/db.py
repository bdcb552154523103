"""Commands of the db area (filled in by its issue)."""


def register(main):
    pass
