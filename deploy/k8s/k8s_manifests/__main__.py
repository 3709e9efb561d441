"""``python -m k8s_manifests [--check]`` (from deploy/k8s; ``make k8s-generate``)."""

import os
import sys

# The generator reads the services' apps and settings to describe them; it deploys nothing,
# so the production start-up checks (which need real secrets) do not apply to it.
os.environ.setdefault("COUNTERTOP_ENV", "test")

from k8s_manifests import main

sys.exit(main())
