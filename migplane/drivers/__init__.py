"""In-tree migration drivers, each loaded through the 'migplane.drivers' entry points."""
