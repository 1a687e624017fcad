"""migplane: live migration of QEMU/KVM guests over a dedicated network plane."""
