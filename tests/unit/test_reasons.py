"""The vocabulary of reasons and the behaviour attached to each."""

from __future__ import annotations

import pytest

from nodecluster.api.reasons import Reason, reason_of

STALLS = {
    "InvalidProviderConfig",
    "ProviderNotFound",
    "ProviderDeleting",
    "QuotaExceeded",
    "CostLimitExceeded",
    "CapacityExceeded",
    "ProtectedFromScaleIn",
    "APIRefused",
    "MachineOwnedElsewhere",
}
NODE_ERRORS = {
    "ProviderUnavailable",
    "ProviderUnauthorized",
    "CapacityExceeded",
    "QuotaExceeded",
    "CostLimitExceeded",
    "InvalidProviderConfig",
    "ProviderNotFound",
    "ProviderDeleting",
    "MachineMissing",
    "LaunchAbandoned",
    "ProviderError",
    "MachineOwnedElsewhere",
}
NOT_THE_MACHINE = {
    "QuotaExceeded",
    "CostLimitExceeded",
    "CapacityExceeded",
    "InvalidProviderConfig",
    "ProviderUnauthorized",
    "ProviderDeleting",
    "MachineOwnedElsewhere",
}


@pytest.mark.parametrize("reason", list(Reason), ids=str)
def test_each_reason_knows_what_it_means(reason: Reason) -> None:
    assert reason.stalls is (reason in STALLS)
    assert reason.marks_node_error is (reason in NODE_ERRORS)
    assert reason.machine_fault is (reason not in NOT_THE_MACHINE)


def test_a_reason_is_its_word_on_the_wire() -> None:
    assert Reason.QUOTA_EXCEEDED == "QuotaExceeded"
    assert f"{Reason.CONVERGED}" == "Converged"


@pytest.mark.parametrize(
    ("word", "reason"),
    [("QuotaExceeded", Reason.QUOTA_EXCEEDED), ("MachineFailed", None), (None, None), ("", None)],
)
def test_words_read_back_from_the_api(word: str | None, reason: Reason | None) -> None:
    assert reason_of(word) == reason
