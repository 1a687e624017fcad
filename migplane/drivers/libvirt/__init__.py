"""The libvirt migration driver: peer-to-peer live migration with migrateToURI3.

Nothing here imports libvirt-python, so that ``migplane.drivers.libvirt.opts``
(read by oslo-config-generator) works on hosts without the binding.
"""
