"""Adapters between Continuum's decisions and the systems it drives (KubeRay, member clusters)."""
