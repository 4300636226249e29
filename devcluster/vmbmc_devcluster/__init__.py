"""vmbmc-devcluster: the emulated cluster, the pod runner and `vmbmc demo`, for developing vmbmc."""
