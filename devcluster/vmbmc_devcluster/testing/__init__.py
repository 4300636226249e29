"""What a test needs to reach the development cluster: the pytest plugin (`plugin`: the `emulator` and
`kubectl` fixtures, `--kubeconfig` for a real cluster), bounded waiting, `vmbmc demo` as a process, and
the emulator's own test doubles. Both the product's tests and this distribution's use it."""
