"""Property tests of what a peer may make the libvirt driver create or delete
(migplane.drivers.libvirt.disks: ``under_root``, ``to_delete``)."""

import posixpath

from hypothesis import given
from hypothesis import strategies as st

from migplane.drivers.libvirt import disks

ROOT = "/var/lib/libvirt/images"
segment = st.sampled_from(["a", "b.qcow2", "..", ".", "", "images", "libvirt", "etc",
                           "shadow", "x\x00y", "var", "lib"])
paths = st.lists(segment, min_size=0, max_size=8).flatmap(
    lambda parts: st.sampled_from(["/" + "/".join(parts), "/".join(parts),
                                   ROOT + "/" + "/".join(parts)]))


@given(paths)
def test_an_accepted_path_is_normalised_and_strictly_inside_the_root(path):
    if disks.under_root(ROOT, path):
        assert path.startswith(ROOT + "/") and path != ROOT
        assert posixpath.normpath(path) == path and "\x00" not in path
        assert ".." not in path.split("/") and "" not in path.split("/")[1:]


@given(st.lists(st.sampled_from(["a.qcow2", "b.raw", "sub/c.qcow2"]), min_size=1,
                max_size=3, unique=True))
def test_plain_images_under_the_root_are_accepted(names):
    for name in names:
        assert disks.under_root(ROOT, "%s/%s" % (ROOT, name))
        assert disks.under_root(ROOT + "/", "%s/%s" % (ROOT, name))


path_text = st.sampled_from(["/img/a", "/img/b", "/etc/shadow", "/img/other", "x"])


@given(st.lists(path_text, max_size=4), st.lists(st.one_of(path_text, st.integers(),
                                                           st.none()), max_size=6))
def test_the_source_deletes_only_what_it_copied_and_the_destination_created(copied,
                                                                           claimed):
    doomed = disks.to_delete(copied, claimed)
    assert set(doomed) <= set(copied)
    assert set(doomed) <= {c for c in claimed if isinstance(c, str)}
    assert set(doomed) == set(copied) & {c for c in claimed if isinstance(c, str)}
    assert disks.to_delete([], claimed) == () and disks.to_delete(copied, None) == ()
