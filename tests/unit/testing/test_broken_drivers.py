"""The conformance kit fails every broken driver, with a clear message.

Each driver of ``broken_drivers`` breaks one clause of the contract; the kit
check that covers that clause must fail it (an assertion or a typed error,
never a pass, a skip or a hang), and its message must show the values and
say what the contract requires. The fake driver, from which every broken one
derives, passes the same checks (test_fake_conformance.py).
"""

import inspect

import pytest

from migplane.core import exception
from migplane.testing import conformance
from tests.unit.testing import broken_drivers as broken

FAKE_ADAPTER = conformance.fake_adapter_class()


class QuickDeadlineAdapter(FAKE_ADAPTER):
    """A hung step fails the check at once."""

    step_deadline = 0.5


def run_check(variant, check, adapter_class=FAKE_ADAPTER, **params):
    """Run the kit's ``check`` against ``variant`` as pytest would; return the
    text of its failure (an AssertionError, pytest.fail or a typed error)."""

    class Kit(conformance.DriverConformance):
        driver_name = variant.__name__
        driver_class = variant

    Kit.adapter_class = adapter_class
    kit = Kit()
    adapter = adapter_class()
    adapter.setup()
    try:
        method = getattr(kit, check)
        args = {}
        for name in inspect.signature(method).parameters:
            if name in ("source", "destination"):
                role = conformance.SOURCE if name == "source" else conformance.DESTINATION
                args[name] = kit.load(adapter, role)
            elif name == "adapter":
                args[name] = adapter
            elif name == "guest":
                args[name] = adapter.create_guest()
            else:
                args[name] = params[name]
        method(**args)
    except pytest.skip.Exception as skipped:
        pytest.fail("the kit skipped %s for %s instead of failing it: %s"
                    % (check, variant.__name__, skipped))
    except (AssertionError, pytest.fail.Exception, exception.MigplaneError) as failed:
        return "%s: %s" % (type(failed).__name__, failed)
    finally:
        broken.RELEASE.set()
        adapter.cleanup()
        broken.RELEASE.clear()
    pytest.fail("the kit passed %s in %s" % (variant.__name__, check))


@pytest.mark.parametrize("variant, check, params, says", [
    (broken.DescribesAsDict, "test_loads_by_entry_point_and_describes_itself", {},
     ["describe() returned {", "not a DriverInfo"]),
    (broken.NoTargetConnectAddr, "test_pre_live_migration_sets_target_connect_addr", {},
     ["target_connect_addr=None", "'198.51.100.12'", "the contract requires"]),
    (broken.BulkOnManagement, "test_the_split_plane_is_kept", {},
     ["went to 'host-b'", "target_connect_addr '198.51.100.12'", "migration plane"]),
    (broken.FinishedJobRunsAgain,
     "test_steps_return_their_types_and_the_job_stays_finished", {},
     ["said completed, then 'running'", "keep reporting its finished state"]),
    (broken.UnknownState, "test_steps_return_their_types_and_the_job_stays_finished", {},
     ["broke its contract in get_job_progress", "unknown job state 'done'"]),
    (broken.SecondSourceRollbackRaises,
     "test_rollback_of_a_migration_that_never_started_is_harmless", {},
     ["rollback_live_migration_at_source", "second call", "idempotent"]),
    (broken.LeavesPreparedState, "test_pre_live_migration_sets_target_connect_addr", {},
     ["the destination keeps ['prepared state'] of 'conformance-1'",
      "rollbacks to remove whatever the migration left"]),
    (broken.ForgetsFinishedJobs,
     "test_steps_return_their_types_and_the_job_stays_finished", {},
     ["said completed, then 'NoActiveMigration: No live migration of conformance-1",
      "keep reporting its finished state"]),
    (broken.IgnoresAbort, "test_abort_keeps_the_guest_on_the_source", {},
     ["abort_job('conformance-1') returned while the job was 'running'",
      "ended 'completed'", "the contract requires an aborted job to end cancelled"]),
    (broken.UntypedCheckFailure, "test_a_failing_step_is_typed_and_rolled_back",
     {"role": "destination", "step": "check_can_live_migrate_destination"},
     ["failed with RuntimeError", "typed exceptions", "DestinationCheckFailed"]),
], ids=lambda v: v.__name__ if isinstance(v, type) else "-")
def test_the_kit_fails_a_broken_driver_clearly(variant, check, params, says):
    message = run_check(variant, check, **params)
    for text in says:
        assert text in message


@pytest.mark.parametrize("capability, says", [
    ("tunnelled", "was not tunnelled through the control connection"),
    ("native_tls", "was not encrypted with native TLS"),
    ("post_copy", "was not switched to post-copy"),
    ("block_migration", "was not with its local disks copied"),
])
def test_the_kit_fails_a_driver_that_honours_no_declared_capability(capability, says):
    message = run_check(broken.HonoursNoCapability, "test_a_declared_capability_is_honoured",
                        capability=capability)
    assert "declares %s and was asked for it" % capability in message
    assert says in message and "observed: Observed(" in message


@pytest.mark.parametrize("capability", conformance.CAPABILITIES)
def test_the_kit_fails_a_driver_that_accepts_what_it_did_not_declare(capability):
    message = run_check(broken.AcceptsUndeclared,
                        "test_the_driver_itself_refuses_an_undeclared_capability",
                        capability=capability)
    assert "does not declare %s, yet live_migration() accepted" % capability in message
    assert "UnsupportedFeature" in message


@pytest.mark.parametrize("variant, check, step, host", [
    (broken.HangsInPreLiveMigration, "test_pre_live_migration_sets_target_connect_addr",
     "pre_live_migration", "host-b"),
    (broken.HangsInGetJobProgress,
     "test_steps_return_their_types_and_the_job_stays_finished",
     "get_job_progress", "host-a"),
    (broken.HangsInRollback, "test_rollback_of_a_migration_that_never_started_is_harmless",
     "rollback_live_migration_at_destination", "host-b"),
], ids=lambda v: v.__name__ if isinstance(v, type) else "-")
def test_the_kit_fails_a_driver_that_hangs(variant, check, step, host):
    message = run_check(variant, check, adapter_class=QuickDeadlineAdapter)
    assert message.startswith("StepTimedOut: ")
    assert "Driver step %s on host %s gave no answer" % (step, host) in message


def test_failures_show_the_values_compared():
    """The kit is rewritten by pytest: even a bare assert shows its operands."""
    assert conformance.__loader__.__class__.__name__ == "AssertionRewritingHook"
