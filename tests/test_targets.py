"""Targets as building blocks: what a kind of image is, is said once (release_manager/targets.py), and
the Dockerfile, the checks, the build order, the Jenkins jobs and the nightly all ask it."""
from __future__ import annotations

from release_manager import checks, targets
from release_manager.jenkins.model import VERIFIED_VARIANTS
from release_manager.plan import make_plan
from release_manager.render import TEMPLATES
from release_manager.spec.model import VARIANTS
from release_manager.workflows.verification import VERIFIABLE

from jenkins_standin import reference_jobset


def test_every_kind_has_its_fragment_and_its_checks():
    assert set(targets.VARIANTS) == set(VARIANTS)
    for k in targets.KINDS.values():
        assert (TEMPLATES / k.fragment).is_file(), k.fragment
        assert k.checks and all(callable(getattr(checks, name, None)) for name in k.checks), k.checks


def test_jenkins_and_the_nightly_verify_the_same_variants(specs):
    assert VERIFIED_VARIANTS == VERIFIABLE == targets.verified_variants() == ("runtime", "debug", "full")
    seen = set()
    for job in reference_jobset().jobs:
        if job.kind != "build":
            continue
        variant = job.name[len("build-"):]
        verifies = any(s.name == "Verify" for s in job.stages)
        has_rules = specs.get(job.package).spec.verification is not None
        assert verifies == (has_rules and variant in targets.verified_variants()), job.full_name
        seen.add((variant, verifies))
    assert ("debug", True) in seen and ("env", False) in seen


def test_build_order_follows_the_kinds(specs):
    for name in specs.packages:
        plan = make_plan(specs, name)
        orders = [t.kind.order for t in plan.targets]
        assert orders == sorted(orders)
        variants = [t.variant for t in plan.targets]
        if "debug" in variants:
            assert variants.index("runtime") < variants.index("debug")
