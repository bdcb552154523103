"""Command groups that live in their own modules; each registers itself on the `main` group.

To add one: write release_manager/commands/<name>.py with a `register(main)` function and
list the module in MODULES. Keeping them apart keeps cli.py small and the imports lazy.
"""
import importlib

MODULES = ["db", "verification", "jenkins", "workflows", "farm", "sif", "inspect"]


def register_all(main):
    for name in MODULES:
        importlib.import_module(f"release_manager.commands.{name}").register(main)
