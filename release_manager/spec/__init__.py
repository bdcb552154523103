"""The image spec model: platforms and package specs, validated, in memory."""
from release_manager.spec.model import PackageSpec, Platform, PlatformsFile, VARIANTS  # noqa: F401
from release_manager.spec.loader import SpecSet, load_specs  # noqa: F401
