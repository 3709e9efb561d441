"""``python -m k8s_manifests [--check]`` (from deploy/k8s; ``make k8s-generate``)."""

import sys

from k8s_manifests import main

sys.exit(main())
