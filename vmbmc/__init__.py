"""vmbmc: virtual BMCs for KubeVirt virtual machines."""

__version__ = "0.1.0"
