"""The release workflows behind `relman nightly`, `promote`, `retire`, `debug-build`, `gc` and `reconcile`.

Each workflow is a function over a `Context` (settings, specs, and lazily: the engine, the registry,
the release database) that returns a JSON-ready report dict; the commands in
release_manager/commands/workflows.py only parse options and print. Jenkins jobs call the same
commands (see release_manager/jenkins/model.py) and archive the summary files they write.

    nightly.run_nightly(ctx, package)                        build, verify, tag, move aliases
    promote.promote(ctx, package, tag, to, by, reason)       retag verified images (a manifest copy)
    promote.retire(ctx, package, tag, by, reason)            the reverse
    debug.debug_build(ctx, package, ref, requester, ttl)     dev-<requester>-<ref>-debug
    gc.collect(ctx, dry_run)                                 retention (settings in gc.GcSettings)
    reconcile.reconcile(ctx, fix)                            database versus registry
"""
from release_manager.workflows.common import Context  # noqa: F401
