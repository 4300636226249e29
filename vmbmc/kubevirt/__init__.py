"""The KubeVirt back end of the state machine: watch caches (hub), the Machine, media, records.

Import the module you need (``vmbmc.kubevirt.hub``): this package imports nothing eagerly.
"""
